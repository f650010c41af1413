import { describe, expect, it } from 'vitest';
import type { AgentEvent, DomainEvent } from '../../../schemas/index.js';
import { AgentEvent as AgentEventSchema, RobotView } from '../../../schemas/index.js';
import { closeIfOfflineTooLong, decide } from '../../../functions/domain/robot-decider.js';
import { isDeployable, lifecycleOf } from '../../../functions/domain/lifecycle.js';
import { initialRobotState, type RobotState } from '../../../functions/domain/robot-state.js';
import { toRobotView } from '../../../functions/domain/robot-view.js';
import { givenRobot, stateAfter } from '../../support/decider-spec.js';
import { connectedEvent, disconnectedEvent } from '../../support/lifecycle-events.js';

/**
 * Issue 9, item 1: a dropped link does not end a teleoperation session. The cloud holds it open but unconfirmed (and
 * the robot not deployable) until the agent states its teleoperation state after reconnecting, or the robot stays
 * offline past the timeout (`robot-offline`).
 */
const robotId = 'lekiwi-LK0001';
const T0 = Date.parse('2026-11-22T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const TIMEOUT = 120_000;

const connect1 = connectedEvent(robotId, 1, T0);
const connect2 = connectedEvent(robotId, 2, T0 + 62_000);

function presenceFacts(...presence: Parameters<typeof decide>[1][]): DomainEvent[] {
  let state = initialRobotState(robotId);
  const facts: DomainEvent[] = [];
  for (const command of presence) {
    const events = decide(state, command, { known: true });
    facts.push(...events);
    state = stateAfter(robotId, facts);
  }
  return facts;
}

const started = (at: number, eventId = `teleop-start-${at}`): DomainEvent => ({
  eventId,
  robotId,
  at: iso(at),
  version: 1,
  type: 'TeleoperationStarted',
  data: { operatorAddress: '10.0.0.7', signals: ['actions'], score: 0.9 },
});

const statement = (at: number, data: Extract<AgentEvent, { type: 'TeleoperationState' }>['data'], eventId = `state-${at}`): AgentEvent => ({
  eventId,
  occurredAt: iso(at),
  type: 'TeleoperationState',
  data,
});

const connected1 = presenceFacts({ type: 'RecordPresence', presence: connect1 });
const drop = (at = T0 + 61_000, reason = 'DUPLICATE_CLIENTID') =>
  ({
    type: 'RecordPresence',
    presence: disconnectedEvent(connect1, at, { clientInitiatedDisconnect: false, disconnectReason: reason }),
  }) as const;

function driveThenDrop(): { past: DomainEvent[]; state: RobotState } {
  const past = [...connected1, started(T0 + 1000)];
  const dropped = decide(stateAfter(robotId, past), drop(), { known: true });
  const all = [...past, ...dropped];
  return { past: all, state: stateAfter(robotId, all) };
}

describe('a dropped link does not end a teleoperation session', () => {
  it('appends only the disconnect: the session stays open, unconfirmed, and the robot is not deployable', () => {
    const past = [...connected1, started(T0 + 1000)];
    const state = givenRobot(robotId, ...past)
      .when(drop())
      .then((events) => expect(events.map((event) => event.type)).toEqual(['RobotDisconnected']));
    expect(state.teleoperation).toMatchObject({ active: true, confirmed: false, since: iso(T0 + 1000), operatorAddress: '10.0.0.7' });
    expect(isDeployable(state)).toBe(false);
  });

  it('stays unconfirmed and not deployable once the robot is back online, until the agent speaks', () => {
    const { past } = driveThenDrop();
    const state = givenRobot(robotId, ...past)
      .when({ type: 'RecordPresence', presence: connect2 })
      .then((events) => expect(events.map((event) => event.type)).toEqual(['RobotConnected']));
    expect(state.presence.status).toBe('online');
    expect(state.teleoperation).toMatchObject({ active: true, confirmed: false });
    expect(isDeployable(state)).toBe(false);
    expect(lifecycleOf(state)).toBe('active');
    const view = RobotView.parse(toRobotView(state, 4, null));
    expect(view).toMatchObject({ deployable: false, teleoperation: { active: true, confirmed: false } });
  });

  it('a new session that replaces one still online (its disconnect not seen yet) also leaves the session unconfirmed', () => {
    const past = [...connected1, started(T0 + 1000)];
    const state = givenRobot(robotId, ...past)
      .when({ type: 'RecordPresence', presence: connect2 })
      .then((events) => expect(events.map((event) => event.type)).toEqual(['RobotConnected']));
    expect(state.teleoperation).toMatchObject({ active: true, confirmed: false });
  });

  it('the agent stating the same session is active confirms it', () => {
    const { past } = driveThenDrop();
    const back = [...past, ...presenceFactsAfter(past, { type: 'RecordPresence', presence: connect2 })];
    const state = givenRobot(robotId, ...back)
      .when({
        type: 'RecordAgentEvent',
        event: statement(T0 + 62_500, { active: true, since: iso(T0 + 1000), operatorAddress: '10.0.0.7', signals: ['actions'] }),
      })
      .then([{ eventId: `state-${T0 + 62_500}`, robotId, at: iso(T0 + 62_500), version: 1, type: 'TeleoperationConfirmed', data: {} }]);
    expect(state.teleoperation).toEqual({ active: true, confirmed: true, since: iso(T0 + 1000), operatorAddress: '10.0.0.7' });
    expect(isDeployable(state)).toBe(false);
  });

  it('the agent stating it is idle closes the session with its word', () => {
    const { past } = driveThenDrop();
    const state = givenRobot(robotId, ...past)
      .when({ type: 'RecordAgentEvent', event: statement(T0 + 62_500, { active: false, signals: [] }) })
      .then((events) => {
        expect(events).toEqual([
          {
            eventId: `state-${T0 + 62_500}`,
            robotId,
            at: iso(T0 + 62_500),
            version: 1,
            type: 'TeleoperationStopped',
            data: { reason: 'agent-idle', durationMs: 61_500 },
          },
        ]);
      });
    expect(state.teleoperation.active).toBe(false);
  });

  it('the agent stating an active session the cloud does not hold opens it, from when it began', () => {
    givenRobot(robotId, ...connected1)
      .when({
        type: 'RecordAgentEvent',
        event: statement(T0 + 5000, { active: true, since: iso(T0 + 2000), operatorAddress: '10.0.0.9', signals: ['actions'], score: 0.8 }),
      })
      .then([
        {
          eventId: `state-${T0 + 5000}`,
          robotId,
          at: iso(T0 + 2000),
          version: 1,
          type: 'TeleoperationStarted',
          data: { operatorAddress: '10.0.0.9', signals: ['actions'], score: 0.8 },
        },
      ]);
  });

  it('the agent stating another session than the one the cloud holds closes that one and opens its own', () => {
    const { past } = driveThenDrop();
    givenRobot(robotId, ...past)
      .when({ type: 'RecordAgentEvent', event: statement(T0 + 70_000, { active: true, since: iso(T0 + 65_000), signals: ['actions'] }) })
      .then((events) => {
        expect(events.map((event) => [event.type, event.eventId, event.at])).toEqual([
          ['TeleoperationStopped', `state-${T0 + 70_000}:superseded`, iso(T0 + 70_000)],
          ['TeleoperationStarted', `state-${T0 + 70_000}`, iso(T0 + 65_000)],
        ]);
      });
  });

  it('a statement that agrees with a confirmed session, or with an idle cloud, appends nothing', () => {
    givenRobot(robotId, ...connected1, started(T0 + 1000))
      .when({ type: 'RecordAgentEvent', event: statement(T0 + 3000, { active: true, since: iso(T0 + 1000), signals: [] }) })
      .then([]);
    givenRobot(robotId, ...connected1)
      .when({ type: 'RecordAgentEvent', event: statement(T0 + 3000, { active: false, signals: [] }) })
      .then([]);
  });

  it('a client that is not our agent may state a session without its start time: it is confirmed', () => {
    const { past } = driveThenDrop();
    givenRobot(robotId, ...past)
      .when({ type: 'RecordAgentEvent', event: statement(T0 + 62_500, { active: true, signals: [] }) })
      .then((events) => expect(events.map((event) => event.type)).toEqual(['TeleoperationConfirmed']));
  });

  it('the statement is a device message firmware can send: since must be a timestamp', () => {
    expect(AgentEventSchema.safeParse(statement(T0, { active: true, since: iso(T0), signals: [] })).success).toBe(true);
    const bad = AgentEventSchema.safeParse({ ...statement(T0, { active: true, signals: [] }), data: { active: true, since: 'yesterday' } });
    expect(bad.success).toBe(false);
  });

  it('the agent’s own stop after the drop still closes the session with its reason', () => {
    const { past } = driveThenDrop();
    givenRobot(robotId, ...past)
      .when({
        type: 'RecordAgentEvent',
        event: { eventId: 'stop-0001', occurredAt: iso(T0 + 30_000), type: 'TeleoperationStopped', data: { reason: 'idle', durationMs: 29_000 } },
      })
      .then((events) => expect(events.map((event) => [event.type, event.data])).toEqual([['TeleoperationStopped', { reason: 'idle', durationMs: 29_000 }]]));
  });
});

describe('closeIfOfflineTooLong: the session of a robot that stays offline is closed as robot-offline', () => {
  it('does nothing before the timeout', () => {
    const { state } = driveThenDrop();
    expect(closeIfOfflineTooLong(state, iso(T0 + 61_000 + TIMEOUT - 1), TIMEOUT)).toEqual([]);
  });

  it('closes it once the robot has been offline for the timeout, with an id derived from the session and the drop', () => {
    const { state } = driveThenDrop();
    const now = iso(T0 + 61_000 + TIMEOUT + 5000);
    const events = closeIfOfflineTooLong(state, now, TIMEOUT);
    expect(events).toEqual([
      {
        eventId: `teleoperation:robot-offline:${connect1.sessionIdentifier}:${iso(T0 + 1000)}`,
        robotId,
        at: now,
        version: 1,
        type: 'TeleoperationStopped',
        // The session is known to have run until the link dropped.
        data: { reason: 'robot-offline', durationMs: 60_000 },
      },
    ]);
    // Decided again later (a redelivered sweep), the same eventId: the log drops it.
    expect(closeIfOfflineTooLong(state, iso(T0 + 61_000 + 2 * TIMEOUT), TIMEOUT)[0]?.eventId).toBe(events[0]!.eventId);
    const closed = stateAfter(robotId, [...driveThenDrop().past, ...events]);
    expect(closed.teleoperation.active).toBe(false);
  });

  it('does nothing for a robot that is online, idle, or came back', () => {
    const later = iso(T0 + 10 * TIMEOUT);
    expect(closeIfOfflineTooLong(stateAfter(robotId, [...connected1, started(T0 + 1000)]), later, TIMEOUT)).toEqual([]);
    const { past } = driveThenDrop();
    const back = stateAfter(robotId, [...past, ...presenceFactsAfter(past, { type: 'RecordPresence', presence: connect2 })]);
    expect(closeIfOfflineTooLong(back, later, TIMEOUT)).toEqual([]);
    expect(closeIfOfflineTooLong(stateAfter(robotId, presenceFacts({ type: 'RecordPresence', presence: connect1 }, drop())), later, TIMEOUT)).toEqual([]);
  });

  it('is the ExpireOfflineTeleoperation command of the decider', () => {
    const { state } = driveThenDrop();
    const now = iso(T0 + 61_000 + TIMEOUT);
    expect(decide(state, { type: 'ExpireOfflineTeleoperation', now, timeoutMs: TIMEOUT }, { known: true })).toEqual(
      closeIfOfflineTooLong(state, now, TIMEOUT),
    );
    expect(() => closeIfOfflineTooLong(state, now, 0)).toThrow(/timeoutMs/);
  });
});

describe('heads stored before sessions could be unconfirmed', () => {
  it('read a session without `confirmed` as confirmed', () => {
    const state = stateAfter(robotId, [...connected1, started(T0 + 1000)]);
    const old = { ...state, teleoperation: { active: true, operatorAddress: '10.0.0.7', since: iso(T0 + 1000) } } as unknown as RobotState;
    expect(toRobotView(old, 2, null).teleoperation.confirmed).toBe(true);
  });
});

function presenceFactsAfter(past: DomainEvent[], command: Parameters<typeof decide>[1]): DomainEvent[] {
  return decide(stateAfter(robotId, past), command, { known: true });
}
