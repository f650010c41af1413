import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Context } from 'aws-lambda';
import { matchRoute } from '../functions/app/http/route-match.js';
import {
  BodyTooLarge,
  defaultGatewayLog,
  errorFields,
  hostUrl,
  IntegrationTimeout,
  invokeWithTimeout,
  listen,
  readBody,
  sendJson,
  type GatewayLog,
  type LambdaFunction,
} from './gateway-support.js';
import { toHttpApiEvent, type HttpApiEventV2 } from './http-api-event.js';
import { JwtAuthorizer, type JwtAuthorizerOptions } from './jwt-authorizer.js';
import type { Jwks } from './jwt-issuer.js';
import { lambdaContext } from './lambda-context.js';
import type { PartHealth } from './supervisor.js';

/**
 * The local stand-in for the API Gateway HTTP API in front of the `http-api` Lambda: real HTTP in, the JWT
 * authorizer on every route, a payload format 2.0 event and a Lambda context to the integration, and the integration's
 * answer mapped back the way API Gateway does it. Paths outside the API (the JWKS, the dashboard and its sign-in,
 * `/health`) are plain routes the caller mounts; they are not part of the API and have no authorizer.
 */

/** A plain answer for a route outside the API. */
export interface PlainResponse {
  readonly statusCode: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** `Set-Cookie` values, one header each. */
  readonly cookies?: readonly string[];
  /** A stream is sent as it is read (large files); its `content-length` header, if any, is the handler's to set. */
  readonly body: string | Uint8Array | Readable;
}

export type ExtraRouteHandler = (request: IncomingMessage) => PlainResponse | Promise<PlainResponse>;

export type HttpIntegration = LambdaFunction<HttpApiEventV2>;

export interface HttpGatewayOptions {
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  /** 127.0.0.1 by default: the local cloud is not for the network. */
  readonly host?: string;
  /** The API's route keys, e.g. `GET /api/v2/robots/{id}`; the `/api/v2` ones (app/http `ROUTE_KEYS`) by default. */
  readonly routeKeys?: readonly string[];
  /** The JWT authorizer on every route, or its options. */
  readonly authorizer: JwtAuthorizer | JwtAuthorizerOptions;
  /**
   * The local issuer's keys. aws-jwt-verify fetches keys over https only, so the authorizer is handed them here; and
   * they are served at the authorizer's JWKS location (`<issuer>/.well-known/jwks.json` by default, path only) for
   * the handlers' own verifier, unless an extra route already answers there.
   */
  readonly jwks?: Jwks | (() => Jwks);
  /** The `http-api` handler (or anything answering payload 2.0 events). */
  readonly integration: HttpIntegration;
  /** The integration's function name in its Lambda context; `http-api` by default. */
  readonly functionName?: string;
  /** API Gateway gives up on an integration after 30 s and answers 503. */
  readonly timeoutMs?: number;
  /** API Gateway HTTP APIs take request bodies up to 10 MB. */
  readonly maxBodyBytes?: number;
  /** Routes outside the API keyed `METHOD /path` (exact path), e.g. `GET /.well-known/jwks.json`, `GET /`. */
  readonly extraRoutes?: Readonly<Record<string, ExtraRouteHandler>>;
  /**
   * Answers every other path outside `/api/` (the dashboard's files and client-side routes, as CloudFront does in
   * front of S3); without it those are 404s like any unknown path.
   */
  readonly site?: ExtraRouteHandler;
  /** Routes outside the API keyed `METHOD /prefix/` (every path under it), e.g. `GET /artifacts/objects/`. */
  readonly prefixRoutes?: Readonly<Record<string, ExtraRouteHandler>>;
  /**
   * The parts behind the gateway (local/supervisor.ts `Supervisor.health`). With it, `GET /health` answers 200
   * `{ status: 'ok', parts }` when every part is up, else 503 `{ status: 'degraded' | 'down', parts }` ('down' when a
   * part is down for good, 'degraded' while one restarts). Without it, always 200 `{ status: 'ok' }`.
   */
  readonly health?: () => readonly PartHealth[] | Promise<readonly PartHealth[]>;
  /** More for `GET /health` beside the parts (counts of records set aside, the ingest consumer's work). */
  readonly healthDetails?: () => Promise<Record<string, unknown>>;
  readonly log?: GatewayLog;
}

export interface HttpGateway {
  readonly port: number;
  /** `http://host:port`, no trailing slash. */
  readonly url: string;
  stop(): Promise<void>;
}

export const HTTP_INTEGRATION_TIMEOUT_MS = 30_000;
export const HTTP_MAX_BODY_BYTES = 10 * 1024 * 1024;

const NOT_FOUND = { message: 'Not Found' };
const INTERNAL_ERROR = { message: 'Internal Server Error' };
const SERVICE_UNAVAILABLE = { message: 'Service Unavailable' };

