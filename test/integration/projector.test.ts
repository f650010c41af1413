import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DynamoDBRecord } from 'aws-lambda';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { DomainEvent, LifecycleEvent, RecordedEvent, TelemetrySample } from '../../schemas/index.js';
import { toEventItem } from '../../functions/adapters/event-log-items.js';
import { PgReadModelWriter } from '../../functions/adapters/pg-read-models.js';
import type { DeadLetter, DeadLetters } from '../../functions/app/dead-letters.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { projectStream } from '../../functions/adapters/stream-consumers.js';
import { rebuildReadModels, type RebuildProgress } from '../../functions/app/rebuild-read-models.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { logger, metrics } from '../../functions/platform/observability.js';
import { createFileDeadLetters } from '../../local/file-dead-letters.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { FleetSimulation } from '../support/fleet-simulation.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { expectedAfterRebuild, readRows, snapshot, truncateReadModels, type ReadModelTable } from '../support/read-model-tables.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords, streamEvent } from '../support/stream-records.js';

const ROBOT = 'lekiwi-LK0001';
const OTHER = 'xle-XL0002';
const T0 = Date.parse('2026-11-02T09:00:00.000Z');

let db: TestDatabase;
let writer: PgReadModelWriter;

beforeAll(async () => {
  db = await createTestDatabase();
  writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
});
afterAll(() => db.drop());
beforeEach(() => truncateReadModels(db.pool));
const rows = (table: ReadModelTable) => readRows(db.pool, table);
afterEach(() => vi.restoreAllMocks());

/** A robot's history written through the real command loop into a log that records its stream. */
function fleet() {
  const log = new RecordingEventLog();
  const stream = new StreamRecords();
  let clock = T0;
  return {
    log,
    at: (minutes: number) => new Date(T0 + minutes * 60_000).toISOString(),
    async command(robotId: string, command: RobotCommand, minutes?: number) {
      if (minutes !== undefined) clock = T0 + minutes * 60_000;
      return executeRobotCommand(log, robotId, command, { now: () => new Date(clock) });
    },
    records: (): DynamoDBRecord[] => stream.records(log.takeStream()),
  };
}

const presence = (robotId: string, eventType: 'connected' | 'disconnected', versionNumber: number, minutes: number): RobotCommand => {
  const common = {
    clientId: robotId,
    timestamp: T0 + minutes * 60_000,
    sessionIdentifier: `${robotId}-session-${versionNumber}`,
    principalIdentifier: 'a1b2c3d4e5f6',
    versionNumber,
  };
  const event: LifecycleEvent =
    eventType === 'connected'
      ? { ...common, eventType, ipAddress: '192.168.7.21' }
      : { ...common, eventType, clientInitiatedDisconnect: false, disconnectReason: 'CONNECTION_LOST' };
  return { type: 'RecordPresence', presence: event };
};

const sample = (minutes: number, values: Partial<TelemetrySample> = {}): RobotCommand => ({
  type: 'RecordTelemetry',
  sample: { sampledAt: new Date(T0 + minutes * 60_000).toISOString(), cpuPercent: 12.5, ...values },
});

const teleoperation = (kind: 'start' | 'stop', eventId: string, minutes: number, durationMs?: number): RobotCommand => ({
  type: 'RecordAgentEvent',
  event:
    kind === 'start'
      ? {
          type: 'TeleoperationStarted',
          eventId,
          occurredAt: new Date(T0 + minutes * 60_000).toISOString(),
          data: { operatorAddress: '10.0.0.5', signals: ['actions', 'peer'], score: 0.92 },
        }
      : {
          type: 'TeleoperationStopped',
          eventId,
          occurredAt: new Date(T0 + minutes * 60_000).toISOString(),
          data: { reason: 'operator-idle', ...(durationMs === undefined ? {} : { durationMs }) },
        },
});

