import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { RecordedEvent } from '../../schemas/index.js';
import { countInvalid, logger, metrics, MetricUnit } from '../platform/observability.js';
import type { DeadLetter, DeadLetters } from './dead-letters.js';
import type { EventLog, StreamRecordReader } from './ports.js';
import type { BatchSummary, GapFiller, ProjectionItem, ReadModelWriter } from './read-model-writer.js';
import { describeError } from '../../lib/describe-error.js';

/** Where the projector reads what the stream lost, and puts what it cannot read. */
export interface ProjectionSources {
  /** The event log, read (strongly consistent) for the events missing between the read model and the stream. */
  readonly log?: Pick<EventLog, 'readEvents'>;
  /** Where records that do not parse are set aside. */
  readonly deadLetters?: DeadLetters;
  /** For `setAsideAt`; default the clock. */
  readonly now?: () => Date;
}

/**
 * Projects a batch of event log stream records into the read models; it never projects past a missing event, and a
 * read model it leaves behind is what a replay of the log gives (`npm run rebuild-read-models`), without a rebuild.
 *
 * - A record that does not parse (a poison record) is set aside in `deadLetters` with the reason, and the batch
 *   carries on with the records after it.
 * - A robot whose next event is not the one after its last projected seq (the missing one was set aside, or the
 *   stream lost it) has the missing events read from the `log` and applied first, in order, in the same
 *   transaction. If the log cannot give them (it fails, or holds an item that does not parse either), that robot's
 *   events from the gap on are not applied: its first record from there is reported as the batch item failure, so
 *   the event source mapping delivers it again (and everything after it, which the idempotent writer skips where
 *   already applied). With infinite retries the shard waits there, and the IteratorAge alarm says so, until the
 *   log can be read (a projector that understands the item is deployed, or the item is repaired); a robot whose
 *   stream records expire meanwhile is filled from the log by its next event.
 * - A write that fails (the database is down) reports the batch's first record: the transaction left nothing behind
 *   and the whole batch comes again, as many times as it takes. Nothing is set aside for it.
 * - A poison record behind a reported failure is not set aside now: it is delivered again and set aside then, once.
 *   If `setAside` fails, the first poison record is reported instead, so it comes again rather than being lost.
 *
 * Without `log`, a gap is never filled (the robot waits); without `deadLetters`, a poison record is reported as the
 * batch item failure (retried).
 */
export function streamProjector(readRecord: StreamRecordReader) {
  return (event: DynamoDBStreamEvent, writer: ReadModelWriter, sources: ProjectionSources = {}) =>
    projectStream(event, writer, sources, readRecord);
}

