import { describe, expect, it } from 'vitest';
import type { AgentEvent, DomainEvent } from '../../../schemas/index.js';
import { decide } from '../../../functions/domain/robot-decider.js';
import { isDeployable, isHealthy, lifecycleOf } from '../../../functions/domain/lifecycle.js';
import { toRobotView } from '../../../functions/domain/robot-view.js';
import { givenRobot, stateAfter } from '../../support/decider-spec.js';
import { connectedEvent, disconnectedEvent } from '../../support/lifecycle-events.js';

const robotId = 'lekiwi-LK0001';
const T0 = Date.parse('2026-11-22T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const HOUR = 3_600_000;

const connect1 = connectedEvent(robotId, 1, T0);
const connectedFact = (presence = connect1): DomainEvent => ({
  eventId: `presence:${presence.sessionIdentifier}:connected`,
  robotId,
  at: iso(presence.timestamp),
  version: 1,
  type: 'RobotConnected',
  data: {
    sessionIdentifier: presence.sessionIdentifier,
    versionNumber: presence.versionNumber,
    timestamp: presence.timestamp,
    ipAddress: '192.0.2.10',
  },
});
const disconnectedFact = (connect = connect1, at = T0 + 60_000): DomainEvent => ({
  eventId: `presence:${connect.sessionIdentifier}:disconnected`,
  robotId,
  at: iso(at),
  version: 1,
  type: 'RobotDisconnected',
  data: {
    sessionIdentifier: connect.sessionIdentifier,
    versionNumber: connect.versionNumber,
    clientInitiated: true,
    reason: 'CLIENT_INITIATED_DISCONNECT',
    timestamp: at,
  },
});
const teleopStarted = (at: number, eventId = `teleop-${at}`): AgentEvent => ({
  eventId,
  occurredAt: iso(at),
  type: 'TeleoperationStarted',
  data: { operatorAddress: '10.0.0.7', signals: ['actions', 'peer'], score: 0.9 },
});
const startedFact = (at: number, eventId = `teleop-${at}`): DomainEvent => ({
  eventId,
  robotId,
  at: iso(at),
  version: 1,
  type: 'TeleoperationStarted',
  data: { operatorAddress: '10.0.0.7', signals: ['actions', 'peer'], score: 0.9 },
});
const sample = (at: number, values: Record<string, number>) => ({ sampledAt: iso(at), ...values });

describe('robot decider: presence', () => {
  it('records the first connect of an unknown robot', () => {
    givenRobot(robotId)
      .when({ type: 'RecordPresence', presence: connect1 })
      .then([connectedFact()]);
  });

  it('ignores a duplicated connect', () => {
    givenRobot(robotId, connectedFact()).when({ type: 'RecordPresence', presence: connect1 }).then([]);
  });

  it('records the disconnect that shares its connect’s versionNumber, with who ended it', () => {
    givenRobot(robotId, connectedFact())
      .when({ type: 'RecordPresence', presence: disconnectedEvent(connect1, T0 + 60_000) })
      .then([disconnectedFact()]);
  });

  it('keeps a keep-alive timeout as a server-side disconnect', () => {
    givenRobot(robotId, connectedFact())
      .when({
        type: 'RecordPresence',
        presence: disconnectedEvent(connect1, T0 + 90_000, {
          clientInitiatedDisconnect: false,
          disconnectReason: 'MQTT_KEEP_ALIVE_TIMEOUT',
        }),
      })
      .then(([event]) => {
        expect(event).toMatchObject({
          type: 'RobotDisconnected',
          data: { clientInitiated: false, reason: 'MQTT_KEEP_ALIVE_TIMEOUT' },
        });
      });
  });

  it('ignores a connect that arrives after its own disconnect', () => {
    givenRobot(robotId, connectedFact(), disconnectedFact())
      .when({ type: 'RecordPresence', presence: connect1 })
      .then([]);
  });

  it('ignores a late disconnect of an older session', () => {
    const connect2 = connectedEvent(robotId, 2, T0 + 120_000);
    givenRobot(robotId, connectedFact(connect2))
      .when({ type: 'RecordPresence', presence: disconnectedEvent(connect1, T0 + 60_000) })
      .then([]);
  });

  it('accepts a reset versionNumber after a long time offline', () => {
    const afterReset = connectedEvent(robotId, 0, T0 + 60_000 + 2 * HOUR);
    givenRobot(robotId, connectedFact(), disconnectedFact())
      .when({ type: 'RecordPresence', presence: afterReset })
      .then([connectedFact(afterReset)]);
  });

  it('ignores a late event of the epoch before a reset', () => {
    const afterReset = connectedEvent(robotId, 0, T0 + 2 * HOUR);
    givenRobot(robotId, connectedFact(afterReset))
      .when({ type: 'RecordPresence', presence: disconnectedEvent(connectedEvent(robotId, 7, T0), T0 + 1000) })
      .then([]);
  });

  it('keeps an open teleoperation session open, unconfirmed, when the robot drops (issue 9: a dropped link is not a stopped operator)', () => {
    const state = givenRobot(robotId, connectedFact(), startedFact(T0 + 1000))
      .when({
        type: 'RecordPresence',
        presence: disconnectedEvent(connect1, T0 + 61_000, {
          clientInitiatedDisconnect: false,
          disconnectReason: 'CONNECTION_LOST',
        }),
      })
      .then((events) => {
        expect(events.map((e) => e.type)).toEqual(['RobotDisconnected']);
      });
    expect(state.teleoperation).toMatchObject({ active: true, confirmed: false });
  });
});

describe('robot decider: telemetry alerts with hysteresis', () => {
  it('raises a critical alert at 80 °C, keeps it at 78 °C and clears it below 75 °C', () => {
    const raised = givenRobot(robotId, connectedFact())
      .when({ type: 'RecordTelemetry', sample: sample(T0 + 1, { cpuTemperatureC: 80 }) })
      .then(([event]) => {
        expect(event).toMatchObject({
          type: 'AlertRaised',
          data: { metric: 'cpuTemperatureC', severity: 'critical', value: 80, threshold: 80 },
        });
      });
    expect(isHealthy(raised)).toBe(false);
    expect(decide(raised, { type: 'RecordTelemetry', sample: sample(T0 + 2, { cpuTemperatureC: 78 }) }, { known: true })).toEqual([]);
    const cleared = decide(raised, { type: 'RecordTelemetry', sample: sample(T0 + 3, { cpuTemperatureC: 74.9 }) }, { known: true });
    expect(cleared).toMatchObject([{ type: 'AlertCleared', data: { metric: 'cpuTemperatureC', value: 74.9, threshold: 75 } }]);
  });

  it('raises warnings for a full disk and memory but not below their thresholds', () => {
    givenRobot(robotId, connectedFact())
      .when({ type: 'RecordTelemetry', sample: sample(T0 + 1, { diskPercent: 89.9, memoryPercent: 90, cpuPercent: 100 }) })
      .then((events) => {
        expect(events).toMatchObject([{ type: 'AlertRaised', data: { metric: 'memoryPercent', severity: 'warning' } }]);
      });
  });

  it('derives the same eventId from a redelivered sample', () => {
    const state = stateAfter(robotId, [connectedFact()]);
    const command = { type: 'RecordTelemetry', sample: sample(T0 + 1, { diskPercent: 95 }) } as const;
    expect(decide(state, command, { known: true })[0]?.eventId).toBe(decide(state, command, { known: true })[0]?.eventId);
  });
});

describe('robot decider: teleoperation reported by the agent', () => {
  it('records a start with the operator address', () => {
    const state = givenRobot(robotId, connectedFact())
      .when({ type: 'RecordAgentEvent', event: teleopStarted(T0 + 1000) })
      .then([startedFact(T0 + 1000)]);
    expect(state.teleoperation).toEqual({ active: true, operatorAddress: '10.0.0.7', since: iso(T0 + 1000), confirmed: true });
    expect(lifecycleOf(state)).toBe('active');
  });

  it('closes a session whose stop was lost before opening the next', () => {
    givenRobot(robotId, connectedFact(), startedFact(T0 + 1000, 'first'))
      .when({ type: 'RecordAgentEvent', event: teleopStarted(T0 + 5000, 'second') })
      .then((events) => {
        expect(events.map((e) => [e.type, e.eventId])).toEqual([
          ['TeleoperationStopped', 'second:superseded'],
          ['TeleoperationStarted', 'second'],
        ]);
      });
  });

  it('ignores a stop when no session is open', () => {
    givenRobot(robotId, connectedFact())
      .when({
        type: 'RecordAgentEvent',
        event: { eventId: 'stop-1', occurredAt: iso(T0), type: 'TeleoperationStopped', data: { reason: 'idle' } },
      })
      .then([]);
  });
});

describe('robot decider: events the agent had to drop', () => {
  const dropped = (at: number, count = 37): AgentEvent => ({
    eventId: 'dropped-0001', occurredAt: iso(at), type: 'EventsDropped', data: { count },
  });

  it('records the count as RobotEventsDropped with the agent’s eventId, and changes nothing else', () => {
    const before = givenRobot(robotId, connectedFact(), startedFact(T0 + 1000));
    const after = before
      .when({ type: 'RecordAgentEvent', event: dropped(T0 + 2000) })
      .then([{ eventId: 'dropped-0001', robotId, at: iso(T0 + 2000), version: 1, type: 'RobotEventsDropped', data: { count: 37 } }]);
    expect(after).toEqual(before.state);
    expect(toRobotView(after, 3, null)).toEqual(toRobotView(before.state, 3, null));
  });

  it('records it whatever the robot’s state: offline, failed, never seen before', () => {
    const failedFact: DomainEvent = {
      eventId: 'f1', robotId, at: iso(T0), version: 1, type: 'RobotMarkedFailed', data: { reason: 'arm jammed', by: 'eng' },
    };
    for (const past of [[], [connectedFact(), disconnectedFact()], [connectedFact(), failedFact]]) {
      givenRobot(robotId, ...past)
        .when({ type: 'RecordAgentEvent', event: dropped(T0 + 90_000, 1) })
        .then((events) => expect(events.map((e) => [e.type, e.data])).toEqual([['RobotEventsDropped', { count: 1 }]]));
    }
  });
});

describe('robot decider: marked failed and recovered', () => {
  const at = iso(T0 + 5000);

  it('refuses to fail a robot the fleet has never seen', () => {
    givenRobot(robotId)
      .when({ type: 'MarkFailed', eventId: 'f1', at, reason: 'arm jammed', by: 'eng@example.com' })
      .thenRejectedWith('ROBOT_NOT_FOUND');
  });

  it('marks a known robot failed, and refuses to do it twice', () => {
    const failed = givenRobot(robotId, connectedFact())
      .when({ type: 'MarkFailed', eventId: 'f1', at, reason: 'arm jammed', by: 'eng@example.com' })
      .then([
        { eventId: 'f1', robotId, at, version: 1, type: 'RobotMarkedFailed', data: { reason: 'arm jammed', by: 'eng@example.com' } },
      ]);
    expect(lifecycleOf(failed)).toBe('failed');
    expect(isHealthy(failed)).toBe(false);
    expect(() => decide(failed, { type: 'MarkFailed', eventId: 'f2', at, reason: 'again', by: 'x' }, { known: true })).toThrow(
      expect.objectContaining({ code: 'ALREADY_FAILED' }),
    );
  });

  it('recovers only a failed robot', () => {
    givenRobot(robotId, connectedFact())
      .when({ type: 'Recover', eventId: 'r1', at, by: 'eng' })
      .thenRejectedWith('NOT_FAILED');
    const failedFact: DomainEvent = {
      eventId: 'f1', robotId, at, version: 1, type: 'RobotMarkedFailed', data: { reason: 'arm jammed', by: 'eng' },
    };
    const recovered = givenRobot(robotId, connectedFact(), failedFact)
      .when({ type: 'Recover', eventId: 'r1', at, by: 'eng', note: 'replaced servo' })
      .then([{ eventId: 'r1', robotId, at, version: 1, type: 'RobotRecovered', data: { by: 'eng', note: 'replaced servo' } }]);
    expect(recovered.failure).toBeNull();
  });
});

describe('robot lifecycle, health and deployability', () => {
  const registered: DomainEvent = {
    eventId: 'reg', robotId, at: iso(T0 - 1000), version: 1, type: 'RobotRegistered', data: { model: 'lekiwi' },
  };

  it('registers once', () => {
    givenRobot(robotId).when({ type: 'RegisterRobot', eventId: 'reg', at: iso(T0 - 1000) }).then([registered]);
    givenRobot(robotId, registered).when({ type: 'RegisterRobot', eventId: 'reg2', at: iso(T0) }).then([]);
  });

  it('is discovered until registered or connected, ready when online, active while driven, offline when gone', () => {
    const telemetryOnly: DomainEvent = {
      eventId: 'a1', robotId, at: iso(T0), version: 1, type: 'AlertRaised',
      data: { metric: 'diskPercent', severity: 'warning', value: 95, threshold: 90 },
    };
    expect(lifecycleOf(stateAfter(robotId, [telemetryOnly]))).toBe('offline');
    expect(lifecycleOf(stateAfter(robotId, [connectedFact()]))).toBe('ready');
    const ready = stateAfter(robotId, [registered, connectedFact()]);
    expect([lifecycleOf(ready), isHealthy(ready), isDeployable(ready)]).toEqual(['ready', true, true]);
    const driven = stateAfter(robotId, [registered, connectedFact(), startedFact(T0 + 1)]);
    expect([lifecycleOf(driven), isHealthy(driven), isDeployable(driven)]).toEqual(['active', true, false]);
    const gone = stateAfter(robotId, [registered, connectedFact(), disconnectedFact()]);
    expect([lifecycleOf(gone), isHealthy(gone), isDeployable(gone)]).toEqual(['offline', false, false]);
  });
});

describe('robot view', () => {
  it('lists alerts oldest first whatever order the state holds them in (jsonb reorders keys)', () => {
    const disk = { severity: 'warning', value: 95, threshold: 90, raisedAt: iso(T0 + 2000) } as const;
    const heat = { severity: 'critical', value: 85, threshold: 80, raisedAt: iso(T0 + 1000) } as const;
    const base = stateAfter(robotId, [connectedFact()]);
    const one = toRobotView({ ...base, alerts: { diskPercent: disk, cpuTemperatureC: heat } }, 1, null);
    const other = toRobotView({ ...base, alerts: { cpuTemperatureC: heat, diskPercent: disk } }, 1, null);
    expect(one).toEqual(other);
    expect(one.alerts.map((alert) => alert.metric)).toEqual(['cpuTemperatureC', 'diskPercent']);
  });
});
