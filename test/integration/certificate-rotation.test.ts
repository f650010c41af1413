import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../agent/adapters/json-log.js';
import { MqttLink } from '../../agent/adapters/mqtt-link.js';
import { RotatingLink, type LinkFactory } from '../../agent/adapters/rotating-link.js';
import { CertificateRotation, startingCredentials, type RotationSettings } from '../../agent/certificate-rotation.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { decide } from '../../functions/domain/robot-decider.js';
import { evolve, initialRobotState, type RobotState } from '../../functions/domain/robot-state.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { localCertificateRotationRule } from '../../local/certificate-rotation.js';
import { startIotBroker, type BrokerLogEntry, type IotBroker } from '../../local/iot-broker.js';
import { provisionThing, ThingRegistry } from '../../local/thing-registry.js';
import type { AgentEvent } from '../../schemas/device.js';
import type { DomainEvent } from '../../schemas/events.js';
import { LifecycleEvent } from '../../schemas/lifecycle.js';
import { ROTATION_COMMANDS } from '../../schemas/rotation.js';
import { TOPIC_RULES, topics } from '../../schemas/topics.js';
import { createTestEventLog } from '../support/dynamo.js';

/**
 * Certificate rotation with no gap (issue 11, item 4), end to end with real parts: the local IoT Core over mTLS (its
 * thing registry, thing policy and rules engine), the certificate-rotation use case as its rule target with the local
 * CA and the event log in DynamoDB Local, and the agent's own rotation driver and link (aws-crt MQTT, the CSR code of
 * the first boot). Presence is folded through the cloud's own decider, as the ingest would.
 */

let stateDir: string;
let ca: CertificateAuthority;
let registry: ThingRegistry;
let broker: IotBroker;
let eventLog: DynamoEventLog;
let dropTable: () => Promise<unknown>;
const brokerLog: BrokerLogEntry[] = [];
/** Lifecycle events per robot, as the presence rule received them. */
const lifecycle = new Map<string, LifecycleEvent[]>();
/** Telemetry messages per robot, as the telemetry rule put them. */
const telemetryReceived = new Map<string, number>();
/** Robots whose certificates other than the first the broker refuses (a new certificate that cannot connect). */
const refuseNewCertificates = new Set<string>();
const firstCertificate = new Map<string, string>();
const robots: Robot[] = [];

const FAST: Partial<RotationSettings> = { connectTimeoutMs: 4_000, replyTimeoutMs: 10_000, confirmResendMs: 2_000 };

interface Robot {
  readonly name: string;
  readonly provisioned: Provisioned;
  readonly link: RotatingLink;
  readonly rotation: CertificateRotation;
  readonly reports: AgentEvent[];
  readonly firstCertificateId: string;
  readonly caFile: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
  stop(): Promise<void>;
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'certificate-rotation-'));
  ca = await CertificateAuthority.create();
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  registry = ThingRegistry.in(stateDir);
  const table = await createTestEventLog();
  dropTable = table.drop;
  eventLog = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry: {
      isAttached: async (thing, certificateId) =>
        refuseNewCertificates.has(thing) && certificateId !== firstCertificate.get(thing) ? false : registry.isAttached(thing, certificateId),
    },
    rules: [
      {
        rule: TOPIC_RULES.presence,
        put: async ({ data }) => {
          const event = LifecycleEvent.parse(data);
          lifecycle.set(event.clientId, [...(lifecycle.get(event.clientId) ?? []), event]);
        },
      },
      {
        rule: TOPIC_RULES.telemetry,
        put: async ({ data }) => {
          const thing = String(data.thingName);
          telemetryReceived.set(thing, (telemetryReceived.get(thing) ?? 0) + 1);
        },
      },
      localCertificateRotationRule({
        ca,
        registry,
        eventLog,
        replies: { send: (robotId, request, payload) => broker.publish(topics.command(robotId, request), payload) },
        log: (entry) => brokerLog.push(entry),
      }),
    ],
    log: (entry) => brokerLog.push(entry),
  });
});

afterAll(async () => {
  await Promise.all(robots.splice(0).map((robot) => robot.stop()));
  await broker?.stop();
  await dropTable?.();
  await rm(stateDir, { recursive: true, force: true });
});

type Provisioned = Awaited<ReturnType<typeof provisionThing>>;

