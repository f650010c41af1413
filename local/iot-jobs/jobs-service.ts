import { randomUUID } from 'node:crypto';
import type { JobsControl, JobSpec } from '../../functions/app/deployments/jobs-control.js';
import { JobsControlError } from '../../functions/app/deployments/jobs-control.js';
import { describeError } from '../../lib/describe-error.js';
import type { DeliverReply, ReservedTopicPatternService, ReservedTopicRequest } from '../iot-broker/reserved-topics.js';
import { DeviceRequestRejected, JobEngine, type JobsEffect, type JobsState } from './job-engine.js';
import { validateJobSpec } from './job-spec.js';
import { JobStore } from './job-store.js';
import {
  errorResponse,
  executionEvent,
  executionState,
  jobEvent,
  jobExecution,
  jobExecutionSummary,
  jobsTopics,
  listNotification,
  nextNotification,
  parseJobsRequest,
  epochSeconds,
} from './jobs-mqtt-api.js';

/**
 * The local cloud's AWS IoT Jobs: the control plane as the backend's `JobsControl` port, the device side as a
 * reserved-topic pattern service of the local broker (the Jobs MQTT API), and the notifications and job events
 * published through the broker (so topic rules see the events). The state machine is job-engine.ts; this driver
 * gives it the time, keeps its timer, persists its state (job-store.ts) and carries out its effects.
 *
 * INVARIANTS
 * - one operation at a time (control-plane call, device request, timer tick), in arrival order: each sees the state
 *   the previous one left;
 * - an operation's state is saved before anyone hears of it: the reply, the notifications and the events go out only
 *   after the save, so a restart never forgets what a device or a rule was told;
 * - the timer is armed for the engine's next wake-up after every operation (and at start, from the stored deadlines:
 *   what fell due while the local cloud was down happens at once); after `stop()` no timer is left and every call fails;
 * - `notify-next` goes out whenever the thing's next pending execution (by job id and execution number) is another
 *   than the one last announced (`{timestamp}` alone when none is left); `notify` whenever its pending list changed;
 * - a publish that fails (broker down) is logged, never undoes the operation.
 */

export interface LocalIotJobsOptions {
  /** Publishes through the broker (IotBroker.publish: subscribers and topic rules). May fail until the broker is up. */
  readonly publish: (topic: string, payload: unknown) => Promise<void>;
  /** Where the jobs are kept across restarts (`<stateDir>/iot-jobs.json`); in memory only when absent. */
  readonly stateDir?: string;
  /** Whether a thing exists (the thing registry); every thing exists when absent. */
  readonly thingExists?: (thingName: string) => Promise<boolean>;
  /** The ARN prefix of things in events, default `arn:aws:iot:<region>:000000000000:thing/`. */
  readonly thingArnPrefix?: string;
  /** How long a "minute" is (rollout rates, timeouts), default 60,000 ms; tests shrink it. */
  readonly minuteMs?: number;
  /**
   * The clock, default Date.now. The timer waits (real setTimeout) until the engine's next deadline by this clock; the
   * engine itself is tested with a hand-held clock (test/unit/local/iot-job-engine.test.ts).
   */
  readonly now?: () => number;
  readonly log?: (entry: { level: 'debug' | 'info' | 'warn' | 'error'; message: string; [detail: string]: unknown }) => void;
}

export interface LocalIotJobs extends JobsControl {
  /** The Jobs MQTT API, for the broker's `reservedTopicPatternServices`. */
  readonly mqtt: ReservedTopicPatternService;
  /** Carries out what is due (timeouts, rollouts) and arms the timer. */
  start(): Promise<void>;
  /** Resolves once every operation so far and its publishes are done (tests). */
  idle(): Promise<void>;
  /** Clears the timer; waits for the operation under way. */
  stop(): Promise<void>;
}

/** The local cloud's region (LOCAL_AWS.region) and account, as its other ARNs (local/fleet-provisioning.ts). */
export const DEFAULT_THING_ARN_PREFIX = 'arn:aws:iot:eu-west-1:000000000000:thing/';

/**
 * Loads the stored jobs; nothing is due yet: `start()` then carries out what fell due while the local cloud was down
 * and arms the timer (call it once the broker is up, so those events reach the rules).
 */
