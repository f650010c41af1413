import {
  CancelJobCommand,
  CancelJobExecutionCommand,
  CreateJobCommand,
  DescribeJobCommand,
  IoTServiceException,
  ListJobExecutionsForJobCommand,
  type AbortCriteria,
  type IoTClient,
  type RetryCriteria,
} from '@aws-sdk/client-iot';
import {
  JobsControlError,
  type JobDescription,
  type JobExecutionStatus,
  type JobExecutionSummary,
  type JobSpec,
  type JobStatus,
  type JobsControl,
} from '../app/deployments/jobs-control.js';

/**
 * AWS IoT Jobs' control plane for the deployment orchestrator (functions/app/deployments/jobs-control.ts), on the SDK's
 * IoT client: CreateJob, DescribeJob, CancelJob, ListJobExecutionsForJob and CancelJobExecution — the actions the
 * orchestrator's role needs. Targets are thing ARNs: `<thingArnPrefix><thingName>`, the prefix
 * `arn:aws:iot:<region>:<account>:thing/` from configuration (THING_ARN_PREFIX in the Lambda's environment).
 *
 * INVARIANTS
 * - createJob is idempotent by job id: IoT's ResourceAlreadyExistsException (or a ConflictException for a job id
 *   being deleted) is `{created: false}`; every job is a SNAPSHOT job (its targets are fixed at creation);
 * - describeJob of a job IoT does not know is null; cancelJob of a job already canceled or completed is a no-op
 *   (IoT's InvalidStateTransitionException for those is swallowed), as the port promises;
 * - IoT's InvalidRequestException, ResourceNotFoundException and InvalidStateTransitionException become a
 *   JobsControlError with the same code and IoT's message; any other error is rethrown as it is (the caller retries).
 */
export class IotJobsControl implements JobsControl {
  constructor(
    private readonly iot: IoTClient,
    private readonly thingArnPrefix: string,
  ) {
    if (!/^arn:[a-z0-9-]+:iot:[a-z0-9-]+:\d{12}:thing\/$/.test(thingArnPrefix)) {
      throw new Error(`THING_ARN_PREFIX "${thingArnPrefix}" is not arn:<partition>:iot:<region>:<account>:thing/`);
    }
  }

  /** From the environment: THING_ARN_PREFIX (infra sets it to `arn:aws:iot:<region>:<account>:thing/`). */
  static fromEnvironment(iot: IoTClient, env: NodeJS.ProcessEnv = process.env): IotJobsControl {
    const prefix = env.THING_ARN_PREFIX;
    if (!prefix) throw new Error('THING_ARN_PREFIX is not set (arn:aws:iot:<region>:<account>:thing/)');
    return new IotJobsControl(iot, prefix);
  }

  async createJob(spec: JobSpec): Promise<{ readonly jobId: string; readonly created: boolean }> {
    const { rollout, abort, timeout, retry } = spec;
    try {
      await this.iot.send(
        new CreateJobCommand({
          jobId: spec.jobId,
          targets: spec.thingNames.map((thingName) => `${this.thingArnPrefix}${thingName}`),
          document: JSON.stringify(spec.document),
          targetSelection: 'SNAPSHOT',
          ...(spec.description !== undefined ? { description: spec.description } : {}),
          ...(rollout
            ? {
                jobExecutionsRolloutConfig: {
                  ...(rollout.maximumPerMinute !== undefined ? { maximumPerMinute: rollout.maximumPerMinute } : {}),
                  ...(rollout.exponentialRate ? { exponentialRate: { ...rollout.exponentialRate, rateIncreaseCriteria: { ...rollout.exponentialRate.rateIncreaseCriteria } } } : {}),
                },
              }
            : {}),
          ...(abort ? { abortConfig: { criteriaList: abort.criteriaList.map((criterion): AbortCriteria => ({ ...criterion })) } } : {}),
          ...(timeout ? { timeoutConfig: { inProgressTimeoutInMinutes: timeout.inProgressTimeoutInMinutes } } : {}),
          ...(retry ? { jobExecutionsRetryConfig: { criteriaList: retry.criteriaList.map((criterion): RetryCriteria => ({ ...criterion })) } } : {}),
        }),
      );
      return { jobId: spec.jobId, created: true };
    } catch (error) {
      if (codeOf(error) === 'ResourceAlreadyExistsException' || codeOf(error) === 'ConflictException') return { jobId: spec.jobId, created: false };
      throw translated(error);
    }
  }

