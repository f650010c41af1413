import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { expect } from 'vitest';
import type { DomainEvent, RobotView, TelemetrySample } from '../../schemas/index.js';
import { robotRow } from '../../functions/adapters/read-model-changes.js';
import { telemetryView } from '../../functions/domain/latest-telemetry.js';
import type { EventLog } from '../../functions/app/ports.js';
import { evolve, fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';

/** One robot for the read model: its history in the log, and the latest telemetry sample if any. */
export interface SeedRobot {
  readonly robotId: string;
  readonly events: readonly DomainEvent[];
  readonly telemetry?: TelemetrySample | null;
}

/** What a robot's history should leave it as; `robotHistory` writes the events that get it there. */
export interface RobotTraits {
  readonly registered?: boolean;
  readonly online?: boolean;
  readonly teleoperated?: boolean;
  readonly alerts?: readonly ('warning' | 'critical')[];
  /** The reason it was marked failed, if it was. */
  readonly failed?: string;
  /** When the history starts (ms since the epoch); each event is a second after the one before. */
  readonly startAt?: number;
}

const ALERT_METRICS = { warning: ['diskPercent', 'memoryPercent'], critical: ['cpuTemperatureC'] } as const;

/** The domain events of a robot with the given traits, in the order the log would hold them. */
export function robotHistory(robotId: string, traits: RobotTraits = {}): DomainEvent[] {
  let time = traits.startAt ?? Date.parse('2026-11-01T08:00:00.000Z');
  const next = () => new Date((time += 1000)).toISOString();
  const events: DomainEvent[] = [];
  const base = (eventId: string) => ({ eventId: `${robotId}:${eventId}`, robotId, version: 1 as const, at: next() });
  if (traits.registered ?? true) {
    events.push({ ...base('registered'), type: 'RobotRegistered', data: { model: robotId.startsWith('xle-') ? 'xle' : 'lekiwi' } });
  }
  const session = { sessionIdentifier: `session-${robotId}`, versionNumber: 1 };
  events.push({ ...base('connected'), type: 'RobotConnected', data: { ...session, ipAddress: '192.0.2.10', timestamp: time } });
  if (traits.teleoperated) {
    events.push({
      ...base('teleop'),
      type: 'TeleoperationStarted',
      data: { operatorAddress: '192.0.2.99', signals: ['actions', 'peer'], score: 0.9 },
    });
  }
  const used = { warning: 0, critical: 0 };
  for (const severity of traits.alerts ?? []) {
    const metric = ALERT_METRICS[severity][used[severity]++];
    if (!metric) throw new Error(`robotHistory: at most ${ALERT_METRICS[severity].length} ${severity} alerts`);
    events.push({ ...base(`alert-${metric}`), type: 'AlertRaised', data: { metric, severity, value: 95, threshold: 90 } });
  }
  if (traits.failed) {
    events.push({ ...base('failed'), type: 'RobotMarkedFailed', data: { reason: traits.failed, by: 'seed' } });
  }
  if (!(traits.online ?? true)) {
    if (traits.teleoperated) {
      events.push({ ...base('teleop-stop'), type: 'TeleoperationStopped', data: { reason: 'robot-disconnected' } });
    }
    events.push({
      ...base('disconnected'),
      type: 'RobotDisconnected',
      data: { ...session, clientInitiated: false, reason: 'CONNECTION_LOST', timestamp: time },
    });
  }
  return events;
}

/** A telemetry sample as the agent sends it. */
export function sample(sampledAt: string, values: Partial<TelemetrySample> = {}): TelemetrySample {
  return { sampledAt, cpuPercent: 12.5, memoryPercent: 40, diskPercent: 55, cpuTemperatureC: 51, agentVersion: '0.1.0', ...values };
}

/** A telemetry view whose ages match any number (they depend on when the API answers). */
function anyAges(view: RobotView['telemetry']): RobotView['telemetry'] {
  if (!view) return view;
  const metrics = Object.fromEntries(Object.entries(view.metrics).map(([field, value]) => [field, { ...value, ageMs: expect.any(Number) }]));
  return { ...view, ageMs: expect.any(Number), metrics };
}

const ROBOT_COLUMNS = `robot_id text, model text, status text, lifecycle text, healthy boolean, deployable boolean,
  teleoperation_active boolean, warning_alerts integer, critical_alerts integer, state jsonb, view jsonb,
  last_seq bigint, telemetry jsonb, telemetry_at timestamptz, software_version text`;

const CHUNK = 1_000;

/**
 * Writes robots into the read model the way the projector leaves them: the state folded from the events, the row
 * built by the projector's own `robotRow` (view with `telemetry: null`, filter columns, last_seq), the sample in its
 * column, and the history in robot_events with seq 1..n. Returns each robot as the API should show it (its telemetry's
 * ages, counted to the API's clock, as any number).
 */
export async function seedReadModel(pool: pg.Pool, robots: readonly SeedRobot[]): Promise<RobotView[]> {
  const views: RobotView[] = [];
  for (let start = 0; start < robots.length; start += CHUNK) {
    const chunk = robots.slice(start, start + CHUNK);
    const states = chunk.map((robot) => fold(initialRobotState(robot.robotId), robot.events));
    const rows = chunk.map((robot, i) => robotRow(robot.robotId, states[i]!, robot.events.length, robot.telemetry ?? null));
    const events = chunk.flatMap((robot) =>
      robot.events.map((event, index) => ({
        robot_id: robot.robotId,
        seq: index + 1,
        event_id: event.eventId,
        type: event.type,
        version: event.version,
        at: event.at,
        recorded_at: event.at,
        data: event.data,
      })),
    );
    await pool.query(
      `INSERT INTO robots (robot_id, model, status, lifecycle, healthy, deployable, teleoperation_active,
         warning_alerts, critical_alerts, state, view, last_seq, telemetry, telemetry_at, software_version)
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(${ROBOT_COLUMNS})`,
      [JSON.stringify(rows)],
    );
    await pool.query(
      `INSERT INTO robot_events (robot_id, seq, event_id, type, version, at, recorded_at, data)
       SELECT * FROM jsonb_to_recordset($1::jsonb) AS e(robot_id text, seq bigint, event_id text, type text,
         version integer, at timestamptz, recorded_at timestamptz, data jsonb)`,
      [JSON.stringify(events)],
    );
    views.push(
      ...chunk.map((robot, i) => {
        const online = states[i]!.presence.status === 'online';
        return toRobotView(states[i]!, robot.events.length, anyAges(telemetryView(robot.telemetry ?? null, online, new Date())));
      }),
    );
  }
  return views;
}

/** A registered, connected robot appended to an event log (its first two facts of `robotHistory`); its id. */
export async function appendConnectedRobot(log: Pick<EventLog, 'append'>, idPrefix: string): Promise<string> {
  const robotId = `${idPrefix}${randomUUID().slice(0, 8)}`;
  const events = robotHistory(robotId).slice(0, 2);
  const outcome = await log.append({
    robotId,
    expectedRevision: null,
    expectedLastSeq: 0,
    events,
    state: events.reduce(evolve, initialRobotState(robotId)),
    recordedAt: events.at(-1)!.at,
    previousTelemetry: null,
  });
  if (outcome.status !== 'appended') throw new Error(`could not append ${robotId}: ${outcome.status}`);
  return robotId;
}
