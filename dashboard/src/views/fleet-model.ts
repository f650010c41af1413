import type { RobotView, TelemetryView } from '../../../schemas/index.js';
import type { FleetFilters, Route, SortDirection } from '../contracts.js';
import { parseTime, type NumericField } from './format.js';
import { certificateSortValue } from './certificate-model.js';
import { softwareOf, versionSortValue } from './software-model.js';

/**
 * The fleet table's pure core: one FleetRow per robot view, the filters of the URL, the sort values of each column.
 *
 * Invariants:
 * - a FleetRow is derived from one RobotView and one "now" only; deriveRows hands back the SAME row object as last time
 *   when neither the view nor the row's time-dependent status changed, so memoized rows re-render only when their
 *   robot changed (a frame that changes 20 robots re-renders 20 rows);
 * - "stale" is an online robot whose newest word is older than WORD_STALE_AFTER_MS (or that the cloud already calls
 *   stale); an offline robot is "offline", never "stale" or "online", whatever its last telemetry says.
 */

/**
 * Mirrors TELEMETRY_STALE_AFTER_MS (schemas/telemetry.ts, which imports zod and so stays out of the bundle); a unit
 * test checks that the two agree.
 */
export const WORD_STALE_AFTER_MS = 180_000;

/** Mirror schemas' ROBOT_MODELS and LIFECYCLES (zod-free for the bundle); a unit test checks they agree. */
export const MODEL_OPTIONS = ['lekiwi', 'xle'] as const;
export const LIFECYCLE_OPTIONS = ['discovered', 'provisioning', 'ready', 'active', 'maintenance', 'offline', 'failed'] as const;

export type FleetStatus = 'online' | 'offline' | 'stale';
export const FLEET_STATUSES: readonly FleetStatus[] = ['online', 'stale', 'offline'];

export const NUMERIC_COLUMNS = [
  { id: 'cpuTemperature', field: 'cpuTemperatureC', label: 'CPU temp' },
  { id: 'cpu', field: 'cpuPercent', label: 'CPU' },
  { id: 'memory', field: 'memoryPercent', label: 'Memory' },
  { id: 'disk', field: 'diskPercent', label: 'Disk' },
] as const satisfies readonly { id: string; field: NumericField; label: string }[];

/** The table's columns in display order (`data-col` of each cell, `sort=<column>:asc` in the URL). */
export const FLEET_COLUMNS = [
  'robot',
  'status',
  'lifecycle',
  'health',
  'teleoperation',
  'alerts',
  'cpuTemperature',
  'cpu',
  'memory',
  'disk',
  'version',
  'agentVersion',
  'lerobotVersion',
  'certificate',
  'lastSeen',
] as const;
export type FleetColumn = (typeof FLEET_COLUMNS)[number];

export function isFleetColumn(column: string): column is FleetColumn {
  return (FLEET_COLUMNS as readonly string[]).includes(column);
}

export interface FleetRow {
  readonly id: string;
  readonly view: RobotView;
  readonly status: FleetStatus;
  /** When the robot last said anything (epoch ms): lastSeenAt, else its newest sample; null if never. */
  readonly lastWordAt: number | null;
  /** From when (epoch ms) an online robot counts as stale: -Infinity if it already does, Infinity if never. */
  readonly staleFrom: number;
  readonly critical: number;
  readonly warning: number;
  /** Lower-case text the free-text search looks in: id, model, operator address, failure reason, software version. */
  readonly haystack: string;
}

/** The age of a telemetry value now: the cloud's age, or more when time has passed since (never less than it said). */
export function valueAgeMs(value: { sampledAt: string; ageMs: number }, now: number): number {
  const sampled = parseTime(value.sampledAt);
  return Math.max(value.ageMs, sampled === null ? 0 : now - sampled);
}

/** The newest word of the robot (epoch ms): the cloud's lastSeenAt, else its newest sample's time. */
export function lastWordAt(view: RobotView): number | null {
  return parseTime(view.lastSeenAt) ?? parseTime(view.telemetry?.sampledAt);
}

/**
 * From when an online robot is stale: when its newest sample (or, without telemetry, its last word) is older than
 * WORD_STALE_AFTER_MS by the cloud's age or by the clock, whichever says so first; at once if the cloud says stale.
 */
export function staleFromOf(view: RobotView): number {
  const telemetry = view.telemetry;
  if (telemetry === null) {
    const seen = parseTime(view.lastSeenAt);
    return seen === null ? Infinity : seen + WORD_STALE_AFTER_MS;
  }
  if (telemetry.stale || telemetry.ageMs > WORD_STALE_AFTER_MS) return -Infinity;
  const sampled = parseTime(telemetry.sampledAt);
  return sampled === null ? Infinity : sampled + WORD_STALE_AFTER_MS;
}

