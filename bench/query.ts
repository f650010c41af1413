/**
 * `npm run bench:query [-- --robots 10000 --requests 2000 --seed 1]`
 *
 * Latency of `GET /api/v2/robots` through the real HttpApi handler, in-process and warm, on a read model of a
 * synthetic fleet in a PostgreSQL database of its own (on the local server, dropped at the end). Each request is an
 * API Gateway payload 2.0 event with the JWT authorizer's claims; only the handler's time counts. Aim: p99 ≤ 10 ms.
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { seededRandom } from '../lib/seeded-random.js';

// Powertools reads these when first imported (below): no log lines or metric dumps in the figures.
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
process.env.POWERTOOLS_METRICS_DISABLED ??= 'true';
process.env.POWERTOOLS_TRACE_ENABLED ??= 'false';
process.env.AWS_REGION ??= 'eu-west-1';

const { values } = parseArgs({
  options: {
    robots: { type: 'string', default: '10000' },
    requests: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '200' },
    seed: { type: 'string', default: '1' },
  },
});
const robotCount = positiveInteger('robots', values.robots);
const requests = positiveInteger('requests', values.requests);
const warmup = positiveInteger('warmup', values.warmup);
const random = seededRandom(positiveInteger('seed', values.seed));

const { createTestDatabase } = await import('../test/support/postgres.js');
const { robotHistory, sample, seedReadModel } = await import('../test/support/read-model-seed.js');
const { toHttpApiEvent } = await import('../local/http-api-event.js');
const { lambdaContext } = await import('../local/lambda-context.js');
const { ROUTE_KEYS } = await import('../functions/app/http/routes.js');

console.log(`GET /api/v2/robots on ${robotCount} robots, ${requests} requests after ${warmup} warm-up; node ${process.version}`);
const db = await createTestDatabase({ poolSize: 2 });
try {
  const seeding = performance.now();
  await seedReadModel(db.pool, syntheticFleet(robotCount));
  // A freshly bulk-loaded table has no statistics until autovacuum comes by; a live read model always has them.
  await db.pool.query('ANALYZE robots');
  console.log(`seeded in ${((performance.now() - seeding) / 1000).toFixed(1)} s`);

  // The handler reads its environment at import, as on a Lambda cold start. GET routes never touch the event log.
  process.env.DATABASE_URL = db.url;
  process.env.EVENT_LOG_TABLE = 'bench-query-unused';
  const { handler } = await import('../functions/handlers/http-api.js');
  const claims = { username: 'bench', 'cognito:groups': '[operator]' };
  const get = async (query: Record<string, string>) => {
    const event = toHttpApiEvent({ method: 'GET', path: '/api/v2/robots', query }, { routeKeys: ROUTE_KEYS, claims });
    const started = performance.now();
    const result = await handler(event, lambdaContext('HttpApi'));
    const ms = performance.now() - started;
    if (result.statusCode !== 200) throw new Error(`GET /api/v2/robots?${event.rawQueryString} answered ${result.statusCode}: ${result.body}`);
    return { ms, page: JSON.parse(result.body) as { items: unknown[]; nextCursor: string | null }, bytes: result.body.length };
  };

  // A deep page: the cursor after half the fleet, so keyset pagination is measured away from the start too.
  let deepCursor: string | null = null;
  for (let page = 0, cursor: string | null = null; page < Math.floor(robotCount / 2 / 500); page++) {
    const { page: body }: { page: { nextCursor: string | null } } = await get({ limit: '500', ...(cursor ? { cursor } : {}) });
    deepCursor = cursor = body.nextCursor;
  }

  const scenarios: { name: string; query: Record<string, string> }[] = [
    { name: 'no filter, limit 100', query: {} },
    { name: 'status=online', query: { status: 'online' } },
    { name: 'status=offline', query: { status: 'offline' } },
    { name: 'model=xle', query: { model: 'xle' } },
    { name: 'lifecycle=active', query: { lifecycle: 'active' } },
    { name: 'lifecycle=failed (rare)', query: { lifecycle: 'failed' } },
    { name: 'online+lekiwi+ready', query: { status: 'online', model: 'lekiwi', lifecycle: 'ready' } },
    { name: 'limit=10', query: { limit: '10' } },
    { name: 'limit=500', query: { limit: '500' } },
    { name: 'deep page (cursor), limit 100', query: deepCursor ? { cursor: deepCursor } : {} },
  ];

  for (let i = 0; i < warmup; i++) await get(scenarios[i % scenarios.length]!.query);

  const timings = scenarios.map(() => ({ ms: [] as number[], items: 0, bytes: 0 }));
  for (let i = 0; i < requests; i++) {
    const index = i % scenarios.length;
    const { ms, page, bytes } = await get(scenarios[index]!.query);
    const timing = timings[index]!;
    timing.ms.push(ms);
    timing.items += page.items.length;
    timing.bytes += bytes;
  }

  const rows = scenarios.map((scenario, index) => {
    const timing = timings[index]!;
    const n = timing.ms.length;
    return { name: scenario.name, ...stats(timing.ms), items: Math.round(timing.items / n), kb: timing.bytes / n / 1024 };
  });
  const overall = stats(timings.flatMap((timing) => timing.ms));
  console.log('');
  console.log(`${'filter'.padEnd(32)} ${'n'.padStart(5)} ${'p50'.padStart(7)} ${'p95'.padStart(7)} ${'p99'.padStart(7)} ${'max'.padStart(7)}  items    KB`);
  for (const row of rows) {
    console.log(
      `${row.name.padEnd(32)} ${String(row.n).padStart(5)} ${ms(row.p50)} ${ms(row.p95)} ${ms(row.p99)} ${ms(row.max)} ${String(row.items).padStart(6)} ${row.kb.toFixed(1).padStart(5)}`,
    );
  }
  console.log(`${'overall'.padEnd(32)} ${String(overall.n).padStart(5)} ${ms(overall.p50)} ${ms(overall.p95)} ${ms(overall.p99)} ${ms(overall.max)}`);
  console.log('');
  console.log(`p99 ${overall.p99.toFixed(2)} ms (aim ≤ 10 ms): ${overall.p99 <= 10 ? 'met' : 'NOT met'}`);
} finally {
  await db.drop();
}

/** A fleet with a realistic mix: mostly online and idle, some driven, some alerting, a few failed or unregistered. */
function syntheticFleet(count: number) {
  return Array.from({ length: count }, (_, i) => {
    const model = random() < 0.6 ? 'lekiwi' : 'xle';
    const robotId = `${model}-${model === 'lekiwi' ? 'LK' : 'XL'}${String(i).padStart(6, '0')}`;
    const online = random() < 0.8;
    const alerts: ('warning' | 'critical')[] = [];
    if (random() < 0.05) alerts.push('warning');
    if (random() < 0.02) alerts.push('critical');
    const events = robotHistory(robotId, {
      registered: random() >= 0.03,
      online,
      teleoperated: online && random() < 0.1,
      alerts,
      ...(random() < 0.02 ? { failed: 'marked failed by the benchmark' } : {}),
      startAt: Date.parse('2026-11-01T00:00:00.000Z') + i * 1000,
    });
    const telemetry = online ? sample('2026-11-02T00:00:00.000Z', { cpuPercent: Math.round(random() * 100) }) : null;
    return { robotId, events, telemetry };
  });
}

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
  return { n: sorted.length, p50: at(50), p95: at(95), p99: at(99), max: sorted.at(-1) ?? NaN };
}

function ms(value: number): string {
  return value.toFixed(2).padStart(7);
}

function positiveInteger(name: string, value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new Error(`--${name} must be a positive integer, not ${JSON.stringify(value)}`);
  return parsed;
}
