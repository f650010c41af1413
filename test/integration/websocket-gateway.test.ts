import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ApiGatewayManagementApiClient,
  DeleteConnectionCommand,
  GetConnectionCommand,
  GoneException,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayRequestAuthorizerEvent, DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import { LiveMessage, MAX_SUBSCRIPTIONS_PER_CONNECTION, SubscriptionAck, WebSocketError } from '../../schemas/index.js';
import { DynamoConnections } from '../../functions/adapters/dynamo-connections.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { GatewayLogEntry } from '../../local/gateway-support.js';
import { startHttpGateway, type HttpGateway } from '../../local/http-gateway.js';
import { LocalJwtIssuer } from '../../local/jwt-issuer.js';
import { lambdaContext } from '../../local/lambda-context.js';
import {
  startWebSocketGateway,
  type WebSocketAuthorizer,
  type WebSocketEvent,
  type WebSocketGateway,
  type WebSocketHandler,
} from '../../local/websocket-gateway.js';
import { createTestConnectionsTable } from '../support/dynamo.js';
import { connectedEvent } from '../support/lifecycle-events.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords } from '../support/stream-records.js';

/**
 * The local WebSocket API over real sockets: first with the real `$connect` authorizer (fetching the local issuer's
 * JWKS from the HTTP gateway), the real connect/subscribe/unsubscribe/disconnect handlers on DynamoDB Local, and the
 * real AWS SDK management client and stream-broadcaster pushing through `@connections`; then API Gateway's own
 * behaviour (refusals, route selection, quotas, timeouts) with recording handlers.
 */

const ISSUER = 'http://localhost:1/local-pool';
const AUDIENCE = 'lekiwi-heartbeat-local';

let dir: string;
let issuer: LocalJwtIssuer;
let jwksHost: HttpGateway;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ws-gateway-'));
  issuer = await LocalJwtIssuer.openOrCreate(dir, { issuer: ISSUER, audience: AUDIENCE });
  jwksHost = await startHttpGateway({
    routeKeys: [],
    authorizer: { issuer: ISSUER, audience: [AUDIENCE] },
    jwks: () => issuer.jwks(),
    integration: async () => ({ statusCode: 500 }),
    log: () => undefined,
  });
});

afterAll(async () => {
  await jwksHost?.stop();
  await rm(dir, { recursive: true, force: true });
});

const token = (groups: string[] = ['operator'], subject = 'user-1') =>
  issuer.sign({ subject, username: subject, groups, expiresInSeconds: 600 });

// ---- A WebSocket client that keeps what it receives.

interface Client {
  readonly socket: WebSocket;
  next(timeoutMs?: number): Promise<string>;
  readonly closed: Promise<{ code: number; reason: string }>;
}

function open(url: string): Promise<Client> {
  const socket = new WebSocket(url);
  const received: string[] = [];
  const waiting: ((text: string) => void)[] = [];
  socket.on('message', (data) => {
    const text = data.toString();
    const waiter = waiting.shift();
    if (waiter) waiter(text);
    else received.push(text);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  const client: Client = {
    socket,
    closed,
    next: (timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const ready = received.shift();
        if (ready !== undefined) return resolve(ready);
        const timer = setTimeout(() => reject(new Error('no message arrived')), timeoutMs);
        waiting.push((text) => {
          clearTimeout(timer);
          resolve(text);
        });
      }),
  };
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(client));
    socket.once('error', reject);
  });
}

/** The HTTP status and body of a refused upgrade. */
function refused(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.on('unexpected-response', (request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => {
        request.destroy();
        resolve({ status: response.statusCode ?? 0, body });
      });
    });
    socket.on('open', () => {
      socket.close();
      reject(new Error('the connection was accepted'));
    });
    socket.on('error', () => undefined);
  });
}

/** Wraps a handler so the test sees every event it got. */
function recorded<T extends (event: never, context: never) => unknown>(handler: T) {
  const events: Parameters<T>[0][] = [];
  const wrapped = ((event: Parameters<T>[0], context: Parameters<T>[1]) => {
    events.push(event);
    return handler(event, context);
  }) as unknown as T;
  return { handler: wrapped, events };
}

