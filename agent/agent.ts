import { join } from 'node:path';
import { z } from 'zod';
import { AgentEvent, EventsAck, TelemetrySample, type AgentEventBatch } from '../schemas/device.js';
import { ROBOT_REQUESTS, TOPIC_RULES, topics } from '../schemas/topics.js';
import { DEFAULT_BATCH_LIMITS, EventQueue } from './adapters/event-queue.js';
import type { Logger } from './adapters/json-log.js';
import type { Link, LinkConnection } from './adapters/mqtt-link.js';
import type { AgentConfig } from './config.js';
import {
  ackReceived,
  batchSent,
  checkDeliverySettings,
  DEFAULT_DELIVERY_SETTINGS,
  firstUnsettled,
  initialDelivery,
  linkDown,
  linkUp,
  nextAction,
  timeElapsed,
  type DeliverySettings,
  type DeliveryState,
  type Moment,
} from './core/outbox-delivery.js';
import { decideTelemetrySend, type TelemetryDecision } from './core/telemetry-policy.js';

/**
 * The agent runtime: what the robot says, and when, over whatever link it is given.
 *
 * - Telemetry is a latest-value signal: a sample is read every `sampleIntervalMs`, sent (QoS 0) when the telemetry
 *   policy says so, and simply not sent while offline; the next connection starts with a fresh reading.
 * - Events are facts: `report` writes them to the on-disk queue first; whenever the link is up they go out oldest
 *   first at QoS 1, always as an AgentEventBatch carrying their outbox position (`{ outbox: { id, after, first },
 *   events }`). An event leaves the disk only once the cloud acknowledged it on `cmd/heartbeat/<thing>/ack`
 *   (EventsAck): the broker's PUBACK only says IoT Core took the message. What to send when (a window of batches in
 *   flight, going back on `resend`, on an ack timeout and on every connection) is the pure delivery core,
 *   agent/core/outbox-delivery.ts. A failed publish stops sending until the next connection.
 * - Events the queue had to drop (it was full) are gone, but not silently: once the link is up, an
 *   `EventsDropped { count }` is put into the queue itself, so it is acknowledged end to end like any other event.
 * - Commands arrive on `cmd/heartbeat/<thing>/<request>`: `report-now` answers at once on `…/report-now/reply`, `ack`
 *   is the cloud's EventsAck. Anything else, or anything malformed, is logged and ignored: a bad message never stops
 *   the agent.
 *
 * Pure wiring: the link, the telemetry reader, the queue, the clock, the random source and the log are all injected.
 */

/** How the agent delivers its events (agent.json `delivery`); missing fields take DEFAULT_DELIVERY_SETTINGS. */
export type AgentDeliveryConfig = Partial<Pick<DeliverySettings, 'maxInFlightBatches' | 'ackTimeoutMs'>>;

export type AgentRuntimeConfig = Pick<AgentConfig, 'thingName' | 'basicIngest' | 'stateDir' | 'telemetry'> & {
  readonly delivery?: AgentDeliveryConfig | undefined;
};

export interface AgentClock {
  /** Milliseconds, as Date.now. */
  now(): number;
}

export interface TelemetryReader {
  read(): Promise<TelemetrySample>;
}

export interface AgentOptions {
  readonly config: AgentRuntimeConfig;
  readonly link: Link;
  readonly telemetry: TelemetryReader;
  /** Unopened; the agent opens it on start and closes it on stop. Default: `<stateDir>/queue`. */
  readonly queue?: EventQueue;
  readonly clock?: AgentClock;
  /** In [0, 1), as Math.random (the default): the jitter of the ack timeout. */
  readonly random?: () => number;
  readonly log: Logger;
  /** How long stop() waits for a publish in flight. Default 5 s. */
  readonly stopTimeoutMs?: number;
}

export interface ReportNowResult {
  /** Whether a sample went out (false while offline or when the read or the publish failed). */
  readonly sent: boolean;
  readonly sentAt?: string;
}

