import { join } from 'node:path';
import type { AgentEvent, TelemetrySample } from '../schemas/device.js';
import { ROBOT_REQUESTS, topics } from '../schemas/topics.js';
import { EventQueue } from './adapters/event-queue.js';
import { CommandRouter } from './command-router.js';
import { OutboxSender } from './outbox-sender.js';
import { TelemetryReporter } from './telemetry-reporter.js';
import type { Logger } from './adapters/json-log.js';
import type { Link, LinkConnection } from './adapters/mqtt-link.js';
import type { AgentConfig } from './config.js';
import { checkDeliverySettings, DEFAULT_DELIVERY_SETTINGS, type DeliverySettings } from './core/outbox-delivery.js';

/**
 * The agent runtime: what the robot says, and when, over whatever link it is given. `createAgent` only composes the
 * parts, each small enough to read on its own:
 *
 * - the outbox (agent/outbox-sender.ts): events are facts. `report` writes them to the on-disk queue first; whenever
 *   the link is up they go out oldest first at QoS 1 as AgentEventBatches carrying their outbox position, and leave
 *   the disk only once the cloud acknowledged them (`cmd/heartbeat/<thing>/ack`, EventsAck), not on the broker's
 *   PUBACK. What to send when is the pure delivery core, agent/core/outbox-delivery.ts. Events the full queue had to
 *   drop are reported, once the link is up, as an `EventsDropped { count }` put into the queue itself.
 * - telemetry (agent/telemetry-reporter.ts): a latest-value signal, read every `sampleIntervalMs`, sent (QoS 0)
 *   when the telemetry policy says so, not sent (nor kept) while offline.
 * - the command router (agent/command-router.ts): `cmd/heartbeat/<thing>/<request>` by its last level. `report-now`
 *   answers at once on `…/report-now/reply`; `ack` is the cloud's EventsAck; `commands` (certificate rotation) and
 *   `onCommand` (parts added later) bring their own. Anything else, or anything malformed, is logged and ignored: a
 *   bad message never stops the agent.
 * - the lifecycle (AgentLifecycle, below): start, stop, and the link's ups and downs told to each part.
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
   * One of COMMANDS cannot be taken over: createAgent throws.
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
  /**
   * Routes the command `cmd/heartbeat/<thing>/<request>` to `handler` (given its JSON body) from now on, before or
   * after start: how a part plugs in without editing this file. A promise it returns is waited for by stop()
   * (bounded); a throw or rejection is logged. A request that already has a handler throws. Returns the unregister.
   */
  onCommand(request: string, handler: (body: unknown) => void | Promise<void>): () => void;
}

/** The commands the agent understands, by the last topic level. */
export const COMMANDS = ROBOT_REQUESTS;

const DEFAULT_STOP_TIMEOUT_MS = 5_000;

export function createAgent(options: AgentOptions): Agent {
  const { config, link, log } = options;
  const clock = options.clock ?? { now: () => Date.now() };
  const queue = options.queue ?? new EventQueue({ directory: join(config.stateDir, 'queue'), log: (m, d) => log.warn(m, d) });
  const telemetry = new TelemetryReporter({ config, link, reader: options.telemetry, clock, log });
  const outbox = new OutboxSender({
    queue,
    link,
    topic: topics.events(config.thingName),
    clock,
    random: options.random ?? Math.random,
    settings: deliverySettings(config.delivery),
    log,
  });
  const router = new CommandRouter({ link, thingName: config.thingName, log });
  router.handle(COMMANDS.eventsAck, (body, { topic }) => outbox.onAck(topic, body));
  router.handle(COMMANDS.reportNow, (body, { topic }) => telemetry.answerReportNow(topic, body));
  for (const [request, handler] of Object.entries(options.commands ?? {})) router.handle(request, handler);
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const lifecycle = new AgentLifecycle({ thingName: config.thingName, link, log, outbox, telemetry, router, stopTimeoutMs });

  return {
    start: () => lifecycle.start(),
    stop: () => lifecycle.stop(),
    async report(event) {
      lifecycle.mustBeRunning('report events');
      await outbox.report(event);
    },
    reportNow: () => telemetry.sampleOnce(true),
    onLinkUp: (listener) => lifecycle.onLinkUp(listener),
    onCommand: (request, handler) => router.handle(request, handler),
  };
}

