import type { Lifecycle } from '../../schemas/index.js';
import type { RobotState } from './robot-state.js';

/**
 * The robot lifecycle from the legacy spec: discovered → provisioning → ready → active → maintenance, plus offline
 * and failed. It is derived from the folded state rather than stored, so it can never disagree with the facts; the
 * table below is the contract every derived change must respect (a property test folds random histories and checks
 * each step against it).
 *
 * - discovered: known from its messages but not registered and never connected through IoT Core;
 * - provisioning: fleet provisioning admitted a certificate for it (RobotProvisioned) and it has not connected since;
 * - ready: registered, online, idle;
 * - active: someone is driving it, or it is in a software update (queued in a job, deferred, or installing: a
 *   deployment holds it from its queueing to its outcome, robot-updates.ts);
 * - maintenance: taken out of service on purpose (later);
 * - offline: not connected (whatever else is true);
 * - failed: an engineer marked it failed; only recovery leaves this state.
 */
export const LIFECYCLE_TRANSITIONS: Readonly<Record<Lifecycle, readonly Lifecycle[]>> = {
  discovered: ['provisioning', 'ready', 'active', 'offline', 'failed'],
  provisioning: ['discovered', 'ready', 'active', 'offline', 'failed'],
  // → provisioning: re-provisioned while its old session was still up (a re-image seen before the old link timed
  // out); when that session ends, the robot is waited for under its new certificate.
  ready: ['active', 'maintenance', 'offline', 'provisioning', 'failed'],
  active: ['ready', 'maintenance', 'offline', 'provisioning', 'failed'],
  maintenance: ['ready', 'offline', 'provisioning', 'failed'],
  offline: ['discovered', 'provisioning', 'ready', 'active', 'maintenance', 'failed'],
  failed: ['discovered', 'provisioning', 'ready', 'active', 'maintenance', 'offline'],
};

export function canTransition(from: Lifecycle, to: Lifecycle): boolean {
  return from === to || LIFECYCLE_TRANSITIONS[from].includes(to);
}

/**
 * Registered by the factory (RobotRegistered, or RobotProvisioned by fleet provisioning), or proven registered by
 * connecting: the thing policy admits only a certificate attached to a registered thing.
 */
export function isRegistered(state: RobotState): boolean {
  return state.registered || state.presence.last !== null;
}

export function lifecycleOf(state: RobotState): Lifecycle {
  if (state.failure) return 'failed';
  // Admitted by the hook but not yet seen online: IoT activates the certificate after the hook, and only the
  // robot's connection with it proves the provisioning went through.
  if (state.presence.status === 'offline') return state.provisioning && !state.provisioning.connected ? 'provisioning' : 'offline';
  if (!isRegistered(state)) return 'discovered';
  if (state.teleoperation.active || state.deployment) return 'active';
  return 'ready';
}

/** Online, not failed, and no active critical alert. */
export function isHealthy(state: RobotState): boolean {
  return (
    state.presence.status === 'online' &&
    !state.failure &&
    !Object.values(state.alerts).some((alert) => alert?.severity === 'critical')
  );
}

/** Healthy, not being driven, and not in the middle of a deployment. */
export function isDeployable(state: RobotState): boolean {
  return isHealthy(state) && !state.teleoperation.active && !state.deployment;
}
