import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { handleJobExecutionEvent } from '../app/deployments/job-events.js';
import { EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { logger, metrics, MetricUnit, tracer } from '../platform/observability.js';

/**
 * JobEvents: the IoT rule `heartbeat_job_events_<stage>` (schemas/deployments.ts JOB_EVENTS_RULE) invokes it
 * (asynchronously) with each of IoT Jobs' job execution events. A robot's execution that IoT Jobs ended without the
 * robot's word (timed out, canceled, removed, rejected) is recorded in the robot's log as RobotUpdateFailed
 * (functions/app/deployments/job-events.ts); everything else is counted and left.
 */
const env = loadEnv(EventLogEnv);
const eventLog = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });

export const handler = lambdaHandler(async (event: unknown) => {
  const outcome = await handleJobExecutionEvent(
    { eventLog, now: () => new Date(), log: (level, message, details) => logger[level](message, details) },
    event,
  );
  metrics.addMetric(`JobEvent${outcome.kind[0]!.toUpperCase()}${outcome.kind.slice(1)}`, MetricUnit.Count, 1);
  return outcome;
});
