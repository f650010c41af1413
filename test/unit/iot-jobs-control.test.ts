import {
  CancelJobCommand,
  CancelJobExecutionCommand,
  CreateJobCommand,
  DescribeJobCommand,
  InvalidRequestException,
  InvalidStateTransitionException,
  IoTClient,
  ListJobExecutionsForJobCommand,
  ResourceAlreadyExistsException,
  ResourceNotFoundException,
  ThrottlingException,
} from '@aws-sdk/client-iot';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { JobsControlError } from '../../functions/app/deployments/jobs-control.js';
import { IotJobsControl } from '../../functions/adapters/iot-jobs-control.js';

/**
 * The deployment orchestrator's IoT Jobs adapter (functions/adapters/iot-jobs-control.ts) on the SDK's IoT client.
 * IoT's control plane cannot run here, so aws-sdk-client-mock stands in for it: these tests pin the calls made, their
 * parameters, and how IoT's answers map to the JobsControl port (the local service, local/iot-jobs/, keeps the same
 * promises and is tested for real).
 */
const PREFIX = 'arn:aws:iot:eu-west-1:123456789012:thing/';
const meta = (httpStatusCode: number) => ({ $metadata: { httpStatusCode } });
const iot = mockClient(IoTClient);
const jobs = new IotJobsControl(new IoTClient({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIA', secretAccessKey: 'x' } }), PREFIX);

beforeEach(() => iot.reset());

describe('IotJobsControl', () => {
  it('creates a SNAPSHOT job on thing ARNs with the document as JSON and every config named as IoT names it', async () => {
    iot.on(CreateJobCommand).resolves({ jobId: 'dep-1-b1', jobArn: 'arn:aws:iot:eu-west-1:123456789012:job/dep-1-b1' });
    await expect(
      jobs.createJob({
        jobId: 'dep-1-b1',
        thingNames: ['lekiwi-LK0001', 'xle-XL0002'],
        document: { release: 'v2' },
        description: 'canary',
        rollout: { maximumPerMinute: 5, exponentialRate: { baseRatePerMinute: 1, incrementFactor: 2, rateIncreaseCriteria: { numberOfSucceededThings: 1 } } },
        abort: { criteriaList: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 20, minNumberOfExecutedThings: 5 }] },
        timeout: { inProgressTimeoutInMinutes: 30 },
        retry: { criteriaList: [{ failureType: 'TIMED_OUT', numberOfRetries: 2 }] },
      }),
    ).resolves.toEqual({ jobId: 'dep-1-b1', created: true });
    expect(iot.commandCalls(CreateJobCommand)[0]!.args[0].input).toEqual({
      jobId: 'dep-1-b1',
      targets: [`${PREFIX}lekiwi-LK0001`, `${PREFIX}xle-XL0002`],
      document: '{"release":"v2"}',
      targetSelection: 'SNAPSHOT',
      description: 'canary',
      jobExecutionsRolloutConfig: { maximumPerMinute: 5, exponentialRate: { baseRatePerMinute: 1, incrementFactor: 2, rateIncreaseCriteria: { numberOfSucceededThings: 1 } } },
      abortConfig: { criteriaList: [{ failureType: 'FAILED', action: 'CANCEL', thresholdPercentage: 20, minNumberOfExecutedThings: 5 }] },
      timeoutConfig: { inProgressTimeoutInMinutes: 30 },
      jobExecutionsRetryConfig: { criteriaList: [{ failureType: 'TIMED_OUT', numberOfRetries: 2 }] },
    });
  });

  it('is idempotent by job id: a job that exists is created:false', async () => {
    iot.on(CreateJobCommand).rejects(new ResourceAlreadyExistsException({ message: 'Job dep-1-b1 already exists', ...meta(409) }));
    await expect(jobs.createJob({ jobId: 'dep-1-b1', thingNames: ['lekiwi-LK0001'], document: {} })).resolves.toEqual({ jobId: 'dep-1-b1', created: false });
  });

  it("passes IoT's refusals on as JobsControlErrors with IoT's code, and anything else as it is", async () => {
    iot.on(CreateJobCommand).rejects(new InvalidRequestException({ message: 'thresholdPercentage out of range', ...meta(400) }));
    const refused = await jobs.createJob({ jobId: 'x', thingNames: ['lekiwi-LK0001'], document: {} }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(JobsControlError);
    expect(refused).toMatchObject({ code: 'InvalidRequestException', message: expect.stringContaining('thresholdPercentage') });
    iot.on(CreateJobCommand).rejects(new ThrottlingException({ message: 'slow down', ...meta(429) }));
    await expect(jobs.createJob({ jobId: 'x', thingNames: ['lekiwi-LK0001'], document: {} })).rejects.toBeInstanceOf(ThrottlingException);
  });

  it('describes a job with its process details; an unknown job is null', async () => {
    iot.on(DescribeJobCommand, { jobId: 'dep-1-b1' }).resolves({
      job: { jobId: 'dep-1-b1', status: 'CANCELED', reasonCode: 'AUTO_CANCEL', comment: 'abort', jobProcessDetails: { numberOfFailedThings: 2, numberOfSucceededThings: 3, numberOfCanceledThings: 5 } },
    });
    iot.on(DescribeJobCommand, { jobId: 'nope' }).rejects(new ResourceNotFoundException({ message: 'no job', ...meta(404) }));
    await expect(jobs.describeJob('dep-1-b1')).resolves.toEqual({
      jobId: 'dep-1-b1',
      status: 'CANCELED',
      reasonCode: 'AUTO_CANCEL',
      comment: 'abort',
      processDetails: {
        numberOfQueuedThings: 0,
        numberOfInProgressThings: 0,
        numberOfSucceededThings: 3,
        numberOfFailedThings: 2,
        numberOfTimedOutThings: 0,
        numberOfRejectedThings: 0,
        numberOfCanceledThings: 5,
        numberOfRemovedThings: 0,
      },
    });
    await expect(jobs.describeJob('nope')).resolves.toBeNull();
  });

  it('cancels with force, reason and comment; canceling a job IoT will not move again is a no-op', async () => {
    iot.on(CancelJobCommand).resolvesOnce({}).rejectsOnce(new InvalidStateTransitionException({ message: 'job is COMPLETED', ...meta(409) }));
    await jobs.cancelJob('dep-1-b1', { force: true, reasonCode: 'ROLLBACK', comment: 'threshold' });
    await expect(jobs.cancelJob('dep-1-b1')).resolves.toBeUndefined();
    expect(iot.commandCalls(CancelJobCommand).map((call) => call.args[0].input)).toEqual([
      { jobId: 'dep-1-b1', force: true, reasonCode: 'ROLLBACK', comment: 'threshold' },
      { jobId: 'dep-1-b1' },
    ]);
  });

  it('lists every page of executions by thing name', async () => {
    iot.on(ListJobExecutionsForJobCommand)
      .resolvesOnce({ executionSummaries: [{ thingArn: `${PREFIX}lekiwi-LK0001`, jobExecutionSummary: { status: 'SUCCEEDED', executionNumber: 1, retryAttempt: 0 } }], nextToken: 't2' })
      .resolvesOnce({ executionSummaries: [{ thingArn: `${PREFIX}xle-XL0002`, jobExecutionSummary: { status: 'IN_PROGRESS', executionNumber: 2 } }] });
    await expect(jobs.listExecutions('dep-1-b1')).resolves.toEqual([
      { thingName: 'lekiwi-LK0001', status: 'SUCCEEDED', retryAttempt: 0 },
      { thingName: 'xle-XL0002', status: 'IN_PROGRESS' },
    ]);
    expect(iot.commandCalls(ListJobExecutionsForJobCommand)[1]!.args[0].input).toMatchObject({ jobId: 'dep-1-b1', nextToken: 't2' });
  });

  it("cancels an execution; IoT's InvalidStateTransition (in progress without force) is a JobsControlError", async () => {
    iot.on(CancelJobExecutionCommand).resolvesOnce({}).rejectsOnce(new InvalidStateTransitionException({ message: 'IN_PROGRESS', ...meta(409) }));
    await jobs.cancelExecution('dep-1-b1', 'lekiwi-LK0001', { force: true });
    await expect(jobs.cancelExecution('dep-1-b1', 'lekiwi-LK0002')).rejects.toMatchObject({ code: 'InvalidStateTransitionException' });
    expect(iot.commandCalls(CancelJobExecutionCommand)[0]!.args[0].input).toEqual({ jobId: 'dep-1-b1', thingName: 'lekiwi-LK0001', force: true });
  });

  it('refuses a thing ARN prefix that is not one', () => {
    expect(() => new IotJobsControl(new IoTClient({ region: 'eu-west-1' }), 'arn:aws:iot:eu-west-1:123:thing')).toThrow(/THING_ARN_PREFIX/);
    expect(() => IotJobsControl.fromEnvironment(new IoTClient({ region: 'eu-west-1' }), {})).toThrow(/THING_ARN_PREFIX is not set/);
  });
});
