import type { DynamoDBBatchResponse, DynamoDBRecord } from 'aws-lambda';
import { ROBOT_UPDATE_EVENT_TYPES, type RobotUpdateState } from '../../../schemas/deployments.js';
import type { RecordedEvent } from '../../../schemas/index.js';
import { outcomeOfFailure, type DeploymentInput } from '../../domain/deployment.js';
import { logger, metrics, MetricUnit } from '../../platform/observability.js';
import { readStreamItems } from '../live/stream-items.js';
import type { StreamRecordReader } from '../ports.js';
import { OPEN_ROBOT_STATES, type DeploymentRobot } from './deployment-store.js';
import { DeploymentNotFound, runPendingEffects, tellDeployment, type OrchestratorDependencies } from './orchestrator.js';

/**
 * The orchestrator's input (issue 12): a robot's update event from the event log (its stream), recorded in the
 * deployment it names. Progress (queued, deferred, installing) only moves the robot's item; an outcome (succeeded,
 * failed, rolled back, canceled by Jobs) is a decision: counted once, then maybe a batch completes, the next opens,
 * the deployment aborts or completes — and the decision's effects are carried out. A failure IoT Jobs retries
 * (strategy.retries; FAILED or TIMED_OUT, one `ALL` retry criterion) is not an outcome: the robot goes back to queued,
 * the attempt noted; the failure of its last attempt is.
 *
 * INVARIANTS
 * - idempotent: a redelivered event finds its robot's item final (`robot-final`) or its progress applied, and only
 *   carries out what is still pending of the deployment;
 * - an outcome of a rollback deployment's robot marks that robot rolled back in the parent, once (the parent's robot
 *   item must still be `succeeded`), also on a redelivery after a crash between the two;
 * - events of deployments this table does not hold, and of robots not targeted, are skipped (logged, counted).
 */

export type UpdateEvent = Extract<
  RecordedEvent['event'],
  { type: 'RobotUpdateQueued' | 'RobotUpdateDeferred' | 'RobotUpdateStarted' | 'RobotUpdateSucceeded' | 'RobotUpdateFailed' | 'RobotUpdateRolledBack' }
>;

/** schemas/deployments.ts ROBOT_UPDATE_EVENT_TYPES (kept here under its first name for existing imports). */
export const UPDATE_EVENT_TYPES: readonly UpdateEvent['type'][] = ROBOT_UPDATE_EVENT_TYPES;

export function isUpdateEvent(event: RecordedEvent['event']): event is UpdateEvent {
  return (UPDATE_EVENT_TYPES as readonly string[]).includes(event.type);
}

export type UpdateHandling = 'progress' | 'retrying' | 'recorded' | 'duplicate' | 'unknown-deployment' | 'not-targeted' | 'stale';

/** Failures IoT Jobs' retry criteria act on (FAILED, TIMED_OUT); a rejected, removed or canceled execution is not retried. */
const NOT_RETRIED: readonly string[] = ['REJECTED', 'REMOVED', 'CANCELED'];

export async function onRobotUpdate(deps: OrchestratorDependencies, event: UpdateEvent): Promise<UpdateHandling> {
  const { deploymentId } = event.data;
  const stored = await deps.store.read(deploymentId);
  if (!stored) return 'unknown-deployment';
  const robot = await deps.store.readRobot(deploymentId, event.robotId);
  if (!robot || robot.batch === null) return 'not-targeted';

  if (event.type === 'RobotUpdateQueued' || event.type === 'RobotUpdateDeferred' || event.type === 'RobotUpdateStarted') {
    const progress = progressOf(event);
    const moved = await deps.store.progress(deploymentId, event.robotId, progress.set, progress.from);
    if (stored.pending.length > 0) await runPendingEffects(deps, deploymentId);
    return moved ? 'progress' : 'stale';
  }

  const { retries } = stored.head.strategy;
  if (event.type === 'RobotUpdateFailed' && !NOT_RETRIED.includes(event.data.reason) && (OPEN_ROBOT_STATES as readonly string[]).includes(robot.state)) {
    if (robot.failedAttempts.includes(event.eventId)) return 'duplicate';
    if (robot.failedAttempts.length < retries) {
      const attempt = robot.failedAttempts.length + 1;
      const reason = `attempt ${attempt} of ${retries + 1} failed (${failureReason(event)}); IoT Jobs tries again`.slice(0, 500);
      const moved = await deps.store.progress(deploymentId, event.robotId, { state: 'queued', reason, failedAttempts: [...robot.failedAttempts, event.eventId] }, OPEN_ROBOT_STATES);
      return moved ? 'retrying' : 'stale';
    }
  }
  const input = outcomeOf(event, robot, retries);
  const queued = await tellDeployment(deps, deploymentId, {
    id: `outcome#${event.robotId}`,
    input,
    robot: {
      robotId: event.robotId,
      from: OPEN_ROBOT_STATES,
      set: {
        state: input.outcome,
        reason: input.reason,
        finishedAt: event.at,
        fromVersion: input.fromVersion,
        ...(robot.startedAt === null && input.outcome !== 'canceled' ? { startedAt: event.at } : {}),
      },
    },
  });
  if (queued === 'robot-final') logger.info('robot outcome already recorded', { deploymentId, robotId: event.robotId, batch: robot.batch });
  // The parent learns its robot is back (a rollback deployment's success), once, also when this is a redelivery.
  const { head } = stored;
  if (head.kind === 'rollback' && head.parentDeploymentId && input.outcome === 'succeeded') {
    await tellDeployment(deps, head.parentDeploymentId, {
      id: `rolled-back#${event.robotId}`,
      input: { type: 'robotRolledBack', robotId: event.robotId, rollbackDeploymentId: deploymentId, at: event.at },
      robot: { robotId: event.robotId, from: ['succeeded'], set: { state: 'rolled-back', rollbackDeploymentId: deploymentId } },
    }).catch((error: unknown) => {
      if (error instanceof DeploymentNotFound) return;
      throw error;
    });
  }
  await runPendingEffects(deps, deploymentId);
  return queued === 'queued' ? 'recorded' : 'duplicate';
}

