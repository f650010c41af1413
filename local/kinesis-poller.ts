import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  type GetShardIteratorCommandInput,
  type KinesisClient,
  type Shard,
} from '@aws-sdk/client-kinesis';
import type { KinesisStreamRecord } from 'aws-lambda';
import { kinesisSequenceNumber, toLambdaKinesisRecord, type KinesisRecordSource } from './kinesis-records.js';
import {
  deliverBatch,
  type DeliveryPolicy,
  type FailedRecordsHandler,
  type StreamHandler,
  type StreamPollerLog,
} from './stream-delivery.js';
import type { StreamCheckpoints } from './stream-poller.js';
import { planShards, type DescribedShard, type ShardProgress, type StartingPosition } from './stream-shards.js';
import { describeError } from '../lib/describe-error.js';

export type KinesisHandler = StreamHandler<KinesisStreamRecord>;
export type FailedKinesisRecordsHandler = FailedRecordsHandler<KinesisStreamRecord>;
export type { StreamCheckpoints, StreamPollerLog };

export interface KinesisPollerOptions {
  readonly client: KinesisClient;
  /** arn:aws:kinesis:<region>:<account>:stream/<name>; requests name the stream (kinesalite wants StreamName). */
  readonly streamArn: string;
  readonly handler: KinesisHandler;
  /** Where to begin on the shards open at start (default TRIM_HORIZON); later shards are read from their start. */
  readonly startingPosition?: StartingPosition;
  /** Records per invocation, at most 10000 (the GetRecords limit). Default 100, as Lambda. */
  readonly batchSize?: number;
  readonly bisectBatchOnFunctionError?: boolean;
  /**
   * Retries of a failed batch before it goes to `onFailure`; -1 (the default, as Lambda's for Kinesis) retries until
   * the batch's oldest record expires (see `maximumRecordAgeSeconds`), or the poller stops.
   */
  readonly maximumRetryAttempts?: number;
  /**
   * A failed batch whose oldest record is older than this goes to `onFailure` instead of another retry; -1 (the
   * default) = when the record leaves the stream, after `retentionHours`.
   */
  readonly maximumRecordAgeSeconds?: number;
  /** The stream's retention: 24 h (kinesalite's and Kinesis's default). */
  readonly retentionHours?: number;
  /** Honour `{ batchItemFailures }` answers (FunctionResponseTypes: ReportBatchItemFailures). Default true. */
  readonly reportBatchItemFailures?: boolean;
  /** Receives what was set aside after the last retry (Lambda's on-failure destination). Default: logged only. */
  readonly onFailure?: FailedKinesisRecordsHandler;
  /** Pause after a GetRecords that found nothing new (a page with records is followed at once). Default 50 ms. */
  readonly pollIntervalMs?: number;
  /** Pause between ListShards calls that look for new shards. Default 1000 ms. */
  readonly shardDiscoveryIntervalMs?: number;
  /** Base of the exponential pause before a retry (capped at 2 s). Default 50 ms. */
  readonly retryDelayMs?: number;
  /** `awsRegion` of the records; default: the region in the stream ARN. */
  readonly awsRegion?: string;
  /** `invokeIdentityArn` of the records (the function's role in AWS). Default a local role ARN. */
  readonly invokeIdentityArn?: string;
  readonly log?: StreamPollerLog;
  /**
   * Where each shard was left: a shard with a saved position is read from right after it, and the position is saved
   * after every batch handled (FileStreamCheckpoints keeps them on disk, so a restart neither replays nor skips).
   */
  readonly checkpoints?: StreamCheckpoints;
}

