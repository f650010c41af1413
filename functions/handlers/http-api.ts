import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { z } from 'zod';
import { awsOrchestratorDependencies, DeploymentsEnv } from '../adapters/deployment-dependencies.js';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { newDeploymentId } from '../app/deployments/deployment-ids.js';
import { IotDataPublisher } from '../adapters/iot-data-publisher.js';
import { PgFleetQueries } from '../adapters/pg-fleet-queries.js';
import { createHttpApi } from '../app/http/http-api.js';
import { createPool } from '../platform/database.js';
import { DatabaseEnv, EventLogEnv, IotDataEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * HttpApi: every `/api/v2` route (API Gateway HTTP API, payload format 2.0, Cognito JWT authorizer). Reads come from
 * the PostgreSQL read models, commands go through the event log, commands to robots through IoT Core's data plane.
 * Routing, auth and errors live in app/http.
 */
const env = loadEnv(z.intersection(z.intersection(DatabaseEnv, EventLogEnv), IotDataEnv));
// Deployments (issue 12) where the environment names their table; without it their routes answer 503.
const deploymentsEnv = DeploymentsEnv.safeParse(process.env);
const queries = new PgFleetQueries(createPool(env));
const eventLog = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });

export const handler = lambdaHandler(
  createHttpApi({
    queries,
    eventLog,
    robotCommands: new IotDataPublisher(
      tracer.captureAWSv3Client(new IoTDataPlaneClient(env.IOT_DATA_ENDPOINT ? { endpoint: env.IOT_DATA_ENDPOINT } : {})),
    ),
    now: () => new Date(),
    newEventId: randomUUID,
    deployments: deploymentsEnv.success
      ? { ...awsOrchestratorDependencies(deploymentsEnv.data, eventLog), fleet: queries, newDeploymentId: () => newDeploymentId(new Date()) }
      : undefined,
  }),
);
