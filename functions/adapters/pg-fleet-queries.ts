import type pg from 'pg';
import { z } from 'zod';
import {
  LIFECYCLES,
  ROBOT_MODELS,
  PresenceStatus,
  RobotId,
  type EventPage,
  type EventView,
  type FleetMetrics,
  type RobotPage,
  type LatestTelemetry,
  type RobotView,
  type TelemetrySample,
} from '../../schemas/index.js';
import {
  InvalidCursor,
  type EventListQuery,
  type FleetQueries,
  type RobotListQuery,
  type TelemetryHistoryQuery,
} from '../app/http/fleet-queries.js';
import { telemetryView } from '../domain/latest-telemetry.js';
import { decodeCursor, encodeCursor } from './keyset-cursor.js';

/**
 * The fleet's read side on the PostgreSQL read models (functions/migrations). Lists use keyset pagination on the
 * primary key (robot_id, or seq within a robot's history) so a page costs the same wherever it starts, and fetch one
 * row more than asked to know whether a next page exists without counting. Only `view` and `telemetry` leave the
 * database: the projector keeps the API's shape ready in `view`, with the latest sample stored apart because it
 * changes far more often than the rest. The telemetry is shown with each value's age counted to the query's clock.
 */
export class PgFleetQueries implements FleetQueries {
  private readonly now: () => Date;

  constructor(
    private readonly pool: pg.Pool,
    options: { readonly now?: () => Date } = {},
  ) {
    this.now = options.now ?? (() => new Date());
  }

  async listRobots(query: RobotListQuery): Promise<RobotPage> {
    const filters = {
      only: query.only ?? null,
      status: query.status ?? null,
      model: query.model ?? null,
      lifecycle: query.lifecycle ?? null,
      software_version: query.version ?? null,
    };
    const after = query.cursor ? decodeRobotCursor(query.cursor, filters) : null;
    const { rows } = await this.pool.query<RobotRow>(robotPageStatement(filters, after, query.limit + 1));
    const now = this.now();
    const items = rows.slice(0, query.limit).map((row) => toRobotView(row, now));
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > query.limit && last ? encodeCursor({ ...robotCursorBase, ...filters, after: last.robotId }) : null,
    };
  }

  async getRobot(robotId: string): Promise<RobotView | null> {
    const { rows } = await this.pool.query<RobotRow>('SELECT view, telemetry FROM robots WHERE robot_id = $1', [robotId]);
    const row = rows[0];
    return row ? toRobotView(row, this.now()) : null;
  }

  async listEvents(robotId: string, query: EventListQuery): Promise<EventPage | null> {
    const position = eventPosition(robotId, query);
    const ascending = position.order === 'ascending';
    const order = ascending ? 'ASC' : 'DESC';
    // Without a cursor a newest-first page starts above any sequence number, so one statement (and index range)
    // serves both. One round trip answers both "does the robot exist" (the outer row) and "its events" (the lateral
    // join, which yields one all-null row when the page is empty).
    const { rows } = await this.pool.query<EventRow>(
      `SELECT e.seq, e.event_id, e.type, e.version, e.at, e.recorded_at, e.data
         FROM robots r
         LEFT JOIN LATERAL (
           SELECT seq, event_id, type, version, at, recorded_at, data
             FROM robot_events
            WHERE robot_id = r.robot_id AND ${ascending ? 'seq > $2' : 'seq < $2'}
            ORDER BY seq ${order}
            LIMIT $3
         ) e ON true
        WHERE r.robot_id = $1
        ORDER BY e.seq ${order}`,
      [robotId, position.from, query.limit + 1],
    );
    if (rows.length === 0) return null;
    const events = rows.filter((row): row is EventRow & { seq: string } => row.seq !== null);
    const items = events.slice(0, query.limit).map(toEventView);
    const last = items.at(-1);
    const more = events.length > query.limit && last !== undefined;
    return {
      items,
      nextCursor: !more
        ? null
        : ascending
          ? encodeCursor({ ...eventsAfterCursorBase, robotId, after: last.seq })
          : encodeCursor({ ...eventCursorBase, robotId, before: last.seq }),
    };
  }

  async telemetryHistory(
    robotId: string,
    { from, to, limit }: TelemetryHistoryQuery,
  ): Promise<{ samples: TelemetrySample[]; truncated: boolean } | null> {
    // As listEvents: the outer row says whether the robot exists, the lateral join walks the primary key
    // (robot_id, sampled_at) backwards from `to`, one row more than asked to know whether the window held more.
    const { rows } = await this.pool.query<{ sampled_at: Date | null; sample: TelemetrySample | null }>(
      `SELECT s.sampled_at, s.sample
         FROM robots r
         LEFT JOIN LATERAL (
           SELECT sampled_at, sample
             FROM telemetry_samples
            WHERE robot_id = r.robot_id AND sampled_at >= $2 AND sampled_at < $3
            ORDER BY sampled_at DESC
            LIMIT $4
         ) s ON true
        WHERE r.robot_id = $1
        ORDER BY s.sampled_at DESC`,
      [robotId, from, to, limit + 1],
    );
    if (rows.length === 0) return null;
    const found = rows.flatMap((row) => (row.sample === null ? [] : [row.sample]));
    return { samples: found.slice(0, limit).reverse(), truncated: found.length > limit };
  }

  async metrics(): Promise<FleetMetrics> {
    // One scan, one round trip: a row per status, per lifecycle and per model, plus the grand total (the empty
    // grouping set, which PostgreSQL returns even for an empty fleet).
    const { rows } = await this.pool.query<MetricsRow>(
      `SELECT GROUPING(status)::int AS by_status, GROUPING(lifecycle)::int AS by_lifecycle, GROUPING(model)::int AS by_model,
              status, lifecycle, model,
              count(*)::int AS robots,
              (count(*) FILTER (WHERE healthy))::int AS healthy,
              (count(*) FILTER (WHERE deployable))::int AS deployable,
              (count(*) FILTER (WHERE teleoperation_active))::int AS teleoperations,
              coalesce(sum(warning_alerts), 0)::int AS warning_alerts,
              coalesce(sum(critical_alerts), 0)::int AS critical_alerts,
              coalesce(sum(rejected_messages), 0)::bigint AS rejected_messages,
              (count(*) FILTER (WHERE rejected_messages > 0))::int AS rejecting_robots
         FROM robots
        GROUP BY GROUPING SETS ((status), (lifecycle), (model), ())`,
    );
    const metrics: FleetMetrics = {
      robots: 0,
      byStatus: zeros(PresenceStatus.options),
      byLifecycle: zeros(LIFECYCLES),
      byModel: zeros(ROBOT_MODELS),
      healthy: 0,
      deployable: 0,
      activeTeleoperations: 0,
      activeAlerts: { warning: 0, critical: 0, total: 0 },
      rejectedMessages: { total: 0, robots: 0 },
    };
    for (const row of rows) {
      // GROUPING(x) is 0 when the row is grouped by x; the total row is the one grouped by none of them.
      if (row.by_status === 0) addKnown(metrics.byStatus, row.status, row.robots);
      else if (row.by_lifecycle === 0) addKnown(metrics.byLifecycle, row.lifecycle, row.robots);
      else if (row.by_model === 0) addKnown(metrics.byModel, row.model, row.robots);
      else {
        metrics.robots = row.robots;
        metrics.healthy = row.healthy;
        metrics.deployable = row.deployable;
        metrics.activeTeleoperations = row.teleoperations;
        metrics.activeAlerts = {
          warning: row.warning_alerts,
          critical: row.critical_alerts,
          total: row.warning_alerts + row.critical_alerts,
        };
        // bigint comes back as text: a fleet's sum may pass 2^31.
        metrics.rejectedMessages = { total: Number(row.rejected_messages), robots: row.rejecting_robots };
      }
    }
    return metrics;
  }
}