export async function startHttpGateway(options: HttpGatewayOptions): Promise<HttpGateway> {
  const host = options.host ?? '127.0.0.1';
  const log = options.log ?? defaultGatewayLog;
  const timeoutMs = options.timeoutMs ?? HTTP_INTEGRATION_TIMEOUT_MS;
  const maxBodyBytes = options.maxBodyBytes ?? HTTP_MAX_BODY_BYTES;
  const functionName = options.functionName ?? 'http-api';
  // Loaded here, not at the top: the route table pulls in handler code whose module state (Powertools) reads
  // process.env on import, and the local cloud sets that environment before it starts the gateway.
  const routeKeys = options.routeKeys ?? (await import('../functions/app/http/routes.js')).ROUTE_KEYS;
  const jwks = typeof options.jwks === 'function' ? options.jwks : options.jwks ? constant(options.jwks) : undefined;
  const authorizer = toAuthorizer(options.authorizer, jwks?.());
  const extraRoutes = new Map(Object.entries(options.extraRoutes ?? {}).map(([key, handler]) => [normaliseRouteKey(key), handler]));
  const prefixRoutes = Object.entries(options.prefixRoutes ?? {}).map(([key, handler]) => [normaliseRouteKey(key), handler] as const);
  if (jwks && !(options.authorizer instanceof JwtAuthorizer)) {
    const { issuer, jwksUri } = options.authorizer;
    const jwksPath = new URL(jwksUri ?? `${issuer.replace(/\/+$/, '')}/.well-known/jwks.json`).pathname;
    if (!extraRoutes.has(`GET ${jwksPath}`)) {
      extraRoutes.set(`GET ${jwksPath}`, () => ({
        statusCode: 200,
        headers: { 'content-type': 'application/json', 'cache-control': 'max-age=300' },
        body: JSON.stringify(jwks()),
      }));
    }
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      log({ level: 'error', message: 'HTTP gateway failed on a request', url: request.url, ...errorFields(error) });
      sendJson(response, 500, INTERNAL_ERROR);
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const started = Date.now();
    const requestId = randomUUID();
    const method = (request.method ?? 'GET').toUpperCase();
    const target = request.url ?? '/';
    if (!target.startsWith('/')) return sendJson(response, 400, { message: 'Bad Request' });
    const path = target.split('?')[0] ?? '/';
    const answered = (status: number, routeKey: string, extra: Record<string, unknown> = {}) =>
      log({
        level: status >= 500 ? 'error' : 'info',
        message: `${method} ${path} ${status}`,
        requestId,
        routeKey,
        status,
        latencyMs: Date.now() - started,
        ...extra,
      });

    if (method === 'GET' && path === '/health') {
      if (!options.health) return sendJson(response, 200, { status: 'ok' });
      const parts = await options.health();
      const status = parts.some((part) => part.status === 'down') ? 'down' : parts.some((part) => part.status !== 'up') ? 'degraded' : 'ok';
      const details = (await options.healthDetails?.()) ?? {};
      sendJson(response, status === 'ok' ? 200 : 503, { status, parts, ...details }, { 'cache-control': 'no-store' });
      return;
    }
    const plain =
      extraRoutes.get(`${method} ${path}`) ??
      prefixRoutes.find(([prefix]) => `${method} ${path}`.startsWith(prefix))?.[1] ??
      (options.site && !path.startsWith('/api/') ? options.site : undefined);
    if (plain) {
      const answer = await plain(request);
      if (answer.body instanceof Readable) {
        response.writeHead(answer.statusCode, [
          ...Object.entries(answer.headers ?? {}),
          ...(answer.cookies ?? []).map((cookie) => ['set-cookie', cookie]),
        ].flat());
        // A client gone mid-body ends the stream (and closes its file); nothing more to answer.
        await pipeline(answer.body, response).catch(() => undefined);
        return;
      }
      const body = Buffer.from(answer.body);
      response.writeHead(answer.statusCode, [
        ...Object.entries({ 'content-length': String(body.length), ...answer.headers }),
        ...(answer.cookies ?? []).map((cookie) => ['set-cookie', cookie]),
      ].flat());
      response.end(body);
      return;
    }

    const match = matchRoute(routeKeys, method, path);
    if (!match) {
      request.resume();
      sendJson(response, 404, NOT_FOUND, { 'apigw-requestid': requestId });
      answered(404, '-');
      return;
    }

    const headers = request.headersDistinct as Record<string, string[]>;
    const admitted = await authorizer.authorize(flatHeaders(request));
    if (!admitted.authorized) {
      request.resume();
      response.writeHead(admitted.response.statusCode, { ...admitted.response.headers, 'apigw-requestid': requestId });
      response.end(admitted.response.body);
      answered(admitted.response.statusCode, match.routeKey, { authorizerError: admitted.reason });
      return;
    }

    let body: Buffer;
    try {
      body = await readBody(request, maxBodyBytes);
    } catch (error) {
      if (!(error instanceof BodyTooLarge)) throw error;
      sendJson(response, 413, { message: 'Request Entity Too Large' }, { 'apigw-requestid': requestId, connection: 'close' });
      answered(413, match.routeKey, { error: error.message });
      return;
    }

    const sourceIp = request.socket.remoteAddress ?? '127.0.0.1';
    const event = toHttpApiEvent(
      {
        method,
        path: target,
        headers: {
          ...headers,
          'x-forwarded-for': sourceIp,
          'x-forwarded-proto': 'http',
          'x-forwarded-port': String(request.socket.localPort ?? ''),
        },
        ...(body.length > 0 ? { body: isTextual(request.headers['content-type']) ? body.toString('utf8') : new Uint8Array(body) } : {}),
        sourceIp,
      },
      { routeKeys, claims: admitted.claims, scopes: admitted.scopes },
    );
    event.requestContext.requestId = requestId;

    let result: unknown;
    const context: Context = lambdaContext(functionName, timeoutMs);
    try {
      result = await invokeWithTimeout(options.integration, event, context, timeoutMs);
    } catch (error) {
      const timedOut = error instanceof IntegrationTimeout;
      sendJson(response, timedOut ? 503 : 500, timedOut ? SERVICE_UNAVAILABLE : INTERNAL_ERROR, { 'apigw-requestid': requestId });
      answered(timedOut ? 503 : 500, match.routeKey, { integrationError: errorFields(error) });
      return;
    }

    const mapped = toHttpResponse(result);
    if ('malformed' in mapped) {
      sendJson(response, 500, INTERNAL_ERROR, { 'apigw-requestid': requestId });
      answered(500, match.routeKey, { integrationError: `malformed Lambda proxy response: ${mapped.malformed}` });
      return;
    }
    response.writeHead(mapped.statusCode, [
      ...Object.entries(mapped.headers).map(([name, value]) => [name, value]),
      ...mapped.cookies.map((cookie) => ['set-cookie', cookie]),
      ['content-length', String(mapped.body.length)],
      ['apigw-requestid', requestId],
    ].flat());
    response.end(mapped.body);
    answered(mapped.statusCode, match.routeKey, { integrationLatencyMs: Date.now() - started });
  }

  const port = await listen(server, options.port ?? 0, host);
  return {
    port,
    url: hostUrl('http', host, port),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface HttpResponse {
  readonly statusCode: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly cookies: readonly string[];
  readonly body: Buffer;
}

/**
 * An integration's answer as API Gateway turns it into HTTP (payload format 2.0): an object with a `statusCode` is a
 * structured response (`headers`, `cookies`, `body`, `isBase64Encoded`); anything else is a 200 whose JSON body is
 * the answer (a string as it is). A structured answer API Gateway could not use is a 500.
 */
export function toHttpResponse(result: unknown): HttpResponse | { readonly malformed: string } {
  if (result === null || typeof result !== 'object' || !('statusCode' in result)) {
    const body = typeof result === 'string' ? result : JSON.stringify(result ?? null);
    return { statusCode: 200, headers: { 'content-type': 'application/json' }, cookies: [], body: Buffer.from(body) };
  }
  const structured = result as Record<string, unknown>;
  const { statusCode, headers = {}, cookies = [], body = '', isBase64Encoded = false } = structured;
  if (typeof statusCode !== 'number' || !Number.isInteger(statusCode) || statusCode < 100 || statusCode > 599) {
    return { malformed: `statusCode ${JSON.stringify(statusCode)} is not an HTTP status` };
  }
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return { malformed: 'headers is not an object' };
  const headerValues: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!['string', 'number', 'boolean'].includes(typeof value)) return { malformed: `header ${name} is not a string` };
    headerValues[name.toLowerCase()] = String(value);
  }
  if (!Array.isArray(cookies) || !cookies.every((cookie) => typeof cookie === 'string')) {
    return { malformed: 'cookies is not a list of strings' };
  }
  if (typeof body !== 'string') return { malformed: 'body is not a string' };
  if (typeof isBase64Encoded !== 'boolean') return { malformed: 'isBase64Encoded is not a boolean' };
  return {
    statusCode,
    headers: headerValues,
    cookies: cookies as string[],
    body: isBase64Encoded ? Buffer.from(body, 'base64') : Buffer.from(body),
  };
}