export interface KinesisPoller {
  /**
   * Resolves once everything written before the call has been handled: the shards were listed again, and every
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
  if (entry.level === 'warn' || entry.level === 'error') process.stderr.write(`${JSON.stringify({ source: 'kinesis-poller', ...entry })}\n`);
};

/**
 * Lambda's Kinesis event source mapping for the local cloud: reads a Kinesis data stream (kinesalite locally) through
 * the Kinesis API and hands its records to a handler in Lambda's `KinesisStreamEvent` shape, with the mapping's
 * batching and failure handling (stream-delivery.ts: ReportBatchItemFailures with the record's sequence number,
 * BisectBatchOnFunctionError, MaximumRetryAttempts, an on-failure destination). The same design as the DynamoDB
 * poller (stream-poller.ts):
 *
 * - one reader per shard, one batch in flight per shard, records of a shard in order (so one partition key's records
 *   are handled in the order they were put); a page with records is followed by the next GetRecords at once, an
 *   empty one by `pollIntervalMs`;
 * - shards in lineage order: a child (split or merge) starts once its parent and adjacent parent are read to the end;
 * - positions kept in memory, or in `checkpoints` so a restarted poller carries on right after the last record
 *   handled; an expired iterator (kinesalite: 5 minutes) is renewed from there;
 * - a batch retried with -1 is held, retried, until its oldest record expires, which is what Lambda does.
 */
export function startKinesisPoller(options: KinesisPollerOptions): KinesisPoller {
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
  const awsRegion = options.awsRegion ?? settings.region;
  const invokeIdentityArn = options.invokeIdentityArn ?? `arn:aws:iam::${settings.account}:role/local-kinesis-consumer`;
  const maximumAgeMs =
    settings.maximumRecordAgeSeconds === -1 ? settings.retentionHours * 3_600_000 : settings.maximumRecordAgeSeconds * 1000;
  const policy: DeliveryPolicy<KinesisStreamRecord> = {
    bisectBatchOnFunctionError: options.bisectBatchOnFunctionError ?? false,
    maximumRetryAttempts: settings.maximumRetryAttempts,
    reportBatchItemFailures: options.reportBatchItemFailures ?? true,
    retryDelay: (retry) => Math.min(2000, settings.retryDelayMs * 2 ** (retry - 1)),
    expired: (record) => Date.now() - record.kinesis.approximateArrivalTimestamp * 1000 > maximumAgeMs,
  };
  const onFailure = options.onFailure ?? (() => {});

  const readers = new Map<string, ShardReader>();
  const loops = new Set<Promise<void>>();
  const waiters = new Set<IdleWaiter>();
  const sleepers = new Set<() => void>();
  let stopped = false;
  /** Grows with every idle() call; a shard or listing is "fresh" for a waiter when it is from its epoch on. */
  let epoch = 0;
  let listedEpoch = -1;
  let firstLook = true;
  /** Listed shards not started yet because a parent is still being read. */
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
      .catch((error: unknown) => log({ level: 'error', message: 'kinesis poller loop crashed', error: describeError(error) }))
      .finally(() => loops.delete(tracked));
    loops.add(tracked);
  };

  const checkIdle = () => {
    for (const waiter of waiters) {
      const fresh =
        listedEpoch >= waiter.epoch &&
        waitingForParent === 0 &&
        [...readers.values()].every((reader) => reader.progress === 'drained' || reader.caughtUpEpoch >= waiter.epoch);
      if (fresh) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  };

  async function listShards(): Promise<Shard[]> {
    const shards: Shard[] = [];
    let nextToken: string | undefined;
    do {
      // ListShards takes either the stream or a continuation token, never both.
      const page = await options.client.send(
        new ListShardsCommand(nextToken ? { NextToken: nextToken } : { StreamName: settings.streamName }),
      );
      shards.push(...(page.Shards ?? []));
      nextToken = page.NextToken;
    } while (nextToken);
    return shards;
  }

  async function discoverShards(): Promise<void> {
    const discoveryEpoch = epoch;
    const shards = await listShards();
    const described: DescribedShard[] = shards.flatMap((shard) =>
      shard.ShardId
        ? [{ shardId: shard.ShardId, parentShardId: shard.ParentShardId, closed: shard.SequenceNumberRange?.EndingSequenceNumber !== undefined }]
        : [],
    );
    const progress = new Map([...readers.values()].map((reader) => [reader.shardId, reader.progress]));
    const plan = planShards(described, progress, settings.startingPosition, firstLook);
    firstLook = false;
    // A merged shard has a second parent (planShards knows only the first): it waits for that one as well.
    const listed = new Set(described.map((shard) => shard.shardId));
    const adjacentParentOf = new Map(shards.map((shard) => [shard.ShardId, shard.AdjacentParentShardId]));
    const adjacentParentRead = (shardId: string) => {
      const parent = adjacentParentOf.get(shardId);
      return !parent || !listed.has(parent) || progress.get(parent) === 'drained';
    };
    for (const shardId of plan.skip) readers.set(shardId, { shardId, progress: 'drained', caughtUpEpoch: -1 });
    for (const { shardId, iteratorType } of plan.start) {
      if (iteratorType === 'TRIM_HORIZON' && !adjacentParentRead(shardId)) continue;
      const reader: ShardReader = { shardId, progress: 'reading', caughtUpEpoch: -1 };
      readers.set(shardId, reader);
      log({ level: 'info', message: 'reading shard', shardId, iteratorType });
      run(readShard(reader, iteratorType));
    }
    // Shards aged out of the stream (retention) are gone from the listing: forget the ones already read.
    for (const reader of readers.values()) {
      if (reader.progress === 'drained' && !listed.has(reader.shardId)) readers.delete(reader.shardId);
    }
    waitingForParent = described.filter((shard) => !readers.has(shard.shardId)).length;
    listedEpoch = discoveryEpoch;
    checkIdle();
  }

  async function discoveryLoop(): Promise<void> {
    let failures = 0;
    while (!stopped) {
      try {
        await discoverShards();
        failures = 0;
        // An idle() call that came in during the listing wants one made after it: go again at once.
        if (listedEpoch === epoch) await sleep(settings.shardDiscoveryIntervalMs);
      } catch (error) {
        failures += 1;
        log({ level: 'warn', message: 'ListShards failed; retrying', streamArn: options.streamArn, error: describeError(error) });
        await sleep(Math.min(5000, settings.shardDiscoveryIntervalMs * failures));
      }
    }
  }

  async function readShard(reader: ShardReader, iteratorType: StartingPosition): Promise<void> {
    const { shardId } = reader;
    const source: KinesisRecordSource = { eventSourceARN: options.streamArn, awsRegion, invokeIdentityArn, shardId };
    /** Where a new iterator starts: the starting position, then right after the last record handled. */
    const saved = options.checkpoints?.get(shardId);
    let resumeFrom: Pick<GetShardIteratorCommandInput, 'ShardIteratorType' | 'StartingSequenceNumber'> = saved
      ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: saved }
      : { ShardIteratorType: iteratorType };
    let iterator: string | undefined;
    let failures = 0;
    while (!stopped) {
      try {
        if (!iterator) {
          const fresh = await options.client.send(
            new GetShardIteratorCommand({ StreamName: settings.streamName, ShardId: shardId, ...resumeFrom }),
          );
          iterator = fresh.ShardIterator;
          if (!iterator) break;
        }
        const requestEpoch = epoch;
        const page = await options.client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: settings.batchSize }));
        failures = 0;
        const records = (page.Records ?? []).map((record) => toLambdaKinesisRecord(record, source));
        if (records.length > 0) {
          await deliverBatch(records, policy, {
            handler: options.handler,
            onFailure,
            log,
            sleep,
            stopped: () => stopped,
            shardId,
            sequenceNumberOf: kinesisSequenceNumber,
          });
          if (stopped) break;
          const last = records.at(-1)?.kinesis.sequenceNumber;
          resumeFrom = { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: last };
          if (last) await options.checkpoints?.set(shardId, last);
        }
        iterator = page.NextShardIterator;
        if (!iterator) break;
        if (records.length === 0) {
          reader.caughtUpEpoch = requestEpoch;
          checkIdle();
          // An idle() call that came in during the request wants a poll issued after it: go again at once.
          if (requestEpoch === epoch) await sleep(settings.pollIntervalMs);
        }
      } catch (error) {
        const name = error instanceof Error ? error.name : '';
        if (name === 'ResourceNotFoundException') {
          log({ level: 'warn', message: 'shard or stream no longer exists; leaving it', shardId });
          break;
        }
        failures += 1;
        // An iterator lasts 5 minutes: a batch retried for longer outlives it. Pick up after the last record handled.
        if (name === 'ExpiredIteratorException') iterator = undefined;
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
      if (stopped) return Promise.reject(new Error('kinesis poller is stopped'));
      epoch += 1;
      const waiterEpoch = epoch;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const shards = [...readers.values()].map((r) => `${r.shardId}: ${r.progress}, caught up at epoch ${r.caughtUpEpoch}`);
          reject(new Error(`kinesis poller not idle after ${timeoutMs} ms (epoch ${waiterEpoch}; ${shards.join('; ') || 'no shards'})`));
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
        // List and poll now rather than after the current pauses.
        wakeAll();
      });
    },
    async stop() {
      stopped = true;
      wakeAll();
      while (loops.size > 0) await Promise.all([...loops]);
      for (const waiter of waiters) waiter.reject(new Error('kinesis poller stopped before it was idle'));
      waiters.clear();
    },
  };
}

