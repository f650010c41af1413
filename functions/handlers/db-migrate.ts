import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import { z } from 'zod';
import { DEFAULT_MIGRATIONS_DIR, migrate } from '../adapters/pg-migrations.js';
import { createPool } from '../platform/database.js';
import { DatabaseEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { logger } from '../platform/observability.js';

const env = loadEnv(z.intersection(DatabaseEnv, z.object({ MIGRATIONS_DIR: z.string().min(1).default(DEFAULT_MIGRATIONS_DIR) })));
const pool = createPool(env);

/**
 * The migration step of a deploy: a custom resource (through the CDK Provider framework) whose properties carry a
 * hash of the migrations, so CloudFormation calls it on create and whenever a migration changes. A failure fails
 * the deploy, before any Lambda that needs the new schema goes live. Deleting the stack keeps the data.
 */
export const handler = lambdaHandler(async (event: CloudFormationCustomResourceEvent) => {
  const physicalResourceId = 'read-model-migrations';
  if (event.RequestType === 'Delete') return { PhysicalResourceId: physicalResourceId };
  const applied = await migrate(pool, env.MIGRATIONS_DIR);
  logger.info('read model migrations applied', { applied, requestType: event.RequestType });
  return { PhysicalResourceId: physicalResourceId, Data: { Applied: applied.join(',') || 'none' } };
});
