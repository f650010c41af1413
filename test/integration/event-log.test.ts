import { GetCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentEvent, DomainEvent, RecordedEvent, TelemetrySample } from '../../schemas/index.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { HEAD_SEQ, markerKey } from '../../functions/adapters/event-log-items.js';
import { InvalidEventLogRequest } from '../../functions/adapters/event-log-rules.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { EventLog } from '../../functions/app/ports.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { createTestEventLog } from '../support/dynamo.js';

type TestTable = Awaited<ReturnType<typeof createTestEventLog>>;

let table: TestTable;
let log: DynamoEventLog;
let robotCounter = 0;
const nextRobotId = () => `lekiwi-EL${Date.now().toString(36)}${robotCounter++}`;
const now = () => new Date('2026-11-22T10:00:00.000Z');

beforeAll(async () => {
  table = await createTestEventLog();
  log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
});

afterAll(async () => {
  await table.drop();
});

function registered(robotId: string, eventId = `${robotId}:registered`): DomainEvent {
  return { eventId, robotId, at: '2026-11-22T09:00:00.000Z', version: 1, type: 'RobotRegistered', data: { model: 'lekiwi' } };
}

function connected(robotId: string, versionNumber: number): DomainEvent {
  return {
    eventId: `${robotId}:connected:${versionNumber}`,
    robotId,
    at: new Date(Date.parse('2026-11-22T09:00:00.000Z') + versionNumber * 60_000).toISOString(),
    version: 1,
    type: 'RobotConnected',
    data: { sessionIdentifier: `session-${versionNumber}`, versionNumber, timestamp: 1_795_000_000_000 + versionNumber },
  };
}

function teleoperationStarted(writer: string, index: number): AgentEvent {
  return {
    eventId: `${writer}-start-${String(index).padStart(4, '0')}`,
    occurredAt: new Date(Date.parse('2026-11-22T09:00:00.000Z') + index * 1000).toISOString(),
    type: 'TeleoperationStarted',
    data: { operatorAddress: `10.0.0.${index % 250}`, signals: ['actions'] },
  };
}

function sample(secondsAfterNine: number, cpuTemperatureC = 50): TelemetrySample {
  return {
    sampledAt: new Date(Date.parse('2026-11-22T09:00:00.000Z') + secondsAfterNine * 1000).toISOString(),
    cpuTemperatureC,
    cpuPercent: 20,
  };
}

async function allEvents(source: EventLog, robotId: string) {
  const events = [];
  let afterSeq: number | null = 0;
  while (afterSeq !== null) {
    const page: Awaited<ReturnType<EventLog['readEvents']>> = await source.readEvents(robotId, { afterSeq, limit: 1000 });
    events.push(...page.events);
    afterSeq = page.nextAfterSeq;
  }
  return events;
}

/** Passes through to the real log, counting conflicts; the first read of each writer waits for all of them. */
function racingWriters(inner: EventLog, writers: number) {
  let conflicts = 0;
  let firstReads = 0;
  let release!: () => void;
  const everyoneRead = new Promise<void>((resolve) => (release = resolve));
  const wrapped: EventLog = {
    readEvents: (robotId, options) => inner.readEvents(robotId, options),
    hasEvent: (robotId, eventId) => inner.hasEvent(robotId, eventId),
    readReceipt: (robotId, callerId, key) => inner.readReceipt(robotId, callerId, key),
    readHeadWithKnown: (robotId, eventIds) => inner.readHeadWithKnown(robotId, eventIds),
    async readHead(robotId) {
      const head = await inner.readHead(robotId);
      if (firstReads < writers) {
        firstReads += 1;
        if (firstReads === writers) release();
        // Every writer decides on the same (empty) head, so all but one must lose their first append.
        await everyoneRead;
      }
      return head;
    },
    async append(request) {
      const outcome = await inner.append(request);
      if (outcome.status === 'conflict') conflicts += 1;
      return outcome;
    },
  };
  return { log: wrapped, conflicts: () => conflicts };
}

