import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority, type IssuedCertificate } from '../../local/certificate-authority.js';
import type { KinesisStreamRecord } from 'aws-lambda';
import { type BrokerLogEntry, type IotBroker, type RuleAction, type RuleRecord, startIotBroker } from '../../local/iot-broker.js';
import { startKinesisPoller } from '../../local/kinesis-poller.js';
import { kinesisRecordJson } from '../../local/kinesis-records.js';
import { startKinesisStandIn } from '../../local/kinesis-stand-in.js';
import { LifecycleVersions } from '../../local/presence-events.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import { LifecycleEvent } from '../../schemas/lifecycle.js';
import { TOPIC_RULES, type TopicRule } from '../../schemas/topics.js';
import { POLL } from '../support/poll.js';

/**
 * The local IoT Core over real TLS sockets: the `mqtt` package as the robots' client (MQTT 3.1.1, mqtts://), hand-made
 * packets on raw TLS sockets where a client must misbehave (or where the exact packets matter), the real CA and
 * thing registry. The rules' action is a put into a stream; here it records what it was given.
 */

interface Invocation {
  readonly rule: string;
  readonly payload: Record<string, unknown>;
  readonly partitionKey: string;
}

let stateDir: string;
let ca: CertificateAuthority;
let server: IssuedCertificate;
let registry: ThingRegistry;
const certs = new Map<string, IssuedCertificate>();
const invocations: Invocation[] = [];
const logs: BrokerLogEntry[] = [];
let broker: IotBroker;
const clients: MqttClient[] = [];
const rawSockets: net.Socket[] = [];

/** Records every put. */
const recordingRules: RuleAction[] = Object.values(TOPIC_RULES).map((rule) => ({
  rule,
  put: async (record: RuleRecord) => {
    invocations.push({ rule: rule.name, payload: record.data, partitionKey: record.partitionKey });
  },
}));

const ROBOTS = Array.from({ length: 15 }, (_, i) => `lekiwi-LK${String(i + 1).padStart(4, '0')}`);
const robot = (n: number): string => ROBOTS[n - 1]!;

async function start(minKeepAliveSeconds = 1): Promise<IotBroker> {
  return startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry,
    rules: recordingRules,
    minKeepAliveSeconds,
    log: (entry) => logs.push(entry),
  });
}

const presence = (clientId: string, eventType: 'connected' | 'disconnected') =>
  invocations.filter(
    (i) => i.rule === TOPIC_RULES.presence.name && i.payload.clientId === clientId && i.payload.eventType === eventType,
  );

/** The `count`th presence event of that type for the client, once it was put. */
const waitForPresence = (clientId: string, eventType: 'connected' | 'disconnected', count = 1) =>
  vi.waitFor(() => {
    const payload = presence(clientId, eventType)[count - 1]?.payload;
    expect(payload, `${eventType} #${count} of ${clientId}`).toBeDefined();
    return payload!;
  }, POLL);

const invoked = (rule: string, predicate: (payload: Record<string, unknown>) => boolean) =>
  invocations.filter((i) => i.rule === rule && predicate(i.payload));

type ConnectOptions = { clientId?: string; cert?: IssuedCertificate; keepalive?: number; port?: number };

function clientOptions(thing: string, options: ConnectOptions = {}) {
  const cert = options.cert ?? certs.get(thing)!;
  return {
    protocolVersion: 4 as const,
    clientId: options.clientId ?? thing,
    key: cert.privateKeyPem,
    cert: cert.certificatePem,
    ca: ca.certificatePem,
    keepalive: options.keepalive ?? 30,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  };
}

async function connect(thing: string, options: ConnectOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${options.port ?? broker.port}`, clientOptions(thing, options));
  clients.push(client);
  return client;
}

/** A connection attempt that must fail: how it ended (never a CONNACK 0). */
async function refusedConnect(thing: string, options: ConnectOptions = {}): Promise<{ error?: Error & { code?: unknown } }> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${broker.port}`, clientOptions(thing, options));
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.on('connect', () => reject(new Error(`${thing} was let in`)));
    client.on('error', (error) => resolve({ error }));
    client.on('close', () => setTimeout(() => resolve({}), 200));
  });
}

/** The SUBACK return codes for `filters` (mqtt.js rejects a SUBACK with a failure code; the packet is on the error). */
async function subscribeCodes(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos: 1 })).map((grant) => grant.qos);
  } catch (error) {
    const granted = (error as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw error;
    return granted;
  }
}

/** MQTT 3.1.1 CONNECT, clean session, no will, no credentials. */
function connectPacket(clientId: string, keepAliveSeconds: number): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const variableHeader = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepAliveSeconds >> 8, keepAliveSeconds & 0xff]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, variableHeader.length + payload.length]), variableHeader, payload]);
}

