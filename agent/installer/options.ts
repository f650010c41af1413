import type { InstallFailureReason, InstallStep } from '../../schemas/deployments.js';
import type { AgentEvent } from '../../schemas/device.js';
import type { Logger } from '../adapters/json-log.js';
import type { JobExecution, UpdateOutcome, UpdateRequest } from '../jobs-client.js';
import type { ArtifactUrls } from './fetcher.js';
import type { HealthCheck } from './health-check.js';
import type { TeleoperationGate } from './teleoperation-gate.js';

/**
 * What the installer (agent/installer.ts) is given and what it tells: its settings, the parts it drives (jobs,
 * artifact URLs, the durable report) and the outcome of each install. Types only; the units under agent/installer/
 * take the slices they need.
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
  /** Asks Jobs for the next pending execution; the onNext listeners hear the answer. */
  askNext(): Promise<void>;
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
  /** The execution (attempt) that ended: a retry of the job by IoT Jobs is another execution number. */
  readonly executionNumber: number | undefined;
  readonly result: 'succeeded' | 'failed' | 'rejected';
  readonly reason?: InstallFailureReason | undefined;
}
