import {
  DescribeStreamCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type DynamoDBStreamsClient,
  type GetShardIteratorCommandInput,
  type Shard,
} from '@aws-sdk/client-dynamodb-streams';
import {
  deliverBatch,
  dynamoDBSequenceNumber,
  type DeliveryPolicy,
  type FailedRecordsHandler,
  type StreamHandler,
  type StreamPollerLog,
} from './stream-delivery.js';
import { matchesAnyFilter, type FilterPattern } from '../schemas/stream-filters.js';
import { toLambdaRecord } from './stream-records.js';
import { planShards, type DescribedShard, type ShardProgress, type StartingPosition } from './stream-shards.js';
import { describeError } from '../lib/describe-error.js';
import type { DynamoDBRecord } from 'aws-lambda';

export type { FailedRecordsHandler, StreamHandler, StreamPollerLog } from './stream-delivery.js';

export interface StreamPollerOptions {
  readonly client: DynamoDBStreamsClient;
  readonly streamArn: string;
  readonly handler: StreamHandler;
  /** Where to begin on the shards open at start (default TRIM_HORIZON); later shards are read from their start. */
  readonly startingPosition?: StartingPosition;
  /** Records per invocation, at most 1000 (the GetRecords limit). Default 100, as Lambda. */
  readonly batchSize?: number;
  readonly bisectBatchOnFunctionError?: boolean;
  /** Retries of a failed batch before it is set aside; -1 retries until stopped. Default 3. */
  readonly maximumRetryAttempts?: number;
  /** Honour `{ batchItemFailures }` answers (FunctionResponseTypes: ReportBatchItemFailures). Default true. */
  readonly reportBatchItemFailures?: boolean;
  /** Receives what was set aside after the last retry (Lambda's on-failure destination). Default: logged only. */
  readonly onFailure?: FailedRecordsHandler;
  /** Pause after a GetRecords that found nothing new. Default 50 ms. */
  readonly pollIntervalMs?: number;
  /** Pause between DescribeStream calls that look for new shards. Default 1000 ms. */
  readonly shardDiscoveryIntervalMs?: number;
  /** Base of the exponential pause before a retry (capped at 2 s). Default 50 ms. */
  readonly retryDelayMs?: number;
  /** `awsRegion` of the records; default: the region in the stream ARN. */
  readonly awsRegion?: string;
  readonly log?: StreamPollerLog;
  /**
   * Where each shard was left: a shard with a saved position is read from right after it, and the position is saved
   * after every batch handled (the local cloud keeps them on disk, so a restart neither replays nor skips records).
   */
  readonly checkpoints?: StreamCheckpoints;
  /** Lambda's event filtering: only records matching one of the patterns are handed over (the rest are skipped). */
  readonly filters?: readonly FilterPattern[];
  /**
   * Lambda's MaximumBatchingWindowInSeconds, in ms: a batch is handed over once it is full (`batchSize` records that
   * passed the filters), once this long has passed since its first record was read, or when the shard ends, whichever
   * comes first. Default 0: each read's records at once.
   */
  readonly maximumBatchingWindowMs?: number;
}

/** The last sequence number handled per shard (Lambda keeps this in the event source mapping). */
export interface StreamCheckpoints {
  get(shardId: string): string | undefined;
  set(shardId: string, sequenceNumber: string): Promise<void>;
}

export interface StreamPoller {
  /**
   * Resolves once everything written before the call has been handled: the stream was described again, and every
   * shard has since answered a GetRecords with nothing new (or was read to its end), with no batch in flight.
   * Rejects after `timeoutMs` (default 15 s) or when the poller stops first.
   */
  idle(options?: { timeoutMs?: number }): Promise<void>;
  /** Stops polling, lets a batch in flight finish (no more retries), and resolves when every reader has ended. */
  stop(): Promise<void>;
}

interface ShardReader {
  readonly shardId: string;
  progress: ShardProgress;
  /** The idle epoch of the last GetRecords that found nothing new; -1 before the first. */
  caughtUpEpoch: number;
}

