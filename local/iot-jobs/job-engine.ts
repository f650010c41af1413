import type {
  JobDescription,
  JobExecutionStatus,
  JobExecutionSummary,
  JobSpec,
  JobStatus,
} from '../../functions/app/deployments/jobs-control.js';
import { JobsControlError, TERMINAL_EXECUTION_STATUSES } from '../../functions/app/deployments/jobs-control.js';

/**
 * The local IoT Jobs service's state machine: jobs, their executions, and every promise AWS IoT Jobs documents for
 * them, as pure transitions of a plain state object given the time (`now`, in ms) — no timers, no I/O. The driver
 * (jobs-service.ts) calls it, persists the state, and carries out the effects it returns (notifications, events).
 *
 * Time is counted in "minutes" of `minuteMs` ms (60,000 by default; tests shrink it), so rollout rates, the job's
 * in-progress timeout and a device's step timeout keep their proportions at any speed.
 *
 * INVARIANTS
 * - rollout: an execution is visible to its device (`notifiedAt` set) only once rolled out; in each minute window
 *   since the job's creation at most `rate` executions are rolled out, in target order; the rate is
 *   `maximumPerMinute` (1000 when absent, AWS's default), or for an exponential rollout `baseRatePerMinute`, multiplied
 *   by `incrementFactor` (capped by maximumPerMinute) at the start of a minute when `numberOfNotifiedThings` were
 *   notified / `numberOfSucceededThings` succeeded since the last increase. A job that is not IN_PROGRESS rolls out nothing more;
 * - versionNumber starts at 1 and grows by one on every change of an execution's status or details; executionNumber
 *   is unique per state (a retry gets a new one);
 * - a device may move its execution QUEUED|IN_PROGRESS → IN_PROGRESS|SUCCEEDED|FAILED|REJECTED only; an update with
 *   a stale expectedVersion changes nothing (VersionMismatch); an execution in a terminal state never changes again
 *   (TerminalStateReached) — except that a retry criterion re-queues a FAILED/TIMED_OUT one as a new attempt
 *   (retryAttempt + 1, new executionNumber) before it counts as terminal;
 * - an IN_PROGRESS execution goes TIMED_OUT once `inProgressTimeoutInMinutes` passed since it started, or its step
 *   timer (stepTimeoutInMinutes of the device's last start/update) ran out, whichever comes first;
 * - abort: after each final failure or success, each criterion is checked once at least `minNumberOfExecutedThings`
 *   executions ended SUCCEEDED/FAILED/REJECTED/TIMED_OUT; when failures of its type are ≥ thresholdPercentage % of
 *   those, the job goes CANCELED with reasonCode AUTO_CANCEL: its QUEUED executions (rolled out or not) go CANCELED,
 *   IN_PROGRESS ones go on to their end;
 * - a job IN_PROGRESS whose executions are all terminal becomes COMPLETED (event `completed`), exactly once; a
 *   CANCELED job never becomes COMPLETED;
 * - every transition to a terminal status emits exactly one execution event; every job status change one job event.
 */

export type ExecutionEventOperation = 'succeeded' | 'failed' | 'rejected' | 'canceled' | 'timed_out' | 'removed';

export interface ExecutionRecord {
  readonly jobId: string;
  readonly thingName: string;
  status: JobExecutionStatus;
  statusDetails: Record<string, string>;
  queuedAt: number;
  startedAt?: number;
  lastUpdatedAt: number;
  versionNumber: number;
  executionNumber: number;
  retryAttempt: number;
  /** When the rollout made it visible to the device; absent: not yet rolled out. */
  notifiedAt?: number;
  /** Set when it went IN_PROGRESS under a job with inProgressTimeoutInMinutes. */
  inProgressDeadline?: number;
  /** The device's step timer (stepTimeoutInMinutes of its last start-next/update). */
  stepDeadline?: number;
  /** Canceled while IN_PROGRESS (force). */
  forceCanceled?: boolean;
}

export interface JobRecord {
  readonly spec: JobSpec;
  status: JobStatus;
  reasonCode?: string;
  comment?: string;
  forceCanceled?: boolean;
  readonly createdAt: number;
  lastUpdatedAt: number;
  completedAt?: number;
  rollout: { rate: number; windowIndex: number; notifiedInWindow: number; notifiedSinceIncrease: number; succeededSinceIncrease: number };
  /** In target order. */
  readonly executions: ExecutionRecord[];
}

