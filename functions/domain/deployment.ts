import {
  batchJobId,
  type DeploymentKind,
  type DeploymentRecordEvent,
  type DeploymentState,
  type DeploymentStrategy,
  type DeploymentTargets,
  type RobotOutcome,
} from '../../schemas/deployments.js';
import type { RobotModel } from '../../schemas/index.js';

/**
 * A deployment's orchestration (issue 12) as a decider: the small state every decision needs (the deployment's
 * "head": state, counts, batches; never the per-robot list, which can hold 10,000 robots), the facts of its record
 * (schemas/deployments.ts DeploymentRecordEvent), `evolve` folding them, and `decide` turning an input (a robot's
 * outcome, an engineer's pause/resume/cancel/rollback) into new facts plus the effects to carry out (create a batch's
 * IoT job, cancel a job, start rollback deployments). Pure: ids and times come in with the input.
 *
 * INVARIANTS
 * - batches open in order, one at a time: batch k+1 only once batch k is done (every robot of it has an outcome) and
 *   the deployment runs; batch 0 is the canary gate (a canary whose failures reach the threshold aborts);
 * - no batch opens once the deployment is aborted, canceled or completed; paused opens none until resumed;
 * - once at least abortMinRobots robots finished (succeeded + failed), a failure share ≥ abortThresholdPercent (with at
 *   least one failure) aborts a running or paused deploy: the open job is canceled and every robot that succeeded is
 *   rolled back — those already succeeded by one bulk effect, those succeeding later (in-progress robots finish) one
 *   by one; a rollback deployment never aborts (it is the way back);
 * - the caller guarantees each robot gives at most one outcome (the store's robot item is conditioned on it), so the
 *   counts are exact; an outcome for a batch not opened is refused (it cannot happen: robots learn of a job only
 *   once its batch opened);
 * - every event gets the next `seq`; state changes only through events (decide → evolve).
 */

export interface BatchState {
  readonly index: number;
  readonly kind: 'canary' | 'rolling';
  readonly robots: number;
  readonly state: 'pending' | 'running' | 'done' | 'canceled';
  readonly jobId: string | null;
  readonly succeeded: number;
  readonly failed: number;
  readonly canceled: number;
}

export interface ReleaseRef {
  readonly version: string;
  readonly manifestSha256: string;
  readonly fileCount: number;
  readonly totalBytes: number;
  readonly model?: RobotModel | undefined;
}

export interface DeploymentHead {
  readonly deploymentId: string;
  readonly kind: DeploymentKind;
  readonly parentDeploymentId: string | null;
  readonly release: ReleaseRef;
  readonly strategy: DeploymentStrategy;
  readonly targets: DeploymentTargets;
  readonly note: string | null;
  readonly createdBy: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly state: DeploymentState;
  readonly reason: string | null;
  readonly counts: {
    readonly targeted: number;
    readonly held: number;
    readonly succeeded: number;
    readonly failed: number;
    readonly canceled: number;
    readonly rolledBack: number;
  };
  readonly batches: readonly BatchState[];
  readonly rollback: {
    readonly requested: boolean;
    /** The seq of the fact that asked for it: robots whose success is at or before it are in the bulk rollback. */
    readonly asOfSeq: number | null;
    readonly deployments: readonly { readonly deploymentId: string; readonly toVersion: string; readonly robots: number }[];
    readonly skipped: number;
    readonly skippedReason: string | null;
  };
  /** The seq of the newest fact (0 before the first). */
  readonly lastSeq: number;
}

export type DeploymentEffect =
  /** CreateJob for the batch (idempotent by job id), then RobotUpdateQueued in each of its robots' logs. */
  | { readonly type: 'openBatch'; readonly batch: number; readonly jobId: string }
  /** CancelJob: queued executions are canceled, robots in progress finish. */
  | { readonly type: 'cancelJob'; readonly batch: number; readonly jobId: string; readonly reasonCode: string }
  /** Roll back every robot whose success is at or before `asOfSeq`, one rollback deployment per version. */
  | { readonly type: 'rollbackSucceeded'; readonly asOfSeq: number; readonly at: string }
  /** Roll back these robots (succeeded after the rollback was asked for). */
  | { readonly type: 'rollbackRobots'; readonly key: string; readonly at: string; readonly robots: readonly { readonly robotId: string; readonly fromVersion: string | null }[] };

