import { describe, expect, it } from 'vitest';
import { createHttpApi } from '../../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';
import { DiscoverResult } from '../../../schemas/index.js';
import { toHttpApiEvent, type PlainHttpRequest } from '../../../local/http-api-event.js';
import { InMemoryFleetQueries, RecordingCommandChannel } from '../../support/fleet-queries-fake.js';
import { InMemoryEventLog } from '../../support/in-memory-event-log.js';

/** POST /api/v2/discover through the HTTP layer with in-memory ports: roles, validation, the 202 and its body. */

const REQUEST_ID = '0d3c8a52-41f6-4e3e-8f8c-2b7b5a1e9c44';
const FLEET = [
  { robotId: 'lekiwi-LK0001', online: true },
  { robotId: 'lekiwi-LK0002', online: false },
  { robotId: 'xle-XL0001', online: true },
  { robotId: 'xle-XL0002', online: true },
];
const as = (username: string, groups: string) => ({ username, 'cognito:groups': groups });

function api(channel = new RecordingCommandChannel()) {
  const handle = createHttpApi({
    queries: new InMemoryFleetQueries(FLEET),
    eventLog: new InMemoryEventLog(),
    robotCommands: channel,
    now: () => new Date('2026-11-22T10:00:00.000Z'),
    newEventId: () => REQUEST_ID,
  });
  return {
    channel,
    call: async (request: Partial<PlainHttpRequest>, claims: Record<string, string>) => {
      const result = await handle(toHttpApiEvent({ method: 'POST', path: '/api/v2/discover', ...request }, { routeKeys: ROUTE_KEYS, claims }));
      return { status: result.statusCode, body: JSON.parse(result.body), headers: result.headers ?? {} };
    },
  };
}

describe('POST /api/v2/discover', () => {
  it.each([
    ['an engineer', as('erin', '[engineer]')],
    ['an admin', as('ada', '[admin]')],
  ])('answers %s 202 with the request id and how many online robots were asked', async (_who, claims) => {
    const { call, channel } = api();
    const answer = await call({}, claims);
    expect(answer.status).toBe(202);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(DiscoverResult.parse(answer.body)).toEqual({ requestId: REQUEST_ID, asked: 3, failed: 0 });
    expect(channel.sent.map((c) => c.robotId).sort()).toEqual(['lekiwi-LK0001', 'xle-XL0001', 'xle-XL0002']);
    expect(channel.sent.map((c) => c.payload)).toEqual(Array(3).fill({ requestId: REQUEST_ID }));
  });

  it('takes an empty JSON object as the body too', async () => {
    expect((await api().call({ body: '{}' }, as('erin', '[engineer]'))).status).toBe(202);
  });

  it('refuses an operator with 403, naming the engineer role, and asks no robot', async () => {
    const { call, channel } = api();
    const answer = await call({}, as('olga', '[operator]'));
    expect(answer.status).toBe(403);
    expect(answer.body.error).toMatchObject({ code: 'FORBIDDEN', details: { requiredRole: 'engineer' } });
    expect(answer.body.error.message).toMatch(/engineer/);
    expect(channel.sent).toEqual([]);
  });

  it('refuses a caller in no fleet group (403) and one without claims (401)', async () => {
    expect((await api().call({}, as('vic', '[visitors]'))).status).toBe(403);
    const handle = createHttpApi({
      queries: new InMemoryFleetQueries(FLEET),
      eventLog: new InMemoryEventLog(),
      robotCommands: new RecordingCommandChannel(),
      now: () => new Date(),
      newEventId: () => REQUEST_ID,
    });
    const unauthenticated = await handle(toHttpApiEvent({ method: 'POST', path: '/api/v2/discover' }, { routeKeys: ROUTE_KEYS }));
    expect(unauthenticated.statusCode).toBe(401);
  });

  it('refuses unknown body fields and query parameters with 400 naming them, and asks no robot', async () => {
    const { call, channel } = api();
    const body = await call({ body: '{"robots":["lekiwi-LK0001"]}' }, as('erin', '[engineer]'));
    expect(body.status).toBe(400);
    expect(body.body.error.code).toBe('INVALID_REQUEST');
    expect(JSON.stringify(body.body.error.details)).toContain('robots');
    const query = await call({ query: { status: 'online' } }, as('erin', '[engineer]'));
    expect(query.status).toBe(400);
    expect(JSON.stringify(query.body.error.details)).toContain('status');
    const notJson = await call({ body: 'please' }, as('erin', '[engineer]'));
    expect(notJson.status).toBe(400);
    expect(channel.sent).toEqual([]);
  });

  it('answers 405 to GET, with POST in Allow', async () => {
    const answer = await api().call({ method: 'GET' }, as('erin', '[engineer]'));
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('POST');
  });

  it('still answers 202 when some publishes fail, counting them', async () => {
    const { call } = api(new RecordingCommandChannel((robotId) => robotId.startsWith('xle-')));
    const answer = await call({}, as('erin', '[engineer]'));
    expect(answer.status).toBe(202);
    expect(answer.body).toEqual({ requestId: REQUEST_ID, asked: 1, failed: 2 });
  });
});
