import { marshall } from '@aws-sdk/util-dynamodb';
import type { AttributeValue, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { StreamChange } from './recording-event-log.js';

const STREAM_ARN = 'arn:aws:dynamodb:eu-west-1:123456789012:table/event-log/stream/2026-11-01T00:00:00.000';

/**
 * Turns item writes into DynamoDB stream records shaped as Lambda delivers them (NEW_IMAGE), with sequence numbers
 * that grow like a shard's.
 */
export class StreamRecords {
  private next = 0n;

  record(change: StreamChange): DynamoDBRecord {
    this.next += 1n;
    const image = marshall(change.item, { removeUndefinedValues: true }) as unknown as Record<string, AttributeValue>;
    const { robotId, seq } = image;
    return {
      eventID: `event-${this.next}`,
      eventName: change.eventName,
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: 'eu-west-1',
      eventSourceARN: STREAM_ARN,
      dynamodb: {
        ApproximateCreationDateTime: 1_800_000_000,
        Keys: { ...(robotId ? { robotId } : {}), ...(seq ? { seq } : {}) },
        NewImage: image,
        SequenceNumber: (10n ** 20n + this.next).toString(),
        SizeBytes: JSON.stringify(image).length,
        StreamViewType: 'NEW_IMAGE',
      },
    };
  }

  records(changes: readonly StreamChange[]): DynamoDBRecord[] {
    return changes.map((change) => this.record(change));
  }
}

export function streamEvent(records: readonly DynamoDBRecord[]): DynamoDBStreamEvent {
  return { Records: [...records] };
}
