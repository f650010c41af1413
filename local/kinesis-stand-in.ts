import { mkdir } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import {
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  PutRecordCommand,
  ResourceNotFoundException,
} from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/**
 * The local stand-in for a Kinesis data stream: kinesalite (the Kinesis API on LevelDB) served in this process on
 * 127.0.0.1, its data kept in a directory so the stream survives a restart, the stream created on first start.
 *
 * Durability, as checked (test/integration/kinesis-stand-in.test.ts): a PutRecord that resolved survives the process
 * being killed with SIGKILL right after, and is read back when the directory is opened again. kinesalite stores
 * through leveldown, whose writes go to LevelDB's log with write(2) and no fsync (LevelDB's `sync: false`, which
 * kinesalite does not change): the record is in the kernel's page cache when PutRecord answers, so a process crash
 * loses nothing, but a power cut or kernel crash can lose the last records acknowledged (AWS replicates a record to
 * three availability zones before answering). LevelDB's lock on the directory dies with the process, so a killed
 * local cloud can be started again at once; a second process on the same directory is refused ("LOCK").
 *
 * kinesalite 3.3.3, as observed: shard iterators expire after 5 minutes; records older than the retention (24 h)
 * are dropped when read; sequence numbers are decimal strings of equal length per stream (compare them as BigInt);
 * it wants `StreamName` (not `StreamARN`) in requests; `@aws-sdk/client-kinesis` needs an HTTP/1.1 handler for it.
 */

export interface KinesisStandInOptions {
  /** Where kinesalite keeps its LevelDB (created if missing). */
  readonly directory: string;
  readonly streamName: string;
  /** Shards of the stream when it is created (an existing stream keeps its own). Default 2. */
  readonly shardCount?: number;
  /** 0 (the default) = any free port. */
  readonly port?: number;
  /** Default '127.0.0.1'. */
  readonly host?: string;
  /** The region in the stream ARN and of the client. Default: AWS_REGION, else us-east-1. */
  readonly region?: string;
}

export interface PutResult {
  readonly shardId: string;
  readonly sequenceNumber: string;
}

export interface KinesisStandIn {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly streamName: string;
  readonly streamArn: string;
  /** A client for the stand-in (HTTP/1.1, local credentials); destroyed by stop(). */
  readonly client: KinesisClient;
  /**
   * PutRecord; resolves once kinesalite acknowledged it (the record is on disk as described above). Puts with the
   * same partition key go one after another, in call order, so they land in that order on their shard. An object
   * is sent as its JSON, a string as UTF-8.
   */
  put(partitionKey: string, data: Uint8Array | string | Record<string, unknown>): Promise<PutResult>;
  /** Waits for the puts under way, then closes the server and the database. */
  stop(): Promise<void>;
}

type KinesaliteServer = Server;
interface LevelDown {
  open(options: { createIfMissing: boolean }, callback: (error?: Error) => void): void;
  close(callback: (error?: Error) => void): void;
}
type Kinesalite = (options: {
  path?: string;
  createStreamMs?: number;
  deleteStreamMs?: number;
  updateStreamMs?: number;
  shardLimit?: number;
}) => KinesaliteServer;

const require = createRequire(import.meta.url);
const ACCOUNT_ID = '000000000000';
const DEFAULT_SHARDS = 2;
/** kinesalite's default of 10 shards per account is too few for tests that make several streams. */
const SHARD_LIMIT = 1000;