export interface JobsState {
  readonly version: 1;
  nextExecutionNumber: number;
  readonly jobs: Record<string, JobRecord>;
}

export type JobsEffect =
  | { readonly kind: 'executionEvent'; readonly operation: ExecutionEventOperation; readonly execution: ExecutionRecord }
  | { readonly kind: 'jobEvent'; readonly operation: 'completed' | 'canceled'; readonly job: JobRecord }
  /** The thing's list of pending executions, or its next one, may have changed: the driver sends notify/notify-next. */
  | { readonly kind: 'thingChanged'; readonly thingName: string };

/** A device request the service refuses, with the Jobs MQTT API's error code (ErrorResponse.code). */
export class DeviceRequestRejected extends Error {
  override readonly name = 'DeviceRequestRejected';
  constructor(
    readonly code: 'InvalidRequest' | 'InvalidStateTransition' | 'ResourceNotFound' | 'VersionMismatch' | 'TerminalStateReached',
    message: string,
    readonly execution?: ExecutionRecord,
  ) {
    super(message);
  }
}

export interface DeviceUpdate {
  readonly status: string;
  readonly statusDetails?: Record<string, string>;
  readonly expectedVersion?: number;
  readonly executionNumber?: number;
  readonly stepTimeoutInMinutes?: number;
}

const DEFAULT_MAXIMUM_PER_MINUTE = 1000;
const DEVICE_STATUSES: readonly string[] = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'];
const EXECUTED: readonly JobExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'REJECTED', 'TIMED_OUT'];

export const isTerminal = (status: JobExecutionStatus): boolean => TERMINAL_EXECUTION_STATUSES.includes(status);
const isPending = (execution: ExecutionRecord): boolean =>
  execution.notifiedAt !== undefined && (execution.status === 'QUEUED' || execution.status === 'IN_PROGRESS');

export function emptyJobsState(): JobsState {
  return { version: 1, nextExecutionNumber: 1, jobs: {} };
}

export class JobEngine {
  constructor(
    readonly state: JobsState,
    private readonly minuteMs: number,
  ) {}

  // ---- control plane -------------------------------------------------------------------------------------------

  /** A new job (already validated): its executions QUEUED, the first minute's worth rolled out. */
  createJob(spec: JobSpec, now: number): { created: boolean; effects: JobsEffect[] } {
    if (this.state.jobs[spec.jobId]) return { created: false, effects: [] };
    const exponential = spec.rollout?.exponentialRate;
    const job: JobRecord = {
      spec,
      status: 'IN_PROGRESS',
      createdAt: now,
      lastUpdatedAt: now,
      rollout: {
        rate: Math.min(exponential?.baseRatePerMinute ?? Infinity, spec.rollout?.maximumPerMinute ?? DEFAULT_MAXIMUM_PER_MINUTE),
        windowIndex: 0,
        notifiedInWindow: 0,
        notifiedSinceIncrease: 0,
        succeededSinceIncrease: 0,
      },
      executions: spec.thingNames.map((thingName) => ({
        jobId: spec.jobId,
        thingName,
        status: 'QUEUED',
        statusDetails: {},
        queuedAt: now,
        lastUpdatedAt: now,
        versionNumber: 1,
        executionNumber: this.state.nextExecutionNumber++,
        retryAttempt: 0,
      })),
    };
    this.state.jobs[spec.jobId] = job;
    const effects: JobsEffect[] = [];
    this.rollOut(job, now, effects);
    return { created: true, effects };
  }

  describeJob(jobId: string): JobDescription | null {
    const job = this.state.jobs[jobId];
    if (!job) return null;
    const count = (status: JobExecutionStatus) => job.executions.filter((execution) => execution.status === status).length;
    return {
      jobId,
      status: job.status,
      ...(job.reasonCode !== undefined ? { reasonCode: job.reasonCode } : {}),
      ...(job.comment !== undefined ? { comment: job.comment } : {}),
      processDetails: {
        numberOfQueuedThings: count('QUEUED'),
        numberOfInProgressThings: count('IN_PROGRESS'),
        numberOfSucceededThings: count('SUCCEEDED'),
        numberOfFailedThings: count('FAILED'),
        numberOfTimedOutThings: count('TIMED_OUT'),
        numberOfRejectedThings: count('REJECTED'),
        numberOfCanceledThings: count('CANCELED'),
        numberOfRemovedThings: count('REMOVED'),
      },
    };
  }

