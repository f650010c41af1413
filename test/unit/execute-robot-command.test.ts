import { describe, expect, it } from 'vitest';
import type { AgentEvent, DomainEvent, TelemetrySample } from '../../schemas/index.js';
import { InvalidEventLogRequest } from '../../functions/adapters/event-log-rules.js';
import { ConcurrencyExhausted, executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { AppendRequest, EventLog } from '../../functions/app/ports.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

const robotId = 'lekiwi-LK0001';
const now = () => new Date('2026-11-22T10:00:00.000Z');
const noSleep = async () => {};

function started(id: string, second: number, operatorAddress = '10.0.0.9'): RobotCommand {
  const event: AgentEvent = {
    eventId: `teleop-start-${id}`,
    occurredAt: new Date(Date.parse('2026-11-22T09:00:00.000Z') + second * 1000).toISOString(),
    type: 'TeleoperationStarted',
    data: { operatorAddress, signals: ['actions'] },
  };
  return { type: 'RecordAgentEvent', event };
}

function stopped(id: string, second: number): RobotCommand {
  const event: AgentEvent = {
    eventId: `teleop-stop-${id}`,
    occurredAt: new Date(Date.parse('2026-11-22T09:00:00.000Z') + second * 1000).toISOString(),
    type: 'TeleoperationStopped',
    data: { reason: 'idle' },
  };
  return { type: 'RecordAgentEvent', event };
}

function sample(second: number, cpuTemperatureC = 50): TelemetrySample {
  return { sampledAt: new Date(Date.parse('2026-11-22T09:00:00.000Z') + second * 1000).toISOString(), cpuTemperatureC };
}

async function eventIds(log: EventLog) {
  return (await log.readEvents(robotId, { limit: 1000 })).events.map((e) => e.event.eventId);
}

/** Runs `rival` against the same log right before each of the first `times` appends: a writer that always wins. */
function withRival(inner: InMemoryEventLog, rival: (attempt: number) => Promise<unknown>, times: number) {
  const appends: AppendRequest[] = [];
  const log: EventLog = {
    readHead: (id) => inner.readHead(id),
    readEvents: (id, options) => inner.readEvents(id, options),
    hasEvent: (id, eventId) => inner.hasEvent(id, eventId),
    readReceipt: (id, callerId, key) => inner.readReceipt(id, callerId, key),
    readHeadWithKnown: (id, eventIds) => inner.readHeadWithKnown(id, eventIds),
    async append(request) {
      appends.push(request);
      if (appends.length <= times) await rival(appends.length);
      return inner.append(request);
    },
  };
  return { log, appends };
}

describe('executeRobotCommand', () => {
  it('retries on a conflict and decides again on the winner’s state', async () => {
    // Given a writer that slips in a teleoperation start before our first append
    const inner = new InMemoryEventLog();
    const { log, appends } = withRival(inner, () => executeRobotCommand(inner, robotId, started('rival', 1), { now }), 1);
    const sleeps: number[] = [];

    // When we record our own start
    const outcome = await executeRobotCommand(log, robotId, started('ours', 2), {
      now,
      sleep: async (ms) => void sleeps.push(ms),
    });

    // Then the first append lost, the retry saw the rival's open session and closed it before opening ours
    expect(outcome.status).toBe('appended');
    expect(appends).toHaveLength(2);
    expect(appends[0]?.expectedRevision).toBeNull();
    expect(appends[1]?.expectedRevision).toBe(1);
    expect(sleeps).toHaveLength(1);
    expect(await eventIds(inner)).toEqual(['teleop-start-rival', 'teleop-start-ours:superseded', 'teleop-start-ours']);
    const head = await inner.readHead(robotId);
    expect(head?.lastSeq).toBe(3);
    expect(head?.state.teleoperation.since).toBe('2026-11-22T09:00:02.000Z');
  });

  it('gives up with ConcurrencyExhausted after maxAttempts, having written nothing of its own', async () => {
    // Given a rival that changes the head before every one of our appends
    const inner = new InMemoryEventLog();
    const { log, appends } = withRival(
      inner,
      (attempt) => executeRobotCommand(inner, robotId, { type: 'RecordTelemetry', sample: sample(attempt) }, { now }),
      Infinity,
    );

    // When we try with three attempts
    const attempt = executeRobotCommand(log, robotId, started('ours', 10), { now, maxAttempts: 3, sleep: noSleep });

    // Then it gives up naming the robot, after exactly three appends, none of which landed
    await expect(attempt).rejects.toThrow(ConcurrencyExhausted);
    await expect(attempt).rejects.toThrow(/lekiwi-LK0001/);
    expect(appends).toHaveLength(3);
    expect(await eventIds(inner)).toEqual([]);
    expect((await inner.readHead(robotId))?.revision).toBe(3);
  });

  it('treats a redelivered command as a no-op', async () => {
    // Given a start already recorded
    const log = new InMemoryEventLog();
    await executeRobotCommand(log, robotId, started('once', 1), { now });
    const before = await log.readHead(robotId);

    // When it is delivered again
    const outcome = await executeRobotCommand(log, robotId, started('once', 1), { now });

    // Then nothing changes
    expect(outcome).toEqual({ status: 'duplicate', head: before });
    expect(await eventIds(log)).toEqual(['teleop-start-once']);
    expect(await log.readHead(robotId)).toEqual(before);
  });

  it('refuses a sample older than the head’s and leaves the head alone', async () => {
    // Given a head with a sample from 09:00:10
    const log = new InMemoryEventLog();
    await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(10) }, { now });
    const before = await log.readHead(robotId);

    // When a sample from 09:00:05 (and one from the same instant) arrives
    const older = await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(5, 95) }, { now });
    const same = await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(10, 95) }, { now });

    // Then both are stale, no alert is raised, and the head keeps the newer sample
    expect([older.status, same.status]).toEqual(['stale-sample', 'stale-sample']);
    expect(await log.readHead(robotId)).toEqual(before);
    expect(await eventIds(log)).toEqual([]);
  });

  it('writes nothing for a command that changes nothing', async () => {
    // Given a robot nobody drives
    const log = new InMemoryEventLog();

    // When the agent reports a stop
    const outcome = await executeRobotCommand(log, robotId, stopped('late', 3), { now });

    // Then nothing is recorded and no head is created
    expect(outcome).toEqual({ status: 'unchanged', head: null });
    expect(await log.readHead(robotId)).toBeNull();
  });
});