export type DeploymentInput =
  | {
      readonly type: 'outcome';
      readonly robotId: string;
      readonly batch: number;
      readonly outcome: RobotOutcome;
      readonly reason: string | null;
      readonly fromVersion: string | null;
      readonly at: string;
    }
  | { readonly type: 'pause' | 'resume' | 'cancel' | 'rollback'; readonly by: string; readonly reason: string | null; readonly at: string }
  /** A rollback deployment was started for some of its robots (recorded by the rollback effect, once per rollback id). */
  | { readonly type: 'rolledBack'; readonly rollbackDeploymentId: string; readonly toVersion: string; readonly robots: number; readonly at: string }
  | { readonly type: 'rollbackSkipped'; readonly robotIds: readonly string[]; readonly reason: string; readonly at: string }
  /** A robot of this deployment is back on its previous version. */
  | { readonly type: 'robotRolledBack'; readonly robotId: string; readonly rollbackDeploymentId: string; readonly at: string };

export interface Decision {
  readonly events: readonly DeploymentRecordEvent[];
  readonly effects: readonly DeploymentEffect[];
}

/** An action not allowed in the deployment's state: the API answers 409 with this message. */
export class DeploymentTransitionRejected extends Error {
  override readonly name = 'DeploymentTransitionRejected';
  constructor(
    readonly action: string,
    readonly state: DeploymentState,
    message: string,
  ) {
    super(message);
  }
}

export const TERMINAL_DEPLOYMENT_STATES: readonly DeploymentState[] = ['completed', 'aborted', 'canceled'];

/** The failure reason of a robot that IoT Jobs canceled before it started: not a failure of the install. */
export function outcomeOfFailure(reason: string): RobotOutcome {
  return reason === 'CANCELED' || reason === 'REMOVED' ? 'canceled' : 'failed';
}

// ---- start ----

export interface StartInput
  extends Pick<DeploymentHead, 'deploymentId' | 'kind' | 'parentDeploymentId' | 'release' | 'strategy' | 'targets' | 'note' | 'createdBy'> {
  readonly at: string;
  /** Robots per batch (the plan's batches; none empty, at least one). */
  readonly batchSizes: readonly number[];
  readonly canary: boolean;
  readonly held: number;
}

export const EMPTY_HEAD = (input: StartInput): DeploymentHead => ({
  deploymentId: input.deploymentId,
  kind: input.kind,
  parentDeploymentId: input.parentDeploymentId,
  release: input.release,
  strategy: input.strategy,
  targets: input.targets,
  note: input.note,
  createdBy: input.createdBy,
  createdAt: input.at,
  updatedAt: input.at,
  state: 'running',
  reason: null,
  counts: { targeted: 0, held: 0, succeeded: 0, failed: 0, canceled: 0, rolledBack: 0 },
  batches: [],
  rollback: { requested: false, asOfSeq: null, deployments: [], skipped: 0, skippedReason: null },
  lastSeq: 0,
});

/** The first facts of a deployment: started, batch 0 open (its job to create). */
export function startDeployment(input: StartInput): { head: DeploymentHead } & Decision {
  if (input.batchSizes.length === 0 || input.batchSizes.some((size) => size <= 0)) throw new Error('a deployment needs at least one non-empty batch');
  const emit = emitter(EMPTY_HEAD(input), input.at);
  emit('DeploymentStarted', {
    kind: input.kind,
    parentDeploymentId: input.parentDeploymentId,
    release: input.release,
    strategy: input.strategy,
    targets: input.targets,
    note: input.note,
    createdBy: input.createdBy,
    batches: [...input.batchSizes],
    targeted: input.batchSizes.reduce((a, b) => a + b, 0) + input.held,
    held: input.held,
    canary: input.canary,
  });
  const effects: DeploymentEffect[] = [];
  openBatch(emit, effects, 0);
  return { head: emit.head(), events: emit.events(), effects };
}

