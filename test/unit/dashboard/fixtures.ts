import type { EventView, FleetMetrics, RobotView, TelemetryView } from '../../../schemas/index.js';

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
