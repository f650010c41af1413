import type { DynamoDBRecord } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RecordedEvent } from '../../schemas/index.js';
import { toEventItem } from '../../functions/adapters/event-log-items.js';
import { fillGaps, findGaps, heldGaps, planBatch, robotIdsOf, type StoredRobot } from '../../functions/adapters/read-model-changes.js';
import type { DeadLetter, DeadLetters } from '../../functions/app/dead-letters.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { EventLog, EventPage } from '../../functions/app/ports.js';
import { projectStream } from '../../functions/adapters/stream-consumers.js';
import { fillGapsFrom } from '../../functions/app/project-stream.js';
import type { ApplyOptions, BatchSummary, ProjectionItem, ReadModelWriter } from '../../functions/app/read-model-writer.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import { evolve, initialRobotState } from '../../functions/domain/robot-state.js';
import { logger, metrics } from '../../functions/platform/observability.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords, streamEvent } from '../support/stream-records.js';

const ROBOT = 'lekiwi-LK0001';
const OTHER = 'xle-XL0002';
const T0 = Date.parse('2026-11-02T09:00:00.000Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
const NOW = new Date('2026-11-02T12:00:00.000Z');

afterEach(() => vi.restoreAllMocks());

/**
 * The read models in memory, written the way PgReadModelWriter writes them (the same findGaps → fillGaps → planBatch),
 * all or nothing per batch; `down` makes every write fail as a database that refuses connections does.
 */
class InMemoryReadModels implements ReadModelWriter {
  readonly robots = new Map<string, StoredRobot>();
  /** Every event row, as robot_events holds them: `<robotId>#<seq>` → type. */
  readonly events = new Map<string, string>();
  down = false;
  readonly batches: ProjectionItem[][] = [];

  async applyBatch(items: readonly ProjectionItem[], options: ApplyOptions = {}): Promise<BatchSummary> {
    this.batches.push([...items]);
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    const stored = new Map(robotIdsOf(items).map((robotId) => [robotId, this.robots.get(robotId) ?? { state: initialRobotState(robotId), lastSeq: 0 }]));
    const fills = await fillGaps(findGaps(stored, items), options.fillGap);
    const changes = planBatch(stored, [...items, ...fills.items]);
    for (const row of changes.robots) {
      if ('state' in row) this.robots.set(row.robot_id, { state: row.state, lastSeq: row.last_seq });
    }
    for (const event of changes.events) this.events.set(`${event.robot_id}#${event.seq}`, event.type);
    return { applied: changes.applied, skipped: changes.skipped, filled: fills.filled, held: heldGaps(changes, fills) };
  }

  async reset(): Promise<void> {
    this.robots.clear();
    this.events.clear();
  }

  seqs(robotId: string): number[] {
    return [...this.events.keys()]
      .filter((key) => key.startsWith(`${robotId}#`))
      .map((key) => Number(key.slice(robotId.length + 1)))
      .sort((a, b) => a - b);
  }
}

class MemoryDeadLetters implements DeadLetters {
  readonly letters: DeadLetter[] = [];
  failing = false;
  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    if (this.failing) throw new Error('queue unreachable');
    this.letters.push(...letters);
  }
}

/** Commands through the real command loop into a log that records its stream. */
function fleet() {
  const log = new RecordingEventLog();
  const stream = new StreamRecords();
  return {
    log,
    command: (robotId: string, command: RobotCommand, minutes: number) =>
      executeRobotCommand(log, robotId, command, { now: () => new Date(T0 + minutes * 60_000) }),
    /** The stream records written since the last call, markers and heads without a sample dropped (the filter). */
    records: (): DynamoDBRecord[] =>
      stream.records(log.takeStream()).filter((record) => record.dynamodb?.NewImage?.kind?.S === 'event'),
    stream,
  };
}

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
const markFailed = (n: number, minutes: number): RobotCommand => ({ type: 'MarkFailed', eventId: `fail-${n}`, at: at(minutes), reason: 'arm stuck', by: 'ops' });
const recover = (n: number, minutes: number): RobotCommand => ({ type: 'Recover', eventId: `recover-${n}`, at: at(minutes), by: 'ops' });

