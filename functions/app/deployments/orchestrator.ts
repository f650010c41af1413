import type { ReleaseSummary, UpdateQueuedData } from '../../../schemas/deployments.js';
import { InstallJobDocument } from '../../../schemas/deployments.js';
import {
  decide,
  evolve,
  startDeployment,
  type DeploymentEffect,
  type DeploymentHead,
  type DeploymentInput,
} from '../../domain/deployment.js';
import { planRollback } from '../../domain/deployment-plan.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import type { FleetQueries } from '../http/fleet-queries.js';
import { rollbackDeploymentId } from './deployment-ids.js';
import type { CommitOutcome, DeploymentRobot, DeploymentStore, InboxEntry, StoredDeployment } from './deployment-store.js';
import { JobsControlError, type JobSpec, type JobsControl } from './jobs-control.js';

/**
 * The orchestration's driver (issue 12): reads a deployment, lets the decider (functions/domain/deployment.ts) decide,
 * commits the decision atomically with its effects (deployment-store.ts), then carries the effects out.
 *
 * INVARIANTS
 * - record first, then act: every effect is written with the decision that made it (an `effect#` item) and deleted
 *   only once done; each invocation that commits (and each HTTP action) carries out every pending effect of the
 *   deployment, oldest first — so an effect of a step whose Lambda died after the commit is redone by the next
 *   invocation for that deployment (or the redelivered record, which finds its outcome recorded and goes straight to
 *   the effects);
 * - every effect is idempotent: CreateJob by job id (`<deploymentId>-b<batch>`), RobotUpdateQueued by event id
 *   (`queued:<jobId>:<robotId>`), CancelJob of a canceled job is a no-op, a rollback deployment's id is derived from
 *   (parent, step, version) and its creation is a no-op when it exists, its note in the parent is once-only (a marker);
 * - a conflicting commit (another invocation moved the head) is read again and decided again, never dropped;
 * - a robot's word (outcome, rollback success) is queued in the deployment's inbox once and folded by group commit
 *   (`tellDeployment`, `foldInbox`): the invocation that brought it folds until it is gone, so it is counted exactly
 *   once even if that invocation dies between the two (the redelivery finds it queued and folds it).
 */

/** What the orchestrator needs of the artifact store (functions/app/deployments/artifact-store.ts `ArtifactStore`). */
export interface ReleaseSource {
  getRelease(version: string): Promise<{ readonly summary: ReleaseSummary } | null>;
}

/** Appends RobotUpdateQueued to the robot's log (functions/app/deployments/queue-update.ts), idempotent by eventId. */
export type QueueRobotUpdate = (update: { readonly robotId: string; readonly eventId: string; readonly at: string; readonly data: UpdateQueuedData }) => Promise<void>;

export interface OrchestratorDependencies {
  readonly store: DeploymentStore;
  readonly jobs: JobsControl;
  readonly releases: ReleaseSource;
  readonly queueUpdate: QueueRobotUpdate;
  readonly now: () => Date;
  readonly log?: (level: 'info' | 'warn' | 'error', message: string, details?: Record<string, unknown>) => void;
}

export interface DeploymentDependencies extends OrchestratorDependencies {
  /** The read model: targets are resolved from it (a snapshot). */
  readonly fleet: Pick<FleetQueries, 'getRobot' | 'listRobots'>;
  readonly newDeploymentId: () => string;
}

/** How many robots' RobotUpdateQueued are appended at once when a batch opens. */
const QUEUE_CONCURRENCY = 16;
/** Commits retried on conflict before the invocation gives up (the stream then redelivers). */
const MAX_CONFLICTS = 50;
/**
 * Inbox entries one commit folds at most: each is two items of DynamoDB's 100 per transaction (the entry's delete,
 * the robot's item), plus its facts (one to three) and effects (at most one each), plus the head.
 */
const FOLD_LIMIT = 16;

export class DeploymentNotFound extends Error {
  override readonly name = 'DeploymentNotFound';
  constructor(readonly deploymentId: string) {
    super(`Deployment ${deploymentId} does not exist.`);
  }
}

/**
 * Decides `input` (an engineer's action, a rollback's note) on the deployment as stored, commits, and retries on
 * conflict. Returns the outcome and the head after it. Robots' words go through `tellDeployment` instead.
 */
