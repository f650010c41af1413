import type { DynamoDBBatchResponse, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { deliverBatch, dynamoDBSequenceNumber, type DeliveryPolicy, type StreamHandler } from '../../local/stream-delivery.js';

const record = (sequenceNumber: number): DynamoDBRecord => ({
  eventID: `event-${sequenceNumber}`,
  eventName: 'INSERT',
  dynamodb: { SequenceNumber: String(sequenceNumber).padStart(21, '0'), NewImage: { n: { N: String(sequenceNumber) } } },
});
const numberOf = (r: DynamoDBRecord) => Number(r.dynamodb?.SequenceNumber);
const records = (count: number) => Array.from({ length: count }, (_, i) => record(i + 1));

const policy = (overrides: Partial<DeliveryPolicy> = {}): DeliveryPolicy => ({
  bisectBatchOnFunctionError: false,
  maximumRetryAttempts: 3,
  reportBatchItemFailures: true,
  retryDelay: (retry) => retry * 10,
  ...overrides,
});

/** Runs deliverBatch with a handler deciding per batch; returns what the handler saw and what was set aside. */
async function deliver(
  input: DynamoDBRecord[],
  decide: (numbers: number[], event: DynamoDBStreamEvent) => DynamoDBBatchResponse | void | null,
  deliveryPolicy: DeliveryPolicy,
  options: { stopAfterCalls?: number; onFailureThrows?: boolean } = {},
) {
  const calls: number[][] = [];
  const setAside: number[][] = [];
  const sleeps: number[] = [];
  const logs: string[] = [];
  const handler: StreamHandler = async (event) => {
    calls.push(event.Records.map(numberOf));
    return decide(event.Records.map(numberOf), event);
  };
  await deliverBatch(input, deliveryPolicy, {
    handler,
    onFailure: (failed) => {
      setAside.push(failed.map(numberOf));
      if (options.onFailureThrows) throw new Error('destination down');
    },
    log: (entry) => void logs.push(`${entry.level}: ${entry.message}`),
    sleep: async (ms) => void sleeps.push(ms),
    stopped: () => options.stopAfterCalls !== undefined && calls.length >= options.stopAfterCalls,
    shardId: 'shard-1',
    sequenceNumberOf: dynamoDBSequenceNumber,
  });
  return { calls, setAside, sleeps, logs };
}

const failing = (...numbers: number[]) => (seen: number[]) => ({
  batchItemFailures: seen.filter((n) => numbers.includes(n)).map((n) => ({ itemIdentifier: String(n).padStart(21, '0') })),
});

describe('deliverBatch', () => {
  it('bisects a throwing batch down to the poison record, sets only it aside, and keeps the order of the rest', async () => {
    // Given eight records, the sixth poison, and a handler that throws on any batch holding it
    const input = records(8);

    // When delivered with bisection and two retries
    const { calls, setAside } = await deliver(
      input,
      (seen) => {
        if (seen.includes(6)) throw new Error('poison');
      },
      policy({ bisectBatchOnFunctionError: true, maximumRetryAttempts: 2 }),
    );

    // Then the poison alone got 1 + 2 invocations, went aside alone, and the rest succeeded once each, in order
    expect(calls.filter((c) => c.length === 1 && c[0] === 6)).toHaveLength(3);
    expect(setAside).toEqual([[6]]);
    const succeeded = calls.filter((c) => !c.includes(6)).flat();
    expect(succeeded).toEqual([1, 2, 3, 4, 5, 7, 8]);
  });

  it('without bisection retries the whole batch, then sets the whole batch aside', async () => {
    const { calls, setAside, sleeps } = await deliver(records(3), () => {
      throw new Error('down');
    }, policy({ maximumRetryAttempts: 2 }));

    expect(calls).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
    expect(setAside).toEqual([[1, 2, 3]]);
    expect(sleeps).toEqual([10, 20]);
  });

  it('checkpoints before the lowest reported failure and retries from there', async () => {
    // Given a handler that reports 4 and 2 failed the first time only
    let first = true;
    const { calls, setAside } = await deliver(
      records(5),
      (seen) => {
        if (!first) return;
        first = false;
        return failing(4, 2)(seen);
      },
      policy(),
    );

    expect(calls).toEqual([
      [1, 2, 3, 4, 5],
      [2, 3, 4, 5],
    ]);
    expect(setAside).toEqual([]);
  });

  it('with bisection splits a remainder that makes no progress', async () => {
    // Given a handler that always reports record 2 failed
    const { calls, setAside } = await deliver(records(4), failing(2), policy({ bisectBatchOnFunctionError: true, maximumRetryAttempts: 1 }));

    // Then: whole batch → remainder from 2 → halves [2,3] and [4] → [2] and [3] → [2] retried once, set aside
    expect(calls).toEqual([[1, 2, 3, 4], [2, 3, 4], [2, 3], [2], [2], [3], [4]]);
    expect(setAside).toEqual([[2]]);
  });

  it('takes an empty or missing failure list as success, and a malformed one as a whole-batch failure', async () => {
    const empty = await deliver(records(2), () => ({ batchItemFailures: [] }), policy());
    const missing = await deliver(records(2), () => null, policy());
    const malformed = await deliver(
      records(2),
      () => ({ batchItemFailures: [{ itemIdentifier: '' }] }),
      policy({ maximumRetryAttempts: 1 }),
    );
    const notAList = await deliver(
      records(2),
      () => ({ batchItemFailures: 'record 1' }) as unknown as DynamoDBBatchResponse,
      policy({ maximumRetryAttempts: 0 }),
    );

    expect([empty.calls, missing.calls]).toEqual([[[1, 2]], [[1, 2]]]);
    expect(malformed.calls).toEqual([[1, 2], [1, 2]]);
    expect(malformed.setAside).toEqual([[1, 2]]);
    expect(notAList.setAside).toEqual([[1, 2]]);
  });

  it('ignores the answer when ReportBatchItemFailures is off, as Lambda does', async () => {
    const { calls, setAside } = await deliver(records(3), failing(2), policy({ reportBatchItemFailures: false }));

    expect(calls).toEqual([[1, 2, 3]]);
    expect(setAside).toEqual([]);
  });

  it('retries forever with -1 until the poller stops', async () => {
    const { calls, setAside } = await deliver(
      records(1),
      () => {
        throw new Error('down');
      },
      policy({ maximumRetryAttempts: -1 }),
      { stopAfterCalls: 25 },
    );

    expect(calls).toHaveLength(25);
    expect(setAside).toEqual([]);
  });

  it('moves on when onFailure itself throws, logging it', async () => {
    const { calls, logs } = await deliver(
      records(2),
      (seen) => (seen.includes(1) ? failing(1)(seen) : undefined),
      policy({ bisectBatchOnFunctionError: true, maximumRetryAttempts: 0 }),
      { onFailureThrows: true },
    );

    expect(calls).toEqual([[1, 2], [1], [2]]);
    expect(logs).toContain('error: onFailure threw; records dropped');
  });

  it('gives each invocation its own copy of the records', async () => {
    // Given a handler that scribbles on its records and then fails once
    let first = true;
    const seenImages: unknown[] = [];
    await deliver(
      records(1),
      (_, event) => {
        seenImages.push(structuredClone(event.Records[0]?.dynamodb?.NewImage));
        event.Records[0]!.dynamodb!.NewImage = { n: { N: 'scribbled' } };
        if (first) {
          first = false;
          throw new Error('once');
        }
      },
      policy(),
    );

    // Then the retry saw the record as it came from the stream
    expect(seenImages).toEqual([{ n: { N: '1' } }, { n: { N: '1' } }]);
  });
});

describe('deliverBatch over other record types', () => {
  interface Item {
    readonly sequenceNumber: string;
    readonly arrivedAt: number;
  }
  // Kinesis-like: 56-digit decimals, past Number's precision.
  const base = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898n;
  const items = (count: number, arrivedAt = 0): Item[] =>
    Array.from({ length: count }, (_, i) => ({ sequenceNumber: String(base + BigInt(i)), arrivedAt }));
  const context = (calls: string[][], setAside: string[][], handler: (seen: readonly Item[]) => unknown) => ({
    handler: async (event: { Records: Item[] }) => {
      calls.push(event.Records.map((item) => item.sequenceNumber.slice(-2)));
      return handler(event.Records) as undefined;
    },
    onFailure: (failed: readonly Item[]) => void setAside.push(failed.map((item) => item.sequenceNumber.slice(-2))),
    log: () => undefined,
    sleep: async () => undefined,
    stopped: () => false,
    shardId: 'shardId-000000000000',
    sequenceNumberOf: (item: Item) => item.sequenceNumber,
  });

  it('names failed records by the sequence number the context gives', async () => {
    const calls: string[][] = [];
    const setAside: string[][] = [];
    let first = true;
    const input = items(4);
    await deliverBatch(
      input,
      policy() as DeliveryPolicy<Item>,
      context(calls, setAside, () => {
        if (!first) return undefined;
        first = false;
        return { batchItemFailures: [{ itemIdentifier: input[2]!.sequenceNumber }] };
      }),
    );
    expect(calls).toEqual([
      ['98', '99', '00', '01'],
      ['00', '01'],
    ]);
    expect(setAside).toEqual([]);
  });

  it('with -1 stops retrying and sets a batch aside once its oldest record has expired', async () => {
    const calls: string[][] = [];
    const setAside: string[][] = [];
    let now = 0;
    await deliverBatch(
      items(2),
      { ...(policy({ maximumRetryAttempts: -1 }) as DeliveryPolicy<Item>), expired: (item) => now - item.arrivedAt > 5_000 },
      context(calls, setAside, () => {
        now += 1_000;
        throw new Error('down');
      }),
    );
    // Attempts at 1 s … 6 s after arrival; after the one at 6 s the oldest is past 5 s.
    expect(calls).toHaveLength(6);
    expect(setAside).toEqual([['98', '99']]);
  });
});