function statusFrom(view: RobotView, staleFrom: number, now: number): FleetStatus {
  if (view.status === 'offline') return 'offline';
  return now > staleFrom ? 'stale' : 'online';
}

export function statusOf(view: RobotView, now: number): FleetStatus {
  return statusFrom(view, staleFromOf(view), now);
}

/** Whether one value of the robot's telemetry is stale now (the cloud says so, it aged past the bound, or offline). */
export function isValueStale(view: RobotView, value: { sampledAt: string; ageMs: number; stale: boolean }, now: number): boolean {
  return view.status === 'offline' || value.stale || valueAgeMs(value, now) > WORD_STALE_AFTER_MS;
}

function buildRow(view: RobotView, now: number): FleetRow {
  let critical = 0;
  let warning = 0;
  for (const alert of view.alerts) {
    if (alert.severity === 'critical') critical += 1;
    else warning += 1;
  }
  const haystack = [view.robotId, view.model, view.teleoperation.operatorAddress ?? '', view.failure?.reason ?? '', softwareOf(view)?.version ?? '']
    .join('\n')
    .toLowerCase();
  const staleFrom = staleFromOf(view);
  return {
    id: view.robotId,
    view,
    status: statusFrom(view, staleFrom, now),
    lastWordAt: lastWordAt(view),
    staleFrom,
    critical,
    warning,
    haystack,
  };
}

/** Remembers the rows of the last derivation, so unchanged robots keep their row object. */
export type RowCache = Map<string, FleetRow>;

/**
 * One row per robot, in the map's order, reusing the cached row when its view and status did not change (no date is
 * parsed again for those); the cache keeps only the robots of this call.
 */
export function deriveRows(robots: ReadonlyMap<string, RobotView>, now: number, cache: RowCache): FleetRow[] {
  const rows: FleetRow[] = new Array(robots.size);
  let i = 0;
  for (const view of robots.values()) {
    const cached = cache.get(view.robotId);
    let row: FleetRow;
    if (cached && cached.view === view) {
      const status = statusFrom(view, cached.staleFrom, now);
      row = status === cached.status ? cached : { ...cached, status };
    } else row = buildRow(view, now);
    if (row !== cached) cache.set(view.robotId, row);
    rows[i++] = row;
  }
  if (cache.size > robots.size) for (const id of cache.keys()) if (!robots.has(id)) cache.delete(id);
  return rows;
}

// ---- filters ----

export function matchesStatus(row: FleetRow, status: FleetFilters['status']): boolean {
  return status === undefined || row.status === status;
}
export function matchesAlert(row: FleetRow, alert: FleetFilters['alert']): boolean {
  if (alert === undefined) return true;
  if (alert === 'critical') return row.critical > 0;
  if (alert === 'warning') return row.warning > 0;
  return row.critical + row.warning > 0;
}
export function matchesTeleop(row: FleetRow, teleop: FleetFilters['teleop']): boolean {
  return teleop === undefined || row.view.teleoperation.active === (teleop === 'yes');
}
/** Every whitespace-separated word of the query is in the row's id, model, operator address or failure reason. */
export function matchesQuery(row: FleetRow, q: string | undefined): boolean {
  if (!q) return true;
  for (const word of q.toLowerCase().split(/\s+/)) if (word && !row.haystack.includes(word)) return false;
  return true;
}

export function matchesFilters(row: FleetRow, filters: FleetFilters): boolean {
  return (
    matchesStatus(row, filters.status) &&
    (filters.model === undefined || row.view.model === filters.model) &&
    (filters.lifecycle === undefined || row.view.lifecycle === filters.lifecycle) &&
    matchesAlert(row, filters.alert) &&
    matchesTeleop(row, filters.teleop) &&
    matchesQuery(row, filters.q)
  );
}

// ---- sorting ----

const STATUS_RANK: Record<FleetStatus, number> = { offline: 0, stale: 1, online: 2 };
const LIFECYCLE_RANK: Record<string, number> = {
  failed: 0,
  offline: 1,
  maintenance: 2,
  discovered: 3,
  provisioning: 4,
  ready: 5,
  active: 6,
};

/**
 * The value a column sorts by: numbers and strings sort as such, undefined (the robot never said) sorts last either
 * way. Status and health sort worst first ascending, alerts most critical last ascending (so `desc` puts them on top).
 */
