import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { parseStreamRecord } from '../../functions/adapters/event-log-items.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { FileStreamCheckpoints } from '../../local/stream-checkpoints.js';
import { startStreamPoller, type StreamPoller, type StreamPollerOptions } from '../../local/stream-poller.js';
import { createTestEventLog, streamsClient } from '../support/dynamo.js';

type TestTable = Awaited<ReturnType<typeof createTestEventLog>>;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  // Pollers first (they read the tables), then the tables.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function freshTable(): Promise<TestTable> {
  const table = await createTestEventLog();
  cleanups.push(() => table.drop());
  return table;
}

function poll(table: TestTable, options: Omit<StreamPollerOptions, 'client' | 'streamArn'>): StreamPoller {
  const client = streamsClient();
  const poller = startStreamPoller({ client, streamArn: table.streamArn, log: () => {}, ...options });
  cleanups.push(async () => {
    await poller.stop();
    client.destroy();
  });
  return poller;
}

/** Plain items (not event log items): each one stream record whose NewImage carries its label. */
async function putItems(table: TestTable, labels: readonly string[]) {
  const documents = DynamoDBDocumentClient.from(table.client);
  for (const label of labels) {
    const [robot, seq] = label.split('/');
    await documents.send(new PutCommand({ TableName: table.tableName, Item: { robotId: `lekiwi-${robot}`, seq: Number(seq), label } }));
  }
}

const labelOf = (record: DynamoDBRecord) => record.dynamodb?.NewImage?.label?.S ?? '?';

/** A handler that records every batch it was given; `decide` answers for a batch. */
function recordingHandler(decide: (labels: string[], records: DynamoDBRecord[]) => DynamoDBBatchResponse | void = () => {}) {
  const batches: string[][] = [];
  const handler = async (event: DynamoDBStreamEvent) => {
    const labels = event.Records.map(labelOf);
    batches.push(labels);
    return decide(labels, event.Records);
  };
  return { handler, batches };
}

