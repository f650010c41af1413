import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import {
  connectLiveClient,
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  startAgentProcess,
  startCloudProcess,
  type AgentProcess,
  type CloudProcess,
  type LiveClient,
  type Ports,
} from '../support/local-cloud-process.js';

/**
 * The local cloud end to end, as a developer runs it: `npm start` (a process), `npm run cert`, `npm run agent` (a
 * process with the real MQTT client), a WebSocket client on the live feed and the HTTP API with dev tokens.
 */
const ROBOT = 'lekiwi-E2E001';
const INTRUDER = 'lekiwi-E2E002';
const VICTIM = 'xle-E2E003';

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess;
let live: LiveClient;
const agents: AgentProcess[] = [];

const isEvent = (type: string, robotId: string, extra: (data: Record<string, unknown>) => boolean = () => true) =>
  (message: Record<string, unknown>) =>
    message.type === type && message.robotId === robotId && extra((message.data ?? {}) as Record<string, unknown>);

function countOf(type: string, robotId: string): number {
  return live.messages.filter(isEvent(type, robotId)).length;
}

async function robotStatus(robotId: string): Promise<string | number> {
  const { status, body } = await getJson(cloud.endpoints, `/robots/${robotId}`);
  return status === 200 ? (body as { status: string }).status : status;
}

/** One MQTT connect attempt over mTLS: resolves on CONNACK, rejects on a refusal or a closed connection. */
function connectRaw(options: { cert: string; key: string; ca: string; clientId: string }): Promise<MqttClient> {
  const client = mqtt.connect(`mqtts://localhost:${ports.mqtt}`, {
    ...options,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    rejectUnauthorized: true,
  });
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    const refuse = (reason: string) => {
      client.end(true);
      reject(new Error(reason));
    };
    client.once('error', (error) => refuse(error.message));
    client.once('close', () => refuse('connection closed before CONNACK'));
  });
}

/** An agent process for ROBOT, once the feed has seen it connect. */
async function startConnectedAgent(): Promise<AgentProcess> {
  const before = countOf('RobotConnected', ROBOT);
  const agent = startAgentProcess(join(stateDir, 'certs', ROBOT, 'agent.json'));
  agents.push(agent);
  // A process starting (tsx compiles the agent first): longer than the default wait.
  await expect.poll(() => countOf('RobotConnected', ROBOT), { message: `${ROBOT} to connect`, timeout: 60_000 }).toBeGreaterThan(before);
  return agent;
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  cloud = await startCloudProcess({ stateDir, ports });
  live = await connectLiveClient(cloud.endpoints);
}, 180_000);

afterAll(async () => {
  live?.close();
  for (const agent of agents) if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
  await cloud?.stop();
  await removeStateDir(stateDir);
});

