import type { JobRecord, ExecutionRecord } from './job-engine.js';

/**
 * The device side of AWS IoT Jobs on MQTT, and the job events, as topics and payloads — pure functions, written
 * from the AWS IoT developer guide ("Jobs device MQTT API operations", "Jobs device MQTT and HTTPS data types",
 * "Jobs notifications", "Jobs events"):
 *
 * Requests (the device publishes; the answer goes to the requesting connection on `<request>/accepted|rejected`):
 * - `$aws/things/<thing>/jobs/get`               {clientToken?} → {inProgressJobs: [Summary], queuedJobs: [Summary], timestamp, clientToken?}
 * - `$aws/things/<thing>/jobs/start-next`        {statusDetails?, stepTimeoutInMinutes?, clientToken?}
 *                                                → {execution?: JobExecution, timestamp, clientToken?} (no execution: nothing pending)
 * - `$aws/things/<thing>/jobs/<jobId>/get`       {executionNumber?, includeJobDocument? (default true), clientToken?}
 *                                                → {execution: JobExecution, timestamp, clientToken?} (`$next` = the next
 *                                                pending; no `execution` when none is)
 * - `$aws/things/<thing>/jobs/<jobId>/update`    {status, statusDetails?, expectedVersion?, executionNumber?,
 *                                                 includeJobExecutionState?, includeJobDocument?, stepTimeoutInMinutes?, clientToken?}
 *                                                → {executionState?: {status, statusDetails, versionNumber}, jobDocument?, timestamp, clientToken?}
 * - rejected: ErrorResponse {code, message, clientToken?, timestamp, executionState?} with code one of InvalidTopic,
 *   InvalidJson, InvalidRequest, InvalidStateTransition, ResourceNotFound, VersionMismatch, InternalError,
 *   RequestThrottled, TerminalStateReached (executionState on VersionMismatch / InvalidStateTransition / TerminalStateReached).
 *
 * Notifications (the service publishes through the broker, to whoever subscribed):
 * - `$aws/things/<thing>/jobs/notify`      {timestamp, jobs: {IN_PROGRESS?: [Summary], QUEUED?: [Summary]}} when the
 *   list of pending executions changes (`jobs` is {} when none is left);
 * - `$aws/things/<thing>/jobs/notify-next` {timestamp, execution: JobExecution} when the next pending execution
 *   changes; `{timestamp}` alone when there is none any more.
 *
 * Data types: JobExecution {jobId, thingName, jobDocument, status, statusDetails, queuedAt, startedAt?, lastUpdatedAt,
 * versionNumber, executionNumber}; JobExecutionSummary {jobId, queuedAt, startedAt?, lastUpdatedAt, versionNumber,
 * executionNumber}. Times are seconds since the epoch (the data types' unit); `jobDocument` is the document object.
 *
 * Job events (through the broker, so topic rules see them): `$aws/events/jobExecution/<jobId>/<operation>` with
 * {eventType: "JOB_EXECUTION", eventId, timestamp, operation, jobId, thingArn, status, statusDetails?} (plus, local
 * only, retryAttempt, executionNumber and versionNumber) and
 * `$aws/events/job/<jobId>/<completed|canceled>` with {eventType: "JOB", eventId, timestamp, operation, jobId,
 * status, targetSelection, targets, description?, comment?, reasonCode?, completedAt?, createdAt, lastUpdatedAt,
 * jobProcessDetails}.
 *
 * INVARIANTS: pure; `parseJobsRequest` recognizes exactly the four request topics of one thing (anything else under
 * `$aws/things/<thing>/jobs/` that is not a reply or notification topic is an InvalidTopic request).
 */

export type JobsRequest =
  | { readonly operation: 'GetPendingJobExecutions'; readonly thingName: string }
  | { readonly operation: 'StartNextPendingJobExecution'; readonly thingName: string }
  | { readonly operation: 'DescribeJobExecution'; readonly thingName: string; readonly jobId: string }
  | { readonly operation: 'UpdateJobExecution'; readonly thingName: string; readonly jobId: string }
  | { readonly operation: 'InvalidTopic'; readonly thingName: string };

const JOBS_TOPIC = /^\$aws\/things\/([^/]+)\/jobs\/(.+)$/;
const JOB_ID = /^(?:\$next|[a-zA-Z0-9_-]{1,64})$/;

/** Topics under `$aws/things/<thing>/jobs/` the service publishes, not requests. */
export function isJobsReplyOrNotification(rest: string): boolean {
  return rest === 'notify' || rest === 'notify-next' || rest.endsWith('/accepted') || rest.endsWith('/rejected');
}

/** The request a device published on a jobs topic; undefined for a topic outside the Jobs request space. */
export function parseJobsRequest(topic: string): JobsRequest | undefined {
  const match = JOBS_TOPIC.exec(topic);
  if (!match) return undefined;
  const [, thingName, rest] = match as unknown as [string, string, string];
  if (isJobsReplyOrNotification(rest)) return undefined;
  if (rest === 'get') return { operation: 'GetPendingJobExecutions', thingName };
  if (rest === 'start-next') return { operation: 'StartNextPendingJobExecution', thingName };
  const parts = rest.split('/');
  if (parts.length === 2 && JOB_ID.test(parts[0]!)) {
    if (parts[1] === 'get') return { operation: 'DescribeJobExecution', thingName, jobId: parts[0]! };
    if (parts[1] === 'update' && parts[0] !== '$next') return { operation: 'UpdateJobExecution', thingName, jobId: parts[0]! };
  }
  return { operation: 'InvalidTopic', thingName };
}

