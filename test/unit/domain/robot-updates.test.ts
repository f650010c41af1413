import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { batchJobId, DomainEvent as DomainEventSchema, type AgentEvent, type DomainEvent, type UpdateQueuedData } from '../../../schemas/index.js';
import { decide, type RobotCommand } from '../../../functions/domain/robot-decider.js';
import { isDeployable, lifecycleOf } from '../../../functions/domain/lifecycle.js';
import { fold, initialRobotState, softwareOf, type RobotState } from '../../../functions/domain/robot-state.js';
import { isOlderJob, RECENT_JOBS } from '../../../functions/domain/robot-updates.js';
import { toRobotView } from '../../../functions/domain/robot-view.js';
import { connectedEvent } from '../../support/lifecycle-events.js';

const robotId = 'lekiwi-LK0007';
const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

/** A deployment id (a ULID after `dep-`); `n` orders them as creation time would. */
const deploymentId = (n: number) => `dep-01KB${String(n).padStart(22, '0')}`;
const DEP1 = deploymentId(1);
const DEP2 = deploymentId(2);
const JOB1 = batchJobId(DEP1, 0);
const JOB2 = batchJobId(DEP2, 1);

const queued = (dep = DEP1, jobId = JOB1, version = '1.1.0', kind: 'deploy' | 'rollback' = 'deploy'): UpdateQueuedData => ({
  deploymentId: dep,
  jobId,
  version,
  kind,
  batch: 0,
});
const queue = (update: UpdateQueuedData, at = T0): RobotCommand => ({ type: 'QueueUpdate', at: iso(at), update });

const agent = (event: AgentEvent): RobotCommand => ({ type: 'RecordAgentEvent', event });
const ref = (dep: string, jobId: string, version: string) => ({ deploymentId: dep, jobId, version });
const deferredEvent = (at: number, dep = DEP1, jobId = JOB1, version = '1.1.0'): AgentEvent => ({
  eventId: `deferred-${jobId}-${at}`,
  occurredAt: iso(at),
  type: 'UpdateDeferred',
  data: { ...ref(dep, jobId, version), reason: 'teleoperation' },
});
const startedEvent = (at: number, dep = DEP1, jobId = JOB1, version = '1.1.0'): AgentEvent => ({
  eventId: `started-${jobId}-${at}`,
  occurredAt: iso(at),
  type: 'UpdateStarted',
  data: { ...ref(dep, jobId, version), kind: 'deploy', fromVersion: '1.0.0', filesToFetch: 2, bytesToFetch: 300 },
});
const succeededEvent = (at: number, dep = DEP1, jobId = JOB1, version = '1.1.0', kind: 'deploy' | 'rollback' = 'deploy'): AgentEvent => ({
  eventId: `succeeded-${jobId}-${at}`,
  occurredAt: iso(at),
  type: 'UpdateSucceeded',
  data: { ...ref(dep, jobId, version), kind, fromVersion: '1.0.0', filesFetched: 2, bytesFetched: 300, durationMs: 1200 },
});
const failedEvent = (at: number, dep = DEP1, jobId = JOB1, version = '1.1.0'): AgentEvent => ({
  eventId: `failed-${jobId}-${at}`,
  occurredAt: iso(at),
  type: 'UpdateFailed',
  // An agent claiming `jobs` is still the robot speaking.
  data: { ...ref(dep, jobId, version), kind: 'deploy', reason: 'HEALTH_CHECK_FAILED', step: 'restarted', runningVersion: '1.0.0', source: 'jobs' },
});
const softwareState = (at: number, version: string | null): AgentEvent => ({
  eventId: `software-${at}`,
  occurredAt: iso(at),
  type: 'SoftwareState',
  data: { version },
});
const jobEnd = (status: Extract<RobotCommand, { type: 'RecordJobExecutionEnd' }>['status'], at: number, jobId = JOB1, attempt: number | string = 0, statusDetails?: Record<string, string>): RobotCommand => ({
  type: 'RecordJobExecutionEnd',
  at: iso(at),
  jobId,
  status,
  attempt,
  ...(statusDetails ? { statusDetails } : {}),
});

/**
 * The robot's log in miniature: each command decided on the state so far, an append whose eventIds the log already
 * holds dropped whole (as DynamoEventLog drops a redelivery), every event checked against the schema.
 */
