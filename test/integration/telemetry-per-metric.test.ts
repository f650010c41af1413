import { randomUUID } from 'node:crypto';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { toHeadItem } from '../../functions/adapters/event-log-items.js';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { PgReadModelWriter } from '../../functions/adapters/pg-read-models.js';
import type { DeadLetter, DeadLetters } from '../../functions/app/dead-letters.js';
import { liveMessagesOf } from '../../functions/app/live/live-messages.js';
import type { RobotHead } from '../../functions/app/ports.js';
import { projectStream } from '../../functions/adapters/stream-consumers.js';
import { initialRobotState } from '../../functions/domain/robot-state.js';
import type { RobotView } from '../../schemas/index.js';
import { startStreamPoller } from '../../local/stream-poller.js';
import { createTestEventLog, streamsClient } from '../support/dynamo.js';
import { connectedEvent, disconnectedEvent } from '../support/lifecycle-events.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { startAckSink, viaChannel } from '../support/robot-ingest.js';
import { StreamRecords, streamEvent } from '../support/stream-records.js';

/**
 * Telemetry is merged per metric (schemas/telemetry.ts): a sample updates only the metrics it carries, each metric keeps
 * the time of the sample that last carried it, and a late sample never overwrites a newer value. Through the real
 * path: the robot-ingest handler (as the telemetry rule feeds it) → the event log on DynamoDB Local → its stream →
 * the projector → PostgreSQL → the fleet queries the HTTP API answers with, and the live messages the broadcaster pushes.
 */

type Handler = (payload: unknown) => Promise<KinesisStreamBatchResponse>;

// In the past (the ingest refuses samples far ahead of its clock), on a whole minute.
const T0 = Math.floor((Date.now() - 30 * 60_000) / 60_000) * 60_000;
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
/** The fleet queries' clock: every age below is counted to this instant. */
const NOW = T0 + 60_000;

let table: Awaited<ReturnType<typeof createTestEventLog>>;
let acks: Awaited<ReturnType<typeof startAckSink>>;
let db: TestDatabase;
let log: DynamoEventLog;
let writer: PgReadModelWriter;
let queries: PgFleetQueries;
let presence: Handler;
let telemetry: Handler;
let stopPoller: () => Promise<void>;

class ListDeadLetters implements DeadLetters {
  readonly letters: DeadLetter[] = [];
  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    this.letters.push(...letters);
  }
}

beforeAll(async () => {
  table = await createTestEventLog();
  acks = await startAckSink();
  db = await createTestDatabase();
  log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
  queries = new PgFleetQueries(db.pool, { now: () => new Date(NOW) });
  vi.resetModules();
  Object.assign(process.env, {
    EVENT_LOG_TABLE: table.tableName,
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
    AWS_ENDPOINT_URL_IOT_DATA_PLANE: acks.url,
  });
  const ingest = await import('../../functions/handlers/robot-ingest.js');
  presence = viaChannel(ingest.handler, 'presence');
  telemetry = viaChannel(ingest.handler, 'telemetry');
  const client = streamsClient();
  const deadLetters = new ListDeadLetters();
  const poller = startStreamPoller({
    client,
    streamArn: table.streamArn,
    handler: (event) => projectStream(event, writer, { log, deadLetters }),
    log: () => {},
    retryDelayMs: 10,
  });
  stopPoller = async () => {
    await poller.stop();
    client.destroy();
  };
});

afterAll(async () => {
  await stopPoller?.();
  await table?.drop();
  await acks?.stop();
  await db?.drop();
});

const robotId = () => `lekiwi-PM${randomUUID().slice(0, 8)}`;

/** The robot as GET /api/v2/robots/{id} answers, once the read model holds the sample taken at `sampledAt`. */
async function projected(robot: string, sampledAt: string): Promise<RobotView> {
  await expect
    .poll(async () => (await queries.getRobot(robot))?.telemetry?.sampledAt, { timeout: 20_000, interval: 50 })
    .toBe(sampledAt);
  return (await queries.getRobot(robot))!;
}

const FULL = { cpuPercent: 31, memoryPercent: 42, diskPercent: 53, cpuTemperatureC: 55 };

