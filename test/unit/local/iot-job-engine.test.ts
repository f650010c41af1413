import { describe, expect, it } from 'vitest';
import { JobsControlError, type JobSpec } from '../../../functions/app/deployments/jobs-control.js';
import { DeviceRequestRejected, JobEngine, emptyJobsState, type JobsEffect } from '../../../local/iot-jobs/job-engine.js';
import { validateJobSpec } from '../../../local/iot-jobs/job-spec.js';
import { parseJobsRequest } from '../../../local/iot-jobs/jobs-mqtt-api.js';

/**
 * The local IoT Jobs state machine (local/iot-jobs/job-engine.ts), driven by a hand-held clock: a "minute" is 1,000 ms
 * here, so every promise about minutes is checked at exact instants, without timers.
 */
const MINUTE = 1_000;
const things = (count: number) => Array.from({ length: count }, (_, index) => `lekiwi-LK${String(index + 1).padStart(4, '0')}`);
const spec = (overrides: Partial<JobSpec> = {}): JobSpec => ({ jobId: 'job-1', thingNames: things(3), document: { release: 'r1' }, ...overrides });
const engine = () => new JobEngine(emptyJobsState(), MINUTE);
const visible = (jobs: JobEngine, jobId = 'job-1') =>
  jobs.state.jobs[jobId]!.executions.filter((execution) => execution.notifiedAt !== undefined).map((execution) => execution.thingName);
const events = (effects: readonly JobsEffect[]) =>
  effects.flatMap((effect) =>
    effect.kind === 'executionEvent' ? [`${effect.execution.thingName}:${effect.operation}`] : effect.kind === 'jobEvent' ? [`job:${effect.operation}`] : [],
  );
function rejection(run: () => unknown): DeviceRequestRejected {
  try {
    run();
  } catch (error) {
    if (error instanceof DeviceRequestRejected) return error;
    throw error;
  }
  throw new Error('the request was not rejected');
}