describe('the local cloud, end to end', { timeout: 120_000 }, () => {
  it('a robot with a certificate from `npm run cert` comes online: live event, then online in /api/v2', async () => {
    const config = await issueCertificate(stateDir, ROBOT);
    const agent = startAgentProcess(config);
    agents.push(agent);

    const connected = await live.waitFor(isEvent('RobotConnected', ROBOT), `${ROBOT} RobotConnected`, 60_000);
    expect(connected.data).toMatchObject({ sessionIdentifier: expect.any(String) });
    await expect.poll(() => robotStatus(ROBOT), { message: `${ROBOT} online in the API` }).toBe('online');
    const { body } = await getJson(cloud.endpoints, `/robots/${ROBOT}`);
    expect(body).toMatchObject({ robotId: ROBOT, model: 'lekiwi', status: 'online', registered: true });
  });

  it('SIGTERM: the agent leaves cleanly and the feed says the robot disconnected on its own', async () => {
    const agent = agents.at(-1)!;
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);

    const disconnected = await live.waitFor(isEvent('RobotDisconnected', ROBOT), `${ROBOT} RobotDisconnected`);
    expect(disconnected.data).toMatchObject({ clientInitiated: true, reason: 'CLIENT_INITIATED_DISCONNECT' });
    await expect.poll(() => robotStatus(ROBOT), { message: `${ROBOT} offline` }).toBe('offline');
  });

  it('kill -9: the robot goes offline (here the kernel closes its socket at once, so the broker sees the connection lost)', async () => {
    const agent = await startConnectedAgent();
    const disconnectsBefore = countOf('RobotDisconnected', ROBOT);

    agent.child.kill('SIGKILL');
    await expect.poll(() => countOf('RobotDisconnected', ROBOT), { message: 'the disconnect' }).toBeGreaterThan(disconnectsBefore);
    const disconnected = live.messages.filter(isEvent('RobotDisconnected', ROBOT)).at(-1)!;
    expect(disconnected.data).toMatchObject({ clientInitiated: false, reason: 'CONNECTION_LOST' });
    await expect.poll(() => robotStatus(ROBOT), { message: `${ROBOT} offline` }).toBe('offline');
  });

  it('a robot that falls silent with its connection open (power cut, cable pulled) goes offline when its keep-alive window passes', async () => {
    const agent = await startConnectedAgent();
    const disconnectsBefore = countOf('RobotDisconnected', ROBOT);

    // Frozen: no more PINGREQ, no FIN — what the broker sees of a Pi that lost power behind a NAT.
    const frozenAt = Date.now();
    agent.child.kill('SIGSTOP');
    try {
      await expect
        .poll(() => countOf('RobotDisconnected', ROBOT), { message: 'the keep-alive timeout (2 s keep-alive × 1.5)' })
        .toBeGreaterThan(disconnectsBefore);
    } finally {
      agent.child.kill('SIGKILL');
    }
    const disconnected = live.messages.filter(isEvent('RobotDisconnected', ROBOT)).at(-1)!;
    expect(disconnected.data).toMatchObject({ clientInitiated: false, reason: 'MQTT_KEEP_ALIVE_TIMEOUT' });
    // Not before the window: 1.5 × the 2 s keep-alive (the last ping may have been up to one interval earlier).
    expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(1_000);
    await expect.poll(() => robotStatus(ROBOT), { message: `${ROBOT} offline` }).toBe('offline');
  });

  it("a robot publishing under another robot's topic is disconnected and nothing is recorded for the other", async () => {
    await issueCertificate(stateDir, INTRUDER);
    await issueCertificate(stateDir, VICTIM);
    const dir = join(stateDir, 'certs', INTRUDER);
    const client = await connectRaw({
      cert: await readFile(join(dir, 'certificate.pem.crt'), 'utf8'),
      key: await readFile(join(dir, 'private.pem.key'), 'utf8'),
      ca: await readFile(join(dir, 'ca.pem'), 'utf8'),
      clientId: INTRUDER,
    });
    await live.waitFor(isEvent('RobotConnected', INTRUDER), `${INTRUDER} RobotConnected`);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish(`dt/heartbeat/${VICTIM}/telemetry`, JSON.stringify({ sampledAt: new Date().toISOString(), cpuPercent: 99 }), { qos: 1 });
    await closed;

    const disconnected = await live.waitFor(isEvent('RobotDisconnected', INTRUDER), `${INTRUDER} RobotDisconnected`);
    expect(disconnected.data).toMatchObject({ clientInitiated: false, reason: 'FORBIDDEN_ACCESS' });
    expect(await robotStatus(VICTIM)).toBe(404);
    expect(live.messages.some((message) => message.robotId === VICTIM)).toBe(false);
    await client.endAsync(true).catch(() => {});
  });

  it('refuses at connect: a certificate from another CA, an expired one, and a client id that is not the certificate’s thing', async () => {
    const localCa = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
    const registry = ThingRegistry.in(stateDir);
    const caPem = localCa.certificatePem;

    const foreign = await (await CertificateAuthority.create({ commonName: 'Someone else' })).issueClientCertificate(ROBOT);
    await expect(connectRaw({ cert: foreign.certificatePem, key: foreign.privateKeyPem, ca: caPem, clientId: ROBOT })).rejects.toThrow();

    const expired = await localCa.issueClientCertificate(ROBOT, {
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    await registry.attach(ROBOT, expired.certificateId);
    await expect(connectRaw({ cert: expired.certificatePem, key: expired.privateKeyPem, ca: caPem, clientId: ROBOT })).rejects.toThrow();

    const dir = join(stateDir, 'certs', INTRUDER);
    await expect(
      connectRaw({
        cert: await readFile(join(dir, 'certificate.pem.crt'), 'utf8'),
        key: await readFile(join(dir, 'private.pem.key'), 'utf8'),
        ca: caPem,
        clientId: VICTIM,
      }),
    ).rejects.toThrow();

    // None of them got far enough to be a connection of the robot they claimed to be.
    expect(await robotStatus(VICTIM)).toBe(404);
  });

  it('stopped with Ctrl-C and started again, it still has the robots and their history', { timeout: 240_000 }, async () => {
    const history = await getJson(cloud.endpoints, `/robots/${ROBOT}/events?limit=100`);
    expect(history.status).toBe(200);
    const events = (history.body as { items: { seq: number; type: string }[] }).items;
    expect(events.map((event) => event.type)).toEqual(
      expect.arrayContaining(['RobotConnected', 'RobotDisconnected']),
    );
    const dynamoPid = Number((await readFile(join(stateDir, 'dynamodb.pid'), 'utf8')).trim());

    expect(await cloud.stop()).toBe(0);
    expect(() => process.kill(dynamoPid, 0)).toThrow(); // no Java process left behind

    live.close();
    cloud = await startCloudProcess({ stateDir, ports });
    live = await connectLiveClient(cloud.endpoints);
    const after = await getJson(cloud.endpoints, `/robots/${ROBOT}/events?limit=100`);
    expect((after.body as { items: unknown[] }).items).toEqual(events);
    const robots = await getJson(cloud.endpoints, '/robots');
    expect((robots.body as { items: { robotId: string }[] }).items.map((robot) => robot.robotId)).toEqual(
      expect.arrayContaining([ROBOT, INTRUDER]),
    );

    // And robots can still connect: the CA and the registry came back too.
    const agent = startAgentProcess(join(stateDir, 'certs', ROBOT, 'agent.json'));
    agents.push(agent);
    await live.waitFor(isEvent('RobotConnected', ROBOT), `${ROBOT} RobotConnected after the restart`, 60_000);
    agent.child.kill('SIGTERM');
    await agent.exited;
  });
});
