import {
  CreateTableCommand,
  DescribeTableCommand,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { CONNECTIONS_TABLE, createTableKeys, DEPLOYMENTS_TABLE, EVENT_LOG_TABLE, FACTORY_TABLE } from '../schemas/tables.js';

/** The tables infra/stacks/stateful-stack.ts declares, from the same keys (schemas/tables.ts), for DynamoDB Local. */
export async function createEventLogTable(client: DynamoDBClient, tableName: string): Promise<string> {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      ...createTableKeys(EVENT_LOG_TABLE),
      StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' },
    }),
  );
  const described = await client.send(new DescribeTableCommand({ TableName: tableName }));
  const streamArn = described.Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`Table ${tableName} has no stream`);
  return streamArn;
}

export async function createConnectionsTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      ...createTableKeys(CONNECTIONS_TABLE),
    }),
  );
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: CONNECTIONS_TABLE.timeToLiveAttribute, Enabled: true },
    }),
  );
}

/** The local cloud's factory table (in AWS: the stateful stack's, named in its outputs). */
export const LOCAL_FACTORY_TABLE = 'heartbeat-factory';

export async function createFactoryTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(
    new CreateTableCommand({ TableName: tableName, BillingMode: 'PAY_PER_REQUEST', ...createTableKeys(FACTORY_TABLE) }),
  );
}

/** The local cloud's deployments table (issue 12; in AWS: the stateful stack's). */
export const LOCAL_DEPLOYMENTS_TABLE = 'heartbeat-deployments';

/**
 * With its stream (NEW_IMAGE, as the stateful stack's): each head write becomes a DeploymentChanged push. Returns the
 * stream's ARN.
 */
export async function createDeploymentsTable(client: DynamoDBClient, tableName: string): Promise<string> {
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      ...createTableKeys(DEPLOYMENTS_TABLE),
      StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' },
    }),
  );
  return tableStream(client, tableName);
}

/** Switches the stream on for a deployments table a local state dir kept from before it had one; returns its ARN. */
export async function enableDeploymentsStream(client: DynamoDBClient, tableName: string): Promise<string> {
  await client.send(new UpdateTableCommand({ TableName: tableName, StreamSpecification: { StreamEnabled: true, StreamViewType: 'NEW_IMAGE' } }));
  return tableStream(client, tableName);
}

async function tableStream(client: DynamoDBClient, tableName: string): Promise<string> {
  const described = await client.send(new DescribeTableCommand({ TableName: tableName }));
  const streamArn = described.Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`Table ${tableName} has no stream`);
  return streamArn;
}