describe('DynamoEventLog append, head and history', () => {
  it('appends events at consecutive seqs with a head, and pages through them', async () => {
    // Given a robot without history
    const robotId = nextRobotId();
    const events = [registered(robotId), connected(robotId, 1), connected(robotId, 2), connected(robotId, 3), connected(robotId, 4)];
    const state = fold(initialRobotState(robotId), events);

    // When five events are appended in one go
    const outcome = await log.append({
      robotId,
      expectedRevision: null,
      expectedLastSeq: 0,
      events,
      state,
      recordedAt: '2026-11-22T10:00:00.000Z',
      previousTelemetry: null,
    });

    // Then they got seqs 1..5, the head says so, and pages of two walk the history in order
    expect(outcome.status).toBe('appended');
    const head = await log.readHead(robotId);
    expect(head).toEqual({ robotId, state, lastSeq: 5, revision: 1, telemetry: null, outbox: null, updatedAt: '2026-11-22T10:00:00.000Z' });
    const first = await log.readEvents(robotId, { limit: 2 });
    const second = await log.readEvents(robotId, { afterSeq: first.nextAfterSeq ?? -1, limit: 2 });
    const third = await log.readEvents(robotId, { afterSeq: second.nextAfterSeq ?? -1, limit: 2 });
    expect([first, second, third].map((page) => [page.events.map((e) => e.seq), page.nextAfterSeq])).toEqual([
      [[1, 2], 2],
      [[3, 4], 4],
      [[5], null],
    ]);
    expect(third.events[0]).toEqual({ seq: 5, recordedAt: '2026-11-22T10:00:00.000Z', event: events[4] });
    const exact = await log.readEvents(robotId, { limit: 5 });
    expect([exact.events.length, exact.nextAfterSeq]).toEqual([5, null]);
  });

  it('writes one marker per eventId that records the seq the event got', async () => {
    // Given a robot with two events
    const robotId = nextRobotId();
    const events = [registered(robotId), connected(robotId, 1)];
    await log.append({
      robotId,
      expectedRevision: null,
      expectedLastSeq: 0,
      events,
      state: fold(initialRobotState(robotId), events),
      recordedAt: '2026-11-22T10:00:00.000Z',
      previousTelemetry: null,
    });

    // When the marker of the second event is read
    const documents = DynamoDBDocumentClient.from(table.client);
    const { Item } = await documents.send(new GetCommand({ TableName: table.tableName, Key: markerKey(robotId, events[1]!.eventId) }));

    // Then it names the seq of that event
    expect(Item).toEqual({ ...markerKey(robotId, events[1]!.eventId), kind: 'marker', eventSeq: 2, recordedAt: '2026-11-22T10:00:00.000Z' });
  });

  it('returns an empty last page for a robot without events', async () => {
    // Given / When an unknown robot's history is read
    const page = await log.readEvents(nextRobotId());

    // Then there is nothing, and no next page
    expect(page).toEqual({ events: [], nextAfterSeq: null });
    expect(await log.readHead(nextRobotId())).toBeNull();
  });

  it('rejects a page size out of range, naming the field', async () => {
    await expect(log.readEvents(nextRobotId(), { limit: 0 })).rejects.toThrow(/limit/);
    await expect(log.readEvents(nextRobotId(), { afterSeq: -1 })).rejects.toThrow(/afterSeq/);
  });

  it('rejects an append past the transaction limit without writing anything', async () => {
    // Given 50 events for one robot (101 transaction items)
    const robotId = nextRobotId();
    const events = Array.from({ length: 50 }, (_, index) => connected(robotId, index + 1));

    // When appended
    const attempt = log.append({
      robotId,
      expectedRevision: null,
      expectedLastSeq: 0,
      events,
      state: fold(initialRobotState(robotId), events),
      recordedAt: '2026-11-22T10:00:00.000Z',
      previousTelemetry: null,
    });

    // Then the error names the field and the log is untouched
    await expect(attempt).rejects.toThrow(InvalidEventLogRequest);
    await expect(attempt).rejects.toThrow(/events has 50 events; one append takes at most 49/);
    expect(await log.readHead(robotId)).toBeNull();
  });

  it('rejects an event of another robot and an eventId repeated within one append', async () => {
    const robotId = nextRobotId();
    const base = { robotId, expectedRevision: null, expectedLastSeq: 0, state: initialRobotState(robotId), previousTelemetry: null, recordedAt: '2026-11-22T10:00:00.000Z' };
    await expect(log.append({ ...base, events: [registered(robotId), registered(nextRobotId())] })).rejects.toThrow(
      /events\[1\]\.robotId/,
    );
    await expect(log.append({ ...base, events: [registered(robotId, 'same-id'), connected(robotId, 1), registered(robotId, 'same-id')] })).rejects.toThrow(
      /events\[2\]\.eventId repeats "same-id"/,
    );
    expect(await log.readHead(robotId)).toBeNull();
  });

  it('reports a conflict when the head moved on since the decision', async () => {
    // Given a robot at revision 2
    const robotId = nextRobotId();
    const state = initialRobotState(robotId);
    const base = { robotId, state, previousTelemetry: null, recordedAt: '2026-11-22T10:00:00.000Z' };
    await log.append({ ...base, expectedRevision: null, expectedLastSeq: 0, events: [registered(robotId)] });
    await log.append({ ...base, expectedRevision: 1, expectedLastSeq: 1, events: [connected(robotId, 1)] });

    // When a writer that decided on revision 1 appends, and one that thinks there is no head yet
    const stale = await log.append({ ...base, expectedRevision: 1, expectedLastSeq: 1, events: [connected(robotId, 2)] });
    const blind = await log.append({ ...base, expectedRevision: null, expectedLastSeq: 0, events: [connected(robotId, 3)] });

    // Then both conflict and nothing of theirs is in the log
    expect([stale, blind]).toEqual([{ status: 'conflict' }, { status: 'conflict' }]);
    expect((await allEvents(log, robotId)).map((e) => e.event.eventId)).toEqual([`${robotId}:registered`, `${robotId}:connected:1`]);
    expect((await log.readHead(robotId))?.revision).toBe(2);
  });
});