export interface Agent {
  /** Opens the queue, subscribes to commands, starts sampling and starts the link (without waiting for it). */
  start(): Promise<void>;
  /** Stops sampling, lets a publish in flight finish (bounded), closes the queue and stops the link. Idempotent. */
  stop(): Promise<void>;
  /** Resolves once the event is on disk; it goes out when the link is up. An invalid event is refused (field named). */
  report(event: AgentEvent): Promise<void>;
  /** Reads and sends a sample now, inside the minimum interval if need be (the policy's `requested`). */
  reportNow(): Promise<ReportNowResult>;
}

/** The commands the agent understands, by the last topic level. */
export const COMMANDS = ROBOT_REQUESTS;

const ReportNowCommand = z
  .object({ requestId: z.string().min(1).max(128).optional() })
  // Senders may add fields (a timestamp, who asked); only requestId matters here.
  .loose();

const DEFAULT_STOP_TIMEOUT_MS = 5_000;

export function createAgent(options: AgentOptions): Agent {
  const { config, link, log } = options;
  const clock = options.clock ?? { now: () => Date.now() };
  const thing = config.thingName;
  const queue = options.queue ?? new EventQueue({ directory: join(config.stateDir, 'queue'), log: (m, d) => log.warn(m, d) });
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const commandFilter = topics.command(thing, '+');
  const commandPrefix = topics.command(thing, '');
  const telemetry = new TelemetryReporter({ config, link, reader: options.telemetry, clock, log });
  const outbox = new OutboxSender({
    queue,
    link,
    topic: topics.events(thing),
    clock,
    random: options.random ?? Math.random,
    settings: deliverySettings(config.delivery),
    log,
  });

  let phase: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  /** Command replies on their way out; stop() lets them finish too. */
  const replies = new Set<Promise<void>>();
  let stopping: Promise<void> | undefined;

  function onOnline(kind: 'connected' | 'resumed', connection: LinkConnection): void {
    if (phase !== 'running') return;
    log.info(kind === 'connected' ? 'link up' : 'link back', { sessionPresent: connection.sessionPresent });
    outbox.linkUp();
    telemetry.linkUp();
  }

  const onConnected = (connection: LinkConnection) => onOnline('connected', connection);
  const onResumed = (connection: LinkConnection) => onOnline('resumed', connection);
  const onInterrupted = (error: Error) => {
    telemetry.linkDown();
    outbox.linkDown();
    log.warn('link down; telemetry paused, events queue on disk', { error });
  };

  function onCommand(topic: string, payload: Buffer): void {
    if (phase !== 'running') return;
    const request = topic.startsWith(commandPrefix) ? topic.slice(commandPrefix.length) : '';
    if (request !== COMMANDS.reportNow && request !== COMMANDS.eventsAck) {
      log.warn('unknown command ignored', { topic });
      return;
    }
    const body = parseJsonPayload(payload);
    if (!body.ok) {
      log.warn('malformed command ignored: payload is not JSON', { topic, bytes: payload.length });
      return;
    }
    if (request === COMMANDS.eventsAck) {
      outbox.onAck(topic, body.value);
      return;
    }
    const command = ReportNowCommand.safeParse(body.value);
    if (!command.success) {
      log.warn('malformed command ignored', { topic, ...firstProblem(command.error) });
      return;
    }
    const reply = answerReportNow(command.data.requestId).finally(() => replies.delete(reply));
    replies.add(reply);
  }

  async function answerReportNow(requestId: string | undefined): Promise<void> {
    const result = await telemetry.sampleOnce(true);
    if (!result.sent) {
      log.warn('report-now: no sample could be sent', { requestId });
      return;
    }
    try {
      await link.publish(topics.commandReply(thing, COMMANDS.reportNow), JSON.stringify({ requestId, sentAt: result.sentAt }), 1);
    } catch (error) {
      log.warn('report-now reply failed', { requestId, error });
    }
  }

  async function shutDown(): Promise<void> {
    const wasRunning = phase === 'running';
    phase = 'stopping';
    telemetry.stop();
    outbox.stop();
    link.off('connected', onConnected);
    link.off('resumed', onResumed);
    link.off('interrupted', onInterrupted);
    // A sample or an event on its way to the broker may finish; one stuck on a dead link may not hold the stop.
    await settleWithin(Promise.all([telemetry.idle(), outbox.idle(), ...replies]), stopTimeoutMs);
    if (wasRunning) {
      try {
        await queue.close();
      } catch (error) {
        log.warn('closing the event queue failed', { error });
      }
    }
    await link.stop();
    phase = 'stopped';
    log.info('agent stopped');
  }

  return {
    async start() {
      if (phase !== 'new') throw new Error(`the agent cannot start: it is ${phase}`);
      await queue.open();
      phase = 'running';
      outbox.start();
      telemetry.start();
      link.on('connected', onConnected);
      link.on('resumed', onResumed);
      link.on('interrupted', onInterrupted);
      link.subscribe(commandFilter, onCommand).catch((error: unknown) => {
        log.error('subscribing to commands failed', { filter: commandFilter, error });
      });
      link.start().catch((error: unknown) => {
        if (phase === 'running') log.error('the link did not start', { error });
      });
      if (link.isConnected && !telemetry.online) onConnected({ sessionPresent: false });
      const stats = queue.stats();
      log.info('agent started', {
        thingName: thing,
        telemetryTopic: telemetry.topic,
        pendingEvents: stats.pending,
        outboxId: queue.outboxId,
      });
    },

    stop() {
      stopping ??= shutDown();
      return stopping;
    },

    async report(event) {
      if (phase !== 'running') throw new Error(`the agent cannot report events: it is ${phase}`);
      await queue.enqueue(event);
      outbox.queued();
    },

    reportNow() {
      return telemetry.sampleOnce(true);
    },
  };
}