/** A robot with `count` events in the log: connected, then failed and recovered in turn. */
async function history(robot: ReturnType<typeof fleet>, robotId: string, count: number, from = 0) {
  for (let n = from; n < from + count; n++) {
    await robot.command(robotId, n === 0 ? connect(robotId, 1, n) : n % 2 === 1 ? markFailed(n, n) : recover(n, n), n);
  }
}

/** The record spoiled so that it no longer parses, keeping its keys and sequence number. */
function spoil(record: DynamoDBRecord): DynamoDBRecord {
  const image = { ...record.dynamodb!.NewImage!, type: { S: 'RobotExploded' } };
  return { ...record, dynamodb: { ...record.dynamodb, NewImage: image } };
}

const sequenceNumber = (record: DynamoDBRecord) => record.dynamodb!.SequenceNumber!;
const seqOf = (record: DynamoDBRecord) => Number(record.dynamodb!.Keys!.seq!.N);

/** What a replay of the log gives a robot: its state after folding every event, and its last seq. */
async function replayed(log: EventLog, robotId: string) {
  const { events } = await log.readEvents(robotId, { afterSeq: 0, limit: 1000 });
  return { state: events.reduce((state, recorded) => evolve(state, recorded.event), initialRobotState(robotId)), lastSeq: events.at(-1)?.seq ?? 0 };
}

describe('projectStream: poison records', () => {
  it('sets a record that does not parse aside with its reason and applies the rest of the batch', async () => {
    // Given a batch of two robots' events with one of the other robot's records spoiled
    const robot = fleet();
    await history(robot, ROBOT, 3);
    await history(robot, OTHER, 2);
    const records = robot.records();
    const poisonAt = records.findIndex((record) => record.dynamodb!.Keys!.robotId!.S === OTHER && seqOf(record) === 2);
    records[poisonAt] = spoil(records[poisonAt]!);
    const writer = new InMemoryReadModels();
    const deadLetters = new MemoryDeadLetters();
    const addMetric = vi.spyOn(metrics, 'addMetric');

    // When projected
    const response = await projectStream(streamEvent(records), writer, { log: robot.log, deadLetters, now: () => NOW });

    // Then the batch succeeded, with the poison record set aside, saying which robot, which seq and why
    expect(response).toEqual({ batchItemFailures: [] });
    expect(deadLetters.letters).toEqual([
      {
        sequenceNumber: sequenceNumber(records[poisonAt]!),
        eventSourceArn: records[poisonAt]!.eventSourceARN,
        robotId: OTHER,
        seq: 2,
        eventName: 'INSERT',
        reason: expect.stringContaining('type'),
        image: records[poisonAt]!.dynamodb!.NewImage,
        setAsideAt: NOW.toISOString(),
      },
    ]);
    expect(addMetric).toHaveBeenCalledWith('StreamRecordsSetAside', 'Count', 1);
    expect(addMetric).toHaveBeenCalledWith('InvalidStreamRecord', 'Count', 1);
    // and every other record applied
    expect(writer.seqs(ROBOT)).toEqual([1, 2, 3]);
    expect(writer.seqs(OTHER)).toEqual([1]);
  });

  it("fills the poison record's place from the log when the robot's next event comes, so nothing is projected past it", async () => {
    // Given a robot whose seq 2 reached the projector spoiled and was set aside (the log's item is sound)
    const robot = fleet();
    await history(robot, ROBOT, 2);
    const first = robot.records();
    first[1] = spoil(first[1]!);
    const writer = new InMemoryReadModels();
    const deadLetters = new MemoryDeadLetters();
    await projectStream(streamEvent(first), writer, { log: robot.log, deadLetters });
    expect(writer.seqs(ROBOT)).toEqual([1]);

    // When its next events come
    await history(robot, ROBOT, 2, 2);
    const response = await projectStream(streamEvent(robot.records()), writer, { log: robot.log, deadLetters });

    // Then seq 2 was read from the log and applied before them: the read model is the replay of the log
    expect(response).toEqual({ batchItemFailures: [] });
    expect(writer.seqs(ROBOT)).toEqual([1, 2, 3, 4]);
    expect(writer.robots.get(ROBOT)).toEqual(await replayed(robot.log, ROBOT));
    expect(deadLetters.letters.map((letter) => letter.seq)).toEqual([2]);
  });

  it('reports the first poison record when it cannot be set aside, so that it comes again', async () => {
    // Given a batch with a poison record in the middle, and a dead-letter destination that is down
    const robot = fleet();
    await history(robot, ROBOT, 4);
    const records = robot.records();
    records[2] = spoil(records[2]!);
    const deadLetters = new MemoryDeadLetters();
    deadLetters.failing = true;
    const writer = new InMemoryReadModels();

    // When projected
    const response = await projectStream(streamEvent(records), writer, { log: robot.log, deadLetters });

    // Then the poison record is the failure; the robot's later event waited for the seq the log gave (filled)
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: sequenceNumber(records[2]!) }] });
    expect(writer.seqs(ROBOT)).toEqual([1, 2, 3, 4]);

    // And without any dead-letter destination, the same
    const again = await projectStream(streamEvent(records), new InMemoryReadModels(), { log: robot.log });
    expect(again).toEqual({ batchItemFailures: [{ itemIdentifier: sequenceNumber(records[2]!) }] });
  });
});

