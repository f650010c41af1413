import type { _Record as KinesisApiRecord } from '@aws-sdk/client-kinesis';
import type { KinesisStreamRecord } from 'aws-lambda';

/**
 * A record from the Kinesis API (GetRecords, as the SDK returns it) turned into the record Lambda's Kinesis event
 * source mapping hands a function: the data as base64, the arrival time as epoch seconds, and the fields the API's
 * records do not carry (event source, the stream ARN, region, the function's role) added, as Lambda does.
 */
export interface KinesisRecordSource {
  readonly eventSourceARN: string;
  readonly awsRegion: string;
  /** The function's execution role, as Lambda puts it in every record. */
  readonly invokeIdentityArn: string;
  readonly shardId: string;
}

export function toLambdaKinesisRecord(record: KinesisApiRecord, source: KinesisRecordSource): KinesisStreamRecord {
  const sequenceNumber = record.SequenceNumber ?? '';
  return {
    kinesis: {
      kinesisSchemaVersion: '1.0',
      partitionKey: record.PartitionKey ?? '',
      sequenceNumber,
      data: Buffer.from(record.Data ?? new Uint8Array()).toString('base64'),
      approximateArrivalTimestamp: (record.ApproximateArrivalTimestamp?.getTime() ?? 0) / 1000,
    },
    eventSource: 'aws:kinesis',
    eventVersion: '1.0',
    eventID: `${source.shardId}:${sequenceNumber}`,
    eventName: 'aws:kinesis:record',
    invokeIdentityArn: source.invokeIdentityArn,
    awsRegion: source.awsRegion,
    eventSourceARN: source.eventSourceARN,
  };
}

/** The record's sequence number, which `batchItemFailures` names it by. */
export const kinesisSequenceNumber = (record: KinesisStreamRecord): string => record.kinesis.sequenceNumber;

/** Compares two Kinesis sequence numbers (decimal strings of up to 128 bits: too big for Number). */
export function compareSequenceNumbers(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The data of a record handed to a function, decoded as the UTF-8 JSON the IoT rule put in. */
export function kinesisRecordJson(record: KinesisStreamRecord): unknown {
  return JSON.parse(Buffer.from(record.kinesis.data, 'base64').toString('utf8'));
}
