import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { createHttpApi } from '../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import { toHttpApiEvent } from '../../local/http-api-event.js';
import { TELEMETRY_HISTORY_MAX_SAMPLES, TelemetryHistory, type TelemetrySample } from '../../schemas/index.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { robotHistory, sample, seedReadModel } from '../support/read-model-seed.js';

/**
 * GET /api/v2/robots/{id}/telemetry on a real PostgreSQL read model: the HTTP layer with PgFleetQueries, samples in
 * `telemetry_samples` as the projector writes them (robot_id, sampled_at, sample).
 */

const NOW = Date.parse('2026-11-22T10:00:00.000Z');
const at = (msBeforeNow: number) => new Date(NOW - msBeforeNow).toISOString();
const MINUTE = 60_000;
const OPERATOR = { username: 'olga', 'cognito:groups': '[operator]' };

const CHARTED = 'lekiwi-LK0001';
const QUIET = 'lekiwi-LK0002';
const BUSY = 'xle-XL0001';
const OTHER = 'xle-XL0002';

let db: TestDatabase;
let api: ReturnType<typeof createHttpApi>;

async function insertSamples(robotId: string, samples: readonly TelemetrySample[]): Promise<void> {
  await db.pool.query(
    `INSERT INTO telemetry_samples (robot_id, sampled_at, sample)
     SELECT $1, (s ->> 'sampledAt')::timestamptz, s FROM jsonb_array_elements($2::jsonb) AS s`,
    [robotId, JSON.stringify(samples)],
  );
}

beforeAll(async () => {
  db = await createTestDatabase();
  await seedReadModel(
    db.pool,
    [CHARTED, QUIET, BUSY, OTHER].map((robotId) => ({ robotId, events: robotHistory(robotId) })),
  );
  await insertSamples(CHARTED, [
    sample(at(120 * MINUTE)),
    sample(at(60 * MINUTE), { cpuPercent: 1 }),
    sample(at(59 * MINUTE), { cpuPercent: 2 }),
    { sampledAt: at(30 * MINUTE), cpuTemperatureC: 70 },
    sample(at(1_000), { cpuPercent: 3 }),
    sample(at(0), { cpuPercent: 4 }),
  ]);
  await insertSamples(OTHER, [sample(at(10 * MINUTE))]);
  // One sample a second for more than the bound, all within the last two hours.
  const busy = Array.from({ length: TELEMETRY_HISTORY_MAX_SAMPLES + 100 }, (_, i) => ({ sampledAt: at((i + 1) * 1_000), load1: i }));
  await insertSamples(BUSY, busy);
  api = createHttpApi({
    queries: new PgFleetQueries(db.pool, { now: () => new Date(NOW) }),
    eventLog: new InMemoryEventLog(),
    robotCommands: { send: () => Promise.reject(new Error('no robot commands in this test')) },
    now: () => new Date(NOW),
    newEventId: () => 'evt-00000001',
  });
});

afterAll(async () => {
  await db?.drop();
});

async function get(robotId: string, query: Record<string, string> = {}) {
  const result = await api(
    toHttpApiEvent({ method: 'GET', path: `/api/v2/robots/${robotId}/telemetry`, query }, { routeKeys: ROUTE_KEYS, claims: OPERATOR }),
  );
  return { status: result.statusCode, body: JSON.parse(result.body) };
}

describe('GET /api/v2/robots/{id}/telemetry on PostgreSQL', () => {
  it("answers the robot's own samples of the last hour, oldest first, from inclusive and now exclusive", async () => {
    const answer = await get(CHARTED);
    expect(answer.status).toBe(200);
    expect(TelemetryHistory.parse(answer.body)).toEqual({
      robotId: CHARTED,
      from: at(60 * MINUTE),
      to: at(0),
      samples: [
        sample(at(60 * MINUTE), { cpuPercent: 1 }),
        sample(at(59 * MINUTE), { cpuPercent: 2 }),
        { sampledAt: at(30 * MINUTE), cpuTemperatureC: 70 },
        sample(at(1_000), { cpuPercent: 3 }),
      ],
      truncated: false,
    });
  });

  it('answers the window asked for', async () => {
    const answer = await get(CHARTED, { from: at(3 * 60 * MINUTE), to: at(59 * MINUTE) });
    expect(answer.status).toBe(200);
    expect(answer.body.samples.map((s: TelemetrySample) => s.sampledAt)).toEqual([at(120 * MINUTE), at(60 * MINUTE)]);
  });

  it('answers an empty list for a known robot without samples, and 404 for an unknown one', async () => {
    expect(await get(QUIET)).toMatchObject({ status: 200, body: { robotId: QUIET, samples: [], truncated: false } });
    const unknown = await get('lekiwi-LK9999');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('ROBOT_NOT_FOUND');
  });

  it('answers the newest samples of a window holding more than the bound, and pages back by to', async () => {
    const window = { from: at(120 * MINUTE), to: at(0) };
    const first = await get(BUSY, window);
    expect(first.status).toBe(200);
    expect(first.body.truncated).toBe(true);
    expect(first.body.samples).toHaveLength(TELEMETRY_HISTORY_MAX_SAMPLES);
    expect(first.body.samples[0]).toEqual({ sampledAt: at(TELEMETRY_HISTORY_MAX_SAMPLES * 1_000), load1: TELEMETRY_HISTORY_MAX_SAMPLES - 1 });
    expect(first.body.samples.at(-1)).toEqual({ sampledAt: at(1_000), load1: 0 });

    const before = await get(BUSY, { from: window.from, to: first.body.samples[0].sampledAt });
    expect(before.body.truncated).toBe(false);
    expect(before.body.samples).toHaveLength(100);
    expect(before.body.samples.at(-1)).toEqual({ sampledAt: at((TELEMETRY_HISTORY_MAX_SAMPLES + 1) * 1_000), load1: TELEMETRY_HISTORY_MAX_SAMPLES });
  });

  it('refuses a window over 24 hours naming from, before reading anything', async () => {
    const answer = await get(CHARTED, { from: at(25 * 60 * MINUTE), to: at(0) });
    expect(answer.status).toBe(400);
    expect(answer.body.error.details).toEqual([{ field: 'from', message: expect.stringMatching(/^must be at most 24 hours before to/) }]);
  });
});