export const jobsTopics = {
  notify: (thingName: string) => `$aws/things/${thingName}/jobs/notify`,
  notifyNext: (thingName: string) => `$aws/things/${thingName}/jobs/notify-next`,
  accepted: (requestTopic: string) => `${requestTopic}/accepted`,
  rejected: (requestTopic: string) => `${requestTopic}/rejected`,
  executionEvent: (jobId: string, operation: string) => `$aws/events/jobExecution/${jobId}/${operation}`,
  jobEvent: (jobId: string, operation: string) => `$aws/events/job/${jobId}/${operation}`,
} as const;

/** Epoch seconds, as the Jobs data types give times. */
export const epochSeconds = (ms: number): number => Math.floor(ms / 1000);

export function jobExecution(execution: ExecutionRecord, job: JobRecord, { includeJobDocument = true } = {}): Record<string, unknown> {
  return {
    jobId: execution.jobId,
    thingName: execution.thingName,
    ...(includeJobDocument ? { jobDocument: job.spec.document } : {}),
    status: execution.status,
    statusDetails: { ...execution.statusDetails },
    queuedAt: epochSeconds(execution.queuedAt),
    ...(execution.startedAt !== undefined ? { startedAt: epochSeconds(execution.startedAt) } : {}),
    lastUpdatedAt: epochSeconds(execution.lastUpdatedAt),
    versionNumber: execution.versionNumber,
    executionNumber: execution.executionNumber,
  };
}

export function jobExecutionSummary(execution: ExecutionRecord): Record<string, unknown> {
  return {
    jobId: execution.jobId,
    queuedAt: epochSeconds(execution.queuedAt),
    ...(execution.startedAt !== undefined ? { startedAt: epochSeconds(execution.startedAt) } : {}),
    lastUpdatedAt: epochSeconds(execution.lastUpdatedAt),
    versionNumber: execution.versionNumber,
    executionNumber: execution.executionNumber,
  };
}

export function executionState(execution: ExecutionRecord): Record<string, unknown> {
  return { status: execution.status, statusDetails: { ...execution.statusDetails }, versionNumber: execution.versionNumber };
}

export function errorResponse(code: string, message: string, now: number, clientToken: string | undefined, execution?: ExecutionRecord): Record<string, unknown> {
  return {
    code,
    message,
    ...(clientToken !== undefined ? { clientToken } : {}),
    timestamp: epochSeconds(now),
    ...(execution ? { executionState: executionState(execution) } : {}),
  };
}

/** The ListNotification of `notify`: the pending executions by status. */
export function listNotification(pending: readonly ExecutionRecord[], now: number): Record<string, unknown> {
  const jobs: Record<string, unknown[]> = {};
  for (const execution of pending) (jobs[execution.status] ??= []).push(jobExecutionSummary(execution));
  return { timestamp: epochSeconds(now), jobs };
}

export function nextNotification(next: { execution: ExecutionRecord; job: JobRecord } | undefined, now: number): Record<string, unknown> {
  return next ? { timestamp: epochSeconds(now), execution: jobExecution(next.execution, next.job) } : { timestamp: epochSeconds(now) };
}

export function executionEvent(
  operation: string,
  execution: ExecutionRecord,
  thingArn: string,
  eventId: string,
  now: number,
): Record<string, unknown> {
  return {
    eventType: 'JOB_EXECUTION',
    eventId,
    timestamp: epochSeconds(now),
    operation,
    jobId: execution.jobId,
    thingArn,
    status: execution.status,
    ...(Object.keys(execution.statusDetails).length > 0 ? { statusDetails: { ...execution.statusDetails } } : {}),
    // Not in AWS's example payload; the local service adds what a consumer of retries needs (AWS's DescribeJobExecution has it).
    retryAttempt: execution.retryAttempt,
    executionNumber: execution.executionNumber,
    versionNumber: execution.versionNumber,
  };
}

export function jobEvent(operation: string, job: JobRecord, thingArnOf: (thingName: string) => string, eventId: string, now: number): Record<string, unknown> {
  const count = (status: string) => job.executions.filter((execution) => execution.status === status).length;
  return {
    eventType: 'JOB',
    eventId,
    timestamp: epochSeconds(now),
    operation,
    jobId: job.spec.jobId,
    status: job.status,
    targetSelection: 'SNAPSHOT',
    targets: job.spec.thingNames.map(thingArnOf),
    ...(job.spec.description !== undefined ? { description: job.spec.description } : {}),
    ...(job.comment !== undefined ? { comment: job.comment } : {}),
    ...(job.reasonCode !== undefined ? { reasonCode: job.reasonCode } : {}),
    ...(job.completedAt !== undefined ? { completedAt: epochSeconds(job.completedAt) } : {}),
    createdAt: epochSeconds(job.createdAt),
    lastUpdatedAt: epochSeconds(job.lastUpdatedAt),
    jobProcessDetails: {
      numberOfCanceledThings: count('CANCELED'),
      numberOfRejectedThings: count('REJECTED'),
      numberOfFailedThings: count('FAILED'),
      numberOfRemovedThings: count('REMOVED'),
      numberOfSucceededThings: count('SUCCEEDED'),
      numberOfTimedOutThings: count('TIMED_OUT'),
      numberOfQueuedThings: count('QUEUED'),
      numberOfInProgressThings: count('IN_PROGRESS'),
    },
  };
}
