import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePorts,
  freshStateDir,
  getJson,
  removeStateDir,
  ROOT,
  startAgentProcess,
  startCloudProcess,
  type AgentProcess,
  type CloudProcess,
  type Ports,
} from '../support/local-cloud-process.js';

/**
 * Provisioning by claim end to end (issue 11, item 6 "Locally"), as a developer runs it: `npm start` whose simulated
 * robots provision themselves by claim, then the factory's path for a real robot — `npm run factory -- register` and
 * `bundle` for a batch, and the real agent process (`npm run agent`) with the bundle's agent.json, an empty state dir
 * and its serial from a file — until the API shows it provisioned and online and `factory status` says so.
 */
const run = promisify(execFile);
const SIMULATED = ['lekiwi-SIM001', 'lekiwi-SIM002', 'xle-SIM003'];
const BATCH = 'E2E-CLAIM-1';
const SERIAL = 'PBC0001';
const ROBOT = `lekiwi-${SERIAL}`;

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess;
const agents: AgentProcess[] = [];

async function eventTypes(robotId: string): Promise<string[]> {
  const { status, body } = await getJson(cloud.endpoints, `/robots/${robotId}/events?limit=100`);
  return status === 200 ? (body as { items: { type: string }[] }).items.map((event) => event.type) : [];
}

async function onlineRobots(): Promise<string[]> {
  const { body } = await getJson(cloud.endpoints, '/robots');
  return (body as { items: { robotId: string; status: string }[] }).items.filter((robot) => robot.status === 'online').map((robot) => robot.robotId);
}

async function factory(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'scripts/factory.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, LOCAL_STATE_DIR: stateDir },
  });
  return stdout;
}

async function batchStatus(batchId: string): Promise<{ serial: string; thingName: string; stage: string; online: boolean | null }[]> {
  return (JSON.parse(await factory('status', '--batch', batchId, '--json')) as { serials: { serial: string; thingName: string; stage: string; online: boolean | null }[] }).serials;
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  cloud = await startCloudProcess({ stateDir, ports, robots: 3 });
}, 180_000);

afterAll(async () => {
  for (const agent of agents) if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
  await cloud?.stop();
  if (stateDir) await removeStateDir(stateDir);
});

describe('provisioning by claim in the local cloud', { timeout: 120_000 }, () => {
  it('`npm start`: the simulated robots provision themselves by claim, then come online with their own certificates', async () => {
    expect(cloud.output()).toContain('provisioning 3 simulated robots by claim (batch sim-lekiwi, sim-xle)');
    expect(cloud.output()).toMatch(/✓ 3 simulated robots registered by claim \(\d+ ms\)/);
    for (const robotId of SIMULATED) {
      await expect.poll(() => eventTypes(robotId), { message: `${robotId}'s history`, timeout: 30_000 }).toEqual(
        expect.arrayContaining(['RobotProvisioned', 'RobotConnected']),
      );
    }
    await expect.poll(onlineRobots, { timeout: 30_000 }).toEqual(expect.arrayContaining(SIMULATED));
    // The factory table knows them: the serials of the local batches, provisioned and online.
    await expect.poll(() => batchStatus('sim-lekiwi'), { timeout: 30_000 }).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ serial: 'SIM001', thingName: 'lekiwi-SIM001', stage: 'online', online: true }),
        expect.objectContaining({ serial: 'SIM002', thingName: 'lekiwi-SIM002', stage: 'online', online: true }),
      ]),
    );
    expect(await batchStatus('sim-xle')).toEqual([expect.objectContaining({ serial: 'SIM003', stage: 'online' })]);
    // A robot's own certificate and key, made by its first boot; the claim is only the batch's.
    const config = JSON.parse(await readFile(join(stateDir, 'certs', 'lekiwi-SIM001', 'agent.json'), 'utf8')) as { provisioning: { batch: string } };
    expect(config.provisioning.batch).toBe('sim-lekiwi');
    expect(await readFile(join(stateDir, 'certs', 'lekiwi-SIM001', 'certificate.pem.crt'), 'utf8')).toContain('BEGIN CERTIFICATE');
  });

  it('a robot from a factory boot bundle: `factory register` + `bundle`, the real agent with an empty state dir → provisioned and online', async () => {
    expect(await factory('register', '--batch', BATCH, '--model', 'lekiwi', '--serials', SERIAL)).toContain('1 registered');
    const bundleDir = join(stateDir, 'bundle');
    expect(await factory('bundle', '--batch', BATCH, '--model', 'lekiwi', '--out', bundleDir)).toContain('recorded');
    // The bundle's agent.json, as install.sh adapts it on the robot: the thing name from the serial; here the test's
    // own folders instead of /etc/heartbeat and /var/lib/heartbeat, and the serial from a file.
    const bundled = JSON.parse(await readFile(join(bundleDir, 'agent.json'), 'utf8')) as Record<string, any>;
    const robotDir = join(stateDir, 'robot');
    await mkdir(robotDir, { recursive: true });
    await writeFile(join(robotDir, 'serial'), `${SERIAL}\n`);
    const config = {
      ...bundled,
      thingName: ROBOT,
      endpoint: 'localhost',
      port: ports.mqtt,
      caFile: join(bundleDir, 'local-ca.pem'),
      certificateFile: join(robotDir, 'state', 'certificate.pem.crt'),
      privateKeyFile: join(robotDir, 'state', 'private.pem.key'),
      stateDir: join(robotDir, 'state'),
      provisioning: {
        ...bundled.provisioning,
        claimCertificateFile: join(bundleDir, 'claim.pem.crt'),
        claimPrivateKeyFile: join(bundleDir, 'claim.private.key'),
        serialSource: { file: join(robotDir, 'serial') },
      },
    };
    expect(bundled.provisioning).toMatchObject({ batch: BATCH, model: 'lekiwi' });
    const configFile = join(robotDir, 'agent.json');
    await writeFile(configFile, JSON.stringify(config, null, 2));

    const agent = startAgentProcess(configFile);
    agents.push(agent);
    // A process starting (tsx compiles the agent first): longer than the default wait.
    await expect.poll(() => eventTypes(ROBOT), { message: `${ROBOT}'s history\n${agent.output()}`, timeout: 60_000 }).toEqual(
      expect.arrayContaining(['RobotProvisioned', 'RobotConnected']),
    );
    await expect.poll(onlineRobots).toContain(ROBOT);
    await expect.poll(() => batchStatus(BATCH)).toEqual([expect.objectContaining({ serial: SERIAL, thingName: ROBOT, stage: 'online', online: true })]);
    agent.child.kill('SIGTERM');
    await agent.exited;
  });

  it('started again, the simulated robots keep their certificates: no second provisioning', { timeout: 240_000 }, async () => {
    const certificate = await readFile(join(stateDir, 'certs', 'lekiwi-SIM001', 'certificate.pem.crt'), 'utf8');
    const provisionedBefore = (await eventTypes('lekiwi-SIM001')).filter((type) => type === 'RobotProvisioned').length;
    expect(provisionedBefore).toBe(1);
    expect(await cloud.stop()).toBe(0);
    cloud = await startCloudProcess({ stateDir, ports, robots: 3 });
    expect(cloud.output()).not.toContain('by claim');
    await expect.poll(onlineRobots, { timeout: 30_000 }).toEqual(expect.arrayContaining(SIMULATED));
    expect(await readFile(join(stateDir, 'certs', 'lekiwi-SIM001', 'certificate.pem.crt'), 'utf8')).toBe(certificate);
    expect((await eventTypes('lekiwi-SIM001')).filter((type) => type === 'RobotProvisioned')).toHaveLength(1);
  });
});
