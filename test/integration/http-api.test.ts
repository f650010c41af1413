import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import type { Jwks } from 'aws-jwt-verify/jwk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { EventPage, FleetMetrics, RobotPage, type EventView, type RobotView } from '../../schemas/index.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { evolve, initialRobotState } from '../../functions/domain/robot-state.js';
import type { HttpApiResult } from '../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import { toHttpApiEvent, type HttpApiEventV2, type PlainHttpRequest } from '../../local/http-api-event.js';
import { JwtAuthorizer } from '../../local/jwt-authorizer.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { robotHistory, sample, seedReadModel, type SeedRobot } from '../support/read-model-seed.js';

/**
 * /api/v2 through the real exported handler: API Gateway's JWT authorizer emulated with real RS256 tokens, events
 * shaped like API Gateway's, reads from a real PostgreSQL read model, commands into a real DynamoDB Local event log.
 */

const ISSUER = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TestPool';
const CLIENT_ID = 'dashboard-client';

type Handler = (event: HttpApiEventV2, context: ReturnType<typeof lambdaContext>) => Promise<HttpApiResult>;

let db: TestDatabase;
let table: Awaited<ReturnType<typeof createTestEventLog>>;
let log: DynamoEventLog;
let handler: Handler;
let authorizer: JwtAuthorizer;
type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

let signingKey: SigningKey;
let strangerKey: SigningKey;
let fleet: RobotView[];

const FLEET: SeedRobot[] = [
  { robotId: 'lekiwi-LK0001', events: robotHistory('lekiwi-LK0001'), telemetry: sample('2026-11-01T08:05:00.000Z') },
  { robotId: 'lekiwi-LK0002', events: robotHistory('lekiwi-LK0002', { teleoperated: true }) },
  { robotId: 'lekiwi-LK0003', events: robotHistory('lekiwi-LK0003', { online: false }) },
  { robotId: 'xle-XL0001', events: robotHistory('xle-XL0001', { alerts: ['critical'] }) },
  { robotId: 'xle-XL0002', events: robotHistory('xle-XL0002', { failed: 'gripper jammed', alerts: ['warning', 'warning'] }) },
  { robotId: 'xle-XL0003', events: robotHistory('xle-XL0003', { registered: false }) },
  // Enough more for several pages, in a spread of states.
  ...Array.from({ length: 30 }, (_, i): SeedRobot => {
    const robotId = `${i % 3 === 0 ? 'xle' : 'lekiwi'}-P${String(i).padStart(4, '0')}`;
    return { robotId, events: robotHistory(robotId, { online: i % 4 !== 0, teleoperated: i % 5 === 0, alerts: i % 7 === 0 ? ['warning'] : [] }) };
  }),
];

const byId = (a: { robotId: string }, b: { robotId: string }) => (a.robotId < b.robotId ? -1 : a.robotId > b.robotId ? 1 : 0);

beforeAll(async () => {
  [db, table] = await Promise.all([createTestDatabase(), createTestEventLog()]);
  log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  fleet = (await seedReadModel(db.pool, FLEET)).sort(byId);

  const keys = await generateKeyPair('RS256');
  signingKey = keys.privateKey;
  strangerKey = (await generateKeyPair('RS256')).privateKey;
  const jwk = { ...(await exportJWK(keys.publicKey)), kid: 'test-key', alg: 'RS256', use: 'sig' };
  authorizer = new JwtAuthorizer({ issuer: ISSUER, audience: [CLIENT_ID] });
  authorizer.cacheJwks({ keys: [jwk] } as Jwks);

  // The handler parses its environment once, at import: set it first, as Lambda would.
  process.env.DATABASE_URL = db.url;
  process.env.EVENT_LOG_TABLE = table.tableName;
  process.env.AWS_ENDPOINT_URL_DYNAMODB = inject('dynamoEndpoint');
  handler = (await import('../../functions/handlers/http-api.js')).handler as unknown as Handler;
});

afterAll(async () => {
  await Promise.all([db?.drop(), table?.drop()]);
});

// ---- helpers ----

interface TokenOptions {
  readonly groups?: readonly string[];
  readonly username?: string;
  readonly key?: SigningKey;
  readonly issuer?: string;
  readonly expiresAt?: number;
  readonly claims?: JWTPayload;
}