describe('stream poller: the records', () => {
  it('hands DynamoDB Local stream records over in Lambda’s event shape', async () => {
    // Given an event log whose robot got two commands, and a raw item holding binary data
    const table = await freshTable();
    const log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
    const now = () => new Date('2026-11-22T10:00:00.000Z');
    const robotId = 'lekiwi-LK0042';
    await executeRobotCommand(log, robotId, { type: 'RegisterRobot', eventId: 'register-LK0042', at: '2026-11-22T09:00:00.000Z' }, { now });
    await executeRobotCommand(
      log,
      robotId,
      { type: 'RecordTelemetry', sample: { sampledAt: '2026-11-22T09:01:00.000Z', cpuTemperatureC: 85 } },
      { now },
    );
    await DynamoDBDocumentClient.from(table.client).send(
      new PutCommand({ TableName: table.tableName, Item: { robotId: 'lekiwi-BIN', seq: 1, blob: new Uint8Array([0, 1, 254, 255]) } }),
    );
    const events: DynamoDBStreamEvent[] = [];

    // When a poller reads the stream
    const poller = poll(table, { handler: async (event) => void events.push(event) });
    await poller.idle();

    // Then every record has Lambda's fields and types, survives JSON (as Lambda's event does), and parses
    const records = events.flatMap((event) => event.Records);
    expect(records).toHaveLength(2 * 2 + 2 + 1); // event+marker per event, the head twice, the raw item
    for (const record of records) {
      expect(record).toMatchObject({
        eventVersion: '1.1',
        eventSource: 'aws:dynamodb',
        awsRegion: 'ddblocal',
        eventSourceARN: table.streamArn,
        dynamodb: { StreamViewType: 'NEW_IMAGE', SequenceNumber: expect.stringMatching(/^\d+$/) },
      });
      expect(record.eventID).toEqual(expect.any(String));
      expect(record.dynamodb?.SizeBytes).toBeGreaterThan(0);
      expect(record.dynamodb?.ApproximateCreationDateTime).toBeGreaterThan(1_700_000_000);
      expect(record.dynamodb?.ApproximateCreationDateTime).toBeLessThan(10_000_000_000);
      expect(Object.keys(record.dynamodb?.Keys ?? {}).sort()).toEqual(['robotId', 'seq']);
    }
    expect(JSON.parse(JSON.stringify(events))).toEqual(events);
    expect(records.filter((record) => record.eventName === 'MODIFY').map((record) => record.dynamodb?.Keys)).toEqual([
      { robotId: { S: robotId }, seq: { N: '0' } },
    ]);
    expect(records.filter((record) => record.eventName === 'INSERT')).toHaveLength(6);
    const binary = records.find((record) => record.dynamodb?.Keys?.robotId?.S === 'lekiwi-BIN');
    expect(binary?.dynamodb?.NewImage?.blob).toEqual({ B: Buffer.from([0, 1, 254, 255]).toString('base64') });
    const parsed = records.filter((record) => record !== binary).map(parseStreamRecord);
    const recorded = parsed.flatMap((item) => (item.kind === 'event' ? [item.recorded.event.type] : []));
    expect(recorded.sort()).toEqual(['AlertRaised', 'RobotRegistered']);
    expect(parsed.filter((item) => item.kind === 'head').map((item) => item.kind === 'head' && item.head.telemetryChanged)).toEqual([false, true]);
    const sequenceNumbers = records.map((record) => BigInt(record.dynamodb?.SequenceNumber ?? '0'));
    expect(sequenceNumbers).toEqual([...sequenceNumbers].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  });

  it('delivers in batches of at most batchSize, in stream order', async () => {
    // Given seven items
    const table = await freshTable();
    const labels = ['A/1', 'A/2', 'B/1', 'A/3', 'B/2', 'A/4', 'A/5'];
    await putItems(table, labels);
    const { handler, batches } = recordingHandler();

    // When read three at a time
    const poller = poll(table, { handler, batchSize: 3 });
    await poller.idle();

    // Then the batches are 3, 3, 1 in write order
    expect(batches).toEqual([labels.slice(0, 3), labels.slice(3, 6), labels.slice(6)]);
  });

  it('starts at LATEST without the records written before it, and keeps up with new ones', async () => {
    // Given two items already in the stream and a poller starting at LATEST
    const table = await freshTable();
    await putItems(table, ['A/1', 'A/2']);
    const { handler, batches } = recordingHandler();
    const poller = poll(table, { handler, startingPosition: 'LATEST' });
    await poller.idle();

    // When another item is written
    await putItems(table, ['A/3']);
    await poller.idle();

    // Then only that one arrives
    expect(batches.flat()).toEqual(['A/3']);
  });
});

describe('stream poller: failures, as Lambda’s event source mapping', () => {
  it('retries a partly failed batch from the first failed record', async () => {
    // Given five items and a handler that fails A/3 and A/5 the first time
    const table = await freshTable();
    await putItems(table, ['A/1', 'A/2', 'A/3', 'A/4', 'A/5']);
    const { handler, batches } = recordingHandler((labels, records) =>
      batches.length === 1
        ? { batchItemFailures: records.filter((_, i) => ['A/5', 'A/3'].includes(labels[i]!)).map((r) => ({ itemIdentifier: r.dynamodb!.SequenceNumber! })) }
        : undefined,
    );

    // When polled
    const poller = poll(table, { handler, retryDelayMs: 0 });
    await poller.idle();

    // Then the retry starts at A/3 (the lowest failed), and nothing before it comes again
    expect(batches).toEqual([
      ['A/1', 'A/2', 'A/3', 'A/4', 'A/5'],
      ['A/3', 'A/4', 'A/5'],
    ]);
  });

  it('retries a poison record a bounded number of times, sets it aside, and still delivers what follows', async () => {
    // Given a poison record among two robots' records, and a handler that reports it as failed every time
    const table = await freshTable();
    await putItems(table, ['A/1', 'B/1', 'A/2', 'A/3', 'B/2', 'A/4', 'B/3']);
    const handled = new Set<string>();
    const { handler, batches } = recordingHandler((labels, records) => {
      const failed = records.filter((_, i) => labels[i] === 'A/2');
      labels.filter((label) => label !== 'A/2').forEach((label) => handled.add(label));
      return { batchItemFailures: failed.map((r) => ({ itemIdentifier: r.dynamodb!.SequenceNumber! })) };
    });
    const setAside: { labels: string[]; error: unknown }[] = [];

    // When polled with bisection and two retries
    const poller = poll(table, {
      handler,
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 2,
      retryDelayMs: 0,
      onFailure: (records, error) => void setAside.push({ labels: records.map(labelOf), error }),
    });
    await poller.idle();

    // Then the poison alone was tried 1 + 2 times and set aside by itself, and every other record was handled
    expect(batches.filter((batch) => batch.length === 1 && batch[0] === 'A/2')).toHaveLength(3);
    expect(setAside.map((entry) => entry.labels)).toEqual([['A/2']]);
    expect(setAside[0]?.error).toBeInstanceOf(Error);
    expect([...handled].sort()).toEqual(['A/1', 'A/3', 'A/4', 'B/1', 'B/2', 'B/3']);

    // And records written later still flow
    await putItems(table, ['A/9']);
    await poller.idle();
    expect(batches.at(-1)).toEqual(['A/9']);
  });

  it('retries a whole batch when the handler throws, then sets the batch aside and moves on', async () => {
    // Given three items and a handler that throws on any batch holding A/2 (no bisection)
    const table = await freshTable();
    await putItems(table, ['A/1', 'A/2', 'A/3']);
    const { handler, batches } = recordingHandler((labels) => {
      if (labels.includes('A/2')) throw new Error('projection failed');
    });
    const setAside: string[][] = [];

    // When polled with one retry
    const poller = poll(table, { handler, maximumRetryAttempts: 1, retryDelayMs: 0, onFailure: (records) => void setAside.push(records.map(labelOf)) });
    await poller.idle();
    await putItems(table, ['A/4']);
    await poller.idle();

    // Then the batch came twice, whole, went aside whole, and the next record was delivered
    expect(batches).toEqual([['A/1', 'A/2', 'A/3'], ['A/1', 'A/2', 'A/3'], ['A/4']]);
    expect(setAside).toEqual([['A/1', 'A/2', 'A/3']]);
  });

  it('takes a malformed batchItemFailures answer as a failure of the whole batch', async () => {
    // Given a handler that answers with an identifier that is not in the batch, once
    const table = await freshTable();
    await putItems(table, ['A/1', 'A/2']);
    const { handler, batches } = recordingHandler(() => (batches.length === 1 ? { batchItemFailures: [{ itemIdentifier: 'not-a-sequence-number' }] } : undefined));

    // When polled
    const poller = poll(table, { handler, retryDelayMs: 0 });
    await poller.idle();

    // Then the whole batch was retried
    expect(batches).toEqual([
      ['A/1', 'A/2'],
      ['A/1', 'A/2'],
    ]);
  });
});

describe('stream poller: stopping', () => {
  it('stops cleanly, even while retrying a batch, and delivers nothing afterwards', async () => {
    // Given a poller stuck retrying a failing batch forever, with long pauses
    const table = await freshTable();
    await putItems(table, ['A/1']);
    let firstCall!: () => void;
    const called = new Promise<void>((resolve) => (firstCall = resolve));
    const { handler, batches } = recordingHandler(() => {
      firstCall();
      throw new Error('always failing');
    });
    const poller = poll(table, { handler, maximumRetryAttempts: -1, retryDelayMs: 60_000 });
    await called;

    // When it is stopped and more is written
    await poller.stop();
    await putItems(table, ['A/2']);
    await new Promise((resolve) => setTimeout(resolve, 300));

    // Then it ended without another call, and idle() says it is stopped
    expect(batches).toEqual([['A/1']]);
    await expect(poller.idle()).rejects.toThrow(/stopped/);
  });

  it('rejects options it cannot honour, naming them', () => {
    const base = { client: streamsClient(), streamArn: 'arn:aws:dynamodb:ddblocal:000000000000:table/x/stream/1', handler: async () => {} };
    expect(() => startStreamPoller({ ...base, batchSize: 5000 })).toThrow(/batchSize must be an integer from 1 to 1000/);
    expect(() => startStreamPoller({ ...base, maximumRetryAttempts: -2 })).toThrow(/maximumRetryAttempts/);
    base.client.destroy();
  });
});

describe('stream poller: filters and checkpoints', () => {
  it('hands over only the records matching a filter pattern, as Lambda event filtering does', async () => {
    const table = await freshTable();
    await putItems(table, ['A/1', 'A/2', 'B/1']);
    const { handler, batches } = recordingHandler();

    await poll(table, { handler, filters: [{ dynamodb: { NewImage: { label: { S: ['A/2', 'B/1'] } } } }] }).idle();

    expect(batches.flat()).toEqual(['A/2', 'B/1']);
  });

  it('a poller restarted with saved checkpoints carries on after the last record handled: nothing replayed, nothing skipped', async () => {
    const table = await freshTable();
    const dir = await mkdtemp(join(tmpdir(), 'checkpoints-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'consumer.json');
    await putItems(table, ['A/1', 'A/2']);

    const first = recordingHandler();
    const poller = poll(table, { handler: first.handler, checkpoints: await FileStreamCheckpoints.open(file, table.streamArn) });
    await poller.idle();
    await poller.stop();
    expect(first.batches.flat()).toEqual(['A/1', 'A/2']);

    // Written while no one was reading
    await putItems(table, ['A/3', 'B/1']);
    const second = recordingHandler();
    await poll(table, { handler: second.handler, checkpoints: await FileStreamCheckpoints.open(file, table.streamArn) }).idle();
    expect(second.batches.flat()).toEqual(['A/3', 'B/1']);

    // Positions saved for another stream (a recreated table) are not used
    const other = recordingHandler();
    await poll(table, { handler: other.handler, checkpoints: await FileStreamCheckpoints.open(file, `${table.streamArn}-old`) }).idle();
    expect(other.batches.flat()).toEqual(['A/1', 'A/2', 'A/3', 'B/1']);
  });

  it('a damaged checkpoint file is an error that says what to do', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'checkpoints-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'consumer.json');
    await writeFile(file, '{"streamArn": 1');
    await expect(FileStreamCheckpoints.open(file, 'arn')).rejects.toThrow(/not a stream checkpoint file; delete it/);
  });
});
