import { readFile } from 'node:fs/promises';
import { ReleaseManifest, type InstallJobDocument, type InstallStep, type ReleaseFile } from '../../schemas/deployments.js';
import { objectsToFetch, stepStatusDetails, type InstallRecord } from '../core/install-plan.js';
import type { JobExecution } from '../jobs-client.js';
import { eventIdFor } from './event-ids.js';
import { fetchObjects } from './fetcher.js';
import { runHealthChecks } from './health-check.js';
import { InstallError } from './install-error.js';
import type { InstallEnding } from './install-ending.js';
import type { InstallStore } from './install-store.js';
import type { JobStatus } from './job-status.js';
import type { ObjectCache } from './object-cache.js';
import type { InstallerOptions } from './options.js';
import { restartServices } from './restart.js';
import type { VersionStore } from './version-store.js';

/**
 * One install, forward: [fetching] fetch the objects the cache lacks ─▶ [staged] stage `versions/<v>` ─▶ [switched]
 * point `current` at it ─▶ [restarted] restart the services ─▶ health check ─▶ [verified] ─▶ InstallEnding.succeed;
 * any failure ─▶ InstallEnding.fail (which switches back). `afterStaging` is also where boot picks an interrupted
 * install up after its switch (agent/installer/boot-resume.ts).
 *
 * INVARIANTS
 * - Each step is persisted (install.json, durably) before its effect: a stop at any point leaves a record whose boot
 *   decision (agent/core/install-plan.ts) finishes or undoes exactly what was begun; `current` always names one
 *   complete version.
 * - Every run ends in exactly one InstallEnding call (succeed or fail), errors included.
 * - UpdateStarted is reported once per execution: not again for an install resumed after a stop.
 * - An injected failure (settings.injectFailure) fires only at its step, after that step is persisted (the restart's
 *   after the restart itself), so the tests exercise the same recovery a real failure there would.
 */
export class InstallSequence {
  constructor(
    private readonly options: Pick<InstallerOptions, 'settings' | 'artifacts' | 'report' | 'linkUp' | 'log' | 'afterPersist' | 'fetch' | 'fetchBackoff'>,
    private readonly parts: {
      readonly cache: ObjectCache;
      readonly versions: VersionStore;
      readonly store: InstallStore;
      readonly status: JobStatus;
      readonly ending: InstallEnding;
      readonly now: () => number;
    },
  ) {}

  /** Installs the job's release; `resume` is a pre-switch install of this job found at boot. */
  async run(document: InstallJobDocument, execution: JobExecution, resume: InstallRecord | undefined): Promise<void> {
    const { log, settings } = this.options;
    const { cache, versions, now } = this.parts;
    const fromVersion = resume ? resume.fromVersion : await versions.currentVersion();
    let record: InstallRecord = resume ?? {
      jobId: execution.jobId,
      executionNumber: execution.executionNumber ?? 0,
      deploymentId: document.deploymentId,
      kind: document.kind,
      version: document.release.version,
      fromVersion,
      manifestSha256: document.release.manifestSha256,
      step: 'fetching',
      startedAt: now(),
      attempt: 1,
      healthCheckTimeoutSeconds: document.policy.healthCheckTimeoutSeconds,
      filesFetched: 0,
      bytesFetched: 0,
    };
    try {
      const manifest = await this.manifest(record);
      if (manifest.version !== record.version) {
        throw new InstallError('STAGE_FAILED', `the manifest is of version ${manifest.version}, the job installs ${record.version}`);
      }
      if (manifest.model && settings.model && manifest.model !== settings.model) {
        throw new InstallError('MODEL_MISMATCH', `the release is for ${manifest.model}, this robot is a ${settings.model}`);
      }
      const present = await cache.present();
      const plan = objectsToFetch(manifest, (sha) => present.has(sha));
      if (!resume) {
        await this.options.report({
          eventId: eventIdFor(record.jobId, record.executionNumber, 'started'),
          occurredAt: new Date(now()).toISOString(),
          type: 'UpdateStarted',
          data: {
            deploymentId: record.deploymentId,
            jobId: record.jobId,
            version: record.version,
            kind: record.kind,
            fromVersion: record.fromVersion,
            filesToFetch: plan.objects.length,
            bytesToFetch: plan.bytes,
          },
        });
      }
      log.info('install started', { jobId: record.jobId, version: record.version, fromVersion, filesToFetch: plan.objects.length, bytesToFetch: plan.bytes, attempt: record.attempt });
      record = { ...record, step: 'fetching' };
      await this.persist(record);
      const fetched = await this.fetch(plan.objects);
      record = { ...record, filesFetched: record.filesFetched + fetched.files, bytesFetched: record.bytesFetched + fetched.bytes };
      record = { ...record, step: 'staged' };
      await this.persist(record);
      try {
        await versions.stage(manifest, record.manifestSha256, cache, now());
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOSPC') throw new InstallError('DISK_FULL', 'no space left to stage the version', { cause: error });
        throw error instanceof InstallError ? error : new InstallError('STAGE_FAILED', (error as Error).message, { cause: error });
      }
    } catch (error) {
      return this.parts.ending.fail(record, error, record.step);
    }
    return this.afterStaging(record, 'switched');
  }

