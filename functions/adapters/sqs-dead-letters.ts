import type { DeadLetter, DeadLetters } from '../app/dead-letters.js';

/**
 * The one call of `@aws-sdk/client-sqs` this adapter makes, typed structurally: its aggregated `SQS` client
 * (`new SQS({})`) fits as is, and unit tests pass a fake.
 */
export interface SqsBatchSender {
  sendMessageBatch(input: {
    QueueUrl: string;
    Entries: { Id: string; MessageBody: string }[];
  }): Promise<{ Failed?: { Id?: string | undefined; Code?: string | undefined; Message?: string | undefined }[] | undefined }>;
}

/** SendMessageBatch takes at most 10 messages, and a message at most 256 KiB. */
const BATCH_LIMIT = 10;
const MESSAGE_LIMIT_BYTES = 256 * 1024;

/**
 * Dead letters as messages of an SQS queue, one per record (JSON of the DeadLetter). A record image too large for a
 * message is left out (`imageOmitted`); the keys and sequence number still say where it is in the log and stream.
 * Any message SQS refuses makes the whole call throw, so the projector reports the records as failed and they come
 * again: a letter may then be sent twice, never not at all (its sequenceNumber tells duplicates apart).
 */
export class SqsDeadLetters implements DeadLetters {
  constructor(
    private readonly sqs: SqsBatchSender,
    private readonly queueUrl: string,
  ) {}

  async setAside(letters: readonly DeadLetter[]): Promise<void> {
    for (let start = 0; start < letters.length; start += BATCH_LIMIT) {
      const entries = letters.slice(start, start + BATCH_LIMIT).map((letter, index) => ({ Id: String(index), MessageBody: messageBody(letter) }));
      const { Failed } = await this.sqs.sendMessageBatch({ QueueUrl: this.queueUrl, Entries: entries });
      if (Failed && Failed.length > 0) {
        const reasons = Failed.map((failure) => `${failure.Code ?? 'error'}: ${failure.Message ?? ''}`).join('; ');
        throw new Error(`SQS refused ${Failed.length} of ${entries.length} dead letters (${reasons})`);
      }
    }
  }
}

function messageBody(letter: DeadLetter): string {
  const body = JSON.stringify(letter);
  if (Buffer.byteLength(body, 'utf8') <= MESSAGE_LIMIT_BYTES) return body;
  const { image: _image, ...rest } = letter;
  const reason = rest.reason.length > 10_000 ? `${rest.reason.slice(0, 10_000)}…` : rest.reason;
  return JSON.stringify({ ...rest, reason, imageOmitted: true });
}
