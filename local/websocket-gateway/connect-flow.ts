import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { errorFields, invokeWithTimeout } from '../gateway-support.js';
import { lambdaContext } from '../lambda-context.js';
import { policyVerdict } from './authorizer-policy.js';
import type { AdmittedConnection } from './connection-registry.js';
import { newConnectionId, originalHeaders, requestContextOf, singleAndMultiValues, statusOf, type RequestOrigin } from './events.js';
import { isStagePath, type GatewaySettings, type WebSocketAuthorizer, type WebSocketEvent } from './settings.js';

/**
 * How API Gateway decides whether an upgrade request becomes a connection, before any WebSocket exists: the stage
 * path, the identity sources, the `$connect` REQUEST authorizer, then the `$connect` route.
 *
 * Invariants: `admit` either resolves with the connection to open or rejects with a `Refusal` carrying the HTTP
 * status the client gets (404 off the stage path, 401 for a missing identity source or `Unauthorized`, 403 on Deny,
 * `$connect`'s own 4xx/5xx, 500 for any failure); the authorizer runs before `$connect` and `$connect` never runs for a
 * refused request; the connection id and `connectedAt` are fixed once, so every event of the connection repeats them.
 */

/** An upgrade the gateway refuses, answered as HTTP before any WebSocket exists. */
export class Refusal extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export async function admit(settings: GatewaySettings, request: IncomingMessage): Promise<AdmittedConnection> {
  const { log } = settings;
  const url = new URL(request.url ?? '/', 'http://localhost');
  if (!isStagePath(settings.stage, url.pathname)) throw new Refusal(404, `no WebSocket endpoint at ${url.pathname}`);
  const connectionId = newConnectionId();
  const connectedAt = Date.now();
  const { headers, multiValueHeaders } = originalHeaders(request);
  const query = singleAndMultiValues(url.searchParams);
  const sourceIp = request.socket.remoteAddress ?? '127.0.0.1';
  const userAgent = request.headers['user-agent'] ?? '';
  const domainName = request.headers.host ?? `${settings.host}`;
  const origin: RequestOrigin = { id: connectionId, connectedAt, sourceIp, userAgent, domainName, authorizer: undefined };

  let authorizer: Record<string, unknown> | undefined;
  if (settings.authorizer) {
    for (const source of settings.identitySource) {
      const value = source.in === 'querystring' ? url.searchParams.get(source.name) : request.headers[source.name];
      if (!value) {
        log({ level: 'info', message: 'WebSocket connection refused: identity source missing', connectionId, identitySource: source.expression });
        throw new Refusal(401, 'identity source missing');
      }
    }
    authorizer = await authorize(settings, settings.authorizer, {
      type: 'REQUEST',
      methodArn: `arn:aws:execute-api:${settings.region}:000000000000:${settings.apiId}/${settings.stage}/$connect`,
      headers,
      multiValueHeaders,
      queryStringParameters: query.single,
      multiValueQueryStringParameters: query.multi,
      stageVariables: {},
      requestContext: requestContextOf(settings, origin, '$connect', 'CONNECT'),
    } as unknown as APIGatewayRequestAuthorizerEvent, connectionId);
  }

  if (settings.connect) {
    const event: WebSocketEvent = {
      headers,
      multiValueHeaders,
      ...(url.searchParams.size > 0 ? { queryStringParameters: query.single, multiValueQueryStringParameters: query.multi } : {}),
      requestContext: requestContextOf(settings, { ...origin, authorizer }, '$connect', 'CONNECT'),
      isBase64Encoded: false,
    };
    let result: unknown;
    try {
      result = await invokeWithTimeout(settings.connect, event, lambdaContext('ws-connect', settings.integrationTimeoutMs), settings.integrationTimeoutMs);
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

  return {
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
}

async function authorize(
  settings: GatewaySettings,
  handler: WebSocketAuthorizer,
  event: APIGatewayRequestAuthorizerEvent,
  connectionId: string,
): Promise<Record<string, unknown>> {
  const { log, integrationTimeoutMs } = settings;
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

/** Answers a refused upgrade as plain HTTP with API Gateway's JSON message, and hangs up. */
export function refuse(socket: Duplex, statusCode: number): void {
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
