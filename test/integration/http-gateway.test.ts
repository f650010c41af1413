import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RobotPage } from '../../schemas/index.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import type { GatewayLogEntry } from '../../local/gateway-support.js';
import type { PartHealth } from '../../local/supervisor.js';
import { startHttpGateway, type HttpGateway, type HttpIntegration } from '../../local/http-gateway.js';
import type { HttpApiEventV2 } from '../../local/http-api-event.js';
import { LocalJwtIssuer } from '../../local/jwt-issuer.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { robotHistory, seedReadModel } from '../support/read-model-seed.js';

/**
 * The local HTTP API gateway over real HTTP: the JWT authorizer in front of every route, payload 2.0 events, API
 * Gateway's mapping of integration answers and failures; then the real `http-api` handler behind it, reading a
 * PostgreSQL read model, with tokens from the local issuer.
 */

const ISSUER = 'http://localhost:1/local-pool';
const AUDIENCE = 'lekiwi-heartbeat-local';

let dir: string;
let issuer: LocalJwtIssuer;
let gateway: HttpGateway;
const calls: { event: HttpApiEventV2; context: Context }[] = [];
const logs: GatewayLogEntry[] = [];
/** What the integration does next; each test sets it. */
let answer: (event: HttpApiEventV2) => Promise<unknown> = async () => ({ statusCode: 200, body: '{}' });
let release: () => void = () => undefined;

const integration: HttpIntegration = (event, context) => {
  calls.push({ event, context });
  return answer(event);
};

const token = (groups: string[] = ['operator'], subject = 'user-1') =>
  issuer.sign({ subject, username: subject, groups, expiresInSeconds: 600 });

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'http-gateway-'));
  issuer = await LocalJwtIssuer.openOrCreate(dir, { issuer: ISSUER, audience: AUDIENCE });
  gateway = await startHttpGateway({
    routeKeys: ROUTE_KEYS,
    authorizer: { issuer: ISSUER, audience: [AUDIENCE] },
    jwks: () => issuer.jwks(),
    integration,
    timeoutMs: 1_000,
    maxBodyBytes: 1024,
    extraRoutes: {
      'GET /': () => ({ statusCode: 200, headers: { 'content-type': 'text/html' }, body: '<!doctype html><p>live</p>' }),
    },
    log: (entry) => logs.push(entry),
  });
});

