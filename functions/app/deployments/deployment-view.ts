import type { DeploymentBatchView, DeploymentRobotView, DeploymentSummary, DeploymentView, RobotUpdateState } from '../../../schemas/deployments.js';
import type { BatchState, DeploymentHead } from '../../domain/deployment.js';
import type { DeploymentRobot } from './deployment-store.js';

/**
 * How the API shows a deployment: the head's counts and batches, and (for one deployment) every robot. Robots of an
 * open batch that have not spoken yet show `queued`; robots of a batch that never opened (canceled, aborted) show
 * `canceled`; counts follow the same rule, so they add up to `targeted`.
 */
export function toDeploymentSummary(head: DeploymentHead): DeploymentSummary {
  const unopened = (state: BatchState['state']) => head.batches.filter((b) => b.state === state).reduce((sum, b) => sum + b.robots, 0);
  const opened = head.batches.filter((b) => b.state === 'running' || b.state === 'done');
  const finishedInOpened = opened.reduce((sum, b) => sum + b.succeeded + b.failed + b.canceled, 0);
  const robotsInOpened = opened.reduce((sum, b) => sum + b.robots, 0);
  return {
    deploymentId: head.deploymentId,
    kind: head.kind,
    parentDeploymentId: head.parentDeploymentId,
    rollbackDeploymentId: head.rollback.deployments[0]?.deploymentId ?? null,
    release: { version: head.release.version, manifestSha256: head.release.manifestSha256 },
    state: head.state,
    reason: head.reason,
    strategy: head.strategy,
    targets: head.targets,
    note: head.note,
    createdBy: head.createdBy,
    createdAt: head.createdAt,
    updatedAt: head.updatedAt,
    counts: {
      targeted: head.counts.targeted,
      held: head.counts.held,
      pending: unopened('pending'),
      inProgress: robotsInOpened - finishedInOpened,
      succeeded: head.counts.succeeded - head.counts.rolledBack,
      failed: head.counts.failed,
      rolledBack: head.counts.rolledBack,
      canceled: head.counts.canceled + unopened('canceled'),
    },
    batches: head.batches.map(
      (b): DeploymentBatchView => ({ index: b.index, kind: b.kind, jobId: b.jobId, state: b.state, robots: b.robots, succeeded: b.succeeded, failed: b.failed }),
    ),
    rollback: {
      requested: head.rollback.requested,
      deployments: head.rollback.deployments.map((d) => ({ ...d })),
      skipped: head.rollback.skipped,
      skippedReason: head.rollback.skippedReason,
    },
  };
}

export function toDeploymentView(head: DeploymentHead, robots: readonly DeploymentRobot[]): DeploymentView {
  const batchState = new Map(head.batches.map((b) => [b.index, b.state]));
  const order = (robot: DeploymentRobot) => (robot.batch === null ? Number.MAX_SAFE_INTEGER : robot.batch);
  return {
    ...toDeploymentSummary(head),
    robots: [...robots]
      .sort((a, b) => order(a) - order(b) || (a.robotId < b.robotId ? -1 : a.robotId > b.robotId ? 1 : 0))
      .map(
        (robot): DeploymentRobotView => ({
          robotId: robot.robotId,
          batch: robot.batch,
          state: shownState(robot, robot.batch === null ? undefined : batchState.get(robot.batch)),
          reason: robot.reason,
          fromVersion: robot.fromVersion,
          queuedAt: robot.queuedAt,
          startedAt: robot.startedAt,
          finishedAt: robot.finishedAt,
        }),
      ),
  };
}

function shownState(robot: DeploymentRobot, batch: BatchState['state'] | undefined): RobotUpdateState {
  if (robot.state !== 'pending') return robot.state;
  if (batch === 'running' || batch === 'done') return 'queued';
  if (batch === 'canceled') return 'canceled';
  return 'pending';
}
