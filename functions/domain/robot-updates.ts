import { parseBatchJobId, ROBOT_UPDATE_EVENT_TYPES, type DeploymentKind } from '../../schemas/deployments.js';
import type { DomainEvent, EventOf } from '../../schemas/index.js';

/**
 * A robot's software updates (issue 12) as its own state knows them: the update it is in (queued by the orchestrator,
 * deferred or installing on the robot), the version it runs, and the last few jobs that ended. Pure; robot-state.ts
 * folds the update events through `evolveUpdates`, the decider asks `jobEnded` and `isOlderJob`.
 *
 * INVARIANTS
 * - At most one update is current (`RobotState.deployment`); an event of an older job (by deployment id, a ULID, then
 *   batch) never replaces a newer job's update, and an event of a job that already ended never reopens it — except a
 *   start after a *failure*, from after that failure (IoT Jobs' retry gave the robot another attempt).
 * - A job is in `recent` once it ended (succeeded, failed, rolled back), newest first, at most RECENT_JOBS: the
 *   decider's "already terminal" check, which is what keeps one terminal outcome per attempt whatever the order the
 *   robot's word and IoT Jobs' job-side end arrive in.
 * - `version` is the robot's word (SoftwareVersionReported), or the version an update of the newest known job left it
 *   on (succeeded: the new one; failed: `runningVersion`); a late outcome of an older job does not move it.
 */
export interface RobotUpdate {
  readonly deploymentId: string;
  readonly jobId: string;
  readonly version: string;
  readonly kind: DeploymentKind;
  readonly state: 'queued' | 'deferred' | 'installing';
  /** When it entered that state. */
  readonly since: string;
  /** For a rollback: the deployment it undoes, from the orchestrator's RobotUpdateQueued (the robot does not know it). */
  readonly parentDeploymentId?: string | null;
}

export interface EndedJob {
  readonly jobId: string;
  readonly outcome: 'succeeded' | 'failed' | 'rolled-back';
  readonly at: string;
}

export interface RobotSoftware {
  /** The version under the robot's `current`; null until known (never reported, or a robot without a release). */
  readonly version: string | null;
  readonly recent: readonly EndedJob[];
}

/** How many ended jobs a robot remembers: a job-side end later than this many newer jobs is far beyond any timeout. */
export const RECENT_JOBS = 8;

export const NO_SOFTWARE: RobotSoftware = { version: null, recent: [] };

interface UpdateFields {
  readonly deployment: RobotUpdate | null;
  readonly software?: RobotSoftware;
}

export type UpdateEvent = EventOf<
  | 'RobotUpdateQueued'
  | 'RobotUpdateDeferred'
  | 'RobotUpdateStarted'
  | 'RobotUpdateSucceeded'
  | 'RobotUpdateFailed'
  | 'RobotUpdateRolledBack'
  | 'SoftwareVersionReported'
>;

const UPDATE_EVENT_TYPES: ReadonlySet<DomainEvent['type']> = new Set([...ROBOT_UPDATE_EVENT_TYPES, 'SoftwareVersionReported']);

export function isUpdateEvent(event: DomainEvent): event is UpdateEvent {
  return UPDATE_EVENT_TYPES.has(event.type);
}

/** The robot's software; heads written before updates existed have none. */
export function softwareOf(state: UpdateFields): RobotSoftware {
  return state.software ?? NO_SOFTWARE;
}

/** The ended job of that id, if the robot remembers one. */
export function jobEnded(state: UpdateFields, jobId: string): EndedJob | undefined {
  return softwareOf(state).recent.find((ended) => ended.jobId === jobId);
}

/**
 * Whether job `a` is older than job `b`: batch jobs (schemas/deployments.ts batchJobId) order by deployment id (a
 * ULID: creation time), then batch. Ids of any other form are never older (nothing to tell by).
 */
export function isOlderJob(a: string, b: string): boolean {
  const pa = parseBatchJobId(a);
  const pb = parseBatchJobId(b);
  if (!pa || !pb) return false;
  return pa.deploymentId < pb.deploymentId || (pa.deploymentId === pb.deploymentId && pa.batch < pb.batch);
}

/** The newest job the robot knows of: its current update's, else the last ended one's. */
function newestJob(state: UpdateFields): string | undefined {
  return state.deployment?.jobId ?? softwareOf(state).recent[0]?.jobId;
}

export function evolveUpdates<S extends UpdateFields>(state: S, event: UpdateEvent): S {
  const software = softwareOf(state);
  switch (event.type) {
    case 'SoftwareVersionReported':
      return { ...state, software: { ...software, version: event.data.version } };
    case 'RobotUpdateQueued':
    case 'RobotUpdateDeferred':
    case 'RobotUpdateStarted': {
      const { jobId } = event.data;
      const current = state.deployment;
      const ended = jobEnded(state, jobId);
      const retried = event.type === 'RobotUpdateStarted' && ended?.outcome === 'failed' && Date.parse(event.at) > Date.parse(ended.at);
      if (ended && !retried) return state;
      if (current && current.jobId !== jobId && isOlderJob(jobId, current.jobId)) return state;
      const step = event.type === 'RobotUpdateQueued' ? 'queued' : event.type === 'RobotUpdateDeferred' ? 'deferred' : 'installing';
      const parentDeploymentId = event.type === 'RobotUpdateQueued' ? event.data.parentDeploymentId ?? null : current?.jobId === jobId ? current.parentDeploymentId ?? null : null;
      // The robot may start before the orchestrator's queue write lands (it hears of the job from IoT first).
      if (current?.jobId === jobId && step === 'queued') return state;
      const kind = 'kind' in event.data ? event.data.kind : current?.jobId === jobId ? current.kind : 'deploy';
      const next: RobotUpdate = {
        deploymentId: event.data.deploymentId,
        jobId,
        version: event.data.version,
        kind,
        state: step,
        since: current?.jobId === jobId && current.state === step ? current.since : event.at,
        ...(parentDeploymentId ? { parentDeploymentId } : {}),
      };
      const recent = retried ? software.recent.filter((job) => job.jobId !== jobId) : software.recent;
      return { ...state, deployment: next, software: { ...software, recent } };
    }
    case 'RobotUpdateSucceeded':
    case 'RobotUpdateRolledBack':
    case 'RobotUpdateFailed': {
      const { jobId } = event.data;
      const outcome = event.type === 'RobotUpdateFailed' ? 'failed' : event.type === 'RobotUpdateSucceeded' ? 'succeeded' : 'rolled-back';
      const newest = newestJob(state);
      const isNewest = newest === undefined || newest === jobId || !isOlderJob(jobId, newest);
      const version = !isNewest
        ? software.version
        : event.type === 'RobotUpdateFailed'
          ? event.data.runningVersion
          : event.data.version;
      const recent = [{ jobId, outcome, at: event.at } as const, ...software.recent.filter((job) => job.jobId !== jobId)].slice(0, RECENT_JOBS);
      return {
        ...state,
        deployment: state.deployment?.jobId === jobId ? null : state.deployment,
        software: { version, recent },
      };
    }
    default: {
      const unexpected: never = event;
      throw new Error(`not an update event: ${JSON.stringify(unexpected)}`);
    }
  }
}
