import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type {
  APIGatewayAuthorizerResult,
  APIGatewayEventWebsocketRequestContextV2,
  APIGatewayProxyWebsocketEventV2WithRequestContext,
  APIGatewayRequestAuthorizerEvent,
} from 'aws-lambda';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import {
  apiGatewayTime,
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
import { lambdaContext } from './lambda-context.js';

/**
 * The local stand-in for an API Gateway WebSocket API and its stage, on one port:
 *
 * - the WebSocket endpoint (`ws://host:port/<stage>`): a `$connect` REQUEST authorizer with its identity sources
 *   (401 when one is missing or the authorizer says `Unauthorized`, 403 on Deny), the `$connect` route (a non-2xx
 *   answer refuses the connection), route selection on `$request.body.action` with `$default` as fallback, two-way
 *   route responses, `$disconnect` exactly once per connection, API Gateway's quotas (128 KB messages, 10 minutes
 *   idle, 2 hours at most) and its error messages on the socket;
 * - the management API (`/@connections/{id}`, optionally under `/<stage>`): POST pushes a text frame, GET describes
 *   the connection, DELETE closes it; a connection that is gone answers 410 GoneException, so the AWS SDK's
 *   ApiGatewayManagementApiClient pointed at `http://host:port/<stage>` works unchanged. Signatures are not checked.
 */

/** What every route's handler gets: API Gateway's WebSocket event with the fields it adds per event type. */
export type WebSocketEvent = APIGatewayProxyWebsocketEventV2WithRequestContext<WebSocketRequestContext> & {
  headers?: Record<string, string>;
  multiValueHeaders?: Record<string, string[]>;
};

export type WebSocketRequestContext = APIGatewayEventWebsocketRequestContextV2 & {
  identity: { sourceIp: string; userAgent?: string };
  /** The authorizer's `context` plus `principalId`, on every route of a connection it admitted. */
  authorizer?: Record<string, unknown>;
  disconnectStatusCode?: number;
  disconnectReason?: string;
};

export type WebSocketHandler = LambdaFunction<WebSocketEvent>;
/** Its answer is checked as API Gateway checks it (a policy with `principalId`, flat `context`), hence `unknown`. */
export type WebSocketAuthorizer = LambdaFunction<APIGatewayRequestAuthorizerEvent, unknown>;

export interface WebSocketRoute {
  readonly handler: WebSocketHandler;
  /** A two-way route: the handler's `body` goes back on the socket (CDK `returnResponse: true`). */
  readonly returnResponse?: boolean;
  /** The function name in its Lambda context (`ws-<route>` by default). */
  readonly functionName?: string;
}

export interface WebSocketGatewayOptions {
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  /** 127.0.0.1 by default. */
  readonly host?: string;
  /** The stage, the URL's path: `live` as deployed (infra WEBSOCKET_STAGE). */
  readonly stage?: string;
  readonly apiId?: string;
  /** For the authorizer's `methodArn`; AWS_REGION or `local`. */
  readonly region?: string;
  /** The `$connect` REQUEST authorizer; without one every connection is let through to `$connect`. */
  readonly authorizer?: WebSocketAuthorizer;
  /** `route.request.querystring.<name>` or `route.request.header.<name>`; `?token=` by default. */
  readonly identitySource?: readonly string[];
  readonly connect?: WebSocketHandler;
  readonly disconnect?: WebSocketHandler;
  /**
   * Routes by the value of `action` in a message, plus `$default` for anything else. A bare handler is a two-way
   * route, as every message route of the deployed API is.
   */
  readonly routes?: Readonly<Record<string, WebSocketRoute | WebSocketHandler>>;
  /** API Gateway closes a connection that sent nothing for 10 minutes. */
  readonly idleTimeoutMs?: number;
  /** and any connection after 2 hours. */
  readonly maxDurationMs?: number;
  /** Messages (and @connections posts) up to 128 KB. */
  readonly maxMessageBytes?: number;
  /** API Gateway's integration timeout, 29 s. */
  readonly integrationTimeoutMs?: number;
  readonly log?: GatewayLog;
}

export interface ConnectionInfo {
  readonly connectionId: string;
  readonly connectedAt: Date;
  readonly lastActiveAt: Date;
  readonly sourceIp: string;
  readonly userAgent: string;
}

export interface WebSocketGateway {
  readonly port: number;
  /** `ws://host:port/<stage>`: where clients connect (add `?token=`). */
  readonly url: string;
  /** `http://host:port/<stage>`: the management API endpoint (the broadcaster's WS_ENDPOINT). */
  readonly managementUrl: string;
  connectionCount(): number;
  connections(): ConnectionInfo[];
  /** Closes every connection (1001, each gets its `$disconnect`) and the server. */
  stop(): Promise<void>;
}

export const IDLE_TIMEOUT_MS = 10 * 60_000;
export const MAX_CONNECTION_DURATION_MS = 2 * 3600_000;
export const MAX_MESSAGE_BYTES = 128 * 1024;
export const WS_INTEGRATION_TIMEOUT_MS = 29_000;
const GOING_AWAY = 1001;

interface Connection {
  readonly id: string;
  readonly socket: WebSocket;
  readonly connectedAt: number;
  lastActiveAt: number;
  readonly sourceIp: string;
  readonly userAgent: string;
  /** The Host the client connected to: every event's `requestContext.domainName`. */
  readonly domainName: string;
  readonly headers: Record<string, string>;
  readonly multiValueHeaders: Record<string, string[]>;
  readonly authorizer: Record<string, unknown> | undefined;
  readonly timers: NodeJS.Timeout[];
  /** Set when the gateway itself closed the connection (idle, too old, deleted, stopping). */
  closedBy?: { code: number; reason: string };
  disconnected: boolean;
}

type RequestOrigin = Pick<Connection, 'id' | 'connectedAt' | 'sourceIp' | 'userAgent' | 'domainName' | 'authorizer'>;

/** An upgrade the gateway refuses, answered as HTTP before any WebSocket exists. */
class Refusal extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export async function startWebSocketGateway(options: WebSocketGatewayOptions): Promise<WebSocketGateway> {
  const host = options.host ?? '127.0.0.1';
  const stage = options.stage ?? 'live';
  const apiId = options.apiId ?? 'local';

  /** What API Gateway puts in every event of a connection; the request ids are new each time. */
  const requestContextOf = (
    origin: RequestOrigin,
    routeKey: string,
    eventType: 'CONNECT' | 'MESSAGE' | 'DISCONNECT',
  ): WebSocketRequestContext => ({
    routeKey,
    eventType,
    messageId: randomUUID(),
    extendedRequestId: randomUUID(),
    requestTime: apiGatewayTime(new Date()),
    messageDirection: 'IN',
    stage,
    connectedAt: origin.connectedAt,
    requestTimeEpoch: Date.now(),
    identity: { sourceIp: origin.sourceIp, userAgent: origin.userAgent },
    requestId: randomUUID(),
    domainName: origin.domainName,
    connectionId: origin.id,
    apiId,
    ...(origin.authorizer ? { authorizer: origin.authorizer } : {}),
  });
  const region = options.region ?? process.env.AWS_REGION ?? 'local';
  const log = options.log ?? defaultGatewayLog;
  const idleTimeoutMs = options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
  const maxDurationMs = options.maxDurationMs ?? MAX_CONNECTION_DURATION_MS;
  const maxMessageBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const integrationTimeoutMs = options.integrationTimeoutMs ?? WS_INTEGRATION_TIMEOUT_MS;
  const identitySource = (options.identitySource ?? ['route.request.querystring.token']).map(parseIdentitySource);
  const routes = new Map(
    Object.entries(options.routes ?? {}).map(([key, route]): [string, WebSocketRoute] => [
      key,
      typeof route === 'function' ? { handler: route, returnResponse: true } : route,
    ]),
  );
  const open = new Map<string, Connection>();
  const pendingDisconnects = new Set<Promise<void>>();
  let stopping = false;

  // No compression: API Gateway does not negotiate permessage-deflate.
  const sockets = new WebSocketServer({ noServer: true, maxPayload: maxMessageBytes, perMessageDeflate: false });
  const server = createServer((request, response) => {
    handleHttp(request, response).catch((error: unknown) => {
      log({ level: 'error', message: 'WebSocket gateway failed on an HTTP request', url: request.url, ...errorFields(error) });
      sendJson(response, 500, { message: 'Internal server error' });
    });
  });
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // The socket waits while the authorizer and $connect run; a client hanging up meanwhile must not crash us.
    socket.on('error', () => undefined);
    upgrade(request, socket, head).catch((error: unknown) => {
      const refusal = error instanceof Refusal ? error : new Refusal(500, 'the gateway failed');
      if (!(error instanceof Refusal)) log({ level: 'error', message: 'WebSocket upgrade failed', ...errorFields(error) });
      refuse(socket, refusal.statusCode);
    });
  });

  // ---- $connect

  async function upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (stopping) throw new Refusal(503, 'the gateway is stopping');
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (!isStagePath(url.pathname)) throw new Refusal(404, `no WebSocket endpoint at ${url.pathname}`);
    const connectionId = newConnectionId();
    const connectedAt = Date.now();
    const { headers, multiValueHeaders } = originalHeaders(request);
    const query = singleAndMultiValues(url.searchParams);
    const sourceIp = request.socket.remoteAddress ?? '127.0.0.1';
    const userAgent = request.headers['user-agent'] ?? '';
    const domainName = request.headers.host ?? `${host}`;
    const origin: RequestOrigin = { id: connectionId, connectedAt, sourceIp, userAgent, domainName, authorizer: undefined };

    let authorizer: Record<string, unknown> | undefined;
    if (options.authorizer) {
      for (const source of identitySource) {
        const value = source.in === 'querystring' ? url.searchParams.get(source.name) : request.headers[source.name];
        if (!value) {
          log({ level: 'info', message: 'WebSocket connection refused: identity source missing', connectionId, identitySource: source.expression });
          throw new Refusal(401, 'identity source missing');
        }
      }
      authorizer = await authorize(options.authorizer, {
        type: 'REQUEST',
        methodArn: `arn:aws:execute-api:${region}:000000000000:${apiId}/${stage}/$connect`,
        headers,
        multiValueHeaders,
        queryStringParameters: query.single,
        multiValueQueryStringParameters: query.multi,
        stageVariables: {},
        requestContext: requestContextOf(origin, '$connect', 'CONNECT'),
      } as unknown as APIGatewayRequestAuthorizerEvent, connectionId);
    }

    if (options.connect) {
      const event: WebSocketEvent = {
        headers,
        multiValueHeaders,
        ...(url.searchParams.size > 0 ? { queryStringParameters: query.single, multiValueQueryStringParameters: query.multi } : {}),
        requestContext: requestContextOf({ ...origin, authorizer }, '$connect', 'CONNECT'),
        isBase64Encoded: false,
      };
      let result: unknown;
      try {
        result = await invokeWithTimeout(options.connect, event, lambdaContext('ws-connect', integrationTimeoutMs), integrationTimeoutMs);
      } catch (error) {
        log({ level: 'error', message: '$connect failed', connectionId, ...errorFields(error) });
        throw new Refusal(500, '$connect failed');
      }
      const statusCode = statusOf(result) ?? 200;
      if (statusCode < 200 || statusCode > 299) {
        log({ level: 'info', message: 'WebSocket connection refused by $connect', connectionId, statusCode });
        throw new Refusal(statusCode >= 400 && statusCode <= 599 ? statusCode : 500, `$connect answered ${statusCode}`);
      }
    }

    const connection: Omit<Connection, 'socket'> = {
      id: connectionId,
      connectedAt,
      lastActiveAt: connectedAt,
      sourceIp,
      userAgent,
      domainName,
      headers,
      multiValueHeaders,
      authorizer,
      timers: [],
      disconnected: false,
    };
    if (stopping || !socket.readable || !socket.writable) {
      // $connect has recorded a connection the client already gave up on: API Gateway would disconnect it.
      disconnect({ ...connection, socket: null as unknown as WebSocket }, 1006, 'the client left during $connect');
      return;
    }
    sockets.handleUpgrade(request, socket, head, (ws) => accepted({ ...connection, socket: ws }));
  }

  async function authorize(
    handler: WebSocketAuthorizer,
    event: APIGatewayRequestAuthorizerEvent,
    connectionId: string,
  ): Promise<Record<string, unknown>> {
    let result: unknown;
    try {
      result = await invokeWithTimeout(handler, event, lambdaContext('ws-authorizer', integrationTimeoutMs), integrationTimeoutMs);
    } catch (error) {
      // An authorizer says 401 by failing with exactly "Unauthorized"; any other failure is API Gateway's 500.
      if (error instanceof Error && error.message === 'Unauthorized') {
        log({ level: 'info', message: 'WebSocket connection refused: Unauthorized', connectionId });
        throw new Refusal(401, 'Unauthorized');
      }
      log({ level: 'error', message: 'The $connect authorizer failed', connectionId, ...errorFields(error) });
      throw new Refusal(500, 'authorizer failed');
    }
    const verdict = policyVerdict(result, event.methodArn);
    if (verdict.problem !== undefined) {
      log({ level: 'error', message: 'The $connect authorizer answered something API Gateway cannot use', connectionId, problem: verdict.problem });
      throw new Refusal(500, verdict.problem);
    }
    if (!verdict.allowed) {
      log({ level: 'info', message: 'WebSocket connection denied by the authorizer', connectionId, principalId: verdict.principalId });
      throw new Refusal(403, 'Forbidden');
    }
    return { ...verdict.context, principalId: verdict.principalId, integrationLatency: 0 };
  }

  function accepted(connection: Connection): void {
    const { socket, id } = connection;
    open.set(id, connection);
    log({ level: 'info', message: 'WebSocket connected', connectionId: id, sourceIp: connection.sourceIp });
    const idle = setTimeout(() => closeBy(connection, GOING_AWAY, 'Going away'), idleTimeoutMs);
    const tooOld = setTimeout(() => closeBy(connection, GOING_AWAY, 'Going away'), maxDurationMs);
    idle.unref();
    tooOld.unref();
    connection.timers.push(idle, tooOld);
    socket.on('message', (data, isBinary) => {
      connection.lastActiveAt = Date.now();
      idle.refresh();
      message(connection, data, isBinary).catch((error: unknown) =>
        log({ level: 'error', message: 'WebSocket message handling failed', connectionId: id, ...errorFields(error) }),
      );
    });
    // ws reports protocol errors (such as a message over maxPayload, closed with 1009) here before it closes.
    socket.on('error', (error) => log({ level: 'info', message: 'WebSocket protocol error', connectionId: id, error: error.message }));
    socket.on('close', (code, reason) => disconnect(connection, code, reason.toString('utf8')));
  }

  // ---- messages

  async function message(connection: Connection, data: RawData, isBinary: boolean): Promise<void> {
    if (connection.disconnected) return;
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    const text = isBinary ? null : bytes.toString('utf8');
    const routeKey = selectRoute(text);
    const context = requestContextOf(connection, routeKey ?? '$default', 'MESSAGE');
    const route = routeKey ? routes.get(routeKey) : undefined;
    if (!routeKey || !route) {
      reply(connection, JSON.stringify({ message: 'Forbidden', connectionId: connection.id, requestId: context.requestId }));
      log({ level: 'info', message: 'WebSocket message matched no route', connectionId: connection.id });
      return;
    }
    const event: WebSocketEvent = {
      requestContext: context,
      body: text ?? bytes.toString('base64'),
      isBase64Encoded: text === null,
    };
    let result: unknown;
    try {
      const functionName = route.functionName ?? `ws-${routeKey.replace(/^\$/, '')}`;
      result = await invokeWithTimeout(route.handler, event, lambdaContext(functionName, integrationTimeoutMs), integrationTimeoutMs);
    } catch (error) {
      const timedOut = error instanceof IntegrationTimeout;
      log({ level: 'error', message: `WebSocket route ${routeKey} failed`, connectionId: connection.id, ...errorFields(error) });
      reply(
        connection,
        JSON.stringify({
          message: timedOut ? 'Endpoint request timed out' : 'Internal server error',
          connectionId: connection.id,
          requestId: context.requestId,
        }),
      );
      return;
    }
    log({ level: 'debug', message: `WebSocket route ${routeKey}`, connectionId: connection.id, statusCode: statusOf(result) });
    if (!route.returnResponse) return;
    const body = responseBody(result);
    if (body !== null) reply(connection, body);
  }

  /** `$request.body.action`, falling back to `$default` when there is no such route or no JSON to select on. */
  function selectRoute(text: string | null): string | null {
    let action: unknown;
    if (text !== null) {
      try {
        const json: unknown = JSON.parse(text);
        if (json !== null && typeof json === 'object' && !Array.isArray(json)) action = (json as Record<string, unknown>).action;
      } catch {
        action = undefined;
      }
    }
    if (typeof action === 'string' && !action.startsWith('$') && routes.has(action)) return action;
    return routes.has('$default') ? '$default' : null;
  }

  function reply(connection: Connection, text: string): void {
    if (connection.socket.readyState === WebSocket.OPEN) connection.socket.send(text);
  }

  // ---- $disconnect

  function closeBy(connection: Connection, code: number, reason: string): void {
    if (connection.disconnected || connection.closedBy) return;
    connection.closedBy = { code, reason };
    log({ level: 'info', message: 'Closing a WebSocket connection', connectionId: connection.id, code, reason });
    connection.socket.close(code, reason);
    // A client that never answers the close handshake is cut off (ws itself waits 30 s).
    setTimeout(() => connection.socket.terminate(), 5_000).unref();
  }

  function disconnect(connection: Connection, code: number, reason: string): void {
    if (connection.disconnected) return;
    connection.disconnected = true;
    for (const timer of connection.timers) clearTimeout(timer);
    open.delete(connection.id);
    const statusCode = connection.closedBy?.code ?? code;
    const statusReason = connection.closedBy?.reason ?? reason;
    log({ level: 'info', message: 'WebSocket disconnected', connectionId: connection.id, disconnectStatusCode: statusCode });
    if (!options.disconnect) return;
    const event: WebSocketEvent = {
      headers: connection.headers,
      multiValueHeaders: connection.multiValueHeaders,
      requestContext: {
        ...requestContextOf(connection, '$disconnect', 'DISCONNECT'),
        disconnectStatusCode: statusCode,
        disconnectReason: statusReason,
      },
      isBase64Encoded: false,
    };
    const handler = options.disconnect;
    const pending = invokeWithTimeout(handler, event, lambdaContext('ws-disconnect', integrationTimeoutMs), integrationTimeoutMs)
      .then(() => undefined)
      .catch((error: unknown) => log({ level: 'error', message: '$disconnect failed', connectionId: connection.id, ...errorFields(error) }))
      .finally(() => pendingDisconnects.delete(pending));
    pendingDisconnects.add(pending);
  }

  // ---- the management API and plain HTTP

  async function handleHttp(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const method = (request.method ?? 'GET').toUpperCase();
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (method === 'GET' && path === '/health') return sendJson(response, 200, { status: 'ok' });
    const managed = /^(?:\/[^/@]+)?\/@connections\/([^/]+)\/?$/.exec(path);
    if (!managed) {
      request.resume();
      if (isStagePath(path)) return sendJson(response, 426, { message: 'Upgrade Required' }, { upgrade: 'websocket' });
      return sendJson(response, 404, { message: 'Not Found' });
    }
    const connectionId = decodeComponent(managed[1] ?? '');
    const connection = open.get(connectionId);
    const gone = () => {
      request.resume();
      sendJson(response, 410, { message: 'Gone' }, { 'x-amzn-errortype': 'GoneException' });
    };
    switch (method) {
      case 'POST': {
        let data: Buffer;
        try {
          data = await readBody(request, maxMessageBytes);
        } catch (error) {
          if (!(error instanceof BodyTooLarge)) throw error;
          return sendJson(response, 413, { message: error.message }, { 'x-amzn-errortype': 'PayloadTooLargeException' });
        }
        if (!connection || connection.disconnected || connection.socket.readyState !== WebSocket.OPEN) return gone();
        try {
          await new Promise<void>((resolve, reject) =>
            connection.socket.send(data, { binary: false }, (error) => (error ? reject(error) : resolve())),
          );
        } catch {
          return gone();
        }
        response.writeHead(200, { 'content-length': '0' }).end();
        return;
      }
      case 'GET': {
        if (!connection || connection.disconnected) return gone();
        // The wire names (the SDK shows them as ConnectedAt, Identity.SourceIp…).
        return sendJson(response, 200, {
          connectedAt: new Date(connection.connectedAt).toISOString(),
          identity: { sourceIp: connection.sourceIp, userAgent: connection.userAgent },
          lastActiveAt: new Date(connection.lastActiveAt).toISOString(),
        });
      }
      case 'DELETE': {
        if (!connection || connection.disconnected) return gone();
        request.resume();
        closeBy(connection, 1000, 'Connection deleted');
        response.writeHead(204).end();
        return;
      }
      default:
        request.resume();
        return sendJson(response, 403, { message: 'Missing Authentication Token' });
    }
  }

  function isStagePath(path: string): boolean {
    const trimmed = path.replace(/\/+$/, '');
    return trimmed === '' || trimmed === `/${stage}`;
  }

  const port = await listen(server, options.port ?? 0, host);
  const base = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    port,
    url: `ws://${base}/${stage}`,
    managementUrl: `${hostUrl('http', host, port)}/${stage}`,
    connectionCount: () => open.size,
    connections: () =>
      [...open.values()].map((connection) => ({
        connectionId: connection.id,
        connectedAt: new Date(connection.connectedAt),
        lastActiveAt: new Date(connection.lastActiveAt),
        sourceIp: connection.sourceIp,
        userAgent: connection.userAgent,
      })),
    async stop() {
      stopping = true;
      for (const connection of open.values()) closeBy(connection, GOING_AWAY, 'Going away');
      const deadline = Date.now() + 2_000;
      while (open.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      for (const connection of open.values()) connection.socket.terminate();
      while (open.size > 0 && Date.now() < deadline + 1_000) await new Promise((resolve) => setTimeout(resolve, 20));
      await Promise.allSettled([...pendingDisconnects]);
      sockets.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** Whether the policy allows `execute-api:Invoke` on the method (an explicit Deny wins), or what is wrong with it. */
export type PolicyVerdict =
  | { readonly allowed: boolean; readonly principalId: string; readonly context: Record<string, unknown>; readonly problem?: undefined }
  | { readonly allowed: false; readonly problem: string };

export function policyVerdict(result: unknown, methodArn: string): PolicyVerdict {
  const policy = result as Partial<APIGatewayAuthorizerResult> | null;
  if (!policy || typeof policy !== 'object') return { allowed: false, problem: 'the answer is not an object' };
  if (typeof policy.principalId !== 'string') return { allowed: false, problem: 'principalId is not a string' };
  const statements = policy.policyDocument?.Statement;
  if (!Array.isArray(statements)) return { allowed: false, problem: 'policyDocument.Statement is not a list' };
  if (policy.context !== undefined && policy.context !== null) {
    if (typeof policy.context !== 'object') return { allowed: false, problem: 'context is not an object' };
    for (const [name, value] of Object.entries(policy.context)) {
      if (!['string', 'number', 'boolean'].includes(typeof value)) {
        return { allowed: false, problem: `context.${name} is not a string, number or boolean` };
      }
    }
  }
  let allowed = false;
  const verdict = (allowed: boolean): PolicyVerdict => ({
    allowed,
    principalId: policy.principalId as string,
    context: { ...(policy.context ?? {}) },
  });
  for (const statement of statements as unknown as Record<string, unknown>[]) {
    const actions = [statement.Action].flat();
    const resources = [statement.Resource].flat();
    const applies =
      actions.some((action) => typeof action === 'string' && wildcardMatch(action, 'execute-api:Invoke')) &&
      resources.some((resource) => typeof resource === 'string' && wildcardMatch(resource, methodArn));
    if (!applies) continue;
    if (statement.Effect === 'Deny') return verdict(false);
    if (statement.Effect === 'Allow') allowed = true;
  }
  return verdict(allowed);
}

function wildcardMatch(pattern: string, value: string): boolean {
  const expression = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${expression}$`, 'i').test(value);
}

function parseIdentitySource(expression: string): { in: 'querystring' | 'header'; name: string; expression: string } {
  const match = /^route\.request\.(querystring|header)\.(.+)$/.exec(expression);
  if (!match) throw new Error(`identity source ${JSON.stringify(expression)} is not route.request.querystring.<name> or route.request.header.<name>`);
  const where = match[1] as 'querystring' | 'header';
  const name = match[2] as string;
  return { in: where, name: where === 'header' ? name.toLowerCase() : name, expression };
}

/** The request's headers with their original spelling, as API Gateway passes them (`Host`, `Sec-WebSocket-Key`…). */
function originalHeaders(request: IncomingMessage): { headers: Record<string, string>; multiValueHeaders: Record<string, string[]> } {
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i + 1 < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i] as string;
    (multiValueHeaders[name] ??= []).push(request.rawHeaders[i + 1] as string);
  }
  const headers = Object.fromEntries(Object.entries(multiValueHeaders).map(([name, values]) => [name, values.join(',')]));
  return { headers, multiValueHeaders };
}

function singleAndMultiValues(search: URLSearchParams): { single: Record<string, string>; multi: Record<string, string[]> } {
  const single: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (const [name, value] of search) {
    (multi[name] ??= []).push(value);
    single[name] = value;
  }
  return { single, multi };
}

function statusOf(result: unknown): number | undefined {
  if (result === null || typeof result !== 'object') return undefined;
  const status = (result as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** What a two-way route sends back: a proxy answer's `body`, a string as it is, any other value as JSON. */
function responseBody(result: unknown): string | null {
  if (result === undefined || result === null) return null;
  if (typeof result === 'string') return result;
  if (typeof result === 'object' && 'statusCode' in result) {
    const body = (result as { body?: unknown }).body;
    return typeof body === 'string' ? body : null;
  }
  return JSON.stringify(result);
}

function refuse(socket: Duplex, statusCode: number): void {
  if (socket.destroyed) return;
  const message = statusCode === 401 ? 'Unauthorized' : statusCode === 403 ? 'Forbidden' : (STATUS_CODES[statusCode] ?? 'Error');
  const body = JSON.stringify({ message });
  socket.end(
    `HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode] ?? 'Error'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Shaped like API Gateway's (`L0SM9cOFvHcCIhw=`), URL-safe so it needs no escaping in `@connections` paths. */
function newConnectionId(): string {
  return `${[...randomBytes(15)].map((byte) => ID_ALPHABET[byte % ID_ALPHABET.length]).join('')}=`;
}

function decodeComponent(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
