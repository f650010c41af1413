import type { _Record as StreamsRecord } from '@aws-sdk/client-dynamodb-streams';
import { describe, expect, it } from 'vitest';
import { toLambdaRecord } from '../../local/stream-records.js';

const source = { eventSourceARN: 'arn:aws:dynamodb:eu-west-1:123456789012:table/events/stream/2026-11-22T00:00:00.000', awsRegion: 'eu-west-1' };

describe('toLambdaRecord', () => {
  it('turns an SDK stream record into the JSON record Lambda hands a function', () => {
    // Given a TTL removal as the SDK returns it: binary as bytes, the time as a Date, an empty map as `{}`
    const record = {
      eventID: 'e-1',
      eventName: 'REMOVE',
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: 'ddblocal',
      userIdentity: { Type: 'Service', PrincipalId: 'dynamodb.amazonaws.com' },
      dynamodb: {
        ApproximateCreationDateTime: new Date('2026-11-22T10:00:05.000Z'),
        Keys: { pk: { S: 'robot' } },
        OldImage: {
          pk: { S: 'robot' },
          blob: { B: new Uint8Array([1, 2, 3]) },
          blobs: { BS: [new Uint8Array([255])] },
          nested: { L: [{ M: { ok: { BOOL: true } } }, {}] },
          nothing: { NULL: true },
          numbers: { NS: ['1', '2'] },
        },
        SequenceNumber: '42',
        SizeBytes: 77,
        StreamViewType: 'OLD_IMAGE',
      },
    } as unknown as StreamsRecord;

    // When converted
    const lambda = toLambdaRecord(record, source);

    // Then
    expect(lambda).toEqual({
      eventID: 'e-1',
      eventName: 'REMOVE',
      eventVersion: '1.1',
      eventSource: 'aws:dynamodb',
      awsRegion: 'eu-west-1',
      eventSourceARN: source.eventSourceARN,
      userIdentity: { type: 'Service', principalId: 'dynamodb.amazonaws.com' },
      dynamodb: {
        ApproximateCreationDateTime: 1795341605,
        Keys: { pk: { S: 'robot' } },
        OldImage: {
          pk: { S: 'robot' },
          blob: { B: 'AQID' },
          blobs: { BS: ['/w=='] },
          nested: { L: [{ M: { ok: { BOOL: true } } }, { M: {} }] },
          nothing: { NULL: true },
          numbers: { NS: ['1', '2'] },
        },
        SequenceNumber: '42',
        SizeBytes: 77,
        StreamViewType: 'OLD_IMAGE',
      },
    });
    expect(JSON.parse(JSON.stringify(lambda))).toEqual(lambda);
  });
});
