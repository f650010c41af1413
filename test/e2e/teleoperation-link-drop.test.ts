import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connectOperator, startHostStandIn, watching, type HostStandIn, type Operator } from '../support/lekiwi-stand-ins.js';
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
import { POLL } from '../support/poll.js';

/**
 * Issue 9, item 1, end to end: a robot kicked off MQTT for a moment (another client with its client id) while someone
 * drives it stays teleoperated and not deployable (unconfirmed while its link is down, confirmed once its agent is
 * back), and a robot that stays offline has its session closed as `robot-offline` after the timeout. With LeRobot's
 * host and client (the ZeroMQ stand-ins) and the real agent process, and with a plain MQTT client that is not ours.
 */
const AGENT_ROBOT = 'lekiwi-LINK001';
const FOREIGN_ROBOT = 'xle-LINK002';
/** Short for the test: the sweep runs every quarter of it locally. */
const OFFLINE_TIMEOUT_SECONDS = 10;
/** Longer than the default wait: the agent process reconnecting (4 s backoff), or a first round trip through the whole local cloud. */
const RECONNECT = { ...POLL, timeout: 30_000 };

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess;
let live: LiveClient;
let host: HostStandIn;
let operator: Operator | undefined;
const agents: AgentProcess[] = [];
const clients: MqttClient[] = [];

interface TeleoperationView {
  status: string;
  deployable: boolean;
  lifecycle: string;
  teleoperation: { active: boolean; confirmed: boolean; operatorAddress: string | null; since: string | null };
}

async function robot(robotId: string): Promise<TeleoperationView | null> {
  const { status, body } = await getJson(cloud.endpoints, `/robots/${robotId}`);
  return status === 200 ? (body as TeleoperationView) : null;
}

async function history(robotId: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
  const { body } = await getJson(cloud.endpoints, `/robots/${robotId}/events?limit=200`);
  return [...(body as { items: { type: string; data: Record<string, unknown> }[] }).items].reverse();
}

async function certificateOf(robotId: string) {
  const dir = join(stateDir, 'certs', robotId);
  return {
    cert: await readFile(join(dir, 'certificate.pem.crt'), 'utf8'),
    key: await readFile(join(dir, 'private.pem.key'), 'utf8'),
    ca: await readFile(join(dir, 'ca.pem'), 'utf8'),
  };
}

/** A plain MQTT 3.1.1 client (mqtt.js, not our agent) with the robot's certificate and client id. */
async function connectClient(robotId: string): Promise<MqttClient> {
  const client = mqtt.connect(`mqtts://localhost:${ports.mqtt}`, {
    ...(await certificateOf(robotId)),
    clientId: robotId,
    protocolVersion: 4,
    keepalive: 2,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    rejectUnauthorized: true,
  });
  clients.push(client);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** Records the robot's API view every 100 ms until stopped. */
function watchApi(robotId: string) {
  const seen: TeleoperationView[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const view = await robot(robotId);
      if (view) seen.push(view);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await loop;
    },
  };
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  cloud = await startCloudProcess({
    stateDir,
    ports,
    env: { TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: String(OFFLINE_TIMEOUT_SECONDS) },
  });
  live = await connectLiveClient(cloud.endpoints);
  host = await startHostStandIn();
}, 180_000);

afterAll(async () => {
  operator?.close();
  for (const client of clients) await client.endAsync(true).catch(() => undefined);
  for (const agent of agents) if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
  live?.close();
  await host?.stop();
  await cloud?.stop();
  await removeStateDir(stateDir);
});

