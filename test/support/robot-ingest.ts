import { createServer, type Server } from 'node:http';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import { topics } from '../../schemas/index.js';
import { lambdaContext } from '../../local/lambda-context.js';

/**
 * The robot-ingest handler as the ingest stream's event source mapping invokes it, fed with what the topic rules
 * put into the stream (the payload plus `topic`, keyed by robot), and an IoT data plane stand-in that keeps the
 * acknowledgements it publishes. For tests of the handler module itself; the local cloud runs the whole path.
 */

export type RuleKind = 'presence' | 'telemetry' | 'events';
type Handler = (event: KinesisStreamEvent, context: ReturnType<typeof lambdaContext>) => Promise<KinesisStreamBatchResponse>;

let sequence = 0;

/** The record a rule would put for this payload: `topic` added, partition key = the robot the topic names. */
export function channelRecord(kind: RuleKind, payload: unknown): KinesisStreamEvent['Records'][number] {
  const fields = typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? (payload as Record<string, unknown>) : {};
  // A topic level is at most a client id's 128 characters and has no '/': anything else stands for an unknown robot.
  const name = (value: unknown) =>
    typeof value === 'string' && value.length > 0 && value.length <= 128 && !value.includes('/') ? value : 'unknown';
  const robot = name(kind === 'presence' ? fields.clientId : fields.thingName);
  const topic =
    kind === 'presence'
      ? fields.eventType === 'disconnected'
        ? topics.presenceDisconnected(robot)
        : topics.presenceConnected(robot)
      : kind === 'telemetry'
        ? topics.telemetry(robot)
        : topics.events(robot);
  const data = typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? { ...payload, topic } : payload;
  sequence += 1;
  const sequenceNumber = String(sequence).padStart(56, '0');
  return {
    kinesis: {
      kinesisSchemaVersion: '1.0',
      partitionKey: robot,
      sequenceNumber,
      data: Buffer.from(JSON.stringify(data) ?? '').toString('base64'),
      approximateArrivalTimestamp: Date.now() / 1000,
    },
    eventSource: 'aws:kinesis',
    eventVersion: '1.0',
    eventID: `shardId-000000000000:${sequenceNumber}`,
    eventName: 'aws:kinesis:record',
    invokeIdentityArn: 'arn:aws:iam::000000000000:role/test',
    awsRegion: 'eu-west-1',
    eventSourceARN: 'arn:aws:kinesis:eu-west-1:000000000000:stream/test-ingest',
  };
}

/** One rule's messages, each in a batch of its own, through the handler; resolves with the batch response. */
export function viaChannel(handler: Handler, kind: RuleKind) {
  return (payload: unknown) => handler({ Records: [channelRecord(kind, payload)] }, lambdaContext('test-robot-ingest'));
}

/** An HTTP server answering IoT data plane `Publish` calls with 200, keeping what was published. */
export async function startAckSink(): Promise<{ url: string; published: { topic: string; payload: unknown }[]; stop(): Promise<void> }> {
  const published: { topic: string; payload: unknown }[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const topic = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname.replace(/^\/topics\//, ''));
      const text = Buffer.concat(chunks).toString('utf8');
      published.push({ topic, payload: text ? (JSON.parse(text) as unknown) : undefined });
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    published,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