describe('projectStream: gaps', () => {
  it("reads a robot's missing events from the log and applies them first, in order, in the same batch", async () => {
    // Given a read model at seq 2 of a robot whose stream then lost seqs 3 to 5 (trimmed, or set aside)
    const robot = fleet();
    await history(robot, ROBOT, 2);
    const writer = new InMemoryReadModels();
    await projectStream(streamEvent(robot.records()), writer, { log: robot.log });
    await history(robot, ROBOT, 6, 2);
    await history(robot, OTHER, 1);
    const records = robot.records().filter((record) => !(record.dynamodb!.Keys!.robotId!.S === ROBOT && [3, 4, 5].includes(seqOf(record))));
    const logWarn = vi.spyOn(logger, 'warn');

    // When the rest is projected
    const response = await projectStream(streamEvent(records), writer, { log: robot.log });

    // Then 3–5 came from the log, in order with the rest, in the batch's one write
    expect(response).toEqual({ batchItemFailures: [] });
    expect(writer.batches).toHaveLength(2);
    expect(writer.seqs(ROBOT)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(writer.robots.get(ROBOT)).toEqual(await replayed(robot.log, ROBOT));
    expect(writer.seqs(OTHER)).toEqual([1]);
    expect(logWarn).toHaveBeenCalledWith(expect.stringContaining('event log'), expect.objectContaining({ robotId: ROBOT, afterSeq: 2, nextSeq: 6, events: 3 }));
  });

  it('fills a robot the read model has never seen from seq 1, and every gap of one batch', async () => {
    // Given a stream that holds every third event of a robot up to seq 1,200, then only seq 2,400
    const robot = fleet();
    await history(robot, ROBOT, 2500);
    const records = robot.records().filter((record) => (seqOf(record) % 3 === 0 && seqOf(record) <= 1200) || seqOf(record) === 2400);

    // When projected into an empty read model
    const writer = new InMemoryReadModels();
    const response = await projectStream(streamEvent(records), writer, { log: robot.log });

    // Then it holds every event up to the last one the batch brought, the 1,199 of the last gap read in two pages
    expect(response).toEqual({ batchItemFailures: [] });
    expect(writer.seqs(ROBOT)).toEqual(Array.from({ length: 2400 }, (_, index) => index + 1));
    expect(writer.robots.get(ROBOT)!.lastSeq).toBe(2400);
  });

  it.each([
    ['the log fails', (log: EventLog) => ({ readEvents: () => Promise.reject(new Error('ProvisionedThroughputExceededException')) }), 'ProvisionedThroughputExceeded'],
    [
      'an item in the gap does not parse either',
      (log: EventLog) => ({
        readEvents: async (robotId: string, options?: { afterSeq?: number; limit?: number }): Promise<EventPage> => {
          const page = await log.readEvents(robotId, options);
          if (page.events.some((recorded) => recorded.seq === 2)) throw new Error('type: Invalid discriminator value');
          return page;
        },
      }),
      'Invalid discriminator',
    ],
    [
      'the log does not have the event',
      (log: EventLog) => ({
        readEvents: async (robotId: string, options?: { afterSeq?: number; limit?: number }): Promise<EventPage> => {
          const page = await log.readEvents(robotId, options);
          return { ...page, events: page.events.filter((recorded) => recorded.seq !== 2) };
        },
      }),
      'did not give seq 2',
    ],
  ])('does not project past a gap when %s: the robot waits, from its first record after the gap', async (_name, brokenLog, reason) => {
    // Given a read model at seq 1 and a batch in which the robot's seq 2 is spoiled, between other robots' events
    const robot = fleet();
    await history(robot, ROBOT, 1);
    const writer = new InMemoryReadModels();
    await projectStream(streamEvent(robot.records()), writer, { log: robot.log });
    await history(robot, OTHER, 1);
    await history(robot, ROBOT, 3, 1);
    await history(robot, OTHER, 1, 1);
    await robot.command(OTHER, recover(99, 9), 9);
    const records = robot.records();
    const seq2 = records.findIndex((record) => record.dynamodb!.Keys!.robotId!.S === ROBOT && seqOf(record) === 2);
    records[seq2] = spoil(records[seq2]!);
    // and a poison record of the other robot behind the robot that will wait
    const otherLast = records.length - 1;
    records[otherLast] = spoil(records[otherLast]!);
    const deadLetters = new MemoryDeadLetters();
    const logError = vi.spyOn(logger, 'error');

    // When projected with a log that cannot give seq 2 (or 3)
    const response = await projectStream(streamEvent(records), writer, { log: brokenLog(robot.log), deadLetters });

    // Then the robot's first record after the gap is the failure, and nothing of the robot past the gap was applied
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: sequenceNumber(records[seq2 + 1]!) }] });
    expect(writer.seqs(ROBOT)).toEqual([1]);
    expect(writer.robots.get(ROBOT)!.lastSeq).toBe(1);
    expect(logError).toHaveBeenCalledWith(expect.stringContaining('waits'), expect.objectContaining({ robotId: ROBOT, afterSeq: 1, reason: expect.stringContaining(reason) }));
    // the other robot was applied (the retry finds it done); its poison record comes again, and is set aside then
    expect(writer.seqs(OTHER)).toEqual([1, 2]);
    expect(deadLetters.letters.map((letter) => [letter.robotId, letter.seq])).toEqual([[ROBOT, 2]]);

    // And when the retry finds the log readable again, everything is applied and the other poison set aside
    const retry = records.slice(seq2 + 1);
    expect(await projectStream(streamEvent(retry), writer, { log: robot.log, deadLetters })).toEqual({ batchItemFailures: [] });
    expect(writer.seqs(ROBOT)).toEqual([1, 2, 3, 4]);
    expect(writer.robots.get(ROBOT)).toEqual(await replayed(robot.log, ROBOT));
    expect(deadLetters.letters.map((letter) => [letter.robotId, letter.seq])).toEqual([
      [ROBOT, 2],
      [OTHER, 3],
    ]);
  });

  it('holds the robot when there is no log to read the gap from', async () => {
    const robot = fleet();
    await history(robot, ROBOT, 3);
    const records = robot.records().slice(1);
    const response = await projectStream(streamEvent(records), new InMemoryReadModels());
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: sequenceNumber(records[0]!) }] });
  });
});

