import type { DynamoDBRecord } from 'aws-lambda';
import { countInvalid, logger } from '../../platform/observability.js';
import type { StreamItem, StreamRecordReader } from '../ports.js';

/** A readable stream record, where it stands in the batch and the sequence number a batch item failure names. */
export interface ReadStreamItem {
  readonly recordIndex: number;
  /** Empty for a record without one: reported as a failure, that makes Lambda retry the whole batch (the safe answer). */
  readonly sequenceNumber: string;
  readonly item: StreamItem;
}

/**
 * The batch's records as stream items. A malformed record is skipped, logged and counted: live pushes are best effort,
 * and the projector, which reads the same stream, sets poison records aside with their reason.
 */
export function readStreamItems(records: readonly DynamoDBRecord[], readRecord: StreamRecordReader): ReadStreamItem[] {
  return records.flatMap((record, recordIndex) => {
    const sequenceNumber = record.dynamodb?.SequenceNumber ?? '';
    try {
      return [{ recordIndex, sequenceNumber, item: readRecord(record) }];
    } catch (error) {
      logger.warn('Skipped a malformed event log stream record', {
        sequenceNumber,
        reason: error instanceof Error ? error.message.slice(0, 500) : String(error),
      });
      countInvalid('StreamRecord');
      return [];
    }
  });
}
