import { describe, expect, it } from 'vitest';
import type { FleetQueries, TelemetryHistoryQuery } from '../../../functions/app/http/fleet-queries.js';
import { createHttpApi } from '../../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';
import { telemetryWindow } from '../../../functions/app/http/telemetry-window.js';
import { HttpError } from '../../../functions/app/http/errors.js';
import { toHttpApiEvent } from '../../../local/http-api-event.js';
import { TELEMETRY_HISTORY_MAX_SAMPLES, TelemetryHistory } from '../../../schemas/index.js';
import { InMemoryEventLog } from '../../support/in-memory-event-log.js';

/** GET /api/v2/robots/{id}/telemetry through the HTTP layer: the window's defaults and bounds, 400s and 404. */

const NOW = new Date('2026-11-22T10:00:00.000Z');
const ROBOT = 'lekiwi-LK0001';
const OPERATOR = { username: 'olga', 'cognito:groups': '[operator]' };

function api() {
  const asked: { robotId: string; query: TelemetryHistoryQuery }[] = [];
  const unused = () => Promise.reject(new Error('not used here'));
  const queries: FleetQueries = {
    listRobots: unused,
    getRobot: unused,
    listEvents: unused,
    metrics: unused,
    telemetryHistory: async (robotId, query) => {
      asked.push({ robotId, query });
      if (robotId !== ROBOT) return null;
      return { samples: [{ sampledAt: '2026-11-22T09:59:00.000Z', cpuPercent: 12 }], truncated: false };
    },
  };
  const handle = createHttpApi({
    queries,
    eventLog: new InMemoryEventLog(),
    robotCommands: { send: unused },
    now: () => NOW,
    newEventId: () => 'evt-00000001',
  });
  return {
    asked,
    get: async (robotId: string, query: Record<string, string> = {}) => {
      const result = await handle(
        toHttpApiEvent({ method: 'GET', path: `/api/v2/robots/${robotId}/telemetry`, query }, { routeKeys: ROUTE_KEYS, claims: OPERATOR }),
      );
      return { status: result.statusCode, body: JSON.parse(result.body) };
    },
  };
}

describe('GET /api/v2/robots/{id}/telemetry', () => {
  it('answers the last hour by default, with the bound on samples, in the documented shape', async () => {
    const { get, asked } = api();
    const answer = await get(ROBOT);
    expect(answer.status).toBe(200);
    expect(TelemetryHistory.parse(answer.body)).toEqual({
      robotId: ROBOT,
      from: '2026-11-22T09:00:00.000Z',
      to: '2026-11-22T10:00:00.000Z',
      samples: [{ sampledAt: '2026-11-22T09:59:00.000Z', cpuPercent: 12 }],
      truncated: false,
    });
    expect(asked).toEqual([{ robotId: ROBOT, query: { from: new Date('2026-11-22T09:00:00.000Z'), to: NOW, limit: TELEMETRY_HISTORY_MAX_SAMPLES } }]);
  });

  it('takes from and to, with any offset', async () => {
    const { get } = api();
    const answer = await get(ROBOT, { from: '2026-11-21T12:00:00+02:00', to: '2026-11-22T08:30:00Z' });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ from: '2026-11-21T10:00:00.000Z', to: '2026-11-22T08:30:00.000Z' });
  });

  it('is a 404 for a robot the read model does not know', async () => {
    const answer = await api().get('lekiwi-LK9999');
    expect(answer.status).toBe(404);
    expect(answer.body.error.code).toBe('ROBOT_NOT_FOUND');
  });

  it.each([
    ['a from that is not a timestamp', { from: 'yesterday' }, ['from']],
    ['a to without an offset', { to: '2026-11-22T08:00:00' }, ['to']],
    ['both malformed', { from: '1', to: '2' }, ['from', 'to']],
    ['an unknown parameter', { since: '2026-11-22T08:00:00Z' }, ['since']],
    ['from after to', { from: '2026-11-22T09:00:00Z', to: '2026-11-22T08:00:00Z' }, ['from']],
    ['an empty window', { from: '2026-11-22T09:00:00Z', to: '2026-11-22T09:00:00Z' }, ['from']],
    ['more than 24 hours', { from: '2026-11-21T09:59:59Z' }, ['from']],
  ])('is a 400 naming the field for %s, without reading the read model', async (_case, query, fields) => {
    const { get, asked } = api();
    const answer = await get(ROBOT, query);
    expect(answer.status).toBe(400);
    expect(answer.body.error.details.map((detail: { field: string }) => detail.field)).toEqual(fields);
    expect(asked).toEqual([]);
  });

  it('names a bad robot id and a bad window in one 400', async () => {
    const answer = await api().get('not-a-robot', { from: 'x' });
    expect(answer.status).toBe(400);
    expect(answer.body.error.details.map((detail: { field: string }) => detail.field)).toEqual(['id', 'from']);
  });
});

describe('telemetryWindow', () => {
  it('ends now and starts an hour before to by default', () => {
    expect(telemetryWindow({}, NOW)).toEqual({ from: new Date('2026-11-22T09:00:00.000Z'), to: NOW });
    expect(telemetryWindow({ to: '2026-11-20T00:00:00Z' }, NOW)).toEqual({
      from: new Date('2026-11-19T23:00:00.000Z'),
      to: new Date('2026-11-20T00:00:00.000Z'),
    });
    expect(telemetryWindow({ from: '2026-11-22T04:00:00Z' }, NOW)).toEqual({ from: new Date('2026-11-22T04:00:00.000Z'), to: NOW });
  });

  it('allows exactly 24 hours and says what is wrong beyond', () => {
    expect(telemetryWindow({ from: '2026-11-21T10:00:00Z' }, NOW).from).toEqual(new Date('2026-11-21T10:00:00.000Z'));
    expect(() => telemetryWindow({ from: '2026-11-21T09:00:00Z' }, NOW)).toThrow(HttpError);
    try {
      telemetryWindow({ from: '2026-11-21T09:00:00Z' }, NOW);
    } catch (error) {
      expect((error as HttpError).details).toEqual([
        {
          field: 'from',
          message:
            'must be at most 24 hours before to (2026-11-22T10:00:00.000Z), is 2026-11-21T09:00:00.000Z; ask for a longer span a day at a time',
        },
      ]);
    }
  });
});
