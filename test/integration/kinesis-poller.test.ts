import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startKinesisPoller, type KinesisPoller, type KinesisPollerOptions } from '../../local/kinesis-poller.js';
import { compareSequenceNumbers, kinesisRecordJson } from '../../local/kinesis-records.js';
import { startKinesisStandIn, type KinesisStandIn } from '../../local/kinesis-stand-in.js';
import { FileStreamCheckpoints } from '../../local/stream-checkpoints.js';

/**
 * Lambda's Kinesis event source mapping against a real kinesalite stream: order per partition key over many keys
 * and shards, ReportBatchItemFailures, bisection down to a poison record, checkpoints across a restart, and a
 * handler that fails for a while with retries until the records expire.
 */

interface Item {
  readonly key: string;
  readonly n: number;
}

let dir: string;
const streams: KinesisStandIn[] = [];
const pollers: KinesisPoller[] = [];
let streamCount = 0;

/** A fresh stream in its own kinesalite. */
async function freshStream(shardCount = 4, directory = join(dir, `stream-${++streamCount}`)): Promise<KinesisStandIn> {
  const stream = await startKinesisStandIn({ directory, streamName: 'ingest', shardCount, region: 'eu-west-1' });
  streams.push(stream);
  return stream;
}

function poll(stream: KinesisStandIn, options: Partial<KinesisPollerOptions> & Pick<KinesisPollerOptions, 'handler'>): KinesisPoller {
  const poller = startKinesisPoller({
    client: stream.client,
    streamArn: stream.streamArn,
    pollIntervalMs: 10,
    retryDelayMs: 5,
    log: () => undefined,
    ...options,
  });
  pollers.push(poller);
  return poller;
}

/** Puts `perKey` records on each key: keys in parallel, each key's records one after another. */
async function putItems(stream: KinesisStandIn, keys: readonly string[], perKey: number, from = 0): Promise<void> {
  await Promise.all(keys.map(async (key) => {
    for (let n = from; n < from + perKey; n++) await stream.put(key, { key, n });
  }));
}

const itemOf = (record: KinesisStreamRecord) => kinesisRecordJson(record) as Item;
const label = (record: KinesisStreamRecord) => `${itemOf(record).key}#${itemOf(record).n}`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kinesis-poller-'));
});

