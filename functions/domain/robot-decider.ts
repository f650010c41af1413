import type { AgentEvent, DomainEvent, EventOf, LifecycleEvent, TelemetrySample } from '../../schemas/index.js';
import { ALERT_THRESHOLDS, alertChange } from './alerts.js';
import { orderPresence } from './presence.js';
import { assertNever, evolve, type RobotState } from './robot-state.js';

/**
 * Commands a robot's decider accepts. Ids and times come in as data (the decider has no clock and no random ids),
 * so the same command on the same state always decides the same events; redelivered commands produce the same
 * eventIds and the log drops them.
 */
export type RobotCommand =
  | { readonly type: 'RecordPresence'; readonly presence: LifecycleEvent }
  | { readonly type: 'RecordTelemetry'; readonly sample: TelemetrySample }
  | { readonly type: 'RecordAgentEvent'; readonly event: AgentEvent }
  | { readonly type: 'RegisterRobot'; readonly eventId: string; readonly at: string }
  | { readonly type: 'MarkFailed'; readonly eventId: string; readonly at: string; readonly reason: string; readonly by: string }
  | { readonly type: 'Recover'; readonly eventId: string; readonly at: string; readonly by: string; readonly note?: string | undefined };

export type RejectionCode = 'ROBOT_NOT_FOUND' | 'ALREADY_FAILED' | 'NOT_FAILED';

/** A command that the robot's current state does not allow; the message says what to do instead. */
export class CommandRejected extends Error {
  override readonly name = 'CommandRejected';
  constructor(
    readonly code: RejectionCode,
    message: string,
  ) {
    super(message);
  }
}

/** Whether the robot has any recorded history; commands from people need a robot that exists. */
export interface DecisionContext {
  readonly known: boolean;
}

export function decide(state: RobotState, command: RobotCommand, context: DecisionContext): DomainEvent[] {
  switch (command.type) {
    case 'RecordPresence':
      return decidePresence(state, command.presence);
    case 'RecordTelemetry':
      return decideAlerts(state, command.sample);
    case 'RecordAgentEvent':
      return decideAgentEvent(state, command.event);
    case 'RegisterRobot':
      return state.registered
        ? []
        : [event('RobotRegistered', state, command.eventId, command.at, { model: state.model })];
    case 'MarkFailed':
      requireKnown(state, context);
      if (state.failure) {
        throw new CommandRejected(
          'ALREADY_FAILED',
          `Robot ${state.robotId} is already marked failed (${state.failure.reason}); recover it first.`,
        );
      }
      return [event('RobotMarkedFailed', state, command.eventId, command.at, { reason: command.reason, by: command.by })];
    case 'Recover':
      requireKnown(state, context);
      if (!state.failure) {
        throw new CommandRejected('NOT_FAILED', `Robot ${state.robotId} is not marked failed; there is nothing to recover.`);
      }
      return [
        event('RobotRecovered', state, command.eventId, command.at, {
          by: command.by,
          ...(command.note ? { note: command.note } : {}),
        }),
      ];
    default:
      return assertNever(command);
  }
}

function requireKnown(state: RobotState, context: DecisionContext): void {
  if (!context.known) throw new CommandRejected('ROBOT_NOT_FOUND', `Robot ${state.robotId} is not known to the fleet.`);
}

function decidePresence(state: RobotState, presence: LifecycleEvent): DomainEvent[] {
  if (orderPresence(presence, state.presence.last) !== 'newer') return [];
  const at = new Date(presence.timestamp).toISOString();
  const eventId = `presence:${presence.sessionIdentifier}:${presence.eventType}`;
  if (presence.eventType === 'connected') {
    return [
      event('RobotConnected', state, eventId, at, {
        sessionIdentifier: presence.sessionIdentifier,
        versionNumber: presence.versionNumber,
        timestamp: presence.timestamp,
        ...(presence.ipAddress ? { ipAddress: presence.ipAddress } : {}),
      }),
    ];
  }
  // Nobody drives a robot that is gone: close the session so it does not stay open until the agent reports back.
  const stopTeleoperation = state.teleoperation.active
    ? [
        event('TeleoperationStopped', state, `${eventId}:teleoperation`, at, {
          reason: 'robot-disconnected',
          ...durationSince(state.teleoperation.since, at),
        }),
      ]
    : [];
  return [
    ...stopTeleoperation,
    event('RobotDisconnected', state, eventId, at, {
      sessionIdentifier: presence.sessionIdentifier,
      versionNumber: presence.versionNumber,
      clientInitiated: presence.clientInitiatedDisconnect,
      timestamp: presence.timestamp,
      ...(presence.disconnectReason ? { reason: presence.disconnectReason } : {}),
    }),
  ];
}

function decideAlerts(state: RobotState, sample: TelemetrySample): DomainEvent[] {
  const events: DomainEvent[] = [];
  for (const [metric, threshold] of Object.entries(ALERT_THRESHOLDS) as [keyof typeof ALERT_THRESHOLDS, NonNullable<(typeof ALERT_THRESHOLDS)[keyof typeof ALERT_THRESHOLDS]>][]) {
    const value = sample[metric];
    if (value === undefined) continue;
    const change = alertChange(threshold, value, state.alerts[metric] !== undefined);
    const eventId = `alert:${metric}:${sample.sampledAt}:${change}`;
    if (change === 'raise') {
      events.push(
        event('AlertRaised', state, eventId, sample.sampledAt, {
          metric,
          severity: threshold.severity,
          value,
          threshold: threshold.raiseAt,
        }),
      );
    } else if (change === 'clear') {
      events.push(event('AlertCleared', state, eventId, sample.sampledAt, { metric, value, threshold: threshold.clearBelow }));
    }
  }
  return events;
}

function decideAgentEvent(state: RobotState, agentEvent: AgentEvent): DomainEvent[] {
  switch (agentEvent.type) {
    case 'TeleoperationStarted': {
      // A start while a session is open means the stop was lost (agent restart): close the old session first.
      const superseded = state.teleoperation.active
        ? [
            event('TeleoperationStopped', state, `${agentEvent.eventId}:superseded`, agentEvent.occurredAt, {
              reason: 'superseded',
              ...durationSince(state.teleoperation.since, agentEvent.occurredAt),
            }),
          ]
        : [];
      return [...superseded, event('TeleoperationStarted', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    }
    case 'TeleoperationStopped':
      // Already closed (for example by the robot's disconnect): the agent's late stop adds nothing.
      if (!state.teleoperation.active) return [];
      return [event('TeleoperationStopped', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    case 'EventsDropped':
      // A fact about the robot's own record, whatever its state: recorded as it came, once per eventId.
      return [event('RobotEventsDropped', state, agentEvent.eventId, agentEvent.occurredAt, agentEvent.data)];
    default:
      return assertNever(agentEvent);
  }
}

function durationSince(since: string | null, at: string): { durationMs?: number } {
  if (!since) return {};
  const ms = Date.parse(at) - Date.parse(since);
  return Number.isFinite(ms) && ms >= 0 ? { durationMs: ms } : {};
}

function event<T extends DomainEvent['type']>(
  type: T,
  state: RobotState,
  eventId: string,
  at: string,
  data: EventOf<T>['data'],
): EventOf<T> {
  return { eventId, robotId: state.robotId, at, version: 1, type, data } as EventOf<T>;
}