export async function decideAndCommit(
  deps: Pick<OrchestratorDependencies, 'store'>,
  deploymentId: string,
  input: DeploymentInput,
  options: { readonly marker?: string } = {},
): Promise<{ readonly outcome: CommitOutcome; readonly head: DeploymentHead }> {
  for (let attempt = 0; attempt < MAX_CONFLICTS; attempt += 1) {
    const stored = await deps.store.read(deploymentId);
    if (!stored) throw new DeploymentNotFound(deploymentId);
    const decision = decide(stored.head, input);
    const head = decision.events.reduce(evolve, stored.head);
    const outcome = await deps.store.commit({
      deploymentId,
      expectedRevision: stored.revision,
      head,
      events: decision.events,
      effects: decision.effects,
      ...(options.marker ? { marker: options.marker } : {}),
    });
    if (outcome !== 'conflict') return { outcome, head: outcome === 'committed' ? head : stored.head };
    await spreadRetry(attempt);
  }
  throw new Error(`${deploymentId}: the head kept changing over ${MAX_CONFLICTS} attempts; the step comes again`);
}

/** Concurrent writers of one head: spread the retries so they do not collide again in step. */
function spreadRetry(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(250, 10 * 2 ** attempt)));
}

/**
 * A robot's word to its deployment: into the inbox (once; `robot-final` when it was counted already), then folded
 * with whatever else waits there. Returns whether this call queued it.
 */
export async function tellDeployment(deps: Pick<OrchestratorDependencies, 'store' | 'log'>, deploymentId: string, entry: InboxEntry): Promise<'queued' | 'robot-final' | 'already-queued'> {
  const queued = await deps.store.enqueue(deploymentId, entry);
  await foldInbox(deps, deploymentId, { until: entry.id });
  return queued;
}

/**
 * Folds the deployment's inbox into its head, up to FOLD_LIMIT entries per commit, until it is empty — or, with
 * `until`, until that entry is folded (by this call or another: each robot's word is seen through by the invocation
 * that brought it, so the others need not wait). Each entry is decided in turn on the head the previous left (oldest
 * first), the robot's item changed (an outcome's with the seq of its DeploymentRobotOutcome), the entry deleted, all
 * in one commit. Concurrent folders race on the head's revision; a loser reads again and mostly finds its entry
 * folded by the winner (group commit: one head write for many robots). An entry that can never apply (its robot's
 * item left the states it changes from) is dropped, logged.
 */
export async function foldInbox(deps: Pick<OrchestratorDependencies, 'store' | 'log'>, deploymentId: string, options: { readonly until?: string } = {}): Promise<number> {
  let folded = 0;
  let lastRevision: number | undefined;
  for (let conflicts = 0; conflicts < MAX_CONFLICTS; ) {
    const stored = await deps.store.read(deploymentId);
    if (!stored) throw new DeploymentNotFound(deploymentId);
    if (stored.inbox.length === 0) return folded;
    if (options.until !== undefined && !stored.inbox.some((entry) => entry.id === options.until)) return folded;
    if (lastRevision === stored.revision) {
      // Nobody else committed since our last try: one of these entries cannot apply. Drop it, then read again.
      await dropStaleEntries(deps, deploymentId, stored.inbox);
      lastRevision = undefined;
      continue;
    }
    const entries = [...stored.inbox].sort((a, b) => (a.input.at < b.input.at ? -1 : a.input.at > b.input.at ? 1 : a.id < b.id ? -1 : 1)).slice(0, FOLD_LIMIT);
    let head = stored.head;
    const events = [];
    const effects = [];
    const changes = [];
    for (const entry of entries) {
      const decision = decide(head, entry.input);
      head = decision.events.reduce(evolve, head);
      events.push(...decision.events);
      effects.push(...decision.effects);
      const outcomeSeq = decision.events.find((event) => event.type === 'DeploymentRobotOutcome')?.seq;
      const robot = outcomeSeq === undefined ? entry.robot : { ...entry.robot, set: { ...entry.robot.set, outcomeSeq } };
      changes.push({ inboxId: entry.id, robot });
    }
    const outcome = await deps.store.commit({ deploymentId, expectedRevision: stored.revision, head, events, effects, folded: changes });
    if (outcome === 'committed') {
      folded += entries.length;
      lastRevision = undefined;
      continue;
    }
    lastRevision = stored.revision;
    conflicts += 1;
    await spreadRetry(conflicts);
  }
  throw new Error(`${deploymentId}: the head kept changing over ${MAX_CONFLICTS} attempts; the inbox is folded on the next word`);
}

