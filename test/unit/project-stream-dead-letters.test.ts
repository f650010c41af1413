import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SqsDeadLetters, type SqsBatchSender } from '../../functions/adapters/sqs-dead-letters.js';
import { LoggedDeadLetters, type DeadLetter } from '../../functions/app/dead-letters.js';
import { logger } from '../../functions/platform/observability.js';
import { createFileDeadLetters, projectorDeadLetterFile } from '../../local/file-dead-letters.js';

const letter = (n: number, image: unknown = { kind: { S: 'event' } }): DeadLetter => ({
  sequenceNumber: String(1000 + n),
  eventSourceArn: 'arn:aws:dynamodb:eu-west-1:123456789012:table/event-log/stream/2026-11-01T00:00:00.000',
  robotId: 'lekiwi-LK0001',
  seq: n,
  eventName: 'INSERT',
  reason: 'type: Invalid input',
  image,
  setAsideAt: '2026-11-02T12:00:00.000Z',
});

describe('the local dead-letter file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'dead-letters-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('counts nothing before anything is set aside, then every letter, one JSON line each, in order', async () => {
    const deadLetters = createFileDeadLetters(projectorDeadLetterFile(dir));
    expect(deadLetters.path).toBe(path.join(dir, 'dead-letters', 'stream-projector.jsonl'));
    expect(await deadLetters.count()).toBe(0);
    expect(await deadLetters.read()).toEqual([]);

    await deadLetters.setAside([letter(1), letter(2)]);
    await deadLetters.setAside([]);
    await deadLetters.setAside([letter(3)]);

    expect(await deadLetters.count()).toBe(3);
    expect(await deadLetters.read()).toEqual([letter(1), letter(2), letter(3)]);
  });

  it('skips a line cut short by a crash', async () => {
    const deadLetters = createFileDeadLetters(projectorDeadLetterFile(dir));
    await deadLetters.setAside([letter(1)]);
    await appendFile(deadLetters.path, '{"sequenceNumber":"10');
    expect(await deadLetters.read()).toEqual([letter(1)]);
    expect(await deadLetters.count()).toBe(1);
  });
});

describe('SqsDeadLetters', () => {
  const QUEUE = 'https://sqs.eu-west-1.amazonaws.com/123456789012/projector-dlq';

  it('sends one message per letter, ten per SendMessageBatch', async () => {
    const sendMessageBatch = vi.fn<SqsBatchSender['sendMessageBatch']>(async () => ({ Failed: [] }));
    await new SqsDeadLetters({ sendMessageBatch }, QUEUE).setAside(Array.from({ length: 23 }, (_, n) => letter(n)));
    expect(sendMessageBatch.mock.calls.map(([input]) => input.Entries.length)).toEqual([10, 10, 3]);
    const [first] = sendMessageBatch.mock.calls[0]!;
    expect(first.QueueUrl).toBe(QUEUE);
    expect(first.Entries[0]).toEqual({ Id: '0', MessageBody: JSON.stringify(letter(0)) });
    expect(new Set(first.Entries.map((entry) => entry.Id)).size).toBe(10);
  });

  it('throws when SQS refuses a message, so the projector reports the record and it comes again', async () => {
    const sendMessageBatch = async () => ({ Failed: [{ Id: '0', Code: 'KMS.ThrottlingException', Message: 'slow down' }] });
    await expect(new SqsDeadLetters({ sendMessageBatch }, QUEUE).setAside([letter(1)])).rejects.toThrow(/KMS.ThrottlingException/);
  });

  it('leaves out an image too large for a message, keeping where the record is', async () => {
    const sendMessageBatch = vi.fn<SqsBatchSender['sendMessageBatch']>(async () => ({}));
    await new SqsDeadLetters({ sendMessageBatch }, QUEUE).setAside([letter(7, { data: { S: 'x'.repeat(300_000) } })]);
    const body = JSON.parse(sendMessageBatch.mock.calls[0]![0].Entries[0]!.MessageBody) as Record<string, unknown>;
    const { image: _image, ...rest } = letter(7);
    expect(body).toEqual({ ...rest, imageOmitted: true });
  });
});

describe('LoggedDeadLetters', () => {
  it('logs each letter whole as an error', async () => {
    const error = vi.spyOn(logger, 'error');
    await new LoggedDeadLetters().setAside([letter(1), letter(2)]);
    expect(error.mock.calls).toEqual([
      ['Stream record set aside', { deadLetter: letter(1) }],
      ['Stream record set aside', { deadLetter: letter(2) }],
    ]);
    error.mockRestore();
  });
});
