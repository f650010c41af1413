import { GetRecordsCommand, type DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { batchDue, startStreamPoller, type StreamPoller, type StreamPollerOptions } from '../../local/stream-poller.js';
import { createTestEventLog, streamsClient } from '../support/dynamo.js';

/**
 * The stream poller's batching window (Lambda's MaximumBatchingWindowInSeconds) on DynamoDB Local's stream: a batch
 * is handed over once full, or once the window has passed since its first record, whichever comes first.
 */

type TestTable = Awaited<ReturnType<typeof createTestEventLog>>;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freshTable(): Promise<TestTable> {
  const table = await createTestEventLog();
  cleanups.push(() => table.drop());
  return table;
}

/** A poller whose GetRecords answers are counted: how many records it has read, and when it read the first. */
function poll(table: TestTable, options: Omit<StreamPollerOptions, 'client' | 'streamArn' | 'handler'>) {
  const client = streamsClient();
  const seen = { read: 0, firstReadAt: 0 };
  const counting = {
    send: async (command: Parameters<DynamoDBStreamsClient['send']>[0]) => {
      const output = await client.send(command as never);
      if (command instanceof GetRecordsCommand) {
        const count = (output as { Records?: unknown[] }).Records?.length ?? 0;
        if (count > 0 && seen.read === 0) seen.firstReadAt = Date.now();
        seen.read += count;
      }
      return output;
    },
  } as unknown as DynamoDBStreamsClient;
  const batches: { labels: string[]; at: number }[] = [];
  const handler = async (event: DynamoDBStreamEvent) => {
    batches.push({ labels: event.Records.map(labelOf), at: Date.now() });
  };
  const poller: StreamPoller = startStreamPoller({ client: counting, streamArn: table.streamArn, handler, log: () => {}, ...options });
  cleanups.push(async () => {
    await poller.stop();
    client.destroy();
  });
  return { poller, batches, seen };
}

async function putItems(table: TestTable, labels: readonly string[]) {
  const documents = DynamoDBDocumentClient.from(table.client);
  for (const [index, label] of labels.entries()) {
    await documents.send(new PutCommand({ TableName: table.tableName, Item: { robotId: 'lekiwi-WIN', seq: index + 1, label } }));
  }
}

const labelOf = (record: DynamoDBRecord) => record.dynamodb?.NewImage?.label?.S ?? '?';

describe('stream poller: batching window', () => {
  it('holds records it has read until the batch is full, then hands them over as one batch in order', async () => {
    // Given a poller with batches of 10 and a window far longer than the test
    const table = await freshTable();
    const { poller, batches, seen } = poll(table, { batchSize: 10, maximumBatchingWindowMs: 120_000 });
    await poller.idle();

    // When 4 records are written and read
    await putItems(table, ['a', 'b', 'c', 'd']);
    await expect.poll(() => seen.read, { message: 'the poller read the first 4 records' }).toBe(4);

    // Then they are held: no batch yet
    expect(batches).toEqual([]);

    // And when 6 more fill the batch, the 10 go over together, in order
    await putItems(table, ['e', 'f', 'g', 'h', 'i', 'j']);
    await expect.poll(() => batches.length, { message: 'the full batch was handed over' }).toBe(1);
    expect(batches[0]?.labels).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
    await poller.idle();
    expect(batches).toHaveLength(1);
  });

  it('hands over a batch that is not full once the window has passed since its first record', async () => {
    // Given a poller with a 400 ms window and room for 1,000 records
    const table = await freshTable();
    const { poller, batches, seen } = poll(table, { batchSize: 1000, maximumBatchingWindowMs: 400 });
    await poller.idle();

    // When 3 records are written
    await putItems(table, ['x', 'y', 'z']);
    await poller.idle();

    // Then they came as batches of what was read, the first no sooner than the window after its first record
    expect(batches.flatMap((batch) => batch.labels)).toEqual(['x', 'y', 'z']);
    expect(batches[0]!.at - seen.firstReadAt).toBeGreaterThanOrEqual(400);
  });

  it('decides a batch is due when full, when its window has passed, or when the shard ended', () => {
    const batch = { size: 3, batchSize: 10, waitedMs: 100, windowMs: 1000, shardEnded: false };
    expect(batchDue(batch)).toBe(false);
    expect(batchDue({ ...batch, size: 10 })).toBe(true);
    expect(batchDue({ ...batch, waitedMs: 1000 })).toBe(true);
    expect(batchDue({ ...batch, shardEnded: true })).toBe(true);
    expect(batchDue({ ...batch, windowMs: 0 })).toBe(true);
  });

  it('refuses a window longer than Lambda’s 300 s, naming the option', async () => {
    const table = await freshTable();
    expect(() =>
      startStreamPoller({ client: streamsClient(), streamArn: table.streamArn, handler: async () => {}, maximumBatchingWindowMs: 300_001 }),
    ).toThrow(/maximumBatchingWindowMs must be an integer from 0 to 300000/);
  });
});
