import { join } from 'node:path';
import { AgentEvent, ReportNowCommand, TelemetrySample, type ReportNowReply } from '../schemas/device.js';
import { ROBOT_REQUESTS, topics } from '../schemas/topics.js';
import { EventQueue } from './adapters/event-queue.js';
import { firstProblem, parseJsonPayload } from './command-payload.js';
import { OutboxSender } from './outbox-sender.js';
import { TelemetryReporter } from './telemetry-reporter.js';
import type { Logger } from './adapters/json-log.js';
import type { Link, LinkConnection } from './adapters/mqtt-link.js';
import type { AgentConfig } from './config.js';
import { checkDeliverySettings, DEFAULT_DELIVERY_SETTINGS, type DeliverySettings } from './core/outbox-delivery.js';

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
  /** The stage's Basic Ingest telemetry rule (agent.json `telemetryRule`); default: the local cloud's. */
  readonly telemetryRule?: string | undefined;
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
  /**
   * More commands, by the last topic level, each given the JSON body (certificate rotation's `rotate-certificate`,
   * `certificate-issued`, `certificate-rotated`: agent/certificate-rotation.ts). A handler that throws is logged.
   */
  readonly commands?: Readonly<Record<string, (body: unknown) => void>>;
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
  /**
   * Calls `listener` on every connection of the link from now on (the first and each reconnection), and at once if
   * the link is up: what the robot must restate whenever its link was down (its teleoperation state). Returns the
   * unsubscribe function.
   */
  onLinkUp(listener: () => void): () => void;
}

/** The commands the agent understands, by the last topic level. */
export const COMMANDS = ROBOT_REQUESTS;

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

  const linkUpListeners = new Set<() => void>();
  const callLinkUp = (listener: () => void) => {
    try {
      listener();
    } catch (error) {
      log.warn('a link-up listener failed', { error });
    }
  };

  function onOnline(kind: 'connected' | 'resumed', connection: LinkConnection): void {
    if (phase !== 'running') return;
    log.info(kind === 'connected' ? 'link up' : 'link back', { sessionPresent: connection.sessionPresent });
    outbox.linkUp();
    telemetry.linkUp();
    for (const listener of linkUpListeners) callLinkUp(listener);
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
    const extra = Object.hasOwn(options.commands ?? {}, request) ? options.commands?.[request] : undefined;
    if (extra) {
      const parsed = parseJsonPayload(payload);
      if (!parsed.ok) return log.warn('malformed command ignored: payload is not JSON', { topic, bytes: payload.length });
      try {
        extra(parsed.value);
      } catch (error) {
        log.warn('command handler failed', { topic, error });
      }
      return;
    }
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
    const result = await telemetry.sampleOnce(true, requestId);
    if (!result.sent || result.sentAt === undefined) {
      log.warn('report-now: no sample could be sent', { requestId });
      return;
    }
    try {
      const reply: ReportNowReply = { requestId, sentAt: result.sentAt };
      await link.publish(topics.commandReply(thing, COMMANDS.reportNow), JSON.stringify(reply), 1);
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

    onLinkUp(listener) {
      linkUpListeners.add(listener);
      if (phase === 'running' && telemetry.online) callLinkUp(listener);
      return () => void linkUpListeners.delete(listener);
    },
  };
}

/** The agent config's delivery fields over the defaults, checked. */
export function deliverySettings(config: AgentDeliveryConfig | undefined): DeliverySettings {
  const settings = { ...DEFAULT_DELIVERY_SETTINGS, ...stripUndefined(config ?? {}) };
  return checkDeliverySettings({ ...settings, maxAckTimeoutMs: Math.max(settings.maxAckTimeoutMs, settings.ackTimeoutMs) });
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