interface RobotRow {
  readonly view: Omit<RobotView, 'telemetry'>;
  readonly telemetry: LatestTelemetry | null;
}

interface EventRow {
  readonly seq: string | null;
  readonly event_id: string;
  readonly type: string;
  readonly version: number;
  readonly at: Date;
  readonly recorded_at: Date;
  readonly data: Record<string, unknown>;
}

interface MetricsRow {
  readonly by_status: number;
  readonly by_lifecycle: number;
  readonly by_model: number;
  readonly status: string | null;
  readonly lifecycle: string | null;
  readonly model: string | null;
  readonly robots: number;
  readonly healthy: number;
  readonly deployable: number;
  readonly teleoperations: number;
  readonly warning_alerts: number;
  readonly critical_alerts: number;
  readonly rejected_messages: string;
  readonly rejecting_robots: number;
}

/**
 * The projector stores the view with `telemetry: null` and the telemetry in its own column; the API shows them as one,
 * each value with its age at `now` (stale when the robot is offline or the value old: latest-telemetry.ts).
 */
function toRobotView(row: RobotRow, now: Date): RobotView {
  return { ...row.view, telemetry: telemetryView(row.telemetry, row.view.status === 'online', now) };
}

function toEventView(row: EventRow & { seq: string }): EventView {
  return {
    seq: Number(row.seq),
    eventId: row.event_id,
    type: row.type,
    version: row.version,
    at: row.at.toISOString(),
    recordedAt: row.recorded_at.toISOString(),
    data: row.data,
  };
}

function zeros<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

/** Counts a value the schema knows; anything else in the table would be a projector bug, not a new bucket. */
function addKnown(counts: Record<string, number>, key: string | null, count: number): void {
  if (key !== null && key in counts) counts[key] = (counts[key] ?? 0) + count;
}

