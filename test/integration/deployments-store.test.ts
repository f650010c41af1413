import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDeploymentStore } from '../../functions/adapters/dynamo-deployments.js';
import { createDeployment, NoDeployableRobot, ReleaseNotFound } from '../../functions/app/deployments/create-deployment.js';
import { actOnDeployment } from '../../functions/app/deployments/deployment-actions.js';
import { newDeploymentId } from '../../functions/app/deployments/deployment-ids.js';
import { toDeploymentView } from '../../functions/app/deployments/deployment-view.js';
import { onRobotUpdate, type UpdateEvent } from '../../functions/app/deployments/on-robot-update.js';
import { foldInbox, jobSpec, type DeploymentDependencies, type QueueRobotUpdate } from '../../functions/app/deployments/orchestrator.js';
import { OPEN_ROBOT_STATES, type InboxEntry } from '../../functions/app/deployments/deployment-store.js';
import { DeploymentTransitionRejected } from '../../functions/domain/deployment.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { startLocalIotJobs, type LocalIotJobs } from '../../local/iot-jobs/jobs-service.js';
import { DeploymentView, InstallJobDocument, type ReleaseSummary } from '../../schemas/deployments.js';
import type { RobotView } from '../../schemas/index.js';
import { createTestDeploymentsTable } from '../support/dynamo.js';
import { InMemoryFleetQueries } from '../support/fleet-queries-fake.js';
import { robotHistory } from '../support/read-model-seed.js';

/**
 * The deployment record on DynamoDB Local and the local IoT Jobs (the real JobsControl of the local cloud, without a
 * broker): creation, concurrent outcomes, redelivery, the canary gate, abort with rollback, cancel, and effects redone
 * after a failure.
 */

let table: Awaited<ReturnType<typeof createTestDeploymentsTable>>;
let store: DynamoDeploymentStore;
let jobs: LocalIotJobs;

beforeAll(async () => {
  table = await createTestDeploymentsTable();
  store = new DynamoDeploymentStore({ client: table.client, tableName: table.tableName });
  jobs = await startLocalIotJobs({ publish: async () => {}, log: () => {} });
});

afterAll(async () => {
  await jobs?.stop();
  await table?.drop();
});

const RELEASES: Record<string, ReleaseSummary> = {
  '1.4.0': { version: '1.4.0', model: 'lekiwi', manifestSha256: 'b'.repeat(64), fileCount: 3, totalBytes: 300, createdAt: '2026-12-01T09:00:00.000Z' },
  '1.3.0': { version: '1.3.0', manifestSha256: 'a'.repeat(64), fileCount: 3, totalBytes: 290, createdAt: '2026-11-01T09:00:00.000Z' },
};

/** A fleet in memory: online idle robots running 1.3.0, plus the oddities `extra` adds. */
class Fleet extends InMemoryFleetQueries {
  constructor(private readonly views: Map<string, RobotView>) {
    super([]);
  }
  override async getRobot(robotId: string) {
    return this.views.get(robotId) ?? null;
  }
}

function fleetOf(ids: readonly string[], traits: Record<string, Parameters<typeof robotHistory>[1]> = {}, versions: Record<string, string | null> = {}) {
  return new Fleet(
    new Map(
      ids.map((robotId) => {
        const events = robotHistory(robotId, traits[robotId] ?? {});
        const view = toRobotView(fold(initialRobotState(robotId), events), events.length, null);
        const version = robotId in versions ? versions[robotId] : '1.3.0';
        return [robotId, { ...view, software: { version, update: null } } as RobotView];
      }),
    ),
  );
}

let queued: { robotId: string; eventId: string; jobId: string; parentDeploymentId?: string | null | undefined }[] = [];
let queueFails: (robotId: string) => boolean = () => false;
afterEach(() => {
  queued = [];
  queueFails = () => false;
});

const queueUpdate: QueueRobotUpdate = async ({ robotId, eventId, data }) => {
  if (queueFails(robotId)) throw new Error(`event log unavailable for ${robotId}`);
  if (!queued.some((q) => q.eventId === eventId)) queued.push({ robotId, eventId, jobId: data.jobId, parentDeploymentId: data.parentDeploymentId });
};

function deps(fleet: Fleet): DeploymentDependencies {
  return {
    store,
    jobs,
    releases: { getRelease: async (version) => (RELEASES[version] ? { summary: RELEASES[version] } : null) },
    queueUpdate,
    fleet,
    now: () => new Date('2026-12-01T10:00:00.000Z'),
    newDeploymentId: () => newDeploymentId(new Date()),
  };
}