  listExecutions(jobId: string): JobExecutionSummary[] {
    return this.requireJob(jobId).executions.map((execution) => ({
      thingName: execution.thingName,
      status: execution.status,
      versionNumber: execution.versionNumber,
      retryAttempt: execution.retryAttempt,
      ...(Object.keys(execution.statusDetails).length > 0 ? { statusDetails: { ...execution.statusDetails } } : {}),
    }));
  }

  /** CancelJob: QUEUED executions go CANCELED, with `force` IN_PROGRESS ones too. A completed job is left as it is. */
  cancelJob(jobId: string, options: { force?: boolean; reasonCode?: string; comment?: string }, now: number): JobsEffect[] {
    const job = this.requireJob(jobId);
    const effects: JobsEffect[] = [];
    if (job.status === 'COMPLETED') return effects;
    const wasCanceled = job.status === 'CANCELED';
    if (wasCanceled && !options.force) return effects;
    if (!wasCanceled) {
      job.status = 'CANCELED';
      if (options.reasonCode !== undefined) job.reasonCode = options.reasonCode;
      if (options.comment !== undefined) job.comment = options.comment;
    }
    if (options.force) job.forceCanceled = true;
    job.lastUpdatedAt = now;
    for (const execution of job.executions) {
      if (execution.status === 'QUEUED' || (options.force && execution.status === 'IN_PROGRESS')) this.cancel(execution, now, effects);
    }
    if (!wasCanceled) effects.push({ kind: 'jobEvent', operation: 'canceled', job });
    return effects;
  }

  /** CancelJobExecution: a QUEUED execution, or with `force` an IN_PROGRESS one; a CANCELED one is left as it is. */
  cancelExecution(jobId: string, thingName: string, options: { force?: boolean }, now: number): JobsEffect[] {
    const execution = this.requireExecution(jobId, thingName);
    const effects: JobsEffect[] = [];
    if (execution.status === 'CANCELED') return effects;
    if (isTerminal(execution.status)) {
      throw new JobsControlError('InvalidStateTransitionException', `The execution of job ${jobId} on ${thingName} is ${execution.status}: it cannot be canceled`);
    }
    if (execution.status === 'IN_PROGRESS' && !options.force) {
      throw new JobsControlError('InvalidStateTransitionException', `The execution of job ${jobId} on ${thingName} is IN_PROGRESS: cancel it with force`);
    }
    this.cancel(execution, now, effects);
    this.settle(this.requireJob(jobId), now, effects);
    return effects;
  }

  // ---- time ----------------------------------------------------------------------------------------------------

  /** What is due at `now`: rollouts of a new minute, in-progress and step timeouts. */
  tick(now: number): JobsEffect[] {
    const effects: JobsEffect[] = [];
    for (const job of Object.values(this.state.jobs)) {
      for (const execution of job.executions) {
        if (execution.status !== 'IN_PROGRESS') continue;
        const deadline = Math.min(execution.inProgressDeadline ?? Infinity, execution.stepDeadline ?? Infinity);
        if (deadline <= now) this.finish(job, execution, 'TIMED_OUT', now, effects);
      }
      this.rollOut(job, now, effects);
    }
    return effects;
  }

  /** The next time `tick` has something to do (undefined: nothing until a request comes). */
  nextWakeAt(now: number): number | undefined {
    let wake = Infinity;
    for (const job of Object.values(this.state.jobs)) {
      for (const execution of job.executions) {
        if (execution.status !== 'IN_PROGRESS') continue;
        wake = Math.min(wake, execution.inProgressDeadline ?? Infinity, execution.stepDeadline ?? Infinity);
      }
      if (job.status === 'IN_PROGRESS' && job.executions.some((execution) => execution.notifiedAt === undefined && execution.status === 'QUEUED')) {
        wake = Math.min(wake, job.createdAt + (this.windowIndex(job, now) + 1) * this.minuteMs);
      }
    }
    return Number.isFinite(wake) ? wake : undefined;
  }

  // ---- device side (the Jobs MQTT API) ---------------------------------------------------------------------------