/** A Cognito-style access token (client_id, no aud). */
function token(options: TokenOptions = {}): Promise<string> {
  const payload: JWTPayload = {
    client_id: CLIENT_ID,
    token_use: 'access',
    scope: 'aws.cognito.signin.user.admin',
    username: options.username ?? 'olga',
    ...(options.groups ? { 'cognito:groups': [...options.groups] } : {}),
    ...options.claims,
  };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', kid: 'test-key' })
    .setSubject(randomUUID())
    .setIssuer(options.issuer ?? ISSUER)
    .setIssuedAt()
    .setExpirationTime(options.expiresAt ?? Math.floor(Date.now() / 1000) + 3600)
    .sign(options.key ?? signingKey);
}

const operator = () => token({ groups: ['operator'], username: 'olga' });
const engineer = () => token({ groups: ['engineer'], username: 'erin' });
const admin = () => token({ groups: ['admin'], username: 'ada' });

interface Answer {
  readonly status: number;
  readonly headers: Record<string, unknown>;
  readonly body: any;
}

/** A request through the gateway: the JWT authorizer first (it may answer by itself), then the handler. */
async function call(request: PlainHttpRequest, bearer?: string | null): Promise<Answer> {
  const headers = { ...request.headers, ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) };
  const auth = await authorizer.authorize(headers);
  if (!auth.authorized) {
    return { status: auth.response.statusCode, headers: auth.response.headers, body: JSON.parse(auth.response.body) };
  }
  return invoke(toHttpApiEvent({ ...request, headers }, { routeKeys: ROUTE_KEYS, claims: auth.claims, scopes: auth.scopes }));
}

async function invoke(event: HttpApiEventV2): Promise<Answer> {
  const result = await handler(event, lambdaContext('HttpApi'));
  expect(result.headers?.['content-type']).toBe('application/json');
  return { status: result.statusCode, headers: result.headers ?? {}, body: JSON.parse(result.body) };
}

const get = async (path: string, query?: Record<string, string>, bearer?: string | null) =>
  call({ method: 'GET', path, ...(query ? { query } : {}) }, bearer === undefined ? await operator() : bearer);

const post = async (path: string, body: unknown, bearer?: string | null, headers: Record<string, string> = {}) =>
  call(
    {
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    },
    bearer === undefined ? await engineer() : bearer,
  );

/** The fields a 400 names. */
const badFields = (answer: Answer) => [...new Set((answer.body.error.details as { field: string }[]).map((detail) => detail.field))].sort();

function expectError(answer: Answer, status: number, code: string) {
  expect(answer.status).toBe(status);
  expect(answer.body).toEqual({ error: { code, message: expect.any(String), details: answer.body.error.details } });
  expect(answer.body.error).toHaveProperty('details');
  expect(JSON.stringify(answer.body)).not.toMatch(/\bat .+\.(ts|js):\d+/);
}

/** Follows nextCursor from the first page to the last. */
async function walk(path: string, query: Record<string, string>): Promise<{ pages: number; items: { robotId?: string; seq?: number }[] }> {
  const items = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const answer = await get(path, { ...query, ...(cursor ? { cursor } : {}) });
    expect(answer.status).toBe(200);
    const page = path.endsWith('/events') ? EventPage.parse(answer.body) : RobotPage.parse(answer.body);
    items.push(...page.items);
    cursor = page.nextCursor;
    pages++;
  } while (cursor && pages < 100);
  return { pages, items };
}

/** An engineer-made robot in the event log: registered and online, as the write routes expect to find it. */
async function robotInLog(): Promise<string> {
  const robotId = `lekiwi-W${randomUUID().slice(0, 8)}`;
  const [registered, connected] = robotHistory(robotId);
  for (const event of [registered!, connected!]) {
    const head = await log.readHead(robotId);
    const outcome = await log.append({
      robotId,
      expectedRevision: head?.revision ?? null,
      expectedLastSeq: head?.lastSeq ?? 0,
      events: [event],
      state: evolve(head?.state ?? initialRobotState(robotId), event),
      recordedAt: event.at,
      previousTelemetry: null,
    });
    expect(outcome.status).toBe('appended');
  }
  return robotId;
}

// ---- reads ----