function run(commands: readonly RobotCommand[], start: RobotState = initialRobotState(robotId)) {
  let state = start;
  const log: DomainEvent[] = [];
  const ids = new Set<string>();
  for (const command of commands) {
    const events = decide(state, command, { known: log.length > 0 });
    if (events.length === 0 || events.some((event) => ids.has(event.eventId))) continue;
    for (const event of events) {
      DomainEventSchema.parse(event);
      ids.add(event.eventId);
    }
    log.push(...events);
    state = fold(state, events);
  }
  return { state, log };
}

const TERMINAL = new Set(['RobotUpdateSucceeded', 'RobotUpdateFailed', 'RobotUpdateRolledBack']);
const terminalsOf = (log: readonly DomainEvent[], jobId: string) =>
  log.filter((event) => TERMINAL.has(event.type) && (event.data as { jobId?: string }).jobId === jobId);

describe('robot updates: the orchestrator queues', () => {
  it('records the queue once per job (a redelivered step appends nothing) and holds the robot as deploying', () => {
    const online = run([{ type: 'RecordPresence', presence: connectedEvent(robotId, 1, T0 - 1000) }]);
    const { state, log } = run([queue(queued()), queue(queued(), T0 + 5000)], online.state);
    expect(log.map((event) => [event.type, event.eventId])).toEqual([['RobotUpdateQueued', `update-queued:${JOB1}`]]);
    expect(state.deployment).toEqual({ deploymentId: DEP1, jobId: JOB1, version: '1.1.0', kind: 'deploy', state: 'queued', since: iso(T0) });
    expect(lifecycleOf(state)).toBe('active');
    expect(isDeployable(state)).toBe(false);
  });

  it('appends nothing when the robot started the job before the queue write landed, and does not set it back to queued', () => {
    const { state, log } = run([agent(startedEvent(T0)), queue(queued(), T0 + 10)]);
    expect(log.map((event) => event.type)).toEqual(['RobotUpdateStarted']);
    expect(state.deployment?.state).toBe('installing');
  });

  it('appends nothing for a job that already ended', () => {
    const { log } = run([queue(queued()), agent(succeededEvent(T0 + 10)), queue(queued(), T0 + 20)]);
    expect(log.map((event) => event.type)).toEqual(['RobotUpdateQueued', 'RobotUpdateSucceeded']);
  });
});

