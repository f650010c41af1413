import { describe, expect, it } from 'vitest';
import type { FleetQueries } from '../../../functions/app/http/fleet-queries.js';
import { createHttpApi } from '../../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';
import type { RobotCommandChannel } from '../../../functions/app/ports.js';
import { fold, initialRobotState } from '../../../functions/domain/robot-state.js';
import { toHttpApiEvent, type PlainHttpRequest } from '../../../local/http-api-event.js';
import { InMemoryEventLog } from '../../support/in-memory-event-log.js';
import { robotHistory } from '../../support/read-model-seed.js';

/**
 * The write routes on the in-memory log: the same Idempotency-Key rules as on DynamoDB (idempotency-keys.test.ts),
 * so unit tests that use the in-memory log see the behaviour production has.
 */

const ROBOT = 'lekiwi-LK0042';
const noReadModel = {} as FleetQueries;
const noRobotCommands: RobotCommandChannel = { send: () => Promise.reject(new Error('no robot commands in this test')) };

async function setup() {
  const eventLog = new InMemoryEventLog();
  const events = robotHistory(ROBOT).slice(0, 2);
  await eventLog.append({
    robotId: ROBOT,
    expectedRevision: null,
    expectedLastSeq: 0,
    events,
    state: fold(initialRobotState(ROBOT), events),
    recordedAt: '2026-11-22T09:00:00.000Z',
    previousTelemetry: null,
  });
  let ids = 0;
  let clock = Date.parse('2026-11-22T10:00:00.000Z');
  const api = createHttpApi({
    queries: noReadModel,
    eventLog,
    now: () => new Date((clock += 1000)),
    robotCommands: noRobotCommands,
    newEventId: () => `evt-${String(++ids).padStart(8, '0')}`,
  });
  const send = async (plain: PlainHttpRequest, username = 'erin') => {
    const result = await api(toHttpApiEvent(plain, { routeKeys: ROUTE_KEYS, claims: { username, 'cognito:groups': '[engineer]' } }));
    return { status: result.statusCode, body: JSON.parse(result.body) };
  };
  const types = async () => (await eventLog.readEvents(ROBOT)).events.map((recorded) => recorded.event.type);
  return { send, types };
}

const fail = (key: string, reason = 'overheats'): PlainHttpRequest => ({
  method: 'POST',
  path: `/api/v2/robots/${ROBOT}/fail`,
  headers: { 'Idempotency-Key': key },
  body: JSON.stringify({ reason }),
});

describe('Idempotency-Key on the in-memory log', () => {
  it('answers a retry with the first answer, and refuses the key on /recover or with another body (422)', async () => {
    const { send, types } = await setup();
    const first = await send(fail('key-00000001'));
    expect(first.status).toBe(200);

    expect(await send(fail('key-00000001'))).toEqual(first);
    const onRecover = await send({ method: 'POST', path: `/api/v2/robots/${ROBOT}/recover`, headers: { 'Idempotency-Key': 'key-00000001' } });
    const otherBody = await send(fail('key-00000001', 'wheel stalls'));

    expect(onRecover).toMatchObject({ status: 422, body: { error: { code: 'IDEMPOTENCY_KEY_REUSED', details: { differs: ['route'] } } } });
    expect(otherBody).toMatchObject({ status: 422, body: { error: { code: 'IDEMPOTENCY_KEY_REUSED', details: { differs: ['body'] } } } });
    expect(await types()).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed']);
  });

  it('keeps two callers’ equal keys apart', async () => {
    const { send, types } = await setup();
    expect((await send(fail('key-00000001'))).status).toBe(200);
    expect((await send({ method: 'POST', path: `/api/v2/robots/${ROBOT}/recover` })).status).toBe(200);

    const adas = await send(fail('key-00000001'), 'ada');

    expect(adas.status).toBe(200);
    expect(adas.body.robot.failure).toMatchObject({ by: 'ada' });
    expect(await types()).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed', 'RobotRecovered', 'RobotMarkedFailed']);
  });

  it.each([
    ['fail', { reason: 'x' }],
    ['recover', {}],
  ])('answers 400 naming an unknown query parameter on /%s', async (route, body) => {
    const { send, types } = await setup();
    const answer = await send({ method: 'POST', path: `/api/v2/robots/${ROBOT}/${route}`, query: { force: '1' }, body: JSON.stringify(body) });
    expect(answer).toMatchObject({ status: 400, body: { error: { code: 'INVALID_REQUEST', details: [{ field: 'force' }] } } });
    expect(await types()).toEqual(['RobotRegistered', 'RobotConnected']);
  });
});