describe('GET /api/v2/robots', () => {
  it('lists every robot with its telemetry merged into the view, in robot id order', async () => {
    // When
    const answer = await get('/api/v2/robots', { limit: '500' });

    // Then
    expect(answer.status).toBe(200);
    expect(RobotPage.parse(answer.body)).toEqual({ items: fleet, nextCursor: null });
    const withSample = answer.body.items.find((robot: RobotView) => robot.robotId === 'lekiwi-LK0001');
    expect(withSample.telemetry).toMatchObject(sample('2026-11-01T08:05:00.000Z'));
  });

  it.each([
    [{ status: 'offline' }, (robot: RobotView) => robot.status === 'offline'],
    [{ model: 'xle' }, (robot: RobotView) => robot.model === 'xle'],
    [{ lifecycle: 'failed' }, (robot: RobotView) => robot.lifecycle === 'failed'],
    [{ lifecycle: 'active', model: 'lekiwi' }, (robot: RobotView) => robot.lifecycle === 'active' && robot.model === 'lekiwi'],
    [
      { status: 'online', model: 'xle', lifecycle: 'ready' },
      (robot: RobotView) => robot.status === 'online' && robot.model === 'xle' && robot.lifecycle === 'ready',
    ],
  ])('filters by %o', async (filter, keep) => {
    // Given
    const expected = fleet.filter(keep);
    expect(expected.length).toBeGreaterThan(0);

    // When
    const answer = await get('/api/v2/robots', filter);

    // Then
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ items: expected, nextCursor: null });
  });

  it.each([
    [{}, FLEET.length],
    [{ model: 'lekiwi' }, undefined],
    [{ status: 'online', lifecycle: 'ready' }, undefined],
  ])('walks every page of %o with no robot twice and none left out', async (filter, total) => {
    // Given
    const expected = fleet.filter(
      (robot) => Object.entries(filter).every(([key, value]) => robot[key as keyof RobotView] === value),
    );
    if (total !== undefined) expect(expected).toHaveLength(total);

    // When
    const { pages, items } = await walk('/api/v2/robots', { ...filter, limit: '4' });

    // Then
    expect(pages).toBe(Math.max(1, Math.ceil(expected.length / 4)));
    expect(items).toEqual(expected);
  });

  it('gives no next page when the last page is exactly full', async () => {
    const answer = await get('/api/v2/robots', { lifecycle: 'failed', limit: '1' });
    expect(answer.body.items).toHaveLength(1);
    expect(answer.body.nextCursor).toBeNull();
  });

  it.each([
    [{ status: 'sleeping' }, ['status']],
    [{ model: 'so100' }, ['model']],
    [{ lifecycle: 'retired' }, ['lifecycle']],
    [{ limit: '0' }, ['limit']],
    [{ limit: '501' }, ['limit']],
    [{ limit: 'ten' }, ['limit']],
    [{ limit: '2.5' }, ['limit']],
    [{ stauts: 'online' }, ['stauts']],
    [{ status: 'up', model: 'r2d2', limit: '-1' }, ['limit', 'model', 'status']],
  ])('refuses %o naming %o', async (query, fields) => {
    const answer = await get('/api/v2/robots', query);
    expectError(answer, 400, 'INVALID_REQUEST');
    expect(badFields(answer)).toEqual(fields);
  });

  it('refuses a cursor that is garbled, edited, or from a list with other filters', async () => {
    // Given a real cursor of the lekiwi list
    const first = await get('/api/v2/robots', { model: 'lekiwi', limit: '2' });
    const cursor: string = first.body.nextCursor;
    expect(cursor).toEqual(expect.any(String));
    const decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const edited = (change: object) => Buffer.from(JSON.stringify({ ...decoded, ...change })).toString('base64url');

    const attempts: Record<string, string>[] = [
      { cursor: 'not a cursor!' },
      { cursor: `${cursor.slice(0, -3)}***` },
      { cursor: Buffer.from('{"after":').toString('base64url') },
      { cursor: edited({ after: "x'; DROP TABLE robots; --" }) },
      { cursor: edited({ v: 2 }) },
      { cursor: edited({ list: 'events' }) },
      { cursor, model: 'xle' },
      { cursor, model: 'lekiwi', status: 'online' },
    ];
    for (const query of attempts) {
      // When
      const answer = await get('/api/v2/robots', { limit: '2', model: 'lekiwi', ...query });

      // Then
      expectError(answer, 400, 'INVALID_REQUEST');
      expect(badFields(answer)).toEqual(['cursor']);
    }
    // …while the cursor itself, on its own list, still works.
    expect((await get('/api/v2/robots', { model: 'lekiwi', limit: '2', cursor })).status).toBe(200);
  });
});

