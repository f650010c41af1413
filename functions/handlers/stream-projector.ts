import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQS } from '@aws-sdk/client-sqs';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { z } from 'zod';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { JsonLinesDeadLetters } from '../adapters/file-dead-letters.js';
import { SqsDeadLetters } from '../adapters/sqs-dead-letters.js';
import { PgReadModelWriter, TelemetryRetentionEnv } from '../adapters/pg-read-models.js';
import { LoggedDeadLetters } from '../app/dead-letters.js';
import { projectStream } from '../adapters/stream-consumers.js';
import { createPool } from '../platform/database.js';
import { DatabaseEnv, DeadLettersEnv, EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * StreamProjector: the event log's stream → the PostgreSQL read models. Events the stream lost are read back from
 * the event log (DynamoDB, through the VPC's gateway endpoint); records that do not parse are set aside.
 *
 * In AWS the dead letters go to the projector's dead-letter queue (alarmed, as is the `StreamRecordsSetAside`
 * metric); locally to a JSON-lines file under the state dir; with neither, to the log.
 */
const env = loadEnv(z.intersection(z.intersection(DatabaseEnv, TelemetryRetentionEnv), EventLogEnv.extend(DeadLettersEnv.shape)));
const writer = new PgReadModelWriter(createPool(env), { telemetryRetentionDays: env.TELEMETRY_RETENTION_DAYS });
const log = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });
const deadLetters = env.DEAD_LETTER_QUEUE_URL
  ? new SqsDeadLetters(tracer.captureAWSv3Client(new SQS({})), env.DEAD_LETTER_QUEUE_URL)
  : env.DEAD_LETTER_FILE
    ? new JsonLinesDeadLetters(env.DEAD_LETTER_FILE)
    : new LoggedDeadLetters();

export const handler = lambdaHandler((event: DynamoDBStreamEvent) => projectStream(event, writer, { log, deadLetters }));