// ---- evolve ----

export function evolve(head: DeploymentHead, event: DeploymentRecordEvent): DeploymentHead {
  const at = { lastSeq: event.seq, updatedAt: event.at };
  switch (event.type) {
    case 'DeploymentStarted': {
      const d = event.data;
      return {
        ...head,
        ...at,
        kind: d.kind,
        parentDeploymentId: d.parentDeploymentId,
        release: d.release,
        strategy: d.strategy,
        targets: d.targets,
        note: d.note,
        createdBy: d.createdBy,
        createdAt: event.at,
        state: 'running',
        counts: { ...head.counts, targeted: d.targeted, held: d.held },
        batches: d.batches.map((robots, index) => ({
          index,
          kind: d.canary && index === 0 ? 'canary' : 'rolling',
          robots,
          state: 'pending',
          jobId: null,
          succeeded: 0,
          failed: 0,
          canceled: 0,
        })),
      };
    }
    case 'DeploymentBatchStarted':
      return { ...head, ...at, batches: withBatch(head.batches, event.data.batch, (b) => ({ ...b, state: 'running', jobId: event.data.jobId })) };
    case 'DeploymentRobotOutcome': {
      const { outcome, batch } = event.data;
      return {
        ...head,
        ...at,
        counts: { ...head.counts, [outcome]: head.counts[outcome] + 1 },
        batches: withBatch(head.batches, batch, (b) => ({ ...b, [outcome]: b[outcome] + 1 })),
      };
    }
    case 'DeploymentBatchCompleted':
      return { ...head, ...at, batches: withBatch(head.batches, event.data.batch, (b) => ({ ...b, state: b.state === 'canceled' ? 'canceled' : 'done' })) };
    case 'DeploymentPaused':
      return { ...head, ...at, state: 'paused', reason: event.data.reason };
    case 'DeploymentResumed':
      return { ...head, ...at, state: 'running', reason: null };
    case 'DeploymentAborted':
      return {
        ...head,
        ...at,
        state: 'aborted',
        reason: event.data.reason,
        batches: head.batches.map((b) => (b.state === 'pending' ? { ...b, state: 'canceled' } : b)),
        rollback: { ...head.rollback, requested: true, asOfSeq: event.seq },
      };
    case 'DeploymentCanceled':
      return {
        ...head,
        ...at,
        state: 'canceled',
        reason: event.data.reason ?? `canceled by ${event.data.by}`,
        batches: head.batches.map((b) => (b.state === 'pending' ? { ...b, state: 'canceled' } : b)),
      };
    case 'DeploymentCompleted':
      return { ...head, ...at, state: 'completed' };
    case 'DeploymentRollbackRequested':
      return { ...head, ...at, rollback: { ...head.rollback, requested: true, asOfSeq: event.seq } };
    case 'DeploymentRolledBack':
      return { ...head, ...at, rollback: { ...head.rollback, deployments: [...head.rollback.deployments, { deploymentId: event.data.rollbackDeploymentId, toVersion: event.data.toVersion, robots: event.data.robots }] } };
    case 'DeploymentRollbackSkipped':
      return { ...head, ...at, rollback: { ...head.rollback, skipped: head.rollback.skipped + event.data.count, skippedReason: event.data.reason } };
    case 'DeploymentRobotRolledBack':
      return { ...head, ...at, counts: { ...head.counts, rolledBack: head.counts.rolledBack + 1 } };
  }
}

function withBatch(batches: readonly BatchState[], index: number, change: (batch: BatchState) => BatchState): BatchState[] {
  return batches.map((b) => (b.index === index ? change(b) : b));
}

// ---- decide ----

