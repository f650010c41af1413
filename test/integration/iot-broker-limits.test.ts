import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, type IssuedCertificate } from '../../local/certificate-authority.js';
import { type BrokerLogEntry, type IotBroker, type RuleAction, type RuleRecord, startIotBroker } from '../../local/iot-broker.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import { IOT_MAX_PAYLOAD_BYTES } from '../../schemas/iot-limits.js';
import { TOPIC_RULES, topics } from '../../schemas/topics.js';

/**
 * The local IoT Core refuses what IoT Core refuses (schemas/iot-limits.ts): a payload over 128 KB and QoS 2 close the
 * connection (lifecycle CLIENT_ERROR), and the message reaches neither the rules nor a subscriber. mqtt.js (not the
 * robots' client) over mTLS.
 */
const ROBOTS = ['lekiwi-LIM001', 'lekiwi-LIM002', 'lekiwi-LIM003', 'lekiwi-LIM004', 'lekiwi-LIM005', 'lekiwi-LIM006'];

let stateDir: string;
let ca: CertificateAuthority;
let broker: IotBroker;
const certs = new Map<string, IssuedCertificate>();
const puts: { rule: string; record: RuleRecord }[] = [];
const logs: BrokerLogEntry[] = [];
const clients: MqttClient[] = [];

const rules: RuleAction[] = Object.values(TOPIC_RULES).map((rule) => ({
  rule,
  put: async (record: RuleRecord) => void puts.push({ rule: rule.name, record }),
}));

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'iot-broker-limits-'));
  ca = await CertificateAuthority.create();
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  const registry = ThingRegistry.in(stateDir);
  for (const thing of ROBOTS) {
    const cert = await ca.issueClientCertificate(thing);
    certs.set(thing, cert);
    await registry.attach(thing, cert.certificateId);
  }
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry,
    rules,
    minKeepAliveSeconds: 1,
    log: (entry) => logs.push(entry),
  });
});

afterEach(() => {
  for (const client of clients.splice(0)) client.end(true);
});

