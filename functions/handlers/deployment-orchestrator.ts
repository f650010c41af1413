import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { awsOrchestratorDependencies, DeploymentsEnv } from '../adapters/deployment-dependencies.js';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { parseStreamRecord } from '../adapters/event-log-items.js';
import { streamDeploymentOrchestrator } from '../app/deployments/on-robot-update.js';
import { EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * DeploymentOrchestrator (issue 12): the event log stream's robot update events (RobotUpdateQueued/Deferred/Started/
 * Succeeded/Failed/RolledBack; the mapping's filter delivers only those) → each deployment's record: outcomes counted
 * once, the canary gate, the next batch's IoT job, the abort threshold, rollbacks (functions/app/deployments/).
 * Partial batch failures on: the first record that fails comes again with what follows it. No polling loop.
 */
const env = loadEnv(EventLogEnv.extend(DeploymentsEnv.shape));
const eventLog = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });
const deps = awsOrchestratorDependencies(env, eventLog);
const orchestrate = streamDeploymentOrchestrator(parseStreamRecord);

export const handler = lambdaHandler((event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> => orchestrate(event.Records, deps));