const FIELD_OF = Object.fromEntries(NUMERIC_COLUMNS.map((c) => [c.id, c.field])) as Record<
  (typeof NUMERIC_COLUMNS)[number]['id'],
  NumericField
>;

export function sortValue(row: FleetRow, column: FleetColumn): number | string | undefined {
  const view = row.view;
  switch (column) {
    case 'robot':
      return row.id;
    case 'status':
      return STATUS_RANK[row.status] * 1e13 + (row.lastWordAt ?? 0);
    case 'lifecycle':
      return LIFECYCLE_RANK[view.lifecycle] ?? 9;
    case 'health':
      return view.lifecycle === 'failed' ? 0 : view.healthy ? (view.deployable ? 3 : 2) : 1;
    case 'teleoperation':
      return view.teleoperation.active ? (parseTime(view.teleoperation.since) ?? 0) : undefined;
    case 'alerts':
      return row.critical * 10_000 + row.warning;
    case 'cpuTemperature':
    case 'cpu':
    case 'memory':
    case 'disk': {
      const value = view.telemetry?.[FIELD_OF[column]];
      return typeof value === 'number' ? value : undefined;
    }
    case 'version':
      return versionSortValue(view);
    case 'agentVersion':
      return view.telemetry?.agentVersion;
    case 'lerobotVersion':
      return view.telemetry?.lerobotVersion;
    case 'certificate':
      return certificateSortValue(view);
    case 'lastSeen':
      return row.lastWordAt ?? undefined;
  }
}

const COLLATOR = new Intl.Collator(undefined, { numeric: true });

/** Compares two sort values ascending; TanStack Table puts undefined last on its own. */
export function compareValues(a: number | string | undefined, b: number | string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return 1;
  if (b === undefined) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return COLLATOR.compare(String(a), String(b));
}

export function hasFilters(filters: FleetFilters): boolean {
  return Object.values(filters).some((value) => value !== undefined && value !== '');
}

/**
 * The rows the table shows: those matching the filters, sorted by the column (each row's sort value computed once;
 * ties keep the robots' order, so rows do not jump while values are equal). Robots that never sent a value sort last
 * in both directions.
 */
export function filterAndSort(
  rows: readonly FleetRow[],
  filters: FleetFilters,
  sort: { column: string; direction: SortDirection } | null,
): FleetRow[] {
  const out = hasFilters(filters) ? rows.filter((row) => matchesFilters(row, filters)) : rows.slice();
  if (!sort || !isFleetColumn(sort.column)) return out;
  const column = sort.column;
  const sign = sort.direction === 'asc' ? 1 : -1;
  const keyed = out.map((row, index) => ({ row, index, key: sortValue(row, column) }));
  keyed.sort((a, b) => {
    if (a.key === undefined || b.key === undefined) return a.key === b.key ? a.index - b.index : compareValues(a.key, b.key);
    return sign * compareValues(a.key, b.key) || a.index - b.index;
  });
  for (let i = 0; i < keyed.length; i++) out[i] = keyed[i]!.row;
  return out;
}

// ---- the fleet route ----

export type FleetRoute = Extract<Route, { view: 'fleet' }>;
export const EMPTY_FLEET_ROUTE: FleetRoute = { view: 'fleet', filters: {}, sort: null, selection: [] };

/** The fleet route with one filter set (or removed when `value` is empty), keeping the rest. */
export function withFilter<K extends keyof FleetFilters>(route: FleetRoute, key: K, value: FleetFilters[K] | ''): FleetRoute {
  const filters: Record<string, unknown> = { ...route.filters };
  if (value === '' || value === undefined) delete filters[key];
  else filters[key] = value;
  return { ...route, filters: filters as FleetFilters };
}

/** The next sort of a header click: none → asc → desc → none (another column starts at asc). */
export function nextSort(route: FleetRoute, column: FleetColumn): FleetRoute['sort'] {
  const current = route.sort;
  if (!current || current.column !== column) return { column, direction: 'asc' };
  if (current.direction === 'asc') return { column, direction: 'desc' };
  return null;
}

/** A telemetry value of the row, as a cell shows it, with its own age. */
export function metricOf(
  telemetry: TelemetryView | null,
  field: NumericField | 'agentVersion' | 'lerobotVersion',
): { value: number | string; sampledAt: string; ageMs: number; stale: boolean } | null {
  if (!telemetry) return null;
  const own = telemetry.metrics[field];
  if (own) return own;
  const value = telemetry[field];
  if (value === undefined) return null;
  return { value, sampledAt: telemetry.sampledAt, ageMs: telemetry.ageMs, stale: telemetry.stale };
}
