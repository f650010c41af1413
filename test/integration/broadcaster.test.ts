import { channelRecord } from '../support/robot-ingest.js';
import { randomUUID } from 'node:crypto';
import {
  ApiGatewayManagementApiClient,
  GoneException,
  LimitExceededException,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import { ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi, type MockInstance } from 'vitest';
import { LiveMessage, type AgentEvent, type TelemetrySample } from '../../schemas/index.js';
import { DynamoConnections } from '../../functions/adapters/dynamo-connections.js';
import { ApiGatewayNotifier } from '../../functions/adapters/websocket-notifier.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { broadcastStreamBatch } from '../../functions/adapters/stream-consumers.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import type { Watcher } from '../../functions/app/live/ports.js';
import { logger, metrics } from '../../functions/platform/observability.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { startStreamPoller } from '../../local/stream-poller.js';
import { createTestConnectionsTable, createTestEventLog, streamsClient } from '../support/dynamo.js';
import { connectedEvent } from '../support/lifecycle-events.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords } from '../support/stream-records.js';

/**
 * The stream broadcaster against a real connections table on DynamoDB Local. API Gateway's management API cannot
 * run here, so aws-sdk-client-mock stands in for it (the local cloud's gateway exercises a real one). Stream records
 * come from the real command loop on a recording event log, and in the last test from DynamoDB Local's own stream.
 */

type Handler<E, R> = (event: E, context: ReturnType<typeof lambdaContext>) => Promise<R>;
type ConnectionsTable = Awaited<ReturnType<typeof createTestConnectionsTable>>;
type EventLogTable = Awaited<ReturnType<typeof createTestEventLog>>;

const api = mockClient(ApiGatewayManagementApiClient);
let connectionsTable: ConnectionsTable;
let eventLogTable: EventLogTable;
let connections: DynamoConnections;
let broadcaster: Handler<DynamoDBStreamEvent, DynamoDBBatchResponse>;
let addMetric: MockInstance;
let warn: MockInstance;
const opened: string[] = [];

beforeAll(async () => {
  connectionsTable = await createTestConnectionsTable();
  eventLogTable = await createTestEventLog();
  connections = new DynamoConnections({ client: connectionsTable.client, tableName: connectionsTable.tableName });
  Object.assign(process.env, {
    CONNECTIONS_TABLE: connectionsTable.tableName,
    EVENT_LOG_TABLE: eventLogTable.tableName,
    WS_ENDPOINT: 'https://abcdef1234.execute-api.eu-west-1.amazonaws.com/live',
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
  });
  broadcaster = (await import('../../functions/handlers/stream-broadcaster.js')).handler;
});

beforeEach(() => {
  api.reset();
  api.on(PostToConnectionCommand).resolves({});
  addMetric = vi.spyOn(metrics, 'addMetric');
  warn = vi.spyOn(logger, 'warn');
});

afterEach(async () => {
  vi.restoreAllMocks();
  // Wildcard subscriptions would reach into the next test: every connection a test opened goes.
  for (const connectionId of opened.splice(0)) await connections.remove(connectionId);
});

afterAll(async () => {
  api.restore();
  await connectionsTable.drop();
  await eventLogTable.drop();
});

// ---- Helpers.

const T0 = Date.parse('2026-11-22T09:00:00.000Z');
const robotId = (model: 'lekiwi' | 'xle' = 'lekiwi') => `${model}-BC${randomUUID().slice(0, 8)}`;

/** A dashboard connection watching these subscriptions (robot ids or `*`). */
async function watching(subscriptions: string[], options: { connectedAt?: Date } = {}): Promise<string> {
  const connectionId = `${randomUUID().slice(0, 12)}=`;
  opened.push(connectionId);
  await connections.add({ connectionId, userId: 'user-1', roles: ['operator'], connectedAt: options.connectedAt ?? new Date() });
  if (subscriptions.length > 0) await connections.subscribe(connectionId, subscriptions);
  return connectionId;
}

/** The stream of a robot's history, written by the real command loop. */
function history() {
  const log = new RecordingEventLog();
  const stream = new StreamRecords();
  return {
    async run(robot: string, ...commands: RobotCommand[]): Promise<DynamoDBRecord[]> {
      for (const command of commands) await executeRobotCommand(log, robot, command, { now: () => new Date(T0) });
      return stream.records(log.takeStream());
    },
  };
}

const presence = (robot: string, version = 1): RobotCommand => ({ type: 'RecordPresence', presence: connectedEvent(robot, version, T0 + version) });
const sample = (seconds: number, cpuTemperatureC: number): TelemetrySample => ({
  sampledAt: new Date(T0 + seconds * 1000).toISOString(),
  cpuTemperatureC,
  cpuPercent: 12.5,
});
const telemetry = (seconds: number, cpuTemperatureC: number): RobotCommand => ({ type: 'RecordTelemetry', sample: sample(seconds, cpuTemperatureC) });
const agentEvent = (event: AgentEvent): RobotCommand => ({ type: 'RecordAgentEvent', event });

const broadcast = (records: DynamoDBRecord[]) => broadcaster({ Records: records }, lambdaContext('test-broadcaster'));

/** What each connection was sent, in order, each checked against the LiveMessage schema. */
function pushed(): Map<string, LiveMessage[]> {
  const byConnection = new Map<string, LiveMessage[]>();
  for (const call of api.commandCalls(PostToConnectionCommand)) {
    const { ConnectionId, Data } = call.args[0].input;
    const message = LiveMessage.parse(JSON.parse(new TextDecoder().decode(Data as Uint8Array)));
    byConnection.set(ConnectionId ?? '', [...(byConnection.get(ConnectionId ?? '') ?? []), message]);
  }
  return byConnection;
}
const pushedTo = (connectionId: string) => pushed().get(connectionId) ?? [];
const metricValue = (name: string) =>
  addMetric.mock.calls.filter((call) => call[0] === name).reduce((sum, call) => sum + (call[2] as number), 0);

// ---- Tests.

describe('stream-broadcaster', () => {
  it('pushes an event to the connections watching the robot or the whole fleet, and to nobody else', async () => {
    // Given connections watching the fleet, the robot, another robot, the robot then not, and the robot and the fleet
    const robot = robotId();
    const fleetWatcher = await watching(['*']);
    const robotWatcher = await watching([robot]);
    const otherRobotWatcher = await watching([robotId('xle')]);
    const former = await watching([robot]);
    await connections.unsubscribe(former, [robot]);
    const doubleWatcher = await watching(['*', robot]);
    const idle = await watching([]);

    // When the robot connects
    const records = await history().run(robot, presence(robot));
    const response = await broadcast(records);

    // Then exactly the fleet and robot watchers get one RobotConnected each
    expect(response).toEqual({ batchItemFailures: [] });
    const expected: LiveMessage = {
      type: 'RobotConnected',
      robotId: robot,
      seq: 1,
      at: new Date(T0 + 1).toISOString(),
      data: { sessionIdentifier: expect.any(String), versionNumber: 1, ipAddress: '192.0.2.10', timestamp: T0 + 1 },
    };
    expect(pushedTo(fleetWatcher)).toEqual([expected]);
    expect(pushedTo(robotWatcher)).toEqual([expected]);
    expect(pushedTo(doubleWatcher)).toEqual([expected]);
    for (const silent of [otherRobotWatcher, former, idle]) expect(pushedTo(silent)).toEqual([]);
    expect(metricValue('LiveMessagesSent')).toBe(3);
  });

  it('pushes telemetry only for heads that carry a new sample, after the event of the same number', async () => {
    // Given a connection watching a robot
    const robot = robotId();
    const watcher = await watching([robot]);

    // When the robot connects (its head changes, without a sample), then reports 50 °C, then 85 °C
    const records = await history().run(robot, presence(robot), telemetry(10, 50), telemetry(20, 85));
    await broadcast(records);

    // Then it gets the connection, both samples, and the alert before the sample that raised it
    expect(pushedTo(watcher).map(({ type, seq, at }) => ({ type, seq, at }))).toEqual([
      { type: 'RobotConnected', seq: 1, at: new Date(T0 + 1).toISOString() },
      { type: 'RobotTelemetry', seq: 1, at: sample(10, 50).sampledAt },
      { type: 'AlertRaised', seq: 2, at: sample(20, 85).sampledAt },
      { type: 'RobotTelemetry', seq: 2, at: sample(20, 85).sampledAt },
    ]);
    // The robot's whole latest telemetry (each value with its time, age and staleness), the sample's values at the top.
    expect(pushedTo(watcher)[3]?.data).toMatchObject({ ...sample(20, 85), metrics: { cpuTemperatureC: { value: 85, sampledAt: sample(20, 85).sampledAt } } });
    expect(pushedTo(watcher)[2]?.data).toEqual({ metric: 'cpuTemperatureC', severity: 'critical', value: 85, threshold: 80 });
  });

  it('keeps each robot’s messages in sequence order when the records of a batch arrive out of order', async () => {
    // Given a fleet watcher, and two robots with a few events each
    const watcher = await watching(['*']);
    const [first, second] = [robotId(), robotId('xle')];
    const started: AgentEvent = {
      eventId: randomUUID(),
      occurredAt: new Date(T0 + 5_000).toISOString(),
      type: 'TeleoperationStarted',
      data: { operatorAddress: '10.0.0.9', signals: ['actions'] },
    };
    const stopped: AgentEvent = { eventId: randomUUID(), occurredAt: new Date(T0 + 9_000).toISOString(), type: 'TeleoperationStopped', data: { reason: 'idle' } };
    const log = history();
    const records = [
      ...(await log.run(first, presence(first), agentEvent(started), agentEvent(stopped))),
      ...(await log.run(second, presence(second), presence(second, 2))),
    ];

    // When the batch's records come in reverse
    await broadcast([...records].reverse());

    // Then each robot's messages still arrive in sequence order
    const messages = pushedTo(watcher);
    expect(messages.filter((m) => m.robotId === first).map((m) => `${m.seq}:${m.type}`)).toEqual([
      '1:RobotConnected',
      '2:TeleoperationStarted',
      '3:TeleoperationStopped',
    ]);
    expect(messages.filter((m) => m.robotId === second).map((m) => `${m.seq}:${m.type}`)).toEqual(['1:RobotConnected', '2:RobotConnected']);
  });

  it('removes a gone connection (410) with its subscriptions, and still serves the others', async () => {
    // Given a connection that went away without a $disconnect, and one that is still there
    const robot = robotId();
    const gone = await watching(['*', robot]);
    const alive = await watching([robot]);
    api.on(PostToConnectionCommand, { ConnectionId: gone }).rejects(new GoneException({ message: 'Gone', $metadata: { httpStatusCode: 410 } }));

    // When two messages for the robot are broadcast
    const response = await broadcast(await history().run(robot, presence(robot), telemetry(10, 40)));

    // Then the gone connection was tried once and is forgotten, subscriptions and all; the other got both
    expect(response).toEqual({ batchItemFailures: [] });
    expect(api.commandCalls(PostToConnectionCommand, { ConnectionId: gone })).toHaveLength(1);
    expect(await connections.subscribersOf('*')).not.toContain(gone);
    expect(await connections.subscribersOf(robot)).toEqual([alive]);
    expect(pushedTo(alive).map((m) => m.type)).toEqual(['RobotConnected', 'RobotTelemetry']);
    expect(metricValue('GoneConnections')).toBe(1);
  });

  it('logs and counts another push error without failing the batch or dropping the connection', async () => {
    // Given a connection whose first push is throttled
    const robot = robotId();
    const throttled = await watching([robot]);
    api
      .on(PostToConnectionCommand, { ConnectionId: throttled })
      .rejectsOnce(new LimitExceededException({ message: 'Rate exceeded', $metadata: { httpStatusCode: 429 } }))
      .resolves({});

    // When two messages are broadcast
    const response = await broadcast(await history().run(robot, presence(robot), telemetry(10, 40)));

    // Then the batch succeeds, the second message still went out, and the connection is kept
    expect(response).toEqual({ batchItemFailures: [] });
    expect(api.commandCalls(PostToConnectionCommand, { ConnectionId: throttled })).toHaveLength(2);
    expect(await connections.subscribersOf(robot)).toEqual([throttled]);
    expect(metricValue('LivePushFailed')).toBe(1);
    expect(warn).toHaveBeenCalledWith('Could not push a live message', expect.objectContaining({ connectionId: throttled, robotId: robot }));
  });

  it('skips malformed records, counting them, and broadcasts the rest', async () => {
    // Given a batch with a record that is not an event log item, one with a broken event, and a good one
    const robot = robotId();
    const watcher = await watching([robot]);
    const [good, ...rest] = await history().run(robot, presence(robot));
    const unknownKind: DynamoDBRecord = { ...good, dynamodb: { ...good?.dynamodb, NewImage: { robotId: { S: robot }, seq: { N: '7' }, kind: { S: 'mystery' } } } };
    const brokenEvent: DynamoDBRecord = {
      ...good,
      dynamodb: { ...good?.dynamodb, NewImage: { ...good?.dynamodb?.NewImage, type: { S: 'RobotTeleported' } } },
    };
    const noImage: DynamoDBRecord = { ...good, dynamodb: { SequenceNumber: '1' } };

    // When it is broadcast
    const response = await broadcast([unknownKind, brokenEvent, noImage, good as DynamoDBRecord, ...rest]);

    // Then the good record got through, and each bad one was logged and counted
    expect(response).toEqual({ batchItemFailures: [] });
    expect(pushedTo(watcher).map((m) => m.type)).toEqual(['RobotConnected']);
    expect(metricValue('InvalidStreamRecord')).toBe(3);
    expect(warn).toHaveBeenCalledTimes(3);
  });

  it('does not push to subscriptions that have expired', async () => {
    // Given a connection from three hours ago whose records outlived API Gateway's 2-hour limit (TTL deletes late)
    const robot = robotId();
    const stale = await watching([robot], { connectedAt: new Date(Date.now() - 3 * 3600_000) });
    const fresh = await watching([robot]);

    // When the robot connects
    await broadcast(await history().run(robot, presence(robot)));

    // Then only the live connection is pushed to
    expect(pushedTo(stale)).toEqual([]);
    expect(pushedTo(fresh)).toHaveLength(1);
  });

  it('asks Lambda to retry from the first record whose watchers could not be looked up', async () => {
    // Given a store that cannot look up one robot's watchers right now (DynamoDB throttling)
    const [early, throttled] = [robotId(), robotId('xle')];
    const watcher = await watching(['*']);
    class ThrottledConnections extends DynamoConnections {
      override async watchersOf(subscription: string): Promise<Watcher[]> {
        if (subscription === throttled) {
          throw new ProvisionedThroughputExceededException({ message: 'Throughput exceeded', $metadata: {} });
        }
        return super.watchersOf(subscription);
      }
    }
    const store = new ThrottledConnections({ client: connectionsTable.client, tableName: connectionsTable.tableName });
    const log = history();
    const earlyRecords = await log.run(early, presence(early));
    const throttledRecords = await log.run(throttled, presence(throttled));
    const lateRecords = await log.run(early, presence(early, 2));

    // When a batch with the early robot, the throttled one, then the early one again is broadcast
    const response = await broadcastStreamBatch([...earlyRecords, ...throttledRecords, ...lateRecords], {
      connections: store,
      notifier: new ApiGatewayNotifier(new ApiGatewayManagementApiClient({ endpoint: 'https://abcdef1234.execute-api.eu-west-1.amazonaws.com/live' })),
      concurrency: 4,
    });

    // Then what came before the throttled robot went out, and Lambda retries from its first record on
    expect(pushedTo(watcher).map((m) => `${m.robotId}:${m.seq}`)).toEqual([`${early}:1`]);
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: throttledRecords[0]?.dynamodb?.SequenceNumber }] });
  });

  it('fails the batch from its first message when the connections table cannot be read', async () => {
    // Given a broadcaster whose connections table is missing
    const store = new DynamoConnections({ client: connectionsTable.client, tableName: `missing-${randomUUID()}` });
    const robot = robotId();
    const records = await history().run(robot, presence(robot));

    // When a batch is broadcast
    const response = await broadcastStreamBatch(records, {
      connections: store,
      notifier: new ApiGatewayNotifier(new ApiGatewayManagementApiClient({ endpoint: 'https://abcdef1234.execute-api.eu-west-1.amazonaws.com/live' })),
      concurrency: 4,
    });

    // Then nothing is pushed and the whole batch is retried
    expect(api.commandCalls(PostToConnectionCommand)).toHaveLength(0);
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: records[0]?.dynamodb?.SequenceNumber }] });
  });

  it('broadcasts what the ingest handler wrote, read from DynamoDB Local’s stream', async () => {
    // Given a connection watching a robot, and the broadcaster on the event log's stream
    const robot = robotId();
    const watcher = await watching([robot]);
    const ingest = await import('../../functions/handlers/robot-ingest.js').then((module) => module.handler);
    const client = streamsClient();
    const poller = startStreamPoller({
      client,
      streamArn: eventLogTable.streamArn,
      handler: (event) => broadcaster(event, lambdaContext('test-broadcaster')),
      log: () => {},
    });
    try {
      // When the robot connects and reports a hot CPU through IoT
      await ingest(
        { Records: [channelRecord('presence', connectedEvent(robot, 1, T0)), channelRecord('telemetry', { ...sample(10, 82), thingName: robot })] },
        lambdaContext('test-robot-ingest'),
      );
      await poller.idle();
    } finally {
      await poller.stop();
      client.destroy();
    }

    // Then the dashboard hears of it, in order
    expect(pushedTo(watcher).map((m) => `${m.seq}:${m.type}`)).toEqual(['1:RobotConnected', '2:AlertRaised', '2:RobotTelemetry']);
  });
});