/** The agent config's delivery fields over the defaults, checked. */
export function deliverySettings(config: AgentDeliveryConfig | undefined): DeliverySettings {
  const settings = { ...DEFAULT_DELIVERY_SETTINGS, ...stripUndefined(config ?? {}) };
  return checkDeliverySettings({ ...settings, maxAckTimeoutMs: Math.max(settings.maxAckTimeoutMs, settings.ackTimeoutMs) });
}

/**
 * Telemetry: a sample every `sampleIntervalMs`, sent (QoS 0) when the policy says so, and only while the link is up.
 * Samples run one at a time (timer, connection, report-now), so two can never both be "first".
 */
class TelemetryReporter {
  readonly topic: string;
  online = false;
  private running = false;
  private lastSent: { sample: TelemetrySample; at: number } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: {
      readonly config: AgentRuntimeConfig;
      readonly link: Link;
      readonly reader: TelemetryReader;
      readonly clock: AgentClock;
      readonly log: Logger;
    },
  ) {
    const { config } = deps;
    this.topic = config.basicIngest
      ? topics.basicIngest(TOPIC_RULES.telemetry.name, topics.telemetry(config.thingName))
      : topics.telemetry(config.thingName);
  }

  start(): void {
    this.running = true;
    void this.sampleOnce(false);
    this.schedule();
  }

  /** A fresh reading right away: the policy sends it if it is the first or has news, else holds it. */
  linkUp(): void {
    this.online = true;
    void this.sampleOnce(false);
  }

  linkDown(): void {
    this.online = false;
  }

  stop(): void {
    this.running = false;
    this.online = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  idle(): Promise<unknown> {
    return this.sampling;
  }

  sampleOnce(requested: boolean): Promise<ReportNowResult> {
    const run = this.sampling.then(() => this.send(requested));
    this.sampling = run.catch(() => undefined);
    return run;
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sampleOnce(false).finally(() => this.schedule());
    }, this.deps.config.telemetry.sampleIntervalMs);
  }

  private async send(requested: boolean): Promise<ReportNowResult> {
    const { reader, link, clock, log, config } = this.deps;
    if (!this.running) return { sent: false };
    let reading: TelemetrySample;
    try {
      reading = await reader.read();
    } catch (error) {
      log.warn('telemetry read failed; skipped this sample', { error });
      return { sent: false };
    }
    const checked = TelemetrySample.safeParse(reading);
    if (!checked.success) {
      const problem = checked.error.issues[0];
      log.error('telemetry sample invalid; not sent', { field: problem?.path.join('.'), problem: problem?.message });
      return { sent: false };
    }
    // Offline: nothing to decide. The sample would be stale by the time the link is back, so it is not kept.
    if (!this.online || !this.running) return { sent: false };
    const now = clock.now();
    let decision: TelemetryDecision;
    try {
      decision = decideTelemetrySend({ lastSent: this.lastSent, reading: checked.data, now, requested }, config.telemetry.policy);
    } catch (error) {
      log.error('telemetry policy failed', { error });
      return { sent: false };
    }
    if (!decision.send) {
      log.debug('telemetry held', { reason: decision.reason, changed: decision.changed });
      return { sent: false };
    }
    try {
      await link.publish(this.topic, JSON.stringify(checked.data), 0);
    } catch (error) {
      log.warn('telemetry publish failed', { error, reason: decision.reason });
      return { sent: false };
    }
    this.lastSent = { sample: checked.data, at: now };
    log.debug('telemetry sent', { reason: decision.reason, changed: decision.changed });
    return { sent: true, sentAt: new Date(now).toISOString() };
  }
}

