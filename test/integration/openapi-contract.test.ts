import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { Jwks } from 'aws-jwt-verify/jwk';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { createHttpApi } from '../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import { toHttpApiEvent, type PlainHttpRequest } from '../../local/http-api-event.js';
import { JwtAuthorizer } from '../../local/jwt-authorizer.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { appendConnectedRobot, robotHistory, sample, seedReadModel } from '../support/read-model-seed.js';

/**
 * The published contract against the running API: every answer of /api/v2 (successes and failures, through the
 * gateway's JWT authorizer and the real handler on PostgreSQL and DynamoDB Local) validates against the schema that
 * schemas/openapi.json documents for its route and status, and the report-now commands POST /discover sends validate
 * against schemas/json/report-now-command.schema.json.
 */

const ISSUER = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_ContractPool';
const CLIENT_ID = 'dashboard-client';
const DOCUMENT_ID = 'https://lekiwi-heartbeat/openapi.json';

let db: TestDatabase;
let table: Awaited<ReturnType<typeof createTestEventLog>>;
let log: DynamoEventLog;
let authorizer: JwtAuthorizer;
let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let handle: ReturnType<typeof createHttpApi>;
let ajv: Ajv2020;
let committed: any;
const sentCommands: { robotId: string; request: string; payload: unknown }[] = [];

beforeAll(async () => {
  [db, table] = await Promise.all([createTestDatabase(), createTestEventLog()]);
  log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  await seedReadModel(db.pool, [
    { robotId: 'lekiwi-C0001', events: robotHistory('lekiwi-C0001'), telemetry: sample('2026-11-01T08:05:00.000Z', { cpuPercent: 12 }) },
    { robotId: 'xle-C0002', events: robotHistory('xle-C0002', { failed: 'gripper jammed', alerts: ['critical'] }) },
    { robotId: 'lekiwi-C0003', events: robotHistory('lekiwi-C0003', { online: false, teleoperated: true }) },
  ]);
  handle = createHttpApi({
    queries: new PgFleetQueries(db.pool),
    eventLog: log,
    // The robots' side of POST /discover: what the cloud publishes, kept to check against its schema.
    robotCommands: {
      send: async (robotId, request, payload) => {
        sentCommands.push({ robotId, request, payload });
      },
    },
    now: () => new Date(),
    newEventId: randomUUID,
  });

  const keys = await generateKeyPair('RS256');
  signingKey = keys.privateKey;
  authorizer = new JwtAuthorizer({ issuer: ISSUER, audience: [CLIENT_ID] });
  authorizer.cacheJwks({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: 'k', alg: 'RS256', use: 'sig' }] } as Jwks);

  committed = JSON.parse(await readFile(new URL('../../schemas/openapi.json', import.meta.url), 'utf8'));
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  ajv.addSchema({ ...committed, $id: DOCUMENT_ID });
  ajv.addSchema(JSON.parse(await readFile(new URL('../../schemas/json/report-now-command.schema.json', import.meta.url), 'utf8')));
});

afterAll(async () => {
  await Promise.all([db?.drop(), table?.drop()]);
});

const token = (groups: string[]) =>
  new SignJWT({ client_id: CLIENT_ID, token_use: 'access', username: 'carla', 'cognito:groups': groups })
    .setProtectedHeader({ alg: 'RS256', kid: 'k' })
    .setSubject(randomUUID())
    .setIssuer(ISSUER)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + 600)
    .sign(signingKey);

interface Answer {
  readonly status: number;
  readonly body: unknown;
}

/** Through the gateway's authorizer (which may answer by itself), then the handler. */
async function call(request: PlainHttpRequest, groups: string[] | null): Promise<Answer> {
  const headers = { ...request.headers, ...(groups ? { authorization: `Bearer ${await token(groups)}` } : {}) };
  const auth = await authorizer.authorize(headers);
  if (!auth.authorized) return { status: auth.response.statusCode, body: JSON.parse(auth.response.body) };
  const result = await handle(toHttpApiEvent({ ...request, headers }, { routeKeys: ROUTE_KEYS, claims: auth.claims, scopes: auth.scopes }));
  return { status: result.statusCode, body: JSON.parse(result.body) };
}

/** The schema the document gives for this operation's answer with this status; it fails the test if there is none. */
function documented(routeKey: string, status: number): ValidateFunction {
  const [method, path] = routeKey.split(' ') as [string, string];
  const pointer = `#/paths/${path.replaceAll('~', '~0').replaceAll('/', '~1')}/${method.toLowerCase()}/responses/${status}/content/application~1json/schema`;
  const responses = committed.paths[path]?.[method.toLowerCase()]?.responses ?? {};
  expect(Object.keys(responses), `${routeKey} documents no ${status} answer`).toContain(String(status));
  return ajv.getSchema(`${DOCUMENT_ID}${pointer}`)!;
}

function expectDocumented(routeKey: string, answer: Answer, status: number): void {
  expect(answer.status, JSON.stringify(answer.body)).toBe(status);
  const validate = documented(routeKey, status);
  // Every documented body has required fields: a schema that took anything would let this test pass by accident.
  expect(validate({}), `${routeKey} ${status} accepts anything`).toBe(false);
  const valid = validate(answer.body);
  expect(validate.errors ?? [], `${routeKey} ${status}: ${JSON.stringify(answer.body).slice(0, 500)}`).toEqual([]);
  expect(valid).toBe(true);
}

