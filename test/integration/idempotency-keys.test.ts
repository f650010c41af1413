import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { FleetQueries } from '../../functions/app/http/fleet-queries.js';
import { createHttpApi } from '../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import type { RobotCommandChannel } from '../../functions/app/ports.js';
import { toHttpApiEvent } from '../../local/http-api-event.js';
import { createTestEventLog } from '../support/dynamo.js';
import { appendConnectedRobot } from '../support/read-model-seed.js';

/**
 * Idempotency-Key on the write routes, as payment APIs treat it, against the real event log on DynamoDB Local (its
 * transactions are what make a key count once): a key belongs to its caller on one robot; reused for the same request
 * it answers the first answer again and writes nothing, reused for another request it is refused (422); a robot's
 * own event ids can never take a person's key.
 */

let table: Awaited<ReturnType<typeof createTestEventLog>>;
let log: DynamoEventLog;
let api: ReturnType<typeof createHttpApi>;
let clock = Date.parse('2026-11-22T10:00:00.000Z');

/** Commands never read the read model. */
const noReadModel: FleetQueries = {
  listRobots: () => Promise.reject(new Error('no read model in this test')),
  getRobot: () => Promise.reject(new Error('no read model in this test')),
  listEvents: () => Promise.reject(new Error('no read model in this test')),
  metrics: () => Promise.reject(new Error('no read model in this test')),
  telemetryHistory: () => Promise.reject(new Error('no read model in this test')),
};
const noRobotCommands: RobotCommandChannel = { send: () => Promise.reject(new Error('no robot commands in this test')) };

beforeAll(async () => {
  table = await createTestEventLog();
  log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  // A clock that moves, so a replay answered from a fresh decision would show a different time than the first answer.
  api = createHttpApi({
    queries: noReadModel,
    eventLog: log,
    now: () => new Date((clock += 1000)),
    robotCommands: noRobotCommands,
    newEventId: randomUUID,
  });
});

afterAll(async () => {
  await table?.drop();
});

const erin = { username: 'erin', 'cognito:groups': '[engineer]' };
const ada = { username: 'ada', 'cognito:groups': '[admin]' };

interface Answer {
  readonly status: number;
  readonly body: any;
}

async function post(
  path: string,
  body: unknown,
  { key, caller = erin, query }: { key?: string; caller?: Record<string, string>; query?: Record<string, string> } = {},
): Promise<Answer> {
  const event = toHttpApiEvent(
    {
      method: 'POST',
      path,
      headers: { 'content-type': 'application/json', ...(key ? { 'Idempotency-Key': key } : {}) },
      ...(query ? { query } : {}),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    },
    { routeKeys: ROUTE_KEYS, claims: caller },
  );
  const result = await api(event);
  return { status: result.statusCode, body: JSON.parse(result.body) };
}

async function eventTypes(robotId: string): Promise<string[]> {
  return (await log.readEvents(robotId)).events.map((recorded) => recorded.event.type);
}

const newKey = () => `key-${randomUUID()}`;

describe('an Idempotency-Key reused for the same request', () => {
  it('answers exactly the first answer again and writes nothing', async () => {
    // Given a failure recorded under a key whose answer the client never got
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    const first = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key });
    expect(first.status).toBe(200);
    expect(first.body.appended).toEqual([{ seq: 3, type: 'RobotMarkedFailed', eventId: expect.any(String) }]);

    // When the client retries it
    const retry = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key });

    // Then it gets the same answer, and the log holds one failure
    expect(retry).toEqual(first);
    expect(await eventTypes(robotId)).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed']);
  });

  it('answers the first answer even after the robot moved on, and does not fail it again', async () => {
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    const first = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key });
    expect((await post(`/api/v2/robots/${robotId}/recover`, {})).status).toBe(200);

    const replay = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key });

    expect(replay).toEqual(first);
    expect(await eventTypes(robotId)).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed', 'RobotRecovered']);
  });

  it('counts once when the same request arrives twice at the same moment', async () => {
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();

    const answers = await Promise.all([1, 2, 3].map(() => post(`/api/v2/robots/${robotId}/fail`, { reason: 'twice' }, { key })));

    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);
    expect(await eventTypes(robotId)).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed']);
  });

  it('treats a body that means the same (spaces the route trims away) as the same request', async () => {
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key })).status).toBe(200);

    const same = await post(`/api/v2/robots/${robotId}/fail`, { reason: '  overheats ' }, { key });

    expect(same.status).toBe(200);
    expect(await eventTypes(robotId)).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed']);
  });
});