/** MQTT 3.1.1 PUBLISH at QoS 1 with the given packet id and a JSON payload. */
function publishPacketQos1(topic: string, packetId: number, payload: unknown): Buffer {
  const name = Buffer.from(topic, 'utf8');
  const body = Buffer.concat([
    Buffer.from([name.length >> 8, name.length & 0xff]),
    name,
    Buffer.from([packetId >> 8, packetId & 0xff]),
    Buffer.from(JSON.stringify(payload), 'utf8'),
  ]);
  if (body.length > 127) throw new Error('keep test packets under 128 bytes (one-byte remaining length)');
  return Buffer.concat([Buffer.from([0x32, body.length]), body]);
}

/** The MQTT packets in what a broker sent, as [type, packet id or return code] pairs (fixed two-byte bodies only). */
function packetsIn(bytes: Buffer): [string, number][] {
  const names: Record<number, string> = { 0x20: 'CONNACK', 0x40: 'PUBACK', 0x90: 'SUBACK', 0xd0: 'PINGRESP' };
  const packets: [string, number][] = [];
  for (let i = 0; i < bytes.length; ) {
    const type = bytes[i]!;
    const length = bytes[i + 1]!;
    packets.push([names[type] ?? `0x${type.toString(16)}`, length >= 2 ? bytes.readUInt16BE(i + 2) : -1]);
    i += 2 + length;
  }
  return packets;
}

/** A raw TLS connection with a robot's certificate; `data` collects what the broker sends. */
async function rawTls(thing: string, port = broker.port): Promise<{ socket: tls.TLSSocket; data: Buffer[]; closed: Promise<void> }> {
  const cert = certs.get(thing)!;
  const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.certificatePem, key: cert.privateKeyPem, cert: cert.certificatePem });
  rawSockets.push(socket);
  const data: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => data.push(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  return { socket, data, closed };
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'iot-broker-'));
  ca = await CertificateAuthority.create();
  server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  registry = ThingRegistry.in(stateDir);
  for (const thing of ROBOTS) {
    const cert = await ca.issueClientCertificate(thing);
    certs.set(thing, cert);
    await registry.attach(thing, cert.certificateId);
  }
  broker = await start();
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.end(true);
  for (const socket of rawSockets.splice(0)) socket.destroy();
});

