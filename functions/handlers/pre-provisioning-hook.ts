import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import type { PreProvisioningHookResponse } from '../../schemas/index.js';
import { DynamoProvisioningClaims } from '../adapters/dynamo-factory-registry.js';
import { preProvisioningHook } from '../app/provisioning/pre-provisioning-hook.js';
import { EventLogEnv, FactoryEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { logger, metrics, MetricUnit, tracer } from '../platform/observability.js';

/**
 * PreProvisioningHook: AWS IoT calls it on every RegisterThing of the fleet provisioning template and provisions the
 * robot only on `allowProvisioning: true`. The factory table says which serials and claim certificates may be
 * admitted; the event log says whether the robot already holding a serial is online (then a second robot is refused),
 * and records an admission as the robot's RobotProvisioned, in the same transaction as the claim. IoT tells a refused
 * robot only ACCESS_DENIED, so every decision is logged with its reason and counted.
 */
const env = loadEnv(z.intersection(FactoryEnv, EventLogEnv));
const client = tracer.captureAWSv3Client(new DynamoDBClient({}));
const claims = new DynamoProvisioningClaims({ client, factoryTable: env.FACTORY_TABLE, eventLogTable: env.EVENT_LOG_TABLE });

export const handler = lambdaHandler(async (event: unknown): Promise<PreProvisioningHookResponse> => {
  const { response, decision } = await preProvisioningHook({ claims, now: () => new Date() }, event);
  if (decision.allow) {
    logger.info('provisioning admitted', { ...decision });
    metrics.addMetric('ProvisioningAdmitted', MetricUnit.Count, 1);
    if (decision.claim === 'reimage') metrics.addMetric('ProvisioningReimaged', MetricUnit.Count, 1);
  } else {
    logger.warn('provisioning refused', { ...decision });
    metrics.addMetric('ProvisioningRefused', MetricUnit.Count, 1);
    metrics.addMetric(decision.reason, MetricUnit.Count, 1);
  }
  return response;
});