/**
 * Events from the queue to the cloud: the delivery core decides, this does what it says. One publish at a time
 * (batches go out in position order), a timer for the core's ack deadline, acknowledgements applied to the core at
 * once and to the queue (which forgets the events on disk) in arrival order.
 */
class OutboxSender {
  private state: DeliveryState | undefined;
  private running = false;
  private linkIsUp = false;
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private reportingDropped: Promise<void> | undefined;
  /** Acknowledgements being written to the queue. */
  private readonly acknowledging = new Set<Promise<void>>();

  constructor(
    private readonly deps: {
      readonly queue: EventQueue;
      readonly link: Link;
      readonly topic: string;
      readonly clock: AgentClock;
      readonly random: () => number;
      readonly settings: DeliverySettings;
      readonly log: Logger;
    },
  ) {}

  /** Once the queue is open. */
  start(): void {
    this.running = true;
    this.state = initialDelivery(this.deps.queue.snapshot());
  }

  linkUp(): void {
    if (!this.running || this.state === undefined) return;
    this.linkIsUp = true;
    this.state = linkUp(this.state, this.deps.queue.snapshot());
    // The report first: it may drop the oldest to make room, and those need not go out.
    if (!this.reportDropped()) this.pump();
  }

  linkDown(): void {
    this.linkIsUp = false;
    if (this.state !== undefined) this.state = linkDown(this.state);
    this.disarm();
  }

  /** An event was queued. */
  queued(): void {
    if (!this.reportDropped()) this.pump();
  }

  /** An `ack` command's JSON body. */
  onAck(topic: string, body: unknown): void {
    if (!this.running || this.state === undefined) return;
    const parsed = EventsAck.safeParse(body);
    if (!parsed.success) {
      this.deps.log.warn('malformed events ack ignored', { topic, ...firstProblem(parsed.error) });
      return;
    }
    const ack = parsed.data;
    for (const rejected of ack.rejected ?? []) {
      this.deps.log.warn('the cloud refused an event for good; it leaves the queue', {
        eventId: rejected.eventId,
        position: rejected.position,
        problems: rejected.problems,
      });
    }
    const view = this.deps.queue.snapshot();
    const outcome = ackReceived(this.state, ack, view, this.moment(), this.deps.settings);
    this.state = outcome.state;
    if (outcome.ignored === 'other-outbox') {
      this.deps.log.info('events ack for another outbox ignored', { outboxId: ack.outbox?.id, ours: view.outboxId });
      return;
    }
    if (outcome.wentBack) {
      this.deps.log.info('the cloud asked for a resend: sending again in order', {
        from: firstUnsettled(this.state, view),
      });
    }
    if (ack.outbox !== undefined) this.forgetThrough(ack.outbox.id, ack.outbox.through);
    this.pump();
  }

  stop(): void {
    this.running = false;
    this.linkIsUp = false;
    this.disarm();
  }

  /** Work under way: a publish, an EventsDropped being queued, acknowledgements being written. */
  idle(): Promise<unknown> {
    return Promise.all([this.pumping, this.reportingDropped, ...this.acknowledging]);
  }