  /** The thing's pending executions (rolled out, QUEUED or IN_PROGRESS): IN_PROGRESS first, then by queuedAt. */
  pendingFor(thingName: string): ExecutionRecord[] {
    const pending = Object.values(this.state.jobs).flatMap((job) => job.executions.filter((execution) => execution.thingName === thingName && isPending(execution)));
    const rank = (execution: ExecutionRecord) => (execution.status === 'IN_PROGRESS' ? 0 : 1);
    return pending.sort((a, b) => rank(a) - rank(b) || a.queuedAt - b.queuedAt || a.executionNumber - b.executionNumber);
  }

  nextFor(thingName: string): ExecutionRecord | undefined {
    return this.pendingFor(thingName)[0];
  }

  /**
   * DescribeJobExecution: `$next` is the next pending execution (undefined when there is none: an accepted reply
   * without one, as AWS answers). Executions not rolled out yet do not exist for the device (ResourceNotFound).
   */
  describeExecution(thingName: string, jobId: string, executionNumber?: number): ExecutionRecord | undefined {
    if (jobId === '$next') return this.nextFor(thingName);
    const execution = this.visibleExecution(thingName, jobId);
    if (!execution || (executionNumber !== undefined && execution.executionNumber !== executionNumber)) {
      throw new DeviceRequestRejected('ResourceNotFound', `No job execution of ${jobId} for ${thingName}`);
    }
    return execution;
  }

  /** StartNextPendingJobExecution: the next pending execution, QUEUED → IN_PROGRESS; undefined when there is none. */
  startNext(thingName: string, request: { statusDetails?: Record<string, string>; stepTimeoutInMinutes?: number }, now: number): { execution?: ExecutionRecord; effects: JobsEffect[] } {
    const effects: JobsEffect[] = [];
    const execution = this.nextFor(thingName);
    if (!execution) return { effects };
    if (execution.status === 'QUEUED') {
      this.start(this.requireJob(execution.jobId), execution, now);
      if (request.statusDetails) execution.statusDetails = { ...request.statusDetails };
      effects.push({ kind: 'thingChanged', thingName });
    } else if (request.statusDetails) {
      execution.statusDetails = { ...request.statusDetails };
      execution.versionNumber += 1;
      execution.lastUpdatedAt = now;
    }
    if (request.stepTimeoutInMinutes !== undefined) this.setStepTimer(execution, request.stepTimeoutInMinutes, now);
    return { execution, effects };
  }

  /**
   * UpdateJobExecution. Returns the execution as the update left it (before a retry re-queues it) and the effects.
   * Throws DeviceRequestRejected as the MQTT API rejects (the invariants say which).
   */
  updateExecution(thingName: string, jobId: string, update: DeviceUpdate, now: number): { execution: ExecutionRecord; effects: JobsEffect[] } {
    const execution = this.visibleExecution(thingName, jobId);
    if (!execution || (update.executionNumber !== undefined && update.executionNumber !== execution.executionNumber)) {
      throw new DeviceRequestRejected('ResourceNotFound', `No job execution of ${jobId} for ${thingName}`);
    }
    if (!DEVICE_STATUSES.includes(update.status) && !['QUEUED', 'TIMED_OUT', 'CANCELED', 'REMOVED'].includes(update.status)) {
      throw new DeviceRequestRejected('InvalidRequest', `status ${JSON.stringify(update.status)} is not a job execution status`, execution);
    }
    if (update.expectedVersion !== undefined && update.expectedVersion !== execution.versionNumber) {
      throw new DeviceRequestRejected('VersionMismatch', `expectedVersion ${update.expectedVersion} is not the execution's version ${execution.versionNumber}`, execution);
    }
    if (isTerminal(execution.status)) {
      throw new DeviceRequestRejected('TerminalStateReached', `The execution of ${jobId} on ${thingName} is ${execution.status} already`, execution);
    }
    if (!DEVICE_STATUSES.includes(update.status)) {
      throw new DeviceRequestRejected('InvalidStateTransition', `A device cannot move its execution from ${execution.status} to ${update.status}`, execution);
    }
    const job = this.requireJob(jobId);
    const effects: JobsEffect[] = [];
    if (update.statusDetails) execution.statusDetails = { ...update.statusDetails };
    if (update.status === 'IN_PROGRESS') {
      if (execution.status === 'QUEUED') {
        this.start(job, execution, now);
        effects.push({ kind: 'thingChanged', thingName });
      } else {
        execution.versionNumber += 1;
        execution.lastUpdatedAt = now;
      }
      if (update.stepTimeoutInMinutes !== undefined) this.setStepTimer(execution, update.stepTimeoutInMinutes, now);
      return { execution: { ...execution, statusDetails: { ...execution.statusDetails } }, effects };
    }
    const reported = this.finish(job, execution, update.status as JobExecutionStatus, now, effects);
    return { execution: reported, effects };
  }

