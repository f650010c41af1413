import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { IOT_MAX_PAYLOAD_BYTES, IOT_MAX_QOS, IOT_MAX_TOPIC_BYTES, IOT_MAX_TOPIC_SLASHES } from '../schemas/iot-limits.js';
import { BodyTooLarge, hostUrl, listen, readBody, type GatewayLog } from './gateway-support.js';

/**
 * AWS IoT Core's data plane `Publish` REST call (`POST /topics/{topic}?qos=1`, the body is the payload, SigV4-signed),
 * for the cloud's commands to robots: `@aws-sdk/client-iot-data-plane` pointed at it (AWS_ENDPOINT_URL_IOT_DATA_PLANE)
 * publishes into the local broker as it would into IoT Core. What IoT Core refuses is refused the same way, with its
 * status and error type: an unsigned request, a topic outside the caller's IAM grant, a wildcard or over-long topic,
 * a QoS other than 0 or 1, a payload over 128 KB. The signature itself is not verified (there are no real keys here).
 */
export interface IotDataPlaneOptions {
  /** 0 = any free port. */
  readonly port: number;
  readonly host?: string;
  /** Publishes into the broker (IotBroker.publish). */
  readonly publish: (topic: string, payload: Buffer) => Promise<void>;
  /** The caller's `iot:Publish` grant as IAM topic names (`*` matches anything); absent: every topic. */
  readonly allowedTopics?: readonly string[];
  readonly log?: GatewayLog;
}

export interface IotDataPlane {
  readonly port: number;
  /** `http://host:port`, for AWS_ENDPOINT_URL_IOT_DATA_PLANE. */
  readonly url: string;
  /** Publishes accepted so far. */
  published(): number;
  stop(): Promise<void>;
}

/** IoT Core's limits on an HTTPS publish (schemas/iot-limits.ts). */
const MAX_PAYLOAD_BYTES = IOT_MAX_PAYLOAD_BYTES;
const MAX_TOPIC_BYTES = IOT_MAX_TOPIC_BYTES;
const MAX_TOPIC_SLASHES = IOT_MAX_TOPIC_SLASHES;

class DataPlaneError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

export async function startIotDataPlane(options: IotDataPlaneOptions): Promise<IotDataPlane> {
  const host = options.host ?? '127.0.0.1';
  const log = options.log ?? (() => {});
  const allowed = options.allowedTopics?.map(iamPattern);
  let accepted = 0;

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://data-plane');
    const match = /^\/topics\/([^/]+)$/.exec(url.pathname);
    if (!match) throw new DataPlaneError(404, 'ResourceNotFoundException', `No such operation: ${request.method} ${url.pathname}`);
    if (request.method !== 'POST') throw new DataPlaneError(405, 'MethodNotAllowedException', `Publish takes POST, not ${request.method}`);
    if (!/^AWS4-HMAC-SHA256 Credential=/.test(request.headers.authorization ?? '')) {
      throw new DataPlaneError(401, 'UnauthorizedException', 'The request is not signed with AWS Signature Version 4');
    }
    const topic = decodeTopic(match[1] as string);
    const qos = url.searchParams.get('qos') ?? '0';
    if (!/^[0-9]$/.test(qos) || Number(qos) > IOT_MAX_QOS) throw new DataPlaneError(400, 'InvalidRequestException', `qos must be 0 or 1, not ${qos}`);
    if (allowed && !allowed.some((pattern) => pattern.test(topic))) {
      throw new DataPlaneError(403, 'ForbiddenException', `The caller may not publish to ${topic} (iot:Publish is not granted on it)`);
    }
    const payload = await readBody(request, MAX_PAYLOAD_BYTES).catch((error: unknown) => {
      if (error instanceof BodyTooLarge) throw new DataPlaneError(413, 'RequestEntityTooLargeException', `The payload is over ${MAX_PAYLOAD_BYTES} bytes`);
      throw error;
    });
    await options.publish(topic, payload);
    accepted += 1;
    log({ level: 'debug', message: 'data plane publish', topic, qos, bytes: payload.length });
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' });
    response.end('{}');
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      const known = error instanceof DataPlaneError ? error : undefined;
      if (!known) log({ level: 'error', message: 'data plane publish failed', error: String(error) });
      const status = known?.status ?? 503;
      const type = known?.type ?? 'ServiceUnavailableException';
      const body = JSON.stringify({ message: known?.message ?? 'The broker did not take the message' });
      if (response.headersSent) return void response.destroy();
      request.resume();
      response.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': type, 'content-length': String(Buffer.byteLength(body)) });
      response.end(body);
    });
  });
  const port = await listen(server, options.port, host);
  return {
    port,
    url: hostUrl('http', host, port),
    published: () => accepted,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The topic from its URL label (the SDK percent-encodes the slashes), checked against IoT Core's publish rules. */
function decodeTopic(label: string): string {
  let topic: string;
  try {
    topic = decodeURIComponent(label);
  } catch {
    throw new DataPlaneError(400, 'InvalidRequestException', 'The topic is not valid percent-encoded UTF-8');
  }
  if (topic === '' || topic.includes('+') || topic.includes('#')) {
    throw new DataPlaneError(400, 'InvalidRequestException', `"${topic}" is not a topic one can publish to (empty or a wildcard)`);
  }
  if (Buffer.byteLength(topic) > MAX_TOPIC_BYTES) throw new DataPlaneError(400, 'InvalidRequestException', `The topic is over ${MAX_TOPIC_BYTES} bytes`);
  if ((topic.match(/\//g)?.length ?? 0) > MAX_TOPIC_SLASHES) {
    throw new DataPlaneError(400, 'InvalidRequestException', `The topic has more than ${MAX_TOPIC_SLASHES} slashes`);
  }
  return topic;
}

/** An IAM resource name with `*` (any characters) and `?` (one) as a whole-string pattern. */
function iamPattern(name: string): RegExp {
  const source = name.replace(/[.+^${}()|[\]\\/]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`);
}
