import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { z } from 'zod';
import { AgentEvent, MAX_EVENTS_PER_BATCH, TelemetrySample } from '../schemas/device.js';
import { TOPIC_RULES, topics } from '../schemas/topics.js';
import { EventQueue } from './adapters/event-queue.js';
import type { Logger } from './adapters/json-log.js';
import type { Link, LinkConnection } from './adapters/mqtt-link.js';
import type { AgentConfig } from './config.js';
import { decideTelemetrySend, type TelemetryDecision } from './core/telemetry-policy.js';

/**
 * The agent runtime: what the robot says, and when, over whatever link it is given.
 *
 * - Telemetry is a latest-value signal: a sample is read every `sampleIntervalMs`, sent (QoS 0) when the telemetry
 *   policy says so, and simply not sent while offline; the next connection starts with a fresh reading.
 * - Events are facts: `report` writes them to the on-disk queue first, and the queue is drained oldest first at
 *   QoS 1 whenever the link is up. An event leaves the disk only once the broker acknowledged it; a failed publish
 *   stops the drain until the next connection, so nothing is sent out of order or lost.
 * - Events the queue had to drop (it was full while offline) are gone, but not silently: once the link is back, an
 *   `EventsDropped { count }` goes out (QoS 1) and the count is cleared only after the broker acknowledged it.
 * - Commands arrive on `cmd/heartbeat/<thing>/<request>`; `report-now` answers at once on `…/report-now/reply`.
 *   Anything else, or anything malformed, is logged and ignored: a bad message never stops the agent.
 *
 * Pure wiring: the link, the telemetry reader, the queue, the clock and the log are all injected.
 */

export type AgentRuntimeConfig = Pick<AgentConfig, 'thingName' | 'basicIngest' | 'stateDir' | 'telemetry'>;

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
export const COMMANDS = { reportNow: 'report-now' } as const;

const ReportNowCommand = z
  .object({ requestId: z.string().min(1).max(128).optional() })
  // Senders may add fields (a timestamp, who asked); only requestId matters here.
  .loose();

const DEFAULT_STOP_TIMEOUT_MS = 5_000;

