import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import type { AgentEvent, TelemetrySample } from '../../schemas/index.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import type { KinesisStreamBatchResponse } from 'aws-lambda';
import { startAckSink, viaChannel } from '../support/robot-ingest.js';
import { createTestEventLog } from '../support/dynamo.js';
import { connectedEvent, disconnectedEvent } from '../support/lifecycle-events.js';

/**
 * The real ingest handler (robot-ingest), fed what each topic rule puts into the ingest stream, one message per batch,
 * against an event log table on DynamoDB Local.
 */

type Handler = (payload: unknown) => Promise<KinesisStreamBatchResponse>;
type TestTable = Awaited<ReturnType<typeof createTestEventLog>>;

let table: TestTable;
let log: DynamoEventLog;
let presence: Handler;
let telemetry: Handler;
let robotEvents: Handler;
let addMetric: ReturnType<typeof vi.fn>;
let acks: Awaited<ReturnType<typeof startAckSink>>;

/** Loads the handler modules afresh with this environment (they read it once, at load, like a cold start). */
async function loadHandlers(env: Record<string, string>) {
  vi.resetModules();
  Object.assign(process.env, env);
  const [ingest, observability] = await Promise.all([
    import('../../functions/handlers/robot-ingest.js'),
    import('../../functions/platform/observability.js'),
  ]);
  return {
    presence: viaChannel(ingest.handler, 'presence'),
    telemetry: viaChannel(ingest.handler, 'telemetry'),
    robotEvents: viaChannel(ingest.handler, 'events'),
    metrics: observability.metrics,
  };
}

const T0 = Date.parse('2026-11-22T09:00:00.000Z');
const robotId = () => `lekiwi-IN${randomUUID().slice(0, 8)}`;
const invoke = (handler: Handler, payload: unknown) => handler(payload);
/** What the handler counted: events appended, messages refused or ignored (metrics with a value). */
const countedMetrics = () =>
  addMetric.mock.calls
    .filter((call) => /^(Appended|Invalid|IgnoredClient)/.test(call[0] as string) && (call[2] as number) > 0)
    .map((call) => call[0] as string);

function sample(robot: string, secondsAfterT0: number, cpuTemperatureC: number): TelemetrySample & { thingName: string } {
  return { sampledAt: new Date(T0 + secondsAfterT0 * 1000).toISOString(), cpuTemperatureC, cpuPercent: 30, thingName: robot };
}

async function eventTypes(robot: string): Promise<string[]> {
  const page = await log.readEvents(robot);
  return page.events.map((recorded) => recorded.event.type);
}

beforeAll(async () => {
  table = await createTestEventLog();
  acks = await startAckSink();
  log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  const loaded = await loadHandlers({
    EVENT_LOG_TABLE: table.tableName,
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
    AWS_ENDPOINT_URL_IOT_DATA_PLANE: acks.url,
  });
  ({ presence, telemetry, robotEvents } = loaded);
  addMetric = vi.spyOn(loaded.metrics, 'addMetric') as unknown as ReturnType<typeof vi.fn>;
});

beforeEach(() => {
  addMetric.mockClear();
});

afterAll(async () => {
  await table.drop();
  await acks.stop();
});