describe("robot updates: the robot's word", () => {
  it('folds queued → deferred → installing → succeeded, moving the version and freeing the robot', () => {
    const { state, log } = run([
      queue(queued()),
      agent(deferredEvent(T0 + 1)),
      agent(deferredEvent(T0 + 2)),
      agent(startedEvent(T0 + 3)),
      agent(succeededEvent(T0 + 4)),
    ]);
    // The second deferral of the same stretch adds nothing.
    expect(log.map((event) => event.type)).toEqual(['RobotUpdateQueued', 'RobotUpdateDeferred', 'RobotUpdateStarted', 'RobotUpdateSucceeded']);
    expect(log.slice(1).map((event) => event.eventId)).toEqual([`deferred-${JOB1}-${T0 + 1}`, `started-${JOB1}-${T0 + 3}`, `succeeded-${JOB1}-${T0 + 4}`]);
    expect(state.deployment).toBeNull();
    expect(softwareOf(state)).toEqual({ version: '1.1.0', recent: [{ jobId: JOB1, outcome: 'succeeded', at: iso(T0 + 4) }] });
  });

  it('the view shows the update while it runs and the version after', () => {
    const during = run([queue(queued()), agent(startedEvent(T0 + 3))]).state;
    expect(toRobotView(during, 2, null).software).toEqual({
      version: null,
      update: { deploymentId: DEP1, version: '1.1.0', state: 'installing', since: iso(T0 + 3) },
    });
    const after = run([agent(succeededEvent(T0 + 4))], during).state;
    expect(toRobotView(after, 3, null).software).toEqual({ version: '1.1.0', update: null });
  });

  it("records a failure as the robot's own, on the version it went back to", () => {
    const { state, log } = run([agent(softwareState(T0, '1.0.0')), queue(queued()), agent(startedEvent(T0 + 1)), agent(failedEvent(T0 + 2))]);
    expect(log.at(-1)).toMatchObject({ type: 'RobotUpdateFailed', data: { reason: 'HEALTH_CHECK_FAILED', source: 'robot', runningVersion: '1.0.0' } });
    expect(state.deployment).toBeNull();
    expect(softwareOf(state).version).toBe('1.0.0');
  });

  it('records the success of a rollback deployment as RobotUpdateRolledBack, naming the deployment it undoes (from the queue write)', () => {
    const rollback = { ...queued(DEP2, JOB2, '1.0.0', 'rollback'), parentDeploymentId: DEP1 };
    const { log } = run([queue(rollback), agent(succeededEvent(T0 + 1, DEP2, JOB2, '1.0.0', 'rollback'))]);
    expect(log.at(-1)).toMatchObject({ type: 'RobotUpdateRolledBack', data: { kind: 'rollback', version: '1.0.0', parentDeploymentId: DEP1 } });
    // A robot that started before the queue write landed has no RobotUpdateQueued (nothing to append), and a queue
    // write without a parent (an older orchestrator) names none: null, not a guess (the rollback's record has it).
    const late = run([agent(startedEvent(T0 + 1, DEP2, JOB2, '1.0.0')), queue(rollback, T0 + 2), agent(succeededEvent(T0 + 3, DEP2, JOB2, '1.0.0', 'rollback'))]);
    expect(late.log.at(-1)).toMatchObject({ type: 'RobotUpdateRolledBack', data: { parentDeploymentId: null } });
    const unknown = run([queue(queued(DEP2, JOB2, '1.0.0', 'rollback')), agent(succeededEvent(T0 + 1, DEP2, JOB2, '1.0.0', 'rollback'))]);
    expect(unknown.log.at(-1)).toMatchObject({ type: 'RobotUpdateRolledBack', data: { parentDeploymentId: null } });
  });

  it('records the software version only when it changes', () => {
    const { log, state } = run([
      agent(softwareState(T0, '1.0.0')),
      agent(softwareState(T0 + 1, '1.0.0')),
      agent(softwareState(T0 + 2, '1.1.0')),
      agent(softwareState(T0 + 3, null)),
    ]);
    expect(log.map((event) => event.data)).toEqual([
      { version: '1.0.0', previous: null },
      { version: '1.1.0', previous: '1.0.0' },
      { version: null, previous: '1.1.0' },
    ]);
    expect(softwareOf(state).version).toBeNull();
  });

  it("a late word about an older job is recorded but leaves the newer job's update and the version alone", () => {
    const { state, log } = run([
      agent(softwareState(T0, '1.0.0')),
      queue(queued()),
      queue(queued(DEP2, JOB2, '2.0.0'), T0 + 10),
      agent(startedEvent(T0 + 11, DEP2, JOB2, '2.0.0')),
      agent(startedEvent(T0 + 1)),
      agent(succeededEvent(T0 + 2)),
    ]);
    expect(log.slice(-2).map((event) => event.type)).toEqual(['RobotUpdateStarted', 'RobotUpdateSucceeded']);
    expect(state.deployment).toMatchObject({ jobId: JOB2, state: 'installing', version: '2.0.0' });
    expect(softwareOf(state).version).toBe('1.0.0');
  });

  it('orders jobs by deployment (a ULID), then batch', () => {
    expect(isOlderJob(batchJobId(DEP1, 3), batchJobId(DEP2, 0))).toBe(true);
    expect(isOlderJob(batchJobId(DEP2, 0), batchJobId(DEP1, 3))).toBe(false);
    expect(isOlderJob(batchJobId(DEP1, 1), batchJobId(DEP1, 2))).toBe(true);
    expect(isOlderJob('someone-elses-job', JOB1)).toBe(false);
  });

  it('remembers the last RECENT_JOBS ended jobs, newest first', () => {
    const commands = Array.from({ length: RECENT_JOBS + 3 }, (_, n) => {
      const dep = deploymentId(n + 1);
      return [queue(queued(dep, batchJobId(dep, 0)), T0 + n * 10), agent(succeededEvent(T0 + n * 10 + 1, dep, batchJobId(dep, 0)))];
    }).flat();
    const recent = softwareOf(run(commands).state).recent;
    expect(recent).toHaveLength(RECENT_JOBS);
    expect(recent[0]?.jobId).toBe(batchJobId(deploymentId(RECENT_JOBS + 3), 0));
  });
});