export function createAgent(options: AgentOptions): Agent {
  const { config, link, telemetry, log } = options;
  const clock = options.clock ?? { now: () => Date.now() };
  const thing = config.thingName;
  const queue = options.queue ?? new EventQueue({ directory: join(config.stateDir, 'queue'), log: (m, d) => log.warn(m, d) });
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const telemetryTopic = config.basicIngest
    ? topics.basicIngest(TOPIC_RULES.telemetry.name, topics.telemetry(thing))
    : topics.telemetry(thing);
  const eventsTopic = topics.events(thing);
  const commandFilter = topics.command(thing, '+');
  const commandPrefix = topics.command(thing, '');

  let phase: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  let online = false;
  /** A publish failed since the last connection: the drain waits for the next one. */
  let drainBlocked = false;
  let lastSent: { sample: TelemetrySample; at: number } | null = null;
  let sampleTimer: NodeJS.Timeout | undefined;
  /** Samples run one at a time (timer, connection, report-now), so two can never both be "first". */
  let sampling: Promise<unknown> = Promise.resolve();
  let draining: Promise<void> | undefined;
  /** The dropped-count report under way; a second connection event joins it rather than reporting twice. */
  let reportingDropped: Promise<void> | undefined;
  /**
   * The EventsDropped last tried and not yet confirmed cleared: a retry for the same count reuses its eventId, so if
   * the first try did reach the cloud (only its acknowledgement was lost) the log still records it once.
   */
  let droppedReport: { count: number; eventId: string; occurredAt: string } | undefined;
  /** Command replies on their way out; stop() lets them finish too. */
  const replies = new Set<Promise<void>>();
  let stopping: Promise<void> | undefined;

  function sampleOnce(requested: boolean): Promise<ReportNowResult> {
    const run = sampling.then(() => sendSample(requested));
    sampling = run.catch(() => undefined);
    return run;
  }

  async function sendSample(requested: boolean): Promise<ReportNowResult> {
    if (phase !== 'running') return { sent: false };
    let reading: TelemetrySample;
    try {
      reading = await telemetry.read();
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
    if (!online || phase !== 'running') return { sent: false };
    const now = clock.now();
    let decision: TelemetryDecision;
    try {
      decision = decideTelemetrySend({ lastSent, reading: checked.data, now, requested }, config.telemetry.policy);
    } catch (error) {
      log.error('telemetry policy failed', { error });
      return { sent: false };
    }
    if (!decision.send) {
      log.debug('telemetry held', { reason: decision.reason, changed: decision.changed });
      return { sent: false };
    }
    try {
      await link.publish(telemetryTopic, JSON.stringify(checked.data), 0);
    } catch (error) {
      log.warn('telemetry publish failed', { error, reason: decision.reason });
      return { sent: false };
    }
    lastSent = { sample: checked.data, at: now };
    log.debug('telemetry sent', { reason: decision.reason, changed: decision.changed });
    return { sent: true, sentAt: new Date(now).toISOString() };
  }

  function scheduleSample(): void {
    if (phase !== 'running') return;
    sampleTimer = setTimeout(() => {
      sampleTimer = undefined;
      void sampleOnce(false).finally(scheduleSample);
    }, config.telemetry.sampleIntervalMs);
  }

  /** Sends what waits on disk, oldest first; joins a drain already running. */
  function drain(): Promise<void> {
    if (!online || drainBlocked || phase !== 'running') return draining ?? Promise.resolve();
    draining ??= queue
      // A backlog goes out in batches: IoT Core handles separate messages in any order, a batch in its order.
      .drainBatches(
        (events) => link.publish(eventsTopic, JSON.stringify(events.length === 1 ? events[0] : { events }), 1),
        { maxEvents: MAX_EVENTS_PER_BATCH, maxBytes: 96 * 1024 },
      )
      .then(
        (delivered) => {
          if (delivered > 0) log.info('events delivered', { delivered, pending: queue.stats().pending });
        },
        (error: unknown) => {
          if (phase !== 'running') return;
          drainBlocked = true;
          log.warn('event delivery stopped until the next connection; events stay queued', {
            error,
            pending: queue.stats().pending,
          });
        },
      )
      .finally(() => {
        draining = undefined;
      })
      .then(() => {
        // An event reported between the drain's last check and its end is picked up here.
        if (online && !drainBlocked && phase === 'running' && queue.stats().pending > 0) return drain();
        return undefined;
      });
    return draining;
  }

  function reportDropped(): Promise<void> {
    reportingDropped ??= sendDroppedCount().finally(() => {
      reportingDropped = undefined;
    });
    return reportingDropped;
  }

  async function sendDroppedCount(): Promise<void> {
    if (!online || phase !== 'running') return;
    try {
      const reported = await queue.reportDropped(async (count) => {
        if (droppedReport?.count !== count) {
          droppedReport = { count, eventId: randomUUID(), occurredAt: new Date(clock.now()).toISOString() };
        }
        const event: AgentEvent = {
          eventId: droppedReport.eventId,
          occurredAt: droppedReport.occurredAt,
          type: 'EventsDropped',
          data: { count },
        };
        await link.publish(eventsTopic, JSON.stringify(AgentEvent.parse(event)), 1);
      });
      droppedReport = undefined;
      if (reported > 0) {
        log.warn('the event queue was full while offline: told the cloud how many oldest events were dropped', {
          droppedCount: reported,
        });
      }
    } catch (error) {
      if (phase === 'running') log.warn('could not report the dropped events; the count is kept for the next connection', { error });
    }
  }

  function onOnline(kind: 'connected' | 'resumed', connection: LinkConnection): void {
    if (phase !== 'running') return;
    online = true;
    drainBlocked = false;
    log.info(kind === 'connected' ? 'link up' : 'link back', { sessionPresent: connection.sessionPresent });
    void reportDropped();
    void drain();
    // A fresh reading right away: the policy sends it if it is the first or has news, else holds it.
    void sampleOnce(false);
  }

  const onConnected = (connection: LinkConnection) => onOnline('connected', connection);
  const onResumed = (connection: LinkConnection) => onOnline('resumed', connection);
  const onInterrupted = (error: Error) => {
    online = false;
    log.warn('link down; telemetry paused, events queue on disk', { error });
  };

  function onCommand(topic: string, payload: Buffer): void {
    if (phase !== 'running') return;
    const request = topic.startsWith(commandPrefix) ? topic.slice(commandPrefix.length) : '';
    if (request !== COMMANDS.reportNow) {
      log.warn('unknown command ignored', { topic });
      return;
    }
    let body: unknown = {};
    const text = payload.toString('utf8').trim();
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        log.warn('malformed command ignored: payload is not JSON', { topic, bytes: payload.length });
        return;
      }
    }
    const command = ReportNowCommand.safeParse(body);
    if (!command.success) {
      const problem = command.error.issues[0];
      log.warn('malformed command ignored', {
        topic,
        field: problem?.path.join('.') || '(payload)',
        problem: problem?.message,
      });
      return;
    }
    const reply = answerReportNow(command.data.requestId).finally(() => replies.delete(reply));
    replies.add(reply);
  }

  async function answerReportNow(requestId: string | undefined): Promise<void> {
    const result = await sampleOnce(true);
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
    online = false;
    if (sampleTimer) clearTimeout(sampleTimer);
    sampleTimer = undefined;
    link.off('connected', onConnected);
    link.off('resumed', onResumed);
    link.off('interrupted', onInterrupted);
    // A sample or an event on its way to the broker may finish; one stuck on a dead link may not hold the stop.
    await settleWithin(Promise.all([sampling, draining, reportingDropped, ...replies]), stopTimeoutMs);
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
      link.on('connected', onConnected);
      link.on('resumed', onResumed);
      link.on('interrupted', onInterrupted);
      link.subscribe(commandFilter, onCommand).catch((error: unknown) => {
        log.error('subscribing to commands failed', { filter: commandFilter, error });
      });
      link.start().catch((error: unknown) => {
        if (phase === 'running') log.error('the link did not start', { error });
      });
      if (link.isConnected && !online) onConnected({ sessionPresent: false });
      const stats = queue.stats();
      log.info('agent started', { thingName: thing, telemetryTopic, pendingEvents: stats.pending });
      void sampleOnce(false);
      scheduleSample();
    },

    stop() {
      stopping ??= shutDown();
      return stopping;
    },

    async report(event) {
      if (phase !== 'running') throw new Error(`the agent cannot report events: it is ${phase}`);
      await queue.enqueue(event);
      void drain();
    },

    reportNow() {
      return sampleOnce(true);
    },
  };
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