function toAuthorizer(option: HttpGatewayOptions['authorizer'], jwks: Jwks | undefined): JwtAuthorizer {
  const authorizer = option instanceof JwtAuthorizer ? option : new JwtAuthorizer(option);
  if (jwks) authorizer.cacheJwks(jwks);
  return authorizer;
}

const constant =
  <T>(value: T) =>
  (): T =>
    value;

function normaliseRouteKey(key: string): string {
  const [method = '', path = ''] = key.trim().split(/\s+/, 2);
  if (!/^[A-Z]+$/i.test(method) || !path.startsWith('/')) throw new Error(`extra route ${JSON.stringify(key)} is not "METHOD /path"`);
  return `${method.toUpperCase()} ${path}`;
}

function flatHeaders(request: IncomingMessage): Record<string, string | undefined> {
  const flat: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(request.headers)) flat[name] = Array.isArray(value) ? value.join(',') : value;
  return flat;
}

/** Bodies API Gateway passes as text; anything else arrives base64-encoded with `isBase64Encoded`. */
function isTextual(contentType: string | undefined): boolean {
  if (!contentType) return true;
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return (
    type.startsWith('text/') ||
    /[/+](json|xml)$/.test(type) ||
    type === 'application/javascript' ||
    type === 'application/x-www-form-urlencoded'
  );
}
