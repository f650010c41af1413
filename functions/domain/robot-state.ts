import { modelOf, type AlertSeverity, type DomainEvent, type RobotModel, type TelemetryMetric } from '../../schemas/index.js';
import type { PresenceMark } from './presence.js';
import { assertNever } from '../../lib/assert-never.js';
import { evolveUpdates, type RobotSoftware, type RobotUpdate } from './robot-updates.js';

export { softwareOf, type RobotSoftware, type RobotUpdate } from './robot-updates.js';

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
  /**
   * INVARIANTS
   * - At most one session is open (`active`); only the robot's own word (its agent's TeleoperationStopped or its
   *   TeleoperationState saying idle) or the offline timeout (`robot-offline`) ends it: a dropped link never does.
   * - `confirmed` is false exactly while a session is open and the robot's link dropped (a disconnect, or a new MQTT
   *   session replacing one still online) since the agent last spoke of it; the agent's next statement or start
   *   confirms it again. An idle robot is `confirmed` (there is nothing to doubt).
   * - Heads written before `confirmed` existed lack it: read it through `teleoperationConfirmed`.
   */
  readonly teleoperation: {
    readonly active: boolean;
    readonly operatorAddress: string | null;
    readonly since: string | null;
    readonly confirmed: boolean;
  };
  readonly alerts: Readonly<Partial<Record<TelemetryMetric, ActiveAlert>>>;
  readonly failure: { readonly reason: string; readonly by: string; readonly at: string } | null;
  /**
   * The software update the robot is in (issue 12, robot-updates.ts): queued in a batch job by the orchestrator,
   * deferred by the robot (teleoperated), or installing; null when none. While set the robot is `active` and not
   * deployable (lifecycle.ts). Heads written before updates existed hold null here (the field was never set).
   */
  readonly deployment: RobotUpdate | null;
  /**
   * The version the robot runs and the jobs that ended lately (robot-updates.ts). Absent in heads written before
   * updates existed: read it through `softwareOf`.
   */
  readonly software?: RobotSoftware;
  /**
   * The robot's own messages the cloud refused (DeviceMessagesRejected), summed. Absent until the first refusal (and
   * in heads written before it existed): read it through `rejectionsOf`.
   */
  readonly rejections?: RobotRejections;
  /**
   * Fleet provisioning (issue 11): the certificate the factory's hook last admitted as this robot (RobotProvisioned),
   * and whether the robot has connected since. Absent for robots never provisioned by claim (`npm run cert`, heads
   * written before it existed).
   * INVARIANT: `connected` is false from a RobotProvisioned until the next RobotConnected: the hook admits before IoT
   * activates the certificate, so only a connection proves the provisioning went through.
   */
  readonly provisioning?: RobotProvisioning;
  /** The first-boot failures the robot's agent reported (ProvisioningFailed), counted, with the newest. */
  readonly provisioningFailures?: RobotProvisioningFailures;
  /**
   * Certificate rotation (issue 11, item 4): the certificate the robot last rotated to (CertificateRotated), and the
   * newest rotation that failed (CertificateRotationFailed). Absent until the first rotation or failure (and in heads
   * written before it existed): read it through `certificateOf`.
   */
  readonly certificate?: RobotCertificate;
}

export interface RobotCertificate {
  /** The certificate in use: the last rotated to, else the one provisioning admitted; null when neither is known. */
  readonly id: string | null;
  readonly notAfter: string | null;
  /** When the robot last rotated (the cloud's confirm), null if never. */
  readonly rotatedAt: string | null;
  readonly lastFailure: { readonly requestId: string; readonly reason: string; readonly detail: string | null; readonly at: string } | null;
  /**
   * The open rotation's certificate: issued by the cloud (CertificateIssued) and not yet confirmed, failed or
   * replaced. Absent when no rotation is open (and in heads written before it existed).
   * INVARIANT: every certificate the cloud issued for a rotation is here until the event that ends the rotation,
   * and that event names it when the robot will not use it (CertificateRotationFailed `abandonedCertificateId`,
   * CertificateIssued `replacedCertificateId`), so the certificate retirer deactivates it.
   */
  readonly issued?: { readonly requestId: string; readonly certificateId: string } | null;
}

export interface RobotProvisioning {
  readonly serial: string;
  readonly batch: string;
  readonly certificateId: string;
  /** When the hook admitted it. */
  readonly at: string;
  /** How many certificates the hook admitted for the robot (its first claim and each re-image). */
  readonly claims: number;
  /** The admitted certificate's expiry, when RobotProvisioned carries it (absent in older events and heads). */
  readonly notAfter?: string;
  readonly connected: boolean;
}

export interface RobotProvisioningFailures {
  readonly count: number;
  readonly last: { readonly reason: string; readonly detail: string | null; readonly at: string };
}

export interface RobotRejections {
  readonly count: number;
  readonly last: { readonly reason: string; readonly topic: string | null; readonly at: string } | null;
}

