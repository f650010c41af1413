import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { ZodError } from 'zod';
import { parseStreamRecord } from '../adapters/event-log-items.js';
import { countInvalid, logger, metrics, MetricUnit } from '../platform/observability.js';
import type { ProjectionItem, ReadModelWriter } from './read-model-writer.js';

/**
 * Projects a batch of event log stream records into the read models.
 *
 * Records are parsed in order up to the first one that does not parse (a poison record). Everything before it is
 * applied in one transaction and the poison record is reported as the batch item failure: Lambda retries from there,
 * so nothing behind it is applied past the gap, and after its bounded retries (bisecting on error) it sets the record
 * aside and the rest goes on. If the write fails, the batch's first record is reported: the transaction left nothing
 * behind and the whole batch comes again.
 */
export async function projectStream(event: DynamoDBStreamEvent, writer: ReadModelWriter): Promise<DynamoDBBatchResponse> {
  const items: ProjectionItem[] = [];
  let poison: DynamoDBRecord | null = null;
  for (const record of event.Records) {
    try {
      const item = parseStreamRecord(record);
      if (item.kind !== 'ignored') items.push(item);
    } catch (error) {
      reportPoison(record, error);
      poison = record;
      break;
    }
  }

  try {
    const summary = await writer.applyBatch(items);
    metrics.addMetric('ProjectedEvents', MetricUnit.Count, summary.applied);
    for (const gap of summary.gaps) {
      logger.warn('Events missing from the stream; projecting past them', { ...gap });
    }
  } catch (error) {
    logger.error('Read model write failed; the batch will be retried', { error: error as Error, records: event.Records.length });
    const first = event.Records[0];
    return { batchItemFailures: first ? [{ itemIdentifier: sequenceNumberOf(first) }] : [] };
  }
  return { batchItemFailures: poison ? [{ itemIdentifier: sequenceNumberOf(poison) }] : [] };
}

function reportPoison(record: DynamoDBRecord, error: unknown): void {
  countInvalid('StreamRecord');
  // The keys survive a malformed image: they say which robot's history is now waiting on this record.
  const keys = record.dynamodb?.Keys;
  logger.error('Invalid event log stream record', {
    robotId: keys?.robotId?.S,
    seq: keys?.seq?.N === undefined ? undefined : Number(keys.seq.N),
    sequenceNumber: record.dynamodb?.SequenceNumber,
    eventName: record.eventName,
    problems:
      error instanceof ZodError
        ? error.issues.map((issue) => ({ field: issue.path.join('.'), message: issue.message }))
        : [{ message: (error as Error).message }],
  });
}

/** Lambda treats an empty identifier as "the whole batch failed", which is the safe reading of a record without one. */
function sequenceNumberOf(record: DynamoDBRecord): string {
  return record.dynamodb?.SequenceNumber ?? '';
}
