import { describe, expect, it } from 'vitest';
import { handleJobExecutionEvent, readJobExecutionEnd, thingNameOfArn } from '../../functions/app/deployments/job-events.js';
import { queueRobotUpdate } from '../../functions/app/deployments/queue-update.js';
import { batchJobId, JOB_EVENTS_RULE } from '../../schemas/deployments.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

const DEP = `dep-01KB${'0'.repeat(21)}7`;
const JOB = batchJobId(DEP, 2);
const robotId = 'lekiwi-LK0031';
const T = 1_764_626_400; // 2025-12-01T22:00:00Z, in seconds as IoT sends it

/** A job execution event as AWS IoT Jobs publishes it, with the fields the rule's SQL adds. */
const jobExecutionEvent = (overrides: Record<string, unknown> = {}) => ({
  eventType: 'JOB_EXECUTION',
  eventId: '1f9a2b3c-0000-4000-8000-000000000001',
  timestamp: T,
  operation: 'timed_out',
  jobId: JOB,
  thingArn: `arn:aws:iot:eu-west-1:123456789012:thing/${robotId}`,
  status: 'TIMED_OUT',
  topic: `$aws/events/jobExecution/${JOB}/timed_out`,
  ...overrides,
});

describe('job execution events: reading', () => {
  it('takes the thing name from a thing ARN and nothing else', () => {
    expect(thingNameOfArn('arn:aws:iot:eu-west-1:123456789012:thing/lekiwi-LK0031')).toBe('lekiwi-LK0031');
    expect(thingNameOfArn('arn:aws-cn:iot:cn-north-1:123456789012:thing/xle-X1')).toBe('xle-X1');
    expect(thingNameOfArn('arn:aws:iot:eu-west-1:123456789012:thinggroup/lekiwi-LK0031')).toBeUndefined();
    expect(thingNameOfArn('lekiwi-LK0031')).toBeUndefined();
  });

  it('reads an end of a batch job: robot, status, time, attempt and the string statusDetails', () => {
    expect(readJobExecutionEnd(jobExecutionEvent({ retryAttempt: 1, statusDetails: { reason: 'DISK_FULL', n: 3 } }))).toEqual({
      robotId,
      jobId: JOB,
      status: 'TIMED_OUT',
      at: '2025-12-01T22:00:00.000Z',
      attempt: 1,
      statusDetails: { reason: 'DISK_FULL' },
    });
    expect(readJobExecutionEnd(jobExecutionEvent({ executionNumber: 4 }))).toMatchObject({ attempt: 4 });
    // AWS's own payload has no attempt: IoT's event id tells one end from another.
    expect(readJobExecutionEnd(jobExecutionEvent())).toMatchObject({ attempt: 'event-1f9a2b3c-0000-4000-8000-000000000001' });
    expect(readJobExecutionEnd(jobExecutionEvent({ eventId: undefined }))).toMatchObject({ attempt: 0 });
  });

  it('ignores jobs not made by batchJobId and statuses that are not ends', () => {
    expect(readJobExecutionEnd(jobExecutionEvent({ jobId: 'ota-firmware-7' }))).toEqual({ ignored: expect.stringContaining('not a deployment') });
    expect(readJobExecutionEnd(jobExecutionEvent({ status: 'IN_PROGRESS' }))).toEqual({ ignored: expect.stringContaining('not an end') });
  });

  it('drops what it cannot read', () => {
    expect(readJobExecutionEnd({ eventType: 'JOB', jobId: JOB })).toHaveProperty('dropped');
    expect(readJobExecutionEnd(jobExecutionEvent({ thingArn: 'arn:aws:iot:eu-west-1:123456789012:thing/not a robot' }))).toHaveProperty('dropped');
    expect(readJobExecutionEnd('nonsense')).toHaveProperty('dropped');
  });

  it("the rule's SQL selects the job id and operation from the event topic", () => {
    expect(JOB_EVENTS_RULE.sql).toContain('topic(4) AS jobId');
    expect(JOB_EVENTS_RULE.topicFilter).toBe('$aws/events/jobExecution/+/+');
  });
});

describe('job execution events: into the robot log', () => {
  const deps = (eventLog: InMemoryEventLog) => ({ eventLog, now: () => new Date('2025-12-01T22:00:01Z'), log: () => undefined });

  it('records an end after the queue, once; leaves other jobs and SUCCEEDED alone', async () => {
    const eventLog = new InMemoryEventLog();
    await queueRobotUpdate(deps(eventLog), robotId, { deploymentId: DEP, jobId: JOB, version: '3.1.0', kind: 'deploy', batch: 2 });
    expect(await handleJobExecutionEvent(deps(eventLog), jobExecutionEvent({ status: 'SUCCEEDED', operation: 'succeeded' }))).toMatchObject({ kind: 'unchanged' });
    expect(await handleJobExecutionEvent(deps(eventLog), jobExecutionEvent())).toEqual({ kind: 'recorded', robotId, jobId: JOB, status: 'TIMED_OUT' });
    expect(await handleJobExecutionEvent(deps(eventLog), jobExecutionEvent())).toMatchObject({ kind: 'unchanged' });
    expect(await handleJobExecutionEvent(deps(eventLog), jobExecutionEvent({ jobId: 'someone-else' }))).toMatchObject({ kind: 'ignored' });
    const { events } = await eventLog.readEvents(robotId);
    expect(events.map((recorded) => [recorded.event.type, recorded.event.eventId])).toEqual([
      ['RobotUpdateQueued', `update-queued:${JOB}`],
      ['RobotUpdateFailed', `job-end:${JOB}:event-1f9a2b3c-0000-4000-8000-000000000001`],
    ]);
  });
});
