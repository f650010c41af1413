import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyWebsocketEventV2 } from 'aws-lambda';
import { DynamoConnections } from '../adapters/dynamo-connections.js';
import { closeConnection } from '../app/live/connection-lifecycle.js';
import { ConnectionsEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/** `$disconnect`: forget the connection and everything it subscribed to. */
const env = loadEnv(ConnectionsEnv);
const connections = new DynamoConnections({
  client: tracer.captureAWSv3Client(new DynamoDBClient({})),
  tableName: env.CONNECTIONS_TABLE,
});

export const handler = lambdaHandler((event: APIGatewayProxyWebsocketEventV2) =>
  closeConnection(connections, event.requestContext.connectionId),
);
