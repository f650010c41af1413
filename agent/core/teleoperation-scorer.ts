import { DEFAULT_TELEOPERATION_CONFIG, teleoperationConfig, type TeleoperationConfig } from './teleoperation-config.js';
import { assertNever } from '../../lib/assert-never.js';

/**
 * Decides whether someone is actually driving the robot, from cheap readings the agent takes every few tens of
 * milliseconds. "The host is running" or "someone is connected" is not driving (the legacy system's false positives);
 * only direct evidence of use starts a session: actions arriving at a driving rate, a local teleop program, a VR
 * controller link. Everything else only adds to the reported score. Pure: time comes in as `at`, decisions go out as
 * data.
 */

/** An established TCP connection on one of the watched local ports. */
export interface TcpPeer {
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

/** One reading. Counters are deltas since the previous reading, all connections of a port together. */
export interface TeleoperationObservation {
  /** Monotonic milliseconds; never earlier than the previous reading's. */
  readonly at: number;
  /** Inbound payload bytes on the command port (actions, plus each new connection's ZMTP greeting). */
  readonly commandBytesIn: number;
  /** Inbound action messages, when the adapter can count them; otherwise they are estimated from the bytes. */
  readonly commandMessagesIn?: number;
  /** Outbound payload bytes on the observation port. */
  readonly observationBytesOut: number;
  /** Established peers on the watched ports (see `watchedPorts`). */
  readonly peers: readonly TcpPeer[];
  /** The watched programs found running (see `watchedProcesses`). */
  readonly processes: readonly string[];
}

export type TeleoperationSignal =
  | 'actions'
  | 'command-peer'
  | 'observation-stream'
  | 'host-process'
  | 'vr-link'
  | 'vr-page'
  | `local-teleop:${string}`;

export type TeleoperationStopReason = 'idle' | 'peer-gone' | 'host-stopped' | 'process-exited';

export type TeleoperationTransition =
  | {
      readonly type: 'started';
      readonly at: number;
      /** Where the operator drives from: a peer address, `'local'` for an on-robot program, null when unseen. */
      readonly operatorAddress: string | null;
      readonly signals: readonly TeleoperationSignal[];
      readonly score: number;
    }
  | {
      readonly type: 'stopped';
      readonly at: number;
      readonly reason: TeleoperationStopReason;
      readonly durationMs: number;
    };

/** The operator address reported for teleop programs running on the robot itself. */
export const LOCAL_OPERATOR = 'local';

/**
 * How much each signal adds to the score. Direct evidence alone reaches 0.6; context (connected, host up, video
 * flowing) raises confidence up to 1 but can never start a session by itself.
 */
const SIGNAL_WEIGHTS = {
  actions: 0.6,
  'vr-link': 0.6,
  'local-teleop': 0.6,
  'command-peer': 0.2,
  'host-process': 0.1,
  'observation-stream': 0.1,
  'vr-page': 0.1,
} as const;

/** The direct evidence a session rests on. */
type Evidence = 'actions' | 'vr-link' | 'local-teleop';

interface TrackedPeer extends TcpPeer {
  readonly firstSeenAt: number;
}

interface Session {
  readonly startedAt: number;
  readonly via: Evidence;
  readonly operatorPeer: TcpPeer | null;
  readonly operatorAddress: string | null;
  /** Only a host seen during the session can end it by exiting (XLeRobot may have no LeKiwi host at all). */
  readonly hostSeen: boolean;
}

export interface TeleoperationState {
  readonly lastAt: number | null;
  readonly peers: readonly TrackedPeer[];
  /** Inbound command-port bytes still expected as greetings from recently arrived connections. */
  readonly handshakeAllowance: number;
  readonly lastArrivalAt: number | null;
  /** Readings with actions inside the start window. */
  readonly recentActions: readonly { readonly at: number; readonly count: number }[];
  /** Readings with observation traffic inside the stream window. */
  readonly recentObservationBytes: readonly { readonly at: number; readonly bytes: number }[];
  readonly lastActionAt: number | null;
  readonly lastVrLinkAt: number | null;
  readonly signals: readonly TeleoperationSignal[];
  readonly score: number;
  readonly session: Session | null;
}

export interface TeleoperationStep {
  readonly state: TeleoperationState;
  readonly transitions: readonly TeleoperationTransition[];
}

/** What the agent shows right now. `signals` and `score` are those of the latest reading. */
export interface TeleoperationDecision {
  readonly active: boolean;
  readonly since: number | null;
  readonly operatorAddress: string | null;
  readonly signals: readonly TeleoperationSignal[];
  readonly score: number;
}

export class InvalidTeleoperationObservation extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`teleoperation observation: ${field} ${problem}`);
    this.name = 'InvalidTeleoperationObservation';
  }
}