  /** From `from` on: switch, restart, check, then succeed; any failure switches back. */
  async afterStaging(start: InstallRecord, from: 'switched' | 'restarted' | 'check'): Promise<void> {
    const { settings, log } = this.options;
    const { versions } = this.parts;
    let record = start;
    try {
      if (from === 'switched') {
        record = { ...record, step: 'switched' };
        await this.persist(record);
        await versions.switchTo(record.version).catch((error: unknown) => {
          throw new InstallError('SWITCH_FAILED', (error as Error).message, { cause: error });
        });
      }
      if (from !== 'check') {
        record = { ...record, step: 'restarted' };
        await this.persist(record);
        await restartServices(record.version, 'RESTART_FAILED', { settings, versions, log });
      }
      this.injectAt('restarted', record);
      const result = await runHealthChecks(
        settings.healthChecks,
        { version: record.version, versionDirectory: versions.versionPath(record.version) },
        record.healthCheckTimeoutSeconds * 1000,
        this.options.linkUp,
      );
      if (!result.ok) throw new InstallError('HEALTH_CHECK_FAILED', result.detail);
      record = { ...record, step: 'verified' };
      await this.persist(record);
    } catch (error) {
      return this.parts.ending.fail(record, error, record.step);
    }
    return this.parts.ending.succeed(record);
  }

  private async manifest(record: InstallRecord): Promise<ReleaseManifest> {
    const { cache } = this.parts;
    const sha = record.manifestSha256;
    if (!(await cache.has(sha))) await this.fetch([{ path: `manifest of ${record.version}`, sha256: sha, size: 0, mode: 0o644 }]);
    const parsed = ReleaseManifest.safeParse(JSON.parse(await readFile(cache.path(sha), 'utf8')));
    if (!parsed.success) throw new InstallError('STAGE_FAILED', `object ${sha} is not a release manifest: ${parsed.error.issues[0]?.message ?? ''}`);
    return parsed.data;
  }

  private fetch(files: readonly ReleaseFile[]) {
    return fetchObjects(files, {
      cache: this.parts.cache,
      source: this.options.artifacts,
      log: this.options.log,
      ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
      ...(this.options.fetchBackoff ? { backoff: this.options.fetchBackoff } : {}),
    });
  }

  /**
   * Writes the record durably, then tells the job (progress) and the test hook; then an injected failure may fire, and
   * an install whose job Jobs has ended meanwhile (a force cancel, a timeout, a deletion) stops, to go back.
   */
  private async persist(record: InstallRecord): Promise<void> {
    await this.parts.store.save(record);
    this.options.afterPersist?.(record.step);
    const ended = this.parts.status.endedByJobs(record.jobId);
    if (ended === 'terminal') throw new InstallError('CANCELED', 'IoT Jobs ended the job while it was installing (canceled with force, or timed out); going back');
    if (ended === 'not-found') throw new InstallError('REMOVED', 'IoT Jobs no longer has the job (deleted while it was installing); going back');
    // `verified` is told to Jobs by the final SUCCEEDED itself.
    if (record.step !== 'verified') this.parts.status.progress(record.jobId, { status: 'IN_PROGRESS', statusDetails: stepStatusDetails(record.step, record.version) });
    if (record.step !== 'restarted') this.injectAt(record.step, record);
  }

  private injectAt(step: InstallStep, record: InstallRecord): void {
    const inject = this.options.settings.injectFailure;
    if (inject && inject.step === step && record.step === step) throw new InstallError(inject.reason, `injected failure at step ${step}`);
  }
}
