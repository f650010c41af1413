import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { simulatedThingName } from '../../local/simulated-fleet.js';
import { INSTALL_STEPS } from '../../schemas/deployments.js';
import { connectOperator, startHostStandIn, watching, type HostStandIn, type Operator } from '../support/lekiwi-stand-ins.js';
import {
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  ROOT,
  startAgentProcess,
  startCloudProcess,
  type AgentProcess,
  type CloudProcess,
  type Ports,
} from '../support/local-cloud-process.js';

/**
 * Deployments end to end (issue 12, "What must be shown"), as a developer runs them: `npm start` with 20 simulated
 * robots (the real agent runtime, MQTT link and installer in the cloud's process), `npm run release` of a folder into
 * the local artifact store, `POST /api/v2/deployments` as an engineer; the evidence is what the API shows — the
 * robots' versions, their event logs, the deployment's own view.
 *
 * One cloud for every case (CI time); the cases build on each other: 1.0.0 everywhere, 2.0.0 changing one file
 * (differential), 2.0.0 again (nothing to fetch), then 3.0.0 whose install fails on 5 of the 20 robots
 * (`HEARTBEAT_SIM_INSTALL_FAIL=…@3.0.0`): aborted, rolled back to 2.0.0. Then what needs a real agent process
 * (`npm run agent`): a robot driven through its LeKiwi host stand-in defers, and an agent SIGKILLed at each install
 * step (HEARTBEAT_INSTALL_KILL_AFTER) and started again ends on one complete version, its job in a final state.
 */
const run = promisify(execFile);
const ROBOTS = Array.from({ length: 20 }, (_, index) => simulatedThingName(index));
/**
 * 25 % of the fleet fails 3.0.0: two in the first rolling batch (the threshold, 20 % of at least 5 finished, trips
 * during or right after it whatever order the outcomes come in), three in later batches (which must never start).
 */
const FAILING = [2, 3, 8, 13, 18].map((index) => ROBOTS[index]!);
const STRATEGY = { canary: 2, batchSize: 5 };
const FILES = 24;

let stateDir: string;
let ports: Ports;
let cloud: CloudProcess;
const agents: AgentProcess[] = [];
let host: HostStandIn | undefined;
let operator: Operator | undefined;

interface EventView {
  seq: number;
  type: string;
  recordedAt: string;
  data: Record<string, any>;
}

/** The robot's whole log, oldest first. */
async function events(robotId: string): Promise<EventView[]> {
  const all: EventView[] = [];
  for (let after = 0; ; ) {
    const { status, body } = await getJson(cloud.endpoints, `/robots/${robotId}/events?after=${after}&limit=100`);
    if (status !== 200) throw new Error(`events of ${robotId}: ${status} ${JSON.stringify(body)}`);
    const items = (body as { items: EventView[] }).items;
    all.push(...items);
    if (items.length < 100) return all;
    after = items.at(-1)!.seq;
  }
}

async function versions(): Promise<Record<string, string | null>> {
  const { body } = await getJson(cloud.endpoints, '/robots?limit=100');
  const items = (body as { items: { robotId: string; software?: { version: string | null } }[] }).items;
  return Object.fromEntries(items.filter((robot) => ROBOTS.includes(robot.robotId)).map((robot) => [robot.robotId, robot.software?.version ?? null]));
}

async function onlineRobots(): Promise<string[]> {
  const { body } = await getJson(cloud.endpoints, '/robots?limit=100');
  return (body as { items: { robotId: string; status: string }[] }).items.filter((robot) => robot.status === 'online').map((robot) => robot.robotId);
}