describe.each([
  ['/api/v2/robots/healthy', (robot: RobotView) => robot.healthy],
  ['/api/v2/robots/deployable', (robot: RobotView) => robot.deployable],
] as const)('GET %s', (path, keep) => {
  it('lists only those robots, and walks its pages without gaps', async () => {
    // Given
    const expected = fleet.filter(keep);
    expect(expected.length).toBeGreaterThan(3);
    expect(expected.length).toBeLessThan(fleet.length);

    // When
    const whole = await get(path, { limit: '500' });
    const { items } = await walk(path, { limit: '3' });

    // Then
    expect(whole.body).toEqual({ items: expected, nextCursor: null });
    expect(items).toEqual(expected);
  });

  it('narrows by model too', async () => {
    const answer = await get(path, { model: 'xle' });
    expect(answer.body.items).toEqual(fleet.filter((robot) => keep(robot) && robot.model === 'xle'));
  });

  it('refuses bad parameters and a cursor of another list', async () => {
    const fromAll = (await get('/api/v2/robots', { limit: '1' })).body.nextCursor as string;
    const tooMany = await get(path, { limit: '1000', model: 'robot' });
    const foreign = await get(path, { cursor: fromAll, limit: '1' });
    expect(badFields(tooMany)).toEqual(['limit', 'model']);
    expect(badFields(foreign)).toEqual(['cursor']);
  });
});

describe('GET /api/v2/robots/{id}', () => {
  it('answers the robot as the read model has it, telemetry included', async () => {
    const answer = await get('/api/v2/robots/lekiwi-LK0001');
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual(fleet.find((robot) => robot.robotId === 'lekiwi-LK0001'));
    expect(answer.body.telemetry).not.toBeNull();
  });

  it('shows why a failed robot failed, and its alerts', async () => {
    const answer = await get('/api/v2/robots/xle-XL0002');
    expect(answer.body).toMatchObject({
      lifecycle: 'failed',
      healthy: false,
      failure: { reason: 'gripper jammed', by: 'seed' },
      alerts: [expect.objectContaining({ severity: 'warning' }), expect.objectContaining({ severity: 'warning' })],
    });
  });

  it('answers 404 for a robot the fleet does not know', async () => {
    expectError(await get('/api/v2/robots/lekiwi-NOPE0001'), 404, 'ROBOT_NOT_FOUND');
  });

  it.each(['not-a-robot', 'so100-X1', 'lekiwi-', 'lekiwi-%2Fetc'])('answers 400 naming id for %s', async (id) => {
    const answer = await get(`/api/v2/robots/${id}`);
    expectError(answer, 400, 'INVALID_REQUEST');
    expect(badFields(answer)).toEqual(['id']);
  });

  it('refuses query parameters it does not know', async () => {
    expect(badFields(await get('/api/v2/robots/lekiwi-LK0001', { verbose: 'true' }))).toEqual(['verbose']);
  });
});

