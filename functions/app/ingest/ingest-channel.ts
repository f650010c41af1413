import { MAX_ACK_ITEMS, RobotId, ROBOT_REQUESTS, type EventsAck, type RejectedEvent } from '../../../schemas/index.js';
import { ConcurrencyExhausted, executeRobotCommand } from '../execute-robot-command.js';
import type { EventLog, RobotCommandChannel, RobotHead } from '../ports.js';
import { readChannelMessage, type ChannelMessage } from './channel-message.js';
import { RobotBatch, type Chunk, type RobotMessage } from './robot-batch.js';
import { rejectionsIn } from './robot-rejections.js';

/**
 * The ingest consumer's use case: a batch of the ordered channel (the Kinesis stream every robot message goes
 * through, keyed by robot) into the event log, then an acknowledgement to each robot of what the log now holds.
 *
 * Robots are independent and handled side by side; one robot's messages are handled one after another, in channel
 * order, by this consumer alone (one batch per shard at a time), so the only other writer of a robot's head is a
 * person's command — rare, and met by deciding again on the head it left.
 */

export interface ChannelRecord {
  /** The stream's sequence number: what a batch item failure names. */
  readonly sequenceNumber: string;
  /** The robot (the rules' partition key). */
  readonly partitionKey: string;
  /** The rule's output (JSON), or undefined when the record's data is not JSON. */
  readonly data: unknown;
}

export interface IngestChannelDeps {
  readonly log: EventLog;
  /** Where acknowledgements go: `cmd/heartbeat/<robot>/ack` through IoT Core's data plane. */
  readonly robots: RobotCommandChannel;
  readonly now: () => Date;
  /** Waits between attempts when the head moved under a write. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Called for every message as it is read, for logs and metrics. */
  readonly onMessage?: (message: ChannelMessage, record: ChannelRecord) => void;
  /** An acknowledgement that could not be published (the robot sends again after its timeout; nothing is lost). */
  readonly onAckFailed?: (robotId: string, error: unknown) => void;
}

export interface RobotIngestSummary {
  readonly robotId: string;
  /** Events appended to the log. */
  readonly appended: number;
  /** Transactions written. */
  readonly writes: number;
  /** Why the robot's messages stopped short (a DynamoDB error), with the first message not written. */
  readonly failure?: { readonly sequenceNumber: string; readonly error: unknown };
  /** The robot's own messages (or single events) of the batch refused for good (robot-rejections.ts). */
  readonly rejected: number;
}

export interface ChannelBatchResult {
  readonly robots: readonly RobotIngestSummary[];
  /** Sequence numbers to report as batch item failures: each failed robot's first message not written. */
  readonly failedSequenceNumbers: readonly string[];
}

/** Robots of one batch handled at the same time. */
const ROBOT_CONCURRENCY = 32;
/** Re-reads of a robot's head that moved under a write, before the batch is left to the mapping's retry. */
const MAX_ATTEMPTS = 10;

export async function ingestChannelBatch(deps: IngestChannelDeps, records: readonly ChannelRecord[]): Promise<ChannelBatchResult> {
  const now = deps.now();
  const byRobot = new Map<string, { record: ChannelRecord; message: ChannelMessage }[]>();
  for (const record of records) {
    const message = readChannelMessage(record.data, now);
    deps.onMessage?.(message, record);
    const list = byRobot.get(record.partitionKey) ?? [];
    list.push({ record, message });
    byRobot.set(record.partitionKey, list);
  }
  const robots = await mapWithConcurrency([...byRobot], ROBOT_CONCURRENCY, ([robotId, entries]) => ingestRobot(deps, robotId, entries));
  return {
    robots,
    failedSequenceNumbers: robots.flatMap((robot) => (robot.failure ? [robot.failure.sequenceNumber] : [])),
  };
}

/**
 * One robot's messages, in order. Written chunk by chunk (robot-batch.ts); when the head moved, or a DynamoDB call
 * fails, what was written stays written and the rest starts again from the first message not fully written. The
 * robot hears about everything written, whatever happened after.
 */