describe('stream projector', () => {
  it("projects a robot's history into its robots row, events, sessions, alerts and telemetry", async () => {
    // Given a robot that registered, connected, overheated while driven, cooled down, and filled its disk
    const robot = fleet();
    await robot.command(ROBOT, { type: 'RegisterRobot', eventId: 'register-LK0001', at: robot.at(0) }, 0);
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 1), 1);
    await robot.command(ROBOT, sample(2, { cpuTemperatureC: 85 }), 2);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0001-start', 3), 3);
    await robot.command(ROBOT, sample(4, { cpuTemperatureC: 70 }), 4);
    await robot.command(ROBOT, teleoperation('stop', 'teleop-0001-stop', 5.5), 5.5);
    const last = await robot.command(ROBOT, sample(6, { diskPercent: 95 }), 6);

    // When its stream is projected
    const response = await projectStream(streamEvent(robot.records()), writer);

    // Then
    expect(response).toEqual({ batchItemFailures: [] });
    const head = last.head!;
    const [row] = await rows('robots');
    expect(row).toMatchObject({
      robot_id: ROBOT,
      model: 'lekiwi',
      status: 'online',
      lifecycle: 'ready',
      healthy: true,
      deployable: true,
      teleoperation_active: false,
      warning_alerts: 1,
      critical_alerts: 0,
      last_seq: '7',
      state: head.state,
      view: toRobotView(head.state, 7, null),
      telemetry: { sampledAt: robot.at(6), cpuPercent: 12.5, diskPercent: 95 },
      telemetry_at: new Date(robot.at(6)),
    });
    expect((await rows('robot_events')).map((event) => [event.seq, event.type])).toEqual([
      ['1', 'RobotRegistered'],
      ['2', 'RobotConnected'],
      ['3', 'AlertRaised'],
      ['4', 'TeleoperationStarted'],
      ['5', 'AlertCleared'],
      ['6', 'TeleoperationStopped'],
      ['7', 'AlertRaised'],
    ]);
    expect(await rows('teleoperation_sessions')).toEqual([
      {
        robot_id: ROBOT,
        started_seq: '4',
        operator_address: '10.0.0.5',
        signals: ['actions', 'peer'],
        score: 0.92,
        started_at: new Date(robot.at(3)),
        stopped_seq: '6',
        stopped_at: new Date(robot.at(5.5)),
        stop_reason: 'operator-idle',
        duration_ms: String(2.5 * 60_000),
      },
    ]);
    expect(await rows('alerts')).toEqual([
      expect.objectContaining({ raised_seq: '3', metric: 'cpuTemperatureC', severity: 'critical', value: 85, cleared_seq: '5', cleared_value: 70 }),
      expect.objectContaining({ raised_seq: '7', metric: 'diskPercent', severity: 'warning', value: 95, cleared_seq: null }),
    ]);
    expect((await rows('telemetry_samples')).map((s) => s.sampled_at)).toEqual([2, 4, 6].map((m) => new Date(robot.at(m))));
  });

  it('closes a session and an alert opened by an earlier batch, and takes the duration from the event when it has one', async () => {
    // Given a robot whose session and alert were opened by one batch
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0002-start', 1), 1);
    await robot.command(ROBOT, sample(2, { memoryPercent: 93 }), 2);
    await projectStream(streamEvent(robot.records()), writer);

    // When the next batch stops and clears them
    await robot.command(ROBOT, teleoperation('stop', 'teleop-0002-stop', 4, 123_456), 4);
    await robot.command(ROBOT, sample(5, { memoryPercent: 50 }), 5);
    await projectStream(streamEvent(robot.records()), writer);

    // Then both rows are closed, and the agent's own duration wins over the clock difference
    expect(await rows('teleoperation_sessions')).toEqual([
      expect.objectContaining({ started_seq: '2', stopped_seq: '4', stop_reason: 'operator-idle', duration_ms: '123456' }),
    ]);
    expect(await rows('alerts')).toEqual([
      expect.objectContaining({ raised_seq: '3', metric: 'memoryPercent', cleared_seq: '5', cleared_value: 50 }),
    ]);
    const [row] = await rows('robots');
    expect(row).toMatchObject({ teleoperation_active: false, warning_alerts: 0, last_seq: '5' });
  });

  it('records the events an agent had to drop in its history, and leaves its robots row as it was', async () => {
    // Given an online robot, projected
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await projectStream(streamEvent(robot.records()), writer);
    const [before] = await rows('robots');

    // When its agent reports that its offline queue dropped 40 events
    await robot.command(
      ROBOT,
      { type: 'RecordAgentEvent', event: { eventId: 'dropped-00000001', occurredAt: robot.at(3), type: 'EventsDropped', data: { count: 40 } } },
      3,
    );
    await projectStream(streamEvent(robot.records()), writer);

    // Then the history has it, and the robot's row only moved its last seq
    expect((await rows('robot_events')).map((event) => [event.seq, event.type, event.event_id, event.data])).toEqual([
      ['1', 'RobotConnected', expect.any(String), expect.anything()],
      ['2', 'RobotEventsDropped', 'dropped-00000001', { count: 40 }],
    ]);
    const [after] = await rows('robots');
    expect(after!.state).toEqual(before!.state);
    expect(after).toMatchObject({ status: 'online', lifecycle: before!.lifecycle, healthy: before!.healthy, last_seq: '2' });
  });

  it('gives a robot known only from its telemetry a row in its initial state', async () => {
    // Given a robot that has sent a sample within every limit, so the log holds its head and no event
    const robot = fleet();
    await robot.command(OTHER, sample(1, { cpuTemperatureC: 50 }), 1);

    // When projected
    await projectStream(streamEvent(robot.records()), writer);

    // Then
    const [row] = await rows('robots');
    expect(row).toMatchObject({
      robot_id: OTHER,
      model: 'xle',
      status: 'offline',
      lifecycle: 'offline',
      last_seq: '0',
      telemetry: { sampledAt: robot.at(1), cpuPercent: 12.5, cpuTemperatureC: 50 },
    });
    expect(await rows('robot_events')).toEqual([]);
    expect(await rows('telemetry_samples')).toHaveLength(1);
  });

  it('keeps a week of samples per robot, counted back from its newest sample', async () => {
    // Given samples 0, 3 and 6.5 days old relative to the last one, and another robot's old sample
    const robot = fleet();
    const day = 24 * 60;
    await robot.command(OTHER, sample(0), 0);
    await robot.command(ROBOT, sample(0), 0);
    await robot.command(ROBOT, sample(2 * day), 2 * day);
    await robot.command(ROBOT, sample(5.5 * day), 5.5 * day);
    await projectStream(streamEvent(robot.records()), writer);
    expect(await rows('telemetry_samples')).toHaveLength(4);

    // When the robot's newest sample is 8 days after its first
    await robot.command(ROBOT, sample(8 * day), 8 * day);
    await projectStream(streamEvent(robot.records()), writer);

    // Then its first sample is gone, the other robot's stays (its own newest is its only one)
    const left = (await rows('telemetry_samples')).map((s) => [s.robot_id, s.sampled_at]);
    expect(left).toEqual([
      [ROBOT, new Date(robot.at(2 * day))],
      [ROBOT, new Date(robot.at(5.5 * day))],
      [ROBOT, new Date(robot.at(8 * day))],
      [OTHER, new Date(robot.at(0))],
    ]);
  });
});

