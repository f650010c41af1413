import pg from 'pg';
import { z } from 'zod';
import type { LatestTelemetry } from '../../schemas/index.js';
import type { RobotState } from '../domain/robot-state.js';
import { initialRobotState } from '../domain/robot-state.js';
import type { ApplyOptions, BatchSummary, ProjectionItem, ReadModelWriter } from '../app/read-model-writer.js';
import { fillGaps, findGaps, heldGaps, planBatch, robotIdsOf, robotRow, type BatchChanges, type StoredRobot } from './read-model-changes.js';

/** The writer's setting from the environment (the projector Lambda and the rebuild script). */
export const TelemetryRetentionEnv = z.object({
  TELEMETRY_RETENTION_DAYS: z.coerce.number().positive().max(3650).default(7),
});

export interface PgReadModelWriterOptions {
  /** Samples older than this, counted back from a robot's newest sample, are deleted. */
  readonly telemetryRetentionDays: number;
}

/**
 * Writes the read models in PostgreSQL: one transaction per batch, one statement per table whatever the batch size.
 * The robots rows of the batch are locked first, so a batch is folded on exactly what is stored; the events missing
 * between what is stored and what came are then read from the event log (`fillGap`) while the rows stay locked.
 */
export class PgReadModelWriter implements ReadModelWriter {
  constructor(
    private readonly pool: pg.Pool,
    private readonly options: PgReadModelWriterOptions,
  ) {
    if (!(Number.isFinite(options.telemetryRetentionDays) && options.telemetryRetentionDays > 0)) {
      throw new RangeError(`telemetryRetentionDays must be a positive number, got ${options.telemetryRetentionDays}`);
    }
  }

  async applyBatch(items: readonly ProjectionItem[], options: ApplyOptions = {}): Promise<BatchSummary> {
    const robotIds = robotIdsOf(items);
    if (robotIds.length === 0) return { applied: 0, skipped: 0, filled: [], held: [] };
    const client = await this.pool.connect();
    let broken = false;
    // The pool listens for errors on idle clients only. A checked-out one whose connection the server closes while
    // no query runs on it (while the log is read to fill a gap, say) emits 'error', which unheard would crash the
    // process; the next query on it fails instead, and the batch with it.
    const closed = () => (broken = true);
    client.on('error', closed);
    try {
      const stored = await beginAndLock(client, robotIds);
      const fills = await fillGaps(findGaps(stored, items), options.fillGap);
      const changes = planBatch(stored, [...items, ...fills.items]);
      await client.query([...writeStatements(changes, this.options.telemetryRetentionDays), 'COMMIT'].join(';\n'));
      return { applied: changes.applied, skipped: changes.skipped, filled: fills.filled, held: heldGaps(changes, fills) };
    } catch (error) {
      // A connection that cannot even roll back is not handed out again.
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw error;
    } finally {
      client.removeListener('error', closed);
      client.release(broken);
    }
  }

  /**
   * Empties what the event log can rebuild. Telemetry samples stay: they are not in the log, so a rebuild could only
   * bring back each robot's latest one and would lose the rest of the history.
   */
  async reset(): Promise<void> {
    await this.pool.query('TRUNCATE robots, robot_events, teleoperation_sessions, alerts');
  }
}

/*
 * Round trips, not statements, are what a batch costs (more so through RDS Proxy), so the SQL goes as multi-statement
 * simple queries: BEGIN with the lock, then every write and COMMIT, two round trips per batch. That protocol has no
 * parameters: each statement takes its rows as one quoted JSON document and expands it with jsonb_to_recordset.
 * PostgreSQL runs the statements in order and skips the rest after an error, leaving the transaction aborted for the
 * ROLLBACK above.
 */

const json = (value: unknown) => `${quote(toJson(value))}::jsonb`;

/**
 * Dollar quoting takes the text as is, with no escaping to get wrong or to pay for (escapeLiteral's character loop
 * was a measurable share of a batch); text with a `$` in it, which could close the quote, is escaped instead.
 */
function quote(text: string): string {
  return text.includes('$') ? pg.escapeLiteral(text) : `$rows$${text}$rows$`;
}

const ROBOT_COLUMNS = `robot_id text, model text, status text, lifecycle text, healthy boolean, deployable boolean,
  teleoperation_active boolean, warning_alerts integer, critical_alerts integer, state jsonb, view jsonb,
  last_seq bigint, telemetry jsonb, telemetry_at timestamptz, rejected_messages integer, last_rejection jsonb,
  software_version text`;

