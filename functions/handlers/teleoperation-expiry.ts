import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { PgOfflineTeleoperations } from '../adapters/pg-offline-teleoperations.js';
import { expireOfflineTeleoperation, TeleoperationOfflineTimeoutEnv } from '../app/expire-offline-teleoperation.js';
import { createPool } from '../platform/database.js';
import { DatabaseEnv, EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { logger, tracer } from '../platform/observability.js';

/**
 * TeleoperationExpiry: run by a schedule (EventBridge, every minute; an interval in the local cloud). Closes, as
 * `robot-offline`, the teleoperation session of every robot offline for longer than
 * TELEOPERATION_OFFLINE_TIMEOUT_SECONDS (default 120), through the event log's command path.
 */
const env = loadEnv(z.intersection(z.intersection(DatabaseEnv, EventLogEnv), TeleoperationOfflineTimeoutEnv));
const finder = new PgOfflineTeleoperations(createPool(env));
const eventLog = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });

export const handler = lambdaHandler(async () => {
  const result = await expireOfflineTeleoperation({
    finder,
    eventLog,
    now: () => new Date(),
    timeoutMs: env.TELEOPERATION_OFFLINE_TIMEOUT_SECONDS * 1000,
  });
  if (result.closed.length > 0) logger.info('teleoperation sessions closed: robots offline too long', { robots: result.closed });
  // Each is tried again by the next run; a robot that keeps failing shows here every minute.
  if (result.failed.length > 0) logger.warn('teleoperation offline timeout: robots not decided', { failed: result.failed });
  return { candidates: result.candidates, closed: result.closed.length, failed: result.failed.length };
});