describe('DynamoEventLog duplicates', () => {
  it('adds nothing when an eventId is already in the log, even alongside a new event', async () => {
    // Given a robot with one event
    const robotId = nextRobotId();
    const first = registered(robotId);
    const state = fold(initialRobotState(robotId), [first]);
    await log.append({ robotId, expectedRevision: null, expectedLastSeq: 0, events: [first], state, previousTelemetry: null, recordedAt: '2026-11-22T10:00:00.000Z' });

    // When the same eventId comes again together with a new one, on the current head
    const again = await log.append({
      robotId,
      expectedRevision: 1,
      expectedLastSeq: 1,
      events: [connected(robotId, 1), first],
      state,
      recordedAt: '2026-11-22T10:01:00.000Z',
      previousTelemetry: null,
    });

    // Then it is a duplicate naming the known id, and neither event nor head changed
    expect(again).toEqual({ status: 'duplicate', eventIds: [first.eventId] });
    expect((await allEvents(log, robotId)).map((e) => e.event.eventId)).toEqual([first.eventId]);
    expect((await log.readHead(robotId))?.revision).toBe(1);
  });

  it('recognises a redelivered agent event through executeRobotCommand', async () => {
    // Given a teleoperation start already recorded
    const robotId = nextRobotId();
    const start = teleoperationStarted('agent', 1);
    const firstOutcome = await executeRobotCommand(log, robotId, { type: 'RecordAgentEvent', event: start }, { now });

    // When the agent's offline queue delivers it again
    const redelivered = await executeRobotCommand(log, robotId, { type: 'RecordAgentEvent', event: start }, { now });

    // Then the second is a duplicate and the log holds the start once
    expect(firstOutcome.status).toBe('appended');
    expect(redelivered.status).toBe('duplicate');
    const events = await allEvents(log, robotId);
    expect(events.map((e) => e.event.eventId)).toEqual([start.eventId]);
  });
});

