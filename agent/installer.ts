import { randomUUID } from 'node:crypto';
import { InstallJobDocument } from '../schemas/deployments.js';
import type { AgentEvent } from '../schemas/device.js';
import { stepStatusDetails, type InstallRecord } from './core/install-plan.js';
import type { JobExecution } from './jobs-client.js';
import { decideAtBoot, settleAtBoot } from './installer/boot-resume.js';
import { eventIdFor } from './installer/event-ids.js';
import { InstallEnding } from './installer/install-ending.js';
import { InstallSequence } from './installer/install-sequence.js';
import { InstallStore } from './installer/install-store.js';
import { JobStatus } from './installer/job-status.js';
import { ObjectCache } from './installer/object-cache.js';
import type { InstallerOptions, InstallOutcome } from './installer/options.js';
import { notTeleoperated } from './installer/teleoperation-gate.js';
import { VersionStore } from './installer/version-store.js';

// What the rest of the project imports from here (agent/main.ts, local/simulated-fleet.ts, the tests).
export { eventIdFor } from './installer/event-ids.js';
export type { InjectedFailure, InstallerOptions, InstallerSettings, InstallJobs, InstallOutcome } from './installer/options.js';
export { INSTALL_FAIL_ENV, INSTALL_KILL_AFTER_ENV, killHook } from './installer/test-hooks.js';

/**
 * The robot's installer (issue 12, item 4): takes the install jobs IoT Jobs hands the robot and carries each one to a
 * final state — fetch only the objects the cache lacks, stage `versions/<v>`, switch `current`, restart the
 * services, check their health, then report; on any failure switch back and report FAILED with the reason.
 *
 *   job (notify-next / `$next`) ─ not an InstallJobDocument ─▶ job REJECTED {reason}
 *     │ teleoperated: UpdateDeferred once, wait until the session ends
 *     ▼
 *   start-next (stepTimeoutInMinutes) ─▶ UpdateStarted ─▶ [fetching] fetch ─▶ [staged] stage ─▶ [switched] switch
 *     ─▶ [restarted] restart ─▶ health ─▶ [verified] ─▶ UpdateSucceeded + job SUCCEEDED
 *   failure at any step ─▶ switch back to fromVersion (restart it) ─▶ UpdateFailed{reason, step} + job FAILED {reason}
 *
 * This class is the driver: the job queue, the job's document, the teleoperation gate, start-next. The parts it
 * drives, each with its own invariants, live under agent/installer/: boot-resume.ts (what a stop left),
 * install-sequence.ts (the steps), install-ending.ts (success / failure, switch back, prune), job-status.ts (what
 * Jobs is told), event-ids.ts, test-hooks.ts, and wiring.ts (startAgentInstaller: the installer on a running agent).
 *
 * The robot's facts (Update*) go through `report`, the agent's durable outbox, with ids derived from the job and its
 * execution number, so a report repeated after a crash is the same event (the cloud's log drops the duplicate). The
 * job's status goes through the Jobs MQTT API (agent/jobs-client.ts), so Jobs' timeouts and abort criteria see it.
 * On every connection the robot states the version it runs (SoftwareState).
 *
 * INVARIANTS
 * - Each step is persisted (install.json, durably) before its effect, and boot follows agent/core/install-plan.ts's
 *   decision for the record it finds: `current` always names one complete version (the plan's invariant).
 * - One install at a time: jobs (and the boot decision, queued first) are handled one after another; a notification
 *   for the job already being handled, queued, or ended by this process is ignored.
 * - Every install the robot started ends with exactly one of UpdateSucceeded / UpdateFailed and a terminal job status
 *   (the update is retried until Jobs answers), unless Jobs ended the job first (then the cloud records that end).
 * - The current version and the one before it are never pruned (rollback needs it); `keepVersions` bounds the rest.
 */
export class Installer {
  readonly cache: ObjectCache;
  readonly versions: VersionStore;
  private readonly store: InstallStore;
  private readonly now: () => number;
  private readonly status: JobStatus;
  private readonly ending: InstallEnding;
  private readonly sequence: InstallSequence;
  private work: Promise<void> = Promise.resolve();
  private handling: string | undefined;
  private queued: string | undefined;
  /** A pre-switch install found at boot: it resumes when its job execution comes back. */
  private resumable: InstallRecord | undefined;
  private readonly deferred = new Set<string>();
  /**
   * Executions (job id and execution number: `executionKey`) this process carried to their end: a stale notification
   * of one (Jobs not caught up yet) is ignored; a retry of the job by IoT Jobs is a new execution number, so it runs.
   */
  private readonly finished = new Set<string>();
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private readonly outcomes = new Set<(outcome: InstallOutcome) => void>();

  constructor(private readonly options: InstallerOptions) {
    this.cache = new ObjectCache(options.settings.root);
    this.versions = new VersionStore(options.settings.root);
    this.store = new InstallStore(options.settings.root);
    this.now = options.now ?? (() => Date.now());
    this.status = new JobStatus({ jobs: options.jobs, log: options.log });
    const parts = { cache: this.cache, versions: this.versions, store: this.store, status: this.status, now: this.now };
    this.ending = new InstallEnding(options, { ...parts, ended: (outcome) => this.tell(outcome) });
    this.sequence = new InstallSequence(options, { ...parts, ending: this.ending });
  }

