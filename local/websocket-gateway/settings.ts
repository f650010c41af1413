import type { APIGatewayEventWebsocketRequestContextV2, APIGatewayProxyWebsocketEventV2WithRequestContext, APIGatewayRequestAuthorizerEvent } from 'aws-lambda';
import { defaultGatewayLog, type GatewayLog, type LambdaFunction } from '../gateway-support.js';
import { parseIdentitySource, type IdentitySource } from './authorizer-policy.js';

/**
 * The WebSocket gateway's public types (events, handlers, routes, options) and its options resolved once into
 * `GatewaySettings`, the plain values every other part reads.
 *
 * Invariants: `resolveSettings` is the only place defaults are chosen (API Gateway's quotas and names) and it fails
 * at start on a malformed identity source, never later on a connection; every route in `routes` is a
 * `WebSocketRoute` (a bare handler became a two-way route); settings never change after start.
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

export const IDLE_TIMEOUT_MS = 10 * 60_000;
export const MAX_CONNECTION_DURATION_MS = 2 * 3600_000;
export const MAX_MESSAGE_BYTES = 128 * 1024;
export const WS_INTEGRATION_TIMEOUT_MS = 29_000;

export interface GatewaySettings {
  readonly host: string;
  readonly stage: string;
  readonly apiId: string;
  readonly region: string;
  readonly log: GatewayLog;
  readonly idleTimeoutMs: number;
  readonly maxDurationMs: number;
  readonly maxMessageBytes: number;
  readonly integrationTimeoutMs: number;
  readonly identitySource: readonly IdentitySource[];
  readonly authorizer: WebSocketAuthorizer | undefined;
  readonly connect: WebSocketHandler | undefined;
  readonly disconnect: WebSocketHandler | undefined;
  readonly routes: ReadonlyMap<string, WebSocketRoute>;
}

export function resolveSettings(options: WebSocketGatewayOptions): GatewaySettings {
  return {
    host: options.host ?? '127.0.0.1',
    stage: options.stage ?? 'live',
    apiId: options.apiId ?? 'local',
    region: options.region ?? process.env.AWS_REGION ?? 'local',
    log: options.log ?? defaultGatewayLog,
    idleTimeoutMs: options.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    maxDurationMs: options.maxDurationMs ?? MAX_CONNECTION_DURATION_MS,
    maxMessageBytes: options.maxMessageBytes ?? MAX_MESSAGE_BYTES,
    integrationTimeoutMs: options.integrationTimeoutMs ?? WS_INTEGRATION_TIMEOUT_MS,
    identitySource: (options.identitySource ?? ['route.request.querystring.token']).map(parseIdentitySource),
    authorizer: options.authorizer,
    connect: options.connect,
    disconnect: options.disconnect,
    routes: new Map(
      Object.entries(options.routes ?? {}).map(([key, route]): [string, WebSocketRoute] => [
        key,
        typeof route === 'function' ? { handler: route, returnResponse: true } : route,
      ]),
    ),
  };
}

/** The stage's own path (`/`, `/<stage>`, trailing slashes ignored): where clients connect. */
export function isStagePath(stage: string, path: string): boolean {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' || trimmed === `/${stage}`;
}
