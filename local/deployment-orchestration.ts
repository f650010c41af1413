import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { DynamoDeploymentStore } from '../functions/adapters/dynamo-deployments.js';
import { DynamoEventLog } from '../functions/adapters/dynamo-event-log.js';
import { parseStreamRecord } from '../functions/adapters/event-log-items.js';
import { PgFleetQueries } from '../functions/adapters/pg-fleet-queries.js';
import { newDeploymentId } from '../functions/app/deployments/deployment-ids.js';
import type { JobsControl } from '../functions/app/deployments/jobs-control.js';
import { streamDeploymentOrchestrator } from '../functions/app/deployments/on-robot-update.js';
import type { OrchestratorDependencies, ReleaseSource } from '../functions/app/deployments/orchestrator.js';
import { queueRobotUpdate } from '../functions/app/deployments/queue-update.js';
import { createHttpApi, type HttpApiEvent, type HttpApiResult } from '../functions/app/http/http-api.js';
import type { RobotCommandChannel } from '../functions/app/ports.js';
import { createPool } from '../functions/platform/database.js';

/**
 * The deployment use cases on the local cloud's parts (issue 12): the deployments table in DynamoDB Local, the local
 * IoT Jobs as `JobsControl`, the local artifact store as the release source. In AWS the http-api and
 * deployment-orchestrator Lambdas build the same from the environment (functions/adapters/deployment-dependencies.ts);
 * here the control plane is in-process, so the deployment routes and the stream consumer are wired to it directly.
 * IoT Jobs starts after the stream consumers: until it is up, a step fails and the poller retries it.
 */
export interface LocalDeploymentsOptions {
  readonly dynamoClient: DynamoDBClient;
  readonly eventLogTable: string;
  readonly deploymentsTable: string;
  readonly databaseUrl: string;
  readonly releases: ReleaseSource;
  /** The local IoT Jobs once it is open (undefined before). */
  readonly jobs: () => JobsControl | undefined;
  readonly robotCommands: RobotCommandChannel;
}

export interface LocalDeployments {
  /** The deployment-orchestrator Lambda's stream handler. */
  readonly orchestrator: (event: DynamoDBStreamEvent) => Promise<DynamoDBBatchResponse>;
  /** `/api/v2/deployments…` (the http-api Lambda's routes, with the local deployments wired in). */
  readonly httpApi: (event: HttpApiEvent) => Promise<HttpApiResult>;
  readonly stop: () => Promise<void>;
}

export function localDeployments(options: LocalDeploymentsOptions): LocalDeployments {
  const eventLog = new DynamoEventLog({ client: options.dynamoClient, tableName: options.eventLogTable });
  const now = () => new Date();
  const jobs = (): JobsControl => {
    const control = options.jobs();
    if (!control) throw new Error('the local IoT Jobs is not up yet');
    return control;
  };
  const deps: OrchestratorDependencies = {
    store: new DynamoDeploymentStore({ client: options.dynamoClient, tableName: options.deploymentsTable }),
    jobs: {
      createJob: (spec) => jobs().createJob(spec),
      describeJob: (jobId) => jobs().describeJob(jobId),
      cancelJob: (jobId, cancel) => jobs().cancelJob(jobId, cancel),
      listExecutions: (jobId) => jobs().listExecutions(jobId),
      cancelExecution: (jobId, thingName, cancel) => jobs().cancelExecution(jobId, thingName, cancel),
    },
    releases: options.releases,
    queueUpdate: async ({ robotId, data }) => {
      await queueRobotUpdate({ eventLog, now }, robotId, data);
    },
    now,
  };
  // One connection, as every local handler: PGlite's socket interleaves two connections' unnamed prepared statements
  // ("unnamed prepared statement does not exist" when a deployment looks its targets up 16 at a time).
  const pool = createPool({ DATABASE_URL: options.databaseUrl });
  const queries = new PgFleetQueries(pool);
  const orchestrate = streamDeploymentOrchestrator(parseStreamRecord);
  return {
    orchestrator: (event) => orchestrate(event.Records, deps),
    httpApi: createHttpApi({
      queries,
      eventLog,
      robotCommands: options.robotCommands,
      now,
      newEventId: randomUUID,
      deployments: { ...deps, fleet: queries, newDeploymentId: () => newDeploymentId(new Date()) },
    }),
    stop: () => pool.end(),
  };
}

/** Whether an HTTP API event is for one of the deployment routes. */
export function isDeploymentRoute(event: { readonly routeKey: string }): boolean {
  return / \/api\/v2\/deployments(\/|$)/.test(event.routeKey);
}
