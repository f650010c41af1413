import type { InstallStep } from '../../schemas/deployments.js';
import type { InjectedFailure } from './options.js';

/**
 * Test hooks read from the environment (not for robots): the kill-at-step tests and the failure drills set them on
 * a real agent process (agent/main.ts, test/support/installer-child.ts).
 */
export const INSTALL_KILL_AFTER_ENV = 'HEARTBEAT_INSTALL_KILL_AFTER';
export const INSTALL_FAIL_ENV = 'HEARTBEAT_INSTALL_FAIL';

/** HEARTBEAT_INSTALL_KILL_AFTER=<step>: SIGKILL this process right after that step is persisted (a power cut). */
export function killHook(env: NodeJS.ProcessEnv): ((step: InstallStep) => void) | undefined {
  const killAfter = env[INSTALL_KILL_AFTER_ENV];
  if (killAfter === undefined || killAfter === '') return undefined;
  return (step) => void (step === killAfter && process.kill(process.pid, 'SIGKILL'));
}

/** HEARTBEAT_INSTALL_FAIL=1: an INJECTED failure right after the restart (agent.json's injectFailure wins over it). */
export function envInjectedFailure(env: NodeJS.ProcessEnv): InjectedFailure | undefined {
  return env[INSTALL_FAIL_ENV] === '1' ? { reason: 'INJECTED', step: 'restarted' } : undefined;
}