afterAll(async () => {
  await broker?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

describe('local IoT broker: connecting', () => {
  it('announces a registered robot with IoT lifecycle fields, and a clean end() as a client-initiated disconnect', async () => {
    const thing = robot(1);
    const before = Date.now();
    const client = await connect(thing);
    const connected = await waitForPresence(thing, 'connected');
    const { topic: connectedTopic, ...connectedEvent } = connected;
    expect(connectedTopic).toBe(`$aws/events/presence/connected/${thing}`);
    expect(LifecycleEvent.parse(connectedEvent)).toEqual(connectedEvent);
    expect(presence(thing, 'connected')[0]?.partitionKey).toBe(thing);
    expect(connected).toMatchObject({
      clientId: thing,
      eventType: 'connected',
      principalIdentifier: certs.get(thing)!.certificateId,
      ipAddress: '127.0.0.1',
    });
    expect(connected.sessionIdentifier).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(connected.timestamp).toBeGreaterThanOrEqual(before);
    expect(connected.versionNumber).toBeGreaterThanOrEqual(Math.floor(before / 1000));
    expect(broker.connectedThings()).toContain(thing);

    await client.endAsync();
    const disconnected = await waitForPresence(thing, 'disconnected');
    const { topic: disconnectedTopic, ...disconnectedEvent } = disconnected;
    expect(disconnectedTopic).toBe(`$aws/events/presence/disconnected/${thing}`);
    expect(LifecycleEvent.parse(disconnectedEvent)).toEqual(disconnectedEvent);
    expect(disconnected).toMatchObject({
      clientId: thing,
      eventType: 'disconnected',
      clientInitiatedDisconnect: true,
      disconnectReason: 'CLIENT_INITIATED_DISCONNECT',
      sessionIdentifier: connected.sessionIdentifier,
      principalIdentifier: connected.principalIdentifier,
      versionNumber: connected.versionNumber,
    });
    expect(broker.connectedThings()).not.toContain(thing);
  });

  it('reports a dropped socket as CONNECTION_LOST', async () => {
    const thing = robot(2);
    const client = await connect(thing);
    const connected = await waitForPresence(thing, 'connected');
    client.stream.destroy();
    const disconnected = await waitForPresence(thing, 'disconnected');
    expect(disconnected).toMatchObject({
      disconnectReason: 'CONNECTION_LOST',
      clientInitiatedDisconnect: false,
      versionNumber: connected.versionNumber,
    });
  });

  it('drops a client that stops talking after 1.5 × keep-alive with MQTT_KEEP_ALIVE_TIMEOUT', async () => {
    const thing = robot(3);
    const { socket, data, closed } = await rawTls(thing);
    socket.write(connectPacket(thing, 1));
    await expect.poll(() => Buffer.concat(data).length, { message: 'CONNACK' }).toBeGreaterThanOrEqual(4);
    expect([...Buffer.concat(data).subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
    // Silent from here on: no PINGREQ.
    const disconnected = await waitForPresence(thing, 'disconnected');
    expect(disconnected).toMatchObject({ disconnectReason: 'MQTT_KEEP_ALIVE_TIMEOUT', clientInitiatedDisconnect: false });
    await closed;
  });

  it('raises a keep-alive below the minimum: a silent client lasts at least 1.5 × the minimum', async () => {
    const slow = await start(2);
    try {
      const thing = robot(4);
      const cert = certs.get(thing)!;
      const socket = tls.connect({ host: '127.0.0.1', port: slow.port, ca: ca.certificatePem, key: cert.privateKeyPem, cert: cert.certificatePem });
      rawSockets.push(socket);
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
      socket.write(connectPacket(thing, 1));
      const connected = await waitForPresence(thing, 'connected');
      const disconnected = await waitForPresence(thing, 'disconnected');
      expect(disconnected.disconnectReason).toBe('MQTT_KEEP_ALIVE_TIMEOUT');
      // 1.5 × 2 s, not 1.5 × the 1 s asked for (a lower bound: a loaded machine only makes it later).
      expect((disconnected.timestamp as number) - (connected.timestamp as number)).toBeGreaterThanOrEqual(2900);
    } finally {
      await slow.stop();
    }
  });

  it('hands a client id to the newest connection and reports the old one as DUPLICATE_CLIENTID', async () => {
    const thing = robot(5);
    await connect(thing);
    const first = await waitForPresence(thing, 'connected');
    await connect(thing);
    const second = await waitForPresence(thing, 'connected', 2);
    const disconnected = await waitForPresence(thing, 'disconnected');
    expect(disconnected).toMatchObject({
      disconnectReason: 'DUPLICATE_CLIENTID',
      clientInitiatedDisconnect: false,
      sessionIdentifier: first.sessionIdentifier,
      versionNumber: first.versionNumber,
    });
    expect(second.versionNumber).toBeGreaterThan(first.versionNumber as number);
    expect(broker.connectedThings()).toContain(thing);
  });

  it('refuses a certificate from another CA in the TLS handshake', async () => {
    const foreign = await CertificateAuthority.create({ commonName: 'Someone else' });
    const thing = robot(6);
    const cert = await foreign.issueClientCertificate(thing);
    // Attached, so only the TLS layer stands between this certificate and a session.
    await registry.attach(thing, cert.certificateId);
    await refusedConnect(thing, { cert });
    await expect
      .poll(() => logs.find((l) => l.message.startsWith('TLS connection refused') && /^UNABLE_TO_(GET_ISSUER_CERT_LOCALLY|VERIFY_LEAF_SIGNATURE)$/.test(String(l.code))), { message: 'TLS refusal log' })
      .toBeDefined();
    expect(presence(thing, 'connected')).toEqual([]);
  });

  it('refuses an expired certificate in the TLS handshake', async () => {
    const thing = robot(6);
    const day = 24 * 60 * 60 * 1000;
    const cert = await ca.issueClientCertificate(thing, { notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
    await registry.attach(thing, cert.certificateId);
    await refusedConnect(thing, { cert });
    await expect.poll(() => logs.find((l) => l.message.startsWith('TLS connection refused') && l.code === 'CERT_HAS_EXPIRED'), { message: 'expiry log' }).toBeDefined();
    expect(presence(thing, 'connected')).toEqual([]);
  });

  it('refuses (CONNACK not authorized) a client id other than the certificate CN', async () => {
    const outcome = await refusedConnect(robot(7), { clientId: robot(8) });
    expect(outcome.error?.code).toBe(5);
    expect(logs.some((l) => l.level === 'warn' && l.clientId === robot(8) && /not the certificate's CN/.test(l.message))).toBe(true);
    expect(presence(robot(8), 'connected')).toEqual([]);
    expect(presence(robot(7), 'connected')).toEqual([]);
  });

  it('refuses a certificate of our CA that is not attached to the thing', async () => {
    const thing = 'lekiwi-LK9999';
    const cert = await ca.issueClientCertificate(thing);
    const outcome = await refusedConnect(thing, { cert });
    expect(outcome.error?.code).toBe(5);
    expect(logs.some((l) => l.level === 'warn' && l.clientId === thing && /is not attached/.test(l.message))).toBe(true);
    expect(presence(thing, 'connected')).toEqual([]);
  });
});

describe('local IoT broker: policy and rules', () => {
  it('disconnects a robot publishing under another robot with FORBIDDEN_ACCESS; the message goes nowhere', async () => {
    const me = robot(9);
    const other = robot(10);
    const client = await connect(me);
    client.publish(`dt/heartbeat/${other}/telemetry`, JSON.stringify({ id: 'forged', cpuPercent: 99 }), { qos: 1 });
    const disconnected = await waitForPresence(me, 'disconnected');
    expect(disconnected).toMatchObject({ disconnectReason: 'FORBIDDEN_ACCESS', clientInitiatedDisconnect: false });
    await broker.idle();
    expect(invoked(TOPIC_RULES.telemetry.name, (p) => p.thingName === other || p.id === 'forged')).toEqual([]);
  });

  it('puts own telemetry with thingName and topic, keyed by the thing, at QoS 0 and 1', async () => {
    const thing = robot(11);
    const client = await connect(thing);
    await client.publishAsync(`dt/heartbeat/${thing}/telemetry`, JSON.stringify({ id: 'q0', cpuPercent: 12, thingName: 'forged' }), { qos: 0 });
    await client.publishAsync(`dt/heartbeat/${thing}/telemetry`, JSON.stringify({ id: 'q1', cpuPercent: 13 }), { qos: 1 });
    await client.publishAsync(`dt/heartbeat/${thing}/events`, JSON.stringify({ id: 'ev' }), { qos: 1 });
    const topic = `dt/heartbeat/${thing}/telemetry`;
    await expect
      .poll(() => invoked(TOPIC_RULES.telemetry.name, (p) => p.id === 'q0'), { message: 'QoS 0 telemetry' })
      .toEqual([{ rule: TOPIC_RULES.telemetry.name, payload: { id: 'q0', cpuPercent: 12, thingName: thing, topic }, partitionKey: thing }]);
    await expect
      .poll(() => invoked(TOPIC_RULES.telemetry.name, (p) => p.id === 'q1').map((i) => i.payload), { message: 'QoS 1 telemetry' })
      .toEqual([{ id: 'q1', cpuPercent: 13, thingName: thing, topic }]);
    await expect.poll(() => invoked(TOPIC_RULES.events.name, (p) => p.id === 'ev' && p.thingName === thing), { message: 'events rule' }).toHaveLength(1);
    expect(invoked(TOPIC_RULES.events.name, (p) => p.id === 'q0' || p.id === 'q1')).toEqual([]);
  });

  it('routes Basic Ingest to its rule only, never to subscribers or other rules, once', async () => {
    const thing = robot(12);
    const client = await connect(thing);
    const received: string[] = [];
    client.on('message', (topic) => received.push(topic));
    // Robots may not subscribe to the plain topic either (no Subscribe in the policy).
    expect(await subscribeCodes(client, [`dt/heartbeat/${thing}/telemetry`, `cmd/heartbeat/${thing}/#`])).toEqual([128, 1]);
    await client.publishAsync(
      `$aws/rules/${TOPIC_RULES.telemetry.name}/dt/heartbeat/${thing}/telemetry`,
      JSON.stringify({ id: 'ingest', cpuPercent: 5 }),
      { qos: 1 },
    );
    const invocation = await vi.waitFor(() => {
      const found = invoked(TOPIC_RULES.telemetry.name, (p) => p.id === 'ingest')[0];
      expect(found, 'Basic Ingest invocation').toBeDefined();
      return found!;
    }, POLL);
    // topic() is the topic after `$aws/rules/<rule>/`, as IoT Core gives it.
    expect(invocation.payload).toEqual({ id: 'ingest', cpuPercent: 5, thingName: thing, topic: `dt/heartbeat/${thing}/telemetry` });
    expect(invocation.partitionKey).toBe(thing);
    // A marker through the same connection proves everything before it was delivered (or not).
    await broker.publish(`cmd/heartbeat/${thing}/marker`, { id: 'marker' });
    await expect.poll(() => received, { message: 'marker' }).toContain(`cmd/heartbeat/${thing}/marker`);
    await broker.idle();
    expect(received).toEqual([`cmd/heartbeat/${thing}/marker`]);
    expect(invoked(TOPIC_RULES.telemetry.name, (p) => p.id === 'ingest')).toHaveLength(1);
    expect(presence(thing, 'disconnected')).toEqual([]);

    // An unknown rule is dropped with a warning (the policy keeps robots from even trying).
    await broker.publish(`$aws/rules/no_such_rule/dt/heartbeat/${thing}/telemetry`, { id: 'unknown-rule' });
    await expect.poll(() => logs.find((l) => l.level === 'warn' && /unknown rule "no_such_rule"/.test(l.message)), { message: 'unknown-rule warning' }).toBeDefined();
    await broker.idle();
    expect(invocations.filter((i) => i.payload.id === 'unknown-rule')).toEqual([]);
  });

  it('delivers commands to the own subscription and refuses another robot’s command filter with 0x80', async () => {
    const thing = robot(13);
    const other = robot(14);
    const client = await connect(thing);
    const messages: { topic: string; payload: unknown }[] = [];
    client.on('message', (topic, payload) => messages.push({ topic, payload: JSON.parse(payload.toString()) }));
    expect(await subscribeCodes(client, [`cmd/heartbeat/${thing}/+`])).toEqual([1]);
    expect(await subscribeCodes(client, [`cmd/heartbeat/${other}/#`])).toEqual([128]);
    expect(await subscribeCodes(client, ['cmd/heartbeat/+/report-now'])).toEqual([128]);

    await broker.publish(`cmd/heartbeat/${other}/report-now`, { requestId: 'theirs' });
    await broker.publish(`cmd/heartbeat/${thing}/report-now`, { requestId: 'mine' });
    await expect.poll(() => messages.length, { message: 'the command' }).toBeGreaterThan(0);
    await broker.idle();
    expect(messages).toEqual([{ topic: `cmd/heartbeat/${thing}/report-now`, payload: { requestId: 'mine' } }]);
    // A forbidden subscription is refused, not punished.
    expect(presence(thing, 'disconnected')).toEqual([]);
  });

  it('does not apply a rule to a payload that is not a JSON object, warns, acknowledges, and stays up', async () => {
    const thing = robot(11);
    const client = await connect(thing);
    await client.publishAsync(`dt/heartbeat/${thing}/telemetry`, 'not json at all', { qos: 1 });
    await client.publishAsync(`dt/heartbeat/${thing}/telemetry`, '[1,2,3]', { qos: 1 });
    await expect
      .poll(() => logs.filter((l) => l.level === 'warn' && l.rule === TOPIC_RULES.telemetry.name && l.topic === `dt/heartbeat/${thing}/telemetry`).length, {
        message: 'two warnings naming rule and topic',
      })
      .toBeGreaterThanOrEqual(2);
    await client.publishAsync(`dt/heartbeat/${thing}/telemetry`, JSON.stringify({ id: 'after-garbage' }), { qos: 1 });
    await expect.poll(() => invoked(TOPIC_RULES.telemetry.name, (p) => p.id === 'after-garbage'), { message: 'a later valid message' }).toHaveLength(1);
    expect(invocations.filter((i) => i.rule === TOPIC_RULES.telemetry.name && i.payload.thingName === thing && !i.payload.id)).toEqual([]);
  });
});

describe('local IoT broker: garbage', () => {
  it('survives TCP clients that hang up mid-handshake or send garbage instead of TLS', async () => {
    for (const bytes of [Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(0)]) {
      const socket = net.connect(broker.port, '127.0.0.1');
      rawSockets.push(socket);
      socket.on('error', () => undefined);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      if (bytes.length > 0) socket.write(bytes);
      socket.destroy();
    }
    const thing = robot(1);
    const client = await connect(thing);
    expect(client.connected).toBe(true);
  });

  it('closes a TLS connection that sends garbage instead of CONNECT, and one whose packets go bad after CONNECT', async () => {
    const junk = await rawTls(robot(2));
    junk.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]));
    await junk.closed;

    const thing = robot(2);
    const bad = await rawTls(thing);
    bad.socket.write(connectPacket(thing, 30));
    const connected = await waitForPresence(thing, 'connected', presence(thing, 'connected').length + 1);
    // Reserved packet type 0 with garbage: not MQTT.
    bad.socket.write(Buffer.from([0x00, 0x02, 0xde, 0xad]));
    await bad.closed;
    await expect
      .poll(() => presence(thing, 'disconnected').find((i) => i.payload.sessionIdentifier === connected.sessionIdentifier)?.payload, {
        message: 'disconnect after garbage',
      })
      .toMatchObject({ disconnectReason: 'CLIENT_ERROR', clientInitiatedDisconnect: false });

    const client = await connect(robot(1));
    await client.publishAsync(`dt/heartbeat/${robot(1)}/telemetry`, JSON.stringify({ id: 'after-junk' }), { qos: 1 });
    await expect.poll(() => invoked(TOPIC_RULES.telemetry.name, (p) => p.id === 'after-junk'), { message: 'service after garbage' }).toHaveLength(1);
  });
});

describe('local IoT broker: versionNumber and stop', () => {
  it('grows across reconnects and across a broker restart; stop() reports SERVER_INITIATED_DISCONNECT', async () => {
    const thing = robot(15);
    const connectVersions = () => presence(thing, 'connected').map((i) => i.payload.versionNumber as number);
    const first = await start();
    let firstStopped = false;
    try {
      for (let n = 1; n <= 3; n++) {
        const client = await connect(thing, { port: first.port });
        await waitForPresence(thing, 'connected', n);
        if (n < 3) {
          await client.endAsync();
          await waitForPresence(thing, 'disconnected', n);
        }
      }
      await first.stop();
      firstStopped = true;
    } finally {
      if (!firstStopped) await first.stop();
    }
    // stop() waited for the puts: the last disconnect is recorded already.
    expect(presence(thing, 'disconnected')[2]?.payload).toMatchObject({
      disconnectReason: 'SERVER_INITIATED_DISCONNECT',
      clientInitiatedDisconnect: false,
      versionNumber: connectVersions()[2],
    });

    const second = await start();
    try {
      await connect(thing, { port: second.port });
      await waitForPresence(thing, 'connected', 4);
    } finally {
      await second.stop();
    }
    const versions = connectVersions();
    expect(versions).toHaveLength(4);
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBeGreaterThan(versions[i - 1]!);
  });

  it('refuses to start with a rule whose SQL it does not support, naming the rule', async () => {
    const rule = { ...TOPIC_RULES.telemetry, name: 'bad_rule', sql: "SELECT * FROM 'dt/heartbeat/+/telemetry' WHERE cpuPercent > 90" };
    await expect(
      startIotBroker({
        port: 0,
        caCertificatePem: ca.certificatePem,
        serverCertificatePem: server.certificatePem,
        serverPrivateKeyPem: server.privateKeyPem,
        registry,
        rules: [{ rule, put: async () => undefined }],
        log: () => undefined,
      }),
    ).rejects.toThrow(/^Rule bad_rule: unsupported SQL/);
  });

  it('refuses to start with a partition key template it does not support, naming the rule', async () => {
    const rule = { ...TOPIC_RULES.telemetry, name: 'bad_key', partitionKey: '${newuuid()}' };
    await expect(
      startIotBroker({
        port: 0,
        caCertificatePem: ca.certificatePem,
        serverCertificatePem: server.certificatePem,
        serverPrivateKeyPem: server.privateKeyPem,
        registry,
        rules: [{ rule, put: async () => undefined }],
        log: () => undefined,
      }),
    ).rejects.toThrow(/^Rule bad_key: the unsupported substitution/);
  });
});

describe('local IoT broker: the ordered channel (puts before PUBACK)', () => {
  interface Put {
    readonly rule: string;
    readonly record: RuleRecord;
    readonly started: number;
    ended?: number;
  }
  const puts: Put[] = [];
  const channelLogs: BrokerLogEntry[] = [];
  /** What the put of a record with this `id` does; by default it resolves at once. */
  const behaviour = new Map<string, () => Promise<void>>();
  const commandRule: TopicRule = {
    name: 'test_commands',
    topicFilter: 'cmd/heartbeat/+/report-now',
    sql: "SELECT *, topic() AS topic FROM 'cmd/heartbeat/+/report-now'",
    kind: 'telemetry',
    partitionKey: 'cmd-${topic(3)}',
    description: 'a rule on what the cloud publishes, for the test',
  };
  const actions: RuleAction[] = [...Object.values(TOPIC_RULES), commandRule].map((rule) => ({
    rule,
    put: async (record) => {
      const entry: Put = { rule: rule.name, record, started: performance.now() };
      puts.push(entry);
      try {
        await (behaviour.get(String(record.data.id))?.() ?? Promise.resolve());
      } finally {
        entry.ended = performance.now();
      }
    },
  }));
  let channel: IotBroker;

  const deferred = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  };
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
  /** A put's label: the payload id, or the lifecycle event type. */
  const label = (put: Put) => String(put.record.data.id ?? put.record.data.eventType);
  const putsOf = (partitionKey: string) => puts.filter((put) => put.record.partitionKey === partitionKey);

  beforeAll(async () => {
    channel = await startIotBroker({
      port: 0,
      caCertificatePem: ca.certificatePem,
      serverCertificatePem: server.certificatePem,
      serverPrivateKeyPem: server.privateKeyPem,
      registry,
      rules: actions,
      minKeepAliveSeconds: 1,
      log: (entry) => channelLogs.push(entry),
    });
  });

  afterAll(async () => {
    await channel?.stop();
  });

  it('sends the PUBACK of a QoS 1 publish only after its put resolved; other robots are not held up', async () => {
    const thing = robot(1);
    const other = robot(5);
    const release = deferred();
    behaviour.set('held', () => release.promise);
    const client = await connect(thing, { port: channel.port });
    const otherClient = await connect(other, { port: channel.port });

    let acknowledgedAt: number | undefined;
    const publishing = client
      .publishAsync(`dt/heartbeat/${thing}/telemetry`, JSON.stringify({ id: 'held' }), { qos: 1 })
      .then(() => void (acknowledgedAt = performance.now()));
    const held = await vi.waitFor(() => {
      const put = puts.find((p) => p.record.data.id === 'held');
      expect(put, 'the put to start').toBeDefined();
      return put!;
    }, POLL);
    // Another robot's message is its own partition key: put and acknowledged while the first put hangs.
    await otherClient.publishAsync(`dt/heartbeat/${other}/telemetry`, JSON.stringify({ id: 'meanwhile' }), { qos: 1 });
    await sleep(300);
    expect(acknowledgedAt).toBeUndefined();
    expect(held.ended).toBeUndefined();

    release.resolve();
    await publishing;
    expect(acknowledgedAt).toBeGreaterThanOrEqual(held.ended!);
    expect(held.record).toEqual({
      partitionKey: thing,
      data: { id: 'held', thingName: thing, topic: `dt/heartbeat/${thing}/telemetry` },
    });
  });

  it('gives no PUBACK when the put fails, disconnects with SERVER_ERROR, and does not put what came behind it', async () => {
    const thing = robot(2);
    behaviour.set('fails', () => Promise.reject(new Error('stream down')));
    const { socket, data, closed } = await rawTls(thing, channel.port);
    socket.write(connectPacket(thing, 30));
    await expect.poll(() => Buffer.concat(data).length, { message: 'CONNACK' }).toBeGreaterThanOrEqual(4);
    const topic = `dt/heartbeat/${thing}/events`;
    // Two publishes in one write: aedes handles them concurrently, the broker puts them one after the other.
    socket.write(Buffer.concat([publishPacketQos1(topic, 1, { id: 'fails' }), publishPacketQos1(topic, 2, { id: 'behind' })]));
    await closed;

    expect(packetsIn(Buffer.concat(data))).toEqual([['CONNACK', 0]]);
    await expect.poll(() => putsOf(thing).map(label), { message: 'the disconnected event' }).toContain('disconnected');
    await channel.idle();
    expect(putsOf(thing).map(label)).toEqual(['connected', 'fails', 'disconnected']);
    expect(putsOf(thing).at(-1)?.record.data).toMatchObject({ disconnectReason: 'SERVER_ERROR', clientInitiatedDisconnect: false });
    expect(channelLogs).toContainEqual(
      expect.objectContaining({ level: 'error', clientId: thing, topic, message: expect.stringMatching(/no PUBACK, disconnecting/) }),
    );
    expect(channelLogs).toContainEqual(
      expect.objectContaining({ level: 'error', partitionKey: thing, error: expect.stringMatching(/earlier message .* was not put \(stream down\)/) }),
    );

    // The robot comes back and sends again: both go in, in order.
    const again = await rawTls(thing, channel.port);
    again.socket.write(
      Buffer.concat([connectPacket(thing, 30), publishPacketQos1(topic, 1, { id: 'fails-resent' }), publishPacketQos1(topic, 2, { id: 'behind' })]),
    );
    await expect.poll(() => packetsIn(Buffer.concat(again.data)).length, { message: 'CONNACK and two PUBACKs' }).toBe(3);
    expect(packetsIn(Buffer.concat(again.data))).toEqual([
      ['CONNACK', 0],
      ['PUBACK', 1],
      ['PUBACK', 2],
    ]);
    expect(putsOf(thing).map(label)).toEqual(['connected', 'fails', 'disconnected', 'connected', 'fails-resent', 'behind']);
  });

  it('puts one key at a time, in the order received, with the connect and disconnect in their places', async () => {
    const thing = robot(3);
    behaviour.set('o1', () => sleep(150));
    behaviour.set('o3', () => sleep(50));
    const { socket, data, closed } = await rawTls(thing, channel.port);
    const telemetry = `dt/heartbeat/${thing}/telemetry`;
    const events = `dt/heartbeat/${thing}/events`;
    // CONNECT and five publishes on two rules in one write: aedes queues them until the session is ready.
    socket.write(
      Buffer.concat([
        connectPacket(thing, 30),
        publishPacketQos1(telemetry, 1, { id: 'o1' }),
        publishPacketQos1(events, 2, { id: 'o2' }),
        publishPacketQos1(telemetry, 3, { id: 'o3' }),
        publishPacketQos1(events, 4, { id: 'o4' }),
        publishPacketQos1(telemetry, 5, { id: 'o5' }),
      ]),
    );
    await expect.poll(() => packetsIn(Buffer.concat(data)).length, { message: 'CONNACK and five PUBACKs' }).toBe(6);
    socket.end();
    await closed;
    await expect.poll(() => putsOf(thing).map(label), { message: 'the disconnected event' }).toContain('disconnected');
    await channel.idle();

    const mine = putsOf(thing);
    expect(mine.map(label)).toEqual(['connected', 'o1', 'o2', 'o3', 'o4', 'o5', 'disconnected']);
    for (let i = 1; i < mine.length; i++) expect(mine[i]!.started).toBeGreaterThanOrEqual(mine[i - 1]!.ended!);
    expect(packetsIn(Buffer.concat(data)).map(([type]) => type)).toEqual(['CONNACK', 'PUBACK', 'PUBACK', 'PUBACK', 'PUBACK', 'PUBACK']);
  });

  it('resolves the cloud’s publish after the puts of the rules it matches, and rejects it when one fails', async () => {
    const thing = robot(4);
    const release = deferred();
    behaviour.set('cmd-held', () => release.promise);
    behaviour.set('cmd-fails', () => Promise.reject(new Error('stream down')));
    let published = false;
    const publishing = channel.publish(`cmd/heartbeat/${thing}/report-now`, { id: 'cmd-held' }).then(() => void (published = true));
    await expect.poll(() => puts.map(label), { message: 'the put to start' }).toContain('cmd-held');
    await sleep(200);
    expect(published).toBe(false);
    release.resolve();
    await publishing;
    expect(puts.find((put) => put.record.data.id === 'cmd-held')?.record).toEqual({
      partitionKey: `cmd-${thing}`,
      data: { id: 'cmd-held', topic: `cmd/heartbeat/${thing}/report-now` },
    });

    await expect(channel.publish(`cmd/heartbeat/${thing}/report-now`, { id: 'cmd-fails' })).rejects.toThrow(/stream down/);
    await channel.publish(`cmd/heartbeat/${thing}/report-now`, { id: 'cmd-after' });
    expect(putsOf(`cmd-${thing}`).map(label)).toEqual(['cmd-held', 'cmd-fails', 'cmd-after']);
  });
});

describe('local IoT broker: into a real Kinesis stream', () => {
  it('puts a robot’s connect, messages and disconnect into kinesalite, where the poller reads them in order', async () => {
    const stream = await startKinesisStandIn({ directory: join(stateDir, 'kinesis'), streamName: 'ingest', shardCount: 2 });
    const received: KinesisStreamRecord[] = [];
    const poller = startKinesisPoller({
      client: stream.client,
      streamArn: stream.streamArn,
      handler: async (event) => void received.push(...event.Records),
      log: () => undefined,
    });
    const toStream = await startIotBroker({
      port: 0,
      caCertificatePem: ca.certificatePem,
      serverCertificatePem: server.certificatePem,
      serverPrivateKeyPem: server.privateKeyPem,
      registry,
      rules: Object.values(TOPIC_RULES).map((rule) => ({
        rule,
        put: async ({ partitionKey, data }) => void (await stream.put(partitionKey, data)),
      })),
      log: () => undefined,
    });
    try {
      const thing = robot(6);
      const client = await connect(thing, { port: toStream.port });
      // Pipelined: none waits for the previous PUBACK.
      await Promise.all(
        Array.from({ length: 6 }, (_, n) =>
          client.publishAsync(`dt/heartbeat/${thing}/${n % 2 === 0 ? 'telemetry' : 'events'}`, JSON.stringify({ id: `m${n}` }), { qos: 1 }),
        ),
      );
      await client.endAsync();
      await expect.poll(() => toStream.connectedThings(), { message: 'the disconnect' }).toEqual([]);
      await toStream.idle();
      await poller.idle();

      const mine = received.filter((record) => record.kinesis.partitionKey === thing).map((record) => kinesisRecordJson(record) as Record<string, unknown>);
      expect(mine.map((data) => data.id ?? data.eventType)).toEqual(['connected', 'm0', 'm1', 'm2', 'm3', 'm4', 'm5', 'disconnected']);
      expect(mine[1]).toEqual({ id: 'm0', thingName: thing, topic: `dt/heartbeat/${thing}/telemetry` });
      expect(mine[0]).toMatchObject({ clientId: thing, topic: `$aws/events/presence/connected/${thing}` });
    } finally {
      await toStream.stop();
      await poller.stop();
      await stream.stop();
    }
  });
});

describe('LifecycleVersions', () => {
  it('is max(previous + 1, seconds since the epoch), per client id', () => {
    const versions = new LifecycleVersions();
    expect(versions.next('a', 1_700_000_000_500)).toBe(1_700_000_000);
    expect(versions.next('a', 1_700_000_000_600)).toBe(1_700_000_001);
    expect(versions.next('a', 1_700_000_000_700)).toBe(1_700_000_002);
    expect(versions.next('b', 1_700_000_000_700)).toBe(1_700_000_000);
    expect(versions.next('a', 1_700_000_100_000)).toBe(1_700_000_100);
    expect(versions.highest()).toBe(1_700_000_100);
  });
});