afterAll(async () => {
  release();
  await gateway?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function call(
  method: string,
  pathAndQuery: string,
  options: { token?: string | null; body?: string | Buffer; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...options.headers };
  const bearer = options.token === undefined ? token() : options.token;
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  const response = await fetch(`${gateway.url}${pathAndQuery}`, { method, headers, ...(options.body !== undefined ? { body: options.body } : {}) });
  return { status: response.status, headers: response.headers, text: await response.text(), cookies: response.headers.getSetCookie() };
}

/** Runs `work` and returns the integration calls it caused. */
async function callsDuring<T>(work: () => Promise<T>): Promise<[T, typeof calls]> {
  const before = calls.length;
  const result = await work();
  return [result, calls.slice(before)];
}

describe('the HTTP gateway', () => {
  it('admits a request with a valid token and hands the integration API Gateway’s payload 2.0 event', async () => {
    answer = async () => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' });
    const [response, made] = await callsDuring(() =>
      call('GET', '/api/v2/robots/lekiwi-LK0001/events?limit=5&cursor=a&cursor=b', {
        token: token(['operator', 'engineer'], 'user-42'),
        headers: { 'x-trace': 'one' },
      }),
    );

    expect(response.status).toBe(200);
    expect(JSON.parse(response.text)).toEqual({ ok: true });
    expect(made).toHaveLength(1);
    const { event, context } = made[0]!;
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: 'GET /api/v2/robots/{id}/events',
      rawPath: '/api/v2/robots/lekiwi-LK0001/events',
      rawQueryString: 'limit=5&cursor=a&cursor=b',
      pathParameters: { id: 'lekiwi-LK0001' },
      queryStringParameters: { limit: '5', cursor: 'a,b' },
      isBase64Encoded: false,
      requestContext: {
        routeKey: 'GET /api/v2/robots/{id}/events',
        stage: '$default',
        http: { method: 'GET', path: '/api/v2/robots/lekiwi-LK0001/events', sourceIp: '127.0.0.1' },
        authorizer: { jwt: { scopes: null } },
      },
    });
    expect(event.headers['x-trace']).toBe('one');
    expect(event.body).toBeUndefined();
    // Claims flattened as API Gateway passes them: strings only, arrays as "[a b]".
    const claims = event.requestContext.authorizer?.jwt.claims ?? {};
    expect(claims).toMatchObject({ sub: 'user-42', 'cognito:groups': '[operator engineer]', iss: ISSUER, aud: AUDIENCE, token_use: 'id' });
    expect(typeof claims.exp).toBe('string');
    // The answer names the request as API Gateway does, and the context is a Lambda context.
    expect(response.headers.get('apigw-requestid')).toBe(event.requestContext.requestId);
    expect(context.functionName).toBe('http-api');
    expect(context.getRemainingTimeInMillis()).toBeGreaterThan(0);
  });

  it('passes a JSON body as text and other bodies base64-encoded', async () => {
    answer = async () => ({ statusCode: 202, body: '' });
    const [json, jsonCalls] = await callsDuring(() =>
      call('POST', '/api/v2/robots/lekiwi-LK0001/fail', { body: '{"reason":"gripper"}', headers: { 'content-type': 'application/json' } }),
    );
    expect(json.status).toBe(202);
    expect(jsonCalls[0]?.event).toMatchObject({ routeKey: 'POST /api/v2/robots/{id}/fail', body: '{"reason":"gripper"}', isBase64Encoded: false });

    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    const [, binaryCalls] = await callsDuring(() =>
      call('POST', '/api/v2/robots/lekiwi-LK0001/recover', { body: bytes, headers: { 'content-type': 'application/octet-stream' } }),
    );
    expect(binaryCalls[0]?.event).toMatchObject({ body: bytes.toString('base64'), isBase64Encoded: true });
  });

  it.each([
    ['no token', null],
    ['a token that is not a JWT', 'not-a-jwt'],
    ['an expired token', 'expired'],
    ['a token of another key', 'stranger'],
  ])('answers 401 for %s without calling the integration', async (_, kind) => {
    let bearer: string | null = kind;
    if (kind === 'expired') {
      bearer = issuer.sign({ subject: 'u', username: 'u', groups: ['admin'], expiresInSeconds: 60, issuedAt: new Date(Date.now() - 7200_000) });
    } else if (kind === 'stranger') {
      const stranger = await LocalJwtIssuer.openOrCreate(path.join(dir, 'stranger'), { issuer: ISSUER, audience: AUDIENCE });
      bearer = stranger.sign({ subject: 'u', username: 'u', groups: ['admin'], expiresInSeconds: 60 });
    }
    const [response, made] = await callsDuring(() => call('GET', '/api/v2/robots', { token: bearer }));
    expect(response.status).toBe(401);
    expect(JSON.parse(response.text)).toEqual({ message: 'Unauthorized' });
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    expect(made).toHaveLength(0);
  });

  it.each([
    ['a structured answer', { statusCode: 201, headers: { 'X-Custom': 'yes', 'content-type': 'text/plain' }, body: 'made' }, 201, 'made', { 'x-custom': 'yes', 'content-type': 'text/plain' }],
    ['an object without statusCode (JSON 200)', { items: [1, 2] }, 200, '{"items":[1,2]}', { 'content-type': 'application/json' }],
    ['a string (200, as it is)', 'Hello from Lambda!', 200, 'Hello from Lambda!', { 'content-type': 'application/json' }],
    ['a base64 body', { statusCode: 200, isBase64Encoded: true, body: Buffer.from('bytes!').toString('base64') }, 200, 'bytes!', {}],
    ['a statusCode that is not a status', { statusCode: 'ok', body: 'x' }, 500, '{"message":"Internal Server Error"}', {}],
    ['a body that is not a string', { statusCode: 200, body: { a: 1 } }, 500, '{"message":"Internal Server Error"}', {}],
  ])('maps %s the way API Gateway does', async (_, result, status, body, headers) => {
    answer = async () => result;
    const response = await call('GET', '/api/v2/metrics');
    expect(response.status).toBe(status);
    expect(response.text).toBe(body);
    for (const [name, value] of Object.entries(headers)) expect(response.headers.get(name)).toBe(value);
  });

  it('sends cookies as Set-Cookie headers', async () => {
    answer = async () => ({ statusCode: 200, cookies: ['a=1; Path=/', 'b=2; HttpOnly'], body: '' });
    const response = await call('GET', '/api/v2/metrics');
    expect(response.cookies).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
  });

  it('answers 500 when the integration throws, and logs the error', async () => {
    answer = async () => {
      throw new Error('database on fire');
    };
    const response = await call('GET', '/api/v2/robots/healthy');
    expect(response.status).toBe(500);
    expect(JSON.parse(response.text)).toEqual({ message: 'Internal Server Error' });
    const entry = logs.findLast((logged) => logged.level === 'error');
    expect(entry).toMatchObject({ status: 500, routeKey: 'GET /api/v2/robots/healthy' });
    expect(JSON.stringify(entry)).toContain('database on fire');
  });

  it('answers 503 when the integration does not answer in time', async () => {
    answer = () => new Promise((resolve) => (release = () => resolve({ statusCode: 200, body: 'late' })));
    const response = await call('GET', '/api/v2/robots/deployable');
    expect(response.status).toBe(503);
    expect(JSON.parse(response.text)).toEqual({ message: 'Service Unavailable' });
    release();
  });

  it.each([
    ['an unknown path', 'GET', '/api/v2/robotz'],
    ['a known path with another method', 'DELETE', '/api/v2/robots'],
    ['a path outside the API', 'GET', '/favicon.ico'],
  ])('answers 404 Not Found for %s, even without a token', async (_, method, target) => {
    const [response, made] = await callsDuring(() => call(method, target, { token: null }));
    expect(response.status).toBe(404);
    expect(JSON.parse(response.text)).toEqual({ message: 'Not Found' });
    expect(made).toHaveLength(0);
  });

  it('refuses a body over the limit with 413, without calling the integration', async () => {
    const [response, made] = await callsDuring(() =>
      call('POST', '/api/v2/robots/lekiwi-LK0001/fail', { body: 'x'.repeat(2048), headers: { 'content-type': 'text/plain' } }),
    );
    expect(response.status).toBe(413);
    expect(made).toHaveLength(0);
  });

  it('serves the issuer’s JWKS, /health and the caller’s extra routes without a token', async () => {
    const jwks = await call('GET', '/local-pool/.well-known/jwks.json', { token: null });
    expect(jwks.status).toBe(200);
    expect(JSON.parse(jwks.text)).toEqual(issuer.jwks());
    expect((await call('GET', '/health', { token: null })).status).toBe(200);
    const page = await call('GET', '/', { token: null });
    expect(page).toMatchObject({ status: 200, text: '<!doctype html><p>live</p>' });
    expect(page.headers.get('content-type')).toBe('text/html');
  });

  it('refuses an extra route that is not "METHOD /path"', async () => {
    await expect(
      startHttpGateway({ authorizer: { issuer: ISSUER, audience: [AUDIENCE] }, integration, extraRoutes: { '/': () => ({ statusCode: 200, body: '' }) } }),
    ).rejects.toThrow(/extra route "\/" is not "METHOD \/path"/);
  });
});

