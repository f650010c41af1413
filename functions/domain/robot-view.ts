import type { ActiveAlertView, RobotCertificateView, RobotView, TelemetryMetric, TelemetryView } from '../../schemas/index.js';
import type { RobotSoftwareView } from '../../schemas/deployments.js';
import { isDeployable, isHealthy, isRegistered, lifecycleOf } from './lifecycle.js';
import { certificateOf, rejectionsOf, softwareOf, teleoperationConfirmed, type RobotState } from './robot-state.js';

/**
 * How the API shows a robot: its folded state plus the derived lifecycle, health and deployability, and its telemetry
 * as latest-telemetry.ts `telemetryView` shows it at the time of the answer.
 */
export function toRobotView(state: RobotState, lastSeq: number, telemetry: TelemetryView | null): RobotView {
  // Oldest first, in a fixed order: the state's key order is not stable (PostgreSQL's jsonb reorders object keys),
  // and the same state must always give the same view.
  const alerts: ActiveAlertView[] = Object.entries(state.alerts)
    .flatMap(([metric, alert]) => (alert ? [{ metric: metric as TelemetryMetric, ...alert }] : []))
    .sort((a, b) => a.raisedAt.localeCompare(b.raisedAt) || a.metric.localeCompare(b.metric));
  return {
    robotId: state.robotId,
    model: state.model,
    status: state.presence.status,
    lifecycle: lifecycleOf(state),
    healthy: isHealthy(state),
    deployable: isDeployable(state),
    registered: isRegistered(state),
    connection:
      state.presence.status === 'online' && state.presence.sessionIdentifier && state.presence.since
        ? {
            sessionIdentifier: state.presence.sessionIdentifier,
            ipAddress: state.presence.ipAddress,
            since: state.presence.since,
          }
        : null,
    lastSeenAt: state.presence.status === 'online' ? null : state.presence.since,
    teleoperation: {
      active: state.teleoperation.active,
      operatorAddress: state.teleoperation.operatorAddress,
      since: state.teleoperation.since,
      confirmed: teleoperationConfirmed(state.teleoperation),
    },
    alerts,
    failure: state.failure ? { ...state.failure } : null,
    rejectedMessages: { count: rejectionsOf(state).count, last: rejectionsOf(state).last ? { ...rejectionsOf(state).last! } : null },
    telemetry,
    certificate: certificateView(state),
    software: softwareView(state),
    lastSeq,
  };
}

/** The version the robot runs and the update it is in (queued, deferred or installing), if any. */
export function softwareView(state: RobotState): RobotSoftwareView {
  const update = state.deployment;
  return {
    version: softwareOf(state).version,
    update: update ? { deploymentId: update.deploymentId, version: update.version, state: update.state, since: update.since } : null,
  };
}

/**
 * The robot's certificate for the fleet's certificate ages: the one it rotated to, else the one provisioning admitted;
 * null when the state knows neither nor any failed rotation (a robot given its certificate by `npm run cert`).
 * `issuedAt` is the rotation's time, or the admission's for the provisioned certificate (IoT makes it moments before
 * the hook admits it); `notAfter` comes with a rotation, or with the provisioning (RobotProvisioned's optional
 * `certificateNotAfter`; null for robots provisioned before the hook recorded it).
 */
export function certificateView(state: RobotState): RobotCertificateView | null {
  if (!state.certificate && !state.provisioning) return null;
  const certificate = certificateOf(state);
  const provisioned = state.provisioning && certificate.id === state.provisioning.certificateId ? state.provisioning.at : null;
  const failure = certificate.lastFailure;
  return {
    id: certificate.id,
    issuedAt: certificate.rotatedAt ?? provisioned,
    notAfter: certificate.notAfter,
    rotatedAt: certificate.rotatedAt,
    lastRotationFailure: failure ? { reason: failure.reason, detail: failure.detail, at: failure.at } : null,
  };
}