export function initialTeleoperationState(): TeleoperationState {
  return {
    lastAt: null,
    peers: [],
    handshakeAllowance: 0,
    lastArrivalAt: null,
    recentActions: [],
    recentObservationBytes: [],
    lastActionAt: null,
    lastVrLinkAt: null,
    signals: [],
    score: 0,
    session: null,
  };
}

/** The reducer: one reading in, the next state and any start/stop out. */
export function nextTeleoperationState(
  state: TeleoperationState,
  observation: TeleoperationObservation,
  config: TeleoperationConfig = DEFAULT_TELEOPERATION_CONFIG,
): TeleoperationStep {
  checkObservation(observation, state.lastAt);
  const { at } = observation;

  const { peers, arrivals } = trackPeers(state.peers, observation.peers, at);
  const commandArrivals = arrivals.filter((peer) => peer.localPort === config.commandPort).length;
  const { actions, handshakeAllowance } = countActions(state, observation, commandArrivals, config);

  const recentActions = state.recentActions.filter((reading) => at - reading.at < config.startWindowMs);
  if (actions > 0) recentActions.push({ at, count: actions });
  const drivingRate = recentActions.reduce((sum, reading) => sum + reading.count, 0) >= config.startMinActions;

  const hasPeer = (port: number) => peers.some((peer) => peer.localPort === port);
  const hostRunning = config.hostProcesses.some((name) => observation.processes.includes(name));
  const localTeleop = Object.entries(config.localTeleopProcesses)
    .filter(([, name]) => observation.processes.includes(name))
    .map(([label]) => label);
  const { recentObservationBytes, streaming } = observationStream(state, observation, config);

  const signals: TeleoperationSignal[] = [];
  if (drivingRate) signals.push('actions');
  if (hasPeer(config.commandPort)) signals.push('command-peer');
  if (streaming) signals.push('observation-stream');
  if (hostRunning) signals.push('host-process');
  for (const label of localTeleop) signals.push(`local-teleop:${label}`);
  if (hasPeer(config.vrLinkPort)) signals.push('vr-link');
  if (hasPeer(config.vrPagePort)) signals.push('vr-page');
  const score = scoreOf(signals);

  const next: TeleoperationState = {
    lastAt: at,
    peers,
    handshakeAllowance,
    lastArrivalAt: commandArrivals > 0 ? at : state.lastArrivalAt,
    recentActions,
    recentObservationBytes,
    lastActionAt: actions > 0 ? at : state.lastActionAt,
    lastVrLinkAt: hasPeer(config.vrLinkPort) ? at : state.lastVrLinkAt,
    signals,
    score,
    session: state.session,
  };

  if (state.session === null) {
    const via: Evidence | null = drivingRate
      ? 'actions'
      : hasPeer(config.vrLinkPort)
        ? 'vr-link'
        : localTeleop.length > 0
          ? 'local-teleop'
          : null;
    if (via === null) return { state: next, transitions: [] };
    const operatorPort = via === 'actions' ? config.commandPort : via === 'vr-link' ? config.vrLinkPort : null;
    const operatorPeer = operatorPort === null ? null : newestPeer(peers, operatorPort);
    const operatorAddress = via === 'local-teleop' ? LOCAL_OPERATOR : (operatorPeer?.remoteAddress ?? null);
    const session: Session = { startedAt: at, via, operatorPeer, operatorAddress, hostSeen: hostRunning };
    return {
      state: { ...next, session },
      transitions: [{ type: 'started', at, operatorAddress, signals, score }],
    };
  }

  const session: Session = { ...state.session, hostSeen: state.session.hostSeen || hostRunning };
  const hostStopped = session.hostSeen && !hostRunning;
  const fresh = (evidenceAt: number | null) => evidenceAt !== null && at - evidenceAt <= config.stopAfterMs;
  const alive =
    (!hostStopped && fresh(next.lastActionAt)) || localTeleop.length > 0 || fresh(next.lastVrLinkAt);
  if (alive) return { state: { ...next, session }, transitions: [] };

  // Evidence gathered during the session is spent: a host that just died must not restart it from stale actions.
  return {
    state: { ...next, recentActions: [], session: null },
    transitions: [
      { type: 'stopped', at, reason: stopReason(session, hostStopped, peers), durationMs: at - session.startedAt },
    ],
  };
}