async function dropStaleEntries(deps: Pick<OrchestratorDependencies, 'store' | 'log'>, deploymentId: string, inbox: readonly InboxEntry[]): Promise<void> {
  for (const entry of inbox) {
    const robot = await deps.store.readRobot(deploymentId, entry.robot.robotId);
    if (robot && entry.robot.from.includes(robot.state)) continue;
    deps.log?.('error', 'an inbox entry can never be folded: its robot is no longer in a state it changes from; dropped', {
      deploymentId,
      entry: entry.id,
      robotState: robot?.state ?? null,
    });
    await deps.store.dropInbox(deploymentId, entry.id);
  }
}

/** Carries out every pending effect of the deployment, oldest first; the first that fails stops (and stays pending). */
export async function runPendingEffects(deps: OrchestratorDependencies, deploymentId: string, stored?: StoredDeployment | null): Promise<number> {
  const current = stored ?? (await deps.store.read(deploymentId));
  if (!current) return 0;
  let done = 0;
  for (const pending of current.pending) {
    await runEffect(deps, current.head, pending.effect);
    await deps.store.effectDone(deploymentId, pending.id);
    done += 1;
  }
  return done;
}

async function runEffect(deps: OrchestratorDependencies, head: DeploymentHead, effect: DeploymentEffect): Promise<void> {
  switch (effect.type) {
    case 'openBatch':
      return openBatch(deps, head, effect.batch, effect.jobId);
    case 'cancelJob':
      try {
        await deps.jobs.cancelJob(effect.jobId, { reasonCode: effect.reasonCode, comment: head.reason ?? effect.reasonCode });
      } catch (error) {
        // Never created (nothing to cancel) is as good as canceled.
        if (!(error instanceof JobsControlError && error.code === 'ResourceNotFoundException')) throw error;
      }
      return;
    case 'rollbackSucceeded': {
      const robots = (await deps.store.listRobots(head.deploymentId)).filter(
        (robot) => (robot.state === 'succeeded' || robot.state === 'rolled-back') && robot.outcomeSeq !== null && robot.outcomeSeq <= effect.asOfSeq,
      );
      return rollBack(deps, head, `bulk-${effect.asOfSeq}`, effect.at, robots);
    }
    case 'rollbackRobots':
      return rollBack(deps, head, `robot-${effect.key}`, effect.at, effect.robots);
  }
}

/** The batch's IoT job (idempotent by id), then RobotUpdateQueued in each robot's log (idempotent by event id). */
async function openBatch(deps: OrchestratorDependencies, head: DeploymentHead, batch: number, jobId: string): Promise<void> {
  const robotIds = await deps.store.readBatch(head.deploymentId, batch);
  await deps.jobs.createJob(jobSpec(head, batch, jobId, robotIds));
  const at = deps.now().toISOString();
  const results = await settleConcurrently(robotIds, QUEUE_CONCURRENCY, (robotId) =>
    deps.queueUpdate({
      robotId,
      eventId: `queued:${jobId}:${robotId}`,
      at,
      data: {
        deploymentId: head.deploymentId,
        jobId,
        version: head.release.version,
        kind: head.kind,
        batch,
        ...(head.kind === 'rollback' ? { parentDeploymentId: head.parentDeploymentId } : {}),
      },
    }),
  );
  const failed = results.filter((result) => result.status === 'rejected');
  if (failed.length > 0) {
    throw new Error(`${jobId}: ${failed.length} of ${robotIds.length} robots could not be marked queued: ${String((failed[0] as PromiseRejectedResult).reason)}`);
  }
}

/** The IoT job of a batch: the install document, and timeout, retries and abort criteria from the strategy. */
export function jobSpec(head: DeploymentHead, batch: number, jobId: string, robotIds: readonly string[]): JobSpec {
  const { strategy } = head;
  const document = InstallJobDocument.parse({
    operation: 'heartbeat.install',
    deploymentId: head.deploymentId,
    kind: head.kind,
    release: { version: head.release.version, manifestSha256: head.release.manifestSha256, fileCount: head.release.fileCount, totalBytes: head.release.totalBytes },
    policy: { healthCheckTimeoutSeconds: strategy.healthCheckTimeoutSeconds, stepTimeoutMinutes: strategy.robotTimeoutMinutes },
  });
  // Jobs' own abort criterion guards the batch between two orchestrator steps; the deployment-wide one is ours.
  const abort = head.kind === 'deploy' && strategy.abortThresholdPercent > 0 && strategy.abortThresholdPercent < 100;
  return {
    jobId,
    thingNames: robotIds,
    document,
    description: `${head.kind === 'rollback' ? 'Rollback' : 'Deployment'} ${head.deploymentId} of ${head.release.version}, batch ${batch}`,
    timeout: { inProgressTimeoutInMinutes: strategy.robotTimeoutMinutes },
    // One criterion for both kinds of failure, so a robot has at most retries + 1 attempts, as on-robot-update counts.
    ...(strategy.retries > 0 ? { retry: { criteriaList: [{ failureType: 'ALL' as const, numberOfRetries: strategy.retries }] } } : {}),
    ...(abort
      ? {
          abort: {
            criteriaList: [
              { failureType: 'ALL' as const, action: 'CANCEL' as const, thresholdPercentage: strategy.abortThresholdPercent, minNumberOfExecutedThings: strategy.abortMinRobots },
            ],
          },
        }
      : {}),
  };
}