async function ingestRobot(
  deps: IngestChannelDeps,
  robotId: string,
  entries: readonly { record: ChannelRecord; message: ChannelMessage }[],
): Promise<RobotIngestSummary> {
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const ack = new AckBuilder();
  const relevant: { index: number; message: RobotMessage }[] = [];
  entries.forEach(({ message }, index) => {
    if (message.kind === 'presence' || message.kind === 'telemetry' || message.kind === 'events') relevant.push({ index, message });
    // A robot's events message it could not read at all: refused for good, and the robot is told why.
    else if (message.kind === 'invalid' && message.ingestKind === 'events') ack.reject({ problems: message.problems.slice(0, 20) });
  });
  const hadEvents = entries.some(({ message }) => message.kind === 'events' || (message.kind === 'invalid' && message.ingestKind === 'events'));

  let appended = 0;
  let writes = 0;
  let from = 0; // position in `relevant` of the first message not fully written
  let head: RobotHead | null = null;
  let failure: RobotIngestSummary['failure'];
  let failedAt = entries.length; // index in `entries` of the first message not written
  try {
    for (let attempt = 1; from < relevant.length; attempt++) {
      if (attempt > MAX_ATTEMPTS) throw new ConcurrencyExhausted(`Robot ${robotId}: the head kept changing during ${MAX_ATTEMPTS} attempts`);
      const base = from;
      const rest = relevant.slice(base);
      const read = await deps.log.readHeadWithKnown(robotId, eventIdsOf(rest.map((entry) => entry.message)));
      head = read.head;
      const known = read.known;
      const batch = new RobotBatch(head, robotId, known);
      let moved = false;
      const write = async (chunks: Chunk[]): Promise<boolean> => {
        for (const chunk of chunks) {
          if (needsWrite(chunk, head)) {
            const outcome = await deps.log.append({
              robotId,
              expectedRevision: head?.revision ?? null,
              expectedLastSeq: head?.lastSeq ?? 0,
              events: chunk.events,
              state: chunk.state,
              telemetry: chunk.telemetry,
              ...(chunk.telemetryRequestId !== undefined ? { telemetryRequestId: chunk.telemetryRequestId } : {}),
              previousTelemetry: head?.telemetry ?? null,
              outbox: chunk.outbox,
              recordedAt: deps.now().toISOString(),
            });
            if (outcome.status !== 'appended') return false;
            head = outcome.head;
            appended += outcome.recorded.length;
            writes += 1;
          }
          ack.add(chunk);
          from = chunk.completes + 1;
        }
        return true;
      };
      for (let i = 0; i < rest.length && !moved; i++) {
        batch.apply(rest[i]!.message, base + i);
        moved = !(await write(batch.takeReady()));
      }
      if (!moved) moved = !(await write(batch.finish(relevant.length - 1)));
      if (moved) await sleep(Math.random() * Math.min(200, 5 * 2 ** attempt));
    }
  } catch (error) {
    const first = relevant[from];
    failedAt = first?.index ?? 0;
    failure = { sequenceNumber: entries[failedAt]!.record.sequenceNumber, error };
  }
  // The refusals before the first message not written (the retry brings the rest again), as one event in the log.
  const refused = RobotId.safeParse(robotId).success ? rejectionsIn(entries, failedAt) : null;
  if (refused) {
    const first = entries[refused.firstIndex]!.record;
    try {
      await executeRobotCommand(
        deps.log,
        robotId,
        {
          type: 'RecordRejections',
          // The first refused record names it: the same batch delivered again appends nothing.
          eventId: `rejected:${first.sequenceNumber}`,
          at: deps.now().toISOString(),
          count: refused.count,
          lastReason: refused.lastReason,
          lastTopic: refused.lastTopic,
        },
        { now: deps.now, ...(deps.sleep ? { sleep: deps.sleep } : {}) },
      );
    } catch (error) {
      // Retried from the first refused message: what follows it and was written is recognised, not written twice.
      failure = { sequenceNumber: first.sequenceNumber, error };
    }
  }
  if (hadEvents && RobotId.safeParse(robotId).success) await publishAcks(deps, robotId, ack.build(head));
  return { robotId, appended, writes, rejected: rejectionsIn(entries)?.count ?? 0, ...(failure ? { failure } : {}) };
}

/** A chunk that changes nothing stored (every event known, a stale sample, a resend already handled) is not written. */
function needsWrite(chunk: Chunk, head: RobotHead | null): boolean {
  if (chunk.events.length > 0 || chunk.telemetry !== undefined) return true;
  const mark = head?.outbox ?? null;
  return chunk.outbox !== null && (mark === null || mark.id !== chunk.outbox.id || mark.through !== chunk.outbox.through);
}

function eventIdsOf(messages: readonly RobotMessage[]): string[] {
  return messages.flatMap((message) =>
    message.kind === 'events' ? message.events.flatMap((entry) => (entry.valid ? [entry.event.eventId] : [])) : [],
  );
}

/** Gathers what the written chunks tell the robot; the outbox mark is the head's, which only written chunks moved. */
class AckBuilder {
  private readonly eventIds = new Set<string>();
  private readonly rejected: RejectedEvent[] = [];
  private resend = false;

  add(chunk: Chunk): void {
    chunk.ack.eventIds.forEach((eventId) => this.eventIds.add(eventId));
    this.rejected.push(...chunk.ack.rejected);
    this.resend ||= chunk.ack.resend;
  }

  reject(rejection: RejectedEvent): void {
    this.rejected.push(rejection);
  }

  /** One or more acknowledgements, each within MAX_ACK_ITEMS ids and rejections. */
  build(head: RobotHead | null): EventsAck[] {
    const ids = [...this.eventIds];
    const acks: EventsAck[] = [];
    for (let start = 0; start === 0 || start < Math.max(ids.length, this.rejected.length); start += MAX_ACK_ITEMS) {
      const eventIds = ids.slice(start, start + MAX_ACK_ITEMS);
      const rejected = this.rejected.slice(start, start + MAX_ACK_ITEMS);
      acks.push({
        ...(head?.outbox ? { outbox: head.outbox } : {}),
        ...(this.resend ? { resend: true } : {}),
        ...(eventIds.length > 0 ? { eventIds } : {}),
        ...(rejected.length > 0 ? { rejected } : {}),
      });
    }
    return acks;
  }
}

async function publishAcks(deps: IngestChannelDeps, robotId: string, acks: readonly EventsAck[]): Promise<void> {
  for (const ack of acks) {
    try {
      await deps.robots.send(robotId, ROBOT_REQUESTS.eventsAck, ack);
    } catch (error) {
      deps.onAckFailed?.(robotId, error);
      return;
    }
  }
}

async function mapWithConcurrency<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
