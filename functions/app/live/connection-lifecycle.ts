import { logger, metrics, MetricUnit } from '../../platform/observability.js';
import type { ConnectionStore } from './ports.js';
import { fromAuthorizerContext } from './connection-principal.js';

/**
 * `$connect`, after the authorizer admitted the user: remember who is on the connection. Any status other than 2xx
 * refuses the connection.
 */
export async function openConnection(
  store: ConnectionStore,
  connectionId: string,
  authorizerContext: unknown,
  now: Date,
): Promise<{ statusCode: number }> {
  const principal = fromAuthorizerContext(authorizerContext);
  if (!principal) {
    logger.error('$connect reached without an authorizer context; is the authorizer attached to the route?', { connectionId });
    return { statusCode: 401 };
  }
  await store.add({ connectionId, userId: principal.userId, roles: principal.roles, connectedAt: now });
  logger.info('WebSocket connected', { connectionId, userId: principal.userId });
  metrics.addMetric('Connected', MetricUnit.Count, 1);
  return { statusCode: 200 };
}

/** `$disconnect` (best effort on API Gateway's side: a missed one is caught by a 410 or the TTL). */
export async function closeConnection(store: ConnectionStore, connectionId: string): Promise<{ statusCode: number }> {
  await store.remove(connectionId);
  logger.info('WebSocket disconnected', { connectionId });
  metrics.addMetric('Disconnected', MetricUnit.Count, 1);
  return { statusCode: 200 };
}
