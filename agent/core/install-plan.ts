import { z } from 'zod';
import {
  DeploymentId,
  DeploymentKind,
  InstallStep,
  ReleaseVersion,
  Sha256,
  type InstallFailureReason,
  type ReleaseFile,
  type ReleaseManifest,
} from '../../schemas/deployments.js';

/**
 * The installer's plan (issue 12, item 4), pure: what the agent persists about an install under way, what it must
 * download, what it does on boot with a record it finds, and which old versions it may delete. The drivers
 * (agent/installer/*, agent/installer.ts) do the I/O and follow these decisions.
 *
 * The robot's software root (agent.json `install.root`, default `<stateDir>/software`):
 *
 *   objects/<sha256>        every file of every release once, by hash (verified when written)
 *   versions/<v>/           a complete version (renamed into place only once complete and fsynced)
 *   versions/.staging-<v>/  a version being built (never pointed at; removed or reused)
 *   current -> versions/<v> the running version (replaced atomically through `current.tmp` + rename)
 *   install.json            the InstallRecord below, while an install is under way
 *
 * The record's `step` is written *before* the step's effect (persist, then act), so it names the furthest step whose
 * effect may be on disk:
 *
 *   fetching  objects may be arriving; `current` untouched
 *   staged    versions/<v> complete (or being renamed into place); `current` untouched
 *   switched  `current` may already point at versions/<v> (or still at fromVersion: the rename may not have run)
 *   restarted the services may have been restarted on <v>
 *   verified  the health check passed: only the reports may be missing
 *
 * INVARIANTS
 * - At every instant `current` points at exactly one complete version directory (or does not exist, on a robot that
 *   never installed anything): staging never touches it, the switch replaces it with one rename, and every boot
 *   decision either leaves it, re-points it at the version the record names (only if that directory is complete) or
 *   points it back at `fromVersion` (never pruned while it can be needed).
 * - A boot decision never resumes past a step it cannot confirm on disk: a `switched` record whose version directory
 *   is incomplete is rolled back, never switched.
 * - Resuming is bounded: a record resumed MAX_INSTALL_ATTEMPTS times (a new version that kills the agent at every
 *   start) is rolled back as INTERRUPTED.
 * - Pruning never selects `current`'s version, the record's `fromVersion` or version, or the newest `keep` others.
 */

export const MAX_INSTALL_ATTEMPTS = 3;

/** The install under way, as `install.json` holds it. */
export const InstallRecord = z
  .object({
    jobId: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/),
    /** Jobs' executionNumber (a retried job runs again under a new one): part of the events' ids. */
    executionNumber: z.number().int().nonnegative(),
    deploymentId: DeploymentId,
    kind: DeploymentKind,
    version: ReleaseVersion,
    /** The version `current` pointed at before; null on a robot that ran nothing yet. */
    fromVersion: ReleaseVersion.nullable(),
    manifestSha256: Sha256,
    step: InstallStep,
    /** Epoch milliseconds of the first start. */
    startedAt: z.number().int().nonnegative(),
    /** 1 for the first run; +1 each time a boot resumes it. */
    attempt: z.number().int().min(1),
    healthCheckTimeoutSeconds: z.number().int().positive(),
    /** What this install downloaded so far (reported with UpdateSucceeded). */
    filesFetched: z.number().int().nonnegative(),
    bytesFetched: z.number().int().nonnegative(),
  })
  .strict();
export type InstallRecord = z.infer<typeof InstallRecord>;

export interface FetchPlan {
  /** One file per object the cache lacks (the first in path order when several paths share a hash). */
  readonly objects: readonly ReleaseFile[];
  readonly bytes: number;
}

/** The objects of `manifest` that the object cache lacks (`has`), each once. */
export function objectsToFetch(manifest: Pick<ReleaseManifest, 'files'>, has: (sha256: string) => boolean): FetchPlan {
  const seen = new Set<string>();
  const objects: ReleaseFile[] = [];
  let bytes = 0;
  for (const file of manifest.files) {
    if (seen.has(file.sha256) || has(file.sha256)) continue;
    seen.add(file.sha256);
    objects.push(file);
    bytes += file.size;
  }
  return { objects, bytes };
}