export function decide(head: DeploymentHead, input: DeploymentInput): Decision {
  const emit = emitter(head, input.at);
  const effects: DeploymentEffect[] = [];
  switch (input.type) {
    case 'outcome':
      decideOutcome(emit, effects, input);
      break;
    case 'pause':
      if (head.state !== 'running') throw rejected('pause', head, 'only a running deployment can be paused');
      emit('DeploymentPaused', { by: input.by, reason: input.reason });
      break;
    case 'resume':
      if (head.state !== 'paused') throw rejected('resume', head, 'only a paused deployment can be resumed');
      emit('DeploymentResumed', { by: input.by, reason: input.reason });
      advance(emit, effects);
      break;
    case 'cancel': {
      if (head.state !== 'running' && head.state !== 'paused') throw rejected('cancel', head, 'only a running or paused deployment can be canceled');
      emit('DeploymentCanceled', { by: input.by, reason: input.reason });
      cancelOpenJob(head, effects, 'DEPLOYMENT_CANCELED');
      break;
    }
    case 'rollback': {
      if (head.kind === 'rollback') throw rejected('rollback', head, 'a rollback deployment cannot itself be rolled back; deploy the version you want instead');
      if (!TERMINAL_DEPLOYMENT_STATES.includes(head.state)) throw rejected('rollback', head, 'cancel it first: only a completed, aborted or canceled deployment can be rolled back');
      if (head.rollback.requested) {
        const ids = head.rollback.deployments.map((d) => d.deploymentId);
        throw rejected('rollback', head, `it is already rolled back${ids.length > 0 ? ` (${ids.join(', ')})` : ''}`);
      }
      if (head.counts.succeeded === 0) throw rejected('rollback', head, 'no robot of it succeeded: there is nothing to roll back');
      const event = emit('DeploymentRollbackRequested', { by: input.by, reason: input.reason });
      effects.push({ type: 'rollbackSucceeded', asOfSeq: event.seq, at: input.at });
      break;
    }
    case 'rolledBack':
      emit('DeploymentRolledBack', { rollbackDeploymentId: input.rollbackDeploymentId, toVersion: input.toVersion, robots: input.robots });
      break;
    case 'rollbackSkipped':
      if (input.robotIds.length === 0) break;
      emit('DeploymentRollbackSkipped', { robotIds: input.robotIds.slice(0, 1_000), count: input.robotIds.length, reason: input.reason });
      break;
    case 'robotRolledBack':
      emit('DeploymentRobotRolledBack', { robotId: input.robotId, rollbackDeploymentId: input.rollbackDeploymentId });
      break;
  }
  return { events: emit.events(), effects };
}

function decideOutcome(emit: Emitter, effects: DeploymentEffect[], input: Extract<DeploymentInput, { type: 'outcome' }>): void {
  const before = emit.head();
  const batch = before.batches[input.batch];
  if (!batch || batch.state === 'pending') throw new Error(`${before.deploymentId}: an outcome for batch ${input.batch}, which never opened`);
  emit('DeploymentRobotOutcome', { robotId: input.robotId, batch: input.batch, outcome: input.outcome, reason: input.reason, fromVersion: input.fromVersion });
  const after = emit.head().batches[input.batch];
  if (after && after.state === 'running' && after.succeeded + after.failed + after.canceled >= after.robots) {
    emit('DeploymentBatchCompleted', { batch: after.index, succeeded: after.succeeded, failed: after.failed, canceled: after.canceled });
  }
  const head = emit.head();
  if (head.rollback.requested && input.outcome === 'succeeded') {
    // In progress when the rollback was asked for, it finished: it goes back too.
    effects.push({ type: 'rollbackRobots', key: String(head.lastSeq), at: input.at, robots: [{ robotId: input.robotId, fromVersion: input.fromVersion }] });
    return;
  }
  const abort = abortReason(head);
  if (abort && (head.state === 'running' || head.state === 'paused')) {
    const event = emit('DeploymentAborted', abort);
    cancelOpenJob(head, effects, 'DEPLOYMENT_ABORTED');
    if (head.counts.succeeded > 0) effects.push({ type: 'rollbackSucceeded', asOfSeq: event.seq, at: input.at });
    return;
  }
  advance(emit, effects);
}