describe('DynamoEventLog known eventIds and the outbox mark', () => {
  it('tells which of many eventIds are in the log, past the 100 keys of one BatchGetItem', async () => {
    // Given a robot with 60 events in the log
    const robotId = nextRobotId();
    let state = initialRobotState(robotId);
    let head: Awaited<ReturnType<DynamoEventLog['readHead']>> = null;
    const written: string[] = [];
    for (let chunk = 0; chunk < 2; chunk++) {
      const events = Array.from({ length: 30 }, (_, index) => registered(robotId, `${robotId}:known:${chunk * 30 + index}`));
      state = fold(state, events);
      const outcome = await log.append({
        robotId,
        expectedRevision: head?.revision ?? null,
        expectedLastSeq: head?.lastSeq ?? 0,
        events,
        state,
        previousTelemetry: null,
        outbox: { id: 'outbox-1', through: (chunk + 1) * 30 },
        recordedAt: '2026-11-22T10:00:00.000Z',
      });
      if (outcome.status !== 'appended') throw new Error(`append ${outcome.status}`);
      head = outcome.head;
      written.push(...events.map((event) => event.eventId));
    }

    // When 250 ids are asked about, 60 of them known, some asked twice
    const unknown = Array.from({ length: 190 }, (_, index) => `${robotId}:unknown:${index}`);
    const read = await log.readHeadWithKnown(robotId, [...unknown.slice(0, 100), ...written, ...unknown.slice(100), written[0]!]);

    // Then exactly the 60 are known, and the head (read in the same calls) keeps the outbox mark of the last append
    expect([...read.known].sort()).toEqual([...written].sort());
    expect(read.head).toEqual(await log.readHead(robotId));
    expect(read.head?.outbox).toEqual({ id: 'outbox-1', through: 60 });
    expect(await log.readHeadWithKnown(robotId, [])).toEqual({ head: read.head, known: new Set() });
    expect(await log.readHeadWithKnown(`${robotId}-none`, written.slice(0, 3))).toEqual({ head: null, known: new Set() });
  });
});

describe('DynamoEventLog under racing writers', () => {
  it('gives each seq to exactly one writer; losers retry and nothing is lost or doubled', async () => {
    // Given two agents' worth of teleoperation starts and a telemetry stream, all on one robot
    const robotId = nextRobotId();
    const perWriter = 50;
    const race = racingWriters(log, 3);
    const options = { now, maxAttempts: 100 };
    const starts = ['alpha', 'bravo'].map((writer) => Array.from({ length: perWriter }, (_, i) => teleoperationStarted(writer, i)));
    const samples = Array.from({ length: perWriter }, (_, i) => sample(i + 1));

    // When the three writers run at the same time, each one command after another
    const outcomes = await Promise.all([
      ...starts.map(async (events) => {
        const results = [];
        for (const event of events) results.push(await executeRobotCommand(race.log, robotId, { type: 'RecordAgentEvent', event }, options));
        return results;
      }),
      (async () => {
        const results = [];
        for (const s of samples) results.push(await executeRobotCommand(race.log, robotId, { type: 'RecordTelemetry', sample: s }, options));
        return results;
      })(),
    ]);

    // Then every command was appended, losers having retried
    expect(outcomes.flat().every((outcome) => outcome.status === 'appended')).toBe(true);
    expect(race.conflicts()).toBeGreaterThanOrEqual(2);

    // And the log holds seqs 1..N without gap or repeat: each start once, and one "superseded" stop per start but
    // the very first (a start while a session is open closes it)
    const events = await allEvents(log, robotId);
    const expectedCount = 2 * perWriter + (2 * perWriter - 1);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: expectedCount }, (_, i) => i + 1));
    const ids = events.map((e) => e.event.eventId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const start of starts.flat()) expect(ids.filter((id) => id === start.eventId)).toHaveLength(1);
    expect(events.filter((e) => e.event.type === 'TeleoperationStopped')).toHaveLength(2 * perWriter - 1);

    // And the head is the fold of the stored events, with the newest sample
    const head = await log.readHead(robotId);
    expect(head?.lastSeq).toBe(expectedCount);
    expect(head?.state).toEqual(fold(initialRobotState(robotId), events.map((e) => e.event)));
    expect(head?.telemetry).toEqual(samples.at(-1));
    expect(head?.revision).toBe(3 * perWriter);
  });
});

