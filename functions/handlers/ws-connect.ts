import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { APIGatewayEventWebsocketRequestContextV2, APIGatewayProxyWebsocketEventV2WithRequestContext } from 'aws-lambda';
import { DynamoConnections } from '../adapters/dynamo-connections.js';
import { openConnection } from '../app/live/connection-lifecycle.js';
import { ConnectionsEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/** `$connect`: the authorizer has admitted the user; remember the connection until API Gateway closes it. */
type ConnectEvent = APIGatewayProxyWebsocketEventV2WithRequestContext<
  APIGatewayEventWebsocketRequestContextV2 & { readonly authorizer?: unknown }
>;

const env = loadEnv(ConnectionsEnv);
const connections = new DynamoConnections({
  client: tracer.captureAWSv3Client(new DynamoDBClient({})),
  tableName: env.CONNECTIONS_TABLE,
});

export const handler = lambdaHandler((event: ConnectEvent) =>
  openConnection(
    connections,
    event.requestContext.connectionId,
    event.requestContext.authorizer,
    new Date(event.requestContext.connectedAt),
  ),
);
