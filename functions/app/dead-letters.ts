import { logger } from '../platform/observability.js';

/**
 * A stream record the projector could not parse, set aside with the reason. Nothing else is ever set aside: a
 * database that is down is retried, and events missing from the stream are read from the event log.
 */
export interface DeadLetter {
  /** The stream record's sequence number within its shard. */
  readonly sequenceNumber: string;
  /** The stream (and so the table) the record came from. */
  readonly eventSourceArn?: string | undefined;
  /** From the record's keys, which survive a malformed image: whose history is missing this record. */
  readonly robotId?: string | undefined;
  /** The event's seq, for an event item (0 is a head or a marker). */
  readonly seq?: number | undefined;
  readonly eventName?: string | undefined;
  /** Why it could not be projected: each field at fault and what is wrong with it, in one line. */
  readonly reason: string;
  /** The record's new image as the stream carried it (DynamoDB JSON), to inspect or repair. */
  readonly image?: unknown;
  readonly setAsideAt: string;
}

/**
 * Where the projector sets poison records aside: an SQS queue in AWS, a JSON-lines file under the state dir locally.
 * `setAside` resolves once the records are kept, or throws: then the projector reports them as failed and the
 * stream delivers them again, so a record is never dropped because its dead-letter destination was down.
 */
export interface DeadLetters {
  setAside(letters: readonly DeadLetter[]): Promise<void>;
}

/**
 * Dead letters kept in the function's log only (CloudWatch Logs in AWS, one error line per record with all of it);
 * the projector counts them in the `StreamRecordsSetAside` metric, which an alarm watches. The AWS default until
 * an SQS client is bundled (see functions/adapters/sqs-dead-letters.ts).
 */
export class LoggedDeadLetters implements DeadLetters {
  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    for (const letter of letters) logger.error('Stream record set aside', { deadLetter: letter });
  }
}
