import type { DeploymentHead } from '../../domain/deployment.js';
import { decideAndCommit, runPendingEffects, type OrchestratorDependencies } from './orchestrator.js';

/**
 * An engineer's pause, resume, cancel or rollback of a deployment: decided on the stored head (a transition the
 * state does not allow is refused with DeploymentTransitionRejected, a 409), committed, and its effects carried out
 * (cancel: the open job is canceled; resume: the next batch may open; rollback: the rollback deployments start).
 */
export type DeploymentAction = 'pause' | 'resume' | 'cancel' | 'rollback';

export async function actOnDeployment(
  deps: OrchestratorDependencies,
  deploymentId: string,
  action: DeploymentAction,
  by: string,
  reason: string | null,
): Promise<DeploymentHead> {
  const at = deps.now().toISOString();
  const { head } = await decideAndCommit(deps, deploymentId, { type: action, by, reason, at });
  await runPendingEffects(deps, deploymentId);
  return (await deps.store.read(deploymentId))?.head ?? head;
}
