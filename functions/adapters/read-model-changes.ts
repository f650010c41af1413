import type { LatestTelemetry, RecordedEvent, TelemetrySample } from '../../schemas/index.js';
import type { FilledGap, GapFill, GapFiller, HeldGap, ProjectionItem, SequenceGap, StreamHead } from '../app/read-model-writer.js';
import { mergeTelemetry, newestSampleOf } from '../domain/latest-telemetry.js';
import { evolve, type RobotState } from '../domain/robot-state.js';
import { toRobotView } from '../domain/robot-view.js';

/**
 * What one batch of stream items changes in the read models, worked out in memory from the robots rows the batch
 * touches, so the writer can send one statement per table. Pure: the same rows and items always plan the same rows,
 * whatever the batch boundaries were, which is what lets a rebuild reproduce an incremental run. A robot's events
 * are folded only while they follow on from its last seq: nothing is ever projected past a missing event. The
 * missing events are found here (findGaps) and asked for (fillGaps) through the caller's filler, the one step
 * that is not pure; any writer of the read models goes through the same three.
 */

/** A robots row as loaded (locked) at the start of the batch. */
export interface StoredRobot {
  readonly state: RobotState;
  readonly lastSeq: number;
  /** The row's telemetry, which the batch's samples are merged into per metric (absent: none yet). */
  readonly telemetry?: LatestTelemetry | null;
}

// Row shapes use the column names: they go to PostgreSQL as JSON and come out of jsonb_to_recordset.
export interface RobotRow {
  robot_id: string;
  model: string;
  status: string;
  lifecycle: string;
  healthy: boolean;
  deployable: boolean;
  teleoperation_active: boolean;
  warning_alerts: number;
  critical_alerts: number;
  /** The robot's refused messages (migration 0004). */
  rejected_messages: number;
  last_rejection: { reason: string; topic: string | null; at: string } | null;
  /** The software version the robot runs (migration 0006), for `?version=`. */
  software_version: string | null;
  state: RobotState;
  view: unknown;
  last_seq: number;
  /** The stored telemetry with the batch's merged into it per metric (domain/latest-telemetry.ts). */
  telemetry: LatestTelemetry | null;
  telemetry_at: string | null;
}

export interface EventRow {
  robot_id: string;
  seq: number;
  event_id: string;
  type: string;
  version: number;
  at: string;
  recorded_at: string;
  data: unknown;
}

export interface SessionStop {
  stopped_seq: number;
  stopped_at: string;
  stop_reason: string;
  /** From the event; the writer computes it from the start when the event has none. */
  duration_ms: number | null;
}

export interface SessionRow extends Partial<SessionStop> {
  robot_id: string;
  started_seq: number;
  operator_address: string | null;
  signals: readonly string[];
  score: number | null;
  started_at: string;
}

/** Closes the session a previous batch left open. */
export interface SessionClose extends SessionStop {
  robot_id: string;
}

export interface AlertClear {
  cleared_seq: number;
  cleared_at: string;
  /** Null when a new raise of the same metric superseded the alert rather than a clear. */
  cleared_value: number | null;
}

export interface AlertRow extends Partial<AlertClear> {
  robot_id: string;
  raised_seq: number;
  metric: string;
  severity: string;
  value: number;
  threshold: number;
  raised_at: string;
}

/** Clears the alert of a metric that a previous batch left open. */
export interface AlertClose extends AlertClear {
  robot_id: string;
  metric: string;
}

export interface SampleRow {
  robot_id: string;
  sampled_at: string;
  sample: TelemetrySample;
}

/** A robots row whose state did not change, only (perhaps) its latest sample. */
export type RobotTelemetryRow = Pick<RobotRow, 'robot_id' | 'telemetry' | 'telemetry_at'>;