describe('robot-ingest: presence', () => {
  it('records a connect as RobotConnected', async () => {
    // Given a robot the log has never seen
    const robot = robotId();

    // When IoT Core reports it connected
    await invoke(presence, connectedEvent(robot, 1, T0));

    // Then the log holds RobotConnected and the head says online
    const page = await log.readEvents(robot);
    expect(page.events).toHaveLength(1);
    expect(page.events[0]).toMatchObject({
      seq: 1,
      event: { type: 'RobotConnected', robotId: robot, data: { versionNumber: 1, ipAddress: '192.0.2.10', timestamp: T0 } },
    });
    expect((await log.readHead(robot))?.state.presence.status).toBe('online');
    expect(countedMetrics()).toContain('Appended');
  });

  it('ignores a late disconnect of an earlier session and a duplicated disconnect', async () => {
    // Given a robot that connected, dropped, and reconnected (version 2)
    const robot = robotId();
    const first = connectedEvent(robot, 1, T0);
    const second = connectedEvent(robot, 2, T0 + 60_000);
    await invoke(presence, first);
    await invoke(presence, second);

    // When the first session's disconnect arrives late, and the second's arrives twice
    await invoke(presence, disconnectedEvent(first, T0 + 30_000));
    const secondDisconnect = disconnectedEvent(second, T0 + 120_000, { clientInitiatedDisconnect: false, disconnectReason: 'MQTT_KEEP_ALIVE_TIMEOUT' });
    await invoke(presence, secondDisconnect);
    await invoke(presence, secondDisconnect);

    // Then only the real transitions are in the log, and the robot is offline
    expect(await eventTypes(robot)).toEqual(['RobotConnected', 'RobotConnected', 'RobotDisconnected']);
    const events = (await log.readEvents(robot)).events;
    expect(events[2]?.event).toMatchObject({ data: { versionNumber: 2, clientInitiated: false, reason: 'MQTT_KEEP_ALIVE_TIMEOUT' } });
    expect((await log.readHead(robot))?.state.presence.status).toBe('offline');
    expect(countedMetrics()).toEqual(['Appended', 'Appended', 'Appended']);
  });

  it('leaves clients that are not robots alone', async () => {
    // Given a dashboard's MQTT client id
    const clientId = `dashboard-${randomUUID()}`;

    // When its lifecycle event arrives
    await invoke(presence, connectedEvent(clientId, 1, T0));

    // Then nothing is written under that id and the event is counted as ignored
    expect((await log.readEvents(clientId)).events).toEqual([]);
    expect(await log.readHead(clientId)).toBeNull();
    expect(countedMetrics()).toEqual(['IgnoredClient']);
  });
});

describe('robot-ingest: telemetry', () => {
  it('raises a critical alert at 80 °C, keeps it at 78 °C (hysteresis) and clears it at 74 °C', async () => {
    // Given a robot running cool
    const robot = robotId();
    await invoke(telemetry, sample(robot, 0, 60));
    expect(await eventTypes(robot)).toEqual([]);

    // When its CPU reaches 80 °C
    await invoke(telemetry, sample(robot, 10, 80));
    // Then a critical alert is raised
    const raised = (await log.readEvents(robot)).events;
    expect(raised.map((recorded) => recorded.event)).toMatchObject([
      { type: 'AlertRaised', data: { metric: 'cpuTemperatureC', severity: 'critical', value: 80, threshold: 80 } },
    ]);

    // When it cools to 78 °C (below the raise line, above the clear line)
    await invoke(telemetry, sample(robot, 20, 78));
    // Then nothing new is decided
    expect(await eventTypes(robot)).toEqual(['AlertRaised']);

    // When it cools to 74 °C
    await invoke(telemetry, sample(robot, 30, 74));
    // Then the alert clears, and the head carries the latest sample
    const events = (await log.readEvents(robot)).events;
    expect(events.map((recorded) => recorded.event)).toMatchObject([
      { type: 'AlertRaised' },
      { type: 'AlertCleared', data: { metric: 'cpuTemperatureC', value: 74, threshold: 75 } },
    ]);
    const head = await log.readHead(robot);
    const { thingName: _, ...latest } = sample(robot, 30, 74);
    expect(head?.telemetry).toEqual(latest);
    expect(head?.state.alerts).toEqual({});
  });

  it('keeps the newest sample when an older one arrives late', async () => {
    // Given a robot whose head holds a sample
    const robot = robotId();
    await invoke(telemetry, sample(robot, 60, 55));

    // When an older sample arrives afterwards
    await invoke(telemetry, sample(robot, 30, 90));

    // Then the head keeps the newer sample, no alert is raised from the stale one, and it is counted as stale
    expect((await log.readHead(robot))?.telemetry?.cpuTemperatureC).toBe(55);
    expect(await eventTypes(robot)).toEqual([]);
    expect(countedMetrics()).toEqual([]);
  });

  it('refuses a sample from a clock far ahead, which would otherwise freeze the robot’s telemetry', async () => {
    // Given a robot whose clock runs an hour ahead of the cloud's
    const robot = robotId();
    const ahead = { ...sample(robot, 0, 90), sampledAt: new Date(Date.now() + 3_600_000).toISOString() };

    // When it sends a sample, and then one on time
    await invoke(telemetry, ahead);
    await invoke(telemetry, { ...sample(robot, 0, 55), sampledAt: new Date().toISOString() });

    // Then the first is rejected as invalid (naming sampledAt), counted for the robot, and the second is recorded
    expect(countedMetrics()).toEqual(['InvalidTelemetry']);
    expect(addMetric).toHaveBeenCalledWith('RejectedDeviceMessages', 'Count', 1);
    expect((await log.readHead(robot))?.telemetry?.cpuTemperatureC).toBe(55);
    expect(await eventTypes(robot)).toEqual(['DeviceMessagesRejected']);
    expect((await log.readHead(robot))?.state.rejections).toEqual({
      count: 1,
      last: { reason: expect.stringMatching(/^sampledAt is more than 5 minutes ahead/), topic: `dt/heartbeat/${robot}/telemetry`, at: expect.any(String) },
    });
  });
});