describe('a partial sample does not blank the others', () => {
  it('a sample with only sampledAt after a full one leaves CPU, memory and disk with their values and ages', async () => {
    // Given an online robot that reported every metric
    const robot = robotId();
    await presence(connectedEvent(robot, 1, T0));
    await telemetry({ thingName: robot, sampledAt: at(0), ...FULL });

    // When a sample with nothing but its time arrives (schema-valid: every metric is optional)
    await telemetry({ thingName: robot, sampledAt: at(30) });

    // Then the API still shows every value, each with the time of the sample that carried it and its age
    const view = await projected(robot, at(30));
    expect(view.telemetry).toMatchObject({ ...FULL, sampledAt: at(30), ageMs: 30_000, stale: false });
    for (const [metric, value] of Object.entries(FULL)) {
      expect(view.telemetry?.metrics[metric as keyof typeof FULL]).toEqual({ value, sampledAt: at(0), ageMs: 60_000, stale: false });
    }
    // and the list says the same
    const listed = (await queries.listRobots({ limit: 500 })).items.find((item) => item.robotId === robot);
    expect(listed?.telemetry).toEqual(view.telemetry);

    // and the head the live feed and commands read holds the merged values too
    const head = (await log.readHead(robot))!;
    expect(head.telemetry).toMatchObject({ ...FULL, sampledAt: at(30) });
    const [pushed] = liveMessagesOf({ kind: 'head', head: { ...head, telemetryChanged: true } }, new Date(NOW));
    expect(pushed).toMatchObject({ type: 'RobotTelemetry', at: at(30), data: { ...FULL, sampledAt: at(30), stale: false } });
    expect((pushed!.data.metrics as Record<string, unknown>).diskPercent).toEqual({ value: 53, sampledAt: at(0), ageMs: 60_000, stale: false });
  });

  it('a late partial sample never overwrites a newer value, and still brings the metrics it has newer', async () => {
    // Given a full sample, then a newer one with CPU only
    const robot = robotId();
    await presence(connectedEvent(robot, 1, T0));
    await telemetry({ thingName: robot, sampledAt: at(0), ...FULL });
    await telemetry({ thingName: robot, sampledAt: at(20), cpuPercent: 60 });
    await projected(robot, at(20));

    // When a sample taken between the two arrives last, with CPU and memory
    await telemetry({ thingName: robot, sampledAt: at(10), cpuPercent: 90, memoryPercent: 47 });

    // Then CPU keeps its newer value, memory takes the later one, disk keeps the first
    await expect
      .poll(async () => (await queries.getRobot(robot))?.telemetry?.metrics.memoryPercent, { timeout: 20_000, interval: 50 })
      .toEqual({ value: 47, sampledAt: at(10), ageMs: 50_000, stale: false });
    const view = (await queries.getRobot(robot))!;
    expect(view.telemetry).toMatchObject({ sampledAt: at(20), cpuPercent: 60, memoryPercent: 47, diskPercent: 53 });
    expect(view.telemetry?.metrics.cpuPercent).toEqual({ value: 60, sampledAt: at(20), ageMs: 40_000, stale: false });
    expect(view.telemetry?.metrics.diskPercent).toEqual({ value: 53, sampledAt: at(0), ageMs: 60_000, stale: false });
  });

  it("an offline robot's last values are shown as stale, not current", async () => {
    // Given a robot that reported, then went offline
    const robot = robotId();
    const connect = connectedEvent(robot, 1, T0);
    await presence(connect);
    await telemetry({ thingName: robot, sampledAt: at(0), ...FULL });
    await projected(robot, at(0));
    await presence(disconnectedEvent(connect, T0 + 5_000));

    // Then its values are its last ones, each marked stale, as is the telemetry as a whole
    await expect.poll(async () => (await queries.getRobot(robot))?.status, { timeout: 20_000, interval: 50 }).toBe('offline');
    const view = (await queries.getRobot(robot))!;
    expect(view.telemetry).toMatchObject({ ...FULL, sampledAt: at(0), stale: true });
    expect(view.telemetry?.metrics.cpuPercent).toEqual({ value: 31, sampledAt: at(0), ageMs: 60_000, stale: true });
  });

  it('an online robot whose value is older than the staleness threshold shows that value as stale', async () => {
    // Given an online robot whose disk was last reported long before its CPU
    const robot = robotId();
    await presence(connectedEvent(robot, 1, T0 - 10 * 60_000));
    await telemetry({ thingName: robot, sampledAt: new Date(T0 - 10 * 60_000).toISOString(), diskPercent: 53 });
    await telemetry({ thingName: robot, sampledAt: at(30), cpuPercent: 31 });

    // Then the old disk value is stale, the recent CPU value is not
    const view = await projected(robot, at(30));
    expect(view.telemetry).toMatchObject({ stale: false, cpuPercent: 31, diskPercent: 53 });
    expect(view.telemetry?.metrics.diskPercent).toMatchObject({ value: 53, ageMs: 11 * 60_000, stale: true });
    expect(view.telemetry?.metrics.cpuPercent).toMatchObject({ value: 31, ageMs: 30_000, stale: false });
  });
});

describe('the projector merges per metric whatever the heads carry', () => {
  it('keeps the values a later head lacks (heads written before the merge carried the raw sample)', async () => {
    // Given two heads as the log held them before telemetry was merged: a full sample, then a partial one
    const robot = robotId();
    const head = (revision: number, sample: Record<string, unknown>): RobotHead => ({
      robotId: robot,
      state: initialRobotState(robot),
      lastSeq: 0,
      revision,
      telemetry: sample as never,
      outbox: null,
      updatedAt: at(revision),
    });
    const records = new StreamRecords().records([
      { eventName: 'INSERT', item: { ...toHeadItem(head(1, { sampledAt: at(0), ...FULL }), true) } },
      { eventName: 'MODIFY', item: { ...toHeadItem(head(2, { sampledAt: at(30), cpuPercent: 70 }), true) } },
    ]);

    // When they are projected, in two batches
    await projectStream(streamEvent(records.slice(0, 1)), writer);
    await projectStream(streamEvent(records.slice(1)), writer);

    // Then the robot has every value, CPU from the later head
    const view = (await queries.getRobot(robot))!;
    expect(view.telemetry).toMatchObject({ sampledAt: at(30), cpuPercent: 70, memoryPercent: 42, diskPercent: 53 });
    expect(view.telemetry?.metrics.memoryPercent).toMatchObject({ value: 42, sampledAt: at(0) });
    // and the history keeps each sample as it came
    const { rows } = await db.pool.query('SELECT sample FROM telemetry_samples WHERE robot_id = $1 ORDER BY sampled_at', [robot]);
    expect(rows.map((row) => row.sample)).toEqual([{ sampledAt: at(0), ...FULL }, { sampledAt: at(30), cpuPercent: 70 }]);
  });
});
