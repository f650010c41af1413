import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DynamoDBDocumentClient, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLIENT_ACTIONS, MAX_SUBSCRIPTIONS_PER_CONNECTION, SubscriptionAck, WebSocketError } from '../../schemas/index.js';
import { DynamoConnections } from '../../functions/adapters/dynamo-connections.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { createTestConnectionsTable } from '../support/dynamo.js';

/**
 * The WebSocket API's handlers as API Gateway invokes them: the `$connect` authorizer against tokens signed here (its
 * keys served over loopback HTTP, fetched by the real verifier), and `$connect`, `subscribe`, `unsubscribe`,
 * `$disconnect` against a connections table on DynamoDB Local.
 */

type Handler<E, R> = (event: E, context: ReturnType<typeof lambdaContext>) => Promise<R>;
type Reply = { statusCode: number; body?: string };
type TestTable = Awaited<ReturnType<typeof createTestConnectionsTable>>;
type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

const AUDIENCE = 'dashboard-client-id';
const KID = 'test-key-1';
const METHOD_ARN = 'arn:aws:execute-api:eu-west-1:123456789012:abcdef1234/live/$connect';

let jwksServer: Server;
let issuer: string;
let signingKey: SigningKey;
let strangerKey: SigningKey;
let table: TestTable;
let documents: DynamoDBDocumentClient;
let authorizer: Handler<APIGatewayRequestAuthorizerEvent, APIGatewayAuthorizerResult>;
let connect: Handler<unknown, Reply>;
let subscribe: Handler<unknown, Reply>;
let unsubscribe: Handler<unknown, Reply>;
let disconnect: Handler<unknown, Reply>;
let wsDefault: Handler<unknown, Reply>;

beforeAll(async () => {
  const keys = await generateKeyPair('RS256');
  signingKey = keys.privateKey;
  strangerKey = (await generateKeyPair('RS256')).privateKey;
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(keys.publicKey)), kid: KID, alg: 'RS256', use: 'sig' }] });
  jwksServer = createServer((request, response) => {
    if (request.url !== '/pool/.well-known/jwks.json') return void response.writeHead(404).end();
    response.writeHead(200, { 'content-type': 'application/json' }).end(jwks);
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/pool`;

  table = await createTestConnectionsTable();
  documents = DynamoDBDocumentClient.from(table.client);
  Object.assign(process.env, {
    JWT_ISSUER: issuer,
    JWT_AUDIENCE: AUDIENCE,
    CONNECTIONS_TABLE: table.tableName,
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
  });
  authorizer = (await import('../../functions/handlers/ws-authorizer.js')).handler;
  connect = (await import('../../functions/handlers/ws-connect.js')).handler as Handler<unknown, Reply>;
  subscribe = (await import('../../functions/handlers/ws-subscribe.js')).handler as Handler<unknown, Reply>;
  unsubscribe = (await import('../../functions/handlers/ws-unsubscribe.js')).handler as Handler<unknown, Reply>;
  disconnect = (await import('../../functions/handlers/ws-disconnect.js')).handler as Handler<unknown, Reply>;
  wsDefault = (await import('../../functions/handlers/ws-default.js')).handler as Handler<unknown, Reply>;
});

afterAll(async () => {
  await table.drop();
  await new Promise((resolve) => jwksServer.close(resolve));
});

// ---- Events as API Gateway sends them.

interface TokenOptions {
  readonly groups?: string[];
  readonly use?: 'id' | 'access';
  readonly issuer?: string;
  readonly audience?: string;
  readonly expiresIn?: string | number;
  readonly key?: SigningKey;
  readonly subject?: string;
}

/** A Cognito-shaped token: id tokens name the app client in `aud`, access tokens in `client_id`. */
function token(options: TokenOptions = {}): Promise<string> {
  const claims: JWTPayload = { token_use: options.use ?? 'id' };
  if (options.groups) claims['cognito:groups'] = options.groups;
  if (options.use === 'access') claims.client_id = options.audience ?? AUDIENCE;
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: KID })
    .setIssuer(options.issuer ?? issuer)
    .setSubject(options.subject ?? 'user-1')
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '1h');
  if (options.use !== 'access') jwt.setAudience(options.audience ?? AUDIENCE);
  return jwt.sign(options.key ?? signingKey);
}

function authorizerEvent(query: Record<string, string> | null): APIGatewayRequestAuthorizerEvent {
  return {
    type: 'REQUEST',
    methodArn: METHOD_ARN,
    headers: { Host: 'abcdef1234.execute-api.eu-west-1.amazonaws.com' },
    queryStringParameters: query,
    requestContext: { routeKey: '$connect', eventType: 'CONNECT', connectionId: 'pending' },
  } as unknown as APIGatewayRequestAuthorizerEvent;
}

function webSocketEvent(
  connectionId: string,
  routeKey: string,
  options: { body?: string; authorizer?: Record<string, unknown>; connectedAt?: number } = {},
) {
  return {
    requestContext: {
      routeKey,
      eventType: routeKey === '$connect' ? 'CONNECT' : routeKey === '$disconnect' ? 'DISCONNECT' : 'MESSAGE',
      connectionId,
      connectedAt: options.connectedAt ?? Date.now(),
      requestTimeEpoch: Date.now(),
      requestId: randomUUID(),
      messageId: randomUUID(),
      stage: 'live',
      domainName: 'abcdef1234.execute-api.eu-west-1.amazonaws.com',
      apiId: 'abcdef1234',
      ...(options.authorizer ? { authorizer: options.authorizer } : {}),
    },
    isBase64Encoded: false,
    ...(options.body !== undefined ? { body: options.body } : {}),
  };
}

const context = () => lambdaContext('test-websocket');
const authorize = async (query: Record<string, string> | null) => authorizer(authorizerEvent(query), context());

/** Connects the way API Gateway does: authorizer first, its context then handed to `$connect`. */
async function connected(options: { groups?: string[]; connectedAt?: number } = {}): Promise<string> {
  const connectionId = `${randomUUID().slice(0, 12)}=`;
  const allowed = await authorize({ token: await token({ groups: options.groups ?? ['operator'] }) });
  const reply = await connect(
    webSocketEvent(connectionId, '$connect', {
      authorizer: { ...allowed.context, principalId: allowed.principalId },
      ...(options.connectedAt ? { connectedAt: options.connectedAt } : {}),
    }),
    context(),
  );
  expect(reply.statusCode).toBe(200);
  return connectionId;
}

const message = (connectionId: string, route: 'subscribe' | 'unsubscribe', body: unknown) =>
  (route === 'subscribe' ? subscribe : unsubscribe)(
    webSocketEvent(connectionId, route, { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    context(),
  );

// ---- Reading the table back.

async function connectionItem(connectionId: string) {
  const found = await documents.send(
    new GetCommand({ TableName: table.tableName, Key: { pk: `connection#${connectionId}`, sk: 'connection' }, ConsistentRead: true }),
  );
  return found.Item;
}

