import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import type { JobEventOutcome } from '../../functions/app/deployments/job-events.js';
import { queueRobotUpdate } from '../../functions/app/deployments/queue-update.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { startIotBroker, type BrokerLogEntry, type IotBroker } from '../../local/iot-broker.js';
import { localJobEventsRule } from '../../local/job-events.js';
import { batchJobId, type UpdateQueuedData } from '../../schemas/deployments.js';
import type { AgentEvent } from '../../schemas/device.js';
import { createTestEventLog } from '../support/dynamo.js';

/**
 * IoT Jobs' job-side ends into the robot's log, with real parts: the local IoT Core's rules engine runs the rule
 * `heartbeat_job_events` on what the cloud publishes on `$aws/events/jobExecution/<jobId>/<operation>` (as the local
 * IoT Jobs does), its target runs the job-events use case, and the robot's log is DynamoDB Local's event log table.
 */

const DEP = `dep-01KB${'0'.repeat(20)}AB`;
const JOB = batchJobId(DEP, 0);
const now = () => new Date();

let broker: IotBroker;
let eventLog: DynamoEventLog;
let dropTable: () => Promise<unknown>;
const outcomes: JobEventOutcome[] = [];
const brokerLog: BrokerLogEntry[] = [];

beforeAll(async () => {
  const ca = await CertificateAuthority.create();
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  const table = await createTestEventLog();
  dropTable = table.drop;
  eventLog = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry: { isAttached: async () => false },
    rules: [localJobEventsRule({ eventLog, log: (entry) => brokerLog.push(entry), onOutcome: (outcome) => outcomes.push(outcome) })],
    log: (entry) => brokerLog.push(entry),
  });
});

afterAll(async () => {
  await broker?.stop();
  await dropTable?.();
});

const update = (): UpdateQueuedData => ({ deploymentId: DEP, jobId: JOB, version: '2.4.0', kind: 'deploy', batch: 0 });

/** Publishes a job execution event as IoT Jobs does; resolves once the rule's target handled it. */
async function jobEnds(robotId: string, status: string, operation: string): Promise<JobEventOutcome> {
  const before = outcomes.length;
  await broker.publish(`$aws/events/jobExecution/${JOB}/${operation}`, {
    eventType: 'JOB_EXECUTION',
    eventId: `${robotId}-${operation}`,
    timestamp: Math.floor(Date.now() / 1000),
    operation,
    jobId: JOB,
    thingArn: `arn:aws:iot:eu-west-1:000000000000:thing/${robotId}`,
    status,
    retryAttempt: 0,
    versionNumber: 3,
  });
  await broker.idle();
  expect(outcomes.length).toBe(before + 1);
  return outcomes.at(-1)!;
}

async function eventsOf(robotId: string) {
  return (await eventLog.readEvents(robotId)).events.map((recorded) => recorded.event);
}

describe('job-events through the local rules engine into the event log', () => {
  it('a TIMED_OUT after no word from the robot appends one RobotUpdateFailed; its redelivery appends nothing', async () => {
    const robotId = 'lekiwi-JE0001';
    await queueRobotUpdate({ eventLog, now }, robotId, update());
    expect(await jobEnds(robotId, 'TIMED_OUT', 'timed_out')).toEqual({ kind: 'recorded', robotId, jobId: JOB, status: 'TIMED_OUT' });
    expect(await jobEnds(robotId, 'TIMED_OUT', 'timed_out')).toMatchObject({ kind: 'unchanged' });
    const events = await eventsOf(robotId);
    expect(events.map((event) => event.type)).toEqual(['RobotUpdateQueued', 'RobotUpdateFailed']);
    expect(events[1]).toMatchObject({
      eventId: `job-end:${JOB}:0`,
      data: { jobId: JOB, deploymentId: DEP, version: '2.4.0', reason: 'TIMED_OUT', source: 'jobs', runningVersion: null },
    });
    expect((await eventLog.readHead(robotId))?.state.deployment).toBeNull();
  });

  it("after the robot's own UpdateFailed, a job-side end appends nothing", async () => {
    const robotId = 'lekiwi-JE0002';
    await queueRobotUpdate({ eventLog, now }, robotId, update());
    const failed: AgentEvent = {
      eventId: 'agent-failed-1',
      occurredAt: new Date().toISOString(),
      type: 'UpdateFailed',
      data: { deploymentId: DEP, jobId: JOB, version: '2.4.0', kind: 'deploy', reason: 'HASH_MISMATCH', runningVersion: '2.3.0', source: 'robot' },
    };
    await executeRobotCommand(eventLog, robotId, { type: 'RecordAgentEvent', event: failed }, { now });
    expect(await jobEnds(robotId, 'TIMED_OUT', 'timed_out')).toMatchObject({ kind: 'unchanged' });
    expect(await jobEnds(robotId, 'FAILED', 'failed')).toMatchObject({ kind: 'unchanged' });
    const events = await eventsOf(robotId);
    expect(events.map((event) => [event.type, event.eventId])).toEqual([
      ['RobotUpdateQueued', `update-queued:${JOB}`],
      ['RobotUpdateFailed', 'agent-failed-1'],
    ]);
  });

  it("a redelivered queue step appends nothing", async () => {
    const robotId = 'lekiwi-JE0003';
    expect((await queueRobotUpdate({ eventLog, now }, robotId, update())).status).toBe('appended');
    expect((await queueRobotUpdate({ eventLog, now }, robotId, update())).status).toBe('unchanged');
    expect(await eventsOf(robotId)).toHaveLength(1);
  });

  it('ignores jobs that are not a deployment batch', async () => {
    const before = outcomes.length;
    await broker.publish('$aws/events/jobExecution/firmware-7/canceled', {
      eventType: 'JOB_EXECUTION',
      timestamp: Math.floor(Date.now() / 1000),
      operation: 'canceled',
      jobId: 'firmware-7',
      thingArn: 'arn:aws:iot:eu-west-1:000000000000:thing/lekiwi-JE0004',
      status: 'CANCELED',
    });
    await broker.idle();
    expect(outcomes.slice(before)).toEqual([{ kind: 'ignored', why: 'job firmware-7 is not a deployment\'s batch job' }]);
    expect(await eventsOf('lekiwi-JE0004')).toEqual([]);
  });
});