type RobotFilters = {
  only: string | null;
  status: string | null;
  model: string | null;
  lifecycle: string | null;
  /** `?version=` (migration 0006's column and index). */
  software_version: string | null;
};

/**
 * Filter columns, the one with the most (and so the rarest) values first: it leads the index walk. A fleet runs a
 * handful of versions at a time, fewer than it has lifecycles in use only while a rollout is done.
 */
const FILTER_COLUMNS = ['software_version', 'lifecycle', 'status', 'model'] as const;

/**
 * One page of robots in robot_id order (keyset pagination), read through the index that fits the filters:
 * - with a version, status, model or lifecycle filter, that column's `(column, robot_id)` index, entered at `(value, after)`.
 *   The column's equality is written as a range of one value (`column >= v AND column <= v`) on purpose: a plain
 *   equality lets the planner drop the column from the ORDER BY and walk the primary key instead, filtering as it
 *   goes. It assumes the filter and robot_id are unrelated, but a robot id starts with its model (and robots of one
 *   site share serial ranges), so the matching rows can all sit at the far end of that walk: thousands of rows read
 *   for a page of a hundred. The range keeps the walk on the filter's index, which reads only the page;
 * - healthy or deployable alone: its partial index on robot_id (the predicate is written literally, as a partial
 *   index needs);
 * - no filter: the primary key.
 * Fetching `fetch` rows (one more than the page) tells whether there is a next page, with no count.
 */
function robotPageStatement(filters: RobotFilters, after: string | null, fetch: number): pg.QueryConfig {
  const values: unknown[] = [];
  const parameter = (value: unknown) => `$${values.push(value)}`;
  const conditions: string[] = filters.only ? [filters.only] : [];
  const leading = FILTER_COLUMNS.find((column) => filters[column] !== null);
  for (const column of FILTER_COLUMNS) {
    const value = filters[column];
    if (value !== null && column !== leading) conditions.push(`${column} = ${parameter(value)}`);
  }
  if (leading) {
    const value = parameter(filters[leading]);
    conditions.push(
      after === null ? `${leading} >= ${value}` : `(${leading}, robot_id) > (${value}, ${parameter(after)})`,
      `${leading} <= ${value}`,
    );
  } else if (after !== null) {
    conditions.push(`robot_id > ${parameter(after)}`);
  }
  const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';
  const order = leading ? `${leading}, robot_id` : 'robot_id';
  return { text: `SELECT view, telemetry FROM robots ${where} ORDER BY ${order} LIMIT ${parameter(fetch)}`, values };
}

const robotCursorBase = { v: 1, list: 'robots' } as const;
const RobotCursor = z
  .object({
    v: z.literal(1),
    list: z.literal('robots'),
    only: z.string().nullable(),
    status: z.string().nullable(),
    model: z.string().nullable(),
    lifecycle: z.string().nullable(),
    /** Absent in cursors handed out before the version filter existed (they had none). */
    software_version: z.string().nullable().optional(),
    after: RobotId,
  })
  .strict();

function decodeRobotCursor(cursor: string, filters: RobotFilters): string {
  const decoded = decodeCursor(cursor, RobotCursor);
  const sameQuery =
    decoded.only === filters.only &&
    decoded.status === filters.status &&
    decoded.model === filters.model &&
    decoded.lifecycle === filters.lifecycle &&
    (decoded.software_version ?? null) === filters.software_version;
  if (!sameQuery) throw new InvalidCursor('belongs to a list with other filters; start again without a cursor');
  return decoded.after;
}

/** A newest-first history page's position: events below `before`. */
const eventCursorBase = { v: 1, list: 'events' } as const;
const EventCursor = z
  .object({ v: z.literal(1), list: z.literal('events'), robotId: RobotId, before: z.number().int().positive() })
  .strict();
/** An oldest-first (`after`) page's position: events above `after`. Its own kind, so neither order reads the other's. */
const eventsAfterCursorBase = { v: 1, list: 'events-after' } as const;
const EventsAfterCursor = z
  .object({ v: z.literal(1), list: z.literal('events-after'), robotId: RobotId, after: z.number().int().nonnegative() })
  .strict();

type EventPosition = { readonly order: 'descending' | 'ascending'; readonly from: number };

/** Where a history page starts and in which order: from the cursor's kind when there is one, else from `after`. */
function eventPosition(robotId: string, query: EventListQuery): EventPosition {
  if (query.cursor === undefined) {
    return query.after === undefined ? { order: 'descending', from: Number.MAX_SAFE_INTEGER } : { order: 'ascending', from: query.after };
  }
  if (query.after !== undefined) throw new InvalidCursor('cannot be combined with after; follow nextCursor alone');
  const decoded = decodeCursor(query.cursor, z.union([EventCursor, EventsAfterCursor]));
  if (decoded.robotId !== robotId) throw new InvalidCursor("belongs to another robot's history");
  return decoded.list === 'events' ? { order: 'descending', from: decoded.before } : { order: 'ascending', from: decoded.after };
}