describe('GET /api/v2/robots/{id}/events', () => {
  const history = (robotId: string): EventView[] =>
    FLEET.find((robot) => robot.robotId === robotId)!
      .events.map((event, index) => ({
        seq: index + 1,
        eventId: event.eventId,
        type: event.type,
        version: event.version,
        at: event.at,
        recordedAt: event.at,
        data: event.data as Record<string, unknown>,
      }))
      .reverse();

  it('answers the history newest first', async () => {
    const answer = await get('/api/v2/robots/xle-XL0002/events');
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ items: history('xle-XL0002'), nextCursor: null });
    expect(answer.body.items[0].type).toBe('RobotMarkedFailed');
  });

  it('walks the history page by page with no event twice and none left out', async () => {
    const expected = history('xle-XL0002');
    expect(expected.length).toBeGreaterThan(3);
    const { pages, items } = await walk('/api/v2/robots/xle-XL0002/events', { limit: '2' });
    expect(pages).toBe(Math.ceil(expected.length / 2));
    expect(items).toEqual(expected);
  });

  it('refuses a bad limit, and a cursor of another robot', async () => {
    const other = (await get('/api/v2/robots/lekiwi-LK0002/events', { limit: '1' })).body.nextCursor as string;
    expect(badFields(await get('/api/v2/robots/xle-XL0002/events', { limit: '0' }))).toEqual(['limit']);
    expect(badFields(await get('/api/v2/robots/xle-XL0002/events', { cursor: other }))).toEqual(['cursor']);
    expect(badFields(await get('/api/v2/robots/xle-XL0002/events', { status: 'online' }))).toEqual(['status']);
    expect(badFields(await get('/api/v2/robots/nobody/events'))).toEqual(['id']);
    expect(badFields(await get('/api/v2/robots/nobody/events', { limit: '9999' }))).toEqual(['id', 'limit']);
  });

  it('answers 404 for a robot the fleet does not know', async () => {
    expectError(await get('/api/v2/robots/xle-UNKNOWN/events'), 404, 'ROBOT_NOT_FOUND');
  });
});

describe('GET /api/v2/metrics', () => {
  it('counts the fleet by status, lifecycle and model, with every key present', async () => {
    // Given the counts the seeded views imply
    const count = (keep: (robot: RobotView) => boolean) => fleet.filter(keep).length;
    const alerts = (severity: string) => fleet.flatMap((robot) => robot.alerts).filter((alert) => alert.severity === severity).length;

    // When
    const answer = await get('/api/v2/metrics');

    // Then
    expect(answer.status).toBe(200);
    expect(FleetMetrics.parse(answer.body)).toEqual({
      robots: fleet.length,
      byStatus: { online: count((r) => r.status === 'online'), offline: count((r) => r.status === 'offline') },
      byLifecycle: {
        discovered: count((r) => r.lifecycle === 'discovered'),
        provisioning: 0,
        ready: count((r) => r.lifecycle === 'ready'),
        active: count((r) => r.lifecycle === 'active'),
        maintenance: 0,
        offline: count((r) => r.lifecycle === 'offline'),
        failed: count((r) => r.lifecycle === 'failed'),
      },
      byModel: { lekiwi: count((r) => r.model === 'lekiwi'), xle: count((r) => r.model === 'xle') },
      healthy: count((r) => r.healthy),
      deployable: count((r) => r.deployable),
      activeTeleoperations: count((r) => r.teleoperation.active),
      activeAlerts: { warning: alerts('warning'), critical: alerts('critical'), total: alerts('warning') + alerts('critical') },
      rejectedMessages: { total: 0, robots: 0 },
    });
    expect(answer.body.activeAlerts.critical).toBeGreaterThan(0);
  });

  it('answers zeros, not missing keys, for an empty fleet', async () => {
    // Given a second handler process on an empty database would need a second import; the query is the same, so
    // the empty case is checked on the adapter directly.
    const empty = await createTestDatabase();
    try {
      const { PgFleetQueries } = await import('../../functions/adapters/pg-fleet-queries.js');
      const metrics = await new PgFleetQueries(empty.pool).metrics();
      expect(metrics).toEqual({
        robots: 0,
        byStatus: { online: 0, offline: 0 },
        byLifecycle: { discovered: 0, provisioning: 0, ready: 0, active: 0, maintenance: 0, offline: 0, failed: 0 },
        byModel: { lekiwi: 0, xle: 0 },
        healthy: 0,
        deployable: 0,
        activeTeleoperations: 0,
        activeAlerts: { warning: 0, critical: 0, total: 0 },
        rejectedMessages: { total: 0, robots: 0 },
      });
    } finally {
      await empty.drop();
    }
  });

  it('refuses query parameters', async () => {
    expect(badFields(await get('/api/v2/metrics', { model: 'xle' }))).toEqual(['model']);
  });
});

// ---- commands (DynamoDB Local event log) ----

