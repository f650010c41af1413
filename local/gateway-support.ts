import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:net';
import type { Context } from 'aws-lambda';
import { describeError } from '../lib/describe-error.js';

/**
 * Small pieces the local HTTP and WebSocket gateways share: their log callback, reading a request body under
 * API Gateway's size limit, JSON answers, and calling a Lambda handler with API Gateway's integration timeout.
 */

export type GatewayLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** One entry per request, refusal or failure, with ids, route keys, statuses and errors beside the message. */
export type GatewayLogEntry = { readonly level: GatewayLogLevel; readonly message: string; readonly [detail: string]: unknown };
export type GatewayLog = (entry: GatewayLogEntry) => void;

/** Errors go to stderr unless the caller says where logs go; nothing else is printed. */
export const defaultGatewayLog: GatewayLog = ({ level, message, ...details }) => {
  if (level === 'error') console.error(`[gateway] ${message}`, details);
};

/** A Lambda handler as API Gateway invokes it (a middy handler fits). */
export type LambdaFunction<TEvent, TResult = unknown> = (event: TEvent, context: Context) => Promise<TResult> | TResult;

export class BodyTooLarge extends Error {
  override readonly name = 'BodyTooLarge';
}

/** The whole body, refused with BodyTooLarge as soon as it passes `limit` bytes (declared or actually sent). */
export async function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    request.resume();
    throw new BodyTooLarge(`the body of ${declared} bytes is over the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limit) {
      request.resume();
      throw new BodyTooLarge(`the body is over the ${limit}-byte limit`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

export function sendJson(
  response: ServerResponse,
  statusCode: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  const text = JSON.stringify(body);
  response.writeHead(statusCode, {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  response.end(text);
}

export class IntegrationTimeout extends Error {
  override readonly name = 'IntegrationTimeout';
}

/**
 * Calls a handler the way API Gateway's Lambda integration does: the handler's own failure rejects, and an answer
 * later than `timeoutMs` rejects with IntegrationTimeout (the handler keeps running, as a Lambda would; its late
 * answer is dropped).
 */
export async function invokeWithTimeout<TEvent, TResult>(
  handler: LambdaFunction<TEvent, TResult>,
  event: TEvent,
  context: Context,
  timeoutMs: number,
): Promise<TResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IntegrationTimeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve().then(() => handler(event, context)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** An error as a log detail: name and message, and the stack for the ones we did not expect. */
export function errorFields(error: unknown): Record<string, unknown> {
  return { error: describeError(error), ...(error instanceof Error ? { stack: error.stack } : {}) };
}

/** `12/Mar/2020:19:03:58 +0000`, the format of API Gateway's `requestTime`. */
export function apiGatewayTime(date: Date): string {
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (value: number) => String(value).padStart(2, '0');
  return (
    `${pad(date.getUTCDate())}/${months[date.getUTCMonth()]}/${date.getUTCFullYear()}:` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`
  );
}

/** Resolves once the server listens; its port (a free one for port 0). */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

/** `http://host:port`, with IPv6 hosts in brackets. */
export function hostUrl(protocol: 'http' | 'ws', host: string, port: number): string {
  return `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
