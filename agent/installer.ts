import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  ARTIFACT_COMMANDS,
  InstallJobDocument,
  ReleaseManifest,
  type InstallFailureReason,
  type InstallStep,
  type ReleaseFile,
} from '../schemas/deployments.js';
import type { AgentEvent } from '../schemas/device.js';
import type { Logger } from './adapters/json-log.js';
import type { Link } from './adapters/mqtt-link.js';
import type { AgentConfig } from './config.js';
import { JobsClient } from './jobs-client.js';
import { bootDecision, objectsToFetch, stepStatusDetails, versionsToPrune, type InstallRecord } from './core/install-plan.js';
import type { JobExecution, UpdateOutcome, UpdateRequest } from './jobs-client.js';
import { CloudArtifactUrls, fetchObjects, type ArtifactUrls } from './installer/fetcher.js';
import { runCommand, runHealthChecks, type HealthCheck } from './installer/health-check.js';
import { InstallError } from './installer/install-error.js';
import { InstallStore } from './installer/install-store.js';
import { ObjectCache } from './installer/object-cache.js';
import { notTeleoperated, type TeleoperationGate } from './installer/teleoperation-gate.js';
import { VersionStore } from './installer/version-store.js';

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
 * The robot's facts (Update*) go through `report`, the agent's durable outbox, with ids derived from the job and its
 * execution number, so a report repeated after a crash is the same event (the cloud's log drops the duplicate). The
 * job's status goes through the Jobs MQTT API (agent/jobs-client.ts), so Jobs' timeouts and abort criteria see it.
 * On every connection the robot states the version it runs (SoftwareState).
 *
 * INVARIANTS
 * - Each step is persisted (install.json, durably) before its effect, and boot follows agent/core/install-plan.ts's
 *   decision for the record it finds: `current` always names one complete version (the plan's invariant).
 * - One install at a time: jobs are handled one after another; a notification for the job already being handled is
 *   ignored.
 * - Every install the robot started ends with exactly one of UpdateSucceeded / UpdateFailed and a terminal job status
 *   (the update is retried until Jobs answers), unless Jobs ended the job first (then the cloud records that end).
 * - The current version and the one before it are never pruned (rollback needs it); `keepVersions` bounds the rest.
 */

export interface InjectedFailure {
  readonly reason: InstallFailureReason;
  /** The step after whose persisting the failure happens. */
  readonly step: InstallStep;
}

export interface InstallerSettings {
  /** The software root: objects/, versions/, current, install.json. */
  readonly root: string;
  /** Shell commands run (in the new version's directory) after the switch, and after a switch back. */
  readonly restartCommands: readonly string[];
  readonly restartTimeoutMs: number;
  readonly healthChecks: readonly HealthCheck[];
  /** Complete versions kept on disk at most (current and previous always among them). */
  readonly keepVersions: number;
  readonly injectFailure?: InjectedFailure | undefined;
  /** The robot's model (from its thing name): a release for another model is refused. */
  readonly model?: string | undefined;
}

/** What the installer needs of the jobs client (agent/jobs-client.ts); tests substitute a fake. */
export interface InstallJobs {
  start(): Promise<void>;
  stop(): void;
  onNext(listener: (execution: JobExecution | undefined) => void): () => void;
  startNext(request: { readonly stepTimeoutInMinutes?: number; readonly statusDetails?: Record<string, string> }): Promise<JobExecution | undefined>;
  update(jobId: string, update: UpdateRequest): Promise<UpdateOutcome>;
}

export interface InstallerOptions {
  readonly settings: InstallerSettings;
  readonly jobs: InstallJobs;
  readonly artifacts: ArtifactUrls;
  /** The agent's durable report (agent.report). */
  readonly report: (event: AgentEvent) => Promise<void>;
  /** Whether the agent's link is up (the default health check). */
  readonly linkUp: () => boolean;
  readonly teleoperation?: TeleoperationGate | undefined;
  readonly log: Logger;
  readonly now?: () => number;
  /** Test hook: called right after a step is persisted (the kill-at-step tests SIGKILL the process there). */
  readonly afterPersist?: ((step: InstallStep) => void) | undefined;
  readonly fetch?: typeof fetch;
  /** Download retry backoff (tests make it short). */
  readonly fetchBackoff?: { readonly baseMs: number; readonly capMs: number };
}

export interface InstallOutcome {
  readonly jobId: string;
  readonly result: 'succeeded' | 'failed' | 'rejected';
  readonly reason?: InstallFailureReason | undefined;
}

export class Installer {
  readonly cache: ObjectCache;
  readonly versions: VersionStore;
  private readonly store: InstallStore;
  private readonly now: () => number;
  private work: Promise<void> = Promise.resolve();
  private handling: string | undefined;
  private queued: string | undefined;
  /** A pre-switch install found at boot: it resumes when its job execution comes back. */
  private resumable: InstallRecord | undefined;
  private readonly deferred = new Set<string>();
  /** Jobs this process carried to their end: a stale notification of one (Jobs not caught up yet) is ignored. */
  private readonly finished = new Set<string>();
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private readonly outcomes = new Set<(outcome: InstallOutcome) => void>();

  constructor(private readonly options: InstallerOptions) {
    this.cache = new ObjectCache(options.settings.root);
    this.versions = new VersionStore(options.settings.root);
    this.store = new InstallStore(options.settings.root);
    this.now = options.now ?? (() => Date.now());
  }

  /** Prepares the folders, settles an install a stop interrupted (install-plan's boot decision), then takes jobs. */
  async start(): Promise<void> {
    await this.cache.init();
    await this.versions.init();
    const record = await this.store.load();
    const current = await this.versions.currentVersion();
    const complete = new Set((await this.versions.list()).map((v) => v.version));
    const decision = bootDecision(record, { currentVersion: current, versionComplete: (v) => complete.has(v) });
    if (decision.action !== 'none') this.options.log.info('install found at boot', { action: decision.action, jobId: decision.record.jobId, step: decision.record.step });
    await this.versions.removeLeftovers();
    this.enqueue(async () => {
      switch (decision.action) {
        case 'none':
          return;
        case 'resume':
          await this.store.save(decision.record);
          this.resumable = decision.record;
          return;
        case 'switch-and-check':
          await this.store.save(decision.record);
          return this.afterStaging(decision.record, 'switched');
        case 'check':
          await this.store.save(decision.record);
          return this.afterStaging(decision.record, decision.restart ? 'restarted' : 'check');
        case 'report-success':
          return this.succeed(decision.record);
        case 'roll-back':
          return this.fail(decision.record, new InstallError(decision.reason, decision.detail), decision.record.step);
      }
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
    if (execution.jobId === this.handling || execution.jobId === this.queued || this.finished.has(execution.jobId)) return;
    if (execution.status !== 'QUEUED' && execution.status !== 'IN_PROGRESS') return;
    this.queued = execution.jobId;
    this.enqueue(async () => {
      this.queued = undefined;
      if (this.finished.has(execution.jobId)) return; // settled by the boot decision queued before it
      this.handling = execution.jobId;
      try {
        await this.handle(execution);
      } finally {
        this.handling = undefined;
      }
    });
  }

  private enqueue(task: () => Promise<void>): void {
    this.work = this.work.then(task).catch((error: unknown) => this.options.log.error('installer task failed', { error }));
  }

  private async handle(execution: JobExecution): Promise<void> {
    const { jobs, log } = this.options;
    const parsed = InstallJobDocument.safeParse(execution.jobDocument);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const message = `not an install job: ${issue?.path.join('.') || '(document)'}: ${issue?.message ?? 'invalid'}`.slice(0, 500);
      log.warn('job rejected', { jobId: execution.jobId, message });
      await jobs.update(execution.jobId, { status: 'REJECTED', statusDetails: { reason: 'INVALID_DOCUMENT', message } });
      this.tell({ jobId: execution.jobId, result: 'rejected' });
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
          occurredAt: this.iso(),
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
      this.progress(execution.jobId, { status: 'IN_PROGRESS', statusDetails, stepTimeoutInMinutes: document.policy.stepTimeoutMinutes });
    }
    await this.install(document, started, resume);
  }

  private async install(document: InstallJobDocument, execution: JobExecution, resume: InstallRecord | undefined): Promise<void> {
    const { log } = this.options;
    const fromVersion = resume ? resume.fromVersion : await this.versions.currentVersion();
    let record: InstallRecord = resume ?? {
      jobId: execution.jobId,
      executionNumber: execution.executionNumber ?? 0,
      deploymentId: document.deploymentId,
      kind: document.kind,
      version: document.release.version,
      fromVersion,
      manifestSha256: document.release.manifestSha256,
      step: 'fetching',
      startedAt: this.now(),
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
      if (manifest.model && this.options.settings.model && manifest.model !== this.options.settings.model) {
        throw new InstallError('MODEL_MISMATCH', `the release is for ${manifest.model}, this robot is a ${this.options.settings.model}`);
      }
      const present = await this.cache.present();
      const plan = objectsToFetch(manifest, (sha) => present.has(sha));
      if (!resume) {
        await this.options.report({
          eventId: eventIdFor(record.jobId, record.executionNumber, 'started'),
          occurredAt: this.iso(),
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
        await this.versions.stage(manifest, record.manifestSha256, this.cache, this.now());
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOSPC') throw new InstallError('DISK_FULL', 'no space left to stage the version', { cause: error });
        throw error instanceof InstallError ? error : new InstallError('STAGE_FAILED', (error as Error).message, { cause: error });
      }
    } catch (error) {
      return this.fail(record, error, record.step);
    }
    return this.afterStaging(record, 'switched');
  }

  /** From `from` on: switch, restart, check, then succeed; any failure switches back. */
  private async afterStaging(start: InstallRecord, from: 'switched' | 'restarted' | 'check'): Promise<void> {
    let record = start;
    try {
      if (from === 'switched') {
        record = { ...record, step: 'switched' };
        await this.persist(record);
        await this.versions.switchTo(record.version).catch((error: unknown) => {
          throw new InstallError('SWITCH_FAILED', (error as Error).message, { cause: error });
        });
      }
      if (from !== 'check') {
        record = { ...record, step: 'restarted' };
        await this.persist(record);
        await this.restart(record.version, 'RESTART_FAILED');
      }
      this.injectAt('restarted', record);
      const result = await runHealthChecks(
        this.options.settings.healthChecks,
        { version: record.version, versionDirectory: this.versions.versionPath(record.version) },
        record.healthCheckTimeoutSeconds * 1000,
        this.options.linkUp,
      );
      if (!result.ok) throw new InstallError('HEALTH_CHECK_FAILED', result.detail);
      record = { ...record, step: 'verified' };
      await this.persist(record);
    } catch (error) {
      return this.fail(record, error, record.step);
    }
    return this.succeed(record);
  }

  private async succeed(record: InstallRecord): Promise<void> {
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
        durationMs: Math.max(0, this.now() - record.startedAt),
      },
    });
    await this.terminal(record.jobId, { status: 'SUCCEEDED', statusDetails: stepStatusDetails('verified', record.version) });
    await this.store.clear();
    log.info('install succeeded', { jobId: record.jobId, version: record.version, filesFetched: record.filesFetched, bytesFetched: record.bytesFetched });
    await this.prune(record).catch((error: unknown) => log.warn('pruning old versions failed', { error }));
    this.tell({ jobId: record.jobId, result: 'succeeded' });
  }

  /** Switches back to fromVersion when the switch may have happened, then reports the failure. */
  private async fail(record: InstallRecord, error: unknown, step: InstallStep): Promise<void> {
    const { log } = this.options;
    const failure = error instanceof InstallError ? error : new InstallError('STAGE_FAILED', (error as Error)?.message ?? String(error), { cause: error });
    const current = await this.versions.currentVersion();
    if (current !== record.fromVersion) {
      try {
        await this.versions.switchTo(record.fromVersion);
        if (record.fromVersion !== null) await this.restart(record.fromVersion, undefined);
      } catch (switchError) {
        log.error('switching back failed', { error: switchError, fromVersion: record.fromVersion });
      }
    }
    const runningVersion = await this.versions.currentVersion();
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
    await this.terminal(record.jobId, { status: 'FAILED', statusDetails: { reason: failure.reason, step, ...(detail ? { detail: detail.replace(/\p{C}/gu, ' ') } : {}) } });
    await this.store.clear();
    this.tell({ jobId: record.jobId, result: 'failed', reason: failure.reason });
  }

  private async manifest(record: InstallRecord): Promise<ReleaseManifest> {
    const sha = record.manifestSha256;
    if (!(await this.cache.has(sha))) await this.fetch([{ path: `manifest of ${record.version}`, sha256: sha, size: 0, mode: 0o644 }]);
    const parsed = ReleaseManifest.safeParse(JSON.parse(await readFile(this.cache.path(sha), 'utf8')));
    if (!parsed.success) throw new InstallError('STAGE_FAILED', `object ${sha} is not a release manifest: ${parsed.error.issues[0]?.message ?? ''}`);
    return parsed.data;
  }

  private fetch(files: readonly ReleaseFile[]) {
    return fetchObjects(files, {
      cache: this.cache,
      source: this.options.artifacts,
      log: this.options.log,
      ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
      ...(this.options.fetchBackoff ? { backoff: this.options.fetchBackoff } : {}),
    });
  }

  private async restart(version: string, reason: InstallFailureReason | undefined): Promise<void> {
    const { settings } = this.options;
    for (const command of settings.restartCommands) {
      const result = await runCommand(command, { version, versionDirectory: this.versions.versionPath(version) }, settings.restartTimeoutMs);
      if (!result.ok) {
        if (reason) throw new InstallError(reason, result.detail);
        this.options.log.warn('restart command failed', { version, detail: result.detail });
      }
    }
  }

  /** Writes the record durably, then tells the job (progress) and the test hook; then an injected failure may fire. */
  private async persist(record: InstallRecord): Promise<void> {
    await this.store.save(record);
    this.options.afterPersist?.(record.step);
    // `verified` is told to Jobs by the final SUCCEEDED itself.
    if (record.step !== 'verified') this.progress(record.jobId, { status: 'IN_PROGRESS', statusDetails: stepStatusDetails(record.step, record.version) });
    if (record.step !== 'restarted') this.injectAt(record.step, record);
  }

  private injectAt(step: InstallStep, record: InstallRecord): void {
    const inject = this.options.settings.injectFailure;
    if (inject && inject.step === step && record.step === step) throw new InstallError(inject.reason, `injected failure at step ${step}`);
  }

  /** Progress updates go out in order behind each other; the install never waits for them. */
  private progressChain: Promise<unknown> = Promise.resolve();
  private progress(jobId: string, update: UpdateRequest): void {
    this.progressChain = this.progressChain
      .then(() => this.options.jobs.update(jobId, update))
      .catch((error: unknown) => this.options.log.debug('progress update not accepted', { jobId, error }));
  }

  /** The final status, after the progress updates before it; retried by the jobs client until Jobs answers. */
  private async terminal(jobId: string, update: UpdateRequest): Promise<void> {
    await this.progressChain;
    try {
      const outcome = await this.options.jobs.update(jobId, update);
      if (outcome !== 'accepted') this.options.log.warn('the job had already ended', { jobId, outcome, status: update.status });
    } catch (error) {
      this.options.log.error('the job’s final status was refused', { jobId, status: update.status, error });
    }
  }

  private async prune(record: InstallRecord): Promise<void> {
    const current = await this.versions.currentVersion();
    const doomed = versionsToPrune(await this.versions.list(), [current, record.fromVersion], this.options.settings.keepVersions);
    for (const version of doomed) await this.versions.remove(version);
    if (doomed.length > 0) this.options.log.info('old versions removed', { versions: doomed });
  }

  private tell(outcome: InstallOutcome): void {
    this.finished.add(outcome.jobId);
    for (const listener of this.outcomes) listener(outcome);
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

/** The id of an update event: the same for a report repeated after a crash, new for a retried execution. */
export function eventIdFor(jobId: string, executionNumber: number | undefined, what: 'deferred' | 'started' | 'succeeded' | 'failed'): string {
  return `upd-${jobId}-e${executionNumber ?? 0}-${what}`;
}

/** What startAgentInstaller needs of the running agent (agent/agent.ts). */
export interface InstallerHost {
  report(event: AgentEvent): Promise<void>;
  onLinkUp(listener: () => void): () => void;
  onCommand(request: string, handler: (body: unknown) => void | Promise<void>): () => void;
}

/** Test hooks read from the environment (not for robots). */
export const INSTALL_KILL_AFTER_ENV = 'HEARTBEAT_INSTALL_KILL_AFTER';
export const INSTALL_FAIL_ENV = 'HEARTBEAT_INSTALL_FAIL';

/** HEARTBEAT_INSTALL_KILL_AFTER=<step>: SIGKILL this process right after that step is persisted (a power cut). */
export function killHook(env: NodeJS.ProcessEnv): ((step: InstallStep) => void) | undefined {
  const killAfter = env[INSTALL_KILL_AFTER_ENV];
  if (killAfter === undefined || killAfter === '') return undefined;
  return (step) => void (step === killAfter && process.kill(process.pid, 'SIGKILL'));
}

/**
 * The installer on a running agent: jobs client and artifact URLs on the agent's link, reports through its outbox,
 * SoftwareState on every connection. `HEARTBEAT_INSTALL_FAIL=1` injects an INJECTED failure after the restart (unless
 * agent.json says otherwise); `HEARTBEAT_INSTALL_KILL_AFTER=<step>` SIGKILLs the process right after that step is
 * persisted (the kill-at-step tests, as a power cut would).
 */
export async function startAgentInstaller(deps: {
  readonly config: Pick<AgentConfig, 'thingName' | 'install'>;
  readonly agent: InstallerHost;
  readonly link: Link;
  readonly log: Logger;
  readonly teleoperation?: TeleoperationGate | undefined;
  readonly env?: NodeJS.ProcessEnv;
}): Promise<Installer> {
  const { config, agent, link, log } = deps;
  const env = deps.env ?? process.env;
  const settings = config.install;
  const artifacts = new CloudArtifactUrls({ link, thingName: config.thingName, log });
  agent.onCommand(ARTIFACT_COMMANDS.urls, artifacts.onReply);
  const jobs = new JobsClient({ link, thingName: config.thingName, log: log.child({ component: 'jobs' }) });
  const injectFailure = settings.injectFailure ?? (env[INSTALL_FAIL_ENV] === '1' ? { reason: 'INJECTED' as const, step: 'restarted' as const } : undefined);
  const installer = new Installer({
    settings: {
      root: settings.root,
      restartCommands: settings.restart,
      restartTimeoutMs: settings.restartTimeoutSeconds * 1000,
      healthChecks: settings.healthChecks.map((c): HealthCheck => ('command' in c ? { kind: 'command', command: c.command } : { kind: 'tcp', port: c.tcpPort, host: c.host })),
      keepVersions: settings.keepVersions,
      injectFailure,
      model: config.thingName.split('-')[0],
    },
    jobs,
    artifacts,
    report: (event) => agent.report(event),
    linkUp: () => link.isConnected,
    teleoperation: deps.teleoperation,
    log,
    afterPersist: killHook(env),
  });
  await installer.start();
  agent.onLinkUp(() => {
    installer
      .softwareStateEvent()
      .then((event) => agent.report(event))
      .catch((error: unknown) => log.warn('software state not reported', { error }));
  });
  return installer;
}