describe('POST /api/v2/robots/{id}/fail', () => {
  it('marks the robot failed in the event log, by the caller, and answers the robot as the log has it', async () => {
    // Given
    const robotId = await robotInLog();

    // When
    const answer = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'left wheel motor stalls' });

    // Then
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({
      robot: expect.objectContaining({
        robotId,
        lifecycle: 'failed',
        healthy: false,
        failure: { reason: 'left wheel motor stalls', by: 'erin', at: expect.any(String) },
        lastSeq: 3,
      }),
      appended: [{ seq: 3, type: 'RobotMarkedFailed', eventId: expect.stringMatching(/^[0-9a-f-]{36}$/) }],
    });
    const { events } = await log.readEvents(robotId);
    expect(events.at(-1)?.event).toMatchObject({
      type: 'RobotMarkedFailed',
      eventId: answer.body.appended[0].eventId,
      data: { reason: 'left wheel motor stalls', by: 'erin' },
    });
  });

  it('answers 409 when the robot is already failed', async () => {
    const robotId = await robotInLog();
    expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'first' })).status).toBe(200);
    const again = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'second' });
    expectError(again, 409, 'ALREADY_FAILED');
    expect((await log.readEvents(robotId)).events).toHaveLength(3);
  });

  it('answers a retry of a fail that succeeded with 200 and appends nothing', async () => {
    // Given a failure recorded under a key whose answer the client never got
    const robotId = await robotInLog();
    const key = `fail-${randomUUID()}`;
    expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, undefined, { 'Idempotency-Key': key })).status).toBe(200);

    // When the client retries it
    const retry = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, undefined, { 'Idempotency-Key': key });

    // Then it gets the first answer again, not a 409, and the log holds one failure (more in idempotency-keys.test.ts)
    expect(retry.status).toBe(200);
    expect(retry.body.appended).toEqual([{ seq: 3, type: 'RobotMarkedFailed', eventId: expect.any(String) }]);
    expect(retry.body.robot.failure).toMatchObject({ reason: 'overheats' });
    expect((await log.readEvents(robotId)).events.filter((e) => e.event.type === 'RobotMarkedFailed')).toHaveLength(1);
  });

  it('keeps the Idempotency-Key out of event ids, so a replay after a recovery adds nothing', async () => {
    // Given a failure recorded under a key, then a recovery
    const robotId = await robotInLog();
    const key = `fail-${randomUUID()}`;
    const first = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, undefined, { 'Idempotency-Key': key });
    expect(first.body.appended).toEqual([{ seq: 3, type: 'RobotMarkedFailed', eventId: expect.stringMatching(/^[0-9a-f-]{36}$/) }]);
    expect((await post(`/api/v2/robots/${robotId}/recover`, {})).status).toBe(200);

    // When the first request is delivered again
    const replay = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, undefined, { 'Idempotency-Key': key });

    // Then it answers as the first time did, nothing is appended and the robot stays recovered
    expect(replay).toEqual(first);
    expect((await log.readEvents(robotId)).events.map((recorded) => recorded.event.type)).toEqual([
      'RobotRegistered',
      'RobotConnected',
      'RobotMarkedFailed',
      'RobotRecovered',
    ]);
  });

  it.each([
    [{}, ['reason']],
    [{ reason: '   ' }, ['reason']],
    [{ reason: 'x'.repeat(501) }, ['reason']],
    [{ reason: 42 }, ['reason']],
    [{ reason: 'ok', severity: 'high' }, ['severity']],
    [['reason'], ['body']],
    ['{"reason": "unterminated', ['body']],
    [undefined, ['reason']],
  ])('answers 400 for body %j naming %o, and writes nothing', async (body, fields) => {
    const robotId = await robotInLog();
    const answer = await post(`/api/v2/robots/${robotId}/fail`, body);
    expectError(answer, 400, 'INVALID_REQUEST');
    expect(badFields(answer)).toEqual(fields);
    expect((await log.readEvents(robotId)).events).toHaveLength(2);
  });

  it('answers 400 naming id and Idempotency-Key when they are malformed, and every bad part at once', async () => {
    const badId = await post('/api/v2/robots/robot-1/fail', { reason: 'x' });
    const badKey = await post('/api/v2/robots/lekiwi-LK0001/fail', { reason: 'x' }, undefined, { 'Idempotency-Key': 'a b' });
    const allBad = await post('/api/v2/robots/robot-1/fail', { reason: '' }, undefined, { 'Idempotency-Key': 'short' });
    expect(badFields(badId)).toEqual(['id']);
    expect(badFields(badKey)).toEqual(['Idempotency-Key']);
    expect(badFields(allBad)).toEqual(['Idempotency-Key', 'id', 'reason']);
  });

  it('answers 403 to an operator, naming the role needed, and writes nothing', async () => {
    const robotId = await robotInLog();
    const answer = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'x' }, await operator());
    expectError(answer, 403, 'FORBIDDEN');
    expect(answer.body.error.message).toMatch(/engineer/);
    expect((await log.readEvents(robotId)).events).toHaveLength(2);
  });

  it('lets an admin do it too (admin ⊇ engineer)', async () => {
    const robotId = await robotInLog();
    const answer = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'audit' }, await admin());
    expect(answer.status).toBe(200);
    expect(answer.body.robot.failure.by).toBe('ada');
  });

  it('answers 404 for a robot the event log does not know', async () => {
    expectError(await post('/api/v2/robots/lekiwi-GHOST01/fail', { reason: 'x' }), 404, 'ROBOT_NOT_FOUND');
    expect(await log.readHead('lekiwi-GHOST01')).toBeNull();
  });
});