/** The item change a progress event makes, and the states it may make it from (never backwards, never from final). */
function progressOf(
  event: Extract<UpdateEvent, { type: 'RobotUpdateQueued' | 'RobotUpdateDeferred' | 'RobotUpdateStarted' }>,
): { set: Partial<DeploymentRobot>; from: readonly RobotUpdateState[] } {
  switch (event.type) {
    case 'RobotUpdateQueued':
      return { set: { state: 'queued', queuedAt: event.at }, from: ['pending'] };
    case 'RobotUpdateDeferred':
      return { set: { state: 'deferred', reason: event.data.reason }, from: ['pending', 'queued'] };
    case 'RobotUpdateStarted':
      return { set: { state: 'installing', startedAt: event.at, fromVersion: event.data.fromVersion, reason: null }, from: ['pending', 'queued', 'deferred'] };
  }
}

function failureReason(event: Extract<UpdateEvent, { type: 'RobotUpdateFailed' }>): string {
  return event.data.detail ? `${event.data.reason}: ${event.data.detail}` : event.data.reason;
}

function outcomeOf(event: Extract<UpdateEvent, { type: 'RobotUpdateSucceeded' | 'RobotUpdateFailed' | 'RobotUpdateRolledBack' }>, robot: DeploymentRobot, retries: number) {
  const base = { type: 'outcome' as const, robotId: event.robotId, batch: robot.batch ?? 0, at: event.at };
  if (event.type === 'RobotUpdateFailed') {
    const attempts = robot.failedAttempts.length > 0 ? ` (attempt ${robot.failedAttempts.length + 1} of ${retries + 1})` : '';
    const reason = `${failureReason(event).slice(0, 480)}${attempts}`;
    return { ...base, outcome: outcomeOfFailure(event.data.reason), reason, fromVersion: robot.fromVersion } satisfies DeploymentInput;
  }
  return { ...base, outcome: 'succeeded' as const, reason: null, fromVersion: event.data.fromVersion ?? robot.fromVersion } satisfies DeploymentInput;
}

/**
 * The stream consumer (the `deployment-orchestrator` Lambda; the local cloud's poller): each update event in order;
 * the first that fails is the batch item failure, so it and what follows come again (partial batch responses).
 */
export function streamDeploymentOrchestrator(readRecord: StreamRecordReader) {
  return async (records: readonly DynamoDBRecord[], deps: OrchestratorDependencies): Promise<DynamoDBBatchResponse> => {
    for (const { sequenceNumber, item } of readStreamItems(records, readRecord)) {
      if (item.kind !== 'event' || !isUpdateEvent(item.recorded.event)) continue;
      const event = item.recorded.event;
      try {
        const handled = await onRobotUpdate(deps, event);
        metrics.addMetric(`DeploymentUpdate_${handled}`, MetricUnit.Count, 1);
        if (handled === 'unknown-deployment' || handled === 'not-targeted') {
          logger.warn('robot update of no deployment we hold', { robotId: event.robotId, deploymentId: event.data.deploymentId, handled });
        }
      } catch (error) {
        logger.error('deployment orchestration step failed; the record comes again', {
          robotId: event.robotId,
          deploymentId: event.data.deploymentId,
          type: event.type,
          error: error instanceof Error ? error.message : String(error),
        });
        metrics.addMetric('DeploymentStepFailed', MetricUnit.Count, 1);
        return { batchItemFailures: [{ itemIdentifier: sequenceNumber }] };
      }
    }
    return { batchItemFailures: [] };
  };
}