  private forgetThrough(outboxId: string, through: number): void {
    const work = this.deps.queue.acknowledge(outboxId, through).then(
      (removed) => {
        if (removed > 0) this.deps.log.info('events acknowledged by the cloud', { removed, through, pending: this.deps.queue.stats().pending });
      },
      (error: unknown) => {
        // They stay queued: a later acknowledgement (or a resend acknowledged as settled) removes them.
        if (this.running) this.deps.log.warn('could not record an events ack; those events stay queued', { error, through });
      },
    );
    const tracked = work.finally(() => this.acknowledging.delete(tracked));
    this.acknowledging.add(tracked);
  }

  /**
   * Puts an EventsDropped into the queue when the link is up and the queue had to drop events, then sends. Returns
   * whether it is doing so (else the caller sends).
   */
  private reportDropped(): boolean {
    if (this.reportingDropped) return true;
    if (!this.running || !this.linkIsUp || this.deps.queue.stats().droppedCount === 0) return false;
    const { queue, clock, log } = this.deps;
    this.reportingDropped = queue.reportDropped(new Date(clock.now()).toISOString()).then(
      (event) => {
        this.reportingDropped = undefined;
        if (event?.type === 'EventsDropped') {
          log.warn('the event queue was full: an EventsDropped with the count is queued for the cloud', {
            droppedCount: event.data.count,
            eventId: event.eventId,
          });
        }
        // Events reported meanwhile may have made the queue drop more.
        if (!this.reportDropped()) this.pump();
      },
      (error: unknown) => {
        this.reportingDropped = undefined;
        // The count is kept; the next event or connection tries again.
        if (this.running) log.warn('could not queue the EventsDropped report; the count is kept', { error });
        this.pump();
      },
    );
    return true;
  }

  private pump(): void {
    if (!this.running) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.send().finally(() => {
      this.pumping = undefined;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.pump();
      }
    });
  }

  /** Sends what the core says, one batch at a time, until it says wait. */
  private async send(): Promise<void> {
    const { queue, link, topic, settings, log } = this.deps;
    while (this.running && this.state !== undefined) {
      const action = nextAction(this.state, queue.snapshot(), settings);
      if (action.kind === 'wait') {
        this.arm(action.until);
        return;
      }
      const batch = queue.batchFrom(action.from);
      if (batch === undefined) {
        // Cannot happen (the core only asks for what the snapshot says is sendable); the ack timer still recovers.
        log.error('event queue has no event at the position to send', { from: action.from });
        this.arm(this.state.deadline);
        return;
      }
      this.state = batchSent(this.state, { first: batch.outbox.first, last: batch.last }, this.moment(), settings);
      const message: AgentEventBatch = { outbox: batch.outbox, events: batch.events };
      try {
        await link.publish(topic, JSON.stringify(message), 1);
      } catch (error) {
        if (!this.running || this.state === undefined) return;
        this.state = linkDown(this.state);
        this.disarm();
        log.warn('event delivery stopped until the next connection; events stay queued', {
          error,
          pending: queue.stats().pending,
        });
        return;
      }
      log.debug('events sent', { first: batch.outbox.first, last: batch.last, after: batch.outbox.after });
    }
  }

  /** Wakes the core at its ack deadline. */
  private arm(until: number | undefined): void {
    this.disarm();
    if (until === undefined || !this.running) return;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, until - this.deps.clock.now()));
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimer(): void {
    this.timer = undefined;
    if (!this.running || this.state === undefined) return;
    const view = this.deps.queue.snapshot();
    const elapsed = timeElapsed(this.state, view, this.moment());
    this.state = elapsed.state;
    if (elapsed.timedOut) {
      this.deps.log.warn('no events ack from the cloud in time: sending again in order', {
        from: firstUnsettled(this.state, view),
        timeoutsInARow: this.state.timeouts,
      });
    }
    this.pump();
  }

  private moment(): Moment {
    return { now: this.deps.clock.now(), random: this.deps.random() };
  }
}

function parseJsonPayload(payload: Buffer): { ok: true; value: unknown } | { ok: false } {
  const text = payload.toString('utf8').trim();
  if (text.length === 0) return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

function firstProblem(error: z.ZodError): { field: string; problem: string | undefined } {
  const problem = error.issues[0];
  return { field: problem?.path.join('.') || '(payload)', problem: problem?.message };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as Partial<T>;
}

function settleWithin(work: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    work.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}
