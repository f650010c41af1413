import type { DeploymentRecordEvent, RobotUpdateState } from '../../../schemas/deployments.js';
import type { DeploymentEffect, DeploymentHead, DeploymentInput } from '../../domain/deployment.js';

/**
 * Where a deployment's record lives (functions/adapters/dynamo-deployments.ts): its head (the decider's small state,
 * with a revision every decision is conditioned on), one item per targeted robot, its facts, and the effects of
 * decisions not yet carried out.
 *
 * The orchestrator runs concurrently for robots of one deployment; the store makes that safe by construction:
 * - a decision is one atomic commit: facts + new head + pending effects (+ the robots' items it changes), conditioned
 *   on the head's revision it was made on (`conflict`: read again, decide again — optimistic, nothing lost);
 * - a robot's word (its outcome, or its rollback's success in the parent) first goes into the deployment's inbox, with
 *   no head write: accepted only while the robot's item is in the states it may leave (`robot-final`: counted
 *   already) and once per robot and kind. A commit then folds many inbox entries into the head at once (each entry
 *   deleted, each robot's item changed, in the same transaction), so a batch finishing together costs a few head
 *   writes, not one contended write per robot (group commit);
 * - a once-only step (a rollback deployment noted in its parent) carries a marker that must not exist yet.
 */

/** States a robot's item can leave (an outcome is recorded only from these). */
export const OPEN_ROBOT_STATES = ['pending', 'queued', 'deferred', 'installing'] as const satisfies readonly RobotUpdateState[];

export interface DeploymentRobot {
  readonly robotId: string;
  /** Null for a held robot. */
  readonly batch: number | null;
  readonly state: RobotUpdateState;
  readonly reason: string | null;
  readonly fromVersion: string | null;
  readonly queuedAt: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  /** The seq of its DeploymentRobotOutcome: the bulk rollback takes the successes at or before its own seq. */
  readonly outcomeSeq: number | null;
  readonly rollbackDeploymentId: string | null;
  /**
   * The event ids of its failed attempts that IoT Jobs retries (strategy.retries): such a failure is not the robot's
   * outcome; the one after the last retry is. Ids, not a count, so a redelivered failure is not counted twice.
   */
  readonly failedAttempts: readonly string[];
}

export interface StoredDeployment {
  readonly head: DeploymentHead;
  readonly revision: number;
  /** Effects recorded by a decision and not yet confirmed done, oldest first. */
  readonly pending: readonly PendingEffect[];
  /** Robots' words not yet folded into the head. */
  readonly inbox: readonly InboxEntry[];
}

/** A change of a robot's item, made only from the states `from`. */
export interface RobotChange {
  readonly robotId: string;
  readonly from: readonly RobotUpdateState[];
  readonly set: Partial<Omit<DeploymentRobot, 'robotId'>>;
}

/** A robot's word waiting to be decided: the input, and its robot item's change once it is. */
export interface InboxEntry {
  /** One per robot and kind: `outcome#<robotId>`, `rolled-back#<robotId>`. */
  readonly id: string;
  readonly input: Extract<DeploymentInput, { type: 'outcome' | 'robotRolledBack' }>;
  readonly robot: RobotChange;
}

export interface PendingEffect {
  readonly id: string;
  readonly effect: DeploymentEffect;
}

export interface NewDeployment {
  readonly head: DeploymentHead;
  readonly events: readonly DeploymentRecordEvent[];
  readonly effects: readonly DeploymentEffect[];
  /** Robot ids per batch. */
  readonly batches: readonly (readonly string[])[];
  readonly robots: readonly DeploymentRobot[];
}

export interface DeploymentCommit {
  readonly deploymentId: string;
  readonly expectedRevision: number;
  readonly head: DeploymentHead;
  readonly events: readonly DeploymentRecordEvent[];
  readonly effects: readonly DeploymentEffect[];
  /** Inbox entries this decision folds: each is deleted (it must still be there) and its robot change made. */
  readonly folded?: readonly { readonly inboxId: string; readonly robot: RobotChange }[];
  /** Written with the commit; its existence refuses it (`marker-exists`). */
  readonly marker?: string;
}

export type CommitOutcome = 'committed' | 'conflict' | 'marker-exists';

export interface DeploymentPage {
  readonly items: readonly DeploymentHead[];
  readonly nextCursor: string | null;
}

export interface DeploymentStore {
  /** Writes the robots, batches, then head, facts and effects; `exists` when the head is there already (a repeat). */
  create(deployment: NewDeployment): Promise<'created' | 'exists'>;
  /** Strongly consistent. */
  read(deploymentId: string): Promise<StoredDeployment | null>;
  readRobot(deploymentId: string, robotId: string): Promise<DeploymentRobot | null>;
  listRobots(deploymentId: string): Promise<DeploymentRobot[]>;
  readBatch(deploymentId: string, batch: number): Promise<string[]>;
  readEvents(deploymentId: string): Promise<DeploymentRecordEvent[]>;
  commit(commit: DeploymentCommit): Promise<CommitOutcome>;
  /**
   * Puts a robot's word in the inbox, only while its item is in `entry.robot.from` (`robot-final` otherwise) and the
   * entry is not there yet (`already-queued`).
   */
  enqueue(deploymentId: string, entry: InboxEntry): Promise<'queued' | 'robot-final' | 'already-queued'>;
  /** Removes an inbox entry that can never be folded (its robot's item left the states it changes from). */
  dropInbox(deploymentId: string, inboxId: string): Promise<void>;
  /** A robot's progress (queued → deferred → installing), only from the states `from`; false when it is elsewhere. */
  progress(deploymentId: string, robotId: string, set: Partial<Omit<DeploymentRobot, 'robotId'>>, from: readonly RobotUpdateState[]): Promise<boolean>;
  /** The effect is carried out: forget it. */
  effectDone(deploymentId: string, effectId: string): Promise<void>;
  /**
   * A caller's Idempotency-Key for a new deployment: the first claim binds it to `deploymentId` and the request's
   * fingerprint; a later one gets what the first bound.
   */
  claimKey(claim: { readonly callerId: string; readonly key: string; readonly fingerprint: string; readonly deploymentId: string }): Promise<
    { readonly claimed: true } | { readonly claimed: false; readonly deploymentId: string; readonly fingerprint: string }
  >;
  /** Newest first. */
  list(options: { readonly limit: number; readonly cursor?: string | undefined }): Promise<DeploymentPage>;
}
