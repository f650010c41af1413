/**
 * The control-plane side of AWS IoT Jobs as the deployment orchestrator uses it (issue 12): one port, two adapters —
 * functions/adapters/iot-jobs-control.ts on @aws-sdk/client-iot (CreateJob, DescribeJob, CancelJob,
 * ListJobExecutionsForJob, CancelJobExecution) and the local cloud's in-process IoT Jobs (local/iot-jobs/), which
 * keeps the same promises: rollout rate, abort criteria, in-progress and step timeouts, retries, and job / job
 * execution events on `$aws/events/job/<jobId>/<event>` and `$aws/events/jobExecution/<jobId>/<event>`.
 *
 * The shapes follow the AWS API's names (camelCase) so an engineer who knows IoT Jobs reads them as such.
 */

/** IoT job ids: letters, digits, `-` and `_`, at most 64. */
export const JOB_ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

export type JobExecutionStatus =
  | 'QUEUED'
  | 'IN_PROGRESS'
  | 'SUCCEEDED'
  | 'FAILED'
  | 'TIMED_OUT'
  | 'REJECTED'
  | 'REMOVED'
  | 'CANCELED';

export const TERMINAL_EXECUTION_STATUSES: readonly JobExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED'];

export type JobStatus = 'IN_PROGRESS' | 'CANCELED' | 'DELETION_IN_PROGRESS' | 'COMPLETED';

export interface JobRolloutConfig {
  /** At most this many executions are notified (made visible to devices) per minute. */
  readonly maximumPerMinute?: number;
  readonly exponentialRate?: {
    readonly baseRatePerMinute: number;
    /** 1.1 – 5.0 */
    readonly incrementFactor: number;
    readonly rateIncreaseCriteria: { readonly numberOfNotifiedThings?: number; readonly numberOfSucceededThings?: number };
  };
}

export interface JobAbortCriteria {
  readonly failureType: 'FAILED' | 'REJECTED' | 'TIMED_OUT' | 'ALL';
  readonly action: 'CANCEL';
  /** 0 – 100 */
  readonly thresholdPercentage: number;
  /** The criterion is checked only once at least this many executions reached a terminal state. */
  readonly minNumberOfExecutedThings: number;
}

export interface JobRetryCriteria {
  readonly failureType: 'FAILED' | 'TIMED_OUT' | 'ALL';
  /** 0 – 10 */
  readonly numberOfRetries: number;
}

export interface JobSpec {
  readonly jobId: string;
  readonly thingNames: readonly string[];
  /** The job document the device gets (at most 32 KB as JSON). */
  readonly document: Record<string, unknown>;
  readonly description?: string;
  readonly rollout?: JobRolloutConfig;
  readonly abort?: { readonly criteriaList: readonly JobAbortCriteria[] };
  /** An execution IN_PROGRESS longer than this goes TIMED_OUT (1 – 10080). */
  readonly timeout?: { readonly inProgressTimeoutInMinutes: number };
  readonly retry?: { readonly criteriaList: readonly JobRetryCriteria[] };
}

export interface JobDescription {
  readonly jobId: string;
  readonly status: JobStatus;
  /** Why the job was canceled: `AUTO_CANCEL` by an abort criterion, or the reasonCode given to cancelJob. */
  readonly reasonCode?: string;
  readonly comment?: string;
  readonly processDetails: {
    readonly numberOfQueuedThings: number;
    readonly numberOfInProgressThings: number;
    readonly numberOfSucceededThings: number;
    readonly numberOfFailedThings: number;
    readonly numberOfTimedOutThings: number;
    readonly numberOfRejectedThings: number;
    readonly numberOfCanceledThings: number;
    readonly numberOfRemovedThings: number;
  };
}

export interface JobExecutionSummary {
  readonly thingName: string;
  readonly status: JobExecutionStatus;
  /**
   * The local service gives it; AWS's ListJobExecutionsForJob does not (only DescribeJobExecution has it), so the AWS
   * adapter leaves it out.
   */
  readonly versionNumber?: number;
  readonly retryAttempt?: number;
  readonly statusDetails?: Record<string, string>;
}

export interface JobsControl {
  /**
   * Creates the job. Idempotent by job id: a job that exists already is `{ created: false }` (a redelivered
   * orchestrator step creates nothing twice); an invalid spec rejects with an Error naming the field.
   */
  createJob(spec: JobSpec): Promise<{ readonly jobId: string; readonly created: boolean }>;
  /** Null when there is no such job. */
  describeJob(jobId: string): Promise<JobDescription | null>;
  /**
   * Cancels the job: queued executions go CANCELED; with `force`, IN_PROGRESS ones too (the device learns it on its
   * next update, which is rejected). Canceling a canceled or completed job is a no-op.
   */
  cancelJob(jobId: string, options?: { readonly force?: boolean; readonly reasonCode?: string; readonly comment?: string }): Promise<void>;
  listExecutions(jobId: string): Promise<readonly JobExecutionSummary[]>;
  cancelExecution(jobId: string, thingName: string, options?: { readonly force?: boolean }): Promise<void>;
}

/**
 * How both adapters fail, named as the IoT control plane names its exceptions, so the orchestrator handles one kind:
 * `InvalidRequestException` (a spec AWS would refuse; the message names the field), `ResourceNotFoundException` (no such
 * job, execution or thing), `InvalidStateTransitionException` (e.g. canceling an IN_PROGRESS execution without force).
 */
export type JobsControlErrorCode = 'InvalidRequestException' | 'ResourceNotFoundException' | 'InvalidStateTransitionException';

export class JobsControlError extends Error {
  override readonly name = 'JobsControlError';
  constructor(
    readonly code: JobsControlErrorCode,
    message: string,
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
  }
}
