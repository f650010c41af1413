import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { authorizeConnection } from '../app/live/authorize-connection.js';
import { AuthEnv, createTokenVerifier } from '../platform/auth.js';
import { loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';

/** The WebSocket API's `$connect` authorizer (REQUEST type, identity source `route.request.querystring.token`). */
const verify = createTokenVerifier(loadEnv(AuthEnv));

export const handler = lambdaHandler(
  (event: APIGatewayRequestAuthorizerEvent): Promise<APIGatewayAuthorizerResult> => authorizeConnection(verify, event),
);