const selectForUpdate = (robotIds: readonly string[]) =>
  `SELECT robot_id, state, last_seq, telemetry FROM robots
   WHERE robot_id IN (SELECT jsonb_array_elements_text(${json(robotIds)}))
   ORDER BY robot_id FOR UPDATE`;

type LockedRow = { robot_id: string; state: RobotState; last_seq: string; telemetry: LatestTelemetry | null };

async function beginAndLock(client: pg.PoolClient, robotIds: readonly string[]): Promise<Map<string, StoredRobot>> {
  const [, locked] = (await client.query(`BEGIN; ${selectForUpdate(robotIds)}`)) as unknown as pg.QueryResult<LockedRow>[];
  const stored = storedRobots(locked!.rows);
  const missing = robotIds.filter((robotId) => !stored.has(robotId));
  if (missing.length === 0) return stored;
  // A robot seen for the first time gets its initial row now, so that it is locked like the others; a concurrent
  // writer that inserted it first wins (DO NOTHING) and the row is read back as it left it.
  const initial = missing.map((robotId) => robotRow(robotId, initialRobotState(robotId), 0, null));
  const [, created] = (await client.query(
    `INSERT INTO robots (robot_id, model, status, lifecycle, healthy, deployable, teleoperation_active,
       warning_alerts, critical_alerts, state, view, last_seq)
     SELECT robot_id, model, status, lifecycle, healthy, deployable, teleoperation_active,
       warning_alerts, critical_alerts, state, view, last_seq
     FROM jsonb_to_recordset(${json(initial)}) AS r(${ROBOT_COLUMNS})
     ORDER BY robot_id
     ON CONFLICT (robot_id) DO NOTHING;
     ${selectForUpdate(missing)}`,
  )) as unknown as pg.QueryResult<LockedRow>[];
  for (const [robotId, row] of storedRobots(created!.rows)) stored.set(robotId, row);
  return stored;
}

function storedRobots(rows: readonly LockedRow[]): Map<string, StoredRobot> {
  return new Map(
    rows.map((row) => [row.robot_id, { state: row.state, lastSeq: Number(row.last_seq), telemetry: row.telemetry }]),
  );
}

/** A session's length when its stop event does not say: the time between start and stop, if the clocks agree. */
const durationMs = (startedAt: string, stoppedAt: string) =>
  `CASE WHEN ${stoppedAt} >= ${startedAt} THEN floor(extract(epoch FROM ${stoppedAt} - ${startedAt}) * 1000)::bigint END`;

