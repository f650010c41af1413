import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CommandRejected, decide, type RobotCommand } from '../../../functions/domain/robot-decider.js';
import { canTransition, isDeployable, isHealthy, lifecycleOf } from '../../../functions/domain/lifecycle.js';
import { evolve, initialRobotState } from '../../../functions/domain/robot-state.js';
import { connectedEvent, disconnectedEvent } from '../../support/lifecycle-events.js';

const robotId = 'lekiwi-LK0042';
const T0 = Date.parse('2026-11-22T08:00:00.000Z');
const DEPLOYMENT = `dep-01KB${'0'.repeat(22)}`;
const JOB = `${DEPLOYMENT}-b0`;

/** Any mix of what can happen to a robot, one step a second. */
const step = fc.oneof(
  fc.constant('connect' as const),
  fc.constant('disconnect' as const),
  fc.constant('register' as const),
  fc.constant('teleopStart' as const),
  fc.constant('teleopStop' as const),
  fc.constant('fail' as const),
  fc.constant('recover' as const),
  fc.constant('provision' as const),
  // Software updates (issue 12): the orchestrator queues, the robot starts and ends, IoT Jobs times out.
  fc.constant('updateQueue' as const),
  fc.constant('updateStart' as const),
  fc.constant('updateEnd' as const),
  fc.constant('updateTimeout' as const),
  fc.record({ temperature: fc.double({ min: 20, max: 100, noNaN: true }), disk: fc.double({ min: 0, max: 100, noNaN: true }) }),
);

type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

function toCommand(kind: Step, index: number, version: number): RobotCommand {
  const at = new Date(T0 + index * 1000).toISOString();
  const connect = connectedEvent(robotId, version, T0 + index * 1000 - 500);
  switch (kind) {
    case 'connect':
      return { type: 'RecordPresence', presence: connectedEvent(robotId, version + 1, T0 + index * 1000) };
    case 'disconnect':
      return { type: 'RecordPresence', presence: disconnectedEvent(connect, T0 + index * 1000) };
    case 'register':
      return { type: 'RegisterRobot', eventId: `reg-${index}`, at };
    case 'teleopStart':
      return { type: 'RecordAgentEvent', event: { eventId: `t-${index}`, occurredAt: at, type: 'TeleoperationStarted', data: { signals: [] } } };
    case 'teleopStop':
      return { type: 'RecordAgentEvent', event: { eventId: `s-${index}`, occurredAt: at, type: 'TeleoperationStopped', data: { reason: 'idle' } } };
    case 'fail':
      return { type: 'MarkFailed', eventId: `f-${index}`, at, reason: 'broken', by: 'eng' };
    case 'recover':
      return { type: 'Recover', eventId: `r-${index}`, at, by: 'eng' };
    case 'provision':
      // A first claim or a re-image: a new certificate each time.
      return { type: 'RecordProvisioning', at, serial: 'LK0042', batch: 'B1', certificateId: `cert-${index}`, claim: index === 0 ? 'first' : 'reimage' };
    case 'updateQueue':
      return { type: 'QueueUpdate', at, update: { deploymentId: DEPLOYMENT, jobId: JOB, version: '2.0.0', kind: 'deploy', batch: 0 } };
    case 'updateStart':
      return { type: 'RecordAgentEvent', event: { eventId: `us-${index}`, occurredAt: at, type: 'UpdateStarted', data: { deploymentId: DEPLOYMENT, jobId: JOB, version: '2.0.0', kind: 'deploy', fromVersion: null, filesToFetch: 0, bytesToFetch: 0 } } };
    case 'updateEnd':
      return { type: 'RecordAgentEvent', event: { eventId: `ue-${index}`, occurredAt: at, type: 'UpdateSucceeded', data: { deploymentId: DEPLOYMENT, jobId: JOB, version: '2.0.0', kind: 'deploy', fromVersion: null, filesFetched: 0, bytesFetched: 0, durationMs: 1 } } };
    case 'updateTimeout':
      return { type: 'RecordJobExecutionEnd', at, jobId: JOB, status: 'TIMED_OUT', attempt: index };
    default: {
      const { temperature, disk } = kind;
      return { type: 'RecordTelemetry', sample: { sampledAt: at, cpuTemperatureC: temperature, diskPercent: disk } };
    }
  }
}

describe('robot lifecycle (property)', () => {
  it('only ever moves along the documented transitions, and deployable implies healthy implies online', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        let state = initialRobotState(robotId);
        let version = 0;
        steps.forEach((kind, index) => {
          const command = toCommand(kind, index, version);
          if (command.type === 'RecordPresence' && command.presence.eventType === 'connected') version += 1;
          let events;
          try {
            events = decide(state, command, { known: true });
          } catch (error) {
            expect(error).toBeInstanceOf(CommandRejected);
            return;
          }
          for (const event of events) {
            const next = evolve(state, event);
            const from = lifecycleOf(state);
            const to = lifecycleOf(next);
            expect(canTransition(from, to), `${from} → ${to} on ${event.type}`).toBe(true);
            state = next;
          }
          if (isDeployable(state)) expect(isHealthy(state)).toBe(true);
          if (isHealthy(state)) expect(state.presence.status).toBe('online');
          if (state.deployment) expect(isDeployable(state)).toBe(false);
        });
      }),
      { numRuns: 1_000 },
    );
  });
});
