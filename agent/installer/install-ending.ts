import type { InstallStep } from '../../schemas/deployments.js';
import { stepStatusDetails, versionsToPrune, type InstallRecord } from '../core/install-plan.js';
import { eventIdFor } from './event-ids.js';
import { InstallError } from './install-error.js';
import type { InstallStore } from './install-store.js';
import type { JobStatus } from './job-status.js';
import type { InstallerOptions, InstallOutcome } from './options.js';
import { restartServices } from './restart.js';
import type { VersionStore } from './version-store.js';

/**
 * The end of an install, success or failure, whether the install ran in this process or was settled at boot:
 * report the robot's fact (UpdateSucceeded / UpdateFailed) through the durable outbox, give the job its terminal
 * status, drop install.json, then tell the installer (which stops taking notifications for that job).
 *
 * INVARIANTS
 * - Order: report, terminal job status, clear install.json. A crash before the clear leaves the record, so boot ends
 *   the install again with the same event ids (eventIdFor): the cloud sees one end, Jobs an already-ended job.
 * - A failure switches `current` back to fromVersion (and restarts it) before it reports, when the switch may have
 *   happened; the reported runningVersion is what `current` names afterwards, not what was hoped for.
 * - Pruning runs only after a success, never removes `current` or fromVersion (rollback needs it), and its failure
 *   is logged, never turns the success into a failure.
 */
export class InstallEnding {
  constructor(
    private readonly options: Pick<InstallerOptions, 'settings' | 'report' | 'log'>,
    private readonly parts: {
      readonly versions: VersionStore;
      readonly store: InstallStore;
      readonly status: JobStatus;
      readonly now: () => number;
      /** The installer hears the end (after install.json is cleared). */
      readonly ended: (outcome: InstallOutcome) => void;
    },
  ) {}

  async succeed(record: InstallRecord): Promise<void> {
    const { log } = this.options;
    await this.options.report({
      eventId: eventIdFor(record.jobId, record.executionNumber, 'succeeded'),
      occurredAt: this.iso(),
      type: 'UpdateSucceeded',
      data: {
        deploymentId: record.deploymentId,
        jobId: record.jobId,
        version: record.version,
        kind: record.kind,
        fromVersion: record.fromVersion,
        filesFetched: record.filesFetched,
        bytesFetched: record.bytesFetched,
        durationMs: Math.max(0, this.parts.now() - record.startedAt),
      },
    });
    await this.parts.status.terminal(record.jobId, { status: 'SUCCEEDED', statusDetails: stepStatusDetails('verified', record.version) });
    await this.parts.store.clear();
    log.info('install succeeded', { jobId: record.jobId, version: record.version, filesFetched: record.filesFetched, bytesFetched: record.bytesFetched });
    await this.prune(record).catch((error: unknown) => log.warn('pruning old versions failed', { error }));
    this.parts.ended({ jobId: record.jobId, executionNumber: record.executionNumber, result: 'succeeded' });
  }

  /** Switches back to fromVersion when the switch may have happened, then reports the failure. */
  async fail(record: InstallRecord, error: unknown, step: InstallStep): Promise<void> {
    const { log } = this.options;
    const { versions } = this.parts;
    const failure = error instanceof InstallError ? error : new InstallError('STAGE_FAILED', (error as Error)?.message ?? String(error), { cause: error });
    const current = await versions.currentVersion();
    if (current !== record.fromVersion) {
      try {
        await versions.switchTo(record.fromVersion);
        if (record.fromVersion !== null) await restartServices(record.fromVersion, undefined, { settings: this.options.settings, versions, log });
      } catch (switchError) {
        log.error('switching back failed', { error: switchError, fromVersion: record.fromVersion });
      }
    }
    const runningVersion = await versions.currentVersion();
    log.warn('install failed', { jobId: record.jobId, reason: failure.reason, step, detail: failure.message, runningVersion });
    const detail = failure.message.slice(0, 500);
    await this.options.report({
      eventId: eventIdFor(record.jobId, record.executionNumber, 'failed'),
      occurredAt: this.iso(),
      type: 'UpdateFailed',
      data: {
        deploymentId: record.deploymentId,
        jobId: record.jobId,
        version: record.version,
        kind: record.kind,
        reason: failure.reason,
        ...(detail ? { detail } : {}),
        step,
        runningVersion,
        source: 'robot',
      },
    });
    await this.parts.status.terminal(record.jobId, { status: 'FAILED', statusDetails: { reason: failure.reason, step, ...(detail ? { detail: detail.replace(/\p{C}/gu, ' ') } : {}) } });
    await this.parts.store.clear();
    this.parts.ended({ jobId: record.jobId, executionNumber: record.executionNumber, result: 'failed', reason: failure.reason });
  }

  private async prune(record: InstallRecord): Promise<void> {
    const { versions } = this.parts;
    const current = await versions.currentVersion();
    const doomed = versionsToPrune(await versions.list(), [current, record.fromVersion], this.options.settings.keepVersions);
    for (const version of doomed) await versions.remove(version);
    if (doomed.length > 0) this.options.log.info('old versions removed', { versions: doomed });
  }

  private iso(): string {
    return new Date(this.parts.now()).toISOString();
  }
}