export interface BatchChanges {
  readonly robots: (RobotRow | RobotTelemetryRow)[];
  readonly events: EventRow[];
  readonly sessionsClosed: SessionClose[];
  readonly sessionsOpened: SessionRow[];
  readonly alertsClosed: AlertClose[];
  readonly alertsRaised: AlertRow[];
  readonly samples: SampleRow[];
  /** Events folded in; `skipped` were at or below the robot's last_seq (redeliveries). */
  applied: number;
  skipped: number;
  /** Per robot, the first missing event its batch did not bring: nothing of the robot from there on is applied. */
  readonly held: SequenceGap[];
}

/** The robots a batch changes: those with events or a new telemetry sample. */
export function robotIdsOf(items: readonly ProjectionItem[]): string[] {
  const ids = new Set<string>();
  for (const item of items) {
    if (item.kind === 'event') ids.add(item.recorded.event.robotId);
    else if (sampleOf(item.head)) ids.add(item.head.robotId);
  }
  // Sorted: every writer locks robots rows in the same order, so two of them never deadlock.
  return [...ids].sort();
}

/**
 * Every run of missing seqs between the robots' stored last seq and the events of the batch, per robot in seq
 * order: what has to be read from the event log before the batch can be folded.
 */
export function findGaps(stored: ReadonlyMap<string, StoredRobot>, items: readonly ProjectionItem[]): SequenceGap[] {
  const gaps: SequenceGap[] = [];
  for (const [robotId, { events }] of groupByRobot(items)) {
    let lastSeq = stored.get(robotId)?.lastSeq ?? 0;
    for (const seq of [...new Set(events.map((recorded) => recorded.seq))].sort((a, b) => a - b)) {
      if (seq <= lastSeq) continue;
      if (seq > lastSeq + 1) gaps.push({ robotId, afterSeq: lastSeq, nextSeq: seq });
      lastSeq = seq;
    }
  }
  return gaps;
}

/** Robots whose gaps are read from the log at the same time; one robot's gaps are read one after another. */
const FILL_CONCURRENCY = 8;

export interface Fills {
  readonly items: ProjectionItem[];
  readonly filled: FilledGap[];
  /** Why a robot's gap could not be filled; its later gaps are not even asked for. */
  readonly unavailable: Map<string, string>;
}

/**
 * Reads the gaps from the log, a robot's in seq order up to its first the log cannot fill. What it gives is checked:
 * only the missing events, all of them, of that robot; anything else counts as not given. A filler that throws
 * fails the batch (the transaction rolls back), as a failed write does.
 */
export async function fillGaps(gaps: readonly SequenceGap[], fillGap: GapFiller | undefined): Promise<Fills> {
  const fills: Fills = { items: [], filled: [], unavailable: new Map() };
  if (gaps.length === 0) return fills;
  const byRobot = new Map<string, SequenceGap[]>();
  for (const gap of gaps) byRobot.set(gap.robotId, [...(byRobot.get(gap.robotId) ?? []), gap]);
  const queue = [...byRobot.values()];
  const fillRobot = async (robotGaps: readonly SequenceGap[]) => {
    for (const gap of robotGaps) {
      const fill: GapFill = fillGap ? await fillGap(gap) : { unavailable: 'no event log to read the missing events from' };
      const problem = 'unavailable' in fill ? fill.unavailable : checkFill(gap, fill.events);
      if (problem !== null) {
        fills.unavailable.set(gap.robotId, problem);
        return;
      }
      if ('unavailable' in fill) return;
      fills.items.push(...fill.events.map((recorded) => ({ kind: 'event' as const, recorded })));
      fills.filled.push({ ...gap, events: fill.events.length });
    }
  };
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await fillRobot(next);
  };
  await Promise.all(Array.from({ length: Math.min(FILL_CONCURRENCY, queue.length) }, worker));
  return fills;
}

function checkFill(gap: SequenceGap, events: readonly RecordedEvent[]): string | null {
  const expected = gap.nextSeq - gap.afterSeq - 1;
  for (let index = 0; index < expected; index++) {
    const recorded = events[index];
    const seq = gap.afterSeq + 1 + index;
    if (!recorded || recorded.seq !== seq || recorded.event.robotId !== gap.robotId) {
      return `the event log did not give seq ${seq} of ${gap.robotId}`;
    }
  }
  return events.length === expected ? null : `the event log gave ${events.length} events for a gap of ${expected}`;
}