describe('the WebSocket gateway with the real handlers', () => {
  let table: Awaited<ReturnType<typeof createTestConnectionsTable>>;
  let documents: DynamoDBDocumentClient;
  let gateway: WebSocketGateway;
  let management: ApiGatewayManagementApiClient;
  let broadcaster: (event: DynamoDBStreamEvent, context: ReturnType<typeof lambdaContext>) => Promise<DynamoDBBatchResponse>;
  const logs: GatewayLogEntry[] = [];
  let authorizer: ReturnType<typeof recorded<WebSocketAuthorizer>>;
  let connect: ReturnType<typeof recorded<WebSocketHandler>>;
  let disconnect: ReturnType<typeof recorded<WebSocketHandler>>;
  let subscribe: ReturnType<typeof recorded<WebSocketHandler>>;

  beforeAll(async () => {
    table = await createTestConnectionsTable();
    documents = DynamoDBDocumentClient.from(table.client);
    // The handlers read their environment once, at import, and the broadcaster's WS_ENDPOINT is the gateway's own
    // URL: start the gateway on handlers loaded afterwards.
    const real: Record<string, WebSocketHandler> = {};
    const late = (name: string): WebSocketHandler => (event, context) => real[name]!(event, context);
    authorizer = recorded(late('ws-authorizer') as unknown as WebSocketAuthorizer);
    connect = recorded(late('ws-connect'));
    disconnect = recorded(late('ws-disconnect'));
    subscribe = recorded(late('ws-subscribe'));
    gateway = await startWebSocketGateway({
      authorizer: authorizer.handler,
      connect: connect.handler,
      disconnect: disconnect.handler,
      routes: {
        subscribe: subscribe.handler,
        unsubscribe: { handler: late('ws-unsubscribe'), returnResponse: true },
        $default: late('ws-default'),
      },
      log: (entry) => logs.push(entry),
    });
    Object.assign(process.env, {
      JWT_ISSUER: ISSUER,
      JWT_AUDIENCE: AUDIENCE,
      JWKS_URI: `${jwksHost.url}/local-pool/.well-known/jwks.json`,
      CONNECTIONS_TABLE: table.tableName,
      AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
      WS_ENDPOINT: gateway.managementUrl,
    });
    real['ws-authorizer'] = (await import('../../functions/handlers/ws-authorizer.js')).handler as unknown as WebSocketHandler;
    real['ws-connect'] = (await import('../../functions/handlers/ws-connect.js')).handler as WebSocketHandler;
    real['ws-disconnect'] = (await import('../../functions/handlers/ws-disconnect.js')).handler as WebSocketHandler;
    real['ws-subscribe'] = (await import('../../functions/handlers/ws-subscribe.js')).handler as WebSocketHandler;
    real['ws-unsubscribe'] = (await import('../../functions/handlers/ws-unsubscribe.js')).handler as WebSocketHandler;
    real['ws-default'] = (await import('../../functions/handlers/ws-default.js')).handler as WebSocketHandler;
    broadcaster = (await import('../../functions/handlers/stream-broadcaster.js')).handler;
    management = new ApiGatewayManagementApiClient({ endpoint: gateway.managementUrl });
  });

  afterAll(async () => {
    management?.destroy();
    await gateway?.stop();
    await table?.drop();
  });

  const connectionItem = async (connectionId: string) =>
    (await documents.send(new GetCommand({ TableName: table.tableName, Key: { pk: `connection#${connectionId}`, sk: 'connection' }, ConsistentRead: true })))
      .Item;
  const lastConnectionId = () => connect.events.at(-1)?.requestContext.connectionId ?? '';

  it('admits an operator: authorizer, then $connect with the authorizer’s context, and the connection is stored', async () => {
    const client = await open(`${gateway.url}?token=${token(['operator'], 'user-op')}&extra=1`);
    const connectionId = lastConnectionId();

    const authorizerEvent = authorizer.events.at(-1) as APIGatewayRequestAuthorizerEvent;
    expect(authorizerEvent).toMatchObject({
      type: 'REQUEST',
      methodArn: expect.stringMatching(/^arn:aws:execute-api:[\w-]+:\d{12}:local\/live\/\$connect$/),
      queryStringParameters: { token: expect.any(String), extra: '1' },
      requestContext: { routeKey: '$connect', eventType: 'CONNECT', connectionId, stage: 'live' },
    });
    expect(connect.events.at(-1)).toMatchObject({
      requestContext: {
        routeKey: '$connect',
        eventType: 'CONNECT',
        connectionId,
        connectedAt: expect.any(Number),
        authorizer: { userId: 'user-op', roles: 'operator', principalId: 'user-op' },
      },
      queryStringParameters: { extra: '1' },
    });
    expect(await connectionItem(connectionId)).toMatchObject({ userId: 'user-op', roles: ['operator'] });
    expect(gateway.connectionCount()).toBeGreaterThanOrEqual(1);
    client.socket.close();
    await client.closed;
  });

  it.each([
    ['without a token (the authorizer is not even asked)', () => '', 401, 'Unauthorized', false],
    ['with a token that is not valid', () => '?token=not-a-jwt', 401, 'Unauthorized', true],
    ['with a token without a fleet role (Deny)', () => `?token=${token(['beta-testers'])}`, 403, 'Forbidden', true],
  ])('refuses a connection %s', async (_, query, status, message, asked) => {
    const before = { authorizer: authorizer.events.length, connect: connect.events.length };
    const answer = await refused(`${gateway.url}${query()}`);
    expect(answer.status).toBe(status);
    expect(JSON.parse(answer.body)).toEqual({ message });
    expect(authorizer.events.length - before.authorizer).toBe(asked ? 1 : 0);
    expect(connect.events.length).toBe(before.connect);
  });

  it('routes subscribe by its action and sends the handler’s reply back; a bad one gets the error reply', async () => {
    const client = await open(`${gateway.url}?token=${token()}`);
    const connectionId = lastConnectionId();

    client.socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['*'] }));
    expect(SubscriptionAck.parse(JSON.parse(await client.next()))).toEqual({ type: 'Subscribed', robotIds: ['*'] });
    expect(subscribe.events.at(-1)).toMatchObject({
      body: JSON.stringify({ action: 'subscribe', robotIds: ['*'] }),
      isBase64Encoded: false,
      requestContext: { routeKey: 'subscribe', eventType: 'MESSAGE', connectionId, messageId: expect.any(String) },
    });
    expect((await connectionItem(connectionId))?.subscriptions).toEqual(new Set(['*']));

    client.socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['not a robot'] }));
    expect(WebSocketError.parse(JSON.parse(await client.next())).error.code).toBe('INVALID_REQUEST');

    client.socket.send(JSON.stringify({ action: 'unsubscribe', robotIds: ['*'] }));
    expect(JSON.parse(await client.next())).toEqual({ type: 'Unsubscribed', robotIds: ['*'] });
    client.socket.close();
    await client.closed;
  });

  it('answers an unknown action, a message without one and one that is not JSON through $default, listing the actions', async () => {
    const client = await open(`${gateway.url}?token=${token()}`);
    for (const text of [JSON.stringify({ action: 'watch', robotIds: ['*'] }), 'hello', JSON.stringify({ robotIds: ['*'] })]) {
      client.socket.send(text);
      const reply = WebSocketError.parse(JSON.parse(await client.next()));
      expect(reply.error).toMatchObject({ code: 'UNKNOWN_ACTION', details: { actions: ['subscribe', 'unsubscribe'] } });
      expect(reply.error.message).toMatch(/"subscribe" or "unsubscribe"/);
    }
    client.socket.close();
    await client.closed;
  });

  it('refuses a subscribe over the bound with a clear error, and `*` still works', async () => {
    const client = await open(`${gateway.url}?token=${token()}`);
    const connectionId = lastConnectionId();
    const robotIds = Array.from({ length: MAX_SUBSCRIPTIONS_PER_CONNECTION }, (_, index) => `xle-WSB${String(index).padStart(4, '0')}`);

    client.socket.send(JSON.stringify({ action: 'subscribe', robotIds }));
    expect(SubscriptionAck.parse(JSON.parse(await client.next())).robotIds).toHaveLength(MAX_SUBSCRIPTIONS_PER_CONNECTION);
    client.socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['lekiwi-WSB9999'] }));
    const refused = WebSocketError.parse(JSON.parse(await client.next()));
    expect(refused.error.code).toBe('TOO_MANY_SUBSCRIPTIONS');
    expect(refused.error.message).toContain(`at most ${MAX_SUBSCRIPTIONS_PER_CONNECTION} robots`);
    expect(refused.error.message).toContain('Subscribe to "*"');

    client.socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['*'] }));
    expect(SubscriptionAck.parse(JSON.parse(await client.next()))).toEqual({ type: 'Subscribed', robotIds: ['*'] });
    expect((await connectionItem(connectionId))?.subscriptions.size).toBe(MAX_SUBSCRIPTIONS_PER_CONNECTION + 1);
    client.socket.close();
    await client.closed;
    await expect.poll(() => connectionItem(connectionId), { message: 'the connection to be removed' }).toBeUndefined();
  });

  it('runs $disconnect exactly once when the client closes, and the connection is forgotten', async () => {
    const client = await open(`${gateway.url}?token=${token()}`);
    const connectionId = lastConnectionId();
    client.socket.close(1000, 'bye');
    await client.closed;

    await expect.poll(() => connectionItem(connectionId), { message: 'the connection to be removed' }).toBeUndefined();
    const events = () => disconnect.events.filter((event) => event.requestContext.connectionId === connectionId);
    await expect.poll(() => events(), { message: '$disconnect' }).toHaveLength(1);
    expect(events()[0]).toMatchObject({
      requestContext: { routeKey: '$disconnect', eventType: 'DISCONNECT', disconnectStatusCode: 1000, disconnectReason: 'bye' },
    });
    // Nothing else that happens to a closed connection runs it again.
    await expect(management.send(new DeleteConnectionCommand({ ConnectionId: connectionId }))).rejects.toBeInstanceOf(GoneException);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(events()).toHaveLength(1);
  });

  it('delivers a PostToConnection from the AWS SDK as a text frame, describes and deletes connections', async () => {
    const client = await open(`${gateway.url}?token=${token()}`);
    const connectionId = lastConnectionId();

    await management.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: new TextEncoder().encode('{"hello":"robot"}') }));
    expect(await client.next()).toBe('{"hello":"robot"}');

    const described = await management.send(new GetConnectionCommand({ ConnectionId: connectionId }));
    expect(described.ConnectedAt).toBeInstanceOf(Date);
    expect(described.Identity).toEqual({ SourceIp: '127.0.0.1', UserAgent: expect.any(String) });
    expect(described.LastActiveAt).toBeInstanceOf(Date);

    await management.send(new DeleteConnectionCommand({ ConnectionId: connectionId }));
    expect((await client.closed).code).toBe(1000);
    await expect.poll(() => disconnect.events.map((event) => event.requestContext.connectionId), { message: '$disconnect' }).toContain(connectionId);

    const post = management.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: new TextEncoder().encode('late') }));
    await expect(post).rejects.toBeInstanceOf(GoneException);
    await expect(management.send(new GetConnectionCommand({ ConnectionId: 'never-existed=' }))).rejects.toBeInstanceOf(GoneException);
  });

  it('lets the real stream-broadcaster push through @connections, and drop a connection that is gone (410)', async () => {
    const client = await open(`${gateway.url}?token=${token()}`);
    client.socket.send(JSON.stringify({ action: 'subscribe', robotIds: ['*'] }));
    await client.next();
    // A connection the table still has but the gateway no longer knows (its $disconnect was missed).
    const connections = new DynamoConnections({ client: table.client, tableName: table.tableName });
    const ghost = `${randomUUID().slice(0, 15)}=`;
    await connections.add({ connectionId: ghost, userId: 'user-9', roles: ['operator'], connectedAt: new Date() });
    await connections.subscribe(ghost, ['*']);

    const robotId = `lekiwi-WS${randomUUID().slice(0, 6)}`;
    const log = new RecordingEventLog();
    await executeRobotCommand(log, robotId, { type: 'RecordPresence', presence: connectedEvent(robotId, 1, Date.now()) }, { now: () => new Date() });
    const response = await broadcaster({ Records: new StreamRecords().records(log.takeStream()) }, lambdaContext('stream-broadcaster'));

    expect(response).toEqual({ batchItemFailures: [] });
    expect(LiveMessage.parse(JSON.parse(await client.next()))).toMatchObject({ type: 'RobotConnected', robotId, seq: 1 });
    await expect.poll(() => connectionItem(ghost), { message: 'the gone connection to be removed' }).toBeUndefined();
    client.socket.close();
    await client.closed;
  });
});