  async describeJob(jobId: string): Promise<JobDescription | null> {
    try {
      const { job } = await this.iot.send(new DescribeJobCommand({ jobId }));
      if (!job) return null;
      const details = job.jobProcessDetails ?? {};
      return {
        jobId,
        status: (job.status ?? 'IN_PROGRESS') as JobStatus,
        ...(job.reasonCode !== undefined ? { reasonCode: job.reasonCode } : {}),
        ...(job.comment !== undefined ? { comment: job.comment } : {}),
        processDetails: {
          numberOfQueuedThings: details.numberOfQueuedThings ?? 0,
          numberOfInProgressThings: details.numberOfInProgressThings ?? 0,
          numberOfSucceededThings: details.numberOfSucceededThings ?? 0,
          numberOfFailedThings: details.numberOfFailedThings ?? 0,
          numberOfTimedOutThings: details.numberOfTimedOutThings ?? 0,
          numberOfRejectedThings: details.numberOfRejectedThings ?? 0,
          numberOfCanceledThings: details.numberOfCanceledThings ?? 0,
          numberOfRemovedThings: details.numberOfRemovedThings ?? 0,
        },
      };
    } catch (error) {
      if (codeOf(error) === 'ResourceNotFoundException') return null;
      throw translated(error);
    }
  }

  async cancelJob(jobId: string, options: { readonly force?: boolean; readonly reasonCode?: string; readonly comment?: string } = {}): Promise<void> {
    try {
      await this.iot.send(
        new CancelJobCommand({
          jobId,
          ...(options.force !== undefined ? { force: options.force } : {}),
          ...(options.reasonCode !== undefined ? { reasonCode: options.reasonCode } : {}),
          ...(options.comment !== undefined ? { comment: options.comment } : {}),
        }),
      );
    } catch (error) {
      // Canceling a canceled or completed job: IoT refuses the transition; the port calls it a no-op.
      if (codeOf(error) === 'InvalidStateTransitionException') return;
      throw translated(error);
    }
  }

  async listExecutions(jobId: string): Promise<readonly JobExecutionSummary[]> {
    const summaries: JobExecutionSummary[] = [];
    let nextToken: string | undefined;
    try {
      do {
        const page = await this.iot.send(new ListJobExecutionsForJobCommand({ jobId, maxResults: 250, ...(nextToken ? { nextToken } : {}) }));
        for (const { thingArn, jobExecutionSummary } of page.executionSummaries ?? []) {
          const thingName = thingArn?.startsWith(this.thingArnPrefix) ? thingArn.slice(this.thingArnPrefix.length) : thingArn?.split('/').pop();
          if (!thingName || !jobExecutionSummary?.status) continue;
          summaries.push({
            thingName,
            status: jobExecutionSummary.status as JobExecutionStatus,
            ...(jobExecutionSummary.retryAttempt !== undefined ? { retryAttempt: jobExecutionSummary.retryAttempt } : {}),
          });
        }
        nextToken = page.nextToken;
      } while (nextToken);
    } catch (error) {
      throw translated(error);
    }
    return summaries;
  }

  async cancelExecution(jobId: string, thingName: string, options: { readonly force?: boolean } = {}): Promise<void> {
    try {
      await this.iot.send(new CancelJobExecutionCommand({ jobId, thingName, ...(options.force !== undefined ? { force: options.force } : {}) }));
    } catch (error) {
      throw translated(error);
    }
  }
}

/** IoT's error code of an SDK error (`name`), or undefined for anything that is not one of IoT's answers. */
function codeOf(error: unknown): string | undefined {
  return error instanceof IoTServiceException ? error.name : undefined;
}

function translated(error: unknown): unknown {
  const code = codeOf(error);
  if (code === 'InvalidRequestException' || code === 'ResourceNotFoundException' || code === 'InvalidStateTransitionException') {
    return new JobsControlError(code, `IoT Jobs: ${(error as Error).message}`, { cause: error });
  }
  return error;
}
