import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DynamoFactoryRegistry } from '../../functions/adapters/dynamo-factory-registry.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { openOrIssueLocalClaim, type LocalClaim } from '../../local/claim-certificates.js';
import { localFleetProvisioning } from '../../local/fleet-provisioning.js';
import { type IotBroker, type ReservedTopicService, startIotBroker } from '../../local/iot-broker.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import { provisioningTopics } from '../../schemas/provisioning.js';
import { TOPIC_RULES } from '../../schemas/topics.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestFactoryTable } from '../support/factory.js';

/**
 * The agent's first boot over MQTT (issue 11, item 3), end to end on real parts: the agent as its own process
 * (`node --import tsx agent/main.ts`, as on a robot) with only a boot-bundle-style agent.json, the batch's claim
 * certificate and an empty state dir; the local IoT Core as `npm start` composes it (local/fleet-provisioning.ts: TLS,
 * the claim policy, CreateCertificateFromCsr signed by the local CA, RegisterThing running the pre-provisioning hook
 * on a DynamoDB Local factory table and event log). Every payload
 * the broker receives is captured (the provisioning requests at the services, everything else at the rules).
 */

const BATCH = 'B-FIRST-BOOT';

let TEMPLATE: string;
let topics: ReturnType<typeof provisioningTopics>;
let workDir: string;
let ca: CertificateAuthority;
let claim: LocalClaim;
let registry: ThingRegistry;
let broker: IotBroker;
let factory: Awaited<ReturnType<typeof createTestFactoryTable>>;
let eventLog: Awaited<ReturnType<typeof createTestEventLog>>;
let proxy: LinkProxy;
/** Every payload that reached the broker, as text. */
const payloads: string[] = [];
/** Every certificate CreateCertificateFromCsr issued, and the client that asked. */
const issued: { clientId: string; certificateId: string }[] = [];
/** Called when a request reaches a service (before it is handled): a test may cut the link there. */
const onRequest: { csrAnswered?: () => void; register?: () => void } = {};
const children = new Set<ChildProcessWithoutNullStreams>();

/** A TCP relay between the agent and the broker whose connections a test can cut. */
interface LinkProxy {
  readonly port: number;
  cut(): void;
  close(): Promise<void>;
}

async function startProxy(target: number): Promise<LinkProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    const outbound = tcpConnect(target, '127.0.0.1');
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A service whose requests are captured (payload and issued certificates) before it handles them. */
function captured(service: ReservedTopicService, before?: () => (() => void) | undefined): ReservedTopicService {
  return {
    ...service,
    async handle(request, replies) {
      payloads.push(request.payload.toString('utf8'));
      before?.()?.();
      await service.handle(request, {
        accepted: async (body) => {
          if (typeof body.certificateId === 'string') issued.push({ clientId: request.clientId, certificateId: body.certificateId });
          await replies.accepted(body);
          if (service.exchange.request === topics.createCertificateFromCsr.request) onRequest.csrAnswered?.();
        },
        rejected: (error) => replies.rejected(error),
      });
    },
  };
}

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'agent-first-boot-'));
  [factory, eventLog] = await Promise.all([createTestFactoryTable(), createTestEventLog()]);
  claim = await openOrIssueLocalClaim(workDir, BATCH);
  ca = await CertificateAuthority.openOrCreate(join(workDir, 'ca'));
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  await writeFile(join(workDir, 'claim.pem.crt'), claim.certificatePem);
  await writeFile(join(workDir, 'claim.private.key'), claim.privateKeyPem, { mode: 0o640 });
  await writeFile(join(workDir, 'ca.pem'), claim.caPem);
  registry = ThingRegistry.in(workDir);
  const factoryRegistry = new DynamoFactoryRegistry({ client: factory.client, tableName: factory.tableName });
  await registerSerials(factoryRegistry, {
    batchId: BATCH,
    model: 'lekiwi',
    serials: Array.from({ length: 12 }, (_, index) => serialOf(index)),
    claimCertificateIds: [claim.certificateId],
    now: () => new Date(),
  });
  const provisioning = localFleetProvisioning({
    stateDir: workDir,
    ca,
    dynamo: factory.client,
    factoryTable: factory.tableName,
    eventLogTable: eventLog.tableName,
    registry,
  });
  TEMPLATE = provisioning.templateName;
  topics = provisioningTopics(TEMPLATE);
  const [csrService, registerService] = provisioning.reservedTopicServices;
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry,
    rules: Object.values(TOPIC_RULES).map((rule) => ({ rule, put: async (record) => void payloads.push(JSON.stringify(record.data)) })),
    minKeepAliveSeconds: 1,
    claims: provisioning.claims,
    reservedTopicServices: [captured(csrService!), captured(registerService!, () => onRequest.register)],
    log: () => undefined,
  });
  proxy = await startProxy(broker.port);
});

