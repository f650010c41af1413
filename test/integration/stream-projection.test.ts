import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { toHeadItem } from '../../functions/adapters/event-log-items.js';
import { PgReadModelWriter } from '../../functions/adapters/pg-read-models.js';
import type { DeadLetter, DeadLetters } from '../../functions/app/dead-letters.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { projectStream } from '../../functions/adapters/stream-consumers.js';
import { rebuildReadModels } from '../../functions/app/rebuild-read-models.js';
import type { DomainEvent } from '../../schemas/index.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import { evolve } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { startStreamPoller, type StreamPollerOptions } from '../../local/stream-poller.js';
import { createTestEventLog, streamsClient } from '../support/dynamo.js';
import { FleetSimulation } from '../support/fleet-simulation.js';
import { createTestDatabase } from '../support/postgres.js';
import { expectedAfterRebuild, readRows, snapshot } from '../support/read-model-tables.js';
import { POLL } from '../support/poll.js';

const ROBOT = 'lekiwi-LK0001';
const OTHER = 'xle-XL0002';
const T0 = Date.parse('2026-11-02T09:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  // Pollers first (they read the tables and write the databases), then tables and databases.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An event log table on DynamoDB Local and a read model database of its own. */
async function setup() {
  const table = await createTestEventLog();
  cleanups.push(() => table.drop());
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  const writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
  const command = (robotId: string, robotCommand: RobotCommand, minutes: number) =>
    executeRobotCommand(log, robotId, robotCommand, { now: () => new Date(T0 + minutes * 60_000) });
  const deadLetters = new ListDeadLetters();
  return { table, db, log, writer, command, deadLetters };
}

class ListDeadLetters implements DeadLetters {
  readonly letters: DeadLetter[] = [];
  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    this.letters.push(...letters);
  }
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** The stream poller in front of the projector, as Lambda's event source mapping is in AWS. */
function project(
  { table, writer, log, deadLetters }: Setup,
  options: Partial<Omit<StreamPollerOptions, 'client' | 'streamArn'>> = {},
  handler = (event: DynamoDBStreamEvent) => projectStream(event, writer, { log, deadLetters }),
) {
  const client = streamsClient();
  const poller = startStreamPoller({ client, streamArn: table.streamArn, handler, log: () => {}, retryDelayMs: 10, ...options });
  cleanups.push(async () => {
    await poller.stop();
    client.destroy();
  });
  return poller;
}

const documents = ({ table }: Setup) => DynamoDBDocumentClient.from(table.client, { marshallOptions: { removeUndefinedValues: true } });

const connect = (robotId: string, versionNumber: number, minutes: number): RobotCommand => ({
  type: 'RecordPresence',
  presence: {
    eventType: 'connected',
    clientId: robotId,
    timestamp: T0 + minutes * 60_000,
    sessionIdentifier: `${robotId}-session-${versionNumber}`,
    principalIdentifier: 'a1b2c3d4e5f6',
    versionNumber,
    ipAddress: '192.168.7.21',
  },
});

const teleoperation = (kind: 'start' | 'stop', eventId: string, minutes: number): RobotCommand => ({
  type: 'RecordAgentEvent',
  event:
    kind === 'start'
      ? { type: 'TeleoperationStarted', eventId, occurredAt: at(minutes), data: { operatorAddress: '10.0.0.5', signals: ['actions'] } }
      : { type: 'TeleoperationStopped', eventId, occurredAt: at(minutes), data: { reason: 'operator-idle' } },
});

const sample = (minutes: number, cpuTemperatureC: number): RobotCommand => ({
  type: 'RecordTelemetry',
  sample: { sampledAt: at(minutes), cpuTemperatureC },
});

/** The read model must show each robot as its head in the log has it. */
async function expectRobotsAsTheLogHasThem({ db, log }: Setup, robotIds: readonly string[]) {
  const rows = await readRows(db.pool, 'robots');
  const expected = await Promise.all(
    robotIds.map(async (robotId) => {
      const head = (await log.readHead(robotId))!;
      return expect.objectContaining({
        robot_id: robotId,
        last_seq: String(head.lastSeq),
        state: head.state,
        view: toRobotView(head.state, head.lastSeq, null),
        telemetry: head.telemetry,
      });
    }),
  );
  expect(rows).toEqual(expected);
}

describe('event log on DynamoDB Local → stream → projector → PostgreSQL', () => {
  it('projects the commands of two robots into the read model the log implies', async () => {
    // Given commands through the real command loop on DynamoDB Local
    const fleet = await setup();
    await fleet.command(ROBOT, { type: 'RegisterRobot', eventId: 'register-LK0001', at: at(0) }, 0);
    await fleet.command(ROBOT, connect(ROBOT, 1, 1), 1);
    await fleet.command(OTHER, connect(OTHER, 1, 1), 1);
    await fleet.command(ROBOT, sample(2, 85), 2);
    await fleet.command(ROBOT, teleoperation('start', 'teleop-0001-start', 3), 3);
    await fleet.command(ROBOT, sample(4, 70), 4);
    await fleet.command(ROBOT, teleoperation('stop', 'teleop-0001-stop', 5), 5);
    await fleet.command(OTHER, { type: 'MarkFailed', eventId: 'fail-XL0002', at: at(6), reason: 'wheel jammed', by: 'ops@fleet' }, 6);

    // When the stream is projected
    await project(fleet).idle({ timeoutMs: 20_000 });

    // Then
    await expectRobotsAsTheLogHasThem(fleet, [ROBOT, OTHER]);
    const events = await readRows(fleet.db.pool, 'robot_events');
    expect(events.map((event) => [event.robot_id, event.seq, event.type])).toEqual([
      [ROBOT, '1', 'RobotRegistered'],
      [ROBOT, '2', 'RobotConnected'],
      [ROBOT, '3', 'AlertRaised'],
      [ROBOT, '4', 'TeleoperationStarted'],
      [ROBOT, '5', 'AlertCleared'],
      [ROBOT, '6', 'TeleoperationStopped'],
      [OTHER, '1', 'RobotConnected'],
      [OTHER, '2', 'RobotMarkedFailed'],
    ]);
    expect(await readRows(fleet.db.pool, 'teleoperation_sessions')).toEqual([
      expect.objectContaining({ robot_id: ROBOT, started_seq: '4', stopped_seq: '6', duration_ms: String(2 * 60_000) }),
    ]);
    expect(await readRows(fleet.db.pool, 'alerts')).toEqual([
      expect.objectContaining({ robot_id: ROBOT, raised_seq: '3', cleared_seq: '5', cleared_value: 70 }),
    ]);
    expect(await readRows(fleet.db.pool, 'telemetry_samples')).toHaveLength(2);
  });

  it('sets a poison item aside itself, with the reason, and projects every record behind it without retrying', async () => {
    // Given a robot's history with a malformed item put straight into the table, and more of both robots behind it
    const fleet = await setup();
    await fleet.command(ROBOT, connect(ROBOT, 1, 0), 0);
    await documents(fleet).send(
      new PutCommand({
        TableName: fleet.table.tableName,
        Item: { robotId: ROBOT, seq: 1000, kind: 'event', eventId: 'poison-1', type: 'RobotExploded', version: 1, at: at(1), recordedAt: at(1), data: {} },
      }),
    );
    await fleet.command(ROBOT, teleoperation('start', 'teleop-0002-start', 2), 2);
    await fleet.command(OTHER, connect(OTHER, 1, 2), 2);
    const isPoison = (record: DynamoDBRecord) => record.dynamodb?.NewImage?.eventId?.S === 'poison-1';
    let deliveries = 0;
    const onFailure = vi.fn();

    // When the stream is projected with retries until success, as deployed
    const poller = project(fleet, { maximumRetryAttempts: -1, bisectBatchOnFunctionError: true, onFailure }, (event) => {
      if (event.Records.some(isPoison)) deliveries++;
      return projectStream(event, fleet.writer, { log: fleet.log, deadLetters: fleet.deadLetters });
    });
    await poller.idle({ timeoutMs: 20_000 });

    // Then the poison record was delivered once and set aside with its reason; nothing reached the on-failure path
    expect(deliveries).toBe(1);
    expect(onFailure).not.toHaveBeenCalled();
    expect(fleet.deadLetters.letters).toEqual([
      expect.objectContaining({ robotId: ROBOT, seq: 1000, eventName: 'INSERT', reason: expect.stringContaining('type') }),
    ]);
    // and everything else reached the read model, for the same robot and the other one
    await expectRobotsAsTheLogHasThem(fleet, [ROBOT, OTHER]);
    const events = await readRows(fleet.db.pool, 'robot_events');
    expect(events.map((event) => [event.robot_id, event.seq])).toEqual([
      [ROBOT, '1'],
      [ROBOT, '2'],
      [OTHER, '1'],
    ]);
  });

  it("holds a robot whose missing event is unreadable in the log too, projects the others, and heals once it is repaired", async () => {
    // Given a robot whose seq 2 in the log is malformed (its head moved past it), followed by a sound seq 3
    const fleet = await setup();
    await fleet.command(ROBOT, connect(ROBOT, 1, 0), 0);
    const head = (await fleet.log.readHead(ROBOT))!;
    const spoiled = { robotId: ROBOT, seq: 2, kind: 'event', eventId: 'fail-2', type: 'RobotMarkedFailed', version: 1, at: at(1), recordedAt: at(1), data: { by: 'ops' } };
    await documents(fleet).send(new PutCommand({ TableName: fleet.table.tableName, Item: spoiled }));
    const failed = evolve(head.state, { ...spoiled, data: { reason: 'arm stuck', by: 'ops' } } as unknown as DomainEvent);
    await documents(fleet).send(
      new PutCommand({ TableName: fleet.table.tableName, Item: { ...toHeadItem({ ...head, state: failed, lastSeq: 2, revision: head.revision + 1 }, false) } }),
    );
    await fleet.command(ROBOT, { type: 'Recover', eventId: 'recover-3', at: at(2), by: 'ops' }, 2);
    await fleet.command(OTHER, connect(OTHER, 1, 2), 2);
    const onFailure = vi.fn();

    // When the stream is projected with retries until success
    let retries = 0;
    project(fleet, { maximumRetryAttempts: -1, bisectBatchOnFunctionError: true, onFailure, retryDelayMs: 20 }, async (event) => {
      const response = await projectStream(event, fleet.writer, { log: fleet.log, deadLetters: fleet.deadLetters });
      if (response.batchItemFailures.length > 0) retries++;
      return response;
    });

    // Then the other robot is projected, the robot stays at seq 1 (never past the gap), the record is set aside
    await vi.waitFor(async () => expect((await readRows(fleet.db.pool, 'robots')).map((row) => [row.robot_id, row.last_seq])).toEqual([
      [ROBOT, '1'],
      [OTHER, '1'],
    ]), POLL);
    await vi.waitFor(() => expect(fleet.deadLetters.letters).toEqual([expect.objectContaining({ robotId: ROBOT, seq: 2, reason: expect.stringContaining('reason') })]), POLL);
    // however often it is retried
    await expect.poll(() => retries, { message: 'five retries' }).toBeGreaterThanOrEqual(5);
    expect((await readRows(fleet.db.pool, 'robot_events')).filter((event) => event.robot_id === ROBOT).map((event) => event.seq)).toEqual(['1']);

    // And once the item in the log is repaired, the waiting records go through and the read model is the log's
    await documents(fleet).send(new PutCommand({ TableName: fleet.table.tableName, Item: { ...spoiled, data: { reason: 'arm stuck', by: 'ops' } } }));
    await vi.waitFor(async () => {
      const rows = await readRows(fleet.db.pool, 'robot_events');
      expect(rows.map((event) => [event.robot_id, event.seq, event.type])).toEqual([
        [ROBOT, '1', 'RobotConnected'],
        [ROBOT, '2', 'RobotMarkedFailed'],
        [ROBOT, '3', 'RobotRecovered'],
        [OTHER, '1', 'RobotConnected'],
      ]);
    }, POLL);
    await expectRobotsAsTheLogHasThem(fleet, [ROBOT, OTHER]);
    expect(fleet.deadLetters.letters).toHaveLength(1);
    expect(onFailure).not.toHaveBeenCalled();
  });

  it('rebuilds from DynamoEventLog.replayAll the read model the incremental run gave', async () => {
    // Given a simulated fleet history on DynamoDB Local, projected from its stream in small batches
    const fleet = await setup();
    const simulation = new FleetSimulation(fleet.log, { robots: 3, seed: 20_261_102, startAt: at(0) });
    await simulation.run(60);
    await project(fleet, { batchSize: 7 }).idle({ timeoutMs: 20_000 });
    const incremental = await snapshot(fleet.db.pool);

    // When the whole log is replayed into an empty database
    const empty = await createTestDatabase();
    cleanups.push(() => empty.drop());
    await rebuildReadModels(fleet.log, new PgReadModelWriter(empty.pool, { telemetryRetentionDays: 7 }), { chunkSize: 10 });

    // Then it holds what the incremental run wrote (but the sample history, which the log does not keep)
    expect(await snapshot(empty.pool)).toEqual(expectedAfterRebuild(incremental));
    expect(incremental.robots).toHaveLength(3);
    expect(incremental.robot_events.length).toBeGreaterThan(20);
  });
});
