import type { IncomingMessage, ServerResponse } from 'node:http';
import { WebSocket } from 'ws';
import { BodyTooLarge, readBody, sendJson } from '../gateway-support.js';
import type { ConnectionRegistry } from './connection-registry.js';
import { isStagePath, type GatewaySettings } from './settings.js';

/**
 * The plain-HTTP side of the gateway: `/health`, `426 Upgrade Required` on the stage path, and the `@connections`
 * management API (optionally under `/<stage>`) as the AWS SDK's ApiGatewayManagementApiClient calls it.
 *
 * Invariants: POST pushes the body as one text frame and answers 200 only once the socket took it; a body over the
 * message quota is 413 PayloadTooLargeException whether or not the connection exists; a connection that is unknown,
 * disconnected or no longer open answers 410 GoneException (x-amzn-errortype), never 404; DELETE closes with 1000
 * "Connection deleted" (the `$disconnect` status); any other method is 403 as API Gateway answers it. Signatures are
 * not checked. Every request body is read or drained so the HTTP connection can be reused.
 */

export async function handleHttp(
  settings: GatewaySettings,
  registry: ConnectionRegistry,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const method = (request.method ?? 'GET').toUpperCase();
  const path = new URL(request.url ?? '/', 'http://localhost').pathname;
  if (method === 'GET' && path === '/health') return sendJson(response, 200, { status: 'ok' });
  const managed = /^(?:\/[^/@]+)?\/@connections\/([^/]+)\/?$/.exec(path);
  if (!managed) {
    request.resume();
    if (isStagePath(settings.stage, path)) return sendJson(response, 426, { message: 'Upgrade Required' }, { upgrade: 'websocket' });
    return sendJson(response, 404, { message: 'Not Found' });
  }
  const connectionId = decodeComponent(managed[1] ?? '');
  const connection = registry.get(connectionId);
  const gone = () => {
    request.resume();
    sendJson(response, 410, { message: 'Gone' }, { 'x-amzn-errortype': 'GoneException' });
  };
  switch (method) {
    case 'POST': {
      let data: Buffer;
      try {
        data = await readBody(request, settings.maxMessageBytes);
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
      registry.closeBy(connection, 1000, 'Connection deleted');
      response.writeHead(204).end();
      return;
    }
    default:
      request.resume();
      return sendJson(response, 403, { message: 'Missing Authentication Token' });
  }
}

function decodeComponent(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