describe('API Gateway’s behaviour', () => {
  const logs: GatewayLogEntry[] = [];
  const disconnects: WebSocketEvent[] = [];
  const messages: WebSocketEvent[] = [];
  let gateway: WebSocketGateway;
  let management: ApiGatewayManagementApiClient;

  beforeAll(async () => {
    gateway = await startWebSocketGateway({
      authorizer: async (event) => {
        const value = event.queryStringParameters?.token;
        if (value === 'boom') throw new Error('authorizer crashed');
        if (value === 'broken') return { principalId: 'x', policyDocument: {} };
        return {
          principalId: 'user-x',
          policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: event.methodArn }] },
          context: { userId: 'user-x' },
        };
      },
      connect: async (event) => ({ statusCode: event.queryStringParameters?.token === 'teapot' ? 418 : 200 }),
      disconnect: async (event) => void disconnects.push(event),
      routes: {
        echo: async (event) => {
          messages.push(event);
          return { statusCode: 200, body: `echo:${event.body}` };
        },
        crash: async () => {
          throw new Error('route crashed');
        },
        slow: () => new Promise(() => undefined),
        oneway: { handler: async (event) => void messages.push(event), returnResponse: false },
        $default: async (event) => ({ statusCode: 200, body: `default:${event.body}` }),
      },
      idleTimeoutMs: 60_000,
      maxDurationMs: 120_000,
      maxMessageBytes: 1024,
      integrationTimeoutMs: 1_000,
      log: (entry) => logs.push(entry),
    });
    management = new ApiGatewayManagementApiClient({ endpoint: gateway.managementUrl });
  });

  afterAll(async () => {
    management?.destroy();
    await gateway?.stop();
  });

  const disconnectOf = (connectionId: string) => disconnects.filter((event) => event.requestContext.connectionId === connectionId);
  const idOf = () => gateway.connections().at(-1)?.connectionId ?? '';

  it.each([
    ['an authorizer that fails', 'boom', 500],
    ['an authorizer answer without a policy', 'broken', 500],
    ['a $connect answering 418', 'teapot', 418],
  ])('refuses the upgrade for %s', async (_, value, status) => {
    expect((await refused(`${gateway.url}?token=${value}`)).status).toBe(status);
    expect(gateway.connectionCount()).toBe(0);
  });

  it('refuses a path that is not the stage', async () => {
    expect((await refused(`${gateway.url.replace(/\/live$/, '/other')}?token=ok`)).status).toBe(404);
  });

  it('falls back to $default, answers route failures and timeouts on the socket, and keeps one-way routes quiet', async () => {
    const client = await open(`${gateway.url}?token=ok`);
    const connectionId = idOf();
    client.socket.send(JSON.stringify({ action: 'echo', n: 1 }));
    expect(await client.next()).toBe('echo:{"action":"echo","n":1}');
    expect(messages.at(-1)?.requestContext.authorizer).toMatchObject({ userId: 'user-x', principalId: 'user-x' });
    client.socket.send('not json');
    expect(await client.next()).toBe('default:not json');
    client.socket.send(JSON.stringify({ action: 'crash' }));
    expect(JSON.parse(await client.next())).toEqual({ message: 'Internal server error', connectionId, requestId: expect.any(String) });
    client.socket.send(JSON.stringify({ action: 'slow' }));
    expect(JSON.parse(await client.next())).toMatchObject({ message: 'Endpoint request timed out', connectionId });
    client.socket.send(JSON.stringify({ action: 'oneway' }));
    await expect.poll(() => messages.at(-1)?.body, { message: 'the one-way route' }).toBe('{"action":"oneway"}');
    client.socket.send(JSON.stringify({ action: 'echo', n: 2 }));
    // The next frame is the echo: the one-way route sent nothing.
    expect(await client.next()).toBe('echo:{"action":"echo","n":2}');
    client.socket.close();
    await client.closed;
    expect(JSON.stringify(logs)).toContain('route crashed');
  });

  /** A gateway of its own, with an echo route, for the time limits. */
  const timed = (limits: { idleTimeoutMs: number; maxDurationMs: number }) =>
    startWebSocketGateway({
      ...limits,
      disconnect: async (event) => void disconnects.push(event),
      routes: { echo: async () => ({ statusCode: 200, body: 'echo' }) },
      log: () => undefined,
    });

  it('answers "Forbidden" to a message no route takes when there is no $default route, as API Gateway does', async () => {
    const plain = await timed({ idleTimeoutMs: 60_000, maxDurationMs: 120_000 });
    try {
      const client = await open(plain.url);
      const connectionId = plain.connections().at(-1)?.connectionId;
      for (const text of [JSON.stringify({ action: 'watch' }), 'hello']) {
        client.socket.send(text);
        expect(JSON.parse(await client.next())).toEqual({ message: 'Forbidden', connectionId, requestId: expect.any(String) });
      }
      client.socket.close();
      await client.closed;
    } finally {
      await plain.stop();
    }
  });

  it('closes a connection idle for longer than the idle timeout with 1001, and runs $disconnect once', async () => {
    const timedGateway = await timed({ idleTimeoutMs: 1_500, maxDurationMs: 120_000 });
    try {
      const client = await open(timedGateway.url);
      const connectionId = timedGateway.connections()[0]?.connectionId ?? '';
      // Messages keep it alive past the idle timeout...
      const started = Date.now();
      while (Date.now() - started < 2_500) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        client.socket.send(JSON.stringify({ action: 'echo' }));
        await client.next();
      }
      expect(client.socket.readyState).toBe(WebSocket.OPEN);
      // ...silence does not.
      expect(await client.closed).toEqual({ code: 1001, reason: 'Going away' });
      await expect.poll(() => disconnectOf(connectionId), { message: '$disconnect' }).toHaveLength(1);
      expect(disconnectOf(connectionId)[0]?.requestContext).toMatchObject({ eventType: 'DISCONNECT', disconnectStatusCode: 1001 });
      expect(timedGateway.connectionCount()).toBe(0);
    } finally {
      await timedGateway.stop();
    }
  });

  it('closes a connection at the maximum duration even while it is busy', async () => {
    const timedGateway = await timed({ idleTimeoutMs: 60_000, maxDurationMs: 1_000 });
    try {
      const client = await open(timedGateway.url);
      const connectionId = timedGateway.connections()[0]?.connectionId ?? '';
      const chatter = setInterval(() => client.socket.readyState === WebSocket.OPEN && client.socket.send('{"action":"echo"}'), 100);
      try {
        expect((await client.closed).code).toBe(1001);
      } finally {
        clearInterval(chatter);
      }
      await expect.poll(() => disconnectOf(connectionId), { message: '$disconnect' }).toHaveLength(1);
    } finally {
      await timedGateway.stop();
    }
  });

  it('closes a connection that sends a message over the size limit with 1009', async () => {
    const client = await open(`${gateway.url}?token=ok`);
    client.socket.send(JSON.stringify({ action: 'echo', pad: 'x'.repeat(2000) }));
    expect((await client.closed).code).toBe(1009);
    await expect.poll(() => gateway.connectionCount(), { message: 'the connection to go' }).toBe(0);
  });

  it('accepts the management API with or without the stage prefix, and refuses oversized posts', async () => {
    const client = await open(`${gateway.url}?token=ok`);
    const connectionId = idOf();
    const base = gateway.managementUrl.replace(/\/live$/, '');
    const posted = await fetch(`${base}/@connections/${encodeURIComponent(connectionId)}`, { method: 'POST', body: 'no stage' });
    expect(posted.status).toBe(200);
    expect(await client.next()).toBe('no stage');
    const tooBig = await fetch(`${gateway.managementUrl}/@connections/${encodeURIComponent(connectionId)}`, { method: 'POST', body: 'x'.repeat(2048) });
    expect(tooBig.status).toBe(413);
    const gone = await fetch(`${gateway.managementUrl}/@connections/nobody=`, { method: 'POST', body: 'x' });
    expect(gone.status).toBe(410);
    expect(await gone.json()).toEqual({ message: 'Gone' });
    client.socket.close();
    await client.closed;
  });

  it('closes every connection on stop, each with its $disconnect', async () => {
    const other = await startWebSocketGateway({ disconnect: async (event) => void disconnects.push(event), log: () => undefined });
    const clients = await Promise.all([open(other.url), open(other.url)]);
    const ids = other.connections().map((connection) => connection.connectionId);
    await other.stop();
    for (const client of clients) expect((await client.closed).code).toBe(1001);
    for (const id of ids) expect(disconnectOf(id)).toHaveLength(1);
  });
});
