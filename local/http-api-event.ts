import { randomUUID } from 'node:crypto';
import type {
  APIGatewayEventRequestContextJWTAuthorizer,
  APIGatewayEventRequestContextV2,
  APIGatewayProxyEventV2WithRequestContext,
} from 'aws-lambda';
import { matchRoute } from '../functions/app/http/route-match.js';

/** A request as the local gateway (or a test) sees it, before API Gateway's shaping. */
export interface PlainHttpRequest {
  readonly method: string;
  /** The path, optionally with `?query` (then `query` is ignored). */
  readonly path: string;
  readonly query?: Readonly<Record<string, string | readonly string[]>>;
  readonly headers?: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** Text goes as is; bytes go base64-encoded with `isBase64Encoded`, as API Gateway does for binary bodies. */
  readonly body?: string | Uint8Array;
  readonly sourceIp?: string;
}

export interface HttpApiEventOptions {
  /** The API's route keys (`GET /api/v2/robots/{id}` …); a request matching none gets the `$default` route key. */
  readonly routeKeys: readonly string[];
  /** The authorizer's flattened claims; without them the event has no authorizer block (an unauthorized route). */
  readonly claims?: Readonly<Record<string, string>>;
  readonly scopes?: string[] | null;
  readonly stage?: string;
  readonly now?: Date;
}

/** A payload format 2.0 event, with the JWT authorizer block present when the route has an authorizer. */
export type HttpApiEventV2 = APIGatewayProxyEventV2WithRequestContext<
  APIGatewayEventRequestContextV2 & { authorizer?: APIGatewayEventRequestContextJWTAuthorizer }
>;

/**
 * Builds the event API Gateway HTTP APIs send to a Lambda integration (payload format 2.0): header names in lower
 * case with repeated values joined by commas, cookies moved to `cookies`, repeated query parameters joined by commas,
 * the matched route key and its path parameters, and the authorizer's claims under `requestContext.authorizer.jwt`.
 */
export function toHttpApiEvent(request: PlainHttpRequest, options: HttpApiEventOptions): HttpApiEventV2 {
  const method = request.method.toUpperCase();
  const [path = '/', inlineQuery] = splitPathAndQuery(request.path);
  const search = inlineQuery !== undefined ? new URLSearchParams(inlineQuery) : toSearchParams(request.query ?? {});
  const headers = joinHeaders(request.headers ?? {});
  const cookies = headers.cookie?.split(/;\s*/).filter((cookie) => cookie !== '');
  delete headers.cookie;
  const match = matchRoute(options.routeKeys, method, path);
  const stage = options.stage ?? '$default';
  const now = options.now ?? new Date();
  const body =
    request.body === undefined
      ? undefined
      : typeof request.body === 'string'
        ? { body: request.body, isBase64Encoded: false }
        : { body: Buffer.from(request.body).toString('base64'), isBase64Encoded: true };
  const rawPath = stage === '$default' ? path : `/${stage}${path}`;
  const domainName = headers.host ?? 'localhost';
  const routeKey = match?.routeKey ?? '$default';

  return {
    version: '2.0',
    routeKey,
    rawPath,
    rawQueryString: search.toString(),
    ...(cookies && cookies.length > 0 ? { cookies } : {}),
    headers,
    ...(search.size > 0 ? { queryStringParameters: joinQuery(search) } : {}),
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      ...(options.claims
        ? {
            authorizer: {
              principalId: '',
              integrationLatency: 0,
              jwt: { claims: { ...options.claims }, scopes: options.scopes ?? null },
            },
          }
        : {}),
      domainName,
      domainPrefix: domainName.split('.')[0] ?? domainName,
      http: {
        method,
        path: rawPath,
        protocol: 'HTTP/1.1',
        sourceIp: request.sourceIp ?? '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: randomUUID(),
      routeKey,
      stage,
      time: apiGatewayTime(now),
      timeEpoch: now.getTime(),
    },
    ...(match && Object.keys(match.pathParameters).length > 0 ? { pathParameters: { ...match.pathParameters } } : {}),
    ...(body ?? { isBase64Encoded: false }),
  };
}

function splitPathAndQuery(path: string): [string, string | undefined] {
  const mark = path.indexOf('?');
  return mark < 0 ? [path, undefined] : [path.slice(0, mark), path.slice(mark + 1)];
}

function toSearchParams(query: Readonly<Record<string, string | readonly string[]>>): URLSearchParams {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    for (const item of typeof value === 'string' ? [value] : value) search.append(name, item);
  }
  return search;
}

function joinQuery(search: URLSearchParams): Record<string, string> {
  const joined: Record<string, string> = {};
  for (const name of new Set(search.keys())) joined[name] = search.getAll(name).join(',');
  return joined;
}

function joinHeaders(headers: Readonly<Record<string, string | readonly string[] | undefined>>): Record<string, string> {
  const joined: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const key = name.toLowerCase();
    const values = typeof value === 'string' ? [value] : [...value];
    joined[key] = joined[key] !== undefined ? [joined[key], ...values].join(',') : values.join(',');
  }
  return joined;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `12/Mar/2020:19:03:58 +0000`, the format of `requestContext.time`. */
function apiGatewayTime(date: Date): string {
  const pad = (value: number) => String(value).padStart(2, '0');
  return (
    `${pad(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`
  );
}