/** The reducer with its state kept inside, for the agent's polling loop. */
export interface TeleoperationScorer {
  readonly config: TeleoperationConfig;
  observe(observation: TeleoperationObservation): readonly TeleoperationTransition[];
  state(): TeleoperationDecision;
}

export function createTeleoperationScorer(overrides: Partial<TeleoperationConfig> = {}): TeleoperationScorer {
  const config = teleoperationConfig(overrides);
  let state = initialTeleoperationState();
  return {
    config,
    observe(observation) {
      const step = nextTeleoperationState(state, observation, config);
      state = step.state;
      return step.transitions;
    },
    state: () => teleoperationDecision(state),
  };
}

export function teleoperationDecision(state: TeleoperationState): TeleoperationDecision {
  return {
    active: state.session !== null,
    since: state.session?.startedAt ?? null,
    operatorAddress: state.session?.operatorAddress ?? null,
    signals: state.signals,
    score: state.score,
  };
}

/** Actions in this reading: counted by the adapter, or estimated from the bytes left after new connections' greeting. */
function countActions(
  state: TeleoperationState,
  observation: TeleoperationObservation,
  commandArrivals: number,
  config: TeleoperationConfig,
): { actions: number; handshakeAllowance: number } {
  const kept =
    state.lastArrivalAt !== null && observation.at - state.lastArrivalAt <= config.handshakeWindowMs
      ? state.handshakeAllowance
      : 0;
  const allowance = kept + commandArrivals * config.zmtpHandshakeBytes;
  const greetingBytes = Math.min(allowance, observation.commandBytesIn);
  const actions =
    observation.commandMessagesIn ?? estimateActions(observation.commandBytesIn - greetingBytes, config.bytesPerAction);
  return { actions, handshakeAllowance: allowance - greetingBytes };
}

/** Frames come at up to 30 Hz, slower than a fast tick: the stream is judged over a window, not one reading. */
function observationStream(
  state: TeleoperationState,
  observation: TeleoperationObservation,
  config: TeleoperationConfig,
): { recentObservationBytes: TeleoperationState['recentObservationBytes']; streaming: boolean } {
  const recentObservationBytes = state.recentObservationBytes.filter(
    (reading) => observation.at - reading.at < config.observationWindowMs,
  );
  if (observation.observationBytesOut > 0) {
    recentObservationBytes.push({ at: observation.at, bytes: observation.observationBytesOut });
  }
  const bytes = recentObservationBytes.reduce((sum, reading) => sum + reading.bytes, 0);
  const streaming = bytes > 0 && (bytes * 1000) / config.observationWindowMs >= config.observationStreamBytesPerSecond;
  return { recentObservationBytes, streaming };
}

/**
 * Bytes are all the adapter may see. Rounding down means one long action never counts twice (which alone could
 * start a session); a tick holding two actions still counts two when each is at least `bytesPerAction`.
 */
function estimateActions(bytes: number, bytesPerAction: number): number {
  return bytes > 0 ? Math.max(1, Math.floor(bytes / bytesPerAction)) : 0;
}