interface IdleWaiter {
  readonly epoch: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

const DEFAULT_LOG: StreamPollerLog = (entry) => {
  if (entry.level === 'warn' || entry.level === 'error') process.stderr.write(`${JSON.stringify({ source: 'stream-poller', ...entry })}\n`);
};

/**
 * Reads a DynamoDB table's stream through the Streams API and hands its records to a handler in Lambda's event
 * shape, with the event source mapping's batching and failure handling (stream-delivery.ts): what Lambda does in
 * AWS, for the local cloud and the tests.
 *
 * One reader per shard, shards in lineage order (stream-shards.ts), one batch in flight per shard, records of a
 * shard in order; positions are kept in memory, or in `checkpoints` so a restarted poller carries on where it was.
 *
 * DynamoDB Local (2026-01-16 jar), as observed:
 * - One open shard per table. Its code rolls shards over every 4 hours, expires iterators after 15 minutes and keeps
 *   records 24 hours, like AWS. GetRecords takes a Limit of at most 1000.
 * - GetRecords on an open shard with nothing new answers at once with no records and a fresh iterator; it never
 *   waits, so the poller paces itself with `pollIntervalMs`. An iterator may be used more than once.
 * - An empty map attribute comes out of GetRecords as `{}` instead of `{"M":{}}` (GetItem is right): the record
 *   converter puts the `M` back, or `unmarshall` of, say, a robot state without alerts would fail.
 * - ApproximateCreationDateTime is rounded down to the minute (AWS rounds to the second): do not order by it.
 * - Sequence numbers are 21-digit zero-padded decimals here, variable-length in AWS: compare them as numbers.
 * - Deleting the table closes its shard (it gets an ending sequence number) and the stream turns DISABLED; the
 *   last GetRecords returns no records and no next iterator, so the reader ends like at any closed shard.
 * - A shard rollover cannot be triggered from outside, so the lineage logic is tested as a pure function.
 */
export function startStreamPoller(options: StreamPollerOptions): StreamPoller {
  const settings = validate(options);
  const givenLog = options.log ?? DEFAULT_LOG;
  // A log callback that throws must not take a shard reader down with it.
  const log: StreamPollerLog = (entry) => {
    try {
      givenLog(entry);
    } catch {
      // Nothing better to do with a broken logger than to carry on.
    }
  };
  const source = { eventSourceARN: options.streamArn, awsRegion: options.awsRegion ?? regionOf(options.streamArn) };
  const policy: DeliveryPolicy = {
    bisectBatchOnFunctionError: options.bisectBatchOnFunctionError ?? false,
    maximumRetryAttempts: settings.maximumRetryAttempts,
    reportBatchItemFailures: options.reportBatchItemFailures ?? true,
    retryDelay: (retry) => Math.min(2000, settings.retryDelayMs * 2 ** (retry - 1)),
  };
  const onFailure = options.onFailure ?? (() => {});

  const readers = new Map<string, ShardReader>();
  const loops = new Set<Promise<void>>();
  const waiters = new Set<IdleWaiter>();
  const sleepers = new Set<() => void>();
  let stopped = false;
  /** Grows with every idle() call; a shard or description is "fresh" for a waiter when it is from its epoch on. */
  let epoch = 0;
  let describedEpoch = -1;
  let firstLook = true;
  /** Described shards not started yet because their parent is still being read. */
  let waitingForParent = 0;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped) return resolve();
      const wake = () => {
        clearTimeout(timer);
        sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleepers.add(wake);
    });
  const wakeAll = () => [...sleepers].forEach((wake) => wake());

  const run = (loop: Promise<void>) => {
    const tracked: Promise<void> = loop
      .catch((error: unknown) => log({ level: 'error', message: 'stream poller loop crashed', error: describeError(error) }))
      .finally(() => loops.delete(tracked));
    loops.add(tracked);
  };

  const checkIdle = () => {
    for (const waiter of waiters) {
      const fresh =
        describedEpoch >= waiter.epoch &&
        waitingForParent === 0 &&
        [...readers.values()].every((reader) => reader.progress === 'drained' || reader.caughtUpEpoch >= waiter.epoch);
      if (fresh) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  };

  async function discoverShards(): Promise<void> {
    const discoveryEpoch = epoch;
    const shards: Shard[] = [];
    let status: string | undefined;
    let exclusiveStartShardId: string | undefined;
    do {
      const { StreamDescription } = await options.client.send(
        new DescribeStreamCommand({ StreamArn: options.streamArn, ExclusiveStartShardId: exclusiveStartShardId }),
      );
      shards.push(...(StreamDescription?.Shards ?? []));
      status = StreamDescription?.StreamStatus;
      exclusiveStartShardId = StreamDescription?.LastEvaluatedShardId;
    } while (exclusiveStartShardId);

    const described: DescribedShard[] = shards.flatMap((shard) =>
      shard.ShardId
        ? [{ shardId: shard.ShardId, parentShardId: shard.ParentShardId, closed: shard.SequenceNumberRange?.EndingSequenceNumber !== undefined }]
        : [],
    );
    const progress = new Map([...readers.values()].map((reader) => [reader.shardId, reader.progress]));
    const plan = planShards(described, progress, settings.startingPosition, firstLook);
    firstLook = false;
    for (const shardId of plan.skip) readers.set(shardId, { shardId, progress: 'drained', caughtUpEpoch: -1 });
    for (const { shardId, iteratorType } of plan.start) {
      const reader: ShardReader = { shardId, progress: 'reading', caughtUpEpoch: -1 };
      readers.set(shardId, reader);
      log({ level: 'info', message: 'reading shard', shardId, iteratorType, streamStatus: status });
      run(readShard(reader, iteratorType));
    }
    // Shards aged out of the stream (24 h) are gone from the description: forget the ones already read.
    const stillDescribed = new Set(described.map((shard) => shard.shardId));
    for (const reader of readers.values()) {
      if (reader.progress === 'drained' && !stillDescribed.has(reader.shardId)) readers.delete(reader.shardId);
    }
    waitingForParent = described.filter((shard) => !readers.has(shard.shardId)).length;
    describedEpoch = discoveryEpoch;
    checkIdle();
  }

  async function discoveryLoop(): Promise<void> {
    let failures = 0;
    while (!stopped) {
      try {
        await discoverShards();
        failures = 0;
        // An idle() call that came in during the description wants one made after it: go again at once.
        if (describedEpoch === epoch) await sleep(settings.shardDiscoveryIntervalMs);
      } catch (error) {
        failures += 1;
        log({ level: 'warn', message: 'DescribeStream failed; retrying', streamArn: options.streamArn, error: describeError(error) });
        await sleep(Math.min(5000, settings.shardDiscoveryIntervalMs * failures));
      }
    }
  }

  async function readShard(reader: ShardReader, iteratorType: StartingPosition): Promise<void> {
    const { shardId } = reader;
    /** Where a new iterator starts: the starting position, then right after the last record handled. */
    const saved = options.checkpoints?.get(shardId);
    let resumeFrom: Pick<GetShardIteratorCommandInput, 'ShardIteratorType' | 'SequenceNumber'> = saved
      ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: saved }
      : { ShardIteratorType: iteratorType };
    let iterator: string | undefined;
    let failures = 0;
    /**
     * The batch being gathered (batching window): records that passed the filters, when its first one was read, and
     * the last sequence number read behind it (filtered out or not), checkpointed once the batch is handled.
     * INVARIANT: only records after `resumeFrom` are in it, so a fresh iterator (which starts at `resumeFrom`) empties it.
     */
    let batch: DynamoDBRecord[] = [];
    let batchOpenedAt = 0;
    let lastRead: string | undefined;
    while (!stopped) {
      try {
        if (!iterator) {
          batch = [];
          lastRead = undefined;
          const fresh = await options.client.send(
            new GetShardIteratorCommand({ StreamArn: options.streamArn, ShardId: shardId, ...resumeFrom }),
          );
          iterator = fresh.ShardIterator;
          if (!iterator) break;
        }
        const requestEpoch = epoch;
        // Never more than fits the batch: the filters only ever take records away.
        const page = await options.client.send(
          new GetRecordsCommand({ ShardIterator: iterator, Limit: settings.batchSize - batch.length }),
        );
        failures = 0;
        const read = (page.Records ?? []).map((record) => toLambdaRecord(record, source));
        const records = options.filters ? read.filter((record) => matchesAnyFilter(record, options.filters ?? [])) : read;
        if (records.length > 0 && batch.length === 0) batchOpenedAt = Date.now();
        batch.push(...records);
        lastRead = read.at(-1)?.dynamodb?.SequenceNumber ?? lastRead;
        iterator = page.NextShardIterator;
        const due = batchDue({
          size: batch.length,
          batchSize: settings.batchSize,
          waitedMs: Date.now() - batchOpenedAt,
          windowMs: settings.maximumBatchingWindowMs,
          shardEnded: !iterator,
        });
        if (due && batch.length > 0) {
          await deliverBatch(batch, policy, {
            handler: options.handler,
            onFailure,
            log,
            sleep,
            stopped: () => stopped,
            shardId,
            sequenceNumberOf: dynamoDBSequenceNumber,
          });
          batch = [];
          if (stopped) break;
        }
        if (batch.length === 0 && lastRead) {
          resumeFrom = { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: lastRead };
          await options.checkpoints?.set(shardId, lastRead);
          lastRead = undefined;
        }
        if (!iterator) break;
        if (read.length === 0) {
          if (batch.length === 0) {
            reader.caughtUpEpoch = requestEpoch;
            checkIdle();
            // An idle() call that came in during the request wants a poll issued after it: go again at once.
            if (requestEpoch === epoch) await sleep(settings.pollIntervalMs);
          } else {
            // A batch is open and nothing new came: look again, but no later than its window closes.
            await sleep(Math.max(0, Math.min(settings.pollIntervalMs, settings.maximumBatchingWindowMs - (Date.now() - batchOpenedAt))));
          }
        }
      } catch (error) {
        const name = error instanceof Error ? error.name : '';
        if (name === 'ResourceNotFoundException') {
          log({ level: 'warn', message: 'shard no longer exists; leaving it', shardId });
          break;
        }
        failures += 1;
        if (name === 'ExpiredIteratorException') {
          // A batch took longer than the iterator's 15 minutes: pick up after the last record handled.
          iterator = undefined;
        } else if (name === 'TrimmedDataAccessException') {
          // Records aged out (24 h retention) before they were read: carry on from the oldest still there.
          iterator = undefined;
          resumeFrom = { ShardIteratorType: 'TRIM_HORIZON' };
        }
        log({ level: 'warn', message: 'reading the stream failed; retrying', shardId, error: describeError(error), resumeFrom });
        await sleep(Math.min(5000, 100 * 2 ** (failures - 1)));
      }
    }
    if (stopped) return;
    reader.progress = 'drained';
    log({ level: 'info', message: 'shard read to its end', shardId });
    // Its children may start now; look for them without waiting for the next round.
    wakeAll();
    checkIdle();
  }

  run(discoveryLoop());

  return {
    idle({ timeoutMs = 15_000 } = {}) {
      if (stopped) return Promise.reject(new Error('stream poller is stopped'));
      epoch += 1;
      const waiterEpoch = epoch;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const shards = [...readers.values()].map((r) => `${r.shardId}: ${r.progress}, caught up at epoch ${r.caughtUpEpoch}`);
          reject(new Error(`stream poller not idle after ${timeoutMs} ms (epoch ${waiterEpoch}; ${shards.join('; ') || 'no shards'})`));
        }, timeoutMs);
        const waiter: IdleWaiter = {
          epoch: waiterEpoch,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        };
        waiters.add(waiter);
        // Describe and poll now rather than after the current pauses.
        wakeAll();
      });
    },
    async stop() {
      stopped = true;
      wakeAll();
      while (loops.size > 0) await Promise.all([...loops]);
      for (const waiter of waiters) waiter.reject(new Error('stream poller stopped before it was idle'));
      waiters.clear();
    },
  };
}

