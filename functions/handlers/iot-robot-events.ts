import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { reportIngest } from '../app/ingest/report-ingest.js';
import { recordRobotEvent } from '../app/ingest/record-robot-event.js';
import { EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * Facts the agent reports (events rule) → the event log, once each.
 * IoT invokes this asynchronously: an invalid message is reported and dropped (a retry could never succeed), while
 * a DynamoDB error or a robot too busy to write throws so Lambda's retries and the dead-letter queue take over.
 */
const env = loadEnv(EventLogEnv);
const log = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });

export const handler = lambdaHandler(async (payload: unknown): Promise<void> => {
  reportIngest('RobotEvent', await recordRobotEvent({ log, now: () => new Date() }, payload));
});