function scoreOf(signals: readonly TeleoperationSignal[]): number {
  const total = signals.reduce((sum, signal) => sum + weightOf(signal), 0);
  return Math.min(1, Math.round(total * 100) / 100);
}

function weightOf(signal: TeleoperationSignal): number {
  if (signal.startsWith('local-teleop:')) return SIGNAL_WEIGHTS['local-teleop'];
  return SIGNAL_WEIGHTS[signal as Exclude<TeleoperationSignal, `local-teleop:${string}`>];
}

function stopReason(session: Session, hostStopped: boolean, peers: readonly TcpPeer[]): TeleoperationStopReason {
  if (hostStopped) return 'host-stopped';
  switch (session.via) {
    case 'local-teleop':
      return 'process-exited';
    case 'vr-link':
      // The link peer has been absent for the whole stop window, or the session would still be alive.
      return 'peer-gone';
    case 'actions': {
      const operator = session.operatorPeer;
      // A peer still ESTABLISHED but silent is an operator who stopped, or vanished without closing: both idle.
      return operator !== null && !peers.some((peer) => samePeer(peer, operator)) ? 'peer-gone' : 'idle';
    }
    default:
      return assertNever(session.via);
  }
}

function trackPeers(
  known: readonly TrackedPeer[],
  seen: readonly TcpPeer[],
  at: number,
): { peers: TrackedPeer[]; arrivals: TrackedPeer[] } {
  const arrivals: TrackedPeer[] = [];
  const peers = seen.map((peer) => {
    const existing = known.find((candidate) => samePeer(candidate, peer));
    if (existing) return existing;
    const { localPort, remoteAddress, remotePort } = peer;
    const arrival = { localPort, remoteAddress, remotePort, firstSeenAt: at };
    arrivals.push(arrival);
    return arrival;
  });
  return { peers, arrivals };
}

/** With several connections (say a stale one from a vanished operator), the newest is the likeliest driver. */
function newestPeer(peers: readonly TrackedPeer[], port: number): TcpPeer | null {
  let newest: TrackedPeer | null = null;
  for (const peer of peers) {
    if (peer.localPort === port && (newest === null || peer.firstSeenAt >= newest.firstSeenAt)) newest = peer;
  }
  return newest && { localPort: newest.localPort, remoteAddress: newest.remoteAddress, remotePort: newest.remotePort };
}

function samePeer(a: TcpPeer, b: TcpPeer): boolean {
  return a.localPort === b.localPort && a.remotePort === b.remotePort && a.remoteAddress === b.remoteAddress;
}

function checkObservation(observation: TeleoperationObservation, lastAt: number | null): void {
  const { at } = observation;
  const invalid = (field: string, problem: string) => new InvalidTeleoperationObservation(field, problem);
  if (typeof at !== 'number' || !Number.isFinite(at)) throw invalid('at', 'must be a finite number of milliseconds');
  if (lastAt !== null && at < lastAt) {
    throw invalid('at', `went backwards (${at} < ${lastAt}): readings need a monotonic clock`);
  }
  for (const field of ['commandBytesIn', 'observationBytesOut'] as const) {
    if (!isCount(observation[field])) throw invalid(field, 'must be a non-negative integer');
  }
  if (observation.commandMessagesIn !== undefined && !isCount(observation.commandMessagesIn)) {
    throw invalid('commandMessagesIn', 'must be a non-negative integer when given');
  }
  if (!Array.isArray(observation.peers)) throw invalid('peers', 'must be an array');
  observation.peers.forEach((peer, index) => {
    if (!isPort(peer?.localPort)) throw invalid(`peers[${index}].localPort`, 'must be a TCP port');
    if (!isPort(peer.remotePort)) throw invalid(`peers[${index}].remotePort`, 'must be a TCP port');
    if (typeof peer.remoteAddress !== 'string' || peer.remoteAddress === '') {
      throw invalid(`peers[${index}].remoteAddress`, 'must be a non-empty string');
    }
  });
  if (!Array.isArray(observation.processes) || !observation.processes.every((name) => typeof name === 'string')) {
    throw invalid('processes', 'must be an array of strings');
  }
}

function isCount(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

function isPort(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65_535;
}

