import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { apiGatewayTime } from '../gateway-support.js';
import type { WebSocketRequestContext } from './settings.js';

/**
 * Pure shaping of what API Gateway hands a WebSocket route's function and takes back from it: the request context of
 * every event, the original headers and query values, connection ids, and reading a handler's answer.
 *
 * Invariants: every event gets fresh `requestId`/`messageId`/`extendedRequestId`; the connection's fields
 * (`connectionId`, `connectedAt`, identity, `domainName`, `authorizer`) are the same on every event of one connection;
 * `authorizer` is present only when an authorizer admitted the connection.
 */

/** The fields of a connection every event's request context repeats. */
export interface RequestOrigin {
  readonly id: string;
  readonly connectedAt: number;
  readonly sourceIp: string;
  readonly userAgent: string;
  /** The Host the client connected to: every event's `requestContext.domainName`. */
  readonly domainName: string;
  readonly authorizer: Record<string, unknown> | undefined;
}

export type EventType = 'CONNECT' | 'MESSAGE' | 'DISCONNECT';

/** What API Gateway puts in every event of a connection; the request ids are new each time. */
export function requestContextOf(
  api: { readonly stage: string; readonly apiId: string },
  origin: RequestOrigin,
  routeKey: string,
  eventType: EventType,
): WebSocketRequestContext {
  return {
    routeKey,
    eventType,
    messageId: randomUUID(),
    extendedRequestId: randomUUID(),
    requestTime: apiGatewayTime(new Date()),
    messageDirection: 'IN',
    stage: api.stage,
    connectedAt: origin.connectedAt,
    requestTimeEpoch: Date.now(),
    identity: { sourceIp: origin.sourceIp, userAgent: origin.userAgent },
    requestId: randomUUID(),
    domainName: origin.domainName,
    connectionId: origin.id,
    apiId: api.apiId,
    ...(origin.authorizer ? { authorizer: origin.authorizer } : {}),
  };
}

/** The request's headers with their original spelling, as API Gateway passes them (`Host`, `Sec-WebSocket-Key`…). */
export function originalHeaders(request: IncomingMessage): { headers: Record<string, string>; multiValueHeaders: Record<string, string[]> } {
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i + 1 < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i] as string;
    (multiValueHeaders[name] ??= []).push(request.rawHeaders[i + 1] as string);
  }
  const headers = Object.fromEntries(Object.entries(multiValueHeaders).map(([name, values]) => [name, values.join(',')]));
  return { headers, multiValueHeaders };
}

export function singleAndMultiValues(search: URLSearchParams): { single: Record<string, string>; multi: Record<string, string[]> } {
  const single: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (const [name, value] of search) {
    (multi[name] ??= []).push(value);
    single[name] = value;
  }
  return { single, multi };
}

export function statusOf(result: unknown): number | undefined {
  if (result === null || typeof result !== 'object') return undefined;
  const status = (result as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** What a two-way route sends back: a proxy answer's `body`, a string as it is, any other value as JSON. */
export function responseBody(result: unknown): string | null {
  if (result === undefined || result === null) return null;
  if (typeof result === 'string') return result;
  if (typeof result === 'object' && 'statusCode' in result) {
    const body = (result as { body?: unknown }).body;
    return typeof body === 'string' ? body : null;
  }
  return JSON.stringify(result);
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Shaped like API Gateway's (`L0SM9cOFvHcCIhw=`), URL-safe so it needs no escaping in `@connections` paths. */
export function newConnectionId(): string {
  return `${[...randomBytes(15)].map((byte) => ID_ALPHABET[byte % ID_ALPHABET.length]).join('')}=`;
}