function validate(options: KinesisPollerOptions) {
  const integer = (field: string, value: number, min: number, max: number) => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`startKinesisPoller: ${field} must be an integer from ${min} to ${max}, got ${value}`);
    }
    return value;
  };
  // arn:aws:kinesis:<region>:<account>:stream/<name>
  const arn = /^arn:aws[a-z-]*:kinesis:([^:]*):([^:]*):stream\/([a-zA-Z0-9_.-]{1,128})$/.exec(options.streamArn ?? '');
  if (!arn) throw new Error(`startKinesisPoller: streamArn must be a Kinesis stream ARN, got ${JSON.stringify(options.streamArn)}`);
  const [, region = '', account = '', streamName = ''] = arn;
  const startingPosition = options.startingPosition ?? 'TRIM_HORIZON';
  if (startingPosition !== 'TRIM_HORIZON' && startingPosition !== 'LATEST') {
    throw new Error(`startKinesisPoller: startingPosition must be TRIM_HORIZON or LATEST, got ${String(startingPosition)}`);
  }
  const maximumRecordAgeSeconds = options.maximumRecordAgeSeconds ?? -1;
  if (maximumRecordAgeSeconds !== -1) integer('maximumRecordAgeSeconds', maximumRecordAgeSeconds, 60, 604_800);
  return {
    region: region || 'local',
    account: account || '000000000000',
    streamName,
    startingPosition,
    batchSize: integer('batchSize', options.batchSize ?? 100, 1, 10_000),
    maximumRetryAttempts: integer('maximumRetryAttempts', options.maximumRetryAttempts ?? -1, -1, 10_000),
    maximumRecordAgeSeconds,
    retentionHours: integer('retentionHours', options.retentionHours ?? 24, 1, 8760),
    pollIntervalMs: integer('pollIntervalMs', options.pollIntervalMs ?? 50, 0, 60_000),
    shardDiscoveryIntervalMs: integer('shardDiscoveryIntervalMs', options.shardDiscoveryIntervalMs ?? 1000, 1, 300_000),
    retryDelayMs: integer('retryDelayMs', options.retryDelayMs ?? 50, 0, 60_000),
  };
}

