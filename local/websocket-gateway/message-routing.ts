import type { RawData } from 'ws';
import { errorFields, IntegrationTimeout, invokeWithTimeout } from '../gateway-support.js';
import { lambdaContext } from '../lambda-context.js';
import type { Connection } from './connection-registry.js';
import { requestContextOf, responseBody, statusOf } from './events.js';
import type { GatewaySettings, WebSocketEvent, WebSocketRoute } from './settings.js';

/**
 * API Gateway's message routing: route selection on `$request.body.action` with `$default` as fallback, the route's
 * function invoked with the integration timeout, and the two-way route's answer or API Gateway's error message sent
 * back on the socket.
 *
 * Invariants: a route key starting with `$` is never selected from a message (only `$default` as fallback); a
 * message that selects no route gets `Forbidden`; a failing function gets `Internal server error` and a timed-out one
 * `Endpoint request timed out`, both with the connection and request ids, and neither closes the connection; only a
 * two-way route's answer is sent back; nothing is routed once the connection is disconnected.
 */

/** `$request.body.action`, falling back to `$default` when there is no such route or no JSON to select on. */
export function selectRoute(routes: ReadonlyMap<string, WebSocketRoute>, text: string | null): string | null {
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

export async function routeMessage(
  settings: GatewaySettings,
  connection: Connection,
  data: RawData,
  isBinary: boolean,
  reply: (connection: Connection, text: string) => void,
): Promise<void> {
  const { log, routes, integrationTimeoutMs } = settings;
  if (connection.disconnected) return;
  const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
  const text = isBinary ? null : bytes.toString('utf8');
  const routeKey = selectRoute(routes, text);
  const context = requestContextOf(settings, connection, routeKey ?? '$default', 'MESSAGE');
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