function validate(options: StreamPollerOptions) {
  const integer = (field: string, value: number, min: number, max: number) => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`startStreamPoller: ${field} must be an integer from ${min} to ${max}, got ${value}`);
    }
    return value;
  };
  if (!options.streamArn) throw new Error('startStreamPoller: streamArn is required');
  const startingPosition = options.startingPosition ?? 'TRIM_HORIZON';
  if (startingPosition !== 'TRIM_HORIZON' && startingPosition !== 'LATEST') {
    throw new Error(`startStreamPoller: startingPosition must be TRIM_HORIZON or LATEST, got ${String(startingPosition)}`);
  }
  return {
    startingPosition,
    batchSize: integer('batchSize', options.batchSize ?? 100, 1, 1000),
    maximumRetryAttempts: integer('maximumRetryAttempts', options.maximumRetryAttempts ?? 3, -1, 10_000),
    pollIntervalMs: integer('pollIntervalMs', options.pollIntervalMs ?? 50, 0, 60_000),
    shardDiscoveryIntervalMs: integer('shardDiscoveryIntervalMs', options.shardDiscoveryIntervalMs ?? 1000, 1, 300_000),
    retryDelayMs: integer('retryDelayMs', options.retryDelayMs ?? 50, 0, 60_000),
    // Lambda allows up to 300 s.
    maximumBatchingWindowMs: integer('maximumBatchingWindowMs', options.maximumBatchingWindowMs ?? 0, 0, 300_000),
  };
}

/**
 * Whether the batch being gathered is handed over now: it is full, its window has passed since its first record, or
 * the shard ended (no record comes after). With no window, at once.
 */
export function batchDue(batch: { size: number; batchSize: number; waitedMs: number; windowMs: number; shardEnded: boolean }): boolean {
  return batch.size >= batch.batchSize || batch.waitedMs >= batch.windowMs || batch.shardEnded;
}

/** arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label> */
function regionOf(streamArn: string): string {
  return streamArn.split(':')[3] || 'local';
}

