import {
  ForbiddenException,
  InvalidRequestException,
  IoTDataPlaneClient,
  PublishCommand,
  RequestEntityTooLargeException,
  ServiceUnavailableException,
} from '@aws-sdk/client-iot-data-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IotDataPublisher } from '../../functions/adapters/iot-data-publisher.js';
import { startIotDataPlane, type IotDataPlane } from '../../local/iot-data-plane.js';
import { CLOUD_COMMAND_TOPICS } from '../../schemas/topics.js';

/**
 * The local IoT data plane with AWS's own client: what `@aws-sdk/client-iot-data-plane` sends (SigV4, the topic as a
 * percent-encoded label, the payload as the body) reaches the broker as the same topic and bytes, and what IoT Core
 * refuses comes back as the SDK's own exception types.
 */

let plane: IotDataPlane;
let client: IoTDataPlaneClient;
const received: { topic: string; payload: string }[] = [];
let brokerDown = false;

beforeAll(async () => {
  plane = await startIotDataPlane({
    port: 0,
    allowedTopics: CLOUD_COMMAND_TOPICS,
    publish: async (topic, payload) => {
      if (brokerDown) throw new Error('broker stopped');
      received.push({ topic, payload: payload.toString('utf8') });
    },
  });
  client = new IoTDataPlaneClient({
    region: 'eu-west-1',
    endpoint: plane.url,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
});

afterAll(async () => {
  client?.destroy();
  await plane?.stop();
});

const publish = (topic: string, payload: string | Uint8Array, qos = 1) =>
  client.send(new PublishCommand({ topic, qos, payload: typeof payload === 'string' ? new TextEncoder().encode(payload) : payload }));

describe('the local IoT data plane', () => {
  it('publishes what the SDK sends into the broker: topic decoded, payload byte for byte', async () => {
    const before = received.length;
    await new IotDataPublisher(client).send('lekiwi-LK0001', 'report-now', { requestId: 'req-1' });
    await publish('cmd/heartbeat/xle-XL0042/report-now', 'ünïcödé {"x":1}', 0);
    expect(received.slice(before)).toEqual([
      { topic: 'cmd/heartbeat/lekiwi-LK0001/report-now', payload: '{"requestId":"req-1"}' },
      { topic: 'cmd/heartbeat/xle-XL0042/report-now', payload: 'ünïcödé {"x":1}' },
    ]);
    expect(plane.published()).toBeGreaterThanOrEqual(2);
  });

  it('refuses a topic outside the iot:Publish grant with ForbiddenException, and publishes nothing', async () => {
    const before = received.length;
    await expect(publish('dt/heartbeat/lekiwi-LK0001/telemetry', '{}')).rejects.toBeInstanceOf(ForbiddenException);
    await expect(publish('cmd/heartbeat/lekiwi-LK0001/self-destruct', '{}')).rejects.toBeInstanceOf(ForbiddenException);
    expect(received.length).toBe(before);
  });

  it('refuses what IoT Core refuses: a wildcard topic, QoS 2, too many levels, a payload over 128 KB', async () => {
    await expect(publish('cmd/heartbeat/+/report-now', '{}')).rejects.toBeInstanceOf(InvalidRequestException);
    await expect(publish('cmd/heartbeat/lekiwi-LK0001/report-now', '{}', 2)).rejects.toThrow(/qos must be 0 or 1/);
    await expect(publish('a/b/c/d/e/f/g/h/i', '{}')).rejects.toBeInstanceOf(InvalidRequestException);
    await expect(publish('cmd/heartbeat/lekiwi-LK0001/report-now', new Uint8Array(128 * 1024 + 1))).rejects.toBeInstanceOf(
      RequestEntityTooLargeException,
    );
  });

  it('answers an unsigned request 401 and an unknown path 404', async () => {
    const unsigned = await fetch(`${plane.url}/topics/${encodeURIComponent('cmd/heartbeat/lekiwi-LK0001/report-now')}?qos=1`, {
      method: 'POST',
      body: '{}',
    });
    expect(unsigned.status).toBe(401);
    expect(unsigned.headers.get('x-amzn-errortype')).toBe('UnauthorizedException');
    const elsewhere = await fetch(`${plane.url}/things/lekiwi-LK0001/shadow`, { headers: { authorization: 'AWS4-HMAC-SHA256 Credential=x' } });
    expect(elsewhere.status).toBe(404);
  });

  it('answers 503 ServiceUnavailableException while the broker cannot take the message', async () => {
    brokerDown = true;
    try {
      await expect(publish('cmd/heartbeat/lekiwi-LK0001/report-now', '{}')).rejects.toBeInstanceOf(ServiceUnavailableException);
    } finally {
      brokerDown = false;
    }
  });
});
