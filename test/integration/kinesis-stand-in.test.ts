import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GetRecordsCommand, GetShardIteratorCommand, ListShardsCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareSequenceNumbers } from '../../local/kinesis-records.js';
import { startKinesisStandIn, type KinesisStandIn } from '../../local/kinesis-stand-in.js';

/**
 * The Kinesis stand-in (kinesalite in process, on LevelDB): the stream is created once and survives a restart, puts
 * of one partition key land in call order, and a put that resolved survives the process being killed with SIGKILL.
 */

const root = fileURLToPath(new URL('../../', import.meta.url));
let dir: string;

interface StoredRecord {
  readonly shardId: string;
  readonly sequenceNumber: string;
  readonly partitionKey: string;
  readonly data: unknown;
}

/** Every record of the stream, shard by shard, each shard in order. */
async function readAll(client: KinesisClient, streamName: string): Promise<StoredRecord[]> {
  const { Shards = [] } = await client.send(new ListShardsCommand({ StreamName: streamName }));
  const records: StoredRecord[] = [];
  for (const shard of Shards) {
    let { ShardIterator: iterator } = await client.send(
      new GetShardIteratorCommand({ StreamName: streamName, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON' }),
    );
    while (iterator) {
      const page = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
      for (const record of page.Records ?? []) {
        records.push({
          shardId: shard.ShardId!,
          sequenceNumber: record.SequenceNumber!,
          partitionKey: record.PartitionKey!,
          data: JSON.parse(Buffer.from(record.Data!).toString('utf8')),
        });
      }
      if ((page.Records ?? []).length === 0) break;
      iterator = page.NextShardIterator;
    }
  }
  return records;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kinesis-stand-in-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Kinesis stand-in', () => {
  it('creates the stream once, keeps it and its records across a restart, and keeps one key’s puts in call order', async () => {
    const path = join(dir, 'restart');
    let stream: KinesisStandIn | undefined = await startKinesisStandIn({ directory: path, streamName: 'ingest', shardCount: 3, region: 'eu-west-1' });
    try {
      expect(stream.streamArn).toBe('arn:aws:kinesis:eu-west-1:000000000000:stream/ingest');
      expect(stream.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // Called without waiting: the stand-in still puts each key's records one after another.
      const first = await Promise.all(
        Array.from({ length: 60 }, (_, i) => stream!.put(`robot-${i % 6}`, { key: `robot-${i % 6}`, n: Math.floor(i / 6) })),
      );
      expect(new Set(first.map((put) => put.shardId)).size).toBeGreaterThan(1);
      await stream.stop();
      stream = undefined;

      stream = await startKinesisStandIn({ directory: path, streamName: 'ingest', shardCount: 1, region: 'eu-west-1' });
      const second = await stream.put('robot-0', { key: 'robot-0', n: 10 });
      const records = await readAll(stream.client, 'ingest');
      // The stream kept its three shards (shardCount applies to a new stream only) and every record.
      const { Shards = [] } = await stream.client.send(new ListShardsCommand({ StreamName: 'ingest' }));
      expect(Shards).toHaveLength(3);
      expect(records).toHaveLength(61);
      for (let key = 0; key < 6; key++) {
        const mine = records.filter((record) => record.partitionKey === `robot-${key}`);
        expect(mine.map((record) => (record.data as { n: number }).n)).toEqual(key === 0 ? [...Array(10).keys(), 10] : [...Array(10).keys()]);
        expect(new Set(mine.map((record) => record.shardId)).size).toBe(1);
      }
      // Sequence numbers go on growing after the restart.
      const before = first.filter((put) => put.shardId === second.shardId).map((put) => put.sequenceNumber);
      for (const sequenceNumber of before) expect(compareSequenceNumbers(second.sequenceNumber, sequenceNumber)).toBe(1);
    } finally {
      await stream?.stop();
    }
  });

  it('refuses a second stand-in on a directory that is in use', async () => {
    const path = join(dir, 'in-use');
    const stream = await startKinesisStandIn({ directory: path, streamName: 'ingest' });
    try {
      await expect(startKinesisStandIn({ directory: path, streamName: 'ingest' })).rejects.toThrow(/is in use by another process \(.*lock/i);
    } finally {
      await stream.stop();
    }
  });

  it('keeps every acknowledged put when the process is killed with SIGKILL right after', async () => {
    const path = join(dir, 'killed');
    const script = join(dir, 'put-until-killed.mts');
    // Puts on four keys at once, printing each one kinesalite acknowledged, until it is killed.
    await writeFile(
      script,
      `const { startKinesisStandIn } = await import(${JSON.stringify(pathToFileURL(join(root, 'local/kinesis-stand-in.ts')).href)});
const stream = await startKinesisStandIn({ directory: process.argv[2], streamName: 'ingest', shardCount: 2 });
process.stdout.write('ready\\n');
const keys = ['robot-a', 'robot-b', 'robot-c', 'robot-d'];
await Promise.all(keys.map(async (key) => {
  for (let n = 0; ; n++) {
    const { sequenceNumber } = await stream.put(key, { key, n });
    process.stdout.write('acked ' + key + ' ' + n + ' ' + sequenceNumber + '\\n');
  }
}));
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, path], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    });
    const acked: { key: string; n: number; sequenceNumber: string }[] = [];
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [word, key, n, sequenceNumber] = line.split(' ');
        if (word === 'acked') acked.push({ key: key!, n: Number(n), sequenceNumber: sequenceNumber! });
      }
      // Killed at once, with puts of every key under way.
      if (acked.length >= 400 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    });
    const signal = await exited;
    expect(signal, stderr).toBe('SIGKILL');
    expect(acked.length).toBeGreaterThanOrEqual(400);

    const reopened = await startKinesisStandIn({ directory: path, streamName: 'ingest' });
    try {
      const records = await readAll(reopened.client, 'ingest');
      const stored = new Map(records.map((record) => [record.sequenceNumber, record]));
      for (const put of acked) {
        expect(stored.get(put.sequenceNumber)?.data, `acknowledged ${put.key} #${put.n}`).toEqual({ key: put.key, n: put.n });
      }
      // Per key: 0, 1, 2, … with no gap, the acknowledged ones and perhaps the one in flight when it died.
      for (const key of ['robot-a', 'robot-b', 'robot-c', 'robot-d']) {
        const numbers = records.filter((record) => record.partitionKey === key).map((record) => (record.data as { n: number }).n);
        expect(numbers).toEqual([...Array(numbers.length).keys()]);
        expect(numbers.length - acked.filter((put) => put.key === key).length).toBeLessThanOrEqual(1);
      }
      // And the stream takes new records after the crash.
      const next = await reopened.put('robot-a', { key: 'robot-a', n: -1 });
      const lastBefore = acked.filter((put) => put.key === 'robot-a').at(-1)!;
      expect(compareSequenceNumbers(next.sequenceNumber, lastBefore.sequenceNumber)).toBe(1);
    } finally {
      await reopened.stop();
    }
  });
});