const robots = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `lekiwi-${prefix}${String(i + 1).padStart(4, '0')}`);

let eventCounter = 0;
function update(type: 'succeeded' | 'failed' | 'started' | 'rolledBack', deploymentId: string, jobId: string, robotId: string, extra: { reason?: 'HEALTH_CHECK_FAILED' | 'CANCELED' } = {}): UpdateEvent {
  const base = { eventId: `e-${(eventCounter += 1)}`, robotId, at: '2026-12-01T10:05:00.000Z', version: 1 as const };
  const ref = { deploymentId, jobId, version: '1.4.0' };
  switch (type) {
    case 'started':
      return { ...base, type: 'RobotUpdateStarted', data: { ...ref, kind: 'deploy', fromVersion: '1.3.0', filesToFetch: 1, bytesToFetch: 10 } };
    case 'succeeded':
      return { ...base, type: 'RobotUpdateSucceeded', data: { ...ref, kind: 'deploy', fromVersion: '1.3.0', filesFetched: 1, bytesFetched: 10, durationMs: 1000 } };
    case 'rolledBack':
      return { ...base, type: 'RobotUpdateRolledBack', data: { ...ref, version: '1.3.0', kind: 'rollback', parentDeploymentId: null, fromVersion: '1.4.0', filesFetched: 0, bytesFetched: 0, durationMs: 500 } };
    case 'failed':
      return { ...base, type: 'RobotUpdateFailed', data: { ...ref, kind: 'deploy', reason: extra.reason ?? 'HEALTH_CHECK_FAILED', runningVersion: '1.3.0', source: 'robot' } };
  }
}

async function view(deploymentId: string): Promise<DeploymentView> {
  const stored = await store.read(deploymentId);
  if (!stored) throw new Error('no deployment');
  return DeploymentView.parse(toDeploymentView(stored.head, await store.listRobots(deploymentId)));
}

describe('creating a deployment', () => {
  it('names a release the store does not have', async () => {
    await expect(createDeployment(deps(fleetOf([])), { release: '9.9.9', targets: { robotIds: ['lekiwi-Z0001'] } }, 'eve')).rejects.toThrow(ReleaseNotFound);
    await expect(createDeployment(deps(fleetOf([])), { release: '9.9.9', targets: { robotIds: ['lekiwi-Z0001'] } }, 'eve')).rejects.toThrow(/Release 9\.9\.9 is not in the artifact store/);
  });

  it('refuses when no robot is deployable, listing the held ones', async () => {
    const fleet = fleetOf(['lekiwi-H0001', 'xle-H0002'], { 'lekiwi-H0001': { online: false } });
    const error = await createDeployment(deps(fleet), { release: '1.4.0', targets: { robotIds: ['lekiwi-H0001', 'xle-H0002', 'lekiwi-GONE'] } }, 'eve').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoDeployableRobot);
    expect((error as NoDeployableRobot).held).toEqual([
      { robotId: 'lekiwi-H0001', reason: 'offline' },
      { robotId: 'xle-H0002', reason: 'model-mismatch' },
      { robotId: 'lekiwi-GONE', reason: 'unknown' },
    ]);
  });

  it('records the plan, creates batch 0 as an IoT job with the install document, and queues its robots', async () => {
    const ids = robots('C', 7);
    const fleet = fleetOf([...ids, 'lekiwi-T0001'], { 'lekiwi-T0001': { teleoperated: true } });
    const { head, held } = await createDeployment(deps(fleet), { release: '1.4.0', targets: { robotIds: [...ids, 'lekiwi-T0001'] }, strategy: { canary: 2, batchSize: 5, retries: 1 } }, 'eve');
    expect(held).toEqual([{ robotId: 'lekiwi-T0001', reason: 'teleoperated' }]);
    const jobId = `${head.deploymentId}-b0`;
    const job = await jobs.describeJob(jobId);
    expect(job?.status).toBe('IN_PROGRESS');
    expect((await jobs.listExecutions(jobId)).map((e) => e.thingName).sort()).toEqual(ids.slice(0, 2));
    expect(queued.map((q) => q.robotId).sort()).toEqual(ids.slice(0, 2));
    const shown = await view(head.deploymentId);
    expect(shown.counts).toMatchObject({ targeted: 8, held: 1, pending: 5, inProgress: 2 });
    expect(shown.batches.map((b) => [b.kind, b.state, b.robots])).toEqual([['canary', 'running', 2], ['rolling', 'pending', 5]]);
    expect(shown.robots.find((r) => r.robotId === 'lekiwi-T0001')).toMatchObject({ state: 'held', reason: 'teleoperated', batch: null });
    expect(shown.robots.filter((r) => r.state === 'queued').length).toBe(2);
    expect((await store.readEvents(head.deploymentId)).map((e) => e.type)).toEqual(['DeploymentStarted', 'DeploymentBatchStarted']);
    // The listing has it, newest first.
    const page = await store.list({ limit: 100 });
    expect(page.items.some((d) => d.deploymentId === head.deploymentId)).toBe(true);
  });
});

