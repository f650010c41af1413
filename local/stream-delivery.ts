import type { DynamoDBRecord } from 'aws-lambda';
import { describeError } from '../lib/describe-error.js';

/**
 * How Lambda's event source mapping hands one batch of a shard to a function and what it does when the function
 * fails, reproduced for the local cloud, for any stream whose records have a sequence number (DynamoDB Streams,
 * Kinesis):
 *
 * - The function throws, or answers with a malformed `batchItemFailures` (an identifier that is empty or not in the
 *   batch): the whole batch failed.
 * - With ReportBatchItemFailures, a list of failed sequence numbers checkpoints before the lowest one; the records
 *   from there on are retried. An empty or missing list is a success. Without it the answer is ignored.
 * - With BisectBatchOnFunctionError, a batch that failed without progress is split in two and each half is handled
 *   on its own, in order. Splitting spends no retry (Lambda does not count it either) and is bounded by log2 of the
 *   batch size, so a poison record ends up alone.
 * - A batch is retried up to `maximumRetryAttempts` times (-1: until its oldest record expires, or forever when the
 *   policy has no `expired`); then it (or, bisected down, the one record) goes to `onFailure` and the shard moves on,
 *   so the records behind a poison record are still delivered.
 *
 * Records are identified by their sequence number as a string (`sequenceNumberOf`); a batch is in shard order, so
 * the lowest failed sequence number is the failed record that comes first in the batch.
 */

/** A batch response with `batchItemFailures` (DynamoDBBatchResponse, KinesisStreamBatchResponse). */
export interface BatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}

/** A Lambda function fed by a stream; `R` is the record type of its event (`{ Records: R[] }`). */
export type StreamHandler<R = DynamoDBRecord> = (event: { Records: R[] }) => Promise<BatchResponse | void | null | undefined>;

export type FailedRecordsHandler<R = DynamoDBRecord> = (records: readonly R[], error: unknown) => void | Promise<void>;

export type StreamPollerLog = (entry: {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly [detail: string]: unknown;
}) => void;

export interface DeliveryPolicy<R = DynamoDBRecord> {
  readonly bisectBatchOnFunctionError: boolean;
  readonly maximumRetryAttempts: number;
  readonly reportBatchItemFailures: boolean;
  /** Wait before the n-th retry (n from 1). */
  readonly retryDelay: (retry: number) => number;
  /**
   * Whether a record is too old to retry any more (it left the stream's retention, or passed the mapping's maximum
   * record age): a failed batch whose first (oldest) record has expired goes to `onFailure` instead of another retry.
   */
  readonly expired?: (record: R) => boolean;
}

export interface DeliveryContext<R = DynamoDBRecord> {
  readonly handler: StreamHandler<R>;
  readonly onFailure: FailedRecordsHandler<R>;
  readonly log: StreamPollerLog;
  /** Resolves after `ms`, or at once when the poller stops. */
  readonly sleep: (ms: number) => Promise<void>;
  readonly stopped: () => boolean;
  readonly shardId: string;
  /** The record's sequence number, which `batchItemFailures` names it by. */
  readonly sequenceNumberOf: (record: R) => string | undefined;
}

/** A DynamoDB stream record's sequence number. */
export const dynamoDBSequenceNumber = (record: DynamoDBRecord): string | undefined => record.dynamodb?.SequenceNumber;

type Attempt = { readonly ok: true } | { readonly ok: false; readonly error: unknown; readonly failedFrom: number };

/** Delivers the records in order, retrying, bisecting and setting aside as configured; returns early only on stop. */
export async function deliverBatch<R>(records: readonly R[], policy: DeliveryPolicy<R>, context: DeliveryContext<R>): Promise<void> {
  const pending: (readonly R[])[] = [records];
  while (pending.length > 0 && !context.stopped()) {
    let batch = pending.shift()!;
    let retries = 0;
    for (;;) {
      const attempt = await invoke(batch, policy, context);
      if (attempt.ok) break;
      batch = batch.slice(attempt.failedFrom);
      if (attempt.failedFrom === 0 && policy.bisectBatchOnFunctionError && batch.length > 1) {
        const middle = Math.ceil(batch.length / 2);
        pending.unshift(batch.slice(0, middle), batch.slice(middle));
        context.log({ level: 'warn', message: 'stream batch failed; bisecting', shardId: context.shardId, size: batch.length, error: describeError(attempt.error) });
        break;
      }
      if (policy.maximumRetryAttempts !== -1 && retries >= policy.maximumRetryAttempts) {
        await setAside(batch, attempt.error, context);
        break;
      }
      const oldest = batch[0];
      if (oldest !== undefined && policy.expired?.(oldest)) {
        await setAside(batch, attempt.error, context, 'stream records set aside: the oldest expired before they were handled');
        break;
      }
      retries += 1;
      context.log({
        level: 'warn',
        message: 'stream batch failed; retrying',
        shardId: context.shardId,
        size: batch.length,
        retry: retries,
        firstSequenceNumber: batch[0] === undefined ? undefined : context.sequenceNumberOf(batch[0]),
        error: describeError(attempt.error),
      });
      await context.sleep(policy.retryDelay(retries));
      if (context.stopped()) return;
    }
  }
}

async function invoke<R>(batch: readonly R[], policy: DeliveryPolicy<R>, context: DeliveryContext<R>): Promise<Attempt> {
  let response: Awaited<ReturnType<StreamHandler<R>>>;
  try {
    response = await context.handler({ Records: batch.map((record) => structuredClone(record)) });
  } catch (error) {
    return { ok: false, error, failedFrom: 0 };
  }
  if (!policy.reportBatchItemFailures) return { ok: true };
  const failures: unknown = response?.batchItemFailures;
  if (failures === undefined || failures === null || (Array.isArray(failures) && failures.length === 0)) return { ok: true };
  if (!Array.isArray(failures)) {
    return { ok: false, error: new Error(`handler answered batchItemFailures ${JSON.stringify(failures)}, not a list`), failedFrom: 0 };
  }
  const positions = failures.map((failure: { itemIdentifier?: unknown } | null | undefined) => {
    const identifier = failure?.itemIdentifier;
    return typeof identifier === 'string' && identifier !== ''
      ? batch.findIndex((record) => context.sequenceNumberOf(record) === identifier)
      : -1;
  });
  if (positions.includes(-1)) {
    const error = new Error(`handler answered batchItemFailures ${JSON.stringify(failures)}, not sequence numbers of the batch`);
    return { ok: false, error, failedFrom: 0 };
  }
  const failedFrom = Math.min(...positions);
  return { ok: false, error: new Error(`handler reported ${failures.length} failed record(s)`), failedFrom };
}

async function setAside<R>(
  batch: readonly R[],
  error: unknown,
  context: DeliveryContext<R>,
  message = 'stream records set aside after their last retry',
): Promise<void> {
  context.log({
    level: 'error',
    message,
    shardId: context.shardId,
    sequenceNumbers: batch.map((record) => context.sequenceNumberOf(record)),
    error: describeError(error),
  });
  try {
    await context.onFailure(batch, error);
  } catch (failure) {
    // The on-failure destination is best effort in Lambda too; the shard must not stall on it.
    context.log({ level: 'error', message: 'onFailure threw; records dropped', shardId: context.shardId, error: describeError(failure) });
  }
}