/**
 * A robot as agent/main.ts runs it: its link and rotation driver on its state dir. `provisioned`: start again on an
 * existing robot (a restart); `holdSwitch`: the link never gets to connect with a new certificate (the power goes
 * before it does).
 */
async function startRobot(
  name: string,
  settings: Partial<RotationSettings> = FAST,
  { provisioned, holdSwitch = false }: { provisioned?: Provisioned; holdSwitch?: boolean } = {},
): Promise<Robot> {
  const credentials = provisioned ?? (await provisionThing(stateDir, ca, name, { port: broker.port }));
  if (!provisioned) firstCertificate.set(name, credentials.certificate.certificateId);
  const agentState = join(credentials.directory, 'agent-state');
  const base = { certificateFile: credentials.certificateFile, privateKeyFile: credentials.privateKeyFile };
  const factory: LinkFactory = (files, options) =>
    new MqttLink({
      endpoint: 'localhost',
      port: broker.port,
      clientId: name,
      ...files,
      caFile: credentials.caFile,
      keepAliveSeconds: 30,
      reconnect: { minSeconds: 1, maxSeconds: 2 },
      ...(options.firstConnectionBudgetSeconds ? { firstConnectionBudgetSeconds: options.firstConnectionBudgetSeconds } : {}),
    });
  const link = new RotatingLink(factory, await startingCredentials(agentState, base), silentLog);
  const reports: AgentEvent[] = [];
  const rotation = new CertificateRotation({
    thingName: name,
    stateDir: agentState,
    baseCredentials: base,
    link: holdSwitch ? { publish: (topic, payload, qos) => link.publish(topic, payload, qos), switchTo: () => new Promise(() => undefined) } : link,
    report: async (event) => void reports.push(event),
    settings,
    log: silentLog,
  });
  // What agent/agent.ts does with its `commands`: the robot's command topic, routed by the last level.
  const commands = rotation.commands;
  await link.subscribe(topics.command(name, '+'), (topic, payload) => commands[topic.split('/')[3] ?? '']?.(JSON.parse(payload.toString())));
  await link.start();
  await rotation.start();
  const robot: Robot = {
    name,
    provisioned: credentials,
    link,
    rotation,
    reports,
    firstCertificateId: credentials.certificate.certificateId,
    caFile: credentials.caFile,
    certificateFile: credentials.certificateFile,
    privateKeyFile: credentials.privateKeyFile,
    stop: async () => {
      rotation.stop();
      await link.stop();
    },
  };
  robots.push(robot);
  return robot;
}

/** What the cloud's log makes of the robot's lifecycle events, folded in the order the rule received them. */
function presenceLog(name: string): { events: DomainEvent[]; state: RobotState } {
  let state = initialRobotState(name);
  const events: DomainEvent[] = [];
  for (const presence of lifecycle.get(name) ?? []) {
    const decided = decide(state, { type: 'RecordPresence', presence }, { known: true });
    events.push(...decided);
    state = decided.reduce(evolve, state);
  }
  return { events, state };
}

/** Every stretch the log shows the robot offline since `from`, in ms (a disconnect to the next connect). */
function offlineStretches(events: readonly DomainEvent[], from: number): number[] {
  const stretches: number[] = [];
  let offlineAt: number | undefined;
  for (const event of events) {
    if (event.type === 'RobotDisconnected' && event.data.timestamp >= from) offlineAt = event.data.timestamp;
    if (event.type === 'RobotConnected' && offlineAt !== undefined) {
      stretches.push(event.data.timestamp - offlineAt);
      offlineAt = undefined;
    }
  }
  if (offlineAt !== undefined) stretches.push(Number.POSITIVE_INFINITY);
  return stretches;
}

function connectWith(name: string, certificateFile: string, privateKeyFile: string, caFile: string): Promise<'connected' | string> {
  return (async () => {
    const { readFile } = await import('node:fs/promises');
    const client = mqtt.connect({
      protocol: 'mqtts',
      host: '127.0.0.1',
      port: broker.port,
      clientId: name,
      ca: await readFile(caFile),
      cert: await readFile(certificateFile),
      key: await readFile(privateKeyFile),
      servername: 'localhost',
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      protocolVersion: 4,
    });
    return new Promise<'connected' | string>((resolve) => {
      client.once('connect', () => {
        client.end(true);
        resolve('connected');
      });
      client.once('error', (error) => {
        client.end(true);
        resolve(error.message);
      });
    });
  })();
}