describe('an Idempotency-Key reused for another request', () => {
  it('answers 422 IDEMPOTENCY_KEY_REUSED when a /fail key comes back on /recover, and recovers nothing', async () => {
    // Given a robot failed under a key
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key })).status).toBe(200);

    // When the same caller sends the key with a recovery
    const reused = await post(`/api/v2/robots/${robotId}/recover`, { note: 'fixed' }, { key });

    // Then it is refused, naming the route the key was used for, and the robot stays failed
    expect(reused.status).toBe(422);
    expect(reused.body.error).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', details: { differs: ['route'] } });
    expect(reused.body.error.message).toMatch(/POST \/api\/v2\/robots\/\{id\}\/fail/);
    expect(await eventTypes(robotId)).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed']);
  });

  it('answers 422 when the same route comes with another body', async () => {
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key })).status).toBe(200);
    expect((await post(`/api/v2/robots/${robotId}/recover`, {})).status).toBe(200);

    const reused = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'wheel stalls' }, { key });

    expect(reused.status).toBe(422);
    expect(reused.body.error).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED', details: { differs: ['body'] } });
    expect(await eventTypes(robotId)).toEqual(['RobotRegistered', 'RobotConnected', 'RobotMarkedFailed', 'RobotRecovered']);
  });
});

describe('whose an Idempotency-Key is', () => {
  it('belongs to its caller: two people with the same key send two independent commands', async () => {
    // Given erin failed the robot under a key, and it was recovered
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key })).status).toBe(200);
    expect((await post(`/api/v2/robots/${robotId}/recover`, {})).status).toBe(200);

    // When ada happens to send the same key, for the same request
    const adas = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key, caller: ada });

    // Then hers is a command of its own
    expect(adas.status).toBe(200);
    expect(adas.body.appended).toEqual([{ seq: 5, type: 'RobotMarkedFailed', eventId: expect.any(String) }]);
    expect(adas.body.robot.failure).toMatchObject({ by: 'ada' });
  });

  it('belongs to one robot: the same key on another robot is another command', async () => {
    const [first, second] = [await appendConnectedRobot(log, 'lekiwi-I'), await appendConnectedRobot(log, 'lekiwi-I')];
    const key = newKey();
    expect((await post(`/api/v2/robots/${first}/fail`, { reason: 'overheats' }, { key })).status).toBe(200);

    const other = await post(`/api/v2/robots/${second}/fail`, { reason: 'overheats' }, { key });

    expect(other.status).toBe(200);
    expect(other.body.appended).toHaveLength(1);
    expect(other.body.robot.robotId).toBe(second);
  });

  it('cannot be taken by a robot: an agent event whose id looks like a person’s command does not pre-claim it', async () => {
    // Given a robot that published an event with the id a person's command under this key used to get
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    const key = newKey();
    const agentEvent = {
      eventId: `request:${key}`,
      occurredAt: '2026-11-22T09:59:00.000Z',
      type: 'EventsDropped' as const,
      data: { count: 1 },
    };
    const recorded = await executeRobotCommand(log, robotId, { type: 'RecordAgentEvent', event: agentEvent }, { now: () => new Date() });
    expect(recorded.status).toBe('appended');

    // When an engineer fails the robot under that key
    const answer = await post(`/api/v2/robots/${robotId}/fail`, { reason: 'overheats' }, { key });

    // Then the failure is recorded
    expect(answer.status).toBe(200);
    expect(answer.body.appended).toEqual([{ seq: 4, type: 'RobotMarkedFailed', eventId: expect.any(String) }]);
    expect(answer.body.robot.failure).toMatchObject({ reason: 'overheats', by: 'erin' });
  });
});

describe('query parameters on the write routes', () => {
  it.each([
    ['fail', { reason: 'overheats' }, false],
    ['recover', {}, true],
  ] as const)('POST /%s answers 400 naming a parameter it does not know, and writes nothing', async (route, body, failFirst) => {
    const robotId = await appendConnectedRobot(log, 'lekiwi-I');
    if (failFirst) expect((await post(`/api/v2/robots/${robotId}/fail`, { reason: 'first' })).status).toBe(200);
    const before = await eventTypes(robotId);

    const answer = await post(`/api/v2/robots/${robotId}/${route}`, body, { query: { dryRun: 'true' } });

    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ code: 'INVALID_REQUEST', details: [{ field: 'dryRun', message: expect.any(String) }] });
    expect(await eventTypes(robotId)).toEqual(before);
  });
});