describe('projectStream: the database is down', () => {
  it('reports the whole batch as failed, sets nothing aside, and applies all of it once the database is back', async () => {
    // Given a batch with a poison record, and a database that refuses connections
    const robot = fleet();
    await history(robot, ROBOT, 3);
    await history(robot, OTHER, 2);
    const records = robot.records();
    records[1] = spoil(records[1]!);
    const writer = new InMemoryReadModels();
    writer.down = true;
    const deadLetters = new MemoryDeadLetters();

    // When projected, twice
    for (let attempt = 0; attempt < 2; attempt++) {
      // Then the whole batch is the failure (its first record), nothing is applied and nothing set aside
      const response = await projectStream(streamEvent(records), writer, { log: robot.log, deadLetters });
      expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: sequenceNumber(records[0]!) }] });
      expect(writer.events.size).toBe(0);
      expect(deadLetters.letters).toEqual([]);
    }

    // And once it is back, the same batch is applied, the poison record set aside once and its place filled
    writer.down = false;
    expect(await projectStream(streamEvent(records), writer, { log: robot.log, deadLetters })).toEqual({ batchItemFailures: [] });
    expect(writer.seqs(ROBOT)).toEqual([1, 2, 3]);
    expect(writer.seqs(OTHER)).toEqual([1, 2]);
    expect(deadLetters.letters).toHaveLength(1);
  });
});