describe('local IoT Jobs engine', () => {
  it('creates a job once: a second create with the same id is created:false and changes nothing', () => {
    const jobs = engine();
    expect(jobs.createJob(spec(), 0).created).toBe(true);
    expect(jobs.createJob(spec({ thingNames: ['xle-XL0001'] }), 5).created).toBe(false);
    expect(jobs.listExecutions('job-1').map((execution) => execution.thingName)).toEqual(things(3));
    expect(jobs.describeJob('job-1')).toMatchObject({ status: 'IN_PROGRESS', processDetails: { numberOfQueuedThings: 3 } });
    expect(jobs.describeJob('nope')).toBeNull();
  });

  it('rolls out at most maximumPerMinute per minute: the rest stay invisible to their devices until their minute', () => {
    const jobs = engine();
    jobs.createJob(spec({ thingNames: things(5), rollout: { maximumPerMinute: 2 } }), 0);
    expect(visible(jobs)).toEqual(things(2));
    expect(() => jobs.describeExecution(things(5)[2]!, 'job-1')).toThrow(DeviceRequestRejected);
    expect(jobs.nextFor(things(5)[2]!)).toBeUndefined();
    expect(jobs.nextWakeAt(10)).toBe(MINUTE);
    jobs.tick(MINUTE - 1);
    expect(visible(jobs)).toHaveLength(2);
    jobs.tick(MINUTE);
    expect(visible(jobs)).toEqual(things(4));
    jobs.tick(2 * MINUTE);
    expect(visible(jobs)).toEqual(things(5));
    expect(jobs.nextWakeAt(2 * MINUTE)).toBeUndefined();
  });

  it('raises an exponential rate by incrementFactor each time numberOfNotifiedThings were notified', () => {
    const jobs = engine();
    jobs.createJob(
      spec({ thingNames: things(20), rollout: { exponentialRate: { baseRatePerMinute: 2, incrementFactor: 2, rateIncreaseCriteria: { numberOfNotifiedThings: 2 } } } }),
      0,
    );
    // Minute 0 at the base rate; each later minute doubles it, since 2 or more were notified since the last increase.
    expect(visible(jobs)).toHaveLength(2);
    jobs.tick(MINUTE - 1);
    expect(visible(jobs)).toHaveLength(2);
    jobs.tick(MINUTE);
    expect(visible(jobs)).toHaveLength(2 + 4);
    jobs.tick(2 * MINUTE);
    expect(visible(jobs)).toHaveLength(2 + 4 + 8);
    jobs.tick(3 * MINUTE);
    expect(visible(jobs)).toHaveLength(20);
  });

  it('raises the rate on numberOfSucceededThings only when that many succeeded', () => {
    const jobs = engine();
    const names = things(10);
    jobs.createJob(spec({ thingNames: names, rollout: { exponentialRate: { baseRatePerMinute: 1, incrementFactor: 3, rateIncreaseCriteria: { numberOfSucceededThings: 1 } } } }), 0);
    jobs.tick(MINUTE);
    expect(visible(jobs)).toHaveLength(2); // nobody succeeded: still 1 per minute
    jobs.updateExecution(names[0]!, 'job-1', { status: 'SUCCEEDED' }, MINUTE + 1);
    jobs.tick(2 * MINUTE);
    expect(visible(jobs)).toHaveLength(2 + 3);
  });

  it('starts the next pending execution, QUEUED → IN_PROGRESS, versionNumber 1 → 2; nothing when none is pending', () => {
    const jobs = engine();
    jobs.createJob(spec(), 0);
    const thing = things(1)[0]!;
    const { execution, effects } = jobs.startNext(thing, { statusDetails: { step: 'download' } }, 10);
    expect(execution).toMatchObject({ jobId: 'job-1', status: 'IN_PROGRESS', versionNumber: 2, startedAt: 10, statusDetails: { step: 'download' } });
    expect(effects).toContainEqual({ kind: 'thingChanged', thingName: thing });
    jobs.updateExecution(thing, 'job-1', { status: 'SUCCEEDED' }, 20);
    expect(jobs.startNext(thing, {}, 30).execution).toBeUndefined();
  });

  it('rejects an update with a stale expectedVersion (VersionMismatch, with the current state) and changes nothing', () => {
    const jobs = engine();
    jobs.createJob(spec(), 0);
    const thing = things(1)[0]!;
    jobs.startNext(thing, {}, 10);
    const error = rejection(() => jobs.updateExecution(thing, 'job-1', { status: 'SUCCEEDED', expectedVersion: 1 }, 20));
    expect(error.code).toBe('VersionMismatch');
    expect(error.execution).toMatchObject({ status: 'IN_PROGRESS', versionNumber: 2 });
    expect(jobs.updateExecution(thing, 'job-1', { status: 'SUCCEEDED', expectedVersion: 2 }, 30).execution).toMatchObject({ status: 'SUCCEEDED', versionNumber: 3 });
  });

  it('rejects transitions a device may not make, and any update of a terminal execution', () => {
    const jobs = engine();
    jobs.createJob(spec(), 0);
    const thing = things(1)[0]!;
    jobs.startNext(thing, {}, 10);
    expect(rejection(() => jobs.updateExecution(thing, 'job-1', { status: 'QUEUED' }, 20)).code).toBe('InvalidStateTransition');
    expect(rejection(() => jobs.updateExecution(thing, 'job-1', { status: 'CANCELED' }, 20)).code).toBe('InvalidStateTransition');
    expect(rejection(() => jobs.updateExecution(thing, 'job-1', { status: 'DONE' }, 20)).code).toBe('InvalidRequest');
    jobs.updateExecution(thing, 'job-1', { status: 'FAILED', statusDetails: { reason: 'hash mismatch' } }, 30);
    const terminal = rejection(() => jobs.updateExecution(thing, 'job-1', { status: 'IN_PROGRESS' }, 40));
    expect(terminal.code).toBe('TerminalStateReached');
    expect(terminal.execution).toMatchObject({ status: 'FAILED', statusDetails: { reason: 'hash mismatch' } });
    expect(rejection(() => jobs.updateExecution(thing, 'other-job', { status: 'SUCCEEDED' }, 40)).code).toBe('ResourceNotFound');
  });

  it('completes the job once every execution is terminal, with one completed event', () => {
    const jobs = engine();
    jobs.createJob(spec({ thingNames: things(2) }), 0);
    const [a, b] = things(2) as [string, string];
    expect(events(jobs.updateExecution(a, 'job-1', { status: 'SUCCEEDED' }, 10).effects)).toEqual([`${a}:succeeded`]);
    const last = jobs.updateExecution(b, 'job-1', { status: 'REJECTED' }, 20).effects;
    expect(events(last)).toEqual([`${b}:rejected`, 'job:completed']);
    expect(jobs.describeJob('job-1')).toMatchObject({
      status: 'COMPLETED',
      processDetails: { numberOfSucceededThings: 1, numberOfRejectedThings: 1, numberOfQueuedThings: 0 },
    });
  });

  it('aborts at the threshold only once minNumberOfExecutedThings ended: queued executions canceled, in-progress ones go on', () => {
    const jobs = engine();
    const names = things(10);
    jobs.createJob(spec({ thingNames: names, abort: { criteriaList: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 50, minNumberOfExecutedThings: 4 }] } }), 0);
    jobs.startNext(names[9]!, {}, 5); // in progress while the job aborts
    jobs.updateExecution(names[0]!, 'job-1', { status: 'FAILED' }, 10);
    jobs.updateExecution(names[1]!, 'job-1', { status: 'FAILED' }, 11);
    // 2 of 2 executed failed (100 %), but fewer than 4 executed: no abort yet.
    expect(jobs.describeJob('job-1')!.status).toBe('IN_PROGRESS');
    jobs.updateExecution(names[2]!, 'job-1', { status: 'SUCCEEDED' }, 12);
    const effects = jobs.updateExecution(names[3]!, 'job-1', { status: 'SUCCEEDED' }, 13).effects; // 2 of 4 = 50 %
    expect(events(effects)).toContain('job:canceled');
    expect(jobs.describeJob('job-1')).toMatchObject({
      status: 'CANCELED',
      reasonCode: 'AUTO_CANCEL',
      processDetails: { numberOfCanceledThings: 5, numberOfInProgressThings: 1, numberOfFailedThings: 2, numberOfSucceededThings: 2 },
    });
    // The device that was in progress finishes; the canceled job does not become COMPLETED.
    const finished = jobs.updateExecution(names[9]!, 'job-1', { status: 'SUCCEEDED' }, 20);
    expect(events(finished.effects)).toEqual([`${names[9]}:succeeded`]);
    expect(jobs.describeJob('job-1')!.status).toBe('CANCELED');
  });

  it('does not abort below the threshold', () => {
    const jobs = engine();
    const names = things(4);
    jobs.createJob(spec({ thingNames: names, abort: { criteriaList: [{ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 50, minNumberOfExecutedThings: 3 }] } }), 0);
    jobs.updateExecution(names[0]!, 'job-1', { status: 'FAILED' }, 10);
    jobs.updateExecution(names[1]!, 'job-1', { status: 'SUCCEEDED' }, 11);
    jobs.updateExecution(names[2]!, 'job-1', { status: 'SUCCEEDED' }, 12); // 1 of 3 = 33 %
    expect(jobs.describeJob('job-1')!.status).toBe('IN_PROGRESS');
  });

  it('retries a failed execution as a new attempt (retryAttempt + 1, new executionNumber) up to numberOfRetries', () => {
    const jobs = engine();
    const thing = things(1)[0]!;
    jobs.createJob(spec({ thingNames: [thing], retry: { criteriaList: [{ failureType: 'FAILED', numberOfRetries: 1 }] } }), 0);
    const first = jobs.startNext(thing, {}, 1).execution!;
    const firstNumber = first.executionNumber;
    const failed = jobs.updateExecution(thing, 'job-1', { status: 'FAILED' }, 2);
    expect(failed.execution.status).toBe('FAILED');
    expect(events(failed.effects)).toEqual([`${thing}:failed`]);
    const retried = jobs.nextFor(thing)!;
    expect(retried).toMatchObject({ status: 'QUEUED', retryAttempt: 1, versionNumber: 1 });
    expect(retried.executionNumber).not.toBe(firstNumber);
    jobs.startNext(thing, {}, 3);
    const final = jobs.updateExecution(thing, 'job-1', { status: 'FAILED' }, 4);
    expect(events(final.effects)).toEqual([`${thing}:failed`, 'job:completed']);
    expect(jobs.listExecutions('job-1')).toEqual([expect.objectContaining({ status: 'FAILED', retryAttempt: 1 })]);
  });

  it('times out an execution IN_PROGRESS longer than inProgressTimeoutInMinutes, and retries it on TIMED_OUT criteria', () => {
    const jobs = engine();
    const thing = things(1)[0]!;
    jobs.createJob(spec({ thingNames: [thing], timeout: { inProgressTimeoutInMinutes: 2 }, retry: { criteriaList: [{ failureType: 'TIMED_OUT', numberOfRetries: 1 }] } }), 0);
    jobs.startNext(thing, {}, 100);
    expect(jobs.nextWakeAt(100)).toBe(100 + 2 * MINUTE);
    expect(events(jobs.tick(100 + 2 * MINUTE - 1))).toEqual([]);
    expect(events(jobs.tick(100 + 2 * MINUTE))).toEqual([`${thing}:timed_out`]);
    expect(jobs.nextFor(thing)).toMatchObject({ status: 'QUEUED', retryAttempt: 1 });
    jobs.startNext(thing, {}, 5_000);
    expect(events(jobs.tick(5_000 + 2 * MINUTE))).toEqual([`${thing}:timed_out`, 'job:completed']);
    expect(jobs.describeJob('job-1')!.processDetails.numberOfTimedOutThings).toBe(1);
  });

  it("times out on the device's step timer, which each IN_PROGRESS update with stepTimeoutInMinutes resets", () => {
    const jobs = engine();
    const thing = things(1)[0]!;
    jobs.createJob(spec({ thingNames: [thing] }), 0);
    jobs.startNext(thing, { stepTimeoutInMinutes: 1 }, 0);
    jobs.updateExecution(thing, 'job-1', { status: 'IN_PROGRESS', stepTimeoutInMinutes: 1 }, 900);
    expect(events(jobs.tick(MINUTE + 100))).toEqual([]);
    expect(events(jobs.tick(900 + MINUTE))).toEqual([`${thing}:timed_out`, 'job:completed']);
    expect(rejection(() => jobs.updateExecution(thing, 'job-1', { status: 'SUCCEEDED' }, 3_000)).code).toBe('TerminalStateReached');
  });

  it('cancels: a job (queued only, or with force in-progress too), an execution (in progress only with force)', () => {
    const jobs = engine();
    const [a, b, c] = things(3) as [string, string, string];
    jobs.createJob(spec(), 0);
    jobs.startNext(a, {}, 1);
    expect(() => jobs.cancelExecution('job-1', a, {}, 2)).toThrow(JobsControlError);
    expect(events(jobs.cancelExecution('job-1', b, {}, 2))).toEqual([`${b}:canceled`]);
    expect(events(jobs.cancelJob('job-1', { reasonCode: 'OPERATOR', comment: 'stop' }, 3))).toEqual([`${c}:canceled`, 'job:canceled']);
    expect(jobs.describeJob('job-1')).toMatchObject({ status: 'CANCELED', reasonCode: 'OPERATOR', comment: 'stop', processDetails: { numberOfInProgressThings: 1 } });
    expect(events(jobs.cancelJob('job-1', { force: true }, 4))).toEqual([`${a}:canceled`]);
    expect(rejection(() => jobs.updateExecution(a, 'job-1', { status: 'SUCCEEDED' }, 5)).code).toBe('TerminalStateReached');
    expect(events(jobs.cancelJob('job-1', { force: true }, 6))).toEqual([]);
    expect(() => jobs.cancelJob('nope', {}, 6)).toThrow(/Job nope does not exist/);
  });

  it('orders pending executions IN_PROGRESS first, then by queuedAt', () => {
    const jobs = engine();
    const thing = things(1)[0]!;
    jobs.createJob(spec({ jobId: 'older', thingNames: [thing] }), 0);
    jobs.createJob(spec({ jobId: 'newer', thingNames: [thing] }), 10);
    expect(jobs.nextFor(thing)!.jobId).toBe('older');
    jobs.updateExecution(thing, 'newer', { status: 'IN_PROGRESS' }, 20);
    expect(jobs.pendingFor(thing).map((execution) => execution.jobId)).toEqual(['newer', 'older']);
    expect(jobs.describeExecution(thing, '$next')!.jobId).toBe('newer');
    expect(jobs.describeExecution('xle-XL0009', '$next')).toBeUndefined();
  });
});

