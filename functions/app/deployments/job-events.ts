import { z } from 'zod';
import { parseBatchJobId } from '../../../schemas/deployments.js';
import { RobotId } from '../../../schemas/robot-id.js';
import { JOB_EXECUTION_END_STATUSES, type JobExecutionEndStatus } from '../../domain/robot-decider.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import type { EventLog } from '../ports.js';

/**
 * IoT Jobs' side of a robot's update (issue 12): the rule `heartbeat_job_events` (schemas/deployments.ts
 * JOB_EVENTS_RULE) hands this every job execution event IoT publishes on `$aws/events/jobExecution/<jobId>/<operation>`
 * (AWS IoT "Jobs events": {eventType: "JOB_EXECUTION", eventId, timestamp (seconds), operation, jobId, thingArn,
 * status, statusDetails?}; the local IoT Jobs adds retryAttempt and versionNumber). An execution that ended without the
 * robot's word (TIMED_OUT, REJECTED, REMOVED, CANCELED; FAILED with the robot's reason in its statusDetails) becomes
 * RobotUpdateFailed{source:'jobs'} in the robot's log through the robot's decider (`RecordJobExecutionEnd`), which
 * appends nothing when the robot already ended that job itself. The same function runs as the `JobEvents` Lambda in
 * AWS and as the local cloud's rule target (local/job-events.ts).
 *
 * INVARIANTS
 * - Only jobs made by the deployment orchestrator (`batchJobId`) are recorded; any other job is someone else's.
 * - Redelivery appends nothing: the event id names the job and the execution's attempt (`job-end:<jobId>:<n>`; with
 *   AWS's payload, which has no attempt number, IoT's own event id: `job-end:<jobId>:event-<eventId>`).
 * - An event that cannot be read is logged and dropped, never thrown (a retry would not make it readable); a failure
 *   of the event log throws, so Lambda's retry of the asynchronous invocation takes over.
 */

/** One job execution event as the rule delivers it (the rule adds `jobId`, `operation` and `topic` from the topic). */
export const JobExecutionEvent = z.looseObject({
  eventType: z.literal('JOB_EXECUTION'),
  eventId: z.string().optional(),
  /** Seconds since the epoch, as IoT sends it. */
  timestamp: z.number().nonnegative(),
  operation: z.string(),
  jobId: z.string().min(1).max(64),
  thingArn: z.string(),
  status: z.string(),
  statusDetails: z.record(z.string(), z.unknown()).optional(),
  retryAttempt: z.number().int().nonnegative().optional(),
  executionNumber: z.number().int().nonnegative().optional(),
});
export type JobExecutionEvent = z.infer<typeof JobExecutionEvent>;

export interface JobEventsDependencies {
  readonly eventLog: EventLog;
  readonly now: () => Date;
  readonly log: (level: 'info' | 'warn', message: string, details: Record<string, unknown>) => void;
}

export type JobEventOutcome =
  /** RobotUpdateFailed{source:'jobs'} appended. */
  | { readonly kind: 'recorded'; readonly robotId: string; readonly jobId: string; readonly status: JobExecutionEndStatus }
  /** Nothing to append: the robot's word ended the job already, SUCCEEDED, a redelivery, a job the robot is not in. */
  | { readonly kind: 'unchanged'; readonly robotId: string; readonly jobId: string; readonly status: JobExecutionEndStatus }
  /** Not a job end of ours (a queued/in-progress notice, another job): nothing to do. */
  | { readonly kind: 'ignored'; readonly why: string }
  /** Unreadable: logged. */
  | { readonly kind: 'dropped'; readonly why: string };

/** A job execution end, read from the event. */
export interface JobExecutionEnd {
  readonly robotId: string;
  readonly jobId: string;
  readonly status: JobExecutionEndStatus;
  readonly at: string;
  readonly attempt: number | string;
  readonly statusDetails: Readonly<Record<string, string>>;
}

/**
 * The thing name in a thing ARN (`arn:<partition>:iot:<region>:<account>:thing/<name>`); undefined for anything else.
 * Robots' thing names are their robot ids (the thing policy's `${iot:Connection.Thing.ThingName}`).
 */
export function thingNameOfArn(arn: string): string | undefined {
  const match = /^arn:[a-z0-9-]+:iot:[a-z0-9-]*:\d*:thing\/([^/]+)$/.exec(arn);
  return match?.[1];
}

/** The end an event says, or why it says none to record (not an end, not our job, unreadable). */
export function readJobExecutionEnd(input: unknown): JobExecutionEnd | { readonly ignored: string } | { readonly dropped: string } {
  const parsed = JobExecutionEvent.safeParse(input);
  if (!parsed.success) return { dropped: `not a job execution event: ${parsed.error.issues[0]?.message ?? 'invalid'}` };
  const event = parsed.data;
  if (!parseBatchJobId(event.jobId)) return { ignored: `job ${event.jobId} is not a deployment's batch job` };
  if (!(JOB_EXECUTION_END_STATUSES as readonly string[]).includes(event.status)) return { ignored: `status ${event.status} is not an end` };
  const thingName = thingNameOfArn(event.thingArn);
  const robot = RobotId.safeParse(thingName);
  if (!robot.success) return { dropped: `thing ${JSON.stringify(event.thingArn)} is not a robot` };
  const at = new Date(event.timestamp * 1000);
  if (!Number.isFinite(at.getTime())) return { dropped: `timestamp ${event.timestamp} is not a time` };
  // statusDetails is a map of strings in IoT Jobs; anything else in it is not the robot's word.
  const statusDetails = Object.fromEntries(
    Object.entries(event.statusDetails ?? {}).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  );
  return {
    robotId: robot.data,
    jobId: event.jobId,
    status: event.status as JobExecutionEndStatus,
    at: at.toISOString(),
    // AWS's event names neither; its event id then tells a retry's end from the first (and is the same on redelivery).
    attempt: event.retryAttempt ?? event.executionNumber ?? (event.eventId ? `event-${event.eventId}` : 0),
    statusDetails,
  };
}

export async function handleJobExecutionEvent(deps: JobEventsDependencies, input: unknown): Promise<JobEventOutcome> {
  const end = readJobExecutionEnd(input);
  if ('dropped' in end) {
    deps.log('warn', `job execution event dropped: ${end.dropped}`, { input });
    return { kind: 'dropped', why: end.dropped };
  }
  if ('ignored' in end) return { kind: 'ignored', why: end.ignored };
  const outcome = await executeRobotCommand(
    deps.eventLog,
    end.robotId,
    { type: 'RecordJobExecutionEnd', at: end.at, jobId: end.jobId, status: end.status, attempt: end.attempt, statusDetails: end.statusDetails },
    { now: deps.now },
  );
  const kind = outcome.status === 'appended' ? 'recorded' : 'unchanged';
  if (kind === 'recorded') deps.log('info', 'job execution ended without the robot', { robotId: end.robotId, jobId: end.jobId, status: end.status });
  return { kind, robotId: end.robotId, jobId: end.jobId, status: end.status };
}