async function subscribers(subscription: string): Promise<Record<string, unknown>[]> {
  const found = await documents.send(
    new QueryCommand({
      TableName: table.tableName,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': `subscription#${subscription}` },
      ConsistentRead: true,
    }),
  );
  return found.Items ?? [];
}

const subscribedConnections = async (subscription: string) => (await subscribers(subscription)).map((item) => item.sk);

// ---- Tests.

describe('ws-authorizer', () => {
  it('allows an operator with an id token, handing the user and roles to $connect as strings', async () => {
    // Given an id token of a user in the operator group
    const jwt = await token({ groups: ['operator'], subject: 'user-operator' });

    // When API Gateway asks the authorizer
    const result = await authorize({ token: jwt });

    // Then the connection is allowed for this method, with the user and roles in the context
    expect(result).toEqual({
      principalId: 'user-operator',
      policyDocument: {
        Version: '2012-10-17',
        Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: METHOD_ARN }],
      },
      context: { userId: 'user-operator', roles: 'operator' },
    });
  });

  it('allows an access token whose client_id is the audience', async () => {
    const result = await authorize({ token: await token({ use: 'access', groups: ['engineer', 'admin', 'beta-testers'] }) });
    expect(result.policyDocument.Statement[0]).toMatchObject({ Effect: 'Allow' });
    expect(result.context).toEqual({ userId: 'user-1', roles: 'engineer,admin' });
  });

  it('denies a valid token without any fleet role', async () => {
    for (const groups of [undefined, [], ['beta-testers']]) {
      const result = await authorize({ token: await token(groups ? { groups } : {}) });
      expect(result.policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny', Resource: METHOD_ARN });
      expect(result.context).toBeUndefined();
    }
  });

  it.each([
    ['expired', () => token({ groups: ['admin'], expiresIn: Math.floor(Date.now() / 1000) - 60 })],
    ['from another issuer', () => token({ groups: ['admin'], issuer: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other' })],
    ['for another audience (id token)', () => token({ groups: ['admin'], audience: 'another-client' })],
    ['for another audience (access token)', () => token({ groups: ['admin'], use: 'access', audience: 'another-client' })],
    ['signed with another key', () => token({ groups: ['admin'], key: strangerKey })],
    ['not a JWT', async () => 'not-a-jwt'],
    ['empty', async () => ''],
  ])('answers Unauthorized, and nothing more, for a token %s', async (_, makeToken) => {
    await expect(authorize({ token: await makeToken() })).rejects.toThrow(/^Unauthorized$/);
  });

  it('answers Unauthorized without a token', async () => {
    await expect(authorize(null)).rejects.toThrow(/^Unauthorized$/);
    await expect(authorize({ other: 'x' })).rejects.toThrow(/^Unauthorized$/);
  });
});

describe('ws-connect and ws-disconnect', () => {
  it('stores the connection with who is on it and an expiry after API Gateway’s 2-hour limit', async () => {
    // Given an admitted user
    const connectedAt = Date.parse('2026-11-22T10:00:00.000Z');

    // When $connect runs
    const connectionId = await connected({ groups: ['engineer'], connectedAt });

    // Then the connection is stored, expiring 2 h 10 min after it opened
    expect(await connectionItem(connectionId)).toEqual({
      pk: `connection#${connectionId}`,
      sk: 'connection',
      userId: 'user-1',
      roles: ['engineer'],
      connectedAt: '2026-11-22T10:00:00.000Z',
      expiresAt: connectedAt / 1000 + 2 * 3600 + 10 * 60,
    });
  });

  it('refuses a $connect that comes without the authorizer’s context', async () => {
    const connectionId = randomUUID();
    const reply = await connect(webSocketEvent(connectionId, '$connect'), context());
    expect(reply.statusCode).toBe(401);
    expect(await connectionItem(connectionId)).toBeUndefined();
  });

  it('removes the connection and every subscription on $disconnect', async () => {
    // Given a connection watching the fleet and two robots, and another connection watching one of them
    const connectionId = await connected();
    const other = await connected();
    await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['*', 'lekiwi-DC0001', 'xle-DC0002'] });
    await message(other, 'subscribe', { action: 'subscribe', robotIds: ['lekiwi-DC0001'] });

    // When the first disconnects
    const reply = await disconnect(webSocketEvent(connectionId, '$disconnect'), context());

    // Then nothing of it is left, and the other connection is untouched
    expect(reply.statusCode).toBe(200);
    expect(await connectionItem(connectionId)).toBeUndefined();
    expect(await subscribedConnections('*')).not.toContain(connectionId);
    expect(await subscribedConnections('lekiwi-DC0001')).toEqual([other]);
    expect(await subscribedConnections('xle-DC0002')).toEqual([]);
    expect(await connectionItem(other)).toBeDefined();
  });

  it('treats a repeated $disconnect as done', async () => {
    const connectionId = await connected();
    await disconnect(webSocketEvent(connectionId, '$disconnect'), context());
    await expect(disconnect(webSocketEvent(connectionId, '$disconnect'), context())).resolves.toEqual({ statusCode: 200 });
  });
});