/**
 * Rolls `robots` back: one rollback deployment per version they came from (the release must still be in the store),
 * noted in the parent once; robots whose previous version is unknown or gone are noted as skipped, once per step.
 */
async function rollBack(
  deps: OrchestratorDependencies,
  parent: DeploymentHead,
  key: string,
  at: string,
  robots: readonly Pick<DeploymentRobot, 'robotId' | 'fromVersion'>[],
): Promise<void> {
  const byVersion = new Map<string, string[]>();
  const unknown: string[] = [];
  for (const robot of robots) {
    if (robot.fromVersion === null) unknown.push(robot.robotId);
    else byVersion.set(robot.fromVersion, [...(byVersion.get(robot.fromVersion) ?? []), robot.robotId]);
  }
  const missing: string[] = [];
  const missingVersions: string[] = [];
  for (const [version, robotIds] of [...byVersion].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const release = await deps.releases.getRelease(version);
    if (!release) {
      missing.push(...robotIds);
      missingVersions.push(version);
      continue;
    }
    const id = rollbackDeploymentId(parent.deploymentId, key, version, at);
    await createRollbackDeployment(deps, parent, id, release.summary, robotIds, at);
    await decideAndCommit(deps, parent.deploymentId, { type: 'rolledBack', rollbackDeploymentId: id, toVersion: version, robots: robotIds.length, at }, { marker: `rollback#${id}` });
  }
  if (unknown.length > 0) {
    await decideAndCommit(
      deps,
      parent.deploymentId,
      { type: 'rollbackSkipped', robotIds: unknown, reason: 'the version they ran before is not known (never reported), so there is nothing to go back to', at },
      { marker: `skipped#${key}#unknown` },
    );
  }
  if (missing.length > 0) {
    await decideAndCommit(
      deps,
      parent.deploymentId,
      { type: 'rollbackSkipped', robotIds: missing, reason: `the release they ran before (${missingVersions.join(', ')}) is no longer in the artifact store`, at },
      { marker: `skipped#${key}#missing` },
    );
  }
}

async function createRollbackDeployment(
  deps: OrchestratorDependencies,
  parent: DeploymentHead,
  deploymentId: string,
  release: ReleaseSummary,
  robotIds: readonly string[],
  at: string,
): Promise<void> {
  // One job for up to 1,000 robots, no canary, no abort: the way back should be quick and never stop halfway.
  const strategy = { ...parent.strategy, canary: 0, batchSize: 1_000, abortThresholdPercent: 100 };
  delete (strategy as { batchGrowthFactor?: number }).batchGrowthFactor;
  const plan = planRollback(robotIds, parent.release.version, strategy);
  const started = startDeployment({
    deploymentId,
    kind: 'rollback',
    parentDeploymentId: parent.deploymentId,
    release: { version: release.version, manifestSha256: release.manifestSha256, fileCount: release.fileCount, totalBytes: release.totalBytes, model: release.model },
    strategy,
    targets: { robotIds: [...robotIds] },
    note: `Rollback of ${parent.deploymentId} (${parent.release.version} → ${release.version})`,
    createdBy: 'orchestrator',
    at,
    batchSizes: plan.batches.map((b) => b.length),
    canary: false,
    held: 0,
  });
  await deps.store.create({ head: started.head, events: started.events, effects: started.effects, batches: plan.batches, robots: plan.robots.map(plannedItem) });
  await runPendingEffects(deps, deploymentId);
}

export function plannedItem(robot: { readonly robotId: string; readonly batch: number; readonly fromVersion: string | null }): DeploymentRobot {
  return { ...robot, state: 'pending', reason: null, queuedAt: null, startedAt: null, finishedAt: null, outcomeSeq: null, rollbackDeploymentId: null, failedAttempts: [] };
}