export function initialRobotState(robotId: string): RobotState {
  return {
    robotId,
    model: modelOf(robotId),
    registered: false,
    presence: { status: 'offline', last: null, since: null, sessionIdentifier: null, ipAddress: null },
    teleoperation: { active: false, operatorAddress: null, since: null, confirmed: true },
    alerts: {},
    failure: null,
    deployment: null,
    software: { version: null, recent: [] },
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
        ...(state.provisioning && !state.provisioning.connected ? { provisioning: { ...state.provisioning, connected: true } } : {}),
        // A new MQTT session replacing one still online (another client took the id, its disconnect not seen yet):
        // the link dropped all the same.
        teleoperation:
          state.presence.status === 'online' && state.presence.sessionIdentifier !== event.data.sessionIdentifier
            ? unconfirmed(state.teleoperation)
            : state.teleoperation,
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
        // Nothing says the operator stopped: the session stays open until the agent speaks again or the timeout.
        teleoperation: unconfirmed(state.teleoperation),
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
        teleoperation: { active: true, operatorAddress: event.data.operatorAddress ?? null, since: event.at, confirmed: true },
      };
    case 'TeleoperationStopped':
      return { ...state, teleoperation: { active: false, operatorAddress: null, since: null, confirmed: true } };
    case 'TeleoperationConfirmed':
      return state.teleoperation.active ? { ...state, teleoperation: { ...state.teleoperation, confirmed: true } } : state;
    case 'RobotMarkedFailed':
      return { ...state, failure: { reason: event.data.reason, by: event.data.by, at: event.at } };
    case 'RobotRecovered':
      return { ...state, failure: null };
    case 'RobotEventsDropped':
      // History the robot could not keep: worth a line in its event history, changes nothing about its state.
      return state;
    case 'DeviceMessagesRejected':
      return {
        ...state,
        rejections: {
          count: rejectionsOf(state).count + event.data.count,
          last: { reason: event.data.lastReason, topic: event.data.lastTopic, at: event.at },
        },
      };
    case 'RobotProvisioned': {
      // A (re-)provisioned robot connects with the certificate it was just admitted with: a certificate from an
      // earlier rotation is revoked with the old image, so it no longer describes the robot.
      const { certificate: _replaced, ...rest } = state;
      return {
        ...rest,
        registered: true,
        model: event.data.model,
        provisioning: {
          serial: event.data.serial,
          batch: event.data.batch,
          certificateId: event.data.certificateId,
          at: event.at,
          claims: (state.provisioning?.claims ?? 0) + 1,
          connected: false,
          ...(event.data.certificateNotAfter ? { notAfter: event.data.certificateNotAfter } : {}),
        },
      };
    }
    case 'CertificateIssued':
      return {
        ...state,
        certificate: { ...certificateOf(state), issued: { requestId: event.data.requestId, certificateId: event.data.certificateId } },
      };
    case 'CertificateRotated':
      return {
        ...state,
        certificate: {
          ...certificateOf(state),
          id: event.data.newCertificateId,
          notAfter: event.data.notAfter,
          rotatedAt: event.at,
          issued: null,
        },
      };
    case 'CertificateRotationFailed': {
      const current = certificateOf(state);
      return {
        ...state,
        certificate: {
          ...current,
          lastFailure: { requestId: event.data.requestId, reason: event.data.reason, detail: event.data.detail ?? null, at: event.at },
          // The failed rotation is over; a failure of an older one leaves the open one open.
          ...(current.issued?.requestId === event.data.requestId ? { issued: null } : {}),
        },
      };
    }
    case 'ProvisioningFailed':
      return {
        ...state,
        provisioningFailures: {
          count: (state.provisioningFailures?.count ?? 0) + 1,
          last: { reason: event.data.reason, detail: event.data.detail ?? null, at: event.at },
        },
      };
    case 'RobotUpdateQueued':
    case 'RobotUpdateDeferred':
    case 'RobotUpdateStarted':
    case 'RobotUpdateSucceeded':
    case 'RobotUpdateFailed':
    case 'RobotUpdateRolledBack':
    case 'SoftwareVersionReported':
      return evolveUpdates(state, event);
    default:
      return assertNever(event);
  }
}

/** The robot's certificate as rotation knows it; before any rotation, the one provisioning admitted (if any). */
export function certificateOf(state: RobotState): RobotCertificate {
  return (
    state.certificate ?? {
      id: state.provisioning?.certificateId ?? null,
      notAfter: state.provisioning?.notAfter ?? null,
      rotatedAt: null,
      lastFailure: null,
    }
  );
}

/** The robot's refused messages; none for a state without the field. */
export function rejectionsOf(state: RobotState): RobotRejections {
  return state.rejections ?? { count: 0, last: null };
}

/** Whether the open session (if any) is confirmed; heads stored before the field existed read as confirmed. */
export function teleoperationConfirmed(teleoperation: RobotState['teleoperation']): boolean {
  return teleoperation.confirmed !== false;
}

function unconfirmed(teleoperation: RobotState['teleoperation']): RobotState['teleoperation'] {
  return teleoperation.active ? { ...teleoperation, confirmed: false } : teleoperation;
}

export function fold(state: RobotState, events: readonly DomainEvent[]): RobotState {
  return events.reduce(evolve, state);
}