describe('fillGapsFrom', () => {
  const recorded = (seq: number): RecordedEvent => ({
    seq,
    recordedAt: at(seq),
    event: { eventId: `e-${seq}`, robotId: ROBOT, at: at(seq), version: 1, type: 'RobotMarkedFailed', data: { reason: 'x', by: 'ops' } },
  });

  it('reads exactly the missing seqs, page by page', async () => {
    const calls: unknown[] = [];
    const log = {
      readEvents: async (_robotId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<EventPage> => {
        calls.push(options);
        const from = options.afterSeq! + 1;
        return { events: Array.from({ length: options.limit! }, (_, index) => recorded(from + index)), nextAfterSeq: from + options.limit! - 1 };
      },
    };
    const fill = await fillGapsFrom(log)({ robotId: ROBOT, afterSeq: 10, nextSeq: 2_512 });
    expect('events' in fill && fill.events.map((event) => event.seq)).toEqual(Array.from({ length: 2_501 }, (_, index) => 11 + index));
    expect(calls).toEqual([
      { afterSeq: 10, limit: 1000 },
      { afterSeq: 1010, limit: 1000 },
      { afterSeq: 2010, limit: 501 },
    ]);
  });

  it('stops where the log has nothing more, leaving the check to the writer', async () => {
    const log = { readEvents: async (): Promise<EventPage> => ({ events: [recorded(3)], nextAfterSeq: null }) };
    expect(await fillGapsFrom(log)({ robotId: ROBOT, afterSeq: 2, nextSeq: 6 })).toEqual({ events: [recorded(3)] });
  });
});

// The event item codec is what the spoiled records go through.
it('spoils a record so that the codec refuses it', () => {
  const item = toEventItem({ seq: 1, recordedAt: at(0), event: { eventId: 'e', robotId: ROBOT, at: at(0), version: 1, type: 'RobotMarkedFailed', data: { reason: 'x', by: 'ops' } } });
  const record = spoil(new StreamRecords().record({ eventName: 'INSERT', item: { ...item } }));
  expect(record.dynamodb!.NewImage!.type).toEqual({ S: 'RobotExploded' });
});