async function projectStream(
  event: DynamoDBStreamEvent,
  writer: ReadModelWriter,
  sources: ProjectionSources,
  readRecord: StreamRecordReader,
): Promise<DynamoDBBatchResponse> {
  const now = sources.now ?? (() => new Date());
  const items: ProjectionItem[] = [];
  /** Position in the batch of each item. */
  const positions: number[] = [];
  const poison: { position: number; letter: DeadLetter }[] = [];
  event.Records.forEach((record, position) => {
    try {
      const item = readRecord(record);
      if (item.kind === 'ignored') return;
      items.push(item);
      positions.push(position);
    } catch (error) {
      const letter = deadLetterOf(record, error, now());
      reportPoison(letter);
      poison.push({ position, letter });
    }
  });

  let summary: BatchSummary;
  try {
    summary = await writer.applyBatch(items, sources.log ? { fillGap: fillGapsFrom(sources.log) } : {});
  } catch (error) {
    logger.error('Read model write failed; the batch will be retried', { error: error as Error, records: event.Records.length });
    const first = event.Records[0];
    return { batchItemFailures: first ? [{ itemIdentifier: sequenceNumberOf(first) }] : [] };
  }
  metrics.addMetric('ProjectedEvents', MetricUnit.Count, summary.applied);
  for (const gap of summary.filled) {
    logger.warn('Events missing from the stream; read them from the event log', { ...gap });
  }
  if (summary.filled.length > 0) {
    metrics.addMetric('EventsFilledFromLog', MetricUnit.Count, summary.filled.reduce((sum, gap) => sum + gap.events, 0));
  }

  // Where the stream must start again: at the first record of each robot that had to wait.
  let failedFrom = Infinity;
  for (const gap of summary.held) {
    const index = items.findIndex(
      (item) => item.kind === 'event' && item.recorded.event.robotId === gap.robotId && item.recorded.seq > gap.afterSeq,
    );
    // A held robot always has a record in the batch; were it not found, the whole batch comes again rather than
    // anything being skipped.
    failedFrom = Math.min(failedFrom, index >= 0 ? positions[index]! : 0);
    logger.error('Events missing from the stream and the event log cannot give them; the robot waits', { ...gap });
  }
  if (summary.held.length > 0) metrics.addMetric('RobotsWaitingOnGap', MetricUnit.Count, summary.held.length);

  const letters = poison.filter(({ position }) => position < failedFrom);
  if (letters.length > 0) {
    try {
      if (!sources.deadLetters) throw new Error('no dead-letter destination to set the record aside in');
      await sources.deadLetters.setAside(letters.map(({ letter }) => letter));
      metrics.addMetric('StreamRecordsSetAside', MetricUnit.Count, letters.length);
    } catch (error) {
      logger.error('Could not set poison records aside; they will come again', { error: error as Error, records: letters.length });
      failedFrom = Math.min(failedFrom, letters[0]!.position);
    }
  }
  const failed = event.Records[failedFrom];
  return { batchItemFailures: failed ? [{ itemIdentifier: sequenceNumberOf(failed) }] : [] };
}

/** Page size of the reads that fill a gap: the log's largest. */
const FILL_PAGE_SIZE = 1000;

/**
 * Reads a gap's events from the log, page by page. Whatever goes wrong (the log is unreachable or throttles, or an
 * item in the gap does not parse) makes the gap unavailable, with the reason: the robot waits and is retried.
 */
export function fillGapsFrom(log: Pick<EventLog, 'readEvents'>): GapFiller {
  return async ({ robotId, afterSeq, nextSeq }) => {
    const events: RecordedEvent[] = [];
    try {
      for (let after = afterSeq; after < nextSeq - 1; ) {
        const page = await log.readEvents(robotId, { afterSeq: after, limit: Math.min(FILL_PAGE_SIZE, nextSeq - 1 - after) });
        events.push(...page.events.filter((recorded) => recorded.seq > after && recorded.seq < nextSeq));
        const last = page.events.at(-1)?.seq;
        // A log with nothing more to give ends the read; the writer finds out what is still missing.
        if (last === undefined || last <= after) break;
        after = last;
      }
    } catch (error) {
      return { unavailable: `reading seq ${afterSeq + 1}–${nextSeq - 1} from the event log failed: ${describeError(error)}` };
    }
    return { events };
  };
}

function deadLetterOf(record: DynamoDBRecord, error: unknown, at: Date): DeadLetter {
  // The keys survive a malformed image: they say which robot's history is missing this record.
  const keys = record.dynamodb?.Keys;
  return {
    sequenceNumber: sequenceNumberOf(record),
    eventSourceArn: record.eventSourceARN,
    robotId: keys?.robotId?.S,
    seq: keys?.seq?.N === undefined ? undefined : Number(keys.seq.N),
    eventName: record.eventName,
    reason: describeError(error),
    image: record.dynamodb?.NewImage,
    setAsideAt: at.toISOString(),
  };
}

function reportPoison(letter: DeadLetter): void {
  countInvalid('StreamRecord');
  const { image: _image, ...where } = letter;
  logger.error('Invalid event log stream record', where);
}

/** Lambda treats an empty identifier as "the whole batch failed", which is the safe reading of a record without one. */
function sequenceNumberOf(record: DynamoDBRecord): string {
  return record.dynamodb?.SequenceNumber ?? '';
}