/** What the robot's disk says, read by the driver at boot. */
export interface DiskFacts {
  /** The version `current` points at; null when there is no `current`. */
  readonly currentVersion: string | null;
  /** Whether versions/<v> is a complete version directory. */
  readonly versionComplete: (version: string) => boolean;
}

export type BootDecision =
  /** Nothing was under way. */
  | { readonly action: 'none' }
  /** Before the switch: carry on when the job execution comes back (re-fetch what is missing, re-stage). */
  | { readonly action: 'resume'; readonly record: InstallRecord }
  /** Point `current` at the record's version again (its directory is complete), then restart and check. */
  | { readonly action: 'switch-and-check'; readonly record: InstallRecord }
  /** `current` is on the new version: restart (when `restart`) and run the health check again. */
  | { readonly action: 'check'; readonly record: InstallRecord; readonly restart: boolean }
  /** The check passed before the stop: report success. */
  | { readonly action: 'report-success'; readonly record: InstallRecord }
  /** Point `current` back at fromVersion and report the failure. */
  | { readonly action: 'roll-back'; readonly record: InstallRecord; readonly reason: InstallFailureReason; readonly detail: string };

/** The next record of a resumed install: one more attempt. */
export function resumed(record: InstallRecord): InstallRecord {
  return { ...record, attempt: record.attempt + 1 };
}

/** What to do on boot with the record found (undefined: none), given what the disk says. */
export function bootDecision(record: InstallRecord | undefined, disk: DiskFacts): BootDecision {
  if (!record) return { action: 'none' };
  const onNew = disk.currentVersion === record.version;
  if (record.step === 'verified') {
    if (onNew) return { action: 'report-success', record };
    return rollBack(record, `current points at ${disk.currentVersion ?? 'nothing'}, not the verified ${record.version}`);
  }
  if (record.attempt >= MAX_INSTALL_ATTEMPTS) {
    return rollBack(record, `the install was interrupted ${record.attempt} times at step ${record.step}`);
  }
  const next = resumed(record);
  if (record.step === 'fetching' || record.step === 'staged') {
    // `current` was never touched before the switch; if it is not fromVersion, someone else moved it.
    if (disk.currentVersion !== record.fromVersion) {
      return rollBack(record, `current points at ${disk.currentVersion ?? 'nothing'}, expected ${record.fromVersion ?? 'nothing'} before the switch`);
    }
    return { action: 'resume', record: next };
  }
  // switched or restarted: the new version's directory must be complete to run it.
  if (!disk.versionComplete(record.version)) return rollBack(record, `versions/${record.version} is not complete`);
  if (onNew) return { action: 'check', record: next, restart: record.step === 'switched' };
  if (disk.currentVersion === record.fromVersion && record.step === 'switched') return { action: 'switch-and-check', record: next };
  return rollBack(record, `current points at ${disk.currentVersion ?? 'nothing'} at step ${record.step}`);
}

function rollBack(record: InstallRecord, detail: string): BootDecision {
  return { action: 'roll-back', record, reason: 'INTERRUPTED', detail };
}

/**
 * The versions to delete: all but the `keep` newest (by `installedAt`, newest first), and never `protect`ed ones
 * (current, the rollback target, the version being installed). Pure: the driver lists and deletes.
 */
export function versionsToPrune(
  versions: readonly { readonly version: string; readonly installedAt: number }[],
  protect: readonly (string | null | undefined)[],
  keep: number,
): string[] {
  const guarded = new Set(protect.filter((v): v is string => typeof v === 'string'));
  const newestFirst = [...versions].sort((a, b) => b.installedAt - a.installedAt || (a.version < b.version ? 1 : -1));
  const kept = new Set(guarded);
  for (const { version } of newestFirst) {
    if (kept.size >= Math.max(keep, guarded.size)) break;
    kept.add(version);
  }
  return newestFirst.filter(({ version }) => !kept.has(version)).map(({ version }) => version);
}

/** The job's statusDetails for a step (Jobs shows it; strings only, as the API wants). */
export function stepStatusDetails(step: InstallStep | 'starting', version: string): Record<string, string> {
  return { step, version };
}
