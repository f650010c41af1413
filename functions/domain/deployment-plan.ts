import type { DeploymentKind, DeploymentStrategy, HoldReason, RobotSoftwareView } from '../../schemas/deployments.js';
import type { RobotModel, RobotView } from '../../schemas/index.js';

/**
 * A deployment's plan (issue 12): which of the targeted robots take part, which are held back and why, and the
 * batches the rest go in — a canary first, then rolling batches of a fixed size or growing by a factor. Pure; the
 * plan is made once, from a snapshot of the read model, and recorded with the deployment (it never changes after).
 *
 * INVARIANTS
 * - every targeted robot is either in exactly one batch or held with one reason, never both, never twice;
 * - batches keep the targets' order (robot id order for a filter), none is empty; the canary, when there is one, is
 *   batch 0 and holds min(canary, deployable) robots;
 * - a robot is never forced: anything that makes an install unsafe or pointless now holds it back.
 */

export interface PlannedTarget {
  readonly robotId: string;
  /** The robot as the read model has it; null when the fleet does not know it. */
  readonly view: RobotView | null;
}

export interface PlanRelease {
  readonly version: string;
  /** The release's model; absent: any model. */
  readonly model?: RobotModel | undefined;
}

export interface HeldRobot {
  readonly robotId: string;
  readonly reason: HoldReason;
}

export interface PlannedRobot {
  readonly robotId: string;
  readonly batch: number;
  /** The version it ran when planned (from the read model), null when unknown. */
  readonly fromVersion: string | null;
}

export interface DeploymentPlan {
  /** Robot ids per batch, in order. */
  readonly batches: readonly (readonly string[])[];
  /** Whether batch 0 is a canary. */
  readonly canary: boolean;
  readonly robots: readonly PlannedRobot[];
  readonly held: readonly HeldRobot[];
}

/** RobotView.software (issue 12) where the read model has it; views from before it have none. */
export function softwareOfView(view: RobotView): RobotSoftwareView | undefined {
  return (view as RobotView & { software?: RobotSoftwareView }).software;
}

/**
 * Why a robot is not deployable for this release now, or null. A rollback holds nothing but robots the fleet does not
 * know: it undoes an install, and IoT Jobs keeps the job for a robot that is offline or driven (the agent defers).
 */
export function holdReason(view: RobotView | null, release: PlanRelease, kind: DeploymentKind): HoldReason | null {
  if (!view) return 'unknown';
  if (kind === 'rollback') return null;
  if (view.lifecycle === 'provisioning' || view.lifecycle === 'discovered') return 'provisioning';
  if (view.lifecycle === 'failed' || view.failure) return 'failed';
  if (view.status !== 'online') return 'offline';
  if (view.teleoperation.active) return 'teleoperated';
  if (softwareOfView(view)?.update || view.lifecycle === 'active') return 'deploying';
  if (release.model && release.model !== view.model) return 'model-mismatch';
  return null;
}

/** Sizes of the rolling batches for `count` robots: batchSize each, or growing by batchGrowthFactor from batchSize. */
export function rollingBatchSizes(count: number, strategy: Pick<DeploymentStrategy, 'batchSize' | 'batchGrowthFactor'>): number[] {
  const sizes: number[] = [];
  let size = strategy.batchSize;
  for (let left = count; left > 0; ) {
    const take = Math.min(size, left);
    sizes.push(take);
    left -= take;
    if (strategy.batchGrowthFactor !== undefined) size = Math.min(1_000, Math.max(size + 1, Math.ceil(size * strategy.batchGrowthFactor)));
  }
  return sizes;
}

export function planDeployment(
  targets: readonly PlannedTarget[],
  release: PlanRelease,
  strategy: Pick<DeploymentStrategy, 'canary' | 'batchSize' | 'batchGrowthFactor'>,
  kind: DeploymentKind,
): DeploymentPlan {
  const seen = new Set<string>();
  const held: HeldRobot[] = [];
  const deployable: { robotId: string; fromVersion: string | null }[] = [];
  for (const { robotId, view } of targets) {
    if (seen.has(robotId)) continue;
    seen.add(robotId);
    const reason = holdReason(view, release, kind);
    if (reason) held.push({ robotId, reason });
    else deployable.push({ robotId, fromVersion: (view && softwareOfView(view)?.version) ?? null });
  }
  const canarySize = Math.min(strategy.canary, deployable.length);
  const sizes = [...(canarySize > 0 ? [canarySize] : []), ...rollingBatchSizes(deployable.length - canarySize, strategy)];
  const batches: string[][] = [];
  const robots: PlannedRobot[] = [];
  let next = 0;
  sizes.forEach((size, batch) => {
    const members = deployable.slice(next, next + size);
    next += size;
    batches.push(members.map((robot) => robot.robotId));
    for (const robot of members) robots.push({ robotId: robot.robotId, batch, fromVersion: robot.fromVersion });
  });
  return { batches, canary: canarySize > 0, robots, held };
}

/** A rollback's plan: every robot takes part (none is held), in rolling batches; they go back from `fromVersion`. */
export function planRollback(
  robotIds: readonly string[],
  fromVersion: string,
  strategy: Pick<DeploymentStrategy, 'batchSize' | 'batchGrowthFactor'>,
): DeploymentPlan {
  const unique = [...new Set(robotIds)];
  const batches: string[][] = [];
  const robots: PlannedRobot[] = [];
  let next = 0;
  rollingBatchSizes(unique.length, strategy).forEach((size, batch) => {
    const members = unique.slice(next, next + size);
    next += size;
    batches.push(members);
    for (const robotId of members) robots.push({ robotId, batch, fromVersion });
  });
  return { batches, canary: false, robots, held: [] };
}
