import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../agent/adapters/json-log.js';
import { Installer, type InstallerOptions, type InstallerSettings, type InstallOutcome } from '../../agent/installer.js';
import { TeleoperationSignal } from '../../agent/installer/teleoperation-gate.js';
import type { InstallJobDocument } from '../../schemas/deployments.js';
import type { AgentEvent } from '../../schemas/device.js';
import { FakeInstallJobs } from '../support/fake-install-jobs.js';
import { makeRelease, sha256, startObjectServer, type FixtureRelease, type ObjectServer } from '../support/release-fixture.js';

/**
 * The installer on real folders (issue 12, item 4): objects fetched over HTTP into the cache and verified, versions
 * staged and switched with real renames and symlinks, health checks run as real commands. IoT Jobs is the in-memory
 * FakeInstallJobs (the MQTT side is test/unit/agent/jobs-client.test.ts).
 */

const DEPLOYMENT = 'dep-01JD0000000000000000000000';
let server: ObjectServer;
const dirs: string[] = [];
const installers: Installer[] = [];

beforeAll(async () => {
  server = await startObjectServer();
});
afterAll(async () => {
  await server.close();
});
afterEach(async () => {
  for (const i of installers.splice(0)) i.stop();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function document(release: FixtureRelease, overrides: Partial<InstallJobDocument> = {}): InstallJobDocument {
  return {
    operation: 'heartbeat.install',
    deploymentId: DEPLOYMENT,
    kind: 'deploy',
    release: { version: release.manifest.version, manifestSha256: release.manifestSha256, fileCount: release.manifest.files.length, totalBytes: release.manifest.totalBytes },
    policy: { healthCheckTimeoutSeconds: 5, stepTimeoutMinutes: 10 },
    ...overrides,
  };
}

async function robot(settings: Partial<InstallerSettings> = {}, teleoperation?: TeleoperationSignal, hooks: Pick<InstallerOptions, 'afterPersist'> = {}) {
  const root = await mkdtemp(join(tmpdir(), 'installer-'));
  dirs.push(root);
  const jobs = new FakeInstallJobs();
  const events: AgentEvent[] = [];
  const outcomes: InstallOutcome[] = [];
  const installer = new Installer({
    settings: { root, restartCommands: [], restartTimeoutMs: 5_000, healthChecks: [], keepVersions: 3, ...settings },
    jobs,
    artifacts: server,
    report: async (event) => void events.push(event),
    linkUp: () => true,
    teleoperation,
    log: silentLog,
    fetchBackoff: { baseMs: 10, capMs: 50 },
    ...hooks,
  });
  installer.onOutcome((o) => outcomes.push(o));
  installers.push(installer);
  await installer.start();
  /** Queues a job and resolves with its outcome. */
  const install = async (jobId: string, doc: unknown): Promise<InstallOutcome> => {
    jobs.queue(jobId, doc);
    await expect.poll(() => outcomes.find((o) => o.jobId === jobId)).toBeDefined();
    return outcomes.find((o) => o.jobId === jobId)!;
  };
  return { root, jobs, events, installer, install };
}

/** The files under `current` (the marker aside) with their content and mode: what the robot runs. */
async function tree(root: string): Promise<Record<string, string>> {
  const base = join(root, 'current');
  const out: Record<string, string> = {};
  const walk = async (dir: string, prefix: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(join(dir, entry.name), rel);
      else if (rel !== '.heartbeat-release.json') out[rel] = `${await readFile(join(dir, entry.name), 'utf8')}@${((await stat(join(dir, entry.name))).mode & 0o777).toString(8)}`;
    }
  };
  await walk(base, '');
  return out;
}

const many = (n: number, changed?: number) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`lerobot/config/file-${String(i).padStart(2, '0')}.yaml`, `value ${i}${i === changed ? ' changed' : ''}`]));

