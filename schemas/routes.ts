/**
 * The API Gateway route keys, defined once: infra declares these routes, the http-api Lambda's route table
 * (functions/app/http/routes.ts) must handle exactly these, and the local gateways match on them.
 */
export const HTTP_ROUTE_KEYS = [
  'GET /api/v2/robots',
  'GET /api/v2/robots/healthy',
  'GET /api/v2/robots/deployable',
  'GET /api/v2/robots/{id}',
  'GET /api/v2/robots/{id}/events',
  'GET /api/v2/robots/{id}/telemetry',
  'GET /api/v2/metrics',
  'POST /api/v2/robots/{id}/fail',
  'POST /api/v2/robots/{id}/recover',
  'POST /api/v2/discover',
  'POST /api/v2/robots/{id}/rotate-certificate',
  'GET /api/v2/openapi.json',
  'POST /api/v2/deployments',
  'GET /api/v2/deployments',
  'GET /api/v2/deployments/{id}',
  'POST /api/v2/deployments/{id}/pause',
  'POST /api/v2/deployments/{id}/resume',
  'POST /api/v2/deployments/{id}/cancel',
  'POST /api/v2/deployments/{id}/rollback',
] as const;
export type HttpRouteKey = (typeof HTTP_ROUTE_KEYS)[number];

export type HttpMethod = 'GET' | 'POST';

/** `GET /api/v2/robots/{id}` as its method and path. */
export function splitRouteKey(routeKey: HttpRouteKey): { readonly method: HttpMethod; readonly path: string } {
  const [method, path] = routeKey.split(' ') as [HttpMethod, string];
  return { method, path };
}
