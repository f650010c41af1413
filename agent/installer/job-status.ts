import type { Logger } from '../adapters/json-log.js';
import type { UpdateOutcome, UpdateRequest } from '../jobs-client.js';
import type { InstallJobs } from './options.js';

/**
 * The install job's status as Jobs sees it (the Jobs MQTT API through agent/jobs-client.ts): progress on every step,
 * then one terminal status. Jobs' step timeouts and abort criteria act on what this unit tells.
 *
 * INVARIANTS
 * - Progress updates go out one after another, in the order asked; the install never waits for them and a refused
 *   one is only logged (the next step's update, or the terminal one, says more) — except that Jobs' answer that the
 *   execution ended (canceled with force, timed out: `terminal`; deleted: `not-found`) is kept (`endedByJobs`), so
 *   the install stops at its next step and goes back, instead of finishing a job Jobs has already closed.
 * - The terminal status goes out after every progress update asked before it, so Jobs never sees IN_PROGRESS after
 *   SUCCEEDED/FAILED; it is retried by the jobs client until Jobs answers, and a refusal is logged, never thrown
 *   (the install's end is already durable in the report).
 */
export class JobStatus {
  private progressChain: Promise<unknown> = Promise.resolve();
  private readonly ended = new Map<string, Exclude<UpdateOutcome, 'accepted'>>();

  constructor(private readonly parts: { readonly jobs: Pick<InstallJobs, 'update'>; readonly log: Logger }) {}

  progress(jobId: string, update: UpdateRequest): void {
    this.progressChain = this.progressChain
      .then(async () => {
        const outcome = await this.parts.jobs.update(jobId, update);
        if (outcome !== 'accepted') this.ended.set(jobId, outcome);
      })
      .catch((error: unknown) => this.parts.log.debug('progress update not accepted', { jobId, error }));
  }

  /** How Jobs answered a progress update of the job with its end, if it did. */
  endedByJobs(jobId: string): Exclude<UpdateOutcome, 'accepted'> | undefined {
    return this.ended.get(jobId);
  }

  async terminal(jobId: string, update: UpdateRequest): Promise<void> {
    await this.progressChain;
    try {
      const outcome = await this.parts.jobs.update(jobId, update);
      if (outcome !== 'accepted') this.parts.log.warn('the job had already ended', { jobId, outcome, status: update.status });
    } catch (error) {
      this.parts.log.error('the job’s final status was refused', { jobId, status: update.status, error });
    }
  }
}