describe('local IoT Jobs spec validation', () => {
  const refused = (overrides: Partial<JobSpec>) => {
    try {
      validateJobSpec(spec(overrides));
    } catch (error) {
      expect(error).toBeInstanceOf(JobsControlError);
      expect((error as JobsControlError).code).toBe('InvalidRequestException');
      return (error as Error).message;
    }
    throw new Error('the spec was accepted');
  };

  it('accepts a spec within every limit', () => {
    expect(() =>
      validateJobSpec(
        spec({
          rollout: { maximumPerMinute: 10, exponentialRate: { baseRatePerMinute: 2, incrementFactor: 1.5, rateIncreaseCriteria: { numberOfSucceededThings: 2 } } },
          abort: { criteriaList: [{ failureType: 'ALL', action: 'CANCEL', thresholdPercentage: 20, minNumberOfExecutedThings: 5 }] },
          timeout: { inProgressTimeoutInMinutes: 10_080 },
          retry: { criteriaList: [{ failureType: 'FAILED', numberOfRetries: 10 }] },
        }),
      ),
    ).not.toThrow();
  });

  it('refuses what AWS refuses, naming the field', () => {
    expect(refused({ jobId: 'bad id!' })).toMatch(/jobId/);
    expect(refused({ jobId: 'x'.repeat(65) })).toMatch(/jobId/);
    expect(refused({ document: { blob: 'x'.repeat(33_000) } })).toMatch(/document is \d+ bytes/);
    expect(refused({ abort: { criteriaList: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 101, minNumberOfExecutedThings: 1 }] } })).toMatch(/thresholdPercentage/);
    expect(refused({ rollout: { exponentialRate: { baseRatePerMinute: 1, incrementFactor: 1.05, rateIncreaseCriteria: { numberOfNotifiedThings: 1 } } } })).toMatch(/incrementFactor/);
    expect(refused({ rollout: { exponentialRate: { baseRatePerMinute: 1, incrementFactor: 5.5, rateIncreaseCriteria: { numberOfNotifiedThings: 1 } } } })).toMatch(/incrementFactor/);
    expect(refused({ timeout: { inProgressTimeoutInMinutes: 0 } })).toMatch(/inProgressTimeoutInMinutes/);
    expect(refused({ timeout: { inProgressTimeoutInMinutes: 10_081 } })).toMatch(/inProgressTimeoutInMinutes/);
    expect(refused({ retry: { criteriaList: [{ failureType: 'FAILED', numberOfRetries: 11 }] } })).toMatch(/numberOfRetries/);
    expect(refused({ thingNames: [] })).toMatch(/thingNames/);
  });
});

describe('Jobs MQTT API topics', () => {
  it('recognizes the four request topics and calls anything else under jobs/ an invalid topic', () => {
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/get')).toEqual({ operation: 'GetPendingJobExecutions', thingName: 'lekiwi-LK0001' });
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/start-next')).toEqual({ operation: 'StartNextPendingJobExecution', thingName: 'lekiwi-LK0001' });
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/$next/get')).toEqual({ operation: 'DescribeJobExecution', thingName: 'lekiwi-LK0001', jobId: '$next' });
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/job-1/update')).toEqual({ operation: 'UpdateJobExecution', thingName: 'lekiwi-LK0001', jobId: 'job-1' });
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/job-1/frobnicate')).toEqual({ operation: 'InvalidTopic', thingName: 'lekiwi-LK0001' });
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/notify-next')).toBeUndefined();
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/jobs/job-1/update/accepted')).toBeUndefined();
    expect(parseJobsRequest('$aws/things/lekiwi-LK0001/shadow/get')).toBeUndefined();
  });
});