describe("robot updates: IoT Jobs' job-side ends", () => {
  it('records a timeout the robot never reported, once per attempt, with the robot still on its version', () => {
    const { state, log } = run([
      agent(softwareState(T0, '1.0.0')),
      queue(queued()),
      agent(startedEvent(T0 + 1)),
      jobEnd('TIMED_OUT', T0 + 1000),
      jobEnd('TIMED_OUT', T0 + 1000),
    ]);
    expect(log.at(-1)).toEqual({
      eventId: `job-end:${JOB1}:0`,
      robotId,
      at: iso(T0 + 1000),
      version: 1,
      type: 'RobotUpdateFailed',
      data: { deploymentId: DEP1, jobId: JOB1, version: '1.1.0', kind: 'deploy', reason: 'TIMED_OUT', runningVersion: '1.0.0', source: 'jobs' },
    });
    expect(terminalsOf(log, JOB1)).toHaveLength(1);
    expect(state.deployment).toBeNull();
  });

  it("appends nothing after the robot's own end, nor for SUCCEEDED", () => {
    const { log } = run([queue(queued()), agent(failedEvent(T0 + 1)), jobEnd('FAILED', T0 + 2), jobEnd('TIMED_OUT', T0 + 3)]);
    expect(terminalsOf(log, JOB1).map((event) => event.eventId)).toEqual([`failed-${JOB1}-${T0 + 1}`]);
    expect(run([queue(queued()), jobEnd('SUCCEEDED', T0 + 2)]).log).toHaveLength(1);
  });

  it('a canceled queued execution ends the update', () => {
    const { state, log } = run([queue(queued()), jobEnd('CANCELED', T0 + 5)]);
    expect(log.at(-1)).toMatchObject({ type: 'RobotUpdateFailed', data: { reason: 'CANCELED', source: 'jobs', runningVersion: null } });
    expect(state.deployment).toBeNull();
  });

  it("FAILED from Jobs is recorded only with the robot's reason in statusDetails (else its outbox brings it)", () => {
    expect(run([queue(queued()), jobEnd('FAILED', T0 + 5)]).log).toHaveLength(1);
    const { log } = run([queue(queued()), jobEnd('FAILED', T0 + 5, JOB1, 0, { reason: 'DISK_FULL', step: 'fetching', detail: 'no space' })]);
    expect(log.at(-1)).toMatchObject({ data: { reason: 'DISK_FULL', step: 'fetching', detail: 'no space', source: 'jobs' } });
  });

  it('ignores an end of a job the robot is not in (never queued, or an older one)', () => {
    expect(run([jobEnd('TIMED_OUT', T0)]).log).toEqual([]);
    const { log, state } = run([queue(queued(DEP2, JOB2, '2.0.0')), jobEnd('TIMED_OUT', T0 + 5)]);
    expect(log).toHaveLength(1);
    expect(state.deployment?.jobId).toBe(JOB2);
  });

  it("a retry's start after a job-side failure opens a new attempt, whose end is recorded", () => {
    const { state, log } = run([
      queue(queued()),
      agent(startedEvent(T0 + 1)),
      jobEnd('TIMED_OUT', T0 + 1000),
      agent(startedEvent(T0 + 2000)),
      agent(succeededEvent(T0 + 3000)),
    ]);
    expect(terminalsOf(log, JOB1).map((event) => event.type)).toEqual(['RobotUpdateFailed', 'RobotUpdateSucceeded']);
    expect(state.deployment).toBeNull();
    expect(softwareOf(state).version).toBe('1.1.0');
  });

  it("a retry's own timeout is another fact, recorded under its own attempt", () => {
    const { state, log } = run([
      queue(queued()),
      agent(startedEvent(T0 + 1)),
      jobEnd('TIMED_OUT', T0 + 1000, JOB1, 'event-a'),
      agent(startedEvent(T0 + 2000)),
      jobEnd('TIMED_OUT', T0 + 3000, JOB1, 'event-b'),
      jobEnd('TIMED_OUT', T0 + 3000, JOB1, 'event-b'),
    ]);
    expect(terminalsOf(log, JOB1).map((event) => event.eventId)).toEqual([`job-end:${JOB1}:event-a`, `job-end:${JOB1}:event-b`]);
    expect(state.deployment).toBeNull();
  });

  it("Jobs' end of an earlier attempt, arriving after the robot started the retry, is not the retry's end", () => {
    const { state, log } = run([
      queue(queued()),
      agent(startedEvent(T0 + 1)),
      agent(failedEvent(T0 + 2)),
      agent(startedEvent(T0 + 5)),
      jobEnd('FAILED', T0 + 3, JOB1, 0, { reason: 'HEALTH_CHECK_FAILED', step: 'restarted' }),
    ]);
    expect(terminalsOf(log, JOB1).map((event) => event.eventId)).toEqual([`failed-${JOB1}-${T0 + 2}`]);
    expect(state.deployment).toMatchObject({ jobId: JOB1, state: 'installing' });
  });

  it("a late word of the same attempt after a job-side end is not a second outcome", () => {
    const { state, log } = run([queue(queued()), jobEnd('TIMED_OUT', T0 + 1000), agent(startedEvent(T0 + 1)), agent(succeededEvent(T0 + 2))]);
    expect(terminalsOf(log, JOB1).map((event) => event.eventId)).toEqual([`job-end:${JOB1}:0`]);
    expect(state.deployment).toBeNull();
  });

  /**
   * Any interleaving of one attempt's facts: the robot's, in the order its outbox keeps (deferred, started, its end;
   * each possibly redelivered), and IoT Jobs' job-side ends (all later than the robot's, as one attempt's are; each
   * possibly redelivered). At most one terminal outcome; exactly one once the robot ended the job; the robot's own end
   * wins whenever it came before any job-side end that counts; the robot is held exactly while its update is open.
   */
  it('any interleaving of one attempt gives at most one terminal outcome', () => {
    const robotEnd = fc.constantFrom('succeeded' as const, 'failed' as const, null);
    const jobsFact = fc.constantFrom('SUCCEEDED', 'FAILED', 'FAILED-with-reason', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED');
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.record({ deferred: fc.boolean(), started: fc.boolean(), end: robotEnd }),
        fc.array(jobsFact, { maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 24 }),
        (queuedFirst, robot, jobs, picks) => {
          type Fact = { readonly from: 'robot'; readonly command: RobotCommand; readonly ends: boolean } | { readonly from: 'jobs'; readonly command: RobotCommand; readonly ends: boolean };
          const robotFacts: Fact[] = [];
          if (robot.deferred) robotFacts.push({ from: 'robot', command: agent(deferredEvent(T0 + 1)), ends: false });
          if (robot.started) robotFacts.push({ from: 'robot', command: agent(startedEvent(T0 + 2)), ends: false });
          if (robot.end === 'succeeded') robotFacts.push({ from: 'robot', command: agent(succeededEvent(T0 + 3)), ends: true });
          if (robot.end === 'failed') robotFacts.push({ from: 'robot', command: agent(failedEvent(T0 + 3)), ends: true });
          const jobsFacts: Fact[] = jobs.map((status, index) =>
            status === 'FAILED-with-reason'
              ? { from: 'jobs', command: jobEnd('FAILED', T0 + 10_000 + index, JOB1, 0, { reason: 'STAGE_FAILED' }), ends: true }
              : { from: 'jobs', command: jobEnd(status, T0 + 10_000 + index), ends: status !== 'SUCCEEDED' && status !== 'FAILED' },
          );
          // Merge the two streams, each in its own order; a pick may also redeliver what a stream already sent.
          const merged: Fact[] = [];
          const streams = [robotFacts, jobsFacts];
          const sent = [0, 0];
          for (const pick of picks) {
            const which = pick % 2;
            const stream = streams[which]!;
            if (pick % 5 === 4 && sent[which]! > 0) merged.push(stream[(pick >> 3) % sent[which]!]!);
            else if (sent[which]! < stream.length) merged.push(stream[sent[which]!++]!);
          }
          for (const which of [0, 1]) while (sent[which]! < streams[which]!.length) merged.push(streams[which]![sent[which]!++]!);
          const commands = [...(queuedFirst ? [queue(queued())] : []), ...merged.map((f) => f.command), ...(queuedFirst ? [] : [queue(queued(), T0 + 20_000)])];
          const { state, log } = run(commands);
          const terminals = terminalsOf(log, JOB1);
          expect(terminals.length).toBeLessThanOrEqual(1);
          if (robot.end) expect(terminals).toHaveLength(1);
          const firstRobotEnd = merged.findIndex((f) => f.from === 'robot' && f.ends);
          const jobsEndedFirst = merged.slice(0, firstRobotEnd).some((f) => f.from === 'jobs' && f.ends);
          if (firstRobotEnd >= 0 && !jobsEndedFirst) expect(terminals[0]?.eventId).not.toMatch(/^job-end:/);
          const opened = log.some((event) => !TERMINAL.has(event.type) && (event.data as { jobId?: string }).jobId === JOB1);
          expect(state.deployment !== null).toBe(opened && terminals.length === 0);
        },
      ),
      { numRuns: 500 },
    );
  });
});