const OPERATOR = ['operator'];
const ENGINEER = ['engineer'];
const get = (path: string, query: Record<string, string> = {}, groups: string[] | null = OPERATOR) => call({ method: 'GET', path, query }, groups);
const post = (path: string, body: unknown, groups: string[] | null = ENGINEER, headers: Record<string, string> = {}) =>
  call({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) }, groups);

describe('every answer of /api/v2 is what schemas/openapi.json documents', () => {
  it('the reads: lists, one robot, its history and the metrics', async () => {
    expectDocumented('GET /api/v2/robots', await get('/api/v2/robots', { limit: '2' }), 200);
    expectDocumented('GET /api/v2/robots/healthy', await get('/api/v2/robots/healthy'), 200);
    expectDocumented('GET /api/v2/robots/deployable', await get('/api/v2/robots/deployable', { model: 'lekiwi' }), 200);
    expectDocumented('GET /api/v2/robots/{id}', await get('/api/v2/robots/lekiwi-C0001'), 200);
    expectDocumented('GET /api/v2/robots/{id}', await get('/api/v2/robots/xle-C0002'), 200);
    expectDocumented('GET /api/v2/robots/{id}/events', await get('/api/v2/robots/lekiwi-C0003/events'), 200);
    expectDocumented('GET /api/v2/robots/{id}/events', await get('/api/v2/robots/lekiwi-C0003/events', { after: '1', limit: '1' }), 200);
    expectDocumented('GET /api/v2/metrics', await get('/api/v2/metrics'), 200);
  });

  it('the commands: fail, recover and discover, and the report-now commands discover sends', async () => {
    const robotId = await appendConnectedRobot(log, 'lekiwi-K');
    const key = { 'idempotency-key': `contract-${randomUUID()}` };
    expectDocumented('POST /api/v2/robots/{id}/fail', await post(`/api/v2/robots/${robotId}/fail`, { reason: 'wheel off' }, ENGINEER, key), 200);
    expectDocumented('POST /api/v2/robots/{id}/fail', await post(`/api/v2/robots/${robotId}/fail`, { reason: 'again' }), 409);
    expectDocumented('POST /api/v2/robots/{id}/fail', await post(`/api/v2/robots/${robotId}/fail`, { reason: 'other' }, ENGINEER, key), 422);
    expectDocumented('POST /api/v2/robots/{id}/recover', await post(`/api/v2/robots/${robotId}/recover`, { note: 'fixed' }), 200);
    expectDocumented('POST /api/v2/robots/{id}/recover', await post(`/api/v2/robots/${robotId}/recover`, {}), 409);

    const discover = await post('/api/v2/discover', {});
    expectDocumented('POST /api/v2/discover', discover, 202);
    const selection = await post('/api/v2/discover', { robotIds: ['lekiwi-C0001', 'lekiwi-C0003', 'xle-NOPE'] });
    expectDocumented('POST /api/v2/discover', selection, 202);
    expect((selection.body as { robots: unknown[] }).robots).toHaveLength(3);
    expect(sentCommands.length).toBeGreaterThan(0);
    const reportNow = ajv.getSchema('https://lekiwi-heartbeat/schemas/report-now-command.schema.json')!;
    for (const { request, payload } of sentCommands) {
      expect(request).toBe('report-now');
      expect(reportNow(payload), JSON.stringify(reportNow.errors)).toBe(true);
    }
  });

  it('the failures: 400, 401 from the gateway and from the handler, 403 and 404, each with a documented code', async () => {
    expectDocumented('GET /api/v2/robots', await get('/api/v2/robots', { limit: '0', stauts: 'online' }), 400);
    expectDocumented('GET /api/v2/robots', await get('/api/v2/robots', {}, null), 401);
    expectDocumented('POST /api/v2/robots/{id}/fail', await post('/api/v2/robots/lekiwi-C0001/fail', { reason: 'x' }, OPERATOR), 403);
    expectDocumented('GET /api/v2/robots/{id}', await get('/api/v2/robots/lekiwi-NOPE'), 404);
    expectDocumented('GET /api/v2/robots/{id}/events', await get('/api/v2/robots/xle-NOPE/events'), 404);
    expectDocumented('GET /api/v2/robots/{id}/events', await get('/api/v2/robots/lekiwi-C0003/events', { after: '1', cursor: 'x' }), 400);
    expectDocumented('POST /api/v2/robots/{id}/fail', await post('/api/v2/robots/lekiwi-NOPE/fail', { reason: 'x' }), 404);
    const noClaims = await handle(toHttpApiEvent({ method: 'GET', path: '/api/v2/metrics' }, { routeKeys: ROUTE_KEYS }));
    expectDocumented('GET /api/v2/metrics', { status: noClaims.statusCode, body: JSON.parse(noClaims.body) }, 401);
  });

  it('GET /api/v2/openapi.json serves the committed document to any fleet group, and none without a token', async () => {
    const served = await get('/api/v2/openapi.json');
    expectDocumented('GET /api/v2/openapi.json', served, 200);
    expect(served.body).toEqual(committed);
    expectDocumented('GET /api/v2/openapi.json', await get('/api/v2/openapi.json', {}, null), 401);
    expectDocumented('GET /api/v2/openapi.json', await get('/api/v2/openapi.json', {}, []), 403);
  });
});