describe('the HTTP gateway: /health with the supervised parts', () => {
  let parts: PartHealth[] = [];
  let supervised: HttpGateway;

  beforeAll(async () => {
    supervised = await startHttpGateway({
      routeKeys: ROUTE_KEYS,
      authorizer: { issuer: ISSUER, audience: [AUDIENCE] },
      jwks: () => issuer.jwks(),
      integration,
      health: async () => parts,
      log: (entry) => logs.push(entry),
    });
  });

  afterAll(async () => {
    await supervised?.stop();
  });

  const health = async () => {
    const response = await fetch(`${supervised.url}/health`);
    return { status: response.status, body: (await response.json()) as Record<string, unknown>, cacheControl: response.headers.get('cache-control') };
  };

  const up = (name: string): PartHealth => ({ name, status: 'up', restarts: 0 });

  it('answers 200 with every part when all are up, without a token', async () => {
    parts = [up('DynamoDB Local (event log)'), up('PostgreSQL (embedded PGlite)'), up('Kinesis stand-in (ingest stream)')];
    expect(await health()).toEqual({ status: 200, body: { status: 'ok', parts }, cacheControl: 'no-store' });
  });

  it('answers 503 "degraded" while a part restarts, and 503 "down" with what died when one is down for good', async () => {
    const restarting: PartHealth = { name: 'DynamoDB Local (event log)', status: 'restarting', restarts: 1, lastError: 'DynamoDB Local (event log) was killed by SIGKILL' };
    parts = [restarting, up('PostgreSQL (embedded PGlite)')];
    expect(await health()).toMatchObject({ status: 503, body: { status: 'degraded', parts } });

    const down: PartHealth = { ...restarting, status: 'down', restarts: 3 };
    parts = [down, { name: 'PostgreSQL (embedded PGlite)', status: 'restarting', restarts: 0 }];
    expect(await health()).toMatchObject({ status: 503, body: { status: 'down', parts } });

    parts = [{ ...restarting, status: 'up' }, up('PostgreSQL (embedded PGlite)')];
    expect((await health()).status).toBe(200);
  });

  it('keeps the plain answer without the option', async () => {
    const response = await fetch(`${gateway.url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });
});

describe('the HTTP gateway in front of the real http-api handler', () => {
  let db: TestDatabase;
  let table: Awaited<ReturnType<typeof createTestEventLog>>;
  let real: HttpGateway;

  beforeAll(async () => {
    [db, table] = await Promise.all([createTestDatabase(), createTestEventLog()]);
    await seedReadModel(
      db.pool,
      ['lekiwi-GW0001', 'lekiwi-GW0002', 'xle-GW0003'].map((robotId) => ({ robotId, events: robotHistory(robotId) })),
    );
    // The handler reads its environment at import, as in Lambda: set it first.
    Object.assign(process.env, { DATABASE_URL: db.url, EVENT_LOG_TABLE: table.tableName, AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint') });
    const { handler } = await import('../../functions/handlers/http-api.js');
    // The route keys come from the route table by default, as the local cloud uses it.
    real = await startHttpGateway({
      authorizer: { issuer: ISSUER, audience: [AUDIENCE] },
      jwks: issuer.jwks(),
      integration: handler as unknown as HttpIntegration,
      log: () => undefined,
    });
  });

  afterAll(async () => {
    await real?.stop();
    await Promise.all([db?.drop(), table?.drop()]);
  });

  const get = async (target: string, bearer: string) => {
    const response = await fetch(`${real.url}${target}`, { headers: { authorization: `Bearer ${bearer}` } });
    return { status: response.status, json: (await response.json()) as unknown };
  };

  it('lists the fleet for an operator, page by page', async () => {
    const first = await get('/api/v2/robots?limit=2', token(['operator']));
    expect(first.status).toBe(200);
    const page = RobotPage.parse(first.json);
    expect(page.items.map((robot) => robot.robotId)).toEqual(['lekiwi-GW0001', 'lekiwi-GW0002']);
    const second = RobotPage.parse((await get(`/api/v2/robots?limit=2&cursor=${encodeURIComponent(page.nextCursor ?? '')}`, token())).json);
    expect(second).toMatchObject({ items: [{ robotId: 'xle-GW0003' }], nextCursor: null });
  });

  it('leaves roles to the handler: an operator may not mark a robot failed (403), a token without a role reads nothing', async () => {
    const response = await fetch(`${real.url}/api/v2/robots/lekiwi-GW0001/fail`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token(['operator'])}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'wheel' }),
    });
    expect(response.status).toBe(403);
    expect(await response.json()).toMatchObject({ error: { code: expect.any(String) } });
    expect((await get('/api/v2/robots/lekiwi-GW0001', token([]))).status).toBe(403);
    expect((await get('/api/v2/robots/lekiwi-GW0001', token(['operator']))).json).toMatchObject({ robotId: 'lekiwi-GW0001' });
  });
});