describe('DynamoEventLog telemetry on the head', () => {
  it('keeps the newest sample, refuses a stale one, and carries it over on event-only appends', async () => {
    // Given a robot with a sample taken at 09:00:10
    const robotId = nextRobotId();
    await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(10) }, { now });

    // When an older sample arrives late, then a newer one, then an agent event
    const stale = await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(5, 99) }, { now });
    const newer = await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(20, 85) }, { now });
    const afterEvent = await executeRobotCommand(log, robotId, { type: 'RecordAgentEvent', event: teleoperationStarted('agent', 1) }, { now });

    // Then the stale one changed nothing, the newer one raised the alert, and the event kept the sample
    expect(stale.status).toBe('stale-sample');
    expect(newer.status).toBe('appended');
    expect(afterEvent.status).toBe('appended');
    const head = await log.readHead(robotId);
    expect(head?.telemetry).toEqual(sample(20, 85));
    expect(head?.state.alerts.cpuTemperatureC?.value).toBe(85);
    expect((await allEvents(log, robotId)).map((e) => e.event.type)).toEqual(['AlertRaised', 'TeleoperationStarted']);
  });

  it('marks the head item when a write carried a new sample, so stream consumers push only real samples', async () => {
    // Given a robot with a sample, then an agent event
    const robotId = nextRobotId();
    const documents = DynamoDBDocumentClient.from(table.client);
    const headItem = async () =>
      (await documents.send(new GetCommand({ TableName: table.tableName, Key: { robotId, seq: HEAD_SEQ } }))).Item;
    await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(10) }, { now });
    const afterSample = await headItem();

    // When an event-only command follows
    await executeRobotCommand(log, robotId, { type: 'RecordAgentEvent', event: teleoperationStarted('agent', 1) }, { now });
    const afterEvent = await headItem();

    // Then only the first write was flagged, and both carry the sample
    expect([afterSample?.telemetryChanged, afterEvent?.telemetryChanged]).toEqual([true, false]);
    expect(afterEvent?.telemetry).toEqual(sample(10));
  });

  it('carries the previous sample over on an event-only append, on the stored and the returned head', async () => {
    // Given a robot with a sample
    const robotId = nextRobotId();
    await executeRobotCommand(log, robotId, { type: 'RecordTelemetry', sample: sample(10) }, { now });
    const head = await log.readHead(robotId);

    // When an event-only append passes the head's sample along
    const appended = await log.append({
      robotId,
      expectedRevision: head!.revision,
      expectedLastSeq: head!.lastSeq,
      events: [registered(robotId)],
      state: fold(head!.state, [registered(robotId)]),
      recordedAt: '2026-11-22T10:00:00.000Z',
      previousTelemetry: head!.telemetry,
    });

    // Then both heads keep it
    expect(appended.status === 'appended' && appended.head.telemetry).toEqual(sample(10));
    expect((await log.readHead(robotId))?.telemetry).toEqual(sample(10));
  });
});

describe('DynamoEventLog replay', () => {
  it('yields every event of every robot, each robot in seq order, and every head', async () => {
    // Given a fresh table with three robots and their histories
    const fresh = await createTestEventLog(table.client);
    try {
      const replayLog = new DynamoEventLog({ client: fresh.client, tableName: fresh.tableName });
      const robots = [nextRobotId(), nextRobotId(), nextRobotId()];
      for (const [index, robotId] of robots.entries()) {
        for (let i = 0; i <= index * 3; i++) {
          await executeRobotCommand(replayLog, robotId, { type: 'RecordAgentEvent', event: teleoperationStarted(robotId, i) }, { now });
        }
      }

      // When the log is replayed
      const replayed: RecordedEvent[] = [];
      for await (const recorded of replayLog.replayAll()) replayed.push(recorded);
      const heads = [];
      for await (const head of replayLog.replayHeads()) heads.push(head);

      // Then each robot's events come complete and in order, and each robot has its head
      for (const robotId of robots) {
        const mine = replayed.filter((r) => r.event.robotId === robotId);
        expect(mine).toEqual(await allEvents(replayLog, robotId));
        expect(mine.map((r) => r.seq)).toEqual(mine.map((_, i) => i + 1));
      }
      expect(replayed).toHaveLength(1 + 7 + 13);
      expect(heads.map((h) => h.robotId).sort()).toEqual([...robots].sort());
      expect(heads.find((h) => h.robotId === robots[2])).toEqual(await replayLog.readHead(robots[2]!));
    } finally {
      await fresh.drop();
    }
  });
});
