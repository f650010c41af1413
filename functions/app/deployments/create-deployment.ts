import { DeploymentStrategy, type CreateDeploymentRequest, type DeploymentTargets } from '../../../schemas/deployments.js';
import type { RobotView } from '../../../schemas/index.js';
import { startDeployment, type DeploymentHead } from '../../domain/deployment.js';
import { planDeployment, type HeldRobot, type PlannedTarget } from '../../domain/deployment-plan.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import { plannedItem, runPendingEffects, type DeploymentDependencies } from './orchestrator.js';

/**
 * POST /api/v2/deployments: the release from the artifact store, the targets resolved against the read model (a
 * snapshot, recorded), the plan (held robots with their reason, batches), the record, then batch 0's job and queued
 * marks (the effects of the start, carried out at once and redone by any later step if this one dies halfway).
 */

export class ReleaseNotFound extends Error {
  override readonly name = 'ReleaseNotFound';
  constructor(readonly version: string) {
    super(`Release ${version} is not in the artifact store; publish it first (npm run release -- --dir <folder> --version ${version}).`);
  }
}

export class NoDeployableRobot extends Error {
  override readonly name = 'NoDeployableRobot';
  constructor(readonly held: readonly HeldRobot[]) {
    super(
      held.length === 0
        ? 'The targets name no robot.'
        : `None of the ${held.length} targeted robots can be deployed to now (${summarize(held)}); they are held back, not forced.`,
    );
  }
}

export interface CreatedDeployment {
  readonly head: DeploymentHead;
  readonly held: readonly HeldRobot[];
}

/** How many robots are looked up in the read model at once for a list of ids. */
const LOOKUP_CONCURRENCY = 16;
const PAGE = 500;

export async function createDeployment(
  deps: DeploymentDependencies,
  request: CreateDeploymentRequest,
  createdBy: string,
  deploymentId: string = deps.newDeploymentId(),
): Promise<CreatedDeployment> {
  const release = await deps.releases.getRelease(request.release);
  if (!release) throw new ReleaseNotFound(request.release);
  const strategy = DeploymentStrategy.parse(request.strategy ?? {});
  const targets = await resolveTargets(deps, request.targets);
  const plan = planDeployment(targets, { version: release.summary.version, model: release.summary.model }, strategy, 'deploy');
  if (plan.batches.length === 0) throw new NoDeployableRobot(plan.held);
  const { summary } = release;
  const started = startDeployment({
    deploymentId,
    kind: 'deploy',
    parentDeploymentId: null,
    release: { version: summary.version, manifestSha256: summary.manifestSha256, fileCount: summary.fileCount, totalBytes: summary.totalBytes, model: summary.model },
    strategy,
    targets: request.targets,
    note: request.note ?? null,
    createdBy,
    at: deps.now().toISOString(),
    batchSizes: plan.batches.map((batch) => batch.length),
    canary: plan.canary,
    held: plan.held.length,
  });
  const robots = [
    ...plan.robots.map(plannedItem),
    ...plan.held.map((held) => ({ ...plannedItem({ robotId: held.robotId, batch: 0, fromVersion: null }), batch: null, state: 'held' as const, reason: held.reason })),
  ];
  await deps.store.create({ head: started.head, events: started.events, effects: started.effects, batches: plan.batches, robots });
  await runPendingEffects(deps, deploymentId);
  return { head: started.head, held: plan.held };
}

/** A snapshot of the targets: each named robot (null when unknown), or every robot the filter matches now. */
async function resolveTargets(deps: DeploymentDependencies, targets: DeploymentTargets): Promise<PlannedTarget[]> {
  if ('robotIds' in targets) {
    const ids = [...new Set(targets.robotIds)];
    const results = await settleConcurrently(ids, LOOKUP_CONCURRENCY, (robotId) => deps.fleet.getRobot(robotId));
    return ids.map((robotId, i) => {
      const result = results[i];
      if (!result || result.status === 'rejected') throw result?.reason ?? new Error(`could not look up ${robotId}`);
      return { robotId, view: result.value };
    });
  }
  const found: RobotView[] = [];
  let cursor: string | undefined;
  do {
    const page = await deps.fleet.listRobots({ model: targets.filter.model, lifecycle: targets.filter.lifecycle, limit: PAGE, cursor });
    found.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined && found.length < 10_000);
  return found.map((view) => ({ robotId: view.robotId, view }));
}

function summarize(held: readonly HeldRobot[]): string {
  const counts = new Map<string, number>();
  for (const robot of held) counts.set(robot.reason, (counts.get(robot.reason) ?? 0) + 1);
  return [...counts].map(([reason, count]) => `${count} ${reason}`).join(', ');
}