export async function startKinesisStandIn(options: KinesisStandInOptions): Promise<KinesisStandIn> {
  const shardCount = options.shardCount ?? DEFAULT_SHARDS;
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > SHARD_LIMIT) {
    throw new Error(`startKinesisStandIn: shardCount must be a whole number from 1 to ${SHARD_LIMIT}, got ${shardCount}`);
  }
  if (!/^[a-zA-Z0-9_.-]{1,128}$/.test(options.streamName)) {
    throw new Error(`startKinesisStandIn: "${options.streamName}" is not a Kinesis stream name (letters, digits, _ . -, up to 128)`);
  }
  const region = options.region ?? process.env.AWS_REGION ?? 'us-east-1';
  await mkdir(options.directory, { recursive: true });
  // kinesalite opens its database without a callback: a failure (another process holds the directory, or it is
  // damaged) would surface as an uncaught exception. Open it once here to say what is wrong instead.
  await probeDatabase(options.directory);

  // kinesalite reads the account and region for its ARNs from the environment when the database is created.
  const kinesalite = require('kinesalite') as Kinesalite;
  const saved = { account: process.env.AWS_ACCOUNT_ID, region: process.env.AWS_REGION };
  process.env.AWS_ACCOUNT_ID = ACCOUNT_ID;
  process.env.AWS_REGION = region;
  let server: KinesaliteServer;
  try {
    server = kinesalite({ path: options.directory, createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: SHARD_LIMIT });
  } finally {
    restoreEnv('AWS_ACCOUNT_ID', saved.account);
    restoreEnv('AWS_REGION', saved.region);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const endpoint = `http://${options.host ?? '127.0.0.1'}:${address.port}`;
  const client = new KinesisClient({
    endpoint,
    region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    // The SDK speaks HTTP/2 to Kinesis by default; kinesalite answers HTTP/1.1 only.
    requestHandler: new NodeHttpHandler(),
  });
  const close = async () => {
    client.destroy();
    await new Promise<void>((resolve, reject) => {
      server.close((error?: Error) => (error ? reject(error) : resolve()));
      server.closeAllConnections();
    });
  };

  let streamArn: string;
  try {
    streamArn = await ensureStream(client, options.streamName, shardCount);
  } catch (error) {
    await close().catch(() => undefined);
    const detail = error instanceof Error ? error.message : String(error);
    throw new Error(`The Kinesis stand-in in ${options.directory} could not provide stream ${options.streamName}: ${detail}`);
  }

  /** The last put per partition key; the next put for that key starts after it settled. */
  const tails = new Map<string, Promise<unknown>>();
  const pending = new Set<Promise<unknown>>();
  let stopping = false;

  const putNow = async (partitionKey: string, data: Uint8Array): Promise<PutResult> => {
    const answer = await client.send(new PutRecordCommand({ StreamName: options.streamName, PartitionKey: partitionKey, Data: data }));
    if (!answer.ShardId || !answer.SequenceNumber) throw new Error('PutRecord answered without a shard id or sequence number');
    return { shardId: answer.ShardId, sequenceNumber: answer.SequenceNumber };
  };

  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    streamName: options.streamName,
    streamArn,
    client,
    put(partitionKey, data) {
      if (stopping) return Promise.reject(new Error(`Cannot put into ${options.streamName}: the Kinesis stand-in is stopped`));
      const bytes = dataBytes(data);
      const previous = tails.get(partitionKey) ?? Promise.resolve();
      // After the previous one settled either way: its caller sees its failure; this put does not depend on it.
      const result = previous.then(
        () => putNow(partitionKey, bytes),
        () => putNow(partitionKey, bytes),
      );
      tails.set(partitionKey, result);
      pending.add(result);
      void result
        .catch(() => undefined)
        .finally(() => {
          pending.delete(result);
          if (tails.get(partitionKey) === result) tails.delete(partitionKey);
        });
      return result;
    },
    stop() {
      stopped ??= (async () => {
        stopping = true;
        while (pending.size > 0) await Promise.allSettled([...pending]);
        await close();
      })();
      return stopped;
    },
  };
}

/** The stream's ARN, after creating it (and waiting for ACTIVE) if it does not exist. */
async function ensureStream(client: KinesisClient, streamName: string, shardCount: number): Promise<string> {
  try {
    await client.send(new CreateStreamCommand({ StreamName: streamName, ShardCount: shardCount }));
  } catch (error) {
    if ((error as Error).name !== 'ResourceInUseException') throw error;
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const { StreamDescriptionSummary: summary } = await client.send(new DescribeStreamSummaryCommand({ StreamName: streamName }));
      if (summary?.StreamStatus === 'ACTIVE' && summary.StreamARN) return summary.StreamARN;
    } catch (error) {
      if (!(error instanceof ResourceNotFoundException)) throw error;
    }
    if (Date.now() > deadline) throw new Error(`stream ${streamName} did not become ACTIVE within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function probeDatabase(directory: string): Promise<void> {
  const db = (require('leveldown') as (path: string) => LevelDown)(directory);
  try {
    await new Promise<void>((resolve, reject) => db.open({ createIfMissing: true }, (error) => (error ? reject(error) : resolve())));
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    const inUse = /lock/i.test(detail);
    throw new Error(
      inUse
        ? `The Kinesis stand-in's database ${directory} is in use by another process (${detail}); stop it first`
        : `The Kinesis stand-in's database ${directory} cannot be opened (${detail}); delete the directory to start the stream afresh`,
    );
  }
  await new Promise<void>((resolve, reject) => db.close((error) => (error ? reject(error) : resolve())));
}

function dataBytes(data: Uint8Array | string | Record<string, unknown>): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.from(JSON.stringify(data), 'utf8');
}

function restoreEnv(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