async function postJson(path: string, payload: unknown): Promise<{ status: number; body: any }> {
  const token = (await readFile(cloud.endpoints.tokens.engineer, 'utf8')).trim();
  const response = await fetch(`${cloud.endpoints.apiUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(payload),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function deployment(id: string): Promise<any> {
  const { status, body } = await getJson(cloud.endpoints, `/deployments/${id}`);
  if (status !== 200) throw new Error(`GET /deployments/${id}: ${status} ${JSON.stringify(body)}`);
  return body;
}

/** Polls the deployment until it is in one of `states`; returns its view. */
async function settled(id: string, states: string[], timeout = 150_000): Promise<any> {
  await expect
    .poll(async () => (await deployment(id)).state, { message: `deployment ${id} to reach ${states.join('/')}`, timeout, interval: 500 })
    .toSatisfy((state: string) => states.includes(state));
  return deployment(id);
}

/** `npm run release -- --dir <dir> --version <v>` into the running cloud's state dir. */
async function release(version: string, files: Record<string, string>): Promise<void> {
  await writeTree(version, files);
  const dir = join(stateDir, 'trees', version);
  const { stdout } = await run('npm', ['run', '--silent', 'release', '--', '--dir', dir, '--version', version], {
    cwd: ROOT,
    env: { ...process.env, LOCAL_STATE_DIR: stateDir },
  });
  expect(stdout).toContain(`Release ${version} stored.`);
}

async function writeTree(version: string, files: Record<string, string>): Promise<void> {
  const dir = join(stateDir, 'trees', version);
  await rm(dir, { recursive: true, force: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), content);
  }
}

/** The software tree: FILES files, `changed` of them with other content. */
function tree(changed: number[] = []): Record<string, string> {
  return Object.fromEntries(
    Array.from({ length: FILES }, (_, i) => [`lerobot/config/part-${String(i).padStart(2, '0')}.yaml`, `setting ${i}: ${changed.includes(i) ? 'changed' : 'value'}\n`.repeat(20)]),
  );
}

async function deploy(version: string, robotIds: string[] = ROBOTS, strategy: Record<string, number> = STRATEGY): Promise<string> {
  const { status, body } = await postJson('/deployments', { release: version, targets: { robotIds }, strategy });
  expect(status, JSON.stringify(body)).toBe(202);
  return body.deploymentId as string;
}

/** The robot's update events of one deployment, oldest first. */
function ofDeployment(log: EventView[], deploymentId: string): EventView[] {
  return log.filter((event) => event.type.startsWith('RobotUpdate') && event.data.deploymentId === deploymentId);
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  ports = await freePorts();
  // 20 robots provision themselves by claim first: longer than the default wait on a busy machine.
  cloud = await startCloudProcess({ stateDir, ports, robots: ROBOTS.length, readyTimeoutMs: 300_000, env: { HEARTBEAT_SIM_INSTALL_FAIL: `${FAILING.join(',')}@3.0.0` } });
  await vi.waitFor(async () => expect(await onlineRobots()).toEqual(expect.arrayContaining(ROBOTS)), { timeout: 60_000, interval: 250 });
}, 420_000);

afterAll(async () => {
  operator?.close();
  for (const agent of agents) if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill('SIGKILL');
  await host?.stop();
  await cloud?.stop();
  if (stateDir) await removeStateDir(stateDir);
});

describe('deployments to 20 simulated robots on the local cloud', { timeout: 200_000 }, () => {
  it('canary of 2, then batches of 5: every robot ends on the new version, batch after batch, every step in its log', async () => {
    expect(cloud.output()).toContain(`installs of 3.0.0 will fail on 5 simulated robots`);
    await release('1.0.0', tree());
    const id = await deploy('1.0.0');
    const view = await settled(id, ['completed', 'aborted', 'canceled']);
    expect(view.state, JSON.stringify(view.robots.filter((r: any) => r.state !== 'succeeded'))).toBe('completed');
    expect(view.batches.map((batch: any) => [batch.kind, batch.robots, batch.succeeded])).toEqual([
      ['canary', 2, 2],
      ['rolling', 5, 5],
      ['rolling', 5, 5],
      ['rolling', 5, 5],
      ['rolling', 3, 3],
    ]);
    expect(view.counts).toMatchObject({ targeted: 20, held: 0, succeeded: 20, failed: 0 });
    await expect.poll(versions).toEqual(Object.fromEntries(ROBOTS.map((robot) => [robot, '1.0.0'])));

    // Every robot: Queued, Started (everything to fetch: it had nothing), Succeeded — in that order, once each.
    const batchOf = new Map<string, number>(view.robots.map((robot: any) => [robot.robotId, robot.batch]));
    const queuedAt = new Map<number, number[]>();
    const endedAt = new Map<number, number[]>();
    for (const robotId of ROBOTS) {
      const updates = ofDeployment(await events(robotId), id);
      expect(updates.map((event) => event.type), robotId).toEqual(['RobotUpdateQueued', 'RobotUpdateStarted', 'RobotUpdateSucceeded']);
      const [queued, started, succeeded] = updates as [EventView, EventView, EventView];
      expect(queued.data).toMatchObject({ version: '1.0.0', kind: 'deploy', batch: batchOf.get(robotId) });
      expect(started.data).toMatchObject({ version: '1.0.0', fromVersion: null, filesToFetch: FILES });
      expect(succeeded.data).toMatchObject({ version: '1.0.0', fromVersion: null, filesFetched: FILES });
      const batch = batchOf.get(robotId)!;
      queuedAt.set(batch, [...(queuedAt.get(batch) ?? []), Date.parse(queued.recordedAt)]);
      endedAt.set(batch, [...(endedAt.get(batch) ?? []), Date.parse(succeeded.recordedAt)]);
    }
    // The order the strategy says: no robot of batch k is queued before every robot of batch k−1 has its outcome.
    expect(ROBOTS.filter((robotId) => batchOf.get(robotId) === 0)).toEqual(ROBOTS.slice(0, 2));
    for (let batch = 1; batch < view.batches.length; batch += 1) {
      expect(Math.min(...queuedAt.get(batch)!), `batch ${batch} queued after batch ${batch - 1} ended`).toBeGreaterThanOrEqual(Math.max(...endedAt.get(batch - 1)!));
    }
  });

  it('differential: a release changing one file makes each robot fetch that one; deploying it again fetches nothing', async () => {
    const changed = tree([7]);
    await release('2.0.0', changed);
    const id = await deploy('2.0.0');
    expect((await settled(id, ['completed', 'aborted', 'canceled'])).state).toBe('completed');
    await expect.poll(versions).toEqual(Object.fromEntries(ROBOTS.map((robot) => [robot, '2.0.0'])));
    const bytes = Buffer.byteLength(changed['lerobot/config/part-07.yaml']!);
    for (const robotId of ROBOTS) {
      const updates = ofDeployment(await events(robotId), id);
      expect(updates.find((event) => event.type === 'RobotUpdateStarted')?.data, robotId).toMatchObject({ fromVersion: '1.0.0', filesToFetch: 1, bytesToFetch: bytes });
      expect(updates.find((event) => event.type === 'RobotUpdateSucceeded')?.data, robotId).toMatchObject({ filesFetched: 1, bytesFetched: bytes });
    }

    const again = await deploy('2.0.0');
    expect((await settled(again, ['completed', 'aborted', 'canceled'])).state).toBe('completed');
    for (const robotId of ROBOTS) {
      const updates = ofDeployment(await events(robotId), again);
      expect(updates.find((event) => event.type === 'RobotUpdateStarted')?.data, robotId).toMatchObject({ fromVersion: '2.0.0', filesToFetch: 0, bytesToFetch: 0 });
      expect(updates.find((event) => event.type === 'RobotUpdateSucceeded')?.data, robotId).toMatchObject({ filesFetched: 0, bytesFetched: 0 });
    }
  });

  it('install failures on 25 % of the robots: the deployment aborts at the threshold, says why, rolls the updated robots back; later batches never start', async () => {
    await release('3.0.0', tree([7, 11]));
    const id = await deploy('3.0.0');
    const view = await settled(id, ['aborted', 'completed', 'canceled']);
    expect(view.state).toBe('aborted');
    expect(view.reason).toMatch(/fail/i);
    const batchOf = new Map<string, number>(view.robots.map((robot: any) => [robot.robotId, robot.batch]));
    expect(ROBOTS.filter((robotId) => batchOf.get(robotId)! <= 1)).toEqual(ROBOTS.slice(0, 7));

    // Robots of the later batches were never asked: nothing queued, nothing started.
    for (const robotId of ROBOTS.slice(7)) {
      const types = ofDeployment(await events(robotId), id).map((event) => event.type);
      expect(types, robotId).not.toContain('RobotUpdateStarted');
      expect(types, robotId).not.toContain('RobotUpdateQueued');
    }
    // The failing robots of batch 1 switched back by themselves and said why.
    for (const robotId of FAILING.slice(0, 2)) {
      const failed = ofDeployment(await events(robotId), id).find((event) => event.type === 'RobotUpdateFailed');
      expect(failed?.data, robotId).toMatchObject({ reason: 'INJECTED', runningVersion: '2.0.0', source: 'robot' });
    }

    // The rollback is a deployment of its own, back to 2.0.0, of every robot this one updated (a robot whose success
    // came in after the abort goes back in a rollback of its own).
    const updatedOf = (view: any): string[] => view.robots.filter((robot: any) => robot.state === 'succeeded' || robot.state === 'rolled-back').map((robot: any) => robot.robotId);
    const rolledBackCount = (view: any): number => (view.rollback?.deployments ?? []).reduce((sum: number, r: { robots: number }) => sum + r.robots, 0);
    await expect
      .poll(async () => {
        const view = await deployment(id);
        return view.counts.inProgress === 0 && view.rollbackDeploymentId !== null && rolledBackCount(view) === updatedOf(view).length;
      }, { message: 'every robot the deployment updated in a rollback', timeout: 60_000 })
      .toBe(true);
    const parent = await deployment(id);
    const updated = updatedOf(parent);
    expect(updated.length).toBeGreaterThanOrEqual(2); // the canary at least
    expect(updated.every((robotId: string) => ROBOTS.slice(0, 7).includes(robotId) && !FAILING.includes(robotId))).toBe(true);
    const rollbacks = parent.rollback?.deployments as { deploymentId: string; toVersion: string; robots: number }[];
    expect(rollbacks.map((r) => r.deploymentId)).toContain(parent.rollbackDeploymentId);
    expect(rollbacks.every((r) => r.toVersion === '2.0.0')).toBe(true);
    const rolledBackRobots: string[] = [];
    for (const { deploymentId: rollbackId } of rollbacks) {
      const rollback = await settled(rollbackId, ['completed', 'aborted', 'canceled']);
      expect(rollback).toMatchObject({ kind: 'rollback', parentDeploymentId: id, state: 'completed', release: { version: '2.0.0' } });
      rolledBackRobots.push(...rollback.robots.map((robot: any) => robot.robotId as string));
      // Each robot says it was rolled back, from 3.0.0 to 2.0.0.
      for (const robot of rollback.robots) {
        const rolledBack = ofDeployment(await events(robot.robotId), rollbackId).find((event) => event.type === 'RobotUpdateRolledBack');
        expect(rolledBack?.data, robot.robotId).toMatchObject({ version: '2.0.0', fromVersion: '3.0.0', kind: 'rollback' });
      }
    }
    expect(rolledBackRobots.sort()).toEqual([...updated].sort());

    // Every robot is back on (or never left) 2.0.0.
    await expect.poll(versions, { timeout: 30_000 }).toEqual(Object.fromEntries(ROBOTS.map((robot) => [robot, '2.0.0'])));
    await expect.poll(async () => (await deployment(id)).counts.rolledBack, { timeout: 30_000 }).toBe(updated.length);
  });
});

/** A robot with the real agent process: `npm run cert`, its agent.json adjusted; returns the config and its software root. */
async function agentRobot(thingName: string, adjust: (config: Record<string, any>) => Promise<void> | void = () => undefined) {
  const configFile = await issueCertificate(stateDir, thingName);
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, any>;
  config.teleoperation = { enabled: false };
  await adjust(config);
  await writeFile(configFile, JSON.stringify(config, null, 2));
  return { thingName, configFile, softwareRoot: join(config.stateDir as string, 'software') };
}

function startAgent(configFile: string, env: Record<string, string> = {}): AgentProcess {
  const agent = startAgentProcess(configFile, env);
  agents.push(agent);
  return agent;
}

async function stopAgent(agent: AgentProcess): Promise<void> {
  if (agent.child.exitCode === null && agent.child.signalCode === null) agent.child.kill('SIGTERM');
  await agent.exited;
}

/** The release's files under the robot's `current` with their content, and the version it names. */
async function runningTree(softwareRoot: string): Promise<{ version: string; files: Record<string, string> }> {
  const target = await readlink(join(softwareRoot, 'current'));
  const base = join(softwareRoot, target);
  const files: Record<string, string> = {};
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      // The installer's own marker of what the folder holds is not a release file.
      else if (!entry.name.startsWith('.heartbeat-')) files[relative(base, path)] = await readFile(path, 'utf8');
    }
  };
  await walk(base);
  return { version: target.split('/').at(-1)!, files };
}

/** Agent-process trees: a handful of files, every one different between the two versions (a mix would show). */
function agentTree(tag: string): Record<string, string> {
  return Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`lerobot/file-${i}.txt`, `${tag} file ${i}\n`]));
}

async function online(robotId: string): Promise<boolean> {
  return (await onlineRobots()).includes(robotId);
}

describe('the real agent process takes deployments', { timeout: 240_000 }, () => {
  it('a robot being driven (its LeKiwi host stand-in) defers the update, and takes it when the session ends', async () => {
    host = await startHostStandIn();
    const robot = await agentRobot('lekiwi-DEFER01', async (config) => {
      config.teleoperation = await watching(host!);
    });
    startAgent(robot.configFile);
    await expect.poll(() => online(robot.thingName), { timeout: 60_000 }).toBe(true);
    await release('drive-1', agentTree('drive-1'));
    await release('drive-2', agentTree('drive-2'));
    const strategy = { canary: 0, batchSize: 5 };
    expect((await settled(await deploy('drive-1', [robot.thingName], strategy), ['completed', 'aborted', 'canceled'])).state).toBe('completed');
    const second = await deploy('drive-2', [robot.thingName], strategy);
    expect((await settled(second, ['completed', 'aborted', 'canceled'])).state).toBe('completed');

    // Someone drives it; the cloud knows (a new deployment would hold it back), but a rollback is not held: IoT Jobs
    // keeps the job and the robot itself must wait.
    operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
    await operator.startDriving(30);
    await expect
      .poll(async () => (await getJson(cloud.endpoints, `/robots/${robot.thingName}`)).body?.teleoperation?.active, { timeout: 30_000 })
      .toBe(true);
    const { status, body } = await postJson(`/deployments/${second}/rollback`, { reason: 'e2e: deferral while driven' });
    expect(status, JSON.stringify(body)).toBeLessThan(300);
    await expect.poll(async () => (await deployment(second)).rollbackDeploymentId, { timeout: 30_000 }).toBeTruthy();
    const rollbackId = (await deployment(second)).rollbackDeploymentId as string;
    await expect
      .poll(async () => ofDeployment(await events(robot.thingName), rollbackId).map((event) => event.type), { timeout: 30_000 })
      .toContain('RobotUpdateDeferred');
    // While driven, nothing starts.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect(ofDeployment(await events(robot.thingName), rollbackId).map((event) => event.type)).toEqual(['RobotUpdateQueued', 'RobotUpdateDeferred']);
    expect((await runningTree(robot.softwareRoot)).version).toBe('drive-2');

    operator.stopDriving();
    expect((await settled(rollbackId, ['completed', 'aborted', 'canceled'], 60_000)).state).toBe('completed');
    const types = ofDeployment(await events(robot.thingName), rollbackId).map((event) => event.type);
    expect(types).toEqual(['RobotUpdateQueued', 'RobotUpdateDeferred', 'RobotUpdateStarted', 'RobotUpdateRolledBack']);
    expect(await runningTree(robot.softwareRoot)).toEqual({ version: 'drive-1', files: agentTree('drive-1') });
    operator.close();
    operator = undefined;
  });

  it('SIGKILL of the agent at each install step, then a restart: one complete version (old or new), the job in a final state', async () => {
    const robots = await Promise.all(INSTALL_STEPS.map((_, i) => agentRobot(`lekiwi-KILL00${i + 1}`)));
    let running = robots.map((robot) => startAgent(robot.configFile));
    for (const robot of robots) await expect.poll(() => online(robot.thingName), { timeout: 90_000 }).toBe(true);
    await release('kill-1', agentTree('kill-1'));
    await release('kill-2', agentTree('kill-2'));
    const ids = robots.map((robot) => robot.thingName);
    // No abort, no canary: each robot's end is its own.
    const strategy = { canary: 0, batchSize: 5, abortThresholdPercent: 100 };
    expect((await settled(await deploy('kill-1', ids, strategy), ['completed', 'aborted', 'canceled'])).state).toBe('completed');

    // Each agent again, told to SIGKILL itself right after persisting its step (a power cut there).
    await Promise.all(running.map(stopAgent));
    // Seen offline first: else the poll below may pass on the read model's view from before the stop, and the
    // deployment find them offline a moment later (the stop's disconnect projected after it).
    for (const robot of robots) await expect.poll(() => online(robot.thingName), { timeout: 90_000 }).toBe(false);
    running = robots.map((robot, i) => startAgent(robot.configFile, { HEARTBEAT_INSTALL_KILL_AFTER: INSTALL_STEPS[i]! }));
    for (const robot of robots) await expect.poll(() => online(robot.thingName), { timeout: 90_000 }).toBe(true);
    const id = await deploy('kill-2', ids, strategy);
    const ends = await Promise.all(running.map((agent) => agent.exited));
    expect(ends.map((end) => end.signal), running.map((agent) => agent.output().slice(-500)).join('\n')).toEqual(INSTALL_STEPS.map(() => 'SIGKILL'));

    // Started again (power back): each settles its install by itself.
    running = robots.map((robot) => startAgent(robot.configFile));
    const view = await settled(id, ['completed', 'aborted', 'canceled'], 180_000);
    expect(view.state).toBe('completed');
    expect(view.counts.inProgress + view.counts.pending).toBe(0);
    for (const [i, robot] of robots.entries()) {
      const step = INSTALL_STEPS[i]!;
      const state = view.robots.find((r: any) => r.robotId === robot.thingName)?.state;
      expect(['succeeded', 'failed'], `${robot.thingName} (killed after ${step})`).toContain(state);
      const ended = ofDeployment(await events(robot.thingName), id).filter((event) => event.type === 'RobotUpdateSucceeded' || event.type === 'RobotUpdateFailed');
      expect(ended, `${robot.thingName} (killed after ${step}): one end`).toHaveLength(1);
      // Exactly one complete version on disk, the one the cloud was told.
      const tree = await runningTree(robot.softwareRoot);
      expect(['kill-1', 'kill-2'], step).toContain(tree.version);
      expect(tree.files, `${robot.thingName} (killed after ${step}) runs ${tree.version} whole`).toEqual(agentTree(tree.version));
      expect(tree.version, step).toBe(state === 'succeeded' ? 'kill-2' : 'kill-1');
      await expect.poll(async () => (await versions2([robot.thingName]))[robot.thingName], { message: step }).toBe(tree.version);
    }
    await Promise.all(running.map(stopAgent));
  });
});

async function versions2(robotIds: string[]): Promise<Record<string, string | null>> {
  const out: Record<string, string | null> = {};
  for (const robotId of robotIds) out[robotId] = (await getJson(cloud.endpoints, `/robots/${robotId}`)).body?.software?.version ?? null;
  return out;
}