describe('teleoperation survives a link drop (LeKiwi host and client, the real agent)', { timeout: 180_000 }, () => {
  it('kicked off MQTT while driven: stays teleoperated and not deployable, unconfirmed until the agent is back, then confirmed', async () => {
    const configFile = await issueCertificate(stateDir, AGENT_ROBOT);
    const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
    config.teleoperation = await watching(host);
    // The agent comes back 4 s after it was kicked off: long enough to see the unconfirmed session in the API.
    config.reconnect = { minSeconds: 4, maxSeconds: 4 };
    await writeFile(configFile, JSON.stringify(config, null, 2));
    const agent = startAgentProcess(configFile);
    agents.push(agent);
    await live.waitFor((m) => m.type === 'RobotConnected' && m.robotId === AGENT_ROBOT, `${AGENT_ROBOT} connected`, 60_000);

    operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
    await operator.startDriving(30);
    await vi.waitFor(
      async () => expect(await robot(AGENT_ROBOT)).toMatchObject({ status: 'online', deployable: false, teleoperation: { active: true, confirmed: true } }),
      RECONNECT,
    );
    const session = (await robot(AGENT_ROBOT))!.teleoperation.since;

    const api = watchApi(AGENT_ROBOT);
    try {
      // Another client takes the robot's client id for a second: the broker closes the agent's connection.
      const intruder = await connectClient(AGENT_ROBOT);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await intruder.endAsync();

      await vi.waitFor(
        async () =>
          expect(await robot(AGENT_ROBOT)).toMatchObject({
            deployable: false,
            lifecycle: expect.stringMatching(/offline|active/),
            teleoperation: { active: true, confirmed: false, since: session },
          }),
        POLL,
      );
      // The agent reconnects by itself and states it is still driven: confirmed, the same session.
      await vi.waitFor(
        async () =>
          expect(await robot(AGENT_ROBOT)).toMatchObject({
            status: 'online',
            deployable: false,
            teleoperation: { active: true, confirmed: true, since: session },
          }),
        RECONNECT,
      );
    } finally {
      await api.stop();
    }

    // At no moment did the API show the robot free while someone was driving it.
    expect(api.seen.length).toBeGreaterThan(5);
    expect(api.seen.filter((view) => !view.teleoperation.active || view.deployable)).toEqual([]);
    expect(api.seen.some((view) => !view.teleoperation.confirmed)).toBe(true);
    const events = await history(AGENT_ROBOT);
    const types = events.map((event) => event.type);
    expect(types).not.toContain('TeleoperationStopped');
    expect(types.filter((type) => type === 'TeleoperationStarted')).toHaveLength(1);
    expect(types.lastIndexOf('TeleoperationConfirmed')).toBeGreaterThan(types.lastIndexOf('RobotConnected'));
  });

  it('stays offline past the timeout (agent killed while driven): the session is closed as robot-offline', async () => {
    const agent = agents.at(-1)!;
    agent.child.kill('SIGKILL');
    await vi.waitFor(
      async () => expect(await robot(AGENT_ROBOT)).toMatchObject({ status: 'offline', deployable: false, teleoperation: { active: true, confirmed: false } }),
      POLL,
    );
    const stopped = await live.waitFor(
      (m) => m.type === 'TeleoperationStopped' && m.robotId === AGENT_ROBOT,
      'the offline timeout to close the session',
      (OFFLINE_TIMEOUT_SECONDS + 20) * 1000,
    );
    expect(stopped.data).toMatchObject({ reason: 'robot-offline', durationMs: expect.any(Number) });
    await vi.waitFor(async () => expect(await robot(AGENT_ROBOT)).toMatchObject({ teleoperation: { active: false, confirmed: true } }), POLL);
    // Closed once, however many sweeps ran meanwhile.
    await new Promise((resolve) => setTimeout(resolve, (OFFLINE_TIMEOUT_SECONDS * 1000) / 2));
    expect((await history(AGENT_ROBOT)).filter((event) => event.type === 'TeleoperationStopped')).toHaveLength(1);
    operator?.close();
    operator = undefined;
  });
});

describe('teleoperation survives a link drop (an MQTT client that is not ours)', { timeout: 180_000 }, () => {
  const publishEvent = (client: MqttClient, event: Record<string, unknown>) =>
    client.publishAsync(`dt/heartbeat/${FOREIGN_ROBOT}/events`, JSON.stringify(event), { qos: 1 });

  it('its session survives a takeover of its client id; its statement confirms it; offline past the timeout closes it', async () => {
    await issueCertificate(stateDir, FOREIGN_ROBOT);
    const first = await connectClient(FOREIGN_ROBOT);
    const since = new Date().toISOString();
    await publishEvent(first, {
      eventId: `start-${randomUUID()}`,
      occurredAt: since,
      type: 'TeleoperationStarted',
      data: { operatorAddress: '192.0.2.44', signals: ['joycon'] },
    });
    await vi.waitFor(async () => expect(await robot(FOREIGN_ROBOT)).toMatchObject({ teleoperation: { active: true, confirmed: true } }), RECONNECT);

    // The same client id connects again (the firmware restarted its MQTT stack): the first connection is closed.
    const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()));
    const second = await connectClient(FOREIGN_ROBOT);
    await firstClosed;
    await vi.waitFor(
      async () => expect(await robot(FOREIGN_ROBOT)).toMatchObject({ deployable: false, teleoperation: { active: true, confirmed: false } }),
      POLL,
    );
    // Its statement, in the exported device schema, with no outbox: confirmed.
    await publishEvent(second, { eventId: `state-${randomUUID()}`, occurredAt: new Date().toISOString(), type: 'TeleoperationState', data: { active: true, since } });
    await vi.waitFor(
      async () => expect(await robot(FOREIGN_ROBOT)).toMatchObject({ status: 'online', deployable: false, teleoperation: { active: true, confirmed: true } }),
      POLL,
    );

    // Gone for good: closed as robot-offline once the timeout has passed.
    await second.endAsync();
    await vi.waitFor(async () => expect(await robot(FOREIGN_ROBOT)).toMatchObject({ status: 'offline', teleoperation: { active: true, confirmed: false } }), POLL);
    await vi.waitFor(async () => expect(await robot(FOREIGN_ROBOT)).toMatchObject({ teleoperation: { active: false } }), { ...POLL, timeout: (OFFLINE_TIMEOUT_SECONDS + 20) * 1000 });
    const stops = (await history(FOREIGN_ROBOT)).filter((event) => event.type === 'TeleoperationStopped');
    expect(stops.map((event) => event.data.reason)).toEqual(['robot-offline']);
  });
});