describe('idempotence', () => {
  it('changes nothing when a batch is delivered again, or an older record on its own', async () => {
    // Given a projected history
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0003-start', 1), 1);
    await robot.command(ROBOT, sample(2, { cpuTemperatureC: 90 }), 2);
    await robot.command(ROBOT, presence(ROBOT, 'disconnected', 1, 3), 3);
    await robot.command(ROBOT, presence(ROBOT, 'connected', 2, 4), 4);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0003-restart', 5), 5);
    const records = robot.records();
    await projectStream(streamEvent(records), writer);
    const before = await snapshot(db.pool);

    // When the same batch comes again, then each record on its own, oldest first
    const again = await projectStream(streamEvent(records), writer);
    for (const record of records) await projectStream(streamEvent([record]), writer);

    // Then
    expect(again).toEqual({ batchItemFailures: [] });
    expect(await snapshot(db.pool)).toEqual(before);
    expect(before.robot_events).toHaveLength(7);
    // The disconnect (seq 4) leaves the first session open, unconfirmed; the restart (seq 6, superseded) closes it.
    expect(before.teleoperation_sessions.map((session) => session.stopped_seq)).toEqual(['6', null]);
  });

  it('keeps the newer telemetry when an older head arrives after it', async () => {
    // Given two samples, the newer projected first
    const robot = fleet();
    await robot.command(ROBOT, sample(1, { cpuPercent: 10 }), 1);
    const [olderHead] = robot.records().filter((record) => record.dynamodb?.NewImage?.kind?.S === 'head');
    await robot.command(ROBOT, sample(2, { cpuPercent: 20 }), 2);
    await projectStream(streamEvent(robot.records()), writer);

    // When the older head is delivered late
    await projectStream(streamEvent([olderHead!]), writer);

    // Then the robot keeps the newer sample; the older one is still history
    const [row] = await rows('robots');
    expect(row).toMatchObject({ telemetry: { cpuPercent: 20 }, telemetry_at: new Date(robot.at(2)) });
    expect((await rows('telemetry_samples')).map((s) => s.sample.cpuPercent)).toEqual([10, 20]);
  });
});