function writeStatements(changes: BatchChanges, retentionDays: number): string[] {
  const statements: string[] = [];
  const write = (rows: readonly unknown[], statement: (rows: string) => string) => {
    if (rows.length > 0) statements.push(statement(json(rows)));
  };
  write(
    changes.robots,
    // Rows with only a sample (RobotTelemetryRow) leave the state columns as they are. A row's telemetry is the stored
    // one (read under the lock) with the batch's merged in per metric, so it replaces the stored one unless older.
    (rows) => `UPDATE robots AS r SET
       model = COALESCE(u.model, r.model), status = COALESCE(u.status, r.status),
       lifecycle = COALESCE(u.lifecycle, r.lifecycle), healthy = COALESCE(u.healthy, r.healthy),
       deployable = COALESCE(u.deployable, r.deployable),
       teleoperation_active = COALESCE(u.teleoperation_active, r.teleoperation_active),
       warning_alerts = COALESCE(u.warning_alerts, r.warning_alerts),
       critical_alerts = COALESCE(u.critical_alerts, r.critical_alerts), state = COALESCE(u.state, r.state),
       rejected_messages = COALESCE(u.rejected_messages, r.rejected_messages),
       last_rejection = CASE WHEN u.state IS NULL THEN r.last_rejection ELSE u.last_rejection END,
       software_version = CASE WHEN u.state IS NULL THEN r.software_version ELSE u.software_version END,
       view = COALESCE(u.view, r.view), last_seq = COALESCE(u.last_seq, r.last_seq),
       telemetry = CASE WHEN u.telemetry_at >= r.telemetry_at OR r.telemetry_at IS NULL
         THEN COALESCE(u.telemetry, r.telemetry) ELSE r.telemetry END,
       telemetry_at = GREATEST(u.telemetry_at, r.telemetry_at),
       updated_at = now()
     FROM jsonb_to_recordset(${rows}) AS u(${ROBOT_COLUMNS})
     WHERE r.robot_id = u.robot_id`,
  );
  write(
    changes.events,
    (rows) => `INSERT INTO robot_events (robot_id, seq, event_id, type, version, at, recorded_at, data)
     SELECT * FROM jsonb_to_recordset(${rows}) AS e(robot_id text, seq bigint, event_id text, type text,
       version integer, at timestamptz, recorded_at timestamptz, data jsonb)
     ON CONFLICT DO NOTHING`,
  );
  // Close before open: a robot has at most one open session (and one open alert per metric), enforced by indexes.
  write(
    changes.sessionsClosed,
    (rows) => `UPDATE teleoperation_sessions AS s SET
       stopped_seq = c.stopped_seq, stopped_at = c.stopped_at, stop_reason = c.stop_reason,
       duration_ms = COALESCE(c.duration_ms, ${durationMs('s.started_at', 'c.stopped_at')})
     FROM jsonb_to_recordset(${rows}) AS c(robot_id text, stopped_seq bigint, stopped_at timestamptz,
       stop_reason text, duration_ms bigint)
     WHERE s.robot_id = c.robot_id AND s.stopped_seq IS NULL`,
  );
  write(
    changes.sessionsOpened,
    (rows) => `INSERT INTO teleoperation_sessions (robot_id, started_seq, operator_address, signals, score, started_at,
       stopped_seq, stopped_at, stop_reason, duration_ms)
     SELECT robot_id, started_seq, operator_address, signals, score, started_at, stopped_seq, stopped_at, stop_reason,
       COALESCE(duration_ms, ${durationMs('started_at', 'stopped_at')})
     FROM jsonb_to_recordset(${rows}) AS s(robot_id text, started_seq bigint, operator_address text, signals jsonb,
       score double precision, started_at timestamptz, stopped_seq bigint, stopped_at timestamptz, stop_reason text,
       duration_ms bigint)
     ON CONFLICT DO NOTHING`,
  );
  write(
    changes.alertsClosed,
    (rows) => `UPDATE alerts AS a SET cleared_seq = c.cleared_seq, cleared_at = c.cleared_at, cleared_value = c.cleared_value
     FROM jsonb_to_recordset(${rows}) AS c(robot_id text, metric text, cleared_seq bigint, cleared_at timestamptz,
       cleared_value double precision)
     WHERE a.robot_id = c.robot_id AND a.metric = c.metric AND a.cleared_seq IS NULL`,
  );
  write(
    changes.alertsRaised,
    (rows) => `INSERT INTO alerts (robot_id, raised_seq, metric, severity, value, threshold, raised_at, cleared_seq,
       cleared_at, cleared_value)
     SELECT * FROM jsonb_to_recordset(${rows}) AS a(robot_id text, raised_seq bigint, metric text, severity text,
       value double precision, threshold double precision, raised_at timestamptz, cleared_seq bigint,
       cleared_at timestamptz, cleared_value double precision)
     ON CONFLICT DO NOTHING`,
  );
  write(
    changes.samples,
    (rows) => `INSERT INTO telemetry_samples (robot_id, sampled_at, sample)
     SELECT * FROM jsonb_to_recordset(${rows}) AS t(robot_id text, sampled_at timestamptz, sample jsonb)
     ON CONFLICT DO NOTHING`,
  );
  // Retention counts back from each robot's newest sample rather than from the clock, so a replay of old data or
  // a robot that was switched off for a while keeps its last week of history.
  write(
    [...new Set(changes.samples.map((sample) => sample.robot_id))],
    (robotIds) => `DELETE FROM telemetry_samples AS t USING robots AS r
     WHERE r.robot_id IN (SELECT jsonb_array_elements_text(${robotIds})) AND t.robot_id = r.robot_id
       AND t.sampled_at < r.telemetry_at - ${retentionDays}::double precision * interval '1 day'`,
  );
  return statements;
}

/**
 * JSON for PostgreSQL. Its text and jsonb types cannot hold U+0000 or a lone surrogate, which JSON (and our zod
 * schemas) allow: such a character would fail the whole batch on every retry, so it becomes U+FFFD instead.
 */
export function toJson(value: unknown): string {
  const json = JSON.stringify(value);
  // JSON.stringify writes both as \u escapes; a match here is rare, and only then is the slower pass needed.
  if (!/\\u(?:0000|d[89a-f])/i.test(json)) return json;
  return JSON.stringify(value, (_key, field: unknown) =>
    typeof field === 'string' ? field.replace(UNSTORABLE_CHARACTERS, '\uFFFD') : field,
  );
}

const UNSTORABLE_CHARACTERS = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
