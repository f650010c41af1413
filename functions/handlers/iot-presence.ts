import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { reportIngest } from '../app/ingest/report-ingest.js';
import { recordPresence } from '../app/ingest/record-presence.js';
import { EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * IoT Core lifecycle events (presence rule) → the robot's presence in the event log.
 * IoT invokes this asynchronously: an invalid message is reported and dropped (a retry could never succeed), while
 * a DynamoDB error or a robot too busy to write throws so Lambda's retries and the dead-letter queue take over.
 */
const env = loadEnv(EventLogEnv);
const log = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });

export const handler = lambdaHandler(async (payload: unknown): Promise<void> => {
  reportIngest('Lifecycle', await recordPresence({ log, now: () => new Date() }, payload));
});
