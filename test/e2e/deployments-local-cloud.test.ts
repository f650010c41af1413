import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReleaseManifest, sha256Hex } from '../../functions/app/deployments/release-manifest.js';
import { LocalArtifactStore } from '../../local/artifact-store.js';
import { DeploymentView } from '../../schemas/deployments.js';
import { freePorts, freshStateDir, getJson, removeStateDir, startCloudProcess, type CloudProcess } from '../support/local-cloud-process.js';

/**
 * Deployments on `npm start`'s local cloud (issue 12, cloud side): the routes reach the in-process IoT Jobs and the
 * artifact store, a deployment's batch 0 becomes a job for the simulated robots, RobotUpdateQueued lands in their
 * logs, and the orchestrator (a consumer of the event log stream, no polling loop) records them queued. The robots'
 * installs (the agent's side) and the 20-robot run are the lead's e2e.
 */
const ROBOTS = ['lekiwi-SIM001', 'lekiwi-SIM002'];
let stateDir: string;
let cloud: CloudProcess;

async function post(path: string, body: unknown): Promise<{ status: number; body: any }> {
  const token = (await readFile(cloud.endpoints.tokens.engineer, 'utf8')).trim();
  const response = await fetch(`${cloud.endpoints.apiUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function onlineRobots(): Promise<string[]> {
  const { body } = await getJson(cloud.endpoints, '/robots');
  return (body as { items: { robotId: string; status: string }[] }).items.filter((robot) => robot.status === 'online').map((robot) => robot.robotId);
}

beforeAll(async () => {
  stateDir = await freshStateDir();
  cloud = await startCloudProcess({ stateDir, ports: await freePorts(), robots: 2 });
  // A release in the local cloud's artifact store (what `npm run release` does).
  const store = await LocalArtifactStore.open({ root: join(cloud.endpoints.stateDir, 'artifacts') });
  const bytes = Buffer.from('print("hello from 3.0.0")\n');
  await store.putObject(sha256Hex(bytes), { bytes }, bytes.length);
  await store.putRelease(
    buildReleaseManifest({ version: '3.0.0', createdAt: '2026-12-01T09:00:00.000Z', files: [{ path: 'app/main.py', sha256: sha256Hex(bytes), size: bytes.length, mode: 0o644 }] }),
  );
}, 180_000);

afterAll(async () => {
  await cloud?.stop();
  if (stateDir) await removeStateDir(stateDir);
});

describe('deployments on the local cloud', { timeout: 120_000 }, () => {
  it('answers the deployment routes: an unknown release is a 404 naming it, the list starts empty', async () => {
    const missing = await post('/deployments', { release: '9.9.9', targets: { robotIds: ROBOTS } });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('RELEASE_NOT_FOUND');
    const list = await getJson(cloud.endpoints, '/deployments');
    expect(list.status).toBe(200);
    expect(list.body.items).toEqual([]);
  });

  it('opens batch 0 as a job for the canary robot and records it queued from its log, through the stream', async () => {
    await expect.poll(onlineRobots, { timeout: 60_000 }).toEqual(expect.arrayContaining(ROBOTS));
    const created = await post('/deployments', { release: '3.0.0', targets: { robotIds: ROBOTS }, strategy: { canary: 1, batchSize: 1 } });
    expect(created.status).toBe(202);
    const view = DeploymentView.parse(created.body);
    expect(view.batches.map((b) => b.state)).toEqual(['running', 'pending']);
    expect(view.batches[0]?.jobId).toBe(`${view.deploymentId}-b0`);
    const canary = view.robots.find((robot) => robot.batch === 0)!;
    // RobotUpdateQueued is in the robot's log …
    await expect
      .poll(async () => ((await getJson(cloud.endpoints, `/robots/${canary.robotId}/events?limit=50`)).body.items as { type: string }[]).map((e) => e.type), { timeout: 30_000 })
      .toContain('RobotUpdateQueued');
    // … and the orchestrator, fed by the event log stream, recorded it (queued, or further if the robot went on).
    await expect
      .poll(async () => {
        const one = DeploymentView.parse((await getJson(cloud.endpoints, `/deployments/${view.deploymentId}`)).body);
        return one.robots.find((robot) => robot.robotId === canary.robotId)?.queuedAt ?? null;
      }, { timeout: 30_000 })
      .not.toBeNull();
    const list = await getJson(cloud.endpoints, '/deployments');
    expect(list.body.items.map((d: { deploymentId: string }) => d.deploymentId)).toEqual([view.deploymentId]);
  });
});
