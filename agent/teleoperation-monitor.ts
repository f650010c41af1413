import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { AgentEvent } from '../schemas/device.js';
import type { Logger } from './adapters/json-log.js';
import type {
  TeleoperationDecision,
  TeleoperationObservation,
  TeleoperationScorer,
  TeleoperationTransition,
} from './core/teleoperation-scorer.js';

/**
 * The agent's teleoperation loop: every tick (33 ms by default, one LeKiwi action period, while someone is connected
 * or driving; 100 ms while nobody is: see `idleTickMs`) a reading from the probe
 * goes through the scorer, and each start or stop it decides becomes an AgentEvent (TeleoperationStarted /
 * TeleoperationStopped) handed to `report`, i.e. the agent's durable queue. Ticks never overlap (the next is
 * scheduled when one ends), reports keep their order, and nothing a tick does can throw out of the loop: a failed
 * reading or report is logged (the same failure once, until a tick succeeds again) and the loop goes on.
 *
 * A session still open when the monitor stops is reported stopped with reason `agent-stopped`, so the cloud does
 * not show a robot driven forever by an agent that went away.
 *
 * `announce()` (the agent calls it on every MQTT connection and reconnection) asks for a TeleoperationState: whether a
 * session is open now and since when (the occurredAt of its TeleoperationStarted). A dropped link does not end a
 * session in the cloud, it only leaves it unconfirmed; this statement confirms, closes or opens it there.
 * INVARIANTS of the statement: it is built after the next reading that was scored (never from no evidence) and goes
 * through the same report chain as the starts and stops, after the transitions of that reading, so in the queue it
 * always follows the events it sums up; requests made before it is sent are answered by one statement.
 */

export interface TeleoperationReading {
  read(at: number): Promise<TeleoperationObservation>;
  close?(): Promise<void> | void;
}

export interface TeleoperationClock {
  /** Monotonic milliseconds, for the scorer's windows. Default performance.now. */
  monotonicMs(): number;
  /** Wall-clock milliseconds since the epoch, for events' occurredAt. Default Date.now. */
  wallMs(): number;
}

export interface TeleoperationMonitorOptions {
  readonly probe: TeleoperationReading;
  readonly scorer: TeleoperationScorer;
  readonly report: (event: AgentEvent) => Promise<void>;
  readonly log: Logger;
  readonly clock?: TeleoperationClock;
  /** Milliseconds between readings while someone could be driving. Default 33. */
  readonly tickMs?: number;
  /**
   * Milliseconds between readings while nobody is connected to the command or VR link port and no session is open
   * (default 100; set it to tickMs to always read fast). Detection stays within ~100 ms: a connection first seen
   * on a slow tick counts its bytes from its start, so an operator who connects and drives at once shows several
   * actions in that very reading; from then on readings are fast.
   */
  readonly idleTickMs?: number;
  /** Called after each transition is handed to `report` (benches and tests measure latency here). */
  readonly onTransition?: (transition: MonitorTransition, event: AgentEvent) => void;
}

export interface TeleoperationMonitorState {
  readonly running: boolean;
  /** Whether readings are taken every tickMs (someone connected or driving) or every idleTickMs. */
  readonly pace: 'fast' | 'idle';
  readonly ticks: number;
  readonly failedTicks: number;
  readonly reported: number;
  readonly decision: TeleoperationDecision;
}

export interface TeleoperationMonitor {
  /** Ends the loop after the tick in flight, reports an open session as stopped, closes the probe. Idempotent. */
  stop(): Promise<void>;
  /** Reports a TeleoperationState after the next scored reading (call it on every connection of the link). */
  announce(): void;
  state(): TeleoperationMonitorState;
}

export const DEFAULT_TELEOPERATION_TICK_MS = 33;
export const DEFAULT_IDLE_TICK_MS = 100;

/** The scorer's transitions, plus the stop the monitor itself reports when it ends with a session open. */
export type MonitorTransition =
  | TeleoperationTransition
  | { readonly type: 'stopped'; readonly at: number; readonly reason: 'agent-stopped'; readonly durationMs: number };

export const systemTeleoperationClock: TeleoperationClock = {
  monotonicMs: () => performance.now(),
  wallMs: () => Date.now(),
};

/** The event a transition becomes: a fresh eventId (kept across redeliveries by the queue), wall-clock occurredAt. */
export function teleoperationEvent(transition: MonitorTransition, wallMs: number): AgentEvent {
  const envelope = { eventId: randomUUID(), occurredAt: new Date(wallMs).toISOString() };
  if (transition.type === 'started') {
    return {
      ...envelope,
      type: 'TeleoperationStarted',
      data: {
        ...(transition.operatorAddress === null ? {} : { operatorAddress: transition.operatorAddress }),
        signals: [...transition.signals],
        score: transition.score,
      },
    };
  }
  return {
    ...envelope,
    type: 'TeleoperationStopped',
    data: { durationMs: Math.max(0, Math.round(transition.durationMs)), reason: transition.reason },
  };
}

/** The agent's word on teleoperation right now; `since` is the occurredAt of the open session's start. */
export function teleoperationStateEvent(decision: TeleoperationDecision, since: string | null, wallMs: number): AgentEvent {
  const envelope = { eventId: randomUUID(), occurredAt: new Date(wallMs).toISOString() };
  if (!decision.active) return { ...envelope, type: 'TeleoperationState', data: { active: false, signals: [...decision.signals] } };
  return {
    ...envelope,
    type: 'TeleoperationState',
    data: {
      active: true,
      ...(since === null ? {} : { since }),
      ...(decision.operatorAddress === null ? {} : { operatorAddress: decision.operatorAddress }),
      signals: [...decision.signals],
      score: decision.score,
    },
  };
}

