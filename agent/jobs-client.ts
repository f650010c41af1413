import { randomUUID } from 'node:crypto';
import { jobsTopics } from '../schemas/deployments.js';
import type { Link, LinkConnection } from './adapters/mqtt-link.js';
import type { Logger } from './adapters/json-log.js';
import { backoffDelay } from './core/backoff.js';

/**
 * The device side of AWS IoT Jobs' MQTT API on the agent's link (AWS IoT developer guide, "Jobs device MQTT API
 * operations"): the robot hears of its next job on `$aws/things/<thing>/jobs/notify-next`, asks for it on every
 * (re)connection with DescribeJobExecution `$next` (which reads it without starting it: a robot being driven must not
 * start an install), starts it with StartNextPendingJobExecution (`start-next`, with `stepTimeoutInMinutes` and
 * `statusDetails`), and reports progress and the end with UpdateJobExecution (`<jobId>/update`, with
 * `expectedVersion`). Every request carries a clientToken; the answer on `<request>/accepted|rejected` with that token
 * settles it.
 *
 * INVARIANTS
 * - The next-job listener hears every execution the service names as next (notify-next, `$next` answers), and
 *   `undefined` when there is none; a job queued while the robot was offline is found by the `$next` asked for at
 *   each connection.
 * - `update` tracks each job's versionNumber from every answer (accepted states, rejected executionStates, described
 *   executions) and sends it as expectedVersion; a VersionMismatch refreshes it (DescribeJobExecution) and retries. A
 *   job already in a terminal state (TerminalStateReached) settles the update as `terminal`, never as an error.
 * - A request that gets no answer (link down, lost) is sent again with backoff until it is answered or the client
 *   stops: an update the robot owes Jobs is never dropped while the agent runs.
 * - Payloads from the service that are not JSON objects are logged and ignored.
 */

export type JobExecutionStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'REMOVED' | 'CANCELED';
export type TerminalJobStatus = 'SUCCEEDED' | 'FAILED' | 'REJECTED';

export interface JobExecution {
  readonly jobId: string;
  readonly status: JobExecutionStatus;
  readonly jobDocument: unknown;
  readonly versionNumber: number;
  readonly executionNumber?: number | undefined;
  readonly statusDetails?: Record<string, string> | undefined;
}

export interface UpdateRequest {
  readonly status: 'IN_PROGRESS' | TerminalJobStatus;
  readonly statusDetails?: Record<string, string>;
  readonly stepTimeoutInMinutes?: number;
}

export type UpdateOutcome = 'accepted' | 'terminal' | 'not-found';

export class JobsRequestRejected extends Error {
  override readonly name = 'JobsRequestRejected';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export interface JobsClientOptions {
  readonly link: Link;
  readonly thingName: string;
  readonly log: Logger;
  /** How long a request waits for its answer before it is sent again. Default 10 s. */
  readonly answerTimeoutMs?: number;
  readonly backoff?: { readonly baseMs: number; readonly capMs: number };
  readonly random?: () => number;
}

interface Waiter {
  readonly resolve: (answer: Answer) => void;
}

type Answer = { readonly kind: 'accepted'; readonly body: Record<string, unknown> } | { readonly kind: 'rejected'; readonly body: Record<string, unknown> };

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED']);

export class JobsClient {
  private readonly waiting = new Map<string, Waiter>();
  private readonly versions = new Map<string, number>();
  private readonly listeners = new Set<(execution: JobExecution | undefined) => void>();
  private running = false;
  private readonly onUp = (_connection: LinkConnection) => void this.askNext();

  constructor(private readonly options: JobsClientOptions) {}

  private get topics() {
    const thing = this.options.thingName;
    return {
      notifyNext: jobsTopics.notifyNext(thing),
      startNext: jobsTopics.startNext(thing),
      next: jobsTopics.describe(thing, '$next'),
      describeAny: jobsTopics.describe(thing, '+'),
      updateAny: jobsTopics.update(thing, '+'),
    };
  }