/**
 * Start, stop and the link's ups and downs, told to every part in one place.
 *
 * INVARIANTS
 * - Phases only move forward: new → running → stopping → stopped; the agent never restarts.
 * - Link events reach the parts only while running, and in a fixed order: on a connection the outbox first (its
 *   drain and its dropped-events report), then telemetry, then the link-up listeners; a listener that throws is
 *   logged and the others still run.
 * - stop() is idempotent (one shutdown, shared) and bounded: work under way gets `stopTimeoutMs`, then the queue is
 *   closed and the link stopped whatever is still hanging.
 */
class AgentLifecycle {
  private phase: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private stopping: Promise<void> | undefined;
  private readonly linkUpListeners = new Set<() => void>();
  private readonly onConnected = (connection: LinkConnection) => this.online('connected', connection);
  private readonly onResumed = (connection: LinkConnection) => this.online('resumed', connection);
  private readonly onInterrupted = (error: Error) => {
    this.deps.telemetry.linkDown();
    this.deps.outbox.linkDown();
    this.deps.log.warn('link down; telemetry paused, events queue on disk', { error });
  };

  constructor(
    private readonly deps: {
      readonly thingName: string;
      readonly link: Link;
      readonly log: Logger;
      readonly outbox: OutboxSender;
      readonly telemetry: TelemetryReporter;
      readonly router: CommandRouter;
      readonly stopTimeoutMs: number;
    },
  ) {}

  async start(): Promise<void> {
    if (this.phase !== 'new') throw new Error(`the agent cannot start: it is ${this.phase}`);
    const { link, log, outbox, telemetry, router } = this.deps;
    await outbox.start();
    // stop() while the queue was opening: it found nothing to close, so this closes it and goes no further.
    if (this.phase !== 'new') {
      outbox.stop();
      return outbox.close();
    }
    this.phase = 'running';
    telemetry.start();
    link.on('connected', this.onConnected);
    link.on('resumed', this.onResumed);
    link.on('interrupted', this.onInterrupted);
    router.start();
    link.start().catch((error: unknown) => {
      if (this.phase === 'running') log.error('the link did not start', { error });
    });
    if (link.isConnected && !telemetry.online) this.onConnected({ sessionPresent: false });
    log.info('agent started', { thingName: this.deps.thingName, telemetryTopic: telemetry.topic, ...outbox.status() });
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  mustBeRunning(what: string): void {
    if (this.phase !== 'running') throw new Error(`the agent cannot ${what}: it is ${this.phase}`);
  }

  onLinkUp(listener: () => void): () => void {
    this.linkUpListeners.add(listener);
    if (this.phase === 'running' && this.deps.telemetry.online) this.callLinkUp(listener);
    return () => void this.linkUpListeners.delete(listener);
  }

  private online(kind: 'connected' | 'resumed', connection: LinkConnection): void {
    if (this.phase !== 'running') return;
    this.deps.log.info(kind === 'connected' ? 'link up' : 'link back', { sessionPresent: connection.sessionPresent });
    this.deps.outbox.linkUp();
    this.deps.telemetry.linkUp();
    for (const listener of this.linkUpListeners) this.callLinkUp(listener);
  }

  private callLinkUp(listener: () => void): void {
    try {
      listener();
    } catch (error) {
      this.deps.log.warn('a link-up listener failed', { error });
    }
  }

  private async shutDown(): Promise<void> {
    const { link, log, outbox, telemetry, router } = this.deps;
    this.phase = 'stopping';
    router.stop();
    telemetry.stop();
    outbox.stop();
    link.off('connected', this.onConnected);
    link.off('resumed', this.onResumed);
    link.off('interrupted', this.onInterrupted);
    // A sample, an event or a command reply on its way to the broker may finish; one stuck on a dead link may not
    // hold the stop.
    await settleWithin(Promise.all([telemetry.idle(), outbox.idle(), router.idle()]), this.deps.stopTimeoutMs);
    await outbox.close();
    await link.stop();
    this.phase = 'stopped';
    log.info('agent stopped');
  }
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