describe('installer on real folders', () => {
  it('installs a first release: current → versions/<v>, modes set, job SUCCEEDED, Started then Succeeded reported', async () => {
    const r = await robot();
    const v1 = makeRelease('1.0.0', { 'bin/start.sh': { content: '#!/bin/sh\necho hi\n', mode: 0o755 }, 'README': 'hello' });
    server.add(v1);
    expect(await r.install('job-a', document(v1))).toMatchObject({ result: 'succeeded' });
    expect(await readlink(join(r.root, 'current'))).toBe('versions/1.0.0');
    expect(await tree(r.root)).toEqual({ 'bin/start.sh': '#!/bin/sh\necho hi\n@755', README: 'hello@644' });
    expect(r.jobs.status('job-a')).toBe('SUCCEEDED');
    expect(r.events.map((e) => e.type)).toEqual(['UpdateStarted', 'UpdateSucceeded']);
    expect(r.events[0]!.data).toMatchObject({ fromVersion: null, filesToFetch: 2 });
    // Every step's progress reached the job before its final status.
    expect(r.jobs.updates.map((u) => u.update.statusDetails?.['step'])).toEqual(['fetching', 'staged', 'switched', 'restarted', 'verified']);
    expect(r.jobs.updates.map((u) => u.update.status)).toEqual(['IN_PROGRESS', 'IN_PROGRESS', 'IN_PROGRESS', 'IN_PROGRESS', 'SUCCEEDED']);
    await expect(readFile(join(r.root, 'install.json'))).rejects.toThrow(/ENOENT/);
  });

  it('differential: a release changing one file of many fetches that one object; a repeated install fetches nothing', async () => {
    const r = await robot();
    const v1 = makeRelease('1.0.0', many(40));
    const v2 = makeRelease('2.0.0', many(40, 17));
    server.add(v1);
    server.add(v2);
    await r.install('job-1', document(v1));
    const before = server.served.length;
    expect(await r.install('job-2', document(v2))).toMatchObject({ result: 'succeeded' });
    const changed = sha256('value 17 changed');
    expect(server.served.slice(before).sort()).toEqual([changed, v2.manifestSha256].sort());
    expect(r.events.at(-1)).toMatchObject({ type: 'UpdateSucceeded', data: { fromVersion: '1.0.0', filesFetched: 1, bytesFetched: Buffer.byteLength('value 17 changed') } });
    expect((await tree(r.root))['lerobot/config/file-17.yaml']).toBe('value 17 changed@644');

    const again = server.served.length;
    expect(await r.install('job-3', document(v2))).toMatchObject({ result: 'succeeded' });
    // A rollback deployment to the previous version fetches nothing either: it was kept.
    expect(await r.install('job-4', document(v1, { kind: 'rollback' }))).toMatchObject({ result: 'succeeded' });
    expect(server.served.length).toBe(again);
    expect(await readlink(join(r.root, 'current'))).toBe('versions/1.0.0');
    expect(r.events.at(-1)).toMatchObject({ type: 'UpdateSucceeded', data: { kind: 'rollback', filesFetched: 0 } });
  });

  it('refuses an object whose bytes do not match its hash: HASH_MISMATCH naming the file, nothing switched or cached', async () => {
    const r = await robot();
    const v1 = makeRelease('1.0.0', { a: 'one' });
    const v2 = makeRelease('2.0.0', { a: 'one', 'lerobot/policy.bin': 'the real weights' });
    server.add(v1);
    server.add(v2);
    await r.install('job-1', document(v1));
    server.corrupt(sha256('the real weights'), Buffer.from('tampered'));
    expect(await r.install('job-2', document(v2))).toMatchObject({ result: 'failed', reason: 'HASH_MISMATCH' });
    const failed = r.events.at(-1)!;
    expect(failed).toMatchObject({ type: 'UpdateFailed', data: { reason: 'HASH_MISMATCH', step: 'fetching', runningVersion: '1.0.0', source: 'robot' } });
    expect((failed.data as { detail: string }).detail).toContain('lerobot/policy.bin');
    expect(r.jobs.execution('job-2')).toMatchObject({ status: 'FAILED', statusDetails: { reason: 'HASH_MISMATCH' } });
    expect(await readlink(join(r.root, 'current'))).toBe('versions/1.0.0');
    expect(await readdir(join(r.root, 'objects'))).not.toContain(sha256('the real weights'));
    await expect(lstat(join(r.root, 'versions', '2.0.0'))).rejects.toThrow(/ENOENT/);
  });

  it('a failing health check switches back to the previous version by itself and reports FAILED', async () => {
    const r = await robot({ healthChecks: [{ kind: 'command', command: 'test -f healthy' }], restartCommands: ['echo "$HEARTBEAT_VERSION" >> ../../restarts'] });
    const v1 = makeRelease('1.0.0', { healthy: 'yes' });
    const v2 = makeRelease('2.0.0', { 'not-healthy': 'no' });
    server.add(v1);
    server.add(v2);
    await r.install('job-1', document(v1));
    expect(await r.install('job-2', document(v2))).toMatchObject({ result: 'failed', reason: 'HEALTH_CHECK_FAILED' });
    expect(await readlink(join(r.root, 'current'))).toBe('versions/1.0.0');
    expect(r.events.at(-1)).toMatchObject({ type: 'UpdateFailed', data: { reason: 'HEALTH_CHECK_FAILED', step: 'restarted', runningVersion: '1.0.0' } });
    expect(r.jobs.execution('job-2')).toMatchObject({ status: 'FAILED', statusDetails: { reason: 'HEALTH_CHECK_FAILED' } });
    // The old version's services were restarted after the switch back.
    expect((await readFile(join(r.root, 'restarts'), 'utf8')).trim().split('\n')).toEqual(['1.0.0', '2.0.0', '1.0.0']);
  });

  it('an injected failure (agent.json install.injectFailure) rolls back with reason INJECTED', async () => {
    const r = await robot({ injectFailure: { reason: 'INJECTED', step: 'switched' } });
    const v1 = makeRelease('1.0.0', { x: '1' });
    server.add(v1);
    expect(await r.install('job-1', document(v1))).toMatchObject({ result: 'failed', reason: 'INJECTED' });
    await expect(lstat(join(r.root, 'current'))).rejects.toThrow(/ENOENT/);
    expect(r.events.at(-1)).toMatchObject({ type: 'UpdateFailed', data: { reason: 'INJECTED', step: 'switched', runningVersion: null } });
  });

  it('a job IoT Jobs retries after FAILED runs again as a new execution: failed, then succeeded, each reported once', async () => {
    // The restart fails the first time only (it leaves a mark for the second).
    const r = await robot({ restartCommands: ['test -f ../../tried || { touch ../../tried; false; }'] });
    const v1 = makeRelease('1.0.0', { x: 'retried' });
    server.add(v1);
    r.jobs.queue('job-r', document(v1), { retries: 1 });
    await expect.poll(() => r.jobs.status('job-r')).toBe('SUCCEEDED');
    expect(r.events.map((e) => [e.type, e.eventId])).toEqual([
      ['UpdateStarted', 'upd-job-r-e1-started'],
      ['UpdateFailed', 'upd-job-r-e1-failed'],
      ['UpdateStarted', 'upd-job-r-e2-started'],
      ['UpdateSucceeded', 'upd-job-r-e2-succeeded'],
    ]);
    expect(await readlink(join(r.root, 'current'))).toBe('versions/1.0.0');
  });

  it('a job IoT Jobs cancels with force mid-install: the robot stops at its next step, goes back, and says CANCELED', async () => {
    let jobs: FakeInstallJobs | undefined;
    // The operator force-cancels just as the new version is switched in.
    const r = await robot({ restartCommands: ['echo "$HEARTBEAT_VERSION" >> ../../restarts'] }, undefined, { afterPersist: (step) => step === 'restarted' && jobs?.forceCancel('job-2') });
    jobs = r.jobs;
    const v1 = makeRelease('1.0.0', { x: 'one' });
    const v2 = makeRelease('2.0.0', { x: 'two' });
    server.add(v1);
    server.add(v2);
    await r.install('job-1', document(v1));
    expect(await r.install('job-2', document(v2))).toMatchObject({ result: 'failed', reason: 'CANCELED' });
    expect(await readlink(join(r.root, 'current'))).toBe('versions/1.0.0');
    expect(r.events.at(-1)).toMatchObject({ type: 'UpdateFailed', data: { reason: 'CANCELED', runningVersion: '1.0.0' } });
    expect(r.jobs.status('job-2')).toBe('CANCELED');
    // 2.0.0's services were started, then 1.0.0's again.
    expect((await readFile(join(r.root, 'restarts'), 'utf8')).trim().split('\n')).toEqual(['1.0.0', '2.0.0', '1.0.0']);
  });

  it('rejects a job that is not an install job, naming the problem', async () => {
    const r = await robot();
    expect(await r.install('job-x', { operation: 'reboot' })).toMatchObject({ result: 'rejected' });
    expect(r.jobs.execution('job-x')).toMatchObject({ status: 'REJECTED', statusDetails: { reason: 'INVALID_DOCUMENT' } });
    expect(r.events).toEqual([]);
  });

  it('never starts while the robot is driven: UpdateDeferred once, then installs when the session ends', async () => {
    const driving = new TeleoperationSignal();
    driving.set(true);
    const r = await robot({}, driving);
    const v1 = makeRelease('1.0.0', { x: 'driven' });
    server.add(v1);
    r.jobs.queue('job-t', document(v1));
    await expect.poll(() => r.events.map((e) => e.type)).toEqual(['UpdateDeferred']);
    expect(r.jobs.status('job-t')).toBe('QUEUED');
    await r.jobs.start(); // a reconnection asks for the job again: still one deferral
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(r.events.map((e) => e.type)).toEqual(['UpdateDeferred']);
    driving.set(false);
    await expect.poll(() => r.jobs.status('job-t')).toBe('SUCCEEDED');
    expect(r.events.map((e) => e.type)).toEqual(['UpdateDeferred', 'UpdateStarted', 'UpdateSucceeded']);
  });

  it('keeps at most keepVersions versions, never the current or the previous one', async () => {
    const r = await robot({ keepVersions: 2 });
    for (const v of ['1.0.0', '2.0.0', '3.0.0', '4.0.0']) {
      const release = makeRelease(v, { v });
      server.add(release);
      await r.install(`job-${v.replace(/\./g, '')}`, document(release));
    }
    expect((await readdir(join(r.root, 'versions'))).sort()).toEqual(['3.0.0', '4.0.0']);
  });
});
