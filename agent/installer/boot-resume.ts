import type { Logger } from '../adapters/json-log.js';
import { bootDecision, type BootDecision, type InstallRecord } from '../core/install-plan.js';
import { InstallError } from './install-error.js';
import type { InstallEnding } from './install-ending.js';
import type { InstallSequence } from './install-sequence.js';
import type { InstallStore } from './install-store.js';
import type { ObjectCache } from './object-cache.js';
import type { VersionStore } from './version-store.js';

/**
 * Boot: what a stop (crash, power cut, SIGKILL) left of an install is settled before any job is taken. The decision
 * is agent/core/install-plan.ts's (pure); this unit reads the disk facts for it and carries it out.
 *
 * INVARIANTS
 * - The decision is made on what the disk says (install.json, `current`, the complete versions), before the
 *   leftovers of an interrupted staging are removed and before any job notification is handled.
 * - After the switch the install is finished or undone without waiting for Jobs (the robot must not stay on an
 *   unchecked version); before it, nothing was changed, so the install waits for its job execution to come back
 *   (`resume`) — the installer drops it if another job comes instead.
 * - A record that is carried on is saved again first (the plan may have advanced it, e.g. one more attempt).
 */

/** Prepares objects/ and versions/, reads install.json and decides; then removes staging leftovers. */
export async function decideAtBoot(parts: { readonly cache: ObjectCache; readonly versions: VersionStore; readonly store: InstallStore; readonly log: Logger }): Promise<BootDecision> {
  const { cache, versions, store, log } = parts;
  await cache.init();
  await versions.init();
  const record = await store.load();
  const current = await versions.currentVersion();
  const complete = new Set((await versions.list()).map((v) => v.version));
  const decision = bootDecision(record, { currentVersion: current, versionComplete: (v) => complete.has(v) });
  if (decision.action !== 'none') log.info('install found at boot', { action: decision.action, jobId: decision.record.jobId, step: decision.record.step });
  await versions.removeLeftovers();
  return decision;
}

/** Carries the boot decision out; returns the pre-switch install to resume when its job execution comes back. */
export async function settleAtBoot(
  decision: BootDecision,
  parts: { readonly store: InstallStore; readonly sequence: InstallSequence; readonly ending: InstallEnding },
): Promise<InstallRecord | undefined> {
  const { store, sequence, ending } = parts;
  switch (decision.action) {
    case 'none':
      return undefined;
    case 'resume':
      await store.save(decision.record);
      return decision.record;
    case 'switch-and-check':
      await store.save(decision.record);
      await sequence.afterStaging(decision.record, 'switched');
      return undefined;
    case 'check':
      await store.save(decision.record);
      await sequence.afterStaging(decision.record, decision.restart ? 'restarted' : 'check');
      return undefined;
    case 'report-success':
      await ending.succeed(decision.record);
      return undefined;
    case 'roll-back':
      await ending.fail(decision.record, new InstallError(decision.reason, decision.detail), decision.record.step);
      return undefined;
  }
}