describe('ws-subscribe and ws-unsubscribe', () => {
  it('subscribes to the whole fleet and to robots by id, and acknowledges', async () => {
    // Given a connection
    const connectionId = await connected();

    // When it subscribes to `*`, then to two robots (one named twice)
    const fleet = await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['*'] });
    const robots = await message(connectionId, 'subscribe', {
      action: 'subscribe',
      robotIds: ['lekiwi-SB0001', 'xle-SB0002', 'lekiwi-SB0001'],
    });

    // Then each reply acknowledges what was subscribed
    expect(fleet.statusCode).toBe(200);
    expect(SubscriptionAck.parse(JSON.parse(fleet.body ?? ''))).toEqual({ type: 'Subscribed', robotIds: ['*'] });
    expect(SubscriptionAck.parse(JSON.parse(robots.body ?? ''))).toEqual({
      type: 'Subscribed',
      robotIds: ['lekiwi-SB0001', 'xle-SB0002'],
    });
    // And there is one subscription item per key, expiring with the connection
    const connection = await connectionItem(connectionId);
    expect(connection?.subscriptions).toEqual(new Set(['*', 'lekiwi-SB0001', 'xle-SB0002']));
    for (const key of ['*', 'lekiwi-SB0001', 'xle-SB0002']) {
      const items = (await subscribers(key)).filter((item) => item.sk === connectionId);
      expect(items).toEqual([{ pk: `subscription#${key}`, sk: connectionId, expiresAt: connection?.expiresAt }]);
    }
  });

  it('unsubscribes only what is named', async () => {
    // Given a connection subscribed to the fleet and a robot
    const connectionId = await connected();
    await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['*', 'lekiwi-US0001'] });

    // When it unsubscribes from the fleet
    const reply = await message(connectionId, 'unsubscribe', { action: 'unsubscribe', robotIds: ['*'] });

    // Then it still watches the robot it named
    expect(SubscriptionAck.parse(JSON.parse(reply.body ?? ''))).toEqual({ type: 'Unsubscribed', robotIds: ['*'] });
    expect(await subscribedConnections('*')).not.toContain(connectionId);
    expect(await subscribedConnections('lekiwi-US0001')).toEqual([connectionId]);
    expect((await connectionItem(connectionId))?.subscriptions).toEqual(new Set(['lekiwi-US0001']));
  });

  it('answers a subscribe on a connection it does not know with an error, writing nothing', async () => {
    const connectionId = randomUUID();
    const reply = await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['lekiwi-UK0001'] });
    expect(reply.statusCode).toBe(410);
    expect(WebSocketError.parse(JSON.parse(reply.body ?? '')).error.code).toBe('CONNECTION_UNKNOWN');
    expect(await subscribedConnections('lekiwi-UK0001')).toEqual([]);
  });

  const tooMany = Array.from({ length: 201 }, (_, index) => `lekiwi-MANY${index}`);
  it.each([
    ['no body', undefined, 'body'],
    ['a body that is not JSON', '{"action":"subscribe",', 'body'],
    ['a body that is not an object', '["*"]', 'body'],
    ['no robotIds', { action: 'subscribe' }, 'robotIds'],
    ['robotIds that is not a list', { action: 'subscribe', robotIds: '*' }, 'robotIds'],
    ['an empty robotIds', { action: 'subscribe', robotIds: [] }, 'robotIds'],
    ['a robot id that is not one', { action: 'subscribe', robotIds: ['lekiwi-BAD0001', 'dashboard 1'] }, 'robotIds.1'],
    ['more than 200 robot ids', { action: 'subscribe', robotIds: tooMany }, 'robotIds'],
    ['an unknown field', { action: 'subscribe', robotIds: ['*'], robots: ['*'] }, 'robots'],
    ['the other route’s action', { action: 'unsubscribe', robotIds: ['*'] }, 'action'],
    ['an unknown action', { action: 'watch', robotIds: ['*'] }, 'action'],
  ])('answers %s with an error naming the field, writing nothing', async (_, body, field) => {
    // Given a connection
    const connectionId = await connected();

    // When it sends a bad subscribe message
    const reply = await subscribe(
      webSocketEvent(connectionId, 'subscribe', body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
      context(),
    );

    // Then the reply is an error naming the field, and no subscription was stored
    expect(reply.statusCode).toBe(400);
    const error = WebSocketError.parse(JSON.parse(reply.body ?? ''));
    expect(error.error.code).toBe('INVALID_REQUEST');
    expect((error.error.details as { field: string }[]).map((problem) => problem.field)).toContain(field);
    expect(error.error.message).toContain(field);
    expect((await connectionItem(connectionId))?.subscriptions).toBeUndefined();
    expect(await subscribedConnections('*')).not.toContain(connectionId);
  });

  it('answers a bad unsubscribe message with an error too', async () => {
    const connectionId = await connected();
    await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['*'] });
    const reply = await message(connectionId, 'unsubscribe', { action: 'unsubscribe', robotIds: ['XLE-1'] });
    expect(reply.statusCode).toBe(400);
    expect(JSON.parse(reply.body ?? '')).toMatchObject({ type: 'Error', error: { code: 'INVALID_REQUEST', details: [{ field: 'robotIds.0' }] } });
    expect(await subscribedConnections('*')).toContain(connectionId);
  });
});