afterAll(async () => {
  await broker?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

async function connect(thing: string): Promise<MqttClient> {
  const cert = certs.get(thing)!;
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
    protocolVersion: 4,
    clientId: thing,
    key: cert.privateKeyPem,
    cert: cert.certificatePem,
    ca: ca.certificatePem,
    keepalive: 30,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  client.on('error', () => undefined);
  clients.push(client);
  await expect.poll(() => connectedEvents(thing).length).toBeGreaterThan(0);
  return client;
}

const presenceOf = (thing: string, eventType: 'connected' | 'disconnected') =>
  puts.filter((put) => put.rule === TOPIC_RULES.presence.name && put.record.data.clientId === thing && put.record.data.eventType === eventType);
const connectedEvents = (thing: string) => presenceOf(thing, 'connected');
const eventsPutFor = (thing: string, marker: string) =>
  puts.filter((put) => put.rule === TOPIC_RULES.events.name && put.record.partitionKey === thing && put.record.data.marker === marker);

/** A JSON object of exactly `bytes` bytes, with `marker` to find it by. */
function jsonOfSize(bytes: number, marker: string): Buffer {
  const empty = JSON.stringify({ marker, pad: '' });
  const json = JSON.stringify({ marker, pad: 'x'.repeat(bytes - empty.length) });
  expect(Buffer.byteLength(json)).toBe(bytes);
  return Buffer.from(json);
}

/** Publishes at QoS 1 or 2 and reports how it ended: acknowledged, or the connection closed first. */
function publishOutcome(client: MqttClient, topic: string, payload: Buffer, qos: 1 | 2): Promise<'acknowledged' | 'closed'> {
  return new Promise((resolve) => {
    client.once('close', () => resolve('closed'));
    client.publish(topic, payload, { qos }, (error) => {
      if (!error) resolve('acknowledged');
    });
  });
}

const replyTopic = (thing: string) => `cmd/heartbeat/${thing}/limit-test/reply`;

describe('local IoT broker: IoT Core limits', { timeout: 60_000 }, () => {
  it('takes a payload of exactly 128 KB: acknowledged, put into the stream and delivered', async () => {
    const thing = ROBOTS[0]!;
    const client = await connect(thing);
    const received: Buffer[] = [];
    client.on('message', (_topic, payload) => received.push(payload));
    await client.subscribeAsync(replyTopic(thing), { qos: 1 });

    expect(await publishOutcome(client, topics.events(thing), jsonOfSize(IOT_MAX_PAYLOAD_BYTES, 'at-limit'), 1)).toBe('acknowledged');
    expect(eventsPutFor(thing, 'at-limit')).toHaveLength(1);

    expect(await publishOutcome(client, replyTopic(thing), jsonOfSize(IOT_MAX_PAYLOAD_BYTES, 'delivered'), 1)).toBe('acknowledged');
    await expect.poll(() => received.length).toBe(1);
    expect(received[0]!.length).toBe(IOT_MAX_PAYLOAD_BYTES);
    expect(client.connected).toBe(true);
  });

  it('refuses a payload one byte over 128 KB: no PUBACK, the connection closed as CLIENT_ERROR, nothing put', async () => {
    const thing = ROBOTS[1]!;
    const client = await connect(thing);
    expect(await publishOutcome(client, topics.events(thing), jsonOfSize(IOT_MAX_PAYLOAD_BYTES + 1, 'over-limit'), 1)).toBe('closed');
    await expect.poll(() => presenceOf(thing, 'disconnected').map((put) => put.record.data.disconnectReason)).toEqual(['CLIENT_ERROR']);
    await broker.idle();
    expect(eventsPutFor(thing, 'over-limit')).toEqual([]);
  });

  it('refuses a 129 KB payload at QoS 0 too', async () => {
    const thing = ROBOTS[2]!;
    const client = await connect(thing);
    // A QoS 0 publish has no acknowledgement: the broker closing the connection is the answer.
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish(topics.events(thing), jsonOfSize(129 * 1024, 'qos0-over'), { qos: 0 });
    await closed;
    await expect.poll(() => presenceOf(thing, 'disconnected').map((put) => put.record.data.disconnectReason)).toEqual(['CLIENT_ERROR']);
    await broker.idle();
    expect(eventsPutFor(thing, 'qos0-over')).toEqual([]);
  });

  it('closes a connection that sends a 6.7 MB publish', async () => {
    const thing = ROBOTS[3]!;
    const client = await connect(thing);
    expect(await publishOutcome(client, topics.events(thing), jsonOfSize(6_700_000, 'huge'), 1)).toBe('closed');
    await expect.poll(() => presenceOf(thing, 'disconnected').map((put) => put.record.data.disconnectReason)).toEqual(['CLIENT_ERROR']);
    await broker.idle();
    expect(eventsPutFor(thing, 'huge')).toEqual([]);
    // Refused from its length alone, before its 6.7 MB were buffered.
    expect(logs.filter((entry) => entry.clientId === thing).map((entry) => entry.message)).toContainEqual(expect.stringMatching(/^A packet over \d+ bytes/));
  });

  it('refuses a QoS 2 publish: the connection closed as CLIENT_ERROR, not put, not delivered', async () => {
    const thing = ROBOTS[4]!;
    const client = await connect(thing);
    expect(await publishOutcome(client, topics.events(thing), jsonOfSize(100, 'qos2'), 2)).toBe('closed');
    await expect.poll(() => presenceOf(thing, 'disconnected').map((put) => put.record.data.disconnectReason)).toEqual(['CLIENT_ERROR']);
    await broker.idle();
    expect(eventsPutFor(thing, 'qos2')).toEqual([]);
  });

  it('refuses a QoS 2 subscription: no SUBACK, the connection closed as CLIENT_ERROR', async () => {
    const thing = ROBOTS[5]!;
    const client = await connect(thing);
    const outcome = await new Promise<string>((resolve) => {
      client.once('close', () => resolve('closed'));
      client.subscribe(replyTopic(thing), { qos: 2 }, (error, granted) => {
        if (!error) resolve(`granted ${JSON.stringify(granted)}`);
      });
    });
    expect(outcome).toBe('closed');
    await expect.poll(() => presenceOf(thing, 'disconnected').map((put) => put.record.data.disconnectReason)).toEqual(['CLIENT_ERROR']);
  });
});
