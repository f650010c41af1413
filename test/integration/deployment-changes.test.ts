import { ApiGatewayManagementApiClient, PostToConnectionCommand } from '@aws-sdk/client-apigatewaymanagementapi';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { DynamoConnections } from '../../functions/adapters/dynamo-connections.js';
import { DynamoDeploymentStore } from '../../functions/adapters/dynamo-deployments.js';
import { createDeployment } from '../../functions/app/deployments/create-deployment.js';
import { newDeploymentId } from '../../functions/app/deployments/deployment-ids.js';
import { onRobotUpdate, type UpdateEvent } from '../../functions/app/deployments/on-robot-update.js';
import type { DeploymentDependencies } from '../../functions/app/deployments/orchestrator.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { startLocalIotJobs, type LocalIotJobs } from '../../local/iot-jobs/jobs-service.js';
import { startStreamPoller, type StreamPoller } from '../../local/stream-poller.js';
import { DeploymentChanged, WILDCARD, type ReleaseSummary, type RobotView } from '../../schemas/index.js';
import { DEPLOYMENT_HEAD_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { createTestConnectionsTable, createTestDeploymentsTable, streamsClient } from '../support/dynamo.js';
import { InMemoryFleetQueries } from '../support/fleet-queries-fake.js';
import { robotHistory } from '../support/read-model-seed.js';

/**
 * DeploymentChanged end to end on DynamoDB Local: the real deployment store writes the record, the table's own stream
 * (NEW_IMAGE, as local/tables.ts creates it) is read by the local stream poller with the mapping's filter, and the
 * stream-deployment-changes Lambda handler pushes to the connections table's `*` subscribers. API Gateway's
 * management API cannot run here: aws-sdk-client-mock records the PostToConnection calls.
 */

type Handler = (event: DynamoDBStreamEvent, context: ReturnType<typeof lambdaContext>) => Promise<DynamoDBBatchResponse>;

const api = mockClient(ApiGatewayManagementApiClient);
let deploymentsTable: Awaited<ReturnType<typeof createTestDeploymentsTable>>;
let connectionsTable: Awaited<ReturnType<typeof createTestConnectionsTable>>;
let store: DynamoDeploymentStore;
let jobs: LocalIotJobs;
let poller: StreamPoller;
const streams = streamsClient();

const RELEASE: ReleaseSummary = { version: '1.4.0', model: 'lekiwi', manifestSha256: 'b'.repeat(64), fileCount: 3, totalBytes: 300, createdAt: '2026-12-01T09:00:00.000Z' };
const ROBOTS = ['lekiwi-W0001', 'lekiwi-W0002', 'lekiwi-W0003'];

class Fleet extends InMemoryFleetQueries {
  override async getRobot(robotId: string): Promise<RobotView | null> {
    if (!ROBOTS.includes(robotId)) return null;
    const events = robotHistory(robotId, {});
    const view = toRobotView(fold(initialRobotState(robotId), events), events.length, null);
    return { ...view, software: { version: '1.3.0', update: null } } as RobotView;
  }
}

function deps(): DeploymentDependencies {
  return {
    store,
    jobs,
    releases: { getRelease: async (version) => (version === RELEASE.version ? { summary: RELEASE } : null) },
    queueUpdate: async () => {},
    fleet: new Fleet([]),
    now: () => new Date('2026-12-01T10:00:00.000Z'),
    newDeploymentId: () => newDeploymentId(new Date()),
  };
}

/** What was pushed: [connectionId, message] for each PostToConnection. */
function pushes(): Array<[string, DeploymentChanged]> {
  return api.commandCalls(PostToConnectionCommand).map((call) => {
    const input = call.args[0].input;
    return [input.ConnectionId as string, DeploymentChanged.parse(JSON.parse(new TextDecoder().decode(input.Data as Uint8Array)))];
  });
}

beforeAll(async () => {
  deploymentsTable = await createTestDeploymentsTable();
  connectionsTable = await createTestConnectionsTable();
  store = new DynamoDeploymentStore({ client: deploymentsTable.client, tableName: deploymentsTable.tableName });
  jobs = await startLocalIotJobs({ publish: async () => {}, log: () => {} });
  Object.assign(process.env, {
    CONNECTIONS_TABLE: connectionsTable.tableName,
    WS_ENDPOINT: 'https://abcdef1234.execute-api.eu-west-1.amazonaws.com/live',
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
  });
  const handler = (await import('../../functions/handlers/stream-deployment-changes.js')).handler as unknown as Handler;
  const described = await deploymentsTable.client.send(new DescribeTableCommand({ TableName: deploymentsTable.tableName }));
  expect(described.Table?.StreamSpecification).toEqual({ StreamEnabled: true, StreamViewType: 'NEW_IMAGE' });
  const connections = new DynamoConnections({ client: connectionsTable.client, tableName: connectionsTable.tableName });
  const connectedAt = new Date();
  for (const connectionId of ['fleet-1', 'robot-only']) await connections.add({ connectionId, userId: 'eve', roles: ['engineer'], connectedAt });
  await connections.subscribe('fleet-1', [WILDCARD], '1s');
  await connections.subscribe('robot-only', [ROBOTS[0] as string]);
  poller = startStreamPoller({
    client: streams,
    streamArn: described.Table?.LatestStreamArn as string,
    handler: (event) => handler(event, lambdaContext('test-deployment-changes')),
    filters: DEPLOYMENT_HEAD_RECORD_PATTERNS,
    bisectBatchOnFunctionError: true,
    maximumRetryAttempts: 2,
    log: () => {},
  });
});

afterAll(async () => {
  await poller?.stop();
  await jobs?.stop();
  await deploymentsTable?.drop();
  await connectionsTable?.drop();
  streams.destroy();
  api.restore();
});

beforeEach(() => {
  api.reset();
  api.on(PostToConnectionCommand).resolves({});
});

describe('DeploymentChanged from the deployments table’s stream', () => {
  it('pushes the new deployment, then exactly one message per committed decision, to `*` subscribers only', async () => {
    const d = deps();
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ROBOTS }, strategy: { canary: 2, batchSize: 5 } }, 'eve');
    await poller.idle({ timeoutMs: 30_000 });
    const created = pushes();
    expect(created.length).toBeGreaterThanOrEqual(1);
    expect(created.every(([connectionId]) => connectionId === 'fleet-1')).toBe(true);
    const latest = created.at(-1)?.[1];
    expect(latest).toMatchObject({ type: 'DeploymentChanged', deploymentId: head.deploymentId, state: 'running', counts: { targeted: 3, inProgress: 2, succeeded: 0 } });
    const stored = await store.read(head.deploymentId);
    expect(latest?.revision).toBe(stored?.revision);

    // When one canary robot's success is recorded (one committed decision)
    api.reset();
    api.on(PostToConnectionCommand).resolves({});
    const jobId = `${head.deploymentId}-b0`;
    const success: UpdateEvent = {
      eventId: 'e-success-1',
      robotId: ROBOTS[0] as string,
      at: '2026-12-01T10:05:00.000Z',
      version: 1,
      type: 'RobotUpdateSucceeded',
      data: { deploymentId: head.deploymentId, jobId, version: '1.4.0', kind: 'deploy', fromVersion: '1.3.0', filesFetched: 1, bytesFetched: 10, durationMs: 1000 },
    };
    expect(await onRobotUpdate(d, success)).toBe('recorded');
    await poller.idle({ timeoutMs: 30_000 });
    // Then the fleet watcher gets one DeploymentChanged, the next revision, with the success counted
    const after = pushes();
    expect(after.map(([connectionId, message]) => [connectionId, message.deploymentId, message.revision])).toEqual([['fleet-1', head.deploymentId, (latest?.revision ?? 0) + 1]]);
    expect(after[0]?.[1].counts).toMatchObject({ succeeded: 1, inProgress: 1 });

    // And a redelivered outcome, which commits nothing, pushes nothing
    api.reset();
    api.on(PostToConnectionCommand).resolves({});
    expect(await onRobotUpdate(d, success)).toBe('duplicate');
    await poller.idle({ timeoutMs: 30_000 });
    expect(pushes()).toEqual([]);
  });
});