  /** Prepares the folders, settles an install a stop interrupted (install-plan's boot decision), then takes jobs. */
  async start(): Promise<void> {
    const decision = await decideAtBoot({ cache: this.cache, versions: this.versions, store: this.store, log: this.options.log });
    this.enqueue(async () => {
      const resume = await settleAtBoot(decision, { store: this.store, sequence: this.sequence, ending: this.ending });
      if (resume) this.resumable = resume;
    });
    this.unsubscribe = this.options.jobs.onNext((execution) => this.onNext(execution));
    await this.options.jobs.start();
  }

  /** Stops taking jobs (an install under way is cut short by the process ending; boot settles it). */
  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    this.options.jobs.stop();
  }

  /** Resolves when the work queued so far is done (tests). */
  idle(): Promise<void> {
    return this.work;
  }

  /** Hears every install's end (tests, benchmarks). */
  onOutcome(listener: (outcome: InstallOutcome) => void): () => void {
    this.outcomes.add(listener);
    return () => void this.outcomes.delete(listener);
  }

  /** The version `current` names, as SoftwareState states it on every connection. */
  async softwareStateEvent(): Promise<AgentEvent> {
    return { eventId: `sw-${randomUUID()}`, occurredAt: new Date(this.now()).toISOString(), type: 'SoftwareState', data: { version: await this.versions.currentVersion() } };
  }

  private onNext(execution: JobExecution | undefined): void {
    if (!execution || this.stopped) return;
    if (execution.jobId === this.handling || execution.jobId === this.queued || this.finished.has(executionKey(execution))) return;
    if (execution.status !== 'QUEUED' && execution.status !== 'IN_PROGRESS') return;
    this.queued = execution.jobId;
    this.enqueue(async () => {
      this.queued = undefined;
      if (this.finished.has(executionKey(execution))) return; // settled by the boot decision queued before it
      this.handling = execution.jobId;
      try {
        await this.handle(execution);
      } finally {
        this.handling = undefined;
      }
      // A notification that came while this job ran was ignored (e.g. Jobs' retry of it after FAILED): ask again.
      if (!this.stopped) await this.options.jobs.askNext();
    });
  }

  private enqueue(task: () => Promise<void>): void {
    this.work = this.work.then(task).catch((error: unknown) => this.options.log.error('installer task failed', { error }));
  }

  /** A job Jobs named: refuse it, wait out a teleoperation session, start it (or resume it), then install. */
  private async handle(execution: JobExecution): Promise<void> {
    const { jobs, log } = this.options;
    const parsed = InstallJobDocument.safeParse(execution.jobDocument);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const message = `not an install job: ${issue?.path.join('.') || '(document)'}: ${issue?.message ?? 'invalid'}`.slice(0, 500);
      log.warn('job rejected', { jobId: execution.jobId, message });
      await jobs.update(execution.jobId, { status: 'REJECTED', statusDetails: { reason: 'INVALID_DOCUMENT', message } });
      this.tell({ jobId: execution.jobId, executionNumber: execution.executionNumber, result: 'rejected' });
      return;
    }
    const document = parsed.data;
    // A pre-switch install found at boot belongs to this job, or its job ended meanwhile (current is untouched).
    let resume = this.resumable;
    this.resumable = undefined;
    if (resume && resume.jobId !== execution.jobId) {
      log.warn('the interrupted install’s job is no longer pending; dropping it', { jobId: resume.jobId });
      await this.store.clear();
      resume = undefined;
    }
    const teleoperation = this.options.teleoperation;
    if (!resume && teleoperation?.isTeleoperated()) {
      if (!this.deferred.has(execution.jobId)) {
        this.deferred.add(execution.jobId);
        await this.options.report({
          eventId: eventIdFor(execution.jobId, execution.executionNumber, 'deferred'),
          occurredAt: new Date(this.now()).toISOString(),
          type: 'UpdateDeferred',
          data: { deploymentId: document.deploymentId, jobId: execution.jobId, version: document.release.version, reason: 'teleoperation' },
        });
        log.info('update deferred: the robot is being driven', { jobId: execution.jobId });
      }
      await notTeleoperated(teleoperation);
      if (this.stopped) return;
    }
    let started: JobExecution | undefined = execution;
    const statusDetails = stepStatusDetails('starting', document.release.version);
    if (execution.status === 'QUEUED') {
      started = await jobs.startNext({ stepTimeoutInMinutes: document.policy.stepTimeoutMinutes, statusDetails });
      if (!started) return; // canceled meanwhile
      if (started.jobId !== execution.jobId) {
        // Another job came first; it is handled now, this one when Jobs names it next again.
        return this.handle(started);
      }
    } else {
      this.status.progress(execution.jobId, { status: 'IN_PROGRESS', statusDetails, stepTimeoutInMinutes: document.policy.stepTimeoutMinutes });
    }
    await this.sequence.run(document, started, resume);
  }

  private tell(outcome: InstallOutcome): void {
    this.finished.add(executionKey(outcome));
    for (const listener of this.outcomes) listener(outcome);
  }
}

/** One execution of a job: IoT Jobs gives a retry of a FAILED or TIMED_OUT execution a new execution number. */
function executionKey(execution: { readonly jobId: string; readonly executionNumber?: number | undefined }): string {
  return `${execution.jobId}#${execution.executionNumber ?? 0}`;
}