describe('InMemoryEventLog keeps the DynamoDB log’s semantics', () => {
  const registered = (eventId: string): DomainEvent => ({
    eventId,
    robotId,
    at: '2026-11-22T09:00:00.000Z',
    version: 1,
    type: 'RobotRegistered',
    data: { model: 'lekiwi' },
  });
  const request = (events: DomainEvent[], expectedRevision: number | null, expectedLastSeq: number): AppendRequest => ({
    robotId,
    expectedRevision,
    expectedLastSeq,
    events,
    state: fold(initialRobotState(robotId), events),
    recordedAt: '2026-11-22T10:00:00.000Z',
    previousTelemetry: null,
  });

  it('reports a known eventId as a duplicate before a conflict, and writes nothing either way', async () => {
    // Given one event in the log
    const log = new InMemoryEventLog();
    await log.append(request([registered('first-event')], null, 0));

    // When a stale writer appends the same id, and another a new id on a stale head
    const duplicate = await log.append(request([registered('new-event'), registered('first-event')], null, 0));
    const conflict = await log.append(request([registered('new-event')], null, 0));

    // Then the first is a duplicate naming the known id, the second a conflict
    expect(duplicate).toEqual({ status: 'duplicate', eventIds: ['first-event'] });
    expect(conflict).toEqual({ status: 'conflict' });
    expect(await eventIds(log)).toEqual(['first-event']);
  });

  it('pages like the DynamoDB log and validates like it', async () => {
    // Given three events
    const log = new InMemoryEventLog();
    await log.append(request([registered('event-1'), registered('event-2'), registered('event-3')], null, 0));

    // When read two at a time
    const first = await log.readEvents(robotId, { limit: 2 });
    const second = await log.readEvents(robotId, { afterSeq: 2, limit: 2 });

    // Then the pages and cursors match, and bad requests are refused naming the field
    expect([first.events.map((e) => e.seq), first.nextAfterSeq]).toEqual([[1, 2], 2]);
    expect([second.events.map((e) => e.seq), second.nextAfterSeq]).toEqual([[3], null]);
    await expect(log.readEvents(robotId, { limit: 5000 })).rejects.toThrow(/limit/);
    await expect(log.append(request([], 1, 7))).resolves.toEqual({ status: 'conflict' });
    await expect(log.append(request([], null, 3))).rejects.toThrow(InvalidEventLogRequest);
  });

  it('hands out copies, so a caller cannot change the log by mutating results', async () => {
    // Given a head
    const log = new InMemoryEventLog();
    await log.append(request([registered('event-1')], null, 0));

    // When a caller scribbles on what it read
    const head = await log.readHead(robotId);
    (head as { lastSeq: number }).lastSeq = 99;

    // Then the log is unchanged
    expect((await log.readHead(robotId))?.lastSeq).toBe(1);
  });
});
