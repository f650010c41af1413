import { ApiGatewayManagementApiClient } from '@aws-sdk/client-apigatewaymanagementapi';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { z } from 'zod';
import { DynamoConnections } from '../adapters/dynamo-connections.js';
import { ApiGatewayNotifier } from '../adapters/websocket-notifier.js';
import { broadcastDeploymentChanges } from '../adapters/stream-consumers.js';
import { ConnectionsEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * The deployments table's stream (heads only: DEPLOYMENT_HEAD_RECORD_PATTERNS) → `DeploymentChanged` on every
 * WebSocket connection subscribed to `*` (issue 12). Partial batch failures on.
 */
const env = loadEnv(
  ConnectionsEnv.extend({
    /** The WebSocket stage's management endpoint, `https://<api>.execute-api.<region>.amazonaws.com/<stage>`. */
    WS_ENDPOINT: z.url(),
    BROADCAST_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(16),
  }),
);
const connections = new DynamoConnections({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.CONNECTIONS_TABLE });
const notifier = new ApiGatewayNotifier(tracer.captureAWSv3Client(new ApiGatewayManagementApiClient({ endpoint: env.WS_ENDPOINT })));

export const handler = lambdaHandler(
  (event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> =>
    broadcastDeploymentChanges(event.Records, { connections, notifier, concurrency: env.BROADCAST_CONCURRENCY }),
);