describe('recording outcomes', () => {
  it('counts two concurrent outcomes of one deployment both, opens the next batch once, and ignores a redelivery', async () => {
    const ids = robots('K', 4);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 2, batchSize: 5 } }, 'eve');
    const b0 = `${head.deploymentId}-b0`;
    const first = update('succeeded', head.deploymentId, b0, ids[0]!);
    const results = await Promise.all([onRobotUpdate(d, first), onRobotUpdate(d, update('succeeded', head.deploymentId, b0, ids[1]!))]);
    expect(results.sort()).toEqual(['recorded', 'recorded']);
    let shown = await view(head.deploymentId);
    expect(shown.counts.succeeded).toBe(2);
    expect(shown.batches.map((b) => b.state)).toEqual(['done', 'running']);
    expect(queued.filter((q) => q.jobId === `${head.deploymentId}-b1`).map((q) => q.robotId).sort()).toEqual(ids.slice(2));
    expect(await jobs.describeJob(`${head.deploymentId}-b1`)).not.toBeNull();
    // Redelivered: counted once.
    expect(await onRobotUpdate(d, first)).toBe('duplicate');
    shown = await view(head.deploymentId);
    expect(shown.counts.succeeded).toBe(2);
    const outcomes = (await store.readEvents(head.deploymentId)).filter((e) => e.type === 'DeploymentRobotOutcome');
    expect(outcomes.length).toBe(2);
  });

  it('counts twenty outcomes arriving at once, each once, and completes', async () => {
    const ids = robots('M', 20);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 0, batchSize: 20 } }, 'eve');
    const b0 = `${head.deploymentId}-b0`;
    const events = ids.map((id) => update('succeeded', head.deploymentId, b0, id));
    await Promise.all([...events, ...events.slice(0, 5)].map((e) => onRobotUpdate(d, e)));
    const shown = await view(head.deploymentId);
    expect(shown.state).toBe('completed');
    expect(shown.counts).toMatchObject({ succeeded: 20, inProgress: 0, pending: 0 });
    expect(shown.robots.every((r) => r.state === 'succeeded')).toBe(true);
    expect((await store.readEvents(head.deploymentId)).filter((e) => e.type === 'DeploymentRobotOutcome')).toHaveLength(20);
  }, 180_000);

  it('with retries, a failed attempt IoT Jobs retries is not the outcome: queued again, then counted by its last attempt', async () => {
    const ids = robots('R', 2);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 0, batchSize: 2, retries: 1 } }, 'eve');
    const b0 = `${head.deploymentId}-b0`;
    // One criterion for any failure: at most retries + 1 attempts, as the orchestrator counts them.
    expect(jobSpec(head, 0, b0, ids).retry).toEqual({ criteriaList: [{ failureType: 'ALL', numberOfRetries: 1 }] });
    const [a, b] = ids as [string, string];
    // a: fails, is retried, succeeds. b: fails twice (its last attempt) — and a redelivery of its first failure changes nothing.
    const aFirst = update('failed', head.deploymentId, b0, a);
    expect(await onRobotUpdate(d, update('started', head.deploymentId, b0, a))).toBe('progress');
    expect(await onRobotUpdate(d, aFirst)).toBe('retrying');
    expect(await onRobotUpdate(d, aFirst)).toBe('duplicate');
    let shown = await view(head.deploymentId);
    expect(shown.robots.find((r) => r.robotId === a)).toMatchObject({ state: 'queued', reason: 'attempt 1 of 2 failed (HEALTH_CHECK_FAILED); IoT Jobs tries again' });
    expect(shown.counts).toMatchObject({ failed: 0, inProgress: 2 });
    expect(await onRobotUpdate(d, update('started', head.deploymentId, b0, a))).toBe('progress');
    expect(await onRobotUpdate(d, update('succeeded', head.deploymentId, b0, a))).toBe('recorded');

    const bFirst = update('failed', head.deploymentId, b0, b);
    expect(await onRobotUpdate(d, bFirst)).toBe('retrying');
    expect(await onRobotUpdate(d, update('failed', head.deploymentId, b0, b))).toBe('recorded');
    expect(await onRobotUpdate(d, bFirst)).toBe('duplicate');
    shown = await view(head.deploymentId);
    expect(shown.state).toBe('completed');
    expect(shown.counts).toMatchObject({ succeeded: 1, failed: 1, inProgress: 0 });
    expect(shown.robots.find((r) => r.robotId === b)).toMatchObject({ state: 'failed', reason: 'HEALTH_CHECK_FAILED (attempt 2 of 2)' });
    expect((await store.readEvents(head.deploymentId)).filter((e) => e.type === 'DeploymentRobotOutcome')).toHaveLength(2);
  });

  it('records progress (installing) and keeps timing', async () => {
    const ids = robots('P', 1);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 0 } }, 'eve');
    expect(await onRobotUpdate(d, update('started', head.deploymentId, `${head.deploymentId}-b0`, ids[0]!))).toBe('progress');
    const shown = await view(head.deploymentId);
    expect(shown.robots[0]).toMatchObject({ state: 'installing', startedAt: '2026-12-01T10:05:00.000Z' });
    expect(shown.counts.inProgress).toBe(1);
  });
});

