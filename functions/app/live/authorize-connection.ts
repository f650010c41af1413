import type { APIGatewayAuthorizerResult } from 'aws-lambda';
import { hasRole, InvalidToken, type TokenVerifier } from '../../platform/auth.js';
import { logger, metrics, MetricUnit } from '../../platform/observability.js';
import { toAuthorizerContext } from './connection-principal.js';

export interface ConnectRequest {
  readonly methodArn: string;
  readonly queryStringParameters?: Readonly<Record<string, string | undefined>> | null;
}

/** API Gateway answers 401 when an authorizer fails with exactly this message. */
export const UNAUTHORIZED = 'Unauthorized';

/**
 * The `$connect` authorizer: `?token=<jwt>` (browsers cannot set headers on a WebSocket). A missing or invalid token
 * is a 401; a valid token without any fleet role is a 403 (any role may watch the fleet). The client learns nothing
 * more; the reason goes to the log.
 */
export async function authorizeConnection(verify: TokenVerifier, request: ConnectRequest): Promise<APIGatewayAuthorizerResult> {
  const token = request.queryStringParameters?.token;
  if (!token) return reject('no token');
  let principal;
  try {
    principal = await verify(token);
  } catch (error) {
    if (!(error instanceof InvalidToken)) throw error;
    const cause = error.cause instanceof Error ? error.cause : error;
    // Keys that cannot be fetched lock everyone out: that is ours to fix, not the client's.
    if (cause.name.includes('Fetch')) logger.error('Could not fetch the token signing keys (JWKS)', { error: cause });
    return reject(`${cause.name}: ${cause.message}`);
  }
  if (!hasRole(principal.roles, 'operator')) {
    logger.info('WebSocket connection denied: no fleet role', { userId: principal.userId });
    metrics.addMetric('ConnectDenied', MetricUnit.Count, 1);
    return policy(principal.userId, 'Deny', request.methodArn);
  }
  metrics.addMetric('ConnectAllowed', MetricUnit.Count, 1);
  return { ...policy(principal.userId, 'Allow', request.methodArn), context: toAuthorizerContext(principal) };
}

function reject(reason: string): never {
  logger.info('WebSocket connection refused: no valid token', { reason: reason.slice(0, 300) });
  metrics.addMetric('ConnectUnauthorized', MetricUnit.Count, 1);
  throw new Error(UNAUTHORIZED);
}

function policy(principalId: string, effect: 'Allow' | 'Deny', resource: string): APIGatewayAuthorizerResult {
  return {
    principalId,
    policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: resource }] },
  };
}