  /** Subscribes (notify-next and the answers it needs) and asks for the next job now and at every connection. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const { link } = this.options;
    const t = this.topics;
    const answers = (topic: string, payload: Buffer) => this.onAnswer(topic, payload);
    await Promise.all([
      link.subscribe(t.notifyNext, (_topic, payload) => this.onNotifyNext(payload)),
      link.subscribe(jobsTopics.accepted(t.startNext), answers),
      link.subscribe(jobsTopics.rejected(t.startNext), answers),
      // `+` covers `$next` and every job id.
      link.subscribe(jobsTopics.accepted(t.describeAny), answers),
      link.subscribe(jobsTopics.rejected(t.describeAny), answers),
      link.subscribe(jobsTopics.accepted(t.updateAny), answers),
      link.subscribe(jobsTopics.rejected(t.updateAny), answers),
    ]);
    link.on('connected', this.onUp);
    link.on('resumed', this.onUp);
    if (link.isConnected) void this.askNext();
  }

  stop(): void {
    this.running = false;
    this.options.link.off('connected', this.onUp);
    this.options.link.off('resumed', this.onUp);
    for (const waiter of this.waiting.values()) waiter.resolve({ kind: 'rejected', body: { code: 'Stopped', message: 'the jobs client stopped' } });
    this.waiting.clear();
  }

  /** Calls `listener` with every next pending execution the service names (undefined: none any more). */
  onNext(listener: (execution: JobExecution | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** Asks for the next pending execution without starting it (`$next` get); the listeners hear the answer. */
  async askNext(): Promise<void> {
    try {
      const body = await this.request(this.topics.next, { includeJobDocument: true }, { retry: false });
      this.tell(parseExecution(body['execution']));
    } catch (error) {
      if (error instanceof JobsRequestRejected && error.code === 'ResourceNotFound') return this.tell(undefined);
      if (this.running) this.options.log.debug('asking for the next job failed; the next connection asks again', { error });
    }
  }

  /** StartNextPendingJobExecution: the execution it started (or that was already in progress); undefined if none. */
  async startNext(request: { readonly stepTimeoutInMinutes?: number; readonly statusDetails?: Record<string, string> }): Promise<JobExecution | undefined> {
    const body = await this.request(this.topics.startNext, { ...request });
    return parseExecution(body['execution']);
  }

  /** DescribeJobExecution of one job (its document included); undefined if Jobs has no such execution. */
  async describe(jobId: string): Promise<JobExecution | undefined> {
    try {
      const body = await this.request(jobsTopics.describe(this.options.thingName, jobId), { includeJobDocument: true });
      return parseExecution(body['execution']);
    } catch (error) {
      if (error instanceof JobsRequestRejected && error.code === 'ResourceNotFound') return undefined;
      throw error;
    }
  }

  /** UpdateJobExecution with expectedVersion (refreshed on VersionMismatch); see the INVARIANTS. */
  async update(jobId: string, update: UpdateRequest): Promise<UpdateOutcome> {
    for (let mismatches = 0; ; mismatches += 1) {
      if (!this.versions.has(jobId)) {
        const execution = await this.describe(jobId);
        if (!execution) return 'not-found';
        if (TERMINAL.has(execution.status)) return 'terminal';
      }
      const expectedVersion = this.versions.get(jobId);
      try {
        await this.request(jobsTopics.update(this.options.thingName, jobId), {
          status: update.status,
          ...(update.statusDetails ? { statusDetails: update.statusDetails } : {}),
          ...(update.stepTimeoutInMinutes !== undefined ? { stepTimeoutInMinutes: update.stepTimeoutInMinutes } : {}),
          ...(expectedVersion !== undefined ? { expectedVersion } : {}),
          includeJobExecutionState: true,
        });
        return 'accepted';
      } catch (error) {
        if (!(error instanceof JobsRequestRejected)) throw error;
        if (error.code === 'TerminalStateReached') return 'terminal';
        if (error.code === 'ResourceNotFound') return 'not-found';
        if (error.code === 'VersionMismatch' && mismatches < 3) {
          this.versions.delete(jobId);
          continue;
        }
        throw error;
      }
    }
  }

  /** The versionNumber last seen for `jobId` (tests, logs). */
  versionOf(jobId: string): number | undefined {
    return this.versions.get(jobId);
  }

  /**
   * Publishes `payload` with a fresh clientToken on `topic` and resolves with the accepted answer (rejects with
   * JobsRequestRejected). Without an answer within the timeout (or while disconnected) it is sent again with backoff.
   */
  private async request(topic: string, payload: Record<string, unknown>, { retry = true } = {}): Promise<Record<string, unknown>> {
    const { link, log } = this.options;
    const timeoutMs = this.options.answerTimeoutMs ?? 10_000;
    const backoff = this.options.backoff ?? { baseMs: 1_000, capMs: 30_000 };
    for (let attempt = 0; ; attempt += 1) {
      if (!this.running) throw new JobsRequestRejected('Stopped', 'the jobs client stopped');
      const clientToken = randomUUID();
      const answer = new Promise<Answer | undefined>((resolve) => {
        const timer = setTimeout(() => {
          this.waiting.delete(clientToken);
          resolve(undefined);
        }, timeoutMs);
        this.waiting.set(clientToken, {
          resolve: (a) => {
            clearTimeout(timer);
            resolve(a);
          },
        });
      });
      try {
        await link.publish(topic, JSON.stringify({ ...payload, clientToken }), 1);
      } catch (error) {
        this.waiting.get(clientToken)?.resolve({ kind: 'rejected', body: { code: 'NotConnected', message: (error as Error).message } });
      }
      const settled = await answer;
      if (settled?.kind === 'accepted') return settled.body;
      const code = settled ? String(settled.body['code'] ?? 'Unknown') : 'NoAnswer';
      if (code === 'Stopped') throw new JobsRequestRejected(code, 'the jobs client stopped');
      // Not connected, lost, throttled or an internal error: the same request later. Anything else is the answer.
      const transient = code === 'NoAnswer' || code === 'NotConnected' || code === 'RequestThrottled' || code === 'InternalError';
      if (!transient || !retry) throw new JobsRequestRejected(code, String(settled?.body['message'] ?? 'no answer'));
      const delay = backoffDelay(Math.min(attempt, 10), backoff, this.options.random ?? Math.random);
      log.debug('jobs request not answered; sending it again', { topic, code, delayMs: delay });
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private onAnswer(topic: string, payload: Buffer): void {
    const body = parseObject(payload);
    if (!body) {
      this.options.log.warn('jobs answer ignored: not a JSON object', { topic });
      return;
    }
    this.learnVersion(topic, body);
    const token = typeof body['clientToken'] === 'string' ? body['clientToken'] : undefined;
    const waiter = token === undefined ? undefined : this.waiting.get(token);
    if (!waiter || token === undefined) return;
    this.waiting.delete(token);
    waiter.resolve({ kind: topic.endsWith('/accepted') ? 'accepted' : 'rejected', body });
  }

  /** Every answer that states a job's versionNumber updates what the next update expects. */
  private learnVersion(topic: string, body: Record<string, unknown>): void {
    const execution = parseExecution(body['execution']);
    if (execution) this.versions.set(execution.jobId, execution.versionNumber);
    const match = /\/jobs\/([a-zA-Z0-9_-]{1,64})\/update\/(accepted|rejected)$/.exec(topic);
    const state = body['executionState'];
    if (match && state && typeof state === 'object') {
      const version = (state as Record<string, unknown>)['versionNumber'];
      if (typeof version === 'number') this.versions.set(match[1]!, version);
    }
  }

  private onNotifyNext(payload: Buffer): void {
    const body = parseObject(payload);
    if (!body) {
      this.options.log.warn('notify-next ignored: not a JSON object');
      return;
    }
    const execution = parseExecution(body['execution']);
    if (execution) this.versions.set(execution.jobId, execution.versionNumber);
    this.tell(execution);
  }

  private tell(execution: JobExecution | undefined): void {
    for (const listener of this.listeners) {
      try {
        listener(execution);
      } catch (error) {
        this.options.log.warn('a next-job listener failed', { error });
      }
    }
  }
}

function parseObject(payload: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(payload.toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function parseExecution(value: unknown): JobExecution | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const e = value as Record<string, unknown>;
  if (typeof e['jobId'] !== 'string' || typeof e['status'] !== 'string' || typeof e['versionNumber'] !== 'number') return undefined;
  return {
    jobId: e['jobId'],
    status: e['status'] as JobExecutionStatus,
    jobDocument: e['jobDocument'],
    versionNumber: e['versionNumber'],
    executionNumber: typeof e['executionNumber'] === 'number' ? e['executionNumber'] : undefined,
    statusDetails: e['statusDetails'] && typeof e['statusDetails'] === 'object' ? (e['statusDetails'] as Record<string, string>) : undefined,
  };
}
