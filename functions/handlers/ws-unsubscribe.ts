import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyWebsocketEventV2 } from 'aws-lambda';
import { DynamoConnections } from '../adapters/dynamo-connections.js';
import { changeSubscriptions } from '../app/live/subscriptions.js';
import { ConnectionsEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/** The `unsubscribe` route (`{"action":"unsubscribe","robotIds":[...]}`); its route response carries the reply. */
const env = loadEnv(ConnectionsEnv);
const connections = new DynamoConnections({
  client: tracer.captureAWSv3Client(new DynamoDBClient({})),
  tableName: env.CONNECTIONS_TABLE,
});

export const handler = lambdaHandler((event: APIGatewayProxyWebsocketEventV2) =>
  changeSubscriptions(connections, event.requestContext.connectionId, 'unsubscribe', event.body),
);
