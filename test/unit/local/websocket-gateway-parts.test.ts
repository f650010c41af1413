import { describe, expect, it } from 'vitest';
import { parseIdentitySource, policyVerdict } from '../../../local/websocket-gateway/authorizer-policy.js';
import { newConnectionId, requestContextOf, responseBody, statusOf } from '../../../local/websocket-gateway/events.js';
import { selectRoute } from '../../../local/websocket-gateway/message-routing.js';
import { isStagePath, resolveSettings, type WebSocketRoute } from '../../../local/websocket-gateway/settings.js';

/** The WebSocket gateway's pure parts, without sockets (the gateway over real sockets: integration/websocket-gateway). */

const ARN = 'arn:aws:execute-api:local:000000000000:local/live/$connect';
const policy = (effect: string, resource: string | string[] = ARN, action: string | string[] = 'execute-api:Invoke') => ({
  Effect: effect,
  Action: action,
  Resource: resource,
});

describe('policyVerdict', () => {
  it('allows on a matching Allow, with wildcards and case-insensitive actions', () => {
    expect(policyVerdict({ principalId: 'u', policyDocument: { Statement: [policy('Allow', 'arn:aws:execute-api:*:*:local/*')] } }, ARN)).toEqual({
      allowed: true,
      principalId: 'u',
      context: {},
    });
    expect(policyVerdict({ principalId: 'u', policyDocument: { Statement: [policy('Allow', ARN, 'Execute-Api:*')] } }, ARN).allowed).toBe(true);
  });

  it('lets an explicit Deny win over an Allow, and ignores statements on other methods', () => {
    const both = { principalId: 'u', policyDocument: { Statement: [policy('Allow'), policy('Deny')] } };
    expect(policyVerdict(both, ARN).allowed).toBe(false);
    const elsewhere = { principalId: 'u', policyDocument: { Statement: [policy('Allow', 'arn:aws:execute-api:local:000000000000:other/*')] } };
    expect(policyVerdict(elsewhere, ARN)).toMatchObject({ allowed: false, principalId: 'u' });
  });

  it('names what API Gateway cannot use in an answer', () => {
    expect(policyVerdict(null, ARN).problem).toBe('the answer is not an object');
    expect(policyVerdict({ policyDocument: { Statement: [] } }, ARN).problem).toBe('principalId is not a string');
    expect(policyVerdict({ principalId: 'u', policyDocument: {} }, ARN).problem).toBe('policyDocument.Statement is not a list');
    expect(policyVerdict({ principalId: 'u', policyDocument: { Statement: [] }, context: { nested: { a: 1 } } }, ARN).problem).toBe(
      'context.nested is not a string, number or boolean',
    );
  });
});

describe('parseIdentitySource', () => {
  it('reads query strings as spelled and headers lower-case', () => {
    expect(parseIdentitySource('route.request.querystring.Token')).toMatchObject({ in: 'querystring', name: 'Token' });
    expect(parseIdentitySource('route.request.header.Authorization')).toMatchObject({ in: 'header', name: 'authorization' });
  });

  it('refuses anything else at start, naming the expression', () => {
    expect(() => parseIdentitySource('method.request.header.Auth')).toThrow(/"method\.request\.header\.Auth" is not/);
    expect(() => resolveSettings({ identitySource: ['$request.body.x'] })).toThrow(/\$request\.body\.x/);
  });
});

describe('selectRoute', () => {
  const route: WebSocketRoute = { handler: async () => undefined };
  const routes = new Map<string, WebSocketRoute>([
    ['subscribe', route],
    ['$default', route],
    ['$disconnect', route],
  ]);

  it('selects on the action of a JSON object, falling back to $default', () => {
    expect(selectRoute(routes, '{"action":"subscribe"}')).toBe('subscribe');
    expect(selectRoute(routes, '{"action":"nope"}')).toBe('$default');
    expect(selectRoute(routes, '["subscribe"]')).toBe('$default');
    expect(selectRoute(routes, 'not json')).toBe('$default');
    expect(selectRoute(routes, null)).toBe('$default');
  });

  it('never selects a $ route from a message, and selects nothing without $default', () => {
    expect(selectRoute(routes, '{"action":"$disconnect"}')).toBe('$default');
    expect(selectRoute(new Map([['subscribe', route]]), '{"action":"other"}')).toBeNull();
  });
});

describe('events', () => {
  const origin = { id: 'abc=', connectedAt: 1, sourceIp: '10.0.0.1', userAgent: 'ua', domainName: 'h:1', authorizer: undefined };

  it('repeats the connection and gives each event new request ids', () => {
    const first = requestContextOf({ stage: 'live', apiId: 'api' }, origin, '$default', 'MESSAGE');
    const second = requestContextOf({ stage: 'live', apiId: 'api' }, origin, '$default', 'MESSAGE');
    expect(first).toMatchObject({ connectionId: 'abc=', connectedAt: 1, stage: 'live', apiId: 'api', identity: { sourceIp: '10.0.0.1' } });
    expect(first).not.toHaveProperty('authorizer');
    expect(second.requestId).not.toBe(first.requestId);
    expect(requestContextOf({ stage: 'live', apiId: 'api' }, { ...origin, authorizer: { principalId: 'u' } }, '$connect', 'CONNECT').authorizer).toEqual({
      principalId: 'u',
    });
  });

  it('reads a two-way answer as API Gateway does', () => {
    expect(responseBody({ statusCode: 200, body: 'text' })).toBe('text');
    expect(responseBody({ statusCode: 200 })).toBeNull();
    expect(responseBody({ ok: true })).toBe('{"ok":true}');
    expect(responseBody(undefined)).toBeNull();
    expect(statusOf({ statusCode: 403 })).toBe(403);
    expect(statusOf('x')).toBeUndefined();
  });

  it('makes URL-safe connection ids shaped like API Gateway', () => {
    expect(newConnectionId()).toMatch(/^[A-Za-z0-9]{15}=$/);
  });

  it('knows the stage path', () => {
    expect(isStagePath('live', '/live/')).toBe(true);
    expect(isStagePath('live', '/')).toBe(true);
    expect(isStagePath('live', '/other')).toBe(false);
  });
});
