import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALL_STEPS, type InstallJobDocument } from '../../schemas/deployments.js';
import type { AgentEvent } from '../../schemas/device.js';
import { FakeInstallJobs } from '../support/fake-install-jobs.js';
import { makeRelease, startObjectServer, type FixtureRelease, type ObjectServer } from '../support/release-fixture.js';

/**
 * Power loss at every install step (issue 12): the installer runs as its own process (test/support/installer-child.ts)
 * and SIGKILLs itself right after persisting the step (HEARTBEAT_INSTALL_KILL_AFTER, as agent/main.ts wires it); a
 * second run on the same folders must leave `current` on exactly one complete version — never a mix — and the job in a
 * final state, with one UpdateSucceeded or UpdateFailed reported.
 */

const CHILD = join(import.meta.dirname, '../support/installer-child.ts');
let server: ObjectServer;
const v1 = makeRelease('1.0.0', Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`lerobot/f${i}`, `one ${i}`])));
const v2 = makeRelease('2.0.0', { ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`lerobot/f${i}`, `two ${i}`])), 'new-file': 'only in two' });
const dirs: string[] = [];

beforeAll(async () => {
  server = await startObjectServer();
  server.add(v1);
  server.add(v2);
});
afterAll(async () => {
  await server.close();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

function document(release: FixtureRelease): InstallJobDocument {
  return {
    operation: 'heartbeat.install',
    deploymentId: 'dep-01JD0000000000000000000001',
    kind: 'deploy',
    release: { version: release.manifest.version, manifestSha256: release.manifestSha256, fileCount: release.manifest.files.length, totalBytes: release.manifest.totalBytes },
    policy: { healthCheckTimeoutSeconds: 5, stepTimeoutMinutes: 10 },
  };
}

function runChild(work: string, killAfter?: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env['HEARTBEAT_INSTALL_KILL_AFTER'];
    if (killAfter) env['HEARTBEAT_INSTALL_KILL_AFTER'] = killAfter;
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, work], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** The files of the version `current` names, exactly (the marker aside). */
async function currentFiles(root: string): Promise<Record<string, string>> {
  const base = join(root, 'current');
  const out: Record<string, string> = {};
  const walk = async (dir: string, prefix: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(join(dir, entry.name), rel);
      else if (rel !== '.heartbeat-release.json') out[rel] = await readFile(join(dir, entry.name), 'utf8');
    }
  };
  await walk(base, '');
  return out;
}

function filesOf(release: FixtureRelease): Record<string, string> {
  return Object.fromEntries(release.manifest.files.map((f) => [f.path, release.objects.get(f.sha256)!.toString()]));
}

describe('SIGKILL at each persisted install step, then restart', () => {
  it.each(INSTALL_STEPS)('killed right after persisting %s: one complete version, the job final, one outcome reported', async (step) => {
    const work = await mkdtemp(join(tmpdir(), `installer-kill-${step}-`));
    dirs.push(work);
    await mkdir(join(work, 'root'));
    await writeFile(join(work, 'objects.json'), JSON.stringify(Object.fromEntries([...v1.objects.keys(), ...v2.objects.keys()].map((s) => [s, `${server.url}/objects/${s}`]))));
    // The robot runs 1.0.0 first.
    new FakeInstallJobs(join(work, 'jobs.json')).queue('job-1', document(v1));
    expect((await runChild(work)).code).toBe(0);
    expect(await readlink(join(work, 'root', 'current'))).toBe('versions/1.0.0');

    new FakeInstallJobs(join(work, 'jobs.json')).queue('job-2', document(v2));
    const killed = await runChild(work, step);
    expect(killed.signal).toBe('SIGKILL');
    // Between the kill and the restart, current is one complete version.
    const target = await readlink(join(work, 'root', 'current'));
    expect(['versions/1.0.0', 'versions/2.0.0']).toContain(target);
    expect(await currentFiles(join(work, 'root'))).toEqual(target.endsWith('1.0.0') ? filesOf(v1) : filesOf(v2));

    const restarted = await runChild(work);
    expect(restarted.code, restarted.stderr).toBe(0);
    const jobs = new FakeInstallJobs(join(work, 'jobs.json'));
    expect(['SUCCEEDED', 'FAILED']).toContain(jobs.status('job-2'));
    const after = await readlink(join(work, 'root', 'current'));
    expect(await currentFiles(join(work, 'root'))).toEqual(after.endsWith('1.0.0') ? filesOf(v1) : filesOf(v2));
    // Resuming is the plan for each of these steps: the robot ends on the new version.
    expect(after).toBe('versions/2.0.0');
    expect(jobs.status('job-2')).toBe('SUCCEEDED');
    const events = (await readFile(join(work, 'events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as AgentEvent);
    const forJob2 = events.filter((e) => (e.data as { jobId?: string }).jobId === 'job-2');
    expect(forJob2.map((e) => e.type)).toEqual(['UpdateStarted', 'UpdateSucceeded']);
    await expect(readFile(join(work, 'root', 'install.json'))).rejects.toThrow(/ENOENT/);
  }, 120_000);
});