describe('POST /api/v2/robots/{id}/recover', () => {
  it('recovers a failed robot, with an optional note', async () => {
    // Given
    const robotId = await robotInLog();
    await post(`/api/v2/robots/${robotId}/fail`, { reason: 'battery' });

    // When
    const answer = await post(`/api/v2/robots/${robotId}/recover`, { note: 'battery swapped' });

    // Then
    expect(answer.status).toBe(200);
    expect(answer.body.robot).toMatchObject({ robotId, failure: null, lifecycle: 'ready', healthy: true, lastSeq: 4 });
    expect(answer.body.appended).toEqual([{ seq: 4, type: 'RobotRecovered', eventId: expect.any(String) }]);
    expect((await log.readEvents(robotId)).events.at(-1)?.event.data).toEqual({ by: 'erin', note: 'battery swapped' });
  });

  it('needs no body at all', async () => {
    const robotId = await robotInLog();
    await post(`/api/v2/robots/${robotId}/fail`, { reason: 'battery' });
    expect((await post(`/api/v2/robots/${robotId}/recover`, undefined)).status).toBe(200);
  });

  it('answers 409 when the robot is not failed', async () => {
    expectError(await post(`/api/v2/robots/${await robotInLog()}/recover`, {}), 409, 'NOT_FAILED');
  });

  it.each([
    [{ note: 'x'.repeat(501) }, ['note']],
    [{ reason: 'wrong body' }, ['reason']],
    ['not json', ['body']],
  ])('answers 400 for body %j naming %o', async (body, fields) => {
    const answer = await post(`/api/v2/robots/${await robotInLog()}/recover`, body);
    expectError(answer, 400, 'INVALID_REQUEST');
    expect(badFields(answer)).toEqual(fields);
  });

  it('answers 403 to an operator and 404 for an unknown robot', async () => {
    expectError(await post('/api/v2/robots/lekiwi-LK0001/recover', {}, await operator()), 403, 'FORBIDDEN');
    expectError(await post('/api/v2/robots/lekiwi-GHOST02/recover', {}), 404, 'ROBOT_NOT_FOUND');
  });
});

// ---- authentication and authorization on every route ----

const EVERY_ROUTE: readonly [method: string, path: string][] = [
  ['GET', '/api/v2/robots'],
  ['GET', '/api/v2/robots/healthy'],
  ['GET', '/api/v2/robots/deployable'],
  ['GET', '/api/v2/robots/lekiwi-LK0001'],
  ['GET', '/api/v2/robots/lekiwi-LK0001/events'],
  ['GET', '/api/v2/metrics'],
  ['POST', '/api/v2/robots/lekiwi-LK0001/fail'],
  ['POST', '/api/v2/robots/lekiwi-LK0001/recover'],
];

