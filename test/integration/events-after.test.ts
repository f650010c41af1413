import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { createHttpApi } from '../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import { toHttpApiEvent } from '../../local/http-api-event.js';
import { EventPage, type DomainEvent, type EventView } from '../../schemas/index.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { robotHistory, seedReadModel } from '../support/read-model-seed.js';

/**
 * `GET /api/v2/robots/{id}/events?after=<seq>` on a real PostgreSQL read model (the dashboard's gap fill): the events
 * after a seq, oldest first, paged with a cursor of their own kind; `after` with `cursor` is a 400 naming both.
 */

const OPERATOR = { username: 'olga', 'cognito:groups': '[operator]' };
/** A long history (failed, alerts, teleoperation, offline) and a short one (registered and connected). */
const LONG = 'xle-EA0001';
const SHORT = 'lekiwi-EA0002';
const histories: Record<string, DomainEvent[]> = {
  [LONG]: robotHistory(LONG, { teleoperated: true, alerts: ['warning', 'critical'], failed: 'gripper jammed', online: false }),
  [SHORT]: robotHistory(SHORT),
};

let db: TestDatabase;
let handle: ReturnType<typeof createHttpApi>;

beforeAll(async () => {
  db = await createTestDatabase();
  await seedReadModel(db.pool, Object.entries(histories).map(([robotId, events]) => ({ robotId, events })));
  handle = createHttpApi({
    queries: new PgFleetQueries(db.pool),
    eventLog: new InMemoryEventLog(),
    robotCommands: { send: () => Promise.reject(new Error('not used here')) },
    now: () => new Date(),
    newEventId: () => 'evt-00000001',
  });
});

afterAll(async () => {
  await db?.drop();
});

async function get(robotId: string, query: Record<string, string> = {}) {
  const result = await handle(toHttpApiEvent({ method: 'GET', path: `/api/v2/robots/${robotId}/events`, query }, { routeKeys: ROUTE_KEYS, claims: OPERATOR }));
  return { status: result.statusCode, body: JSON.parse(result.body) };
}

/** The robot's history as the API shows it, oldest first (seq 1..n). */
const oldestFirst = (robotId: string): EventView[] =>
  histories[robotId]!.map((event, index) => ({
    seq: index + 1,
    eventId: event.eventId,
    type: event.type,
    version: event.version,
    at: event.at,
    recordedAt: event.at,
    data: event.data as Record<string, unknown>,
  }));

const badFields = (body: { error: { details: { field: string }[] } }) => [...new Set(body.error.details.map((detail) => detail.field))].sort();

/** Every page of a listing, following nextCursor alone after the first request. */
async function walk(robotId: string, first: Record<string, string>): Promise<{ pages: number; items: EventView[] }> {
  const items: EventView[] = [];
  let query = first;
  let pages = 0;
  for (;;) {
    const answer = await get(robotId, query);
    expect(answer.status).toBe(200);
    const page = EventPage.parse(answer.body);
    items.push(...page.items);
    pages += 1;
    if (page.nextCursor === null || pages > 50) return { pages, items };
    query = { limit: first.limit ?? '100', cursor: page.nextCursor };
  }
}

describe('GET /api/v2/robots/{id}/events?after=', () => {
  it('answers the events after the seq, oldest first', async () => {
    const all = oldestFirst(LONG);
    expect(all.length).toBeGreaterThan(6);
    expect(await get(LONG, { after: '3' })).toEqual({ status: 200, body: { items: all.slice(3), nextCursor: null } });
    expect((await get(LONG, { after: '0' })).body.items).toEqual(all);
  });

  it('answers an empty page when nothing is newer, and for a seq beyond the last', async () => {
    const last = oldestFirst(LONG).length;
    expect((await get(LONG, { after: String(last) })).body).toEqual({ items: [], nextCursor: null });
    expect((await get(LONG, { after: String(last + 1000) })).body).toEqual({ items: [], nextCursor: null });
  });

  it('pages oldest first with the cursor alone, no event twice and none left out', async () => {
    const expected = oldestFirst(LONG).slice(1);
    const { pages, items } = await walk(LONG, { after: '1', limit: '2' });
    expect(items).toEqual(expected);
    expect(pages).toBe(Math.ceil(expected.length / 2));
  });

  it('gives no next page when the last page is exactly full', async () => {
    const answer = await get(SHORT, { after: '0', limit: '2' });
    expect(answer.body.items.map((event: EventView) => event.seq)).toEqual([1, 2]);
    expect(answer.body.nextCursor).toBeNull();
  });

  it('keeps the newest-first listing and its cursors as they were', async () => {
    const { items } = await walk(LONG, { limit: '3' });
    expect(items).toEqual(oldestFirst(LONG).reverse());
  });

  it('continues each listing in its own order: an ascending cursor never reads descending, nor the other way', async () => {
    const ascending = await get(LONG, { after: '2', limit: '2' });
    const descending = await get(LONG, { limit: '2' });
    const last = oldestFirst(LONG).length;
    expect(ascending.body.items.map((event: EventView) => event.seq)).toEqual([3, 4]);
    expect(descending.body.items.map((event: EventView) => event.seq)).toEqual([last, last - 1]);
    expect((await get(LONG, { cursor: ascending.body.nextCursor, limit: '2' })).body.items.map((event: EventView) => event.seq)).toEqual([5, 6]);
    expect((await get(LONG, { cursor: descending.body.nextCursor, limit: '2' })).body.items.map((event: EventView) => event.seq)).toEqual([
      last - 2,
      last - 3,
    ]);
  });

  it('refuses after with cursor (400 naming both), a bad after, and a cursor of another robot', async () => {
    const cursor = (await get(LONG, { after: '0', limit: '1' })).body.nextCursor as string;
    const both = await get(LONG, { after: '1', cursor });
    expect(both.status).toBe(400);
    expect(both.body.error.code).toBe('INVALID_REQUEST');
    expect(badFields(both.body)).toEqual(['after', 'cursor']);
    for (const after of ['-1', '1.5', 'seven', '9007199254740992']) {
      const answer = await get(LONG, { after });
      expect(answer.status, after).toBe(400);
      expect(badFields(answer.body)).toEqual(['after']);
    }
    const foreign = await get(SHORT, { cursor });
    expect(foreign.status).toBe(400);
    expect(badFields(foreign.body)).toEqual(['cursor']);
  });

  it('answers 404 for a robot the fleet does not know', async () => {
    const answer = await get('xle-EA9999', { after: '0' });
    expect(answer.status).toBe(404);
    expect(answer.body.error.code).toBe('ROBOT_NOT_FOUND');
  });
});
