import { describe, expect, it } from 'vitest';
import { createHttpApi } from '../../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';
import { RotateCertificateResult } from '../../../schemas/rotation.js';
import { toHttpApiEvent, type PlainHttpRequest } from '../../../local/http-api-event.js';
import { InMemoryFleetQueries, RecordingCommandChannel } from '../../support/fleet-queries-fake.js';
import { InMemoryEventLog } from '../../support/in-memory-event-log.js';

/** POST /api/v2/robots/{id}/rotate-certificate through the HTTP layer with in-memory ports. */

const EVENT_ID = '0d3c8a52-41f6-4e3e-8f8c-2b7b5a1e9c44';
const FLEET = [
  { robotId: 'lekiwi-LK0001', online: true },
  { robotId: 'lekiwi-LK0002', online: false },
];
const as = (username: string, groups: string) => ({ username, 'cognito:groups': groups });

function api() {
  const channel = new RecordingCommandChannel();
  const handle = createHttpApi({
    queries: new InMemoryFleetQueries(FLEET),
    eventLog: new InMemoryEventLog(),
    robotCommands: channel,
    now: () => new Date('2026-12-01T10:00:00.000Z'),
    newEventId: () => EVENT_ID,
  });
  return {
    channel,
    call: async (robotId: string, claims: Record<string, string>, request: Partial<PlainHttpRequest> = {}) => {
      const path = `/api/v2/robots/${robotId}/rotate-certificate`;
      const result = await handle(toHttpApiEvent({ method: 'POST', path, ...request }, { routeKeys: ROUTE_KEYS, claims }));
      return { status: result.statusCode, body: JSON.parse(result.body) };
    },
  };
}

describe('POST /api/v2/robots/{id}/rotate-certificate', () => {
  it('answers an admin 202 with the request id, and sends rotate-certificate on the robot command topic', async () => {
    const { call, channel } = api();
    const answer = await call('lekiwi-LK0001', as('ada', '[admin]'));
    expect(answer.status).toBe(202);
    expect(RotateCertificateResult.parse(answer.body)).toEqual({ robotId: 'lekiwi-LK0001', requestId: `rotation-${EVENT_ID}` });
    expect(channel.sent).toEqual([{ robotId: 'lekiwi-LK0001', request: 'rotate-certificate', payload: { requestId: `rotation-${EVENT_ID}` } }]);
  });

  it('refuses an engineer with 403 naming the admin role, and sends nothing', async () => {
    const { call, channel } = api();
    const answer = await call('lekiwi-LK0001', as('erin', '[engineer]'));
    expect(answer.status).toBe(403);
    expect(answer.body.error).toMatchObject({ code: 'FORBIDDEN', details: { requiredRole: 'admin' } });
    expect(channel.sent).toEqual([]);
  });

  it('answers 409 ROBOT_OFFLINE naming an offline robot, and 404 for an unknown one', async () => {
    const { call, channel } = api();
    const offline = await call('lekiwi-LK0002', as('ada', '[admin]'));
    expect(offline.status).toBe(409);
    expect(offline.body.error.code).toBe('ROBOT_OFFLINE');
    expect(offline.body.error.message).toContain('lekiwi-LK0002');
    expect((await call('lekiwi-LK0099', as('ada', '[admin]'))).status).toBe(404);
    expect(channel.sent).toEqual([]);
  });
});