describe('robot-ingest: events', () => {
  it('appends a redelivered robot event once', async () => {
    // Given an agent event that QoS 1 (or the agent's offline queue) delivers twice
    const robot = robotId();
    const started: AgentEvent = {
      eventId: randomUUID(),
      occurredAt: new Date(T0).toISOString(),
      type: 'TeleoperationStarted',
      data: { operatorAddress: '10.0.0.7', signals: ['actions', 'peer'], score: 0.92 },
    };

    // When both deliveries arrive
    await invoke(robotEvents, { ...started, thingName: robot });
    await invoke(robotEvents, { ...started, thingName: robot });

    // Then the log holds one TeleoperationStarted: the second delivery appended nothing
    const events = (await log.readEvents(robot)).events;
    expect(events.map((recorded) => recorded.event)).toMatchObject([
      { type: 'TeleoperationStarted', eventId: started.eventId, data: { operatorAddress: '10.0.0.7' } },
    ]);
    expect(countedMetrics()).toEqual(['Appended']);
    // and the robot heard both times that the log has it
    const told = acks.published.filter((entry) => entry.topic === `cmd/heartbeat/${robot}/ack`).map((entry) => entry.payload);
    expect(told).toEqual([{ eventIds: [started.eventId] }, { eventIds: [started.eventId] }]);
  });
});

