import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { z } from 'zod';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { IotDataPublisher } from '../adapters/iot-data-publisher.js';
import { ingestChannelBatch, type ChannelRecord } from '../app/ingest/ingest-channel.js';
import { reportAckFailed, reportBatch, reportMessage } from '../app/ingest/report-ingest.js';
import { EventLogEnv, IotDataEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * RobotIngest: the ingest Kinesis stream (every robot's presence, telemetry and events, keyed by robot) → the event
 * log, then an acknowledgement to each robot of what the log holds. The event source mapping hands one batch per
 * shard at a time, so one robot's messages have one consumer; a robot whose messages could not be written is
 * reported as a batch item failure at its first unwritten message, and the mapping retries from there (what was
 * written is recognised and not written twice).
 */
const env = loadEnv(z.intersection(EventLogEnv, IotDataEnv));
const log = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });
const robots = new IotDataPublisher(
  tracer.captureAWSv3Client(new IoTDataPlaneClient(env.IOT_DATA_ENDPOINT ? { endpoint: env.IOT_DATA_ENDPOINT } : {})),
);

export const handler = lambdaHandler(async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
  const records: ChannelRecord[] = event.Records.map((record) => ({
    sequenceNumber: record.kinesis.sequenceNumber,
    partitionKey: record.kinesis.partitionKey,
    data: parseJson(Buffer.from(record.kinesis.data, 'base64').toString('utf8')),
  }));
  const result = await ingestChannelBatch(
    {
      log,
      robots,
      now: () => new Date(),
      onMessage: (message, record) => reportMessage(message, record.sequenceNumber),
      onAckFailed: reportAckFailed,
    },
    records,
  );
  reportBatch(result, records.length);
  return { batchItemFailures: result.failedSequenceNumbers.map((itemIdentifier) => ({ itemIdentifier })) };
});

/** The rules write JSON; anything else is reported as an invalid record by the use case, never retried. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