export function startTeleoperationMonitor(options: TeleoperationMonitorOptions): TeleoperationMonitor {
  const { probe, scorer, report, log } = options;
  const clock = options.clock ?? systemTeleoperationClock;
  const tickMs = options.tickMs ?? DEFAULT_TELEOPERATION_TICK_MS;
  if (!Number.isFinite(tickMs) || tickMs < 1) throw new RangeError(`tickMs must be at least 1, got ${tickMs}`);
  const idleTickMs = options.idleTickMs ?? Math.max(tickMs, DEFAULT_IDLE_TICK_MS);
  if (!Number.isFinite(idleTickMs) || idleTickMs < tickMs) {
    throw new RangeError(`idleTickMs must be at least tickMs (${tickMs}), got ${idleTickMs}`);
  }
  const { commandPort, vrLinkPort } = scorer.config;
  let pace: 'fast' | 'idle' = 'fast';

  let running = true;
  let ticks = 0;
  let failedTicks = 0;
  let reported = 0;
  let lastFailure: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let reports: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | undefined;
  /** A TeleoperationState is asked for (announce) and not yet handed to `report`. */
  let announcePending = false;
  /** The occurredAt of the open session's TeleoperationStarted, null while none is open. */
  let sessionSince: string | null = null;

  const queueReport = (event: AgentEvent) => {
    reports = reports
      .then(() => report(event))
      .then(
        () => void (reported += 1),
        (error: unknown) => log.error('teleoperation event could not be queued', { error, eventId: event.eventId, type: event.type }),
      );
  };

  const emit = (transition: MonitorTransition) => {
    let event: AgentEvent;
    try {
      event = teleoperationEvent(transition, clock.wallMs());
    } catch (error) {
      log.error('teleoperation event could not be built', { error, transition });
      return;
    }
    log.info(transition.type === 'started' ? 'teleoperation started' : 'teleoperation stopped', {
      eventId: event.eventId,
      ...event.data,
    });
    sessionSince = transition.type === 'started' ? event.occurredAt : null;
    queueReport(event);
    try {
      options.onTransition?.(transition, event);
    } catch (error) {
      log.warn('teleoperation onTransition hook failed', { error });
    }
  };

  const failed = (what: string, error: unknown) => {
    failedTicks += 1;
    const message = `${what}: ${(error as Error)?.message ?? String(error)}`;
    if (message !== lastFailure) log.warn(`teleoperation ${what} failed; will retry every tick`, { error });
    lastFailure = message;
  };

  async function tick(): Promise<void> {
    let observation: TeleoperationObservation;
    try {
      observation = await probe.read(clock.monotonicMs());
    } catch (error) {
      failed('reading', error);
      return;
    }
    if (!running) return;
    let transitions: readonly TeleoperationTransition[];
    try {
      transitions = scorer.observe(observation);
    } catch (error) {
      failed('scoring', error);
      return;
    }
    ticks += 1;
    const someoneThere = observation.peers.some((peer) => peer.localPort === commandPort || peer.localPort === vrLinkPort);
    pace = someoneThere || scorer.state().active ? 'fast' : 'idle';
    if (lastFailure !== undefined) log.info('teleoperation readings are back', { failedTicks });
    lastFailure = undefined;
    for (const transition of transitions) emit(transition);
    if (announcePending) stateNow();
  }

  /** The statement asked for by announce(), from the state this reading left. */
  const stateNow = () => {
    announcePending = false;
    const decision = scorer.state();
    const event = teleoperationStateEvent(decision, decision.active ? sessionSince : null, clock.wallMs());
    log.info('teleoperation state stated', { eventId: event.eventId, ...event.data });
    queueReport(event);
  };

  const schedule = (delay: number) => {
    if (!running) return;
    timer = setTimeout(() => {
      timer = undefined;
      const startedAt = clock.monotonicMs();
      inFlight = tick()
        .catch((error: unknown) => failed('tick', error))
        .finally(() => {
          inFlight = undefined;
          const spent = clock.monotonicMs() - startedAt;
          schedule(Math.max(0, (pace === 'fast' ? tickMs : idleTickMs) - spent));
        });
    }, delay);
  };
  schedule(0);
  log.info('teleoperation monitor started', { tickMs, idleTickMs });

  async function shutDown(): Promise<void> {
    running = false;
    if (timer) clearTimeout(timer);
    timer = undefined;
    await inFlight;
    const decision = scorer.state();
    if (decision.active && decision.since !== null) {
      const at = clock.monotonicMs();
      emit({ type: 'stopped', at, reason: 'agent-stopped', durationMs: at - decision.since });
    }
    await reports;
    try {
      await probe.close?.();
    } catch (error) {
      log.warn('closing the teleoperation probe failed', { error });
    }
    log.info('teleoperation monitor stopped', { ticks, failedTicks, reported });
  }

  return {
    stop() {
      stopping ??= shutDown();
      return stopping;
    },
    announce() {
      if (running) announcePending = true;
    },
    state: () => ({ running, pace, ticks, failedTicks, reported, decision: scorer.state() }),
  };
}