describe('robot-ingest: events: a backlog in one message', () => {
  it('appends the events of a batch in their order, and a redelivered batch adds nothing', async () => {
    // Given an agent's backlog after being offline: two sessions, each a start and its stop
    const robot = robotId();
    const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
    const backlog: AgentEvent[] = [
      { eventId: randomUUID(), occurredAt: at(0), type: 'TeleoperationStarted', data: { operatorAddress: '10.0.0.7', signals: ['actions'] } },
      { eventId: randomUUID(), occurredAt: at(5), type: 'TeleoperationStopped', data: { durationMs: 5000, reason: 'idle' } },
      { eventId: randomUUID(), occurredAt: at(9), type: 'TeleoperationStarted', data: { operatorAddress: '10.0.0.8', signals: ['actions'] } },
      { eventId: randomUUID(), occurredAt: at(12), type: 'TeleoperationStopped', data: { durationMs: 3000, reason: 'idle' } },
    ];

    // When it arrives as one batch, twice (QoS 1)
    await invoke(robotEvents, { events: backlog, thingName: robot });
    await invoke(robotEvents, { events: backlog, thingName: robot });

    // Then every event is in the log once, in the agent's order, and the robot is not teleoperated
    const events = (await log.readEvents(robot)).events.map((recorded) => recorded.event);
    expect(events.map((event) => [event.type, event.eventId])).toEqual(backlog.map((event) => [event.type, event.eventId]));
    expect((await log.readHead(robot))?.state.teleoperation.active).toBe(false);
    // The second delivery appended nothing (its last event, a stop of a closed session, changes nothing)
    expect(countedMetrics()).toEqual(['Appended']);
  });

  it('refuses the bad event of a batch, naming the field to the robot, and appends the good one', async () => {
    const robot = robotId();
    const good: AgentEvent = { eventId: randomUUID(), occurredAt: new Date(T0).toISOString(), type: 'TeleoperationStarted', data: { signals: [] } };
    await invoke(robotEvents, { events: [good, { ...good, eventId: 'x' }], thingName: robot });
    expect(await eventTypes(robot)).toEqual(['TeleoperationStarted', 'DeviceMessagesRejected']);
    const told = acks.published.filter((entry) => entry.topic === `cmd/heartbeat/${robot}/ack`).map((entry) => entry.payload);
    expect(told).toEqual([
      { eventIds: [good.eventId], rejected: [{ eventId: 'x', problems: [{ field: 'eventId', message: expect.stringContaining('8') }] }] },
    ]);
  });
});

describe('robot-ingest: events: EventsDropped', () => {
  it('records the count the agent reports once, however often it is delivered, and refuses a bad count', async () => {
    // Given an agent whose offline queue overflowed, reporting it (twice: its acknowledgement was lost)
    const robot = robotId();
    const dropped: AgentEvent = { eventId: randomUUID(), occurredAt: new Date(T0).toISOString(), type: 'EventsDropped', data: { count: 212 } };
    await invoke(robotEvents, { ...dropped, thingName: robot });
    await invoke(robotEvents, { ...dropped, thingName: robot });
    // and a malformed one
    await invoke(robotEvents, { ...dropped, eventId: randomUUID(), data: { count: -3 }, thingName: robot });

    // Then the log holds one RobotEventsDropped with the agent's id and count, and the head's state is as before
    const events = (await log.readEvents(robot)).events.map((recorded) => recorded.event);
    expect(events).toEqual([
      { eventId: dropped.eventId, robotId: robot, at: dropped.occurredAt, version: 1, type: 'RobotEventsDropped', data: { count: 212 } },
      expect.objectContaining({
        type: 'DeviceMessagesRejected',
        data: { count: 1, lastReason: expect.stringContaining('data.count'), lastTopic: `dt/heartbeat/${robot}/events` },
      }),
    ]);
    expect((await log.readHead(robot))?.state.presence.status).toBe('offline');
    expect(countedMetrics()).toEqual(['Appended', 'InvalidRobotEvent']);
  });
});

describe('transient failures', () => {
  it('report the message as a batch item failure, so that the mapping retries from it', async () => {
    // Given handlers whose event log table does not exist (DynamoDB answers with an error)
    const broken = await loadHandlers({
      EVENT_LOG_TABLE: `missing-${randomUUID()}`,
      AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
    });
    const robot = robotId();

    // When valid messages arrive, then each batch reports its message as failed (DynamoDB's error)
    const failed = (response: KinesisStreamBatchResponse) => response.batchItemFailures.length;
    expect(failed(await invoke(broken.presence, connectedEvent(robot, 1, T0)))).toBe(1);
    expect(failed(await invoke(broken.telemetry, sample(robot, 0, 50)))).toBe(1);
    expect(
      failed(
        await invoke(broken.robotEvents, {
          eventId: randomUUID(),
          occurredAt: new Date(T0).toISOString(),
          type: 'TeleoperationStopped',
          data: { reason: 'operator-left' },
          thingName: robot,
        }),
      ),
    ).toBe(1);
  });
});