afterEach(async () => {
  for (const poller of pollers.splice(0)) await poller.stop();
  for (const stream of streams.splice(0)) await stream.stop();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Kinesis poller', () => {
  it('hands every record over once, in Lambda’s shape, each partition key in order, across many keys and shards', async () => {
    const stream = await freshStream(4);
    const keys = Array.from({ length: 32 }, (_, i) => `lekiwi-LK${String(i).padStart(4, '0')}`);
    const seen: KinesisStreamRecord[] = [];
    const batchSizes: number[] = [];
    const poller = poll(stream, {
      batchSize: 50,
      pollIntervalMs: 50,
      handler: async (event: KinesisStreamEvent) => {
        batchSizes.push(event.Records.length);
        seen.push(...event.Records);
      },
    });
    // In two rounds, the second while the poller is reading the first.
    await putItems(stream, keys, 6);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await putItems(stream, keys, 6, 6);
    await poller.idle();

    expect(seen).toHaveLength(384);
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(50);
    for (const key of keys) {
      expect(seen.filter((record) => record.kinesis.partitionKey === key).map((record) => itemOf(record).n)).toEqual([...Array(12).keys()]);
    }
    const shards = new Set(seen.map((record) => record.eventID.split(':')[0]));
    expect(shards.size).toBe(4);
    // Within a shard, sequence numbers only grow (compared as the big decimals they are).
    for (const shard of shards) {
      const numbers = seen.filter((record) => record.eventID.startsWith(`${shard}:`)).map((record) => record.kinesis.sequenceNumber);
      for (let i = 1; i < numbers.length; i++) expect(compareSequenceNumbers(numbers[i]!, numbers[i - 1]!)).toBe(1);
    }
    const first = seen[0]!;
    expect(first).toEqual({
      kinesis: {
        kinesisSchemaVersion: '1.0',
        partitionKey: expect.stringMatching(/^lekiwi-LK/),
        sequenceNumber: expect.stringMatching(/^\d{40,}$/),
        data: expect.any(String),
        approximateArrivalTimestamp: expect.any(Number),
      },
      eventSource: 'aws:kinesis',
      eventVersion: '1.0',
      eventID: `${first.eventID.split(':')[0]}:${first.kinesis.sequenceNumber}`,
      eventName: 'aws:kinesis:record',
      invokeIdentityArn: 'arn:aws:iam::000000000000:role/local-kinesis-consumer',
      awsRegion: 'eu-west-1',
      eventSourceARN: stream.streamArn,
    });
    expect(first.eventID).toMatch(/^shardId-\d{12}:\d+$/);
    expect(Math.abs(first.kinesis.approximateArrivalTimestamp * 1000 - Date.now())).toBeLessThan(60_000);
  });

  it('with a reported item failure, retries from the failed record on', async () => {
    const stream = await freshStream(1);
    await putItems(stream, ['robot'], 10);
    const calls: number[][] = [];
    let failed = false;
    const poller = poll(stream, {
      handler: async (event): Promise<KinesisStreamBatchResponse> => {
        calls.push(event.Records.map((record) => itemOf(record).n));
        const fourth = event.Records.find((record) => itemOf(record).n === 3);
        if (failed || !fourth) return { batchItemFailures: [] };
        failed = true;
        // Reported out of order, both: the lowest (record 3) counts.
        const sixth = event.Records.find((record) => itemOf(record).n === 5)!;
        return { batchItemFailures: [{ itemIdentifier: sixth.kinesis.sequenceNumber }, { itemIdentifier: fourth.kinesis.sequenceNumber }] };
      },
    });
    await poller.idle();
    expect(calls).toEqual([
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      [3, 4, 5, 6, 7, 8, 9],
    ]);
  });

  it('bisects down to a poison record, sends only it to onFailure, and delivers the rest in order', async () => {
    const stream = await freshStream(1);
    await putItems(stream, ['robot'], 16);
    const succeeded: number[] = [];
    const setAside: { numbers: number[]; error: string }[] = [];
    let poisonAttempts = 0;
    const poller = poll(stream, {
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 2,
      handler: async (event) => {
        const numbers = event.Records.map((record) => itemOf(record).n);
        if (numbers.includes(11)) {
          if (numbers.length === 1) poisonAttempts += 1;
          throw new Error('cannot decode record 11');
        }
        succeeded.push(...numbers);
      },
      onFailure: (records, error) => void setAside.push({ numbers: records.map((record) => itemOf(record).n), error: String(error) }),
    });
    await poller.idle();
    expect(setAside).toEqual([{ numbers: [11], error: 'Error: cannot decode record 11' }]);
    expect(poisonAttempts).toBe(3);
    expect(succeeded).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15]);

    // The shard moved on: a record put now is delivered.
    await stream.put('robot', { key: 'robot', n: 16 });
    await poller.idle();
    expect(succeeded.at(-1)).toBe(16);
  });

  it('after a restart (poller and kinesalite) carries on from its checkpoints: nothing replayed, nothing skipped', async () => {
    const directory = join(dir, 'restart');
    const checkpointFile = join(dir, 'restart-checkpoints.json');
    const keys = Array.from({ length: 12 }, (_, i) => `robot-${i}`);
    const handled: string[] = [];
    const handler = async (event: KinesisStreamEvent) => void handled.push(...event.Records.map(label));

    let stream = await freshStream(3, directory);
    await putItems(stream, keys, 5);
    let poller = poll(stream, { handler, batchSize: 7, checkpoints: await FileStreamCheckpoints.open(checkpointFile, stream.streamArn) });
    await poller.idle();
    expect(handled).toHaveLength(60);
    await poller.stop();
    // Written while nothing reads the stream, then everything restarts on the same files.
    await putItems(stream, keys, 5, 5);
    await stream.stop();

    stream = await freshStream(3, directory);
    await putItems(stream, keys, 5, 10);
    poller = poll(stream, { handler, batchSize: 7, checkpoints: await FileStreamCheckpoints.open(checkpointFile, stream.streamArn) });
    await poller.idle();

    expect(handled).toHaveLength(180);
    expect(new Set(handled).size).toBe(180);
    for (const key of keys) {
      expect(handled.filter((entry) => entry.startsWith(`${key}#`))).toEqual(Array.from({ length: 15 }, (_, n) => `${key}#${n}`));
    }
  });

  it('with maximumRetryAttempts -1, a handler that fails for a while (a database outage) loses nothing', async () => {
    const stream = await freshStream(2);
    const keys = Array.from({ length: 10 }, (_, i) => `robot-${i}`);
    const committed: Item[] = [];
    const setAside: KinesisStreamRecord[] = [];
    let failures = 0;
    let outageUntil = 0;
    const poller = poll(stream, {
      batchSize: 25,
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: -1,
      handler: async (event) => {
        if (Date.now() < outageUntil) {
          failures += 1;
          throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
        }
        // All or nothing, as a database transaction.
        committed.push(...event.Records.map(itemOf));
      },
      onFailure: (records) => void setAside.push(...records),
    });
    await putItems(stream, keys, 5);
    await poller.idle();
    // The database goes away for 1.5 s while records keep coming.
    outageUntil = Date.now() + 1500;
    await putItems(stream, keys, 15, 5);
    await new Promise((resolve) => setTimeout(resolve, 1600));
    await putItems(stream, keys, 5, 20);
    await poller.idle({ timeoutMs: 30_000 });

    expect(failures).toBeGreaterThan(5);
    expect(setAside).toEqual([]);
    expect(committed).toHaveLength(250);
    for (const key of keys) {
      expect(committed.filter((item) => item.key === key).map((item) => item.n)).toEqual([...Array(25).keys()]);
    }
  });

  it('refuses settings Lambda would refuse', async () => {
    const stream = await freshStream(1);
    const handler = async () => undefined;
    expect(() => startKinesisPoller({ client: stream.client, streamArn: stream.streamArn, handler, batchSize: 10_001 })).toThrow(/batchSize/);
    expect(() => startKinesisPoller({ client: stream.client, streamArn: 'arn:aws:dynamodb:eu-west-1:1:table/x', handler })).toThrow(/Kinesis stream ARN/);
    expect(() => startKinesisPoller({ client: stream.client, streamArn: stream.streamArn, handler, maximumRetryAttempts: -2 })).toThrow(
      /maximumRetryAttempts/,
    );
  });
});