afterEach(() => {
  for (const child of children) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  children.clear();
  delete onRequest.csrAnswered;
  delete onRequest.register;
});

afterAll(async () => {
  await proxy?.close();
  await broker?.stop();
  await Promise.all([factory?.drop(), eventLog?.drop()]);
  await rm(workDir, { recursive: true, force: true });
});

function serialOf(index: number): string {
  return `10000000fb00${index.toString(16).padStart(4, '0')}`;
}

interface Robot {
  readonly serial: string;
  readonly thingName: string;
  readonly configFile: string;
  readonly stateDir: string;
}

/** A bare robot: the bundle's agent.json (with the thing name install.sh adds), the claim, an empty state dir. */
async function bareRobot(name: string, serial: string, fields: Record<string, unknown> = {}): Promise<Robot> {
  const dir = join(workDir, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'serial'), `${serial}\n`);
  const stateDir = join(dir, 'state');
  const configFile = join(dir, 'agent.json');
  await writeFile(
    configFile,
    JSON.stringify({
      endpoint: 'localhost',
      port: proxy.port,
      thingName: `lekiwi-${serial}`,
      certificateFile: join(stateDir, 'certificate.pem.crt'),
      privateKeyFile: join(stateDir, 'private.pem.key'),
      caFile: join(workDir, 'ca.pem'),
      stateDir,
      keepAliveSeconds: 1,
      allowShortKeepAlive: true,
      firstConnectionBudgetSeconds: 20,
      reconnect: { minSeconds: 1, maxSeconds: 1 },
      teleoperation: { enabled: false },
      telemetry: { sampleIntervalMs: 200 },
      logLevel: 'debug',
      provisioning: {
        templateName: TEMPLATE,
        claimCertificateFile: join(workDir, 'claim.pem.crt'),
        claimPrivateKeyFile: join(workDir, 'claim.private.key'),
        serialSource: { file: join(dir, 'serial') },
        model: 'lekiwi',
        batch: BATCH,
      },
      ...fields,
    }),
  );
  return { serial, thingName: `lekiwi-${serial}`, configFile, stateDir };
}

interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly [field: string]: unknown;
}