/** Why the deployment must abort now, or null. */
export function abortReason(head: DeploymentHead): { reason: string; failed: number; finished: number } | null {
  if (head.kind === 'rollback') return null;
  const { abortThresholdPercent: threshold, abortMinRobots } = head.strategy;
  const canary = head.batches[0];
  if (canary?.kind === 'canary' && canary.state === 'done' && canary.failed > 0) {
    const finished = canary.succeeded + canary.failed;
    if (finished > 0 && (canary.failed / finished) * 100 >= threshold) {
      return { reason: `canary failed: ${describeShare(canary.failed, finished, threshold)}`, failed: canary.failed, finished };
    }
  }
  const { failed, succeeded } = head.counts;
  const finished = failed + succeeded;
  if (failed > 0 && finished >= abortMinRobots && (failed / finished) * 100 >= threshold) {
    return { reason: describeShare(failed, finished, threshold), failed, finished };
  }
  return null;
}

/** "3 of 8 finished robots failed (37.5 % ≥ 20 %)" */
export function describeShare(failed: number, finished: number, threshold: number): string {
  const share = Math.round((failed / finished) * 1000) / 10;
  return `${failed} of ${finished} finished robots failed (${share} % ≥ ${threshold} %)`;
}

/** Opens the next batch when the open one is done and the deployment runs; completes after the last. */
function advance(emit: Emitter, effects: DeploymentEffect[]): void {
  const head = emit.head();
  if (head.state !== 'running') return;
  if (head.batches.some((b) => b.state === 'running')) return;
  const next = head.batches.find((b) => b.state === 'pending');
  if (next) {
    openBatch(emit, effects, next.index);
    return;
  }
  emit('DeploymentCompleted', { succeeded: head.counts.succeeded, failed: head.counts.failed });
}

function openBatch(emit: Emitter, effects: DeploymentEffect[], index: number): void {
  const head = emit.head();
  const batch = head.batches[index];
  if (!batch) throw new Error(`no batch ${index}`);
  const jobId = batchJobId(head.deploymentId, index);
  emit('DeploymentBatchStarted', { batch: index, jobId, robots: batch.robots });
  effects.push({ type: 'openBatch', batch: index, jobId });
}

function cancelOpenJob(head: DeploymentHead, effects: DeploymentEffect[], reasonCode: string): void {
  for (const batch of head.batches) {
    if (batch.state === 'running' && batch.jobId) effects.push({ type: 'cancelJob', batch: batch.index, jobId: batch.jobId, reasonCode });
  }
}

function rejected(action: string, head: DeploymentHead, why: string): DeploymentTransitionRejected {
  return new DeploymentTransitionRejected(action, head.state, `Cannot ${action} deployment ${head.deploymentId}: it is ${head.state}; ${why}.`);
}

// ---- emitting: each fact gets the next seq and is folded at once, so later rules see it ----

type DataOf<T extends DeploymentRecordEvent['type']> = Extract<DeploymentRecordEvent, { type: T }>['data'];

interface Emitter {
  <T extends DeploymentRecordEvent['type']>(type: T, data: DataOf<T>): Extract<DeploymentRecordEvent, { type: T }>;
  head(): DeploymentHead;
  events(): DeploymentRecordEvent[];
}

function emitter(start: DeploymentHead, at: string): Emitter {
  let head = start;
  const events: DeploymentRecordEvent[] = [];
  const emit = (<T extends DeploymentRecordEvent['type']>(type: T, data: DataOf<T>) => {
    const event = { deploymentId: head.deploymentId, seq: head.lastSeq + 1, at, type, data } as Extract<DeploymentRecordEvent, { type: T }>;
    head = evolve(head, event);
    events.push(event);
    return event;
  }) as Emitter;
  emit.head = () => head;
  emit.events = () => events;
  return emit;
}
