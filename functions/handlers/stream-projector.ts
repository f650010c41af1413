import type { DynamoDBStreamEvent } from 'aws-lambda';
import { z } from 'zod';
import { PgReadModelWriter, TelemetryRetentionEnv } from '../adapters/pg-read-models.js';
import { projectStream } from '../app/project-stream.js';
import { createPool } from '../platform/database.js';
import { DatabaseEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';

/** StreamProjector: the event log's stream → the PostgreSQL read models. */
const env = loadEnv(z.intersection(DatabaseEnv, TelemetryRetentionEnv));
const writer = new PgReadModelWriter(createPool(env), { telemetryRetentionDays: env.TELEMETRY_RETENTION_DAYS });

export const handler = lambdaHandler((event: DynamoDBStreamEvent) => projectStream(event, writer));