/** The gaps a plan stopped at, with why the log did not fill them. */
export function heldGaps(changes: Pick<BatchChanges, 'held'>, fills: Fills): HeldGap[] {
  return changes.held.map((gap) => ({
    ...gap,
    reason: fills.unavailable.get(gap.robotId) ?? `the event log did not give seq ${gap.afterSeq + 1} of ${gap.robotId}`,
  }));
}

/** `stored` must hold a row for every robot of `items` (the writer creates missing ones first). */
export function planBatch(stored: ReadonlyMap<string, StoredRobot>, items: readonly ProjectionItem[]): BatchChanges {
  const changes: BatchChanges = {
    robots: [],
    events: [],
    sessionsClosed: [],
    sessionsOpened: [],
    alertsClosed: [],
    alertsRaised: [],
    samples: [],
    applied: 0,
    skipped: 0,
    held: [],
  };
  for (const [robotId, { events, samples }] of groupByRobot(items)) {
    const row = stored.get(robotId);
    if (!row) throw new Error(`planBatch: no robots row loaded for ${robotId}`);
    const folded = foldEvents(robotId, row, events, changes);
    const telemetry = mergedTelemetry(robotId, row.telemetry ?? null, samples, changes);
    if (folded.lastSeq !== row.lastSeq) changes.robots.push(robotRow(robotId, folded.state, folded.lastSeq, telemetry));
    // Most batches bring a robot only a sample: its state is not sent back just to be written again.
    else if (telemetry) changes.robots.push({ robot_id: robotId, telemetry, telemetry_at: telemetry.sampledAt });
  }
  return changes;
}

interface HeadSample {
  readonly sample: LatestTelemetry;
  readonly revision: number;
}

/** A head written without a new sample (an append of events only) has nothing for the read models. */
function sampleOf(head: StreamHead): HeadSample | null {
  return head.telemetryChanged && head.telemetry ? { sample: head.telemetry, revision: head.revision } : null;
}

function groupByRobot(items: readonly ProjectionItem[]) {
  const robots = new Map<string, { events: RecordedEvent[]; samples: HeadSample[] }>();
  const entry = (robotId: string) => {
    let found = robots.get(robotId);
    if (!found) robots.set(robotId, (found = { events: [], samples: [] }));
    return found;
  };
  for (const item of items) {
    if (item.kind === 'event') {
      entry(item.recorded.event.robotId).events.push(item.recorded);
      continue;
    }
    const sample = sampleOf(item.head);
    if (sample) entry(item.head.robotId).samples.push(sample);
  }
  return robots;
}

/**
 * Folds the robot's new events in seq order, skipping any at or below last_seq and stopping at the first that does
 * not follow on (recorded in `held`), and records the event, session and alert rows they make. Sessions and alerts
 * follow the folded state: a row is open exactly while the state says so.
 */