describe('the subscription bound', () => {
  const robots = (prefix: string, count: number, from = 0) =>
    Array.from({ length: count }, (_, index) => `lekiwi-${prefix}${String(from + index).padStart(4, '0')}`);

  it(`lets a connection watch ${MAX_SUBSCRIPTIONS_PER_CONNECTION} robots by id, and refuses more with an error naming the bound and "*"`, async () => {
    // Given a connection watching the bound's worth of robots, over several messages
    const connectionId = await connected();
    const held = robots('BD', MAX_SUBSCRIPTIONS_PER_CONNECTION);
    for (let start = 0; start < held.length; start += 30) {
      const reply = await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: held.slice(start, start + 30) });
      expect(reply.statusCode).toBe(200);
    }

    // When it asks for one more robot (alongside one it already has)
    const reply = await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: [held[0], 'xle-BD9999'] });

    // Then it is refused with a clear error, and nothing of that message is stored
    expect(reply.statusCode).toBe(400);
    const error = WebSocketError.parse(JSON.parse(reply.body ?? ''));
    expect(error.error.code).toBe('TOO_MANY_SUBSCRIPTIONS');
    expect(error.error.message).toContain(`at most ${MAX_SUBSCRIPTIONS_PER_CONNECTION} robots`);
    expect(error.error.message).toContain('"*"');
    expect(error.error.details).toEqual({ limit: MAX_SUBSCRIPTIONS_PER_CONNECTION, held: MAX_SUBSCRIPTIONS_PER_CONNECTION, adding: 1 });
    expect(await subscribedConnections('xle-BD9999')).toEqual([]);
    expect((await connectionItem(connectionId))?.subscriptions.size).toBe(MAX_SUBSCRIPTIONS_PER_CONNECTION);

    // And robots it already watches, and `*`, are still accepted at the bound
    expect((await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: held.slice(0, 5) })).statusCode).toBe(200);
    const fleet = await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['*'] });
    expect(SubscriptionAck.parse(JSON.parse(fleet.body ?? ''))).toEqual({ type: 'Subscribed', robotIds: ['*'] });
    expect(await subscribedConnections('*')).toContain(connectionId);

    // And after unsubscribing some there is room again
    await message(connectionId, 'unsubscribe', { action: 'unsubscribe', robotIds: held.slice(0, 1) });
    expect((await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['xle-BD9999'] })).statusCode).toBe(200);
  });

  it('refuses a single message with more robot ids than the bound, saying why', async () => {
    const connectionId = await connected();
    const reply = await message(connectionId, 'subscribe', {
      action: 'subscribe',
      robotIds: robots('ONE', MAX_SUBSCRIPTIONS_PER_CONNECTION + 1),
    });
    expect(reply.statusCode).toBe(400);
    const error = WebSocketError.parse(JSON.parse(reply.body ?? ''));
    expect(error.error.code).toBe('TOO_MANY_SUBSCRIPTIONS');
    expect(error.error.message).toContain('"*"');
    expect((await connectionItem(connectionId))?.subscriptions).toBeUndefined();
  });

  it('never lets racing subscribes of one connection go over the bound', async () => {
    // Given a connection with room for 10 more robots
    const connectionId = await connected();
    await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: robots('RC', MAX_SUBSCRIPTIONS_PER_CONNECTION - 10) });

    // When eight subscribes of 5 new robots each arrive at once
    const replies = await Promise.all(
      Array.from({ length: 8 }, (_, index) =>
        message(connectionId, 'subscribe', { action: 'subscribe', robotIds: robots(`R${index}X`, 5) }),
      ),
    );

    // Then exactly two fit, and the connection holds exactly the bound
    expect(replies.filter((reply) => reply.statusCode === 200)).toHaveLength(2);
    expect(replies.filter((reply) => reply.statusCode === 400)).toHaveLength(6);
    expect((await connectionItem(connectionId))?.subscriptions.size).toBe(MAX_SUBSCRIPTIONS_PER_CONNECTION);
  });

  it('removes a connection at the bound and all its subscription items on $disconnect', async () => {
    const connectionId = await connected();
    const held = robots('DB', MAX_SUBSCRIPTIONS_PER_CONNECTION);
    await message(connectionId, 'subscribe', { action: 'subscribe', robotIds: ['*', ...held] });
    const store = new DynamoConnections({ client: table.client, tableName: table.tableName });
    expect(await store.subscribersOf(held.at(-1)!)).toEqual([connectionId]);

    await disconnect(webSocketEvent(connectionId, '$disconnect'), context());

    expect(await connectionItem(connectionId)).toBeUndefined();
    for (const key of ['*', held[0]!, held.at(-1)!]) expect(await subscribedConnections(key)).not.toContain(connectionId);
  });
});

describe('ws-default (an unknown action)', () => {
  it.each([
    ['an unknown action', JSON.stringify({ action: 'watch', robotIds: ['*'] }), 'There is no action "watch"'],
    ['no action', JSON.stringify({ robotIds: ['*'] }), 'no "action"'],
    ['a message that is not JSON', 'hello', 'no "action"'],
  ])('answers %s with the actions that exist', async (_, body, said) => {
    const connectionId = await connected();
    const reply = await wsDefault(webSocketEvent(connectionId, '$default', { body }), context());
    expect(reply.statusCode).toBe(400);
    const error = WebSocketError.parse(JSON.parse(reply.body ?? ''));
    expect(error.error).toMatchObject({ code: 'UNKNOWN_ACTION', details: { actions: ['subscribe', 'unsubscribe'] } });
    expect(error.error.message).toContain(said);
    for (const action of CLIENT_ACTIONS) expect(error.error.message).toContain(`"${action}"`);
  });
});
