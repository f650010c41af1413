import type { ActiveAlertView, RobotView, TelemetryMetric, TelemetryView } from '../../schemas/index.js';
import { isDeployable, isHealthy, isRegistered, lifecycleOf } from './lifecycle.js';
import { rejectionsOf, teleoperationConfirmed, type RobotState } from './robot-state.js';

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
    lastSeq,
  };
}
