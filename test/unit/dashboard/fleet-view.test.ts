import { describe, expect, it } from 'vitest';
import { LIFECYCLES, ROBOT_MODELS, TELEMETRY_STALE_AFTER_MS } from '../../../schemas/index.js';
import {
  deriveRows,
  filterAndSort,
  LIFECYCLE_OPTIONS,
  MODEL_OPTIONS,
  nextSort,
  statusOf,
  withFilter,
  WORD_STALE_AFTER_MS,
  EMPTY_FLEET_ROUTE,
  type RowCache,
} from '../../../dashboard/src/views/fleet-model.js';
import { formatDuration } from '../../../dashboard/src/views/format.js';
import { robotView, telemetryAt } from './fixtures.js';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const robotsOf = (...views: ReturnType<typeof robotView>[]) => new Map(views.map((view) => [view.robotId, view]));

describe('fleet view model', () => {
  it('mirrors the schemas it cannot import without zod', () => {
    expect(WORD_STALE_AFTER_MS).toBe(TELEMETRY_STALE_AFTER_MS);
    expect([...MODEL_OPTIONS]).toEqual([...ROBOT_MODELS]);
    expect([...LIFECYCLE_OPTIONS]).toEqual([...LIFECYCLES]);
  });

  it('an online robot is stale once its newest word is older than 3 minutes; an offline one is offline whatever it said', () => {
    const fresh = robotView('lekiwi-A');
    expect(statusOf(fresh, T0 + 1_000)).toBe('online');
    expect(statusOf(fresh, T0 + WORD_STALE_AFTER_MS + 1)).toBe('stale');
    expect(statusOf(robotView('lekiwi-B', { telemetry: telemetryAt('2026-12-01T10:00:00.000Z', { stale: true }) }), T0)).toBe('stale');
    expect(statusOf(robotView('lekiwi-C', { telemetry: telemetryAt('2026-12-01T10:00:00.000Z', { ageMs: 200_000 }) }), T0)).toBe('stale');
    expect(statusOf(robotView('lekiwi-D', { status: 'offline' }), T0)).toBe('offline');
    expect(statusOf(robotView('lekiwi-E', { status: 'offline' }), T0 + 10 * WORD_STALE_AFTER_MS)).toBe('offline');
  });

  it('keeps the row object of a robot whose view and status did not change, so only changed rows re-render', () => {
    const cache: RowCache = new Map();
    const a = robotView('lekiwi-A');
    const b = robotView('lekiwi-B');
    const first = deriveRows(robotsOf(a, b), T0, cache);
    const b2 = { ...b, lifecycle: 'maintenance' as const };
    const second = deriveRows(robotsOf(a, b2), T0 + 1_000, cache);
    expect(second[0]).toBe(first[0]);
    expect(second[1]).not.toBe(first[1]);
    expect(second[1]!.view).toBe(b2);
    // Time alone turns a row stale: a new row for it, with the same view.
    const third = deriveRows(robotsOf(a, b2), T0 + WORD_STALE_AFTER_MS + 1, cache);
    expect(third[0]).not.toBe(second[0]);
    expect(third[0]!.status).toBe('stale');
    // A robot that left the fleet leaves the cache.
    deriveRows(robotsOf(a), T0, cache);
    expect([...cache.keys()]).toEqual(['lekiwi-A']);
  });

  it('filters by status, model, lifecycle, alert severity, teleoperation and free text together', () => {
    const rows = deriveRows(
      robotsOf(
        robotView('lekiwi-A', { alerts: [{ metric: 'cpuPercent', severity: 'critical', value: 99, threshold: 95, raisedAt: '2026-12-01T09:00:00Z' }] }),
        robotView('lekiwi-B', { alerts: [{ metric: 'diskPercent', severity: 'warning', value: 85, threshold: 80, raisedAt: '2026-12-01T09:00:00Z' }] }),
        robotView('xle-C', { teleoperation: { active: true, operatorAddress: '192.168.7.9', since: '2026-12-01T09:59:00Z', confirmed: true } }),
        robotView('lekiwi-D', { status: 'offline', lifecycle: 'failed', failure: { reason: 'Wheel motor stalled', by: 'alice', at: '2026-12-01T09:00:00Z' } }),
      ),
      T0,
      new Map(),
    );
    const ids = (filters: Parameters<typeof filterAndSort>[1]) => filterAndSort(rows, filters, null).map((row) => row.id);
    expect(ids({})).toEqual(['lekiwi-A', 'lekiwi-B', 'xle-C', 'lekiwi-D']);
    expect(ids({ status: 'offline' })).toEqual(['lekiwi-D']);
    expect(ids({ model: 'xle' })).toEqual(['xle-C']);
    expect(ids({ lifecycle: 'failed' })).toEqual(['lekiwi-D']);
    expect(ids({ alert: 'critical' })).toEqual(['lekiwi-A']);
    expect(ids({ alert: 'warning' })).toEqual(['lekiwi-B']);
    expect(ids({ alert: 'any' })).toEqual(['lekiwi-A', 'lekiwi-B']);
    expect(ids({ teleop: 'yes' })).toEqual(['xle-C']);
    expect(ids({ teleop: 'no', status: 'online' })).toEqual(['lekiwi-A', 'lekiwi-B']);
    expect(ids({ q: '192.168.7' })).toEqual(['xle-C']);
    expect(ids({ q: 'motor WHEEL' })).toEqual(['lekiwi-D']);
    expect(ids({ q: 'lekiwi-b' })).toEqual(['lekiwi-B']);
  });

  it('sorts by a column either way, robots without the value last both ways, ties in fleet order', () => {
    const rows = deriveRows(
      robotsOf(
        robotView('lekiwi-A', { telemetry: telemetryAt('2026-12-01T10:00:00.000Z', { cpuPercent: 50 }) }),
        robotView('lekiwi-B', { telemetry: null }),
        robotView('lekiwi-C', { telemetry: telemetryAt('2026-12-01T10:00:00.000Z', { cpuPercent: 5 }) }),
        robotView('lekiwi-D', { telemetry: telemetryAt('2026-12-01T10:00:00.000Z', { cpuPercent: 50 }) }),
        robotView('lekiwi-E', { telemetry: telemetryAt('2026-12-01T10:00:00.000Z', { cpuPercent: 90 }) }),
      ),
      T0,
      new Map(),
    );
    const order = (direction: 'asc' | 'desc') => filterAndSort(rows, {}, { column: 'cpu', direction }).map((row) => row.id);
    expect(order('asc')).toEqual(['lekiwi-C', 'lekiwi-A', 'lekiwi-D', 'lekiwi-E', 'lekiwi-B']);
    expect(order('desc')).toEqual(['lekiwi-E', 'lekiwi-A', 'lekiwi-D', 'lekiwi-C', 'lekiwi-B']);
    expect(filterAndSort(rows, {}, { column: 'robot', direction: 'desc' }).map((row) => row.id)[0]).toBe('lekiwi-E');
    // An unknown column (an old link) leaves the fleet order.
    expect(filterAndSort(rows, {}, { column: 'nope', direction: 'asc' }).map((row) => row.id)).toEqual(rows.map((row) => row.id));
  });

  it('the version column sorts releases as versions, unknown ones last; the search finds a version', () => {
    const rows = deriveRows(
      robotsOf(
        robotView('lekiwi-A', { software: { version: '1.10.0', update: null } }),
        robotView('lekiwi-B', { software: { version: null, update: null } }),
        robotView('lekiwi-C', { software: { version: '1.9.2', update: { deploymentId: 'dep-01JE0000000000000000000000', version: '1.10.0', state: 'installing', since: '2026-12-01T10:00:00Z' } } }),
        robotView('lekiwi-D', { software: { version: '2026.12.01-rc1', update: null } }),
      ),
      T0,
      new Map(),
    );
    expect(filterAndSort(rows, {}, { column: 'version', direction: 'asc' }).map((row) => row.id)).toEqual(['lekiwi-C', 'lekiwi-A', 'lekiwi-D', 'lekiwi-B']);
    expect(filterAndSort(rows, {}, { column: 'version', direction: 'desc' }).map((row) => row.id)).toEqual(['lekiwi-D', 'lekiwi-A', 'lekiwi-C', 'lekiwi-B']);
    expect(filterAndSort(rows, { q: '1.9.2' }, null).map((row) => row.id)).toEqual(['lekiwi-C']);
  });

  it('failed robots and critical alerts sort to the top of health and alerts descending/ascending as ops look for them', () => {
    const rows = deriveRows(
      robotsOf(
        robotView('lekiwi-OK'),
        robotView('lekiwi-FAILED', { lifecycle: 'failed', healthy: false, deployable: false }),
        robotView('lekiwi-CRIT', {
          healthy: false,
          deployable: false,
          alerts: [{ metric: 'cpuTemperatureC', severity: 'critical', value: 90, threshold: 85, raisedAt: '2026-12-01T09:00:00Z' }],
        }),
      ),
      T0,
      new Map(),
    );
    expect(filterAndSort(rows, {}, { column: 'health', direction: 'asc' }).map((row) => row.id)).toEqual(['lekiwi-FAILED', 'lekiwi-CRIT', 'lekiwi-OK']);
    expect(filterAndSort(rows, {}, { column: 'alerts', direction: 'desc' })[0]!.id).toBe('lekiwi-CRIT');
  });

  it('header clicks cycle asc → desc → none; filters set and clear in the route', () => {
    const asc = nextSort(EMPTY_FLEET_ROUTE, 'cpu');
    expect(asc).toEqual({ column: 'cpu', direction: 'asc' });
    const desc = nextSort({ ...EMPTY_FLEET_ROUTE, sort: asc }, 'cpu');
    expect(desc).toEqual({ column: 'cpu', direction: 'desc' });
    expect(nextSort({ ...EMPTY_FLEET_ROUTE, sort: desc }, 'cpu')).toBeNull();
    expect(nextSort({ ...EMPTY_FLEET_ROUTE, sort: desc }, 'disk')).toEqual({ column: 'disk', direction: 'asc' });
    const filtered = withFilter(withFilter(EMPTY_FLEET_ROUTE, 'status', 'stale'), 'q', 'abc');
    expect(filtered.filters).toEqual({ status: 'stale', q: 'abc' });
    expect(withFilter(filtered, 'status', '').filters).toEqual({ q: 'abc' });
  });

  it('says durations at a glance', () => {
    expect(formatDuration(400)).toBe('0 s');
    expect(formatDuration(45_000)).toBe('45 s');
    expect(formatDuration(5 * 60_000 + 59_000)).toBe('5 min');
    expect(formatDuration(2 * 3_600_000 + 5 * 60_000)).toBe('2 h 5 min');
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000)).toBe('3 d 4 h');
    expect(formatDuration(-5)).toBe('0 s');
  });
});