describe('poison records, gaps and failed writes', () => {
  const poisons: [string, (item: Record<string, unknown>) => Record<string, unknown>, string][] = [
    ['an unknown event type', (item) => ({ ...item, type: 'RobotExploded' }), 'type'],
    ['a missing field', (item) => ({ ...item, data: { durationMs: 5 } }), 'data.reason'],
    ['an unknown item kind', (item) => ({ ...item, kind: 'snapshot' }), 'unknown kind'],
  ];

  it.each(poisons)('sets a record with %s aside with the reason, and applies every record behind it', async (_name, spoil, named) => {
    // Given a batch: two good records of the robot, a malformed one, then more of the robot and another robot
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0004-start', 1), 1);
    const good = robot.records().filter((record) => record.dynamodb?.NewImage?.kind?.S === 'event');
    const stop = recordedEvent(ROBOT, 3, 'TeleoperationStopped', { reason: 'operator-idle' }, 2);
    const poison = new StreamRecords().record({ eventName: 'INSERT', item: spoil({ ...toEventItem(stop) }) });
    await robot.command(ROBOT, presence(ROBOT, 'disconnected', 1, 3), 3);
    await robot.command(OTHER, presence(OTHER, 'connected', 1, 3), 3);
    const behind = robot.records();
    const batch = withSequenceNumbers([...good, poison, ...behind]);
    const addMetric = vi.spyOn(metrics, 'addMetric');
    const logError = vi.spyOn(logger, 'error');
    const deadLetters = new ListDeadLetters();

    // When projected
    const response = await projectStream(streamEvent(batch), writer, { log: robot.log, deadLetters });

    // Then the batch succeeded and the poison record was set aside, with its robot, seq and the field at fault
    expect(response).toEqual({ batchItemFailures: [] });
    expect(deadLetters.letters).toEqual([
      expect.objectContaining({ sequenceNumber: batch[2]!.dynamodb!.SequenceNumber, robotId: ROBOT, seq: 3, reason: expect.stringContaining(named) }),
    ]);
    expect(addMetric).toHaveBeenCalledWith('InvalidStreamRecord', 'Count', 1);
    expect(addMetric).toHaveBeenCalledWith('StreamRecordsSetAside', 'Count', 1);
    expect(logError).toHaveBeenCalledWith('Invalid event log stream record', expect.objectContaining({ robotId: ROBOT, seq: 3 }));
    // and everything the log holds was applied, the robot's records behind the poison one included
    const seqs = (await robot.log.readEvents(ROBOT)).events.map((recorded) => String(recorded.seq));
    expect((await rows('robot_events')).map((event) => [event.robot_id, event.seq])).toEqual([
      ...seqs.map((seq) => [ROBOT, seq]),
      [OTHER, '1'],
    ]);
    const robots = await rows('robots');
    expect(robots.map((row) => [row.robot_id, row.last_seq, row.status])).toEqual([
      [ROBOT, seqs.at(-1), 'offline'],
      [OTHER, '1', 'online'],
    ]);
  });

  it('reads the events a set-aside record left missing from the log before projecting the records behind it', async () => {
    // Given a projected robot whose next event (seq 3, a stop) reached the projector spoiled and was set aside
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0005-start', 1), 1);
    await projectStream(streamEvent(robot.records()), writer, { log: robot.log });
    await robot.command(ROBOT, teleoperation('stop', 'teleop-0005-stop', 4), 4);
    robot.records();
    const logWarn = vi.spyOn(logger, 'warn');

    // When the records behind it come: a start, then a disconnect
    await robot.command(ROBOT, teleoperation('start', 'teleop-0006-start', 5), 5);
    await robot.command(ROBOT, presence(ROBOT, 'disconnected', 1, 6), 6);
    const response = await projectStream(streamEvent(robot.records()), writer, { log: robot.log });

    // Then seq 3 came from the log first: the sessions are what the log says, not "superseded"
    expect(response).toEqual({ batchItemFailures: [] });
    expect(logWarn).toHaveBeenCalledWith(expect.stringContaining('event log'), expect.objectContaining({ robotId: ROBOT, afterSeq: 2, nextSeq: 4, events: 1 }));
    expect(await rows('teleoperation_sessions')).toEqual([
      expect.objectContaining({ started_seq: '2', stopped_seq: '3', stop_reason: 'operator-idle', duration_ms: String(3 * 60_000) }),
      // The disconnect leaves it open, unconfirmed (issue 9): only the robot's word or the offline timeout ends it.
      expect.objectContaining({ started_seq: '4', stopped_seq: null }),
    ]);
    const head = (await robot.log.readHead(ROBOT))!;
    const [row] = await rows('robots');
    expect(row).toMatchObject({ last_seq: String(head.lastSeq), state: head.state, status: 'offline' });
    expect((await rows('robot_events')).map((event) => Number(event.seq))).toEqual(Array.from({ length: head.lastSeq }, (_, i) => i + 1));
  });

  it('does not project past a gap the log cannot fill: the robot waits, from its first record after the gap', async () => {
    // Given a projected robot at seq 2 and a log that cannot be read
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0007-start', 1), 1);
    await projectStream(streamEvent(robot.records()), writer, { log: robot.log });
    await robot.command(ROBOT, teleoperation('stop', 'teleop-0007-stop', 4), 4);
    robot.records();
    await robot.command(OTHER, presence(OTHER, 'connected', 1, 5), 5);
    await robot.command(ROBOT, teleoperation('start', 'teleop-0008-start', 5), 5);
    const records = robot.records();
    const unreadable = { readEvents: () => Promise.reject(new Error('Requested resource not found')) };

    // When the records behind the missing seq 3 come
    const response = await projectStream(streamEvent(records), writer, { log: unreadable });

    // Then the robot's first record from the gap on is the failure; nothing of it past seq 2 was applied
    const first = records.find((record) => record.dynamodb?.Keys?.robotId?.S === ROBOT && record.dynamodb?.NewImage?.kind?.S === 'event');
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: first!.dynamodb!.SequenceNumber }] });
    expect((await rows('robot_events')).map((event) => [event.robot_id, event.seq])).toEqual([
      [ROBOT, '1'],
      [ROBOT, '2'],
      [OTHER, '1'],
    ]);
    expect((await rows('robots')).map((row) => [row.robot_id, row.last_seq, row.teleoperation_active])).toEqual([
      [ROBOT, '2', true],
      [OTHER, '1', false],
    ]);
  });

  it('replaces an alert that is raised again without having been cleared', async () => {
    // Given an open temperature alert
    const raise = (seq: number, value: number) =>
      recordedEvent(ROBOT, seq, 'AlertRaised', { metric: 'cpuTemperatureC', severity: 'critical', value, threshold: 80 }, seq);

    // When it is raised again (its clear was lost)
    await writer.applyBatch([{ kind: 'event', recorded: raise(1, 81) }]);
    await writer.applyBatch([{ kind: 'event', recorded: raise(2, 88) }]);

    // Then there is one open alert, the newer one
    expect(await rows('alerts')).toEqual([
      expect.objectContaining({ raised_seq: '1', value: 81, cleared_seq: '2', cleared_value: null }),
      expect.objectContaining({ raised_seq: '2', value: 88, cleared_seq: null }),
    ]);
  });

  it('writes nothing of a batch whose write fails, reports its first record, and applies it on the retry', async () => {
    // Given a database where the alerts table is missing, and a batch that raises an alert
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);
    await robot.command(ROBOT, sample(1, { cpuTemperatureC: 85 }), 1);
    const batch = robot.records();
    await db.pool.query('ALTER TABLE alerts RENAME TO alerts_away');
    let response;
    try {
      // When projected
      response = await projectStream(streamEvent(batch), writer);
      // Then the whole batch is reported, and nothing of it was written
      expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: batch[0]!.dynamodb!.SequenceNumber }] });
      for (const table of ['robots', 'robot_events', 'telemetry_samples'] as const) expect(await rows(table)).toEqual([]);
    } finally {
      await db.pool.query('ALTER TABLE alerts_away RENAME TO alerts');
    }

    // And when Lambda retries the batch once the database is back, all of it is applied
    expect(await projectStream(streamEvent(batch), writer)).toEqual({ batchItemFailures: [] });
    expect(await rows('robot_events')).toHaveLength(2);
    expect(await rows('alerts')).toHaveLength(1);
  });
});