/** The agent as on a robot, in its own process group; its JSON log lines. */
function runAgent(robot: Robot, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'agent/main.ts', '--config', robot.configFile], {
    cwd: process.cwd(),
    env: { ...process.env, LOG_LEVEL: '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const lines = (): LogLine[] =>
    stdout
      .split('\n')
      .filter((line) => line.trim().startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  return { child, exited, lines, output: () => `${stdout}\n${stderr}` };
}

async function stepOf(robot: Robot): Promise<string> {
  try {
    return (JSON.parse(await readFile(join(robot.stateDir, 'provisioning', 'state.json'), 'utf8')) as { step: string }).step;
  } catch {
    return 'none';
  }
}

/**
 * Runs the agent until it is provisioned and online as its thing (`fresh`: this run did the provisioning and says so),
 * and returns it running.
 */
async function provisioned(robot: Robot, { fresh = true } = {}): Promise<ReturnType<typeof runAgent>> {
  const agent = runAgent(robot);
  await expect.poll(() => stepOf(robot), { message: `${robot.thingName} provisioned`, timeout: 60_000 }).toBe('provisioned');
  await expect.poll(() => broker.connectedThings(), { message: `${robot.thingName} online with its own certificate` }).toContain(robot.thingName);
  const messages = () => agent.lines().map((line) => line.message);
  await expect.poll(messages, { message: `${robot.thingName} running` }).toContain('agent running');
  if (fresh) await expect.poll(messages, { message: `${robot.thingName} says it is provisioned` }).toContain('provisioning: done; the robot runs with its own certificate');
  return agent;
}

async function stopped(agent: ReturnType<typeof runAgent>): Promise<ReturnType<typeof runAgent>> {
  process.kill(agent.child.pid!, 'SIGTERM');
  expect(await agent.exited, agent.output()).toEqual({ code: 0, signal: null });
  return agent;
}

/**
 * Exactly one thing for the robot, holding the robot's certificate ACTIVE; no other certificate issued in this run is
 * ACTIVE anywhere in the local registry (one that was never registered is attached to nothing and cannot connect).
 */
async function expectOneThingOneCertificate(robot: Robot): Promise<void> {
  const state = JSON.parse(await readFile(join(robot.stateDir, 'provisioning', 'state.json'), 'utf8')) as { certificateId: string; thingName: string };
  expect(state.thingName).toBe(robot.thingName);
  const things = (await registry.list()).filter((thing) => thing.thingName.endsWith(robot.serial));
  expect(things.map((thing) => thing.thingName)).toEqual([robot.thingName]);
  const active = [];
  for (const certificateId of things[0]!.certificateIds) if ((await registry.certificateStatus(certificateId)) === 'ACTIVE') active.push(certificateId);
  expect(active).toEqual([state.certificateId]);
  const mine = issued.filter(({ clientId }) => clientId === `claim-${robot.serial}`).map(({ certificateId }) => certificateId);
  expect(mine).toContain(state.certificateId);
  for (const certificateId of mine.filter((id) => id !== state.certificateId)) {
    expect(await registry.certificateStatus(certificateId), certificateId).not.toBe('ACTIVE');
  }
}

describe('agent first boot by claim', () => {
  it('bare robot → provisioned and online with its own certificate; key 0600 and never in a payload; nothing claims success before', async () => {
    const robot = await bareRobot('bare', serialOf(0));
    const agent = await stopped(await provisioned(robot));

    await expectOneThingOneCertificate(robot);
    const key = await readFile(join(robot.stateDir, 'provisioning', 'private.key'), 'utf8');
    expect((await stat(join(robot.stateDir, 'provisioning', 'private.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(robot.stateDir, 'private.pem.key'))).mode & 0o777).toBe(0o600);
    const keyBody = key.split('\n').slice(1, -2).join('');
    expect(payloads.length).toBeGreaterThan(2);
    for (const payload of payloads) {
      expect(payload).not.toMatch(/PRIVATE KEY/);
      expect(payload.replace(/\\n|\n/g, '')).not.toContain(keyBody.slice(0, 40));
    }
    // IoT Core saw the robot connect as itself (the presence event the cloud turns into RobotConnected).
    const presence = payloads.map((payload) => JSON.parse(payload) as Record<string, unknown>).filter((data) => data.clientId === robot.thingName);
    expect(presence).toContainEqual(expect.objectContaining({ eventType: 'connected' }));
    // The claim is kept (nothing the robot still needs is deleted).
    expect(await readFile(join(workDir, 'claim.private.key'), 'utf8')).toBe(claim.privateKeyPem);

    const messages = agent.lines().map((line) => line.message);
    expect(messages).toContain('provisioning: done; the robot runs with its own certificate');
    expect(messages.indexOf('link up')).toBeGreaterThan(messages.indexOf('provisioning: registered; connecting with the robot\'s own certificate'));
    expect(messages.slice(0, messages.indexOf('provisioning: registered; connecting with the robot\'s own certificate'))).not.toContain('connected');
    expect(messages).toContain('claim link connected (provisioning only; the robot is not online yet)');
  });

  it.each(['key-generated', 'certificate-issued', 'registered', 'provisioned'])(
    'SIGKILL right after %s is persisted: the next run ends provisioned, one thing, no orphan active certificate',
    async (killAfter) => {
      const robot = await bareRobot(`kill-${killAfter}`, serialOf(['key-generated', 'certificate-issued', 'registered', 'provisioned'].indexOf(killAfter) + 1));
      const killed = runAgent(robot, { HEARTBEAT_PROVISIONING_KILL_AFTER: killAfter });
      expect(await killed.exited, killed.output()).toEqual({ code: null, signal: 'SIGKILL' });
      expect(await stepOf(robot)).toBe(killAfter);

      await stopped(await provisioned(robot, { fresh: killAfter !== 'provisioned' }));
      await expectOneThingOneCertificate(robot);
    },
  );

  it('the link cut between the two requests, and again while RegisterThing is carried out (its reply lost): ends provisioned, one thing, one certificate', async () => {
    const between = await bareRobot('cut-between', serialOf(5));
    let cuts = 0;
    onRequest.csrAnswered = () => {
      if (cuts++ === 0) proxy.cut();
    };
    await stopped(await provisioned(between));
    expect(cuts).toBeGreaterThan(0);
    await expectOneThingOneCertificate(between);

    delete onRequest.csrAnswered;
    const lost = await bareRobot('cut-register', serialOf(6));

    let registerCuts = 0;
    onRequest.register = () => {
      if (registerCuts++ === 0) proxy.cut();
    };
    const agent = await provisioned(lost);
    // The failure met on the way reaches the cloud once the robot talks as itself.
    await expect
      .poll(() => payloads.filter((payload) => payload.includes('"ProvisioningFailed"') && payload.includes(lost.serial)).length, { message: 'ProvisioningFailed reported' })
      .toBeGreaterThan(0);
    await stopped(agent);
    expect(registerCuts).toBeGreaterThan(1);
    await expectOneThingOneCertificate(lost);
    // The registration carried out without its reply was found by connecting: no second certificate was asked for.
    expect(agent.lines().map((line) => line.message)).toContain('provisioning: an earlier RegisterThing was carried out (its reply was lost); going on with it');
    expect(issued.filter(({ clientId }) => clientId === `claim-${lost.serial}`)).toHaveLength(1);
    expect(agent.lines().some((line) => line.reason === 'SERVICE_UNAVAILABLE' || line.reason === 'TOKEN_EXPIRED')).toBe(true);
  });

  it('an unknown serial: exit 78 with HOOK_DENIED_UNKNOWN_SERIAL in the log, nothing registered', async () => {
    const robot = await bareRobot('unknown', '10000000deadbeef');
    const agent = runAgent(robot);
    expect(await agent.exited, agent.output()).toEqual({ code: 78, signal: null });
    expect(agent.lines()).toContainEqual(expect.objectContaining({ level: 'error', reason: 'HOOK_DENIED_UNKNOWN_SERIAL', exitCode: 78 }));
    expect(await registry.lookup(robot.thingName)).toBeUndefined();
    expect(agent.lines().map((line) => line.message)).not.toContain('link up');
  });

  it('the broker unreachable: retries, then exit 69 with ENDPOINT_UNREACHABLE once the first-connection budget is spent', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const robot = await bareRobot('unreachable', serialOf(7), { port, firstConnectionBudgetSeconds: 3 });
    const agent = runAgent(robot);
    expect(await agent.exited, agent.output()).toEqual({ code: 69, signal: null });
    const lines = agent.lines();
    expect(lines.filter((line) => line.message === 'connection failed; retrying').length).toBeGreaterThan(0);
    expect(lines).toContainEqual(expect.objectContaining({ level: 'error', reason: 'ENDPOINT_UNREACHABLE', exitCode: 69 }));
  });
});
