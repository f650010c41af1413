import { describe, expect, it } from 'vitest';
import { createHttpApi } from '../../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';
import { DiscoverResult, MAX_DISCOVER_ROBOT_IDS } from '../../../schemas/index.js';
import { toHttpApiEvent } from '../../../local/http-api-event.js';
import { InMemoryFleetQueries, RecordingCommandChannel } from '../../support/fleet-queries-fake.js';
import { InMemoryEventLog } from '../../support/in-memory-event-log.js';

/**
 * POST /api/v2/discover with `robotIds` (the dashboard's "report now" for one robot or a selection): only the named
 * online robots are asked, and the answer says per robot what happened; `{}` still asks the whole fleet.
 */

const REQUEST_ID = '0d3c8a52-41f6-4e3e-8f8c-2b7b5a1e9c44';
const FLEET = [
  { robotId: 'lekiwi-LK0001', online: true },
  { robotId: 'lekiwi-LK0002', online: false },
  { robotId: 'xle-XL0001', online: true },
  { robotId: 'xle-XL0002', online: true },
];
const ENGINEER = { username: 'erin', 'cognito:groups': '[engineer]' };

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
    discover: async (body: unknown) => {
      const event = toHttpApiEvent(
        { method: 'POST', path: '/api/v2/discover', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
        { routeKeys: ROUTE_KEYS, claims: ENGINEER },
      );
      const result = await handle(event);
      return { status: result.statusCode, body: JSON.parse(result.body) };
    },
  };
}

describe('POST /api/v2/discover with robotIds', () => {
  it('asks one robot only, and says it was asked', async () => {
    const { discover, channel } = api();
    const answer = await discover({ robotIds: ['xle-XL0001'] });
    expect(answer.status).toBe(202);
    expect(DiscoverResult.parse(answer.body)).toEqual({
      requestId: REQUEST_ID,
      asked: 1,
      failed: 0,
      robots: [{ robotId: 'xle-XL0001', outcome: 'asked' }],
    });
    expect(channel.sent).toEqual([{ robotId: 'xle-XL0001', request: 'report-now', payload: { requestId: REQUEST_ID } }]);
  });

  it('answers each robot of a selection in the order given: asked, offline (not asked), not in the fleet, failed', async () => {
    const { discover, channel } = api(new RecordingCommandChannel((robotId) => robotId === 'xle-XL0002'));
    const answer = await discover({ robotIds: ['xle-XL0002', 'lekiwi-LK0002', 'lekiwi-NOPE01', 'lekiwi-LK0001', 'lekiwi-LK0001'] });
    expect(answer.status).toBe(202);
    expect(DiscoverResult.parse(answer.body)).toEqual({
      requestId: REQUEST_ID,
      asked: 1,
      failed: 1,
      robots: [
        { robotId: 'xle-XL0002', outcome: 'failed' },
        { robotId: 'lekiwi-LK0002', outcome: 'offline' },
        { robotId: 'lekiwi-NOPE01', outcome: 'not-found' },
        // Named twice, asked once.
        { robotId: 'lekiwi-LK0001', outcome: 'asked' },
      ],
    });
    expect(channel.sent.map((command) => command.robotId)).toEqual(['lekiwi-LK0001']);
  });

  it('keeps {} as the whole fleet, with no per-robot list', async () => {
    const { discover, channel } = api();
    const answer = await discover({});
    expect(answer.body).toEqual({ requestId: REQUEST_ID, asked: 3, failed: 0 });
    expect(channel.sent).toHaveLength(3);
  });

  it.each([
    ['an empty list', { robotIds: [] }],
    ['a malformed id', { robotIds: ['lekiwi-LK0001', 'not a robot'] }],
    ['more than the bound', { robotIds: Array.from({ length: MAX_DISCOVER_ROBOT_IDS + 1 }, (_, i) => `lekiwi-S${String(i).padStart(5, '0')}`) }],
    ['not a list', { robotIds: 'lekiwi-LK0001' }],
  ])('refuses %s with a 400 naming robotIds, and asks no robot', async (_what, body) => {
    const { discover, channel } = api();
    const answer = await discover(body);
    expect(answer.status).toBe(400);
    expect(answer.body.error.code).toBe('INVALID_REQUEST');
    expect((answer.body.error.details as { field: string }[]).every((detail) => detail.field.startsWith('robotIds'))).toBe(true);
    expect(channel.sent).toEqual([]);
  });

  it(`takes exactly ${MAX_DISCOVER_ROBOT_IDS} robots`, async () => {
    const robotIds = Array.from({ length: MAX_DISCOVER_ROBOT_IDS }, (_, i) => `lekiwi-S${String(i).padStart(5, '0')}`);
    const answer = await api().discover({ robotIds });
    expect(answer.status).toBe(202);
    expect(answer.body.robots).toHaveLength(MAX_DISCOVER_ROBOT_IDS);
    expect(answer.body.robots.every((robot: { outcome: string }) => robot.outcome === 'not-found')).toBe(true);
  });
});
