import { createServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { errorFields, hostUrl, invokeWithTimeout, listen, sendJson } from './gateway-support.js';
import { lambdaContext } from './lambda-context.js';
import { ConnectionRegistry, type Connection, type ConnectionInfo } from './websocket-gateway/connection-registry.js';
import { admit, refuse, Refusal } from './websocket-gateway/connect-flow.js';
import { requestContextOf } from './websocket-gateway/events.js';
import { handleHttp } from './websocket-gateway/management-api.js';
import { routeMessage } from './websocket-gateway/message-routing.js';
import { resolveSettings, type GatewaySettings, type WebSocketEvent, type WebSocketGatewayOptions } from './websocket-gateway/settings.js';

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
 *
 * This file only composes the parts in websocket-gateway/ (each with its invariants at the top):
 * settings.ts (options, defaults, public types), connect-flow.ts (upgrade → authorizer → `$connect`, refusals),
 * connection-registry.ts (open connections, quotas, closing, the single `$disconnect`), message-routing.ts (route
 * selection and two-way answers), management-api.ts (`@connections` and plain HTTP), events.ts and
 * authorizer-policy.ts (pure event shaping and policy rules). Once `stop` began, no upgrade is admitted.
 */

export type {
  WebSocketAuthorizer,
  WebSocketEvent,
  WebSocketGatewayOptions,
  WebSocketHandler,
  WebSocketRequestContext,
  WebSocketRoute,
} from './websocket-gateway/settings.js';
export { IDLE_TIMEOUT_MS, MAX_CONNECTION_DURATION_MS, MAX_MESSAGE_BYTES, WS_INTEGRATION_TIMEOUT_MS } from './websocket-gateway/settings.js';
export type { ConnectionInfo } from './websocket-gateway/connection-registry.js';
export { policyVerdict, type PolicyVerdict } from './websocket-gateway/authorizer-policy.js';

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

export async function startWebSocketGateway(options: WebSocketGatewayOptions): Promise<WebSocketGateway> {
  const settings = resolveSettings(options);
  const { log, host, stage } = settings;
  const registry = new ConnectionRegistry({
    idleTimeoutMs: settings.idleTimeoutMs,
    maxDurationMs: settings.maxDurationMs,
    log,
    onDisconnect: (connection, statusCode, reason) => invokeDisconnect(settings, connection, statusCode, reason),
  });
  let stopping = false;

  // No compression: API Gateway does not negotiate permessage-deflate.
  const sockets = new WebSocketServer({ noServer: true, maxPayload: settings.maxMessageBytes, perMessageDeflate: false });
  const server = createServer((request, response) => {
    handleHttp(settings, registry, request, response).catch((error: unknown) => {
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

  async function upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (stopping) throw new Refusal(503, 'the gateway is stopping');
    const connection = await admit(settings, request);
    if (stopping || !socket.readable || !socket.writable) {
      // $connect has recorded a connection the client already gave up on: API Gateway would disconnect it.
      registry.abandon(connection, 1006, 'the client left during $connect');
      return;
    }
    sockets.handleUpgrade(request, socket, head, (ws) =>
      registry.accept({ ...connection, socket: ws }, (open, data, isBinary) =>
        routeMessage(settings, open, data, isBinary, (to, text) => registry.reply(to, text)),
      ),
    );
  }

  const port = await listen(server, options.port ?? 0, host);
  const base = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    port,
    url: `ws://${base}/${stage}`,
    managementUrl: `${hostUrl('http', host, port)}/${stage}`,
    connectionCount: () => registry.size,
    connections: () => registry.infos(),
    async stop() {
      stopping = true;
      await registry.stop();
      sockets.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The `$disconnect` route, with the status the registry settled on; its failure is logged, never thrown. */
async function invokeDisconnect(settings: GatewaySettings, connection: Connection, statusCode: number, reason: string): Promise<void> {
  const handler = settings.disconnect;
  if (!handler) return;
  const event: WebSocketEvent = {
    headers: connection.headers,
    multiValueHeaders: connection.multiValueHeaders,
    requestContext: {
      ...requestContextOf(settings, connection, '$disconnect', 'DISCONNECT'),
      disconnectStatusCode: statusCode,
      disconnectReason: reason,
    },
    isBase64Encoded: false,
  };
  try {
    await invokeWithTimeout(handler, event, lambdaContext('ws-disconnect', settings.integrationTimeoutMs), settings.integrationTimeoutMs);
  } catch (error) {
    settings.log({ level: 'error', message: '$disconnect failed', connectionId: connection.id, ...errorFields(error) });
  }
}