describe.each(EVERY_ROUTE)('%s %s', (method, path) => {
  const request: PlainHttpRequest = { method, path, ...(method === 'POST' ? { body: '{"reason":"x"}' } : {}) };

  it('is refused by the authorizer (401) without a token or with a bad one', async () => {
    const tokens: (string | null)[] = [
      null,
      'not-a-jwt',
      await token({ groups: ['admin'], key: strangerKey }),
      await token({ groups: ['admin'], expiresAt: Math.floor(Date.now() / 1000) - 60 }),
      await token({ groups: ['admin'], issuer: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other' }),
      await token({ groups: ['admin'], claims: { client_id: 'another-app' } }),
    ];
    for (const bearer of tokens) {
      const answer = await call(request, bearer);
      expect(answer.status).toBe(401);
      expect(answer.body).toEqual({ message: 'Unauthorized' });
    }
  });

  it('answers 401 itself when a request reaches it without claims', async () => {
    const answer = await invoke(toHttpApiEvent(request, { routeKeys: ROUTE_KEYS }));
    expectError(answer, 401, 'UNAUTHORIZED');
  });

  it('answers 403 to a caller in no fleet group, naming the role needed', async () => {
    const answer = await call(request, await token({ groups: ['visitors'] }));
    expectError(answer, 403, 'FORBIDDEN');
    expect(answer.body.error.message).toMatch(method === 'GET' ? /operator/ : /engineer/);
  });
});

describe('claims and routes as the gateway hands them over', () => {
  it('flattens claims the way API Gateway does: strings only, arrays as [a b]', async () => {
    const auth = await authorizer.authorize({ Authorization: `Bearer ${await token({ groups: ['operator', 'engineer'] })}` });
    expect(auth.authorized).toBe(true);
    if (!auth.authorized) return;
    expect(auth.claims['cognito:groups']).toBe('[operator engineer]');
    expect(auth.claims.exp).toMatch(/^\d+$/);
    expect(Object.values(auth.claims).every((value) => typeof value === 'string')).toBe(true);
    expect(auth.scopes).toBeNull();
  });

  it('accepts an ID token (audience in aud) and records its cognito:username as the one who acted', async () => {
    // Given an engineer's ID token
    const robotId = await robotInLog();
    const idToken = await token({
      groups: ['engineer'],
      claims: { client_id: undefined, aud: CLIENT_ID, token_use: 'id', username: undefined, 'cognito:username': 'ivy' },
    });

    // When
    const answer = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'camera cable loose' }, idToken);

    // Then
    expect(answer.status).toBe(200);
    expect(answer.body.robot.failure.by).toBe('ivy');
  });

  it('accepts groups as a real array as well as API Gateway flattened string', async () => {
    // Given the same engineer's claims in both shapes
    const robotId = await robotInLog();
    const flattened = toHttpApiEvent(
      { method: 'POST', path: `/api/v2/robots/${robotId}/recover`, body: '{}' },
      { routeKeys: ROUTE_KEYS, claims: { username: 'erin', 'cognito:groups': '[operator engineer]' } },
    );
    const asArray = structuredClone(flattened);
    asArray.requestContext.authorizer!.jwt.claims['cognito:groups'] = ['operator', 'engineer'];

    // When / Then: both are allowed past the role check (the robot is not failed, hence 409, not 403)
    expectError(await invoke(flattened), 409, 'NOT_FAILED');
    expectError(await invoke(asArray), 409, 'NOT_FAILED');
  });

  it('answers 404 for a route it does not have and 405 for a method a path does not take', async () => {
    const bearer = await operator();
    expectError(await call({ method: 'GET', path: '/api/v2/robot' }, bearer), 404, 'ROUTE_NOT_FOUND');
    expectError(await call({ method: 'GET', path: '/api/v1/robots' }, bearer), 404, 'ROUTE_NOT_FOUND');
    const wrongMethod = await call({ method: 'DELETE', path: '/api/v2/robots/lekiwi-LK0001' }, bearer);
    expectError(wrongMethod, 405, 'METHOD_NOT_ALLOWED');
    expect(wrongMethod.headers.allow).toBe('GET');
  });

  it('routes a catch-all event by its path, on a named stage too', async () => {
    const event = toHttpApiEvent(
      { method: 'GET', path: '/api/v2/robots/xle-XL0001' },
      { routeKeys: ['ANY /{proxy+}'], claims: { username: 'olga', 'cognito:groups': '[operator]' }, stage: 'prod' },
    );
    expect(event.routeKey).toBe('ANY /{proxy+}');
    expect(event.rawPath).toBe('/prod/api/v2/robots/xle-XL0001');
    const answer = await invoke(event);
    expect(answer.status).toBe(200);
    expect(answer.body.robotId).toBe('xle-XL0001');
  });
});