describe('abort, rollback, cancel', () => {
  it('aborts at the threshold: cancels the open job, rolls back the robots that succeeded, also one that succeeds later', async () => {
    const ids = robots('A', 8);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 2, batchSize: 6, abortMinRobots: 4, abortThresholdPercent: 20 } }, 'eve');
    const id = head.deploymentId;
    for (const robot of ids.slice(0, 2)) await onRobotUpdate(d, update('succeeded', id, `${id}-b0`, robot));
    await onRobotUpdate(d, update('succeeded', id, `${id}-b1`, ids[2]!));
    await onRobotUpdate(d, update('failed', id, `${id}-b1`, ids[3]!));
    let shown = await view(id);
    expect(shown.state).toBe('aborted');
    expect(shown.reason).toBe('1 of 4 finished robots failed (25 % ≥ 20 %)');
    expect((await jobs.describeJob(`${id}-b1`))?.status).toBe('CANCELED');
    expect(shown.rollback?.deployments).toHaveLength(1);
    const rollbackId = shown.rollback!.deployments[0]!.deploymentId;
    expect(shown.rollbackDeploymentId).toBe(rollbackId);
    let rollback = await view(rollbackId);
    expect(rollback).toMatchObject({ kind: 'rollback', parentDeploymentId: id, release: { version: '1.3.0' } });
    expect(rollback.robots.map((r) => r.robotId).sort()).toEqual(ids.slice(0, 3));
    const rollbackJob = await jobs.describeJob(`${rollbackId}-b0`);
    expect(rollbackJob?.status).toBe('IN_PROGRESS');
    // Each robot's log is told which deployment the rollback undoes (its RobotUpdateRolledBack will name it).
    expect(queued.filter((q) => q.jobId === `${rollbackId}-b0`).map((q) => q.parentDeploymentId)).toEqual([id, id, id]);
    expect(queued.filter((q) => q.jobId === `${id}-b0`).every((q) => q.parentDeploymentId === undefined)).toBe(true);
    // A robot in progress finishes after the abort: it is rolled back too, by a rollback of its own.
    await onRobotUpdate(d, update('succeeded', id, `${id}-b1`, ids[4]!));
    shown = await view(id);
    expect(shown.rollback?.deployments.map((r) => r.robots)).toEqual([3, 1]);
    // The rollback's robots come back: the parent shows them rolled back.
    for (const robot of ids.slice(0, 3)) await onRobotUpdate(d, { ...update('rolledBack', rollbackId, `${rollbackId}-b0`, robot) });
    rollback = await view(rollbackId);
    expect(rollback.state).toBe('completed');
    shown = await view(id);
    expect(shown.counts).toMatchObject({ rolledBack: 3, succeeded: 1, failed: 1 });
    expect(shown.robots.filter((r) => r.state === 'rolled-back').map((r) => r.robotId).sort()).toEqual(ids.slice(0, 3));
    // A rollback deployment cannot be rolled back; an aborted deployment is rolled back already.
    await expect(actOnDeployment(d, rollbackId, 'rollback', 'eve', null)).rejects.toThrow(DeploymentTransitionRejected);
    await expect(actOnDeployment(d, id, 'rollback', 'eve', null)).rejects.toThrow(/already rolled back/);
  });

  it('says which robots cannot be rolled back (version before unknown)', async () => {
    const ids = robots('U', 2);
    const d = deps(fleetOf(ids, {}, { [ids[1]!]: null }));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 0 } }, 'eve');
    const id = head.deploymentId;
    await onRobotUpdate(d, update('succeeded', id, `${id}-b0`, ids[0]!));
    await onRobotUpdate(d, { ...update('succeeded', id, `${id}-b0`, ids[1]!), data: { ...update('succeeded', id, `${id}-b0`, ids[1]!).data, fromVersion: null } } as UpdateEvent);
    expect((await view(id)).state).toBe('completed');
    await actOnDeployment(d, id, 'rollback', 'eve', 'bad release');
    const shown = await view(id);
    expect(shown.rollback).toMatchObject({ requested: true, skipped: 1 });
    expect(shown.rollback?.skippedReason).toMatch(/not known/);
    expect(shown.rollback?.deployments).toEqual([expect.objectContaining({ toVersion: '1.3.0', robots: 1 })]);
    const events = (await store.readEvents(id)).map((e) => e.type);
    expect(events).toContain('DeploymentRollbackSkipped');
  });

  it('pauses (no batch opens), resumes (it does), cancels (the job is canceled, nothing more opens)', async () => {
    const ids = robots('Q', 5);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 1, batchSize: 2 } }, 'eve');
    const id = head.deploymentId;
    await actOnDeployment(d, id, 'pause', 'eve', 'watching the canary');
    await onRobotUpdate(d, update('succeeded', id, `${id}-b0`, ids[0]!));
    expect(await jobs.describeJob(`${id}-b1`)).toBeNull();
    await expect(actOnDeployment(d, id, 'pause', 'eve', null)).rejects.toThrow(/it is paused/);
    await actOnDeployment(d, id, 'resume', 'eve', null);
    expect(await jobs.describeJob(`${id}-b1`)).not.toBeNull();
    await actOnDeployment(d, id, 'cancel', 'eve', 'wrong release');
    expect((await jobs.describeJob(`${id}-b1`))?.status).toBe('CANCELED');
    // Jobs ends the queued executions as canceled: not failures.
    await onRobotUpdate(d, update('failed', id, `${id}-b1`, ids[1]!, { reason: 'CANCELED' }));
    const shown = await view(id);
    expect(shown.state).toBe('canceled');
    expect(shown.counts).toMatchObject({ succeeded: 1, failed: 0, canceled: 3, inProgress: 1 });
    expect(await jobs.describeJob(`${id}-b2`)).toBeNull();
    await expect(actOnDeployment(d, id, 'resume', 'eve', null)).rejects.toThrow(/Cannot resume deployment .*: it is canceled/);
  });

  it('redoes the effects of a recorded step that failed halfway, on the next invocation', async () => {
    const ids = robots('R', 3);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 1, batchSize: 2 } }, 'eve');
    const id = head.deploymentId;
    queueFails = (robotId) => robotId === ids[2];
    const success = update('succeeded', id, `${id}-b0`, ids[0]!);
    await expect(onRobotUpdate(d, success)).rejects.toThrow(/could not be marked queued/);
    // Recorded, batch 1 open, its job created; one robot's queued mark is missing and the effect is still pending.
    expect((await store.read(id))?.pending.map((p) => p.effect.type)).toEqual(['openBatch']);
    expect(queued.filter((q) => q.jobId === `${id}-b1`).map((q) => q.robotId)).toEqual([ids[1]]);
    queueFails = () => false;
    // The stream redelivers the record: the outcome is known, the pending effect is carried out.
    expect(await onRobotUpdate(d, success)).toBe('duplicate');
    expect(queued.filter((q) => q.jobId === `${id}-b1`).map((q) => q.robotId).sort()).toEqual(ids.slice(1));
    expect((await store.read(id))?.pending).toEqual([]);
    // The job the batch got carries the install document.
    const job = jobs.describeJob(`${id}-b1`);
    expect(await job).not.toBeNull();
    expect(InstallJobDocument.safeParse({ operation: 'heartbeat.install', deploymentId: id, kind: 'deploy', release: { version: '1.4.0', manifestSha256: 'b'.repeat(64), fileCount: 3, totalBytes: 300 }, policy: { healthCheckTimeoutSeconds: 60, stepTimeoutMinutes: 30 } }).success).toBe(true);
  });
});

