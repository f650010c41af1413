import { modelOf, type AlertSeverity, type DomainEvent, type RobotModel, type TelemetryMetric } from '../../schemas/index.js';
import type { PresenceMark } from './presence.js';

export interface ActiveAlert {
  readonly severity: AlertSeverity;
  readonly value: number;
  readonly threshold: number;
  readonly raisedAt: string;
}

/** A robot's state folded from its events. Plain JSON: it is stored in the head item and the read model as is. */
export interface RobotState {
  readonly robotId: string;
  readonly model: RobotModel;
  readonly registered: boolean;
  readonly presence: {
    readonly status: 'online' | 'offline';
    /** The newest lifecycle event applied, for ordering the next one. */
    readonly last: PresenceMark | null;
    /** When the current status began. */
    readonly since: string | null;
    readonly sessionIdentifier: string | null;
    readonly ipAddress: string | null;
  };
  readonly teleoperation: {
    readonly active: boolean;
    readonly operatorAddress: string | null;
    readonly since: string | null;
  };
  readonly alerts: Readonly<Partial<Record<TelemetryMetric, ActiveAlert>>>;
  readonly failure: { readonly reason: string; readonly by: string; readonly at: string } | null;
  /** Set while a deployment runs on the robot (deployments come with their own events later). */
  readonly deployment: { readonly deploymentId: string; readonly since: string } | null;
}

export function initialRobotState(robotId: string): RobotState {
  return {
    robotId,
    model: modelOf(robotId),
    registered: false,
    presence: { status: 'offline', last: null, since: null, sessionIdentifier: null, ipAddress: null },
    teleoperation: { active: false, operatorAddress: null, since: null },
    alerts: {},
    failure: null,
    deployment: null,
  };
}

/** Applies one event. Total and pure: every event the log holds folds, so the read models can always be rebuilt. */
export function evolve(state: RobotState, event: DomainEvent): RobotState {
  switch (event.type) {
    case 'RobotRegistered':
      return { ...state, registered: true, model: event.data.model };
    case 'RobotConnected':
      return {
        ...state,
        presence: {
          status: 'online',
          last: {
            eventType: 'connected',
            versionNumber: event.data.versionNumber,
            sessionIdentifier: event.data.sessionIdentifier,
            timestamp: event.data.timestamp,
          },
          since: event.at,
          sessionIdentifier: event.data.sessionIdentifier,
          ipAddress: event.data.ipAddress ?? null,
        },
      };
    case 'RobotDisconnected':
      return {
        ...state,
        presence: {
          status: 'offline',
          last: {
            eventType: 'disconnected',
            versionNumber: event.data.versionNumber,
            sessionIdentifier: event.data.sessionIdentifier,
            timestamp: event.data.timestamp,
          },
          since: event.at,
          sessionIdentifier: null,
          ipAddress: null,
        },
      };
    case 'AlertRaised':
      return {
        ...state,
        alerts: {
          ...state.alerts,
          [event.data.metric]: {
            severity: event.data.severity,
            value: event.data.value,
            threshold: event.data.threshold,
            raisedAt: event.at,
          },
        },
      };
    case 'AlertCleared': {
      const { [event.data.metric]: _cleared, ...rest } = state.alerts;
      return { ...state, alerts: rest };
    }
    case 'TeleoperationStarted':
      return {
        ...state,
        teleoperation: { active: true, operatorAddress: event.data.operatorAddress ?? null, since: event.at },
      };
    case 'TeleoperationStopped':
      return { ...state, teleoperation: { active: false, operatorAddress: null, since: null } };
    case 'RobotMarkedFailed':
      return { ...state, failure: { reason: event.data.reason, by: event.data.by, at: event.at } };
    case 'RobotRecovered':
      return { ...state, failure: null };
    case 'RobotEventsDropped':
      // History the robot could not keep: worth a line in its event history, changes nothing about its state.
      return state;
    default:
      return assertNever(event);
  }
}

export function fold(state: RobotState, events: readonly DomainEvent[]): RobotState {
  return events.reduce(evolve, state);
}

export function assertNever(value: never): never {
  throw new Error(`Unhandled case: ${JSON.stringify(value)}`);
}
