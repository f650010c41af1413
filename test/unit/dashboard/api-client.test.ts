import { describe, expect, it } from 'vitest';
import { ApiRequestError, createApiClient, PAGE_LIMIT, type FetchInit } from '../../../dashboard/src/api/client.js';
import { DEPLOYMENT_ID, deploymentView, eventView, robotView } from './fixtures.js';

interface Call {
  readonly url: URL;
  readonly init: FetchInit;
}

/** An API answering from a route table; every request recorded. */
function fakeApi(answer: (call: Call) => { status: number; body?: unknown; text?: string } | Promise<never>) {
  const calls: Call[] = [];
  let unauthorized = 0;
  let keys = 0;
  const client = createApiClient({
    baseUrl: 'https://api.example/api/v2',
    idToken: async () => `token-${calls.length}`,
    onUnauthorized: () => void (unauthorized += 1),
    newKey: () => `key-${++keys}`,
    fetch: async (url, init) => {
      const call = { url: new URL(url), init };
      calls.push(call);
      const result = await answer(call);
      const text = result.text ?? (result.body === undefined ? '' : JSON.stringify(result.body));
      return { status: result.status, ok: result.status >= 200 && result.status < 300, text: async () => text };
    },
  });
  return { client, calls, unauthorized: () => unauthorized };
}