  // ---- the transitions ---------------------------------------------------------------------------------------------

  private start(job: JobRecord, execution: ExecutionRecord, now: number): void {
    execution.status = 'IN_PROGRESS';
    execution.startedAt = now;
    execution.lastUpdatedAt = now;
    execution.versionNumber += 1;
    const minutes = job.spec.timeout?.inProgressTimeoutInMinutes;
    if (minutes !== undefined) execution.inProgressDeadline = now + minutes * this.minuteMs;
  }

  private setStepTimer(execution: ExecutionRecord, minutes: number, now: number): void {
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > 10_080) {
      throw new DeviceRequestRejected('InvalidRequest', `stepTimeoutInMinutes must be an integer from 1 to 10080 (got ${minutes})`, execution);
    }
    execution.stepDeadline = now + minutes * this.minuteMs;
  }

  /**
   * The execution ends with `status` (SUCCEEDED, FAILED, REJECTED or TIMED_OUT): its event, then a retry if a
   * criterion allows one, else the abort criteria and the job's completion. Returns the ended execution's snapshot.
   */
  private finish(job: JobRecord, execution: ExecutionRecord, status: JobExecutionStatus, now: number, effects: JobsEffect[]): ExecutionRecord {
    execution.status = status;
    execution.lastUpdatedAt = now;
    execution.versionNumber += 1;
    delete execution.inProgressDeadline;
    delete execution.stepDeadline;
    const ended: ExecutionRecord = { ...execution, statusDetails: { ...execution.statusDetails } };
    effects.push({ kind: 'executionEvent', operation: operationOf(status), execution: ended });
    effects.push({ kind: 'thingChanged', thingName: execution.thingName });
    if (this.retry(job, execution, now)) return ended;
    if (status === 'SUCCEEDED') job.rollout.succeededSinceIncrease += 1;
    this.checkAbort(job, now, effects);
    this.settle(job, now, effects);
    this.rollOut(job, now, effects);
    return ended;
  }

  /** A retry criterion re-queues the failed/timed-out execution as a new attempt; true when it did. */
  private retry(job: JobRecord, execution: ExecutionRecord, now: number): boolean {
    if (job.status !== 'IN_PROGRESS' || (execution.status !== 'FAILED' && execution.status !== 'TIMED_OUT')) return false;
    const criterion =
      job.spec.retry?.criteriaList.find((candidate) => candidate.failureType === execution.status) ??
      job.spec.retry?.criteriaList.find((candidate) => candidate.failureType === 'ALL');
    if (!criterion || execution.retryAttempt >= criterion.numberOfRetries) return false;
    execution.status = 'QUEUED';
    execution.retryAttempt += 1;
    execution.executionNumber = this.state.nextExecutionNumber++;
    execution.versionNumber = 1;
    execution.statusDetails = {};
    execution.queuedAt = now;
    execution.lastUpdatedAt = now;
    execution.notifiedAt = now;
    delete execution.startedAt;
    return true;
  }

  private checkAbort(job: JobRecord, now: number, effects: JobsEffect[]): void {
    if (job.status !== 'IN_PROGRESS' || !job.spec.abort) return;
    const executed = job.executions.filter((execution) => EXECUTED.includes(execution.status));
    for (const criterion of job.spec.abort.criteriaList) {
      if (executed.length < criterion.minNumberOfExecutedThings) continue;
      const failures = executed.filter((execution) =>
        criterion.failureType === 'ALL' ? execution.status !== 'SUCCEEDED' : execution.status === criterion.failureType,
      ).length;
      if ((failures * 100) / executed.length >= criterion.thresholdPercentage) {
        const comment = `${failures} of ${executed.length} executed things ${criterion.failureType === 'ALL' ? 'failed' : `ended ${criterion.failureType}`} (abort threshold ${criterion.thresholdPercentage} %)`;
        effects.push(...this.cancelJob(job.spec.jobId, { reasonCode: 'AUTO_CANCEL', comment }, now));
        return;
      }
    }
  }

  /** A job IN_PROGRESS whose executions are all terminal is COMPLETED. */
  private settle(job: JobRecord, now: number, effects: JobsEffect[]): void {
    if (job.status !== 'IN_PROGRESS' || !job.executions.every((execution) => isTerminal(execution.status))) return;
    job.status = 'COMPLETED';
    job.completedAt = now;
    job.lastUpdatedAt = now;
    effects.push({ kind: 'jobEvent', operation: 'completed', job });
  }

  private cancel(execution: ExecutionRecord, now: number, effects: JobsEffect[]): void {
    if (execution.status === 'IN_PROGRESS') execution.forceCanceled = true;
    execution.status = 'CANCELED';
    execution.lastUpdatedAt = now;
    execution.versionNumber += 1;
    delete execution.inProgressDeadline;
    delete execution.stepDeadline;
    effects.push({ kind: 'executionEvent', operation: 'canceled', execution: { ...execution, statusDetails: { ...execution.statusDetails } } });
    if (execution.notifiedAt !== undefined) effects.push({ kind: 'thingChanged', thingName: execution.thingName });
  }

  private rollOut(job: JobRecord, now: number, effects: JobsEffect[]): void {
    if (job.status !== 'IN_PROGRESS') return;
    const rollout = job.rollout;
    const windowIndex = this.windowIndex(job, now);
    if (windowIndex !== rollout.windowIndex) {
      rollout.windowIndex = windowIndex;
      rollout.notifiedInWindow = 0;
      // A rate increase earned during a minute applies from the next one (else one minute could cascade).
      this.increaseRate(job);
    }
    for (const execution of job.executions) {
      if (rollout.notifiedInWindow >= rollout.rate) break;
      if (execution.notifiedAt !== undefined || execution.status !== 'QUEUED') continue;
      execution.notifiedAt = now;
      rollout.notifiedInWindow += 1;
      rollout.notifiedSinceIncrease += 1;
      effects.push({ kind: 'thingChanged', thingName: execution.thingName });
    }
  }

  /** The exponential rollout's rate increase, once its criterion is met (at most once per minute). */
  private increaseRate(job: JobRecord): void {
    const exponential = job.spec.rollout?.exponentialRate;
    if (!exponential) return;
    const cap = job.spec.rollout?.maximumPerMinute ?? DEFAULT_MAXIMUM_PER_MINUTE;
    const { numberOfNotifiedThings, numberOfSucceededThings } = exponential.rateIncreaseCriteria;
    const rollout = job.rollout;
    const met = () =>
      numberOfNotifiedThings !== undefined
        ? rollout.notifiedSinceIncrease >= numberOfNotifiedThings
        : numberOfSucceededThings !== undefined && rollout.succeededSinceIncrease >= numberOfSucceededThings;
    if (rollout.rate < cap && met()) {
      rollout.rate = Math.min(cap, Math.max(rollout.rate + 1, Math.floor(rollout.rate * exponential.incrementFactor)));
      rollout.notifiedSinceIncrease = 0;
      rollout.succeededSinceIncrease = 0;
    }
  }

  private windowIndex(job: JobRecord, now: number): number {
    return Math.max(0, Math.floor((now - job.createdAt) / this.minuteMs));
  }

  private visibleExecution(thingName: string, jobId: string): ExecutionRecord | undefined {
    const execution = this.state.jobs[jobId]?.executions.find((candidate) => candidate.thingName === thingName);
    return execution?.notifiedAt !== undefined ? execution : undefined;
  }

  private requireJob(jobId: string): JobRecord {
    const job = this.state.jobs[jobId];
    if (!job) throw new JobsControlError('ResourceNotFoundException', `Job ${jobId} does not exist`);
    return job;
  }

  private requireExecution(jobId: string, thingName: string): ExecutionRecord {
    const execution = this.requireJob(jobId).executions.find((candidate) => candidate.thingName === thingName);
    if (!execution) throw new JobsControlError('ResourceNotFoundException', `Job ${jobId} has no execution on ${thingName}`);
    return execution;
  }
}

function operationOf(status: JobExecutionStatus): ExecutionEventOperation {
  const operation = { SUCCEEDED: 'succeeded', FAILED: 'failed', REJECTED: 'rejected', CANCELED: 'canceled', TIMED_OUT: 'timed_out', REMOVED: 'removed' } as const;
  if (!(status in operation)) throw new Error(`${status} is not a terminal status`);
  return operation[status as keyof typeof operation];
}
