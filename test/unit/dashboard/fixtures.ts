import type { DeploymentRobotView, DeploymentView, EventView, FleetMetrics, RobotView, TelemetryView } from '../../../schemas/index.js';

/** Views as the API shows them, small and complete, for the dashboard's data-layer tests. */
export function telemetryAt(sampledAt: string, values: Partial<TelemetryView> = {}): TelemetryView {
  return { sampledAt, cpuPercent: 10, metrics: {}, ageMs: 0, stale: false, ...values };
}

export function robotView(robotId: string, overrides: Partial<RobotView> = {}): RobotView {
  return {
    robotId,
    model: robotId.startsWith('xle-') ? 'xle' : 'lekiwi',
    status: 'online',
    lifecycle: 'ready',
    healthy: true,
    deployable: true,
    registered: true,
    connection: null,
    lastSeenAt: '2026-12-01T10:00:00.000Z',
    teleoperation: { active: false, operatorAddress: null, since: null, confirmed: true },
    alerts: [],
    failure: null,
    rejectedMessages: { count: 0, last: null },
    telemetry: telemetryAt('2026-12-01T10:00:00.000Z'),
    certificate: null,
    software: { version: '1.0.0', update: null },
    lastSeq: 1,
    ...overrides,
  };
}

export function eventView(seq: number, overrides: Partial<EventView> = {}): EventView {
  return {
    seq,
    eventId: `event-${seq}`,
    type: 'RobotConnected',
    version: 1,
    at: new Date(Date.UTC(2026, 11, 1, 10, 0, seq)).toISOString(),
    recordedAt: new Date(Date.UTC(2026, 11, 1, 10, 0, seq)).toISOString(),
    data: {},
    ...overrides,
  };
}

/** The live feed's form of an event (no eventId, recordedAt = at), as messages.ts reads it. */
export function liveEventView(seq: number): EventView {
  const event = eventView(seq);
  return { ...event, eventId: '', recordedAt: event.at };
}

export function metrics(robots: number): FleetMetrics {
  return {
    robots,
    byStatus: { online: robots, offline: 0 },
    byLifecycle: { discovered: 0, provisioning: 0, ready: robots, active: 0, maintenance: 0, offline: 0, failed: 0 },
    byModel: { lekiwi: robots, xle: 0 },
    healthy: robots,
    deployable: robots,
    activeTeleoperations: 0,
    activeAlerts: { warning: 0, critical: 0, total: 0 },
    rejectedMessages: { total: 0, robots: 0 },
  };
}

export const DEPLOYMENT_ID = 'dep-01JE0000000000000000000000';

export function deploymentRobot(robotId: string, overrides: Partial<DeploymentRobotView> = {}): DeploymentRobotView {
  return { robotId, batch: 0, state: 'pending', reason: null, fromVersion: '1.0.0', queuedAt: null, startedAt: null, finishedAt: null, ...overrides };
}

/** A running deployment of 1.1.0 to three robots (one held), as GET /api/v2/deployments/{id} shows it. */
export function deploymentView(overrides: Partial<DeploymentView> = {}): DeploymentView {
  return {
    deploymentId: DEPLOYMENT_ID,
    kind: 'deploy',
    parentDeploymentId: null,
    rollbackDeploymentId: null,
    release: { version: '1.1.0', manifestSha256: 'a'.repeat(64) },
    state: 'running',
    reason: null,
    strategy: {
      canary: 1,
      batchSize: 5,
      abortThresholdPercent: 20,
      abortMinRobots: 5,
      robotTimeoutMinutes: 30,
      retries: 0,
      healthCheckTimeoutSeconds: 60,
    },
    targets: { robotIds: ['lekiwi-D1', 'lekiwi-D2', 'lekiwi-D3'] },
    note: null,
    createdBy: 'erin',
    createdAt: '2026-12-01T10:00:00.000Z',
    updatedAt: '2026-12-01T10:01:00.000Z',
    counts: { targeted: 3, held: 1, pending: 1, inProgress: 0, succeeded: 1, failed: 0, rolledBack: 0, canceled: 0 },
    batches: [
      { index: 0, kind: 'canary', jobId: `${DEPLOYMENT_ID}-b0`, state: 'done', robots: 1, succeeded: 1, failed: 0 },
      { index: 1, kind: 'rolling', jobId: null, state: 'pending', robots: 1, succeeded: 0, failed: 0 },
    ],
    robots: [
      deploymentRobot('lekiwi-D1', { state: 'succeeded', queuedAt: '2026-12-01T10:00:01.000Z', startedAt: '2026-12-01T10:00:02.000Z', finishedAt: '2026-12-01T10:00:32.000Z' }),
      deploymentRobot('lekiwi-D2', { batch: 1 }),
      deploymentRobot('lekiwi-D3', { batch: null, state: 'held', reason: 'teleoperated' }),
    ],
    ...overrides,
  };
}