describe('the inbox (group commit of robots’ words)', () => {
  const outcomeEntry = (deploymentId: string, robotId: string, outcome: 'succeeded' | 'failed', batch = 0): InboxEntry => ({
    id: `outcome#${robotId}`,
    input: { type: 'outcome', robotId, batch, outcome, reason: outcome === 'failed' ? 'HEALTH_CHECK_FAILED' : null, fromVersion: '1.3.0', at: '2026-12-01T10:05:00.000Z' },
    robot: { robotId, from: OPEN_ROBOT_STATES, set: { state: outcome, finishedAt: '2026-12-01T10:05:00.000Z' } },
  });

  it('folds many waiting outcomes in one head write each FOLD_LIMIT, counting each once, with the seq of its fact on its item', async () => {
    const ids = robots('G', 20);
    const d = deps(fleetOf(ids));
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 0, batchSize: 20 } }, 'eve');
    const before = (await store.read(head.deploymentId))!.revision;
    // Twenty robots' words land before anyone folds (as when a batch finishes at once).
    for (const id of ids) expect(await store.enqueue(head.deploymentId, outcomeEntry(head.deploymentId, id, 'succeeded'))).toBe('queued');
    expect(await store.enqueue(head.deploymentId, outcomeEntry(head.deploymentId, ids[0]!, 'succeeded'))).toBe('already-queued');
    expect(await foldInbox(d, head.deploymentId)).toBe(20);
    const after = await store.read(head.deploymentId);
    // Two commits (16 + 4), not twenty.
    expect(after!.revision - before).toBe(2);
    expect(after!.inbox).toEqual([]);
    const shown = await view(head.deploymentId);
    expect(shown.state).toBe('completed');
    expect(shown.counts).toMatchObject({ succeeded: 20, inProgress: 0 });
    const outcomes = (await store.readEvents(head.deploymentId)).filter((e) => e.type === 'DeploymentRobotOutcome');
    expect(outcomes).toHaveLength(20);
    const seqs = new Map(outcomes.map((e) => [(e.data as { robotId: string }).robotId, e.seq]));
    for (const robot of await store.listRobots(head.deploymentId)) expect(robot.outcomeSeq).toBe(seqs.get(robot.robotId));
    // Counted: the same word is refused at the door now.
    expect(await store.enqueue(head.deploymentId, outcomeEntry(head.deploymentId, ids[3]!, 'failed'))).toBe('robot-final');
  });

  it('drops (and logs) an entry that can never apply, and folds the others', async () => {
    const ids = robots('S', 3);
    const logged: string[] = [];
    const d = { ...deps(fleetOf(ids)), log: (_level: string, message: string) => void logged.push(message) };
    const { head } = await createDeployment(d, { release: '1.4.0', targets: { robotIds: ids }, strategy: { canary: 0, batchSize: 3 } }, 'eve');
    const stale: InboxEntry = { ...outcomeEntry(head.deploymentId, ids[0]!, 'succeeded'), robot: { robotId: ids[0]!, from: ['installing'], set: { state: 'succeeded' } } };
    await store.progress(head.deploymentId, ids[0]!, { state: 'installing' }, ['pending', 'queued']);
    expect(await store.enqueue(head.deploymentId, stale)).toBe('queued');
    // The robot's item leaves the state the entry changes it from (nothing in the orchestrator does this; a bug might).
    await store.progress(head.deploymentId, ids[0]!, { state: 'deferred' }, ['installing']);
    for (const id of ids.slice(1)) await store.enqueue(head.deploymentId, outcomeEntry(head.deploymentId, id, 'succeeded'));
    expect(await foldInbox(d, head.deploymentId)).toBe(2);
    expect(logged).toContain('an inbox entry can never be folded: its robot is no longer in a state it changes from; dropped');
    expect((await store.read(head.deploymentId))!.inbox).toEqual([]);
    expect((await view(head.deploymentId)).counts).toMatchObject({ succeeded: 2 });
  });
});