export async function openLocalIotJobs(options: LocalIotJobsOptions): Promise<LocalIotJobs> {
  const store = options.stateDir ? JobStore.in(options.stateDir) : undefined;
  const state = store ? await store.load() : undefined;
  return new LocalIotJobsService(options, store, state);
}

/** openLocalIotJobs, then start(). */
export async function startLocalIotJobs(options: LocalIotJobsOptions): Promise<LocalIotJobs> {
  const service = await openLocalIotJobs(options);
  await service.start();
  return service;
}

class LocalIotJobsService implements LocalIotJobs {
  readonly engine: JobEngine;
  readonly mqtt: ReservedTopicPatternService;
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** What each thing was last told on notify-next (`jobId#executionNumber`, '' for none) and on notify. */
  private readonly announcedNext = new Map<string, string>();
  private readonly announcedList = new Map<string, string>();
  private readonly log: NonNullable<LocalIotJobsOptions['log']>;
  private readonly thingArnPrefix: string;
  readonly now: () => number;

  constructor(
    private readonly options: LocalIotJobsOptions,
    private readonly store: JobStore | undefined,
    state: JobsState | undefined,
  ) {
    const minuteMs = options.minuteMs ?? 60_000;
    if (!(minuteMs > 0)) throw new Error(`minuteMs must be positive (got ${minuteMs})`);
    this.engine = new JobEngine(state ?? { version: 1, nextExecutionNumber: 1, jobs: {} }, minuteMs);
    this.now = options.now ?? Date.now;
    this.log = options.log ?? ((entry) => (entry.level === 'warn' || entry.level === 'error' ? console.error(JSON.stringify({ component: 'iot-jobs', ...entry })) : undefined));
    this.thingArnPrefix = options.thingArnPrefix ?? DEFAULT_THING_ARN_PREFIX;
    this.mqtt = {
      name: 'IoT Jobs',
      answers: (topic) => parseJobsRequest(topic) !== undefined,
      handle: (request, reply) => this.handleDeviceRequest(request, reply),
    };
  }

  // ---- JobsControl -------------------------------------------------------------------------------------------------

  async createJob(spec: JobSpec): Promise<{ readonly jobId: string; readonly created: boolean }> {
    validateJobSpec(spec);
    if (this.options.thingExists) {
      for (const thingName of spec.thingNames) {
        if (!(await this.options.thingExists(thingName))) throw new JobsControlError('ResourceNotFoundException', `Thing ${thingName} does not exist (job ${spec.jobId})`);
      }
    }
    return this.exclusive(async (now) => {
      const { created, effects } = this.engine.createJob(structuredClone(spec), now);
      return { result: { jobId: spec.jobId, created }, effects };
    });
  }

  describeJob(jobId: string) {
    return this.exclusive(async () => ({ result: this.engine.describeJob(jobId), effects: [] }));
  }

  async cancelJob(jobId: string, options: { readonly force?: boolean; readonly reasonCode?: string; readonly comment?: string } = {}): Promise<void> {
    await this.exclusive(async (now) => ({ result: undefined, effects: this.engine.cancelJob(jobId, options, now) }));
  }

  listExecutions(jobId: string) {
    return this.exclusive(async () => ({ result: this.engine.listExecutions(jobId), effects: [] }));
  }

  async cancelExecution(jobId: string, thingName: string, options: { readonly force?: boolean } = {}): Promise<void> {
    await this.exclusive(async (now) => ({ result: undefined, effects: this.engine.cancelExecution(jobId, thingName, options, now) }));
  }

  async start(): Promise<void> {
    await this.exclusive(async (now) => ({ result: undefined, effects: this.engine.tick(now) }));
  }