describe('text in events', () => {
  it('stores text PostgreSQL cannot hold (U+0000, lone surrogates) as U+FFFD instead of failing forever', async () => {
    // Given an event whose free text holds a NUL and a lone surrogate
    const failed = recordedEvent(ROBOT, 1, 'RobotMarkedFailed', { reason: 'bad\u0000input \uD800 here', by: 'ops' }, 1);

    // When projected
    const records = new StreamRecords().records([{ eventName: 'INSERT', item: { ...toEventItem(failed) } }]);
    const response = await projectStream(streamEvent(records), writer);

    // Then
    expect(response).toEqual({ batchItemFailures: [] });
    const [event] = await rows('robot_events');
    expect(event!.data).toEqual({ reason: 'bad\uFFFDinput \uFFFD here', by: 'ops' });
  });

  it.each([
    ['quotes and backslashes', `it's "stuck" at C:\\robot\\arm`],
    ['dollar signs, even what looks like the quoting tag', 'costs $5 $rows$ ) ; DROP TABLE robots; $rows'],
  ])('stores text with %s exactly as the event has it', async (_name, reason) => {
    // Given
    const failed = recordedEvent(ROBOT, 1, 'RobotMarkedFailed', { reason, by: 'ops' }, 1);

    // When
    const records = new StreamRecords().records([{ eventName: 'INSERT', item: { ...toEventItem(failed) } }]);
    const response = await projectStream(streamEvent(records), writer);

    // Then
    expect(response).toEqual({ batchItemFailures: [] });
    const [row] = await rows('robots');
    expect(row!.state.failure.reason).toBe(reason);
    expect(row!.view.failure.reason).toBe(reason);
  });
});

