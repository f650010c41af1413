import { channelRecord } from '../support/robot-ingest.js';
import { randomUUID } from 'node:crypto';
import { ApiGatewayManagementApiClient, GoneException, PostToConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import { ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent, KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import {
  LiveMessage,
  RobotsUpdated,
  SubscriptionAck,
  WebSocketError,
  type RobotView,
  type TelemetrySample,
} from '../../schemas/index.js';
import { HEAD_RECORD_PATTERNS, PROJECTED_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { DynamoConnections } from '../../functions/adapters/dynamo-connections.js';
import { ApiGatewayNotifier } from '../../functions/adapters/websocket-notifier.js';
import { coalesceStreamBatch } from '../../functions/adapters/stream-consumers.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { Watcher } from '../../functions/app/live/ports.js';
import { changeSubscriptions } from '../../functions/app/live/subscriptions.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { startStreamPoller } from '../../local/stream-poller.js';
import { createTestConnectionsTable, createTestEventLog, streamsClient } from '../support/dynamo.js';
import { connectedEvent } from '../support/lifecycle-events.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords } from '../support/stream-records.js';

/**
 * Coalesced telemetry (`"telemetry": "1s"`) against a real connections table and event log on DynamoDB Local: the
 * real ingest handler writes, the real broadcaster and coalescer handlers read DynamoDB Local's stream through two
 * stream pollers as their event source mappings are set up (the coalescer: every head write, a 1 s batching window).
 * API Gateway's management API cannot run here, so aws-sdk-client-mock stands in for it and records every push.
 */

type Handler<E, R> = (event: E, context: ReturnType<typeof lambdaContext>) => Promise<R>;

const api = mockClient(ApiGatewayManagementApiClient);
const ENDPOINT = 'https://abcdef1234.execute-api.eu-west-1.amazonaws.com/live';
let connectionsTable: Awaited<ReturnType<typeof createTestConnectionsTable>>;
let eventLogTable: Awaited<ReturnType<typeof createTestEventLog>>;
let connections: DynamoConnections;
let broadcaster: Handler<DynamoDBStreamEvent, DynamoDBBatchResponse>;
let coalescer: Handler<DynamoDBStreamEvent, DynamoDBBatchResponse>;
let ingest: Handler<KinesisStreamEvent, KinesisStreamBatchResponse>;
const opened: string[] = [];

beforeAll(async () => {
  connectionsTable = await createTestConnectionsTable();
  eventLogTable = await createTestEventLog();
  connections = new DynamoConnections({ client: connectionsTable.client, tableName: connectionsTable.tableName });
  Object.assign(process.env, {
    CONNECTIONS_TABLE: connectionsTable.tableName,
    EVENT_LOG_TABLE: eventLogTable.tableName,
    WS_ENDPOINT: ENDPOINT,
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
  });
  broadcaster = (await import('../../functions/handlers/stream-broadcaster.js')).handler;
  coalescer = (await import('../../functions/handlers/stream-coalescer.js')).handler;
  ingest = (await import('../../functions/handlers/robot-ingest.js')).handler;
});

beforeEach(() => {
  api.reset();
  api.on(PostToConnectionCommand).resolves({});
});

afterEach(async () => {
  for (const connectionId of opened.splice(0)) await connections.remove(connectionId);
});

afterAll(async () => {
  api.restore();
  await connectionsTable.drop();
  await eventLogTable.drop();
});

// ---- Helpers.

const T0 = Date.parse('2026-12-01T09:00:00.000Z');
const robotId = () => `lekiwi-CO${randomUUID().slice(0, 8)}`;

/** A dashboard connection, subscribed through the real `subscribe` route logic; its id. */
async function dashboard(robotIds: string[], telemetry?: string): Promise<string> {
  const connectionId = `${randomUUID().slice(0, 12)}=`;
  opened.push(connectionId);
  await connections.add({ connectionId, userId: 'user-1', roles: ['operator'], connectedAt: new Date() });
  const reply = await subscribe(connectionId, robotIds, telemetry);
  expect(reply.statusCode, reply.body).toBe(200);
  return connectionId;
}

const subscribe = (connectionId: string, robotIds: string[], telemetry?: string) =>
  changeSubscriptions(
    connections,
    connectionId,
    'subscribe',
    JSON.stringify({ action: 'subscribe', robotIds, ...(telemetry === undefined ? {} : { telemetry }) }),
  );

type Pushed = LiveMessage | RobotsUpdated;

/** What a connection was sent, in order, each checked against its schema. */
function pushedTo(connectionId: string): Pushed[] {
  return api.commandCalls(PostToConnectionCommand, { ConnectionId: connectionId }).map((call) => {
    const data = call.args[0].input.Data as Uint8Array;
    expect(data.byteLength, 'a push under API Gateway’s 128 KB').toBeLessThan(128 * 1024);
    const json = JSON.parse(new TextDecoder().decode(data)) as { type: string };
    return json.type === 'RobotsUpdated' ? RobotsUpdated.parse(json) : LiveMessage.parse(json);
  });
}
const roundsOf = (pushed: Pushed[]) => pushed.filter((m): m is RobotsUpdated => m.type === 'RobotsUpdated');
const liveOf = (pushed: Pushed[]) => pushed.filter((m): m is LiveMessage => m.type !== 'RobotsUpdated');
const domainEventsOf = (pushed: Pushed[]) => liveOf(pushed).filter((m) => m.type !== 'RobotTelemetry');
/** Each robot's newest view among the rounds a connection got (later rounds win). */
function newestViews(pushed: Pushed[]): Map<string, RobotView> {
  const views = new Map<string, RobotView>();
  for (const round of roundsOf(pushed)) for (const view of round.robots) views.set(view.robotId, view);
  return views;
}

const sample = (robot: string, second: number, cpuTemperatureC: number): TelemetrySample & { thingName: string } => ({
  thingName: robot,
  sampledAt: new Date(T0 + second * 1000).toISOString(),
  cpuTemperatureC,
  cpuPercent: 10 + second,
});

// ---- Tests.

describe('coalesced telemetry over the real stream', () => {
  it('a burst from many robots: the 1 s dashboard gets a few RobotsUpdated with every robot’s newest view and every event; the raw one is unchanged', async () => {
    // Given a raw fleet dashboard, a 1 s fleet dashboard, a 1 s dashboard of one robot, and 30 robots
    const robots = Array.from({ length: 20 }, robotId);
    const raw = await dashboard(['*']);
    const rated = await dashboard(['*'], '1s');
    const watched = robots[7] as string;
    const ratedOne = await dashboard([watched], '1s');
    const client = streamsClient();
    const pollers = [
      startStreamPoller({
        client,
        streamArn: eventLogTable.streamArn,
        handler: (event) => broadcaster(event, lambdaContext('test-broadcaster')),
        filters: PROJECTED_RECORD_PATTERNS,
        startingPosition: 'LATEST',
        log: () => {},
      }),
      startStreamPoller({
        client,
        streamArn: eventLogTable.streamArn,
        handler: (event) => {
          coalescerInvokedAt.push(Date.now());
          return coalescer(event, lambdaContext('test-coalescer'));
        },
        filters: HEAD_RECORD_PATTERNS,
        batchSize: 1000,
        maximumBatchingWindowMs: 1000,
        startingPosition: 'LATEST',
        log: () => {},
      }),
    ];
    const SAMPLES = 6;
    /** When each coalescer batch was handed over (Lambda's invocations). */
    const coalescerInvokedAt: number[] = [];
    try {
      await Promise.all(pollers.map((poller) => poller.idle({ timeoutMs: 60_000 })));
      // When every robot connects, then sends 6 samples a round at a time; the 4th is hot (an alert), the 6th cool again
      await ingest({ Records: robots.map((robot) => channelRecord('presence', connectedEvent(robot, 1, T0))) }, lambdaContext('test-ingest'));
      for (let second = 1; second <= SAMPLES; second++) {
        const hot = second === 4 ? 85 : 50 + second;
        await ingest({ Records: robots.map((robot) => channelRecord('telemetry', sample(robot, second, hot))) }, lambdaContext('test-ingest'));
      }
      await Promise.all(pollers.map((poller) => poller.idle({ timeoutMs: 60_000 })));
    } finally {
      await Promise.all(pollers.map((poller) => poller.stop()));
      client.destroy();
    }

    const samples = robots.length * SAMPLES;
    const expectedEvents = ['1:RobotConnected', '2:AlertRaised', '3:AlertCleared'];
    // Then the raw dashboard got every sample as RobotTelemetry, and each robot's events in order, as before
    const rawPushed = pushedTo(raw);
    expect(liveOf(rawPushed).filter((m) => m.type === 'RobotTelemetry')).toHaveLength(samples);
    expect(roundsOf(rawPushed)).toEqual([]);
    for (const robot of robots) {
      expect(domainEventsOf(rawPushed).filter((m) => m.robotId === robot).map((m) => `${m.seq}:${m.type}`), robot).toEqual(expectedEvents);
    }

    // And the 1 s dashboard got no RobotTelemetry, the same events in the same order, and far fewer messages than samples
    const ratedPushed = pushedTo(rated);
    expect(liveOf(ratedPushed).filter((m) => m.type === 'RobotTelemetry')).toEqual([]);
    expect(domainEventsOf(ratedPushed)).toEqual(domainEventsOf(rawPushed));
    // At most one round a second: one message per batch here (20 views fit one), batches at least the window apart.
    expect(roundsOf(ratedPushed).length).toBeGreaterThan(0);
    expect(roundsOf(ratedPushed).length).toBeLessThanOrEqual(coalescerInvokedAt.length);
    for (let i = 1; i < coalescerInvokedAt.length; i++) {
      expect(coalescerInvokedAt[i]! - coalescerInvokedAt[i - 1]!, `batch ${i} after the one before`).toBeGreaterThanOrEqual(1000);
    }
    expect(roundsOf(ratedPushed).length).toBeLessThan(samples / 2);

    // And its newest view of every robot is the robot as it is now: the last sample, the alert cleared, online
    const views = newestViews(ratedPushed);
    expect([...views.keys()].sort()).toEqual([...robots].sort());
    for (const robot of robots) {
      expect(views.get(robot), robot).toMatchObject({
        robotId: robot,
        status: 'online',
        lastSeq: 3,
        alerts: [],
        healthy: true,
        telemetry: { sampledAt: sample(robot, SAMPLES, 0).sampledAt, cpuTemperatureC: 50 + SAMPLES, cpuPercent: 10 + SAMPLES },
      });
    }
    // Each round names a robot once at most (latest wins within a round).
    for (const round of roundsOf(ratedPushed)) {
      const ids = round.robots.map((view) => view.robotId);
      expect(new Set(ids).size).toBe(ids.length);
    }

    // And the dashboard of one robot got only that robot, its events included
    const onePushed = pushedTo(ratedOne);
    expect(new Set(roundsOf(onePushed).flatMap((round) => round.robots.map((view) => view.robotId)))).toEqual(new Set([watched]));
    expect(domainEventsOf(onePushed).map((m) => `${m.seq}:${m.type}`)).toEqual(expectedEvents);
    expect(newestViews(onePushed).get(watched)?.telemetry?.sampledAt).toBe(sample(watched, SAMPLES, 0).sampledAt);
  }, 120_000);
});

describe('telemetry rate per connection', () => {
  it('is set by subscribe, kept by a subscribe without one, changed by one with another, and carried by every subscription', async () => {
    // Given a raw connection watching two robots
    const [a, b] = [robotId(), robotId()];
    const connectionId = await dashboard([a]);
    const ack = (reply: { body: string }) => SubscriptionAck.parse(JSON.parse(reply.body));
    const rates = async () =>
      Object.fromEntries(
        await Promise.all(
          [a, b, '*'].map(async (key) => [key, (await connections.watchersOf(key)).find((w) => w.connectionId === connectionId)?.telemetry]),
        ),
      );
    expect(await rates()).toEqual({ [a]: 'raw', [b]: undefined, '*': undefined });

    // When it subscribes to the fleet at 1 s, then to another robot without a rate, then back to raw
    expect(ack(await subscribe(connectionId, ['*'], '1s'))).toEqual({ type: 'Subscribed', robotIds: ['*'], telemetry: '1s' });
    expect(await rates()).toEqual({ [a]: '1s', [b]: undefined, '*': '1s' });
    expect(ack(await subscribe(connectionId, [b]))).toEqual({ type: 'Subscribed', robotIds: [b], telemetry: '1s' });
    expect(await rates()).toEqual({ [a]: '1s', [b]: '1s', '*': '1s' });
    expect(ack(await subscribe(connectionId, [a], 'raw'))).toEqual({ type: 'Subscribed', robotIds: [a], telemetry: 'raw' });

    // Then every subscription of the connection follows its latest rate
    expect(await rates()).toEqual({ [a]: 'raw', [b]: 'raw', '*': 'raw' });
  });

  it('refuses a rate it does not know, naming the field, and changes nothing', async () => {
    const connectionId = await dashboard(['*'], '1s');
    const reply = await subscribe(connectionId, ['*'], '5s');
    expect(reply.statusCode).toBe(400);
    const error = WebSocketError.parse(JSON.parse(reply.body));
    expect(error.error.code).toBe('INVALID_REQUEST');
    expect(error.error.message).toMatch(/telemetry/);
    expect((await connections.watchersOf('*')).find((w) => w.connectionId === connectionId)?.telemetry).toBe('1s');
  });
});

describe('stream-coalescer failures', () => {
  /** A robot's stream records, written by the real command loop. */
  async function historyOf(robot: string, ...commands: RobotCommand[]): Promise<DynamoDBRecord[]> {
    const log = new RecordingEventLog();
    for (const command of commands) await executeRobotCommand(log, robot, command, { now: () => new Date(T0) });
    return new StreamRecords().records(log.takeStream());
  }
  const presence = (robot: string, version = 1): RobotCommand => ({ type: 'RecordPresence', presence: connectedEvent(robot, version, T0 + version) });
  const telemetry = (robot: string, second: number): RobotCommand => {
    const { thingName: _, ...values } = sample(robot, second, 50);
    return { type: 'RecordTelemetry', sample: values };
  };
  const notifier = () => new ApiGatewayNotifier(new ApiGatewayManagementApiClient({ endpoint: ENDPOINT }));

  it('pushes the latest write of each robot even when the batch comes in reverse, and removes a gone connection', async () => {
    // Given a 1 s dashboard, one that went away without a $disconnect, and a raw one
    const robot = robotId();
    const rated = await dashboard(['*'], '1s');
    const gone = await dashboard([robot], '1s');
    const raw = await dashboard(['*']);
    api.on(PostToConnectionCommand, { ConnectionId: gone }).rejects(new GoneException({ message: 'Gone', $metadata: { httpStatusCode: 410 } }));
    const records = await historyOf(robot, presence(robot), telemetry(robot, 1), telemetry(robot, 2));

    // When the batch is coalesced with its records reversed
    const response = await coalescer({ Records: [...records].reverse() }, lambdaContext('test-coalescer'));

    // Then the 1 s dashboard got one round with the robot as of its last sample; the gone one is forgotten; the raw none
    expect(response).toEqual({ batchItemFailures: [] });
    const rounds = roundsOf(pushedTo(rated));
    expect(rounds).toHaveLength(1);
    expect(rounds[0]?.robots.map((view) => [view.robotId, view.telemetry?.sampledAt])).toEqual([[robot, sample(robot, 2, 0).sampledAt]]);
    expect(await connections.subscribersOf(robot)).not.toContain(gone);
    expect(pushedTo(raw)).toEqual([]);
  });

  it('asks Lambda to retry from the first record whose watchers could not be looked up, after pushing what came before', async () => {
    const [early, throttled] = [robotId(), robotId()];
    const rated = await dashboard(['*'], '1s');
    class ThrottledConnections extends DynamoConnections {
      override async watchersOf(subscription: string): Promise<Watcher[]> {
        if (subscription === throttled) throw new ProvisionedThroughputExceededException({ message: 'Throughput exceeded', $metadata: {} });
        return super.watchersOf(subscription);
      }
    }
    const store = new ThrottledConnections({ client: connectionsTable.client, tableName: connectionsTable.tableName });
    const earlyRecords = await historyOf(early, presence(early));
    const throttledRecords = await historyOf(throttled, presence(throttled));

    const response = await coalesceStreamBatch([...earlyRecords, ...throttledRecords], { connections: store, notifier: notifier(), concurrency: 4 });

    // Lambda retries from the throttled robot's first head write (the coalescer's mapping hands it heads only).
    const firstThrottledHead = throttledRecords.find((record) => record.dynamodb?.NewImage?.kind?.S === 'head');
    expect(firstThrottledHead).toBeDefined();
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: firstThrottledHead?.dynamodb?.SequenceNumber }] });
    expect(roundsOf(pushedTo(rated)).flatMap((round) => round.robots.map((view) => view.robotId))).toEqual([early]);
  });
});
