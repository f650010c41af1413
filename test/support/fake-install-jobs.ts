import { readFileSync, writeFileSync } from 'node:fs';
import type { InstallJobs } from '../../agent/installer.js';
import type { JobExecution, UpdateOutcome, UpdateRequest } from '../../agent/jobs-client.js';

/**
 * An in-memory IoT Jobs for one robot, as the installer sees it (agent/installer.ts InstallJobs): a queue of job
 * executions with AWS's statuses and rules (start-next starts the first pending one; an update of a terminal execution
 * is `terminal`; a job queued with `retries` is queued again as a new execution number after FAILED, and the robot told
 * at once, as Jobs' retry criteria do). With `file`, the executions are kept in that JSON file, so a test's child process that is SIGKILLed
 * and started again finds its job where Jobs would have it.
 */
export class FakeInstallJobs implements InstallJobs {
  private listener: ((execution: JobExecution | undefined) => void) | undefined;
  readonly updates: { jobId: string; update: UpdateRequest }[] = [];
  private executions: JobExecution[] = [];
  private readonly retriesLeft = new Map<string, number>();

  constructor(private readonly file?: string) {
    if (file) {
      try {
        this.executions = JSON.parse(readFileSync(file, 'utf8')) as JobExecution[];
      } catch {
        this.executions = [];
      }
    }
  }

  /** Queues a job and tells the robot (notify-next) if it is the next one. */
  queue(jobId: string, jobDocument: unknown, options: { readonly retries?: number } = {}): void {
    if (options.retries) this.retriesLeft.set(jobId, options.retries);
    this.executions.push({ jobId, status: 'QUEUED', jobDocument, versionNumber: 1, executionNumber: this.executions.length + 1 });
    this.save();
    if (this.next()?.jobId === jobId) this.listener?.(this.next());
  }

  /** CancelJob with force (or CancelJobExecution with force) on an execution, whatever its state: it is CANCELED. */
  forceCancel(jobId: string): void {
    const execution = this.execution(jobId);
    if (execution) this.replace({ ...execution, status: 'CANCELED', versionNumber: execution.versionNumber + 1 });
  }

  status(jobId: string): string | undefined {
    return this.executions.find((e) => e.jobId === jobId)?.status;
  }

  execution(jobId: string): JobExecution | undefined {
    return this.executions.find((e) => e.jobId === jobId);
  }

  async start(): Promise<void> {
    // As the jobs client does on every connection: ask for the next pending execution.
    queueMicrotask(() => this.listener?.(this.next()));
  }
  stop(): void {
    this.listener = undefined;
  }
  onNext(listener: (execution: JobExecution | undefined) => void): () => void {
    this.listener = listener;
    return () => void (this.listener = undefined);
  }
  async askNext(): Promise<void> {
    this.listener?.(this.next());
  }
  async startNext(): Promise<JobExecution | undefined> {
    const next = this.next();
    if (!next) return undefined;
    this.replace({ ...next, status: 'IN_PROGRESS', versionNumber: next.versionNumber + 1 });
    return this.execution(next.jobId);
  }
  async update(jobId: string, update: UpdateRequest): Promise<UpdateOutcome> {
    this.updates.push({ jobId, update });
    const execution = this.execution(jobId);
    if (!execution) return 'not-found';
    if (!['QUEUED', 'IN_PROGRESS'].includes(execution.status)) return 'terminal';
    this.replace({ ...execution, status: update.status, statusDetails: update.statusDetails, versionNumber: execution.versionNumber + 1 });
    const retries = this.retriesLeft.get(jobId) ?? 0;
    if (update.status === 'FAILED' && retries > 0) {
      this.retriesLeft.set(jobId, retries - 1);
      const executionNumber = Math.max(...this.executions.map((e) => e.executionNumber ?? 0)) + 1;
      this.replace({ ...execution, status: 'QUEUED', statusDetails: undefined, versionNumber: 1, executionNumber });
      this.listener?.(this.next()); // at once, while the robot is still ending the failed attempt
      return 'accepted';
    }
    if (update.status !== 'IN_PROGRESS') queueMicrotask(() => this.listener?.(this.next()));
    return 'accepted';
  }

  private next(): JobExecution | undefined {
    return this.executions.find((e) => e.status === 'IN_PROGRESS') ?? this.executions.find((e) => e.status === 'QUEUED');
  }
  private replace(execution: JobExecution): void {
    this.executions = this.executions.map((e) => (e.jobId === execution.jobId ? execution : e));
    this.save();
  }
  private save(): void {
    if (this.file) writeFileSync(this.file, JSON.stringify(this.executions));
  }
}