  async idle(): Promise<void> {
    let seen: Promise<unknown> | undefined;
    while (seen !== this.queue) {
      seen = this.queue;
      await seen.catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.idle();
  }

  // ---- the one-at-a-time runner ------------------------------------------------------------------------------------

  /**
   * Runs `operation` after every earlier one; saves the state if it produced effects or a change, then `deliver`s
   * (a device reply), then carries out the effects, then re-arms the timer.
   */
  exclusive<T>(operation: (now: number) => Promise<{ result: T; effects: readonly JobsEffect[]; deliver?: () => Promise<void> }>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.stopped) throw new Error('The local IoT Jobs service is stopped');
      const { result, effects, deliver } = await operation(this.now());
      if (effects.length > 0 || deliver) await this.store?.save(this.engine.state);
      if (deliver) await deliver().catch((error: unknown) => this.log({ level: 'warn', message: 'IoT Jobs reply not delivered', error: describeError(error) }));
      await this.carryOut(effects);
      this.arm();
      return result;
    };
    const done = this.queue.then(run, run);
    this.queue = done.catch(() => undefined);
    return done;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    const wake = this.engine.nextWakeAt(this.now());
    if (wake === undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.exclusive(async (now) => ({ result: undefined, effects: this.engine.tick(now) })).catch((error: unknown) => {
          if (!this.stopped) this.log({ level: 'error', message: 'IoT Jobs timer failed', error: describeError(error) });
        });
      },
      Math.max(0, wake - this.now()),
    );
    this.timer.unref?.();
  }

  private async carryOut(effects: readonly JobsEffect[]): Promise<void> {
    const now = this.now();
    const things = new Set<string>();
    for (const effect of effects) {
      if (effect.kind === 'thingChanged') things.add(effect.thingName);
      else if (effect.kind === 'executionEvent') {
        const { execution, operation } = effect;
        await this.send(jobsTopics.executionEvent(execution.jobId, operation), executionEvent(operation, execution, this.thingArn(execution.thingName), randomUUID(), now));
      } else {
        await this.send(jobsTopics.jobEvent(effect.job.spec.jobId, effect.operation), jobEvent(effect.operation, effect.job, (name) => this.thingArn(name), randomUUID(), now));
      }
    }
    for (const thingName of things) await this.announce(thingName, now);
  }

  /** notify and notify-next for the thing, when what it was last told changed. */
  private async announce(thingName: string, now: number): Promise<void> {
    const pending = this.engine.pendingFor(thingName);
    const list = JSON.stringify(pending.map((execution) => [execution.jobId, execution.executionNumber, execution.status]));
    if (this.announcedList.get(thingName) !== list) {
      this.announcedList.set(thingName, list);
      await this.send(jobsTopics.notify(thingName), listNotification(pending, now));
    }
    const next = pending[0];
    const nextKey = next ? `${next.jobId}#${next.executionNumber}` : '';
    if (this.announcedNext.get(thingName) !== nextKey) {
      this.announcedNext.set(thingName, nextKey);
      const job = next ? this.engine.state.jobs[next.jobId] : undefined;
      await this.send(jobsTopics.notifyNext(thingName), nextNotification(next && job ? { execution: next, job } : undefined, now));
    }
  }

  private async send(topic: string, payload: Record<string, unknown>): Promise<void> {
    try {
      await this.options.publish(topic, payload);
    } catch (error) {
      this.log({ level: 'warn', message: 'IoT Jobs message not published', topic, error: describeError(error) });
    }
  }

  private thingArn(thingName: string): string {
    return `${this.thingArnPrefix}${thingName}`;
  }

  // ---- the Jobs MQTT API -----------------------------------------------------------------------------------------

  private async handleDeviceRequest(request: ReservedTopicRequest, reply: DeliverReply): Promise<void> {
    const parsed = parseJobsRequest(request.topic);
    if (!parsed) return;
    const accepted = (body: Record<string, unknown>) => reply(`${request.topic}/accepted`, body);
    const rejected = (body: Record<string, unknown>) => reply(`${request.topic}/rejected`, body);
    let body: Record<string, unknown>;
    try {
      const text = request.payload.toString('utf8').trim();
      const value: unknown = text === '' ? {} : JSON.parse(text);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
      body = value as Record<string, unknown>;
    } catch (error) {
      await rejected(errorResponse('InvalidJson', `The request is not a JSON object (${describeError(error)})`, this.now(), undefined));
      return;
    }
    const clientToken = typeof body.clientToken === 'string' ? body.clientToken : undefined;
    const token = clientToken !== undefined ? { clientToken } : {};
    if (parsed.thingName !== request.clientId) {
      // The thing policy lets a robot publish only to its own jobs topics; this is the service's own guard.
      await rejected(errorResponse('InvalidRequest', `${request.clientId} may not act for ${parsed.thingName}`, this.now(), clientToken));
      return;
    }
    const { thingName } = parsed;
    await this.exclusive(async (now) => {
      const reject = (error: unknown) => {
        if (error instanceof DeviceRequestRejected) return { result: undefined, effects: [], deliver: () => rejected(errorResponse(error.code, error.message, now, clientToken, error.execution)) };
        throw error;
      };
      try {
        switch (parsed.operation) {
          case 'InvalidTopic':
            return { result: undefined, effects: [], deliver: () => rejected(errorResponse('InvalidTopic', `${request.topic} is not a Jobs API request topic`, now, clientToken)) };
          case 'GetPendingJobExecutions': {
            const pending = this.engine.pendingFor(thingName);
            const summaries = (status: string) => pending.filter((execution) => execution.status === status).map(jobExecutionSummary);
            return {
              result: undefined,
              effects: [],
              deliver: () => accepted({ inProgressJobs: summaries('IN_PROGRESS'), queuedJobs: summaries('QUEUED'), timestamp: epochSeconds(now), ...token }),
            };
          }
          case 'DescribeJobExecution': {
            const executionNumber = optionalInteger(body, 'executionNumber');
            const execution = this.engine.describeExecution(thingName, parsed.jobId, executionNumber);
            const job = execution ? this.engine.state.jobs[execution.jobId] : undefined;
            const includeJobDocument = body.includeJobDocument !== false;
            const snapshot = execution && job ? { execution: jobExecution(execution, job, { includeJobDocument }) } : {};
            return { result: undefined, effects: [], deliver: () => accepted({ ...snapshot, timestamp: epochSeconds(now), ...token }) };
          }
          case 'StartNextPendingJobExecution': {
            const statusDetails = optionalDetails(body);
            const stepTimeoutInMinutes = optionalInteger(body, 'stepTimeoutInMinutes');
            const { execution, effects } = this.engine.startNext(thingName, { ...(statusDetails ? { statusDetails } : {}), ...(stepTimeoutInMinutes !== undefined ? { stepTimeoutInMinutes } : {}) }, now);
            const job = execution ? this.engine.state.jobs[execution.jobId] : undefined;
            const snapshot = execution && job ? jobExecution(execution, job) : undefined;
            return { result: undefined, effects, deliver: () => accepted({ ...(snapshot ? { execution: snapshot } : {}), timestamp: epochSeconds(now), ...token }) };
          }
          case 'UpdateJobExecution': {
            if (typeof body.status !== 'string') throw new DeviceRequestRejected('InvalidRequest', 'status is required');
            const statusDetails = optionalDetails(body);
            const expectedVersion = optionalInteger(body, 'expectedVersion');
            const executionNumber = optionalInteger(body, 'executionNumber');
            const stepTimeoutInMinutes = optionalInteger(body, 'stepTimeoutInMinutes');
            const { execution, effects } = this.engine.updateExecution(
              thingName,
              parsed.jobId,
              {
                status: body.status,
                ...(statusDetails ? { statusDetails } : {}),
                ...(expectedVersion !== undefined ? { expectedVersion } : {}),
                ...(executionNumber !== undefined ? { executionNumber } : {}),
                ...(stepTimeoutInMinutes !== undefined ? { stepTimeoutInMinutes } : {}),
              },
              now,
            );
            const job = this.engine.state.jobs[parsed.jobId]!;
            const reply = {
              ...(body.includeJobExecutionState === true ? { executionState: executionState(execution) } : {}),
              ...(body.includeJobDocument === true ? { jobDocument: job.spec.document } : {}),
              timestamp: epochSeconds(now),
              ...token,
            };
            return { result: undefined, effects, deliver: () => accepted(reply) };
          }
        }
      } catch (error) {
        return reject(error);
      }
    });
  }
}

function optionalInteger(body: Record<string, unknown>, field: string): number | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new DeviceRequestRejected('InvalidRequest', `${field} must be an integer`);
  return value;
}

function optionalDetails(body: Record<string, unknown>): Record<string, string> | undefined {
  const value = body.statusDetails;
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DeviceRequestRejected('InvalidRequest', 'statusDetails must be an object of strings');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 10) throw new DeviceRequestRejected('InvalidRequest', 'statusDetails holds at most 10 name/value pairs');
  for (const [key, detail] of entries) {
    if (!/^[a-zA-Z0-9:_-]{1,128}$/.test(key) || typeof detail !== 'string' || detail.length === 0 || detail.length > 1024) {
      throw new DeviceRequestRejected('InvalidRequest', `statusDetails.${key} must be a string of 1–1024 characters under a key of letters, digits, :, _ or -`);
    }
  }
  return value as Record<string, string>;
}