describe('certificate rotation with no gap', () => {
  it('rotates on command: the robot moves to its new certificate over one hand-over, and the old one ends inactive and refused', async () => {
    const robot = await startRobot('lekiwi-ROT0001');
    const since = Date.now();
    await broker.publish(topics.command(robot.name, ROTATION_COMMANDS.rotate), { requestId: 'api-request-0001' });

    await expect.poll(() => robot.rotation.pending === null && robot.rotation.active.certificateId !== robot.firstCertificateId).toBe(true);
    const newCertificateId = robot.rotation.active.certificateId;
    expect(await registry.standing(robot.name, robot.firstCertificateId)).toBe('inactive');
    expect(await registry.standing(robot.name, newCertificateId)).toBe('active');
    // The new key is the robot's own, 0600, beside the record; the robot is connected with it and can talk.
    expect((await stat(robot.rotation.active.privateKeyFile)).mode & 0o777).toBe(0o600);
    expect(robot.link.isConnected).toBe(true);
    await robot.link.publish(topics.telemetry(robot.name), JSON.stringify({ sampledAt: new Date().toISOString() }), 1);

    // The log: CertificateRotated once, and the robot's certificate in its state.
    const head = await eventLog.readHead(robot.name);
    expect(head?.state.certificate).toMatchObject({ id: newCertificateId, rotatedAt: expect.any(String) });
    expect(head?.state.certificate?.notAfter).toEqual(expect.any(String));
    const page = await eventLog.readEvents(robot.name, { limit: 50 });
    const rotated = page.events.filter(({ event }) => event.type === 'CertificateRotated');
    expect(rotated.map(({ event }) => event.data)).toEqual([
      { requestId: 'api-request-0001', oldCertificateId: robot.firstCertificateId, newCertificateId, notAfter: expect.any(String) },
    ]);
    expect(robot.reports).toEqual([]);

    // Presence: the broker handed the client id over; the log never shows the robot offline but for that instant.
    const { events, state } = presenceLog(robot.name);
    expect(state.presence.status).toBe('online');
    for (const event of events.filter((e) => e.type === 'RobotDisconnected')) {
      expect(event.type === 'RobotDisconnected' && event.data.reason).toBe('DUPLICATE_CLIENTID');
    }
    expect(offlineStretches(events, since).every((ms) => ms < 1_000)).toBe(true);

    // The old certificate is refused at connect; the new one is the robot's.
    expect(await connectWith(robot.name, robot.certificateFile, robot.privateKeyFile, robot.caFile)).toMatch(/Not authorized|not authorized/i);
  });

  it('a new certificate that cannot connect leaves the old one in use, and the robot says why', async () => {
    const robot = await startRobot('lekiwi-ROT0002');
    refuseNewCertificates.add(robot.name);
    await broker.publish(topics.command(robot.name, ROTATION_COMMANDS.rotate), { requestId: 'api-request-0002' });

    await expect.poll(() => robot.reports.length, { timeout: 20_000 }).toBe(1);
    expect(robot.reports[0]).toMatchObject({
      type: 'CertificateRotationFailed',
      data: { requestId: 'api-request-0002', reason: 'NEW_CERTIFICATE_REFUSED', certificateId: robot.firstCertificateId },
    });
    // The certificate the cloud issued and the robot gave up on is named, for the cloud to deactivate
    // (functions/app/retire-certificates.ts; test/integration/certificate-retirement.test.ts).
    const abandoned = (robot.reports[0]?.data as { abandonedCertificateId?: string }).abandonedCertificateId;
    expect(abandoned).toMatch(/^[0-9a-f]{64}$/);
    expect(abandoned).not.toBe(robot.firstCertificateId);
    expect((await registry.lookup(robot.name))?.certificateIds).toContain(abandoned);
    expect(robot.rotation.pending).toBeNull();
    expect(robot.rotation.active.certificateId).toBe(robot.firstCertificateId);
    expect(await registry.standing(robot.name, robot.firstCertificateId)).toBe('active');
    expect(robot.link.isConnected).toBe(true);
    await robot.link.publish(topics.telemetry(robot.name), JSON.stringify({ sampledAt: new Date().toISOString() }), 1);
    expect(presenceLog(robot.name).state.presence.status).toBe('online');
    expect(presenceLog(robot.name).events.filter((e) => e.type === 'RobotDisconnected')).toEqual([]);
    refuseNewCertificates.delete(robot.name);
  }, 40_000);

  it('a restart after the new certificate was stored but before it connected resumes: connects with it and confirms', async () => {
    const first = await startRobot('lekiwi-ROT0003', FAST, { holdSwitch: true });
    await broker.publish(topics.command(first.name, ROTATION_COMMANDS.rotate), { requestId: 'api-request-0003' });
    await expect.poll(() => first.rotation.pending?.step).toBe('issued');
    const stored = first.rotation.pending as { certificateId: string };
    await first.stop(); // the power goes: the record says `issued`, the new pair is on disk, the old one still active
    expect(await registry.standing(first.name, first.firstCertificateId)).toBe('active');

    const again = await startRobot(first.name, FAST, { provisioned: first.provisioned });
    await expect.poll(() => again.rotation.pending === null && again.rotation.active.certificateId === stored.certificateId).toBe(true);
    expect(await registry.standing(first.name, first.firstCertificateId)).toBe('inactive');
    expect(await registry.standing(first.name, stored.certificateId)).toBe('active');
    expect((await eventLog.readHead(first.name))?.state.certificate?.id).toBe(stored.certificateId);
    expect(again.reports).toEqual([]);
    // And the next start uses the new pair from the first connection.
    expect((await startingCredentials(join(first.provisioned.directory, 'agent-state'), first.provisioned)).certificateFile).toBe(
      again.rotation.active.certificateFile,
    );
  });

  it('20 robots rotate at once while sending telemetry: all on new certificates, old ones inactive, no telemetry lost, never offline beyond the hand-over', async () => {
    // One at a time: `npm run cert`'s provisioning (provisionThing) writes the registry file from an instance of its own.
    const fleet: Robot[] = [];
    for (let i = 0; i < 20; i += 1) fleet.push(await startRobot(`xle-FLEET${String(i).padStart(3, '0')}`));
    const sent = new Map<string, number>();
    const failed = new Map<string, number>();
    let sending = true;
    const senders = fleet.map(async (robot) => {
      while (sending) {
        try {
          await robot.link.publish(topics.telemetry(robot.name), JSON.stringify({ sampledAt: new Date().toISOString() }), 1);
          sent.set(robot.name, (sent.get(robot.name) ?? 0) + 1);
        } catch {
          failed.set(robot.name, (failed.get(robot.name) ?? 0) + 1);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 300)); // telemetry flowing before the rotation starts
    const since = Date.now();
    await Promise.all(fleet.map((robot, i) => broker.publish(topics.command(robot.name, ROTATION_COMMANDS.rotate), { requestId: `fleet-rotation-${i}` })));

    await expect
      .poll(() => fleet.filter((robot) => robot.rotation.pending === null && robot.rotation.active.certificateId !== robot.firstCertificateId).length, { timeout: 60_000 })
      .toBe(20);
    await new Promise((resolve) => setTimeout(resolve, 300)); // and flowing after
    sending = false;
    await Promise.all(senders);
    await broker.idle();

    for (const robot of fleet) {
      expect(await registry.standing(robot.name, robot.firstCertificateId)).toBe('inactive');
      expect(await registry.standing(robot.name, robot.rotation.active.certificateId)).toBe('active');
      expect(robot.reports).toEqual([]);
      // Every publish the broker acknowledged reached the rule, and none failed across the hand-over.
      expect(failed.get(robot.name) ?? 0).toBe(0);
      expect(telemetryReceived.get(robot.name) ?? 0).toBeGreaterThanOrEqual(sent.get(robot.name) ?? 0);
      expect(sent.get(robot.name) ?? 0).toBeGreaterThan(5);
      const { events, state } = presenceLog(robot.name);
      expect(state.presence.status).toBe('online');
      expect(offlineStretches(events, since).every((ms) => ms < 1_000)).toBe(true);
      const head = await eventLog.readHead(robot.name);
      expect(head?.state.certificate?.id).toBe(robot.rotation.active.certificateId);
    }
  }, 120_000);
});