function foldEvents(robotId: string, row: StoredRobot, events: RecordedEvent[], changes: BatchChanges) {
  let { state, lastSeq } = row;
  // What previous batches left open; those rows are closed by UPDATE, rows opened in this batch in memory.
  let priorSessionOpen = state.teleoperation.active;
  const priorAlertsOpen = new Set(Object.keys(state.alerts));
  let openSession: SessionRow | null = null;
  const openAlerts = new Map<string, AlertRow>();

  const stopSession = (stop: SessionStop) => {
    if (openSession) {
      Object.assign(openSession, stop);
      openSession = null;
    } else if (priorSessionOpen) {
      changes.sessionsClosed.push({ robot_id: robotId, ...stop });
      priorSessionOpen = false;
    }
  };
  const clearAlert = (metric: string, clear: AlertClear) => {
    const open = openAlerts.get(metric);
    if (open) {
      Object.assign(open, clear);
      openAlerts.delete(metric);
    } else if (priorAlertsOpen.delete(metric)) {
      changes.alertsClosed.push({ robot_id: robotId, metric, ...clear });
    }
  };

  for (const recorded of [...events].sort((a, b) => a.seq - b.seq)) {
    const { seq, event } = recorded;
    if (seq <= lastSeq) {
      changes.skipped++;
      continue;
    }
    if (seq > lastSeq + 1) {
      // Folding past a missing event would make a state the log never had; the rest waits until it is there.
      changes.held.push({ robotId, afterSeq: lastSeq, nextSeq: seq });
      break;
    }
    changes.events.push({
      robot_id: robotId,
      seq,
      event_id: event.eventId,
      type: event.type,
      version: event.version,
      at: event.at,
      recorded_at: recorded.recordedAt,
      data: event.data,
    });
    switch (event.type) {
      case 'TeleoperationStarted':
        // The decider always stops a session before starting another, and events are folded without gaps; should
        // a log ever hold a start without that stop, the start still closes it: never more than one open session.
        stopSession({ stopped_seq: seq, stopped_at: event.at, stop_reason: 'superseded', duration_ms: null });
        openSession = {
          robot_id: robotId,
          started_seq: seq,
          operator_address: event.data.operatorAddress ?? null,
          signals: event.data.signals,
          score: event.data.score ?? null,
          started_at: event.at,
        };
        changes.sessionsOpened.push(openSession);
        break;
      case 'TeleoperationStopped':
        stopSession({
          stopped_seq: seq,
          stopped_at: event.at,
          stop_reason: event.data.reason,
          duration_ms: event.data.durationMs ?? null,
        });
        break;
      case 'AlertRaised': {
        // Same reasoning as for sessions: a raise of a metric already raised replaces the open alert.
        clearAlert(event.data.metric, { cleared_seq: seq, cleared_at: event.at, cleared_value: null });
        const alert: AlertRow = {
          robot_id: robotId,
          raised_seq: seq,
          metric: event.data.metric,
          severity: event.data.severity,
          value: event.data.value,
          threshold: event.data.threshold,
          raised_at: event.at,
        };
        openAlerts.set(alert.metric, alert);
        changes.alertsRaised.push(alert);
        break;
      }
      case 'AlertCleared':
        clearAlert(event.data.metric, { cleared_seq: seq, cleared_at: event.at, cleared_value: event.data.value });
        break;
      default:
        // Every other event changes the robots row only, through evolve below.
        break;
    }
    state = evolve(state, event);
    lastSeq = seq;
    changes.applied++;
  }
  return { state, lastSeq };
}

/**
 * Records the newest sample of each of the batch's heads (as the robot sent it) and merges the heads' telemetry into the
 * stored one per metric, in revision order: the robots row's telemetry, or null when the batch brought none.
 */
function mergedTelemetry(robotId: string, stored: LatestTelemetry | null, samples: readonly HeadSample[], changes: BatchChanges) {
  let merged = stored;
  for (const { sample } of [...samples].sort((a, b) => a.revision - b.revision)) {
    changes.samples.push({ robot_id: robotId, sampled_at: sample.sampledAt, sample: newestSampleOf(sample) });
    merged = mergeTelemetry(merged, sample).latest;
  }
  return samples.length > 0 ? merged : null;
}

export function robotRow(robotId: string, state: RobotState, lastSeq: number, telemetry: LatestTelemetry | null): RobotRow {
  // Telemetry stays out of the view: it changes far more often than the state and the API merges it in.
  const view = toRobotView(state, lastSeq, null);
  return {
    robot_id: robotId,
    model: view.model,
    status: view.status,
    lifecycle: view.lifecycle,
    healthy: view.healthy,
    deployable: view.deployable,
    teleoperation_active: view.teleoperation.active,
    warning_alerts: view.alerts.filter((alert) => alert.severity === 'warning').length,
    critical_alerts: view.alerts.filter((alert) => alert.severity === 'critical').length,
    rejected_messages: view.rejectedMessages.count,
    last_rejection: view.rejectedMessages.last,
    software_version: view.software.version,
    state,
    view,
    last_seq: lastSeq,
    telemetry,
    telemetry_at: telemetry?.sampledAt ?? null,
  };
}
