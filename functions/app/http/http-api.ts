import type {
  APIGatewayEventRequestContextV2,
  APIGatewayProxyEventV2WithRequestContext,
  APIGatewayProxyStructuredResultV2,
} from 'aws-lambda';
import type { ApiError } from '../../../schemas/index.js';
import { countInvalid, logger, metrics, MetricUnit } from '../../platform/observability.js';
import { callerFromClaims, requireRole, type JwtClaims } from './auth.js';
import { HttpError, internalError, toHttpError } from './errors.js';
import type { ApiRequest } from './request.js';
import { matchRoute, methodsForPath } from './route-match.js';
import { isRouteKey, ROUTE_KEYS, ROUTES, type Route, type RouteDependencies, type RouteKey } from './routes.js';

/**
 * An HTTP API (payload format 2.0) event. The authorizer is optional on purpose: API Gateway's JWT authorizer fills
 * it, and a request that somehow arrives without it must be refused here rather than trusted.
 */
export type HttpApiEvent = APIGatewayProxyEventV2WithRequestContext<
  APIGatewayEventRequestContextV2 & { authorizer?: { jwt?: { claims?: JwtClaims; scopes?: readonly string[] | null } } }
>;

export type HttpApiResult = APIGatewayProxyStructuredResultV2 & { statusCode: number; body: string };

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' } as const;

/**
 * `/api/v2` as one function of the event: authenticate (401), route (404/405), authorize (403), validate (400), run.
 * Every answer is JSON; every failure has the `{ error: { code, message, details } }` shape.
 */
export function createHttpApi(deps: RouteDependencies) {
  return async function handleHttpApi(event: HttpApiEvent): Promise<HttpApiResult> {
    try {
      const caller = callerFromClaims(event.requestContext.authorizer?.jwt?.claims);
      const { routeKey, pathParameters } = resolveRoute(event);
      const route: Route = ROUTES[routeKey];
      requireRole(caller, route.role);
      const request: ApiRequest = {
        routeKey,
        caller,
        pathParameters,
        query: event.queryStringParameters ?? {},
        headers: lowerCaseKeys(event.headers ?? {}),
        body: event.body !== undefined && event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body,
      };
      return respond(route.status ?? 200, await route.handle(request, deps));
    } catch (error) {
      return failure(error, event);
    }
  };
}

/**
 * The route API Gateway matched, when the API declares each route; otherwise (a `$default` or `{proxy+}` route) the
 * same matching done here on the path.
 */
function resolveRoute(event: HttpApiEvent): { routeKey: RouteKey; pathParameters: Readonly<Record<string, string | undefined>> } {
  if (isRouteKey(event.routeKey)) return { routeKey: event.routeKey, pathParameters: event.pathParameters ?? {} };
  const method = event.requestContext.http.method;
  const path = withoutStage(event.rawPath, event.requestContext.stage);
  const match = matchRoute(ROUTE_KEYS, method, path);
  if (match && isRouteKey(match.routeKey)) return { routeKey: match.routeKey, pathParameters: match.pathParameters };
  const allowed = methodsForPath(ROUTE_KEYS, path);
  if (allowed.length > 0) {
    throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not supported on ${path}; use ${allowed.join(' or ')}.`, null, {
      allow: allowed.join(', '),
    });
  }
  throw new HttpError(404, 'ROUTE_NOT_FOUND', `There is no ${method} ${path} in this API.`);
}

/** On a named stage API Gateway keeps the stage in the raw path (`/prod/api/v2/...`); `$default` has none. */
function withoutStage(path: string, stage: string): string {
  const prefix = `/${stage}`;
  return stage !== '$default' && (path === prefix || path.startsWith(`${prefix}/`)) ? path.slice(prefix.length) || '/' : path;
}

function failure(error: unknown, event: HttpApiEvent): HttpApiResult {
  const known = toHttpError(error);
  if (known && known.status < 500) {
    if (known.status === 400) countInvalid('HttpRequest');
    return errorResponse(known);
  }
  if (known) {
    metrics.addMetric('HttpApiUnavailable', MetricUnit.Count, 1);
    logger.warn('HTTP API answered unavailable', { routeKey: event.routeKey, path: event.rawPath, error: known.message });
    return errorResponse(known);
  }
  metrics.addMetric('HttpApiServerError', MetricUnit.Count, 1);
  logger.error('HTTP API request failed', { routeKey: event.routeKey, path: event.rawPath, error: error as Error });
  return errorResponse(internalError());
}

function errorResponse(error: HttpError): HttpApiResult {
  const body: ApiError = { error: { code: error.code, message: error.message, details: error.details } };
  return respond(error.status, body, error.headers);
}

function respond(statusCode: number, body: unknown, headers: Readonly<Record<string, string>> = {}): HttpApiResult {
  return { statusCode, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

function lowerCaseKeys(headers: Readonly<Record<string, string | undefined>>): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}