describe('the Lambda entry', () => {
  it('parses its environment once and projects a stream event', async () => {
    // Given the handler module loaded with the database's URL
    vi.resetModules();
    vi.stubEnv('DATABASE_URL', db.url);
    vi.stubEnv('EVENT_LOG_TABLE', 'event-log');
    vi.stubEnv('TELEMETRY_RETENTION_DAYS', '3');
    const { handler } = await import('../../functions/handlers/stream-projector.js');
    const robot = fleet();
    await robot.command(ROBOT, presence(ROBOT, 'connected', 1, 0), 0);

    // When invoked
    const response = await handler(streamEvent(robot.records()), lambdaContext('StreamProjector'));

    // Then
    expect(response).toEqual({ batchItemFailures: [] });
    expect(await rows('robots')).toEqual([expect.objectContaining({ robot_id: ROBOT, status: 'online' })]);
    vi.unstubAllEnvs();
  });

  it('sets poison records aside in the JSON-lines file DEAD_LETTER_FILE names', async () => {
    // Given the handler loaded as the local cloud loads it, with a dead-letter file
    const dir = await mkdtemp(path.join(tmpdir(), 'dead-letters-'));
    const file = path.join(dir, 'dead-letters', 'stream-projector.jsonl');
    vi.resetModules();
    vi.stubEnv('DATABASE_URL', db.url);
    vi.stubEnv('EVENT_LOG_TABLE', 'event-log');
    vi.stubEnv('DEAD_LETTER_FILE', file);
    try {
      const { handler } = await import('../../functions/handlers/stream-projector.js');
      const poison = new StreamRecords().record({ eventName: 'INSERT', item: { robotId: ROBOT, seq: 1, kind: 'event', type: 'RobotExploded' } });

      // When invoked with a record that does not parse
      const response = await handler(streamEvent([poison]), lambdaContext('StreamProjector'));

      // Then it is in the file, counted, and the batch succeeded
      expect(response).toEqual({ batchItemFailures: [] });
      const deadLetters = createFileDeadLetters(file);
      expect(await deadLetters.count()).toBe(1);
      expect(await deadLetters.read()).toEqual([
        expect.objectContaining({ sequenceNumber: poison.dynamodb!.SequenceNumber, robotId: ROBOT, seq: 1, reason: expect.any(String) }),
      ]);
    } finally {
      vi.unstubAllEnvs();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails its cold start naming a malformed or missing variable', async () => {
    vi.resetModules();
    vi.stubEnv('DATABASE_URL', db.url);
    vi.stubEnv('EVENT_LOG_TABLE', 'event-log');
    vi.stubEnv('TELEMETRY_RETENTION_DAYS', 'a week');
    await expect(import('../../functions/handlers/stream-projector.js')).rejects.toThrow(/TELEMETRY_RETENTION_DAYS/);
    vi.resetModules();
    vi.stubEnv('TELEMETRY_RETENTION_DAYS', '7');
    vi.stubEnv('EVENT_LOG_TABLE', '');
    await expect(import('../../functions/handlers/stream-projector.js')).rejects.toThrow(/EVENT_LOG_TABLE/);
    vi.unstubAllEnvs();
  });
});

describe('rebuild from the log', () => {
  let rebuilt: TestDatabase;
  let rebuiltWriter: PgReadModelWriter;
  beforeAll(async () => {
    rebuilt = await createTestDatabase();
    rebuiltWriter = new PgReadModelWriter(rebuilt.pool, { telemetryRetentionDays: 7 });
  });
  afterAll(() => rebuilt.drop());

  it('gives the read models an incremental projection gave, however the stream was batched and redelivered', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
          robots: fc.integer({ min: 1, max: 4 }),
          steps: fc.integer({ min: 1, max: 80 }),
          // Batch sizes to cut the stream with, cycled; and which batches Lambda delivers twice.
          batchSizes: fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
          redeliver: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
          chunkSize: fc.integer({ min: 1, max: 50 }),
        }),
        async ({ seed, robots, steps, batchSizes, redeliver, chunkSize }) => {
          // Given a fleet history, projected incrementally in batches, some delivered twice
          await truncateReadModels(db.pool);
          await truncateReadModels(rebuilt.pool);
          const simulation = new FleetSimulation(new RecordingEventLog(), { robots, seed });
          await simulation.run(steps);
          const records = new StreamRecords().records(simulation.log.takeStream());
          for (let start = 0, n = 0; start < records.length; n++) {
            const batch = records.slice(start, start + batchSizes[n % batchSizes.length]!);
            expect(await projectStream(streamEvent(batch), writer, { log: simulation.log })).toEqual({ batchItemFailures: [] });
            if (redeliver[n % redeliver.length]) await projectStream(streamEvent(batch), writer, { log: simulation.log });
            start += batch.length;
          }

          // When the log is replayed into an empty schema
          const progress: RebuildProgress[] = [];
          const done = await rebuildReadModels(simulation.log, rebuiltWriter, { chunkSize, onProgress: (p) => progress.push(p) });

          // Then every read model is the same, except the sample history, which the log does not hold: the
          // rebuild has each robot's latest sample
          const incremental = await snapshot(db.pool);
          const replayed = await snapshot(rebuilt.pool);
          expect(replayed).toEqual(expectedAfterRebuild(incremental));
          expect(incremental.telemetry_samples).toEqual(expect.arrayContaining(replayed.telemetry_samples));
          expect(done.events).toBe(simulation.log.eventCount);
          expect(progress.at(-1)).toMatchObject({ events: done.events, heads: done.heads });
        },
      ),
      { numRuns: Number(process.env.PROPERTY_RUNS ?? 20) },
    );
  }, 180_000);

  it('keeps the sample history when rebuilding in place', async () => {
    // Given a projected robot with three samples
    const robot = fleet();
    for (const minute of [1, 2, 3]) await robot.command(ROBOT, sample(minute), minute);
    await projectStream(streamEvent(robot.records()), writer);

    // When the read models are rebuilt from the log into the same database
    await rebuildReadModels(robot.log, writer);

    // Then
    expect(await rows('telemetry_samples')).toHaveLength(3);
    expect(await rows('robots')).toEqual([expect.objectContaining({ telemetry_at: new Date(robot.at(3)) })]);
  });
});

// ---- helpers

class ListDeadLetters implements DeadLetters {
  readonly letters: DeadLetter[] = [];
  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    this.letters.push(...letters);
  }
}

function recordedEvent<T extends DomainEvent['type']>(
  robotId: string,
  seq: number,
  type: T,
  data: Extract<DomainEvent, { type: T }>['data'],
  minutes: number,
): RecordedEvent {
  const at = new Date(T0 + minutes * 60_000).toISOString();
  return { seq, recordedAt: at, event: { eventId: `${robotId}:${type}:${seq}`, robotId, at, version: 1, type, data } as DomainEvent };
}

/** Records from different builders, renumbered as one shard would number them. */
function withSequenceNumbers(records: DynamoDBRecord[]): DynamoDBRecord[] {
  return records.map((record, index) => ({
    ...record,
    dynamodb: { ...record.dynamodb, SequenceNumber: String(900_000_000_000_000_000_000n + BigInt(index)) },
  }));
}