describe('the API client', () => {
  it('sends the id token as bearer, fresh for each request', async () => {
    const { client, calls } = fakeApi(() => ({ status: 200, body: robotView('lekiwi-LK0001') }));
    await client.getRobot('lekiwi-LK0001');
    await client.getRobot('lekiwi-LK0001');
    expect(calls.map((call) => call.init.headers['authorization'])).toEqual(['Bearer token-0', 'Bearer token-1']);
    expect(calls[0]!.url.pathname).toBe('/api/v2/robots/lekiwi-LK0001');
  });

  it('lists every robot, following nextCursor with pages of 500', async () => {
    const pages: Record<string, { items: unknown[]; nextCursor: string | null }> = {
      '': { items: [robotView('lekiwi-A1'), robotView('lekiwi-A2')], nextCursor: 'c1' },
      c1: { items: [robotView('lekiwi-A3')], nextCursor: 'c2' },
      c2: { items: [], nextCursor: null },
    };
    const { client, calls } = fakeApi((call) => ({ status: 200, body: pages[call.url.searchParams.get('cursor') ?? ''] }));
    const robots = await client.listRobots();
    expect(robots.map((robot) => robot.robotId)).toEqual(['lekiwi-A1', 'lekiwi-A2', 'lekiwi-A3']);
    expect(calls.map((call) => call.url.search)).toEqual([`?limit=${PAGE_LIMIT}`, `?limit=${PAGE_LIMIT}&cursor=c1`, `?limit=${PAGE_LIMIT}&cursor=c2`]);
  });

  it('pages a robot history newest first, and reads every event after a seq, oldest first, over all pages', async () => {
    const { client, calls } = fakeApi((call) =>
      call.url.searchParams.has('after')
        ? { status: 200, body: { items: [eventView(6), eventView(7)], nextCursor: 'n' } }
        : call.url.searchParams.get('cursor') === 'n'
          ? { status: 200, body: { items: [eventView(8)], nextCursor: null } }
          : { status: 200, body: { items: [eventView(5), eventView(4)], nextCursor: 'older' } },
    );
    await expect(client.listEvents('lekiwi-LK0001', { limit: 2, cursor: 'abc' })).resolves.toMatchObject({ nextCursor: 'older' });
    expect(calls[0]!.url.pathname).toBe('/api/v2/robots/lekiwi-LK0001/events');
    expect(Object.fromEntries(calls[0]!.url.searchParams)).toEqual({ limit: '2', cursor: 'abc' });
    const after = await client.eventsAfter('lekiwi-LK0001', 5);
    expect(after.map((event) => event.seq)).toEqual([6, 7, 8]);
    expect(Object.fromEntries(calls[1]!.url.searchParams)).toEqual({ after: '5', limit: '500' });
    expect(Object.fromEntries(calls[2]!.url.searchParams)).toEqual({ limit: '500', cursor: 'n' }); // after + cursor is a 400
  });

  it('asks for telemetry in a window, and the metrics', async () => {
    const { client, calls } = fakeApi(() => ({ status: 200, body: {} }));
    await client.telemetry('xle-XL0007', { from: new Date('2026-12-01T09:00:00Z'), to: new Date('2026-12-01T10:00:00Z') });
    await client.telemetry('xle-XL0007', { from: new Date('2026-12-01T09:00:00Z') });
    await client.metrics();
    expect(calls[0]!.url.pathname).toBe('/api/v2/robots/xle-XL0007/telemetry');
    expect(Object.fromEntries(calls[0]!.url.searchParams)).toEqual({ from: '2026-12-01T09:00:00.000Z', to: '2026-12-01T10:00:00.000Z' });
    expect(Object.fromEntries(calls[1]!.url.searchParams)).toEqual({ from: '2026-12-01T09:00:00.000Z' });
    expect(calls[2]!.url.pathname).toBe('/api/v2/metrics');
  });

  it('posts commands as JSON with one fresh Idempotency-Key per action', async () => {
    const { client, calls } = fakeApi(() => ({ status: 200, body: { robot: robotView('lekiwi-LK0001'), appended: [] } }));
    await client.markFailed('lekiwi-LK0001', 'wheel fell off');
    await client.recover('lekiwi-LK0001');
    await client.recover('lekiwi-LK0001', 'new wheel');
    await client.discover(['lekiwi-LK0001', 'xle-XL0007']);
    await client.discover();
    expect(calls.map((call) => [call.init.method, call.url.pathname, call.init.body, call.init.headers['idempotency-key'], call.init.headers['content-type']])).toEqual([
      ['POST', '/api/v2/robots/lekiwi-LK0001/fail', '{"reason":"wheel fell off"}', 'key-1', 'application/json'],
      ['POST', '/api/v2/robots/lekiwi-LK0001/recover', '{}', 'key-2', 'application/json'],
      ['POST', '/api/v2/robots/lekiwi-LK0001/recover', '{"note":"new wheel"}', 'key-3', 'application/json'],
      ['POST', '/api/v2/discover', '{"robotIds":["lekiwi-LK0001","xle-XL0007"]}', 'key-4', 'application/json'],
      ['POST', '/api/v2/discover', '{}', 'key-5', 'application/json'],
    ]);
  });

  it('reads deployments a page at a time and posts their actions with one Idempotency-Key each', async () => {
    const { client, calls } = fakeApi((call) =>
      call.url.pathname === '/api/v2/deployments' && call.init.method === 'GET'
        ? { status: 200, body: { items: [deploymentView()], nextCursor: 'next' } }
        : call.init.method === 'POST' && call.url.pathname.endsWith('/pause')
          ? { status: 409, body: { error: { code: 'INVALID_TRANSITION', message: 'a completed deployment cannot be paused' } } }
          : { status: 200, body: deploymentView() },
    );
    await expect(client.listDeployments({ limit: 20, cursor: 'abc' })).resolves.toMatchObject({ nextCursor: 'next' });
    await expect(client.getDeployment(DEPLOYMENT_ID)).resolves.toMatchObject({ deploymentId: DEPLOYMENT_ID });
    const request = { release: '1.1.0', targets: { robotIds: ['lekiwi-D1'] }, strategy: { canary: 1 } };
    await client.createDeployment(request);
    await client.deploymentAction(DEPLOYMENT_ID, 'rollback', { reason: 'arm jitter' });
    await client.deploymentAction(DEPLOYMENT_ID, 'cancel');
    await expect(client.deploymentAction(DEPLOYMENT_ID, 'pause')).rejects.toMatchObject({
      status: 409,
      code: 'INVALID_TRANSITION',
      message: 'a completed deployment cannot be paused',
    });
    expect(calls.map((call) => [call.init.method, `${call.url.pathname}${call.url.search}`, call.init.body ?? null, call.init.headers['idempotency-key'] ?? null])).toEqual([
      ['GET', '/api/v2/deployments?limit=20&cursor=abc', null, null],
      ['GET', `/api/v2/deployments/${DEPLOYMENT_ID}`, null, null],
      ['POST', '/api/v2/deployments', JSON.stringify(request), 'key-1'],
      ['POST', `/api/v2/deployments/${DEPLOYMENT_ID}/rollback`, '{"reason":"arm jitter"}', 'key-2'],
      ['POST', `/api/v2/deployments/${DEPLOYMENT_ID}/cancel`, '{}', 'key-3'],
      ['POST', `/api/v2/deployments/${DEPLOYMENT_ID}/pause`, '{}', 'key-4'],
    ]);
  });

  it("throws the API's error code and message", async () => {
    const { client, unauthorized } = fakeApi(() => ({
      status: 409,
      body: { error: { code: 'ALREADY_FAILED', message: 'lekiwi-LK0001 is already failed', details: { at: 'x' } } },
    }));
    const failure = await client.markFailed('lekiwi-LK0001', 'r').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ApiRequestError);
    expect(failure).toMatchObject({ status: 409, code: 'ALREADY_FAILED', message: 'lekiwi-LK0001 is already failed', details: { at: 'x' } });
    expect(unauthorized()).toBe(0);
  });

  it('calls for a new sign-in on 401, and still throws', async () => {
    const { client, unauthorized } = fakeApi(() => ({ status: 401, body: { message: 'Unauthorized' } }));
    await expect(client.metrics()).rejects.toMatchObject({ status: 401, code: 'UNAUTHORIZED', message: expect.stringMatching(/Unauthorized/) });
    expect(unauthorized()).toBe(1);
  });

  it('names answers that are not the API’s: a gateway page, a body that is not JSON, no answer at all', async () => {
    await expect(fakeApi(() => ({ status: 502, text: '<html>Bad gateway</html>' })).client.metrics()).rejects.toMatchObject({
      status: 502,
      code: 'SERVER_ERROR',
      message: expect.stringMatching(/GET \/metrics failed with 502: <html>Bad gateway/),
    });
    await expect(fakeApi(() => ({ status: 200, text: 'not json' })).client.metrics()).rejects.toMatchObject({ code: 'INVALID_RESPONSE' });
    await expect(fakeApi(() => Promise.reject(new TypeError('Failed to fetch'))).client.metrics()).rejects.toMatchObject({
      status: 0,
      code: 'NETWORK_ERROR',
      message: expect.stringMatching(/Failed to fetch/),
    });
  });

  it('lets an abort through as an abort', async () => {
    const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
    await expect(fakeApi(() => Promise.reject(abort)).client.metrics()).rejects.toBe(abort);
  });
});
