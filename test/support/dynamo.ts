import { randomUUID } from 'node:crypto';
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { inject } from 'vitest';
import { LOCAL_AWS } from '../../local/dynamodb-local.js';
import { createConnectionsTable, createDeploymentsTable, createEventLogTable } from '../../local/tables.js';

export function dynamoClient(): DynamoDBClient {
  return new DynamoDBClient({ ...LOCAL_AWS, endpoint: inject('dynamoEndpoint') });
}

export function streamsClient(): DynamoDBStreamsClient {
  return new DynamoDBStreamsClient({ ...LOCAL_AWS, endpoint: inject('dynamoEndpoint') });
}

/** A fresh event log table in the shared DynamoDB Local; `drop()` deletes it. */
export async function createTestEventLog(client = dynamoClient()) {
  const tableName = `event-log-${randomUUID()}`;
  const streamArn = await createEventLogTable(client, tableName);
  return { client, tableName, streamArn, drop: () => client.send(new DeleteTableCommand({ TableName: tableName })) };
}

export async function createTestConnectionsTable(client = dynamoClient()) {
  const tableName = `connections-${randomUUID()}`;
  await createConnectionsTable(client, tableName);
  return { client, tableName, drop: () => client.send(new DeleteTableCommand({ TableName: tableName })) };
}

/** A fresh deployments table (issue 12) in the shared DynamoDB Local; `drop()` deletes it. */
export async function createTestDeploymentsTable(client = dynamoClient()) {
  const tableName = `deployments-${randomUUID()}`;
  await createDeploymentsTable(client, tableName);
  return { client, tableName, drop: () => client.send(new DeleteTableCommand({ TableName: tableName })) };
}
