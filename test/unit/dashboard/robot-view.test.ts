import { describe, expect, it } from 'vitest';
import { appendPoint, emptySeries, MAX_POINTS, pointOfView, seriesOf } from '../../../dashboard/src/views/chart-data.js';
import { summarizeEvent, teleoperationSessions } from '../../../dashboard/src/views/event-summary.js';
import { openAlerts } from '../../../dashboard/src/views/alerts-model.js';
import { eventView, robotView, telemetryAt } from './fixtures.js';

describe('robot view', () => {
  it('summarizes every domain event in a sentence', () => {
    const say = (type: string, data: Record<string, unknown>) => summarizeEvent(eventView(1, { type, data }));
    expect(say('AlertRaised', { metric: 'cpuTemperatureC', severity: 'critical', value: 91.2, threshold: 85 })).toBe(
      'critical alert: CPU temperature 91.2 °C ≥ 85.0 °C',
    );
    expect(say('TeleoperationStarted', { operatorAddress: '192.168.1.5', signals: ['actions', 'peer'] })).toBe(
      'Teleoperation started by 192.168.1.5 (signals: actions, peer)',
    );
    expect(say('TeleoperationStopped', { durationMs: 125_000, reason: 'agent-idle' })).toBe('Teleoperation stopped after 2 min (agent-idle)');
    expect(say('RobotMarkedFailed', { reason: 'wheel', by: 'alice' })).toBe('Marked failed by alice: wheel');
    expect(say('RobotDisconnected', { clientInitiated: false, reason: 'MQTT_KEEP_ALIVE_TIMEOUT' })).toBe('Disconnected (MQTT_KEEP_ALIVE_TIMEOUT)');
    expect(say('SomethingNew', { a: 1 })).toBe('{"a":1}');
  });

  it('pairs teleoperation starts with their stops, newest first; an open session has no stop', () => {
    const events = [
      eventView(6, { type: 'TeleoperationStarted', at: '2026-12-01T10:05:00Z', data: { operatorAddress: 'op-3' } }),
      eventView(5, { type: 'TeleoperationStopped', at: '2026-12-01T10:03:00Z', data: { reason: 'agent-idle' } }),
      eventView(4, { type: 'TeleoperationStarted', at: '2026-12-01T10:01:00Z', data: { operatorAddress: 'op-2' } }),
      eventView(3, { type: 'RobotConnected' }),
      eventView(2, { type: 'TeleoperationStopped', at: '2026-12-01T10:00:30Z', data: { reason: 'robot-offline', durationMs: 30_000 } }),
    ];
    const sessions = teleoperationSessions(events);
    expect(sessions.map((s) => [s.operator, s.stoppedAt, s.durationMs, s.reason])).toEqual([
      ['op-3', null, null, null],
      ['op-2', '2026-12-01T10:03:00Z', 120_000, 'agent-idle'],
    ]);
  });

  it('charts: history then live, times strictly increasing, at most 3,600 points', () => {
    const series = seriesOf(
      [
        { sampledAt: '2026-12-01T10:00:00Z', cpuPercent: 10 },
        { sampledAt: '2026-12-01T10:00:01Z', memoryPercent: 40 },
      ],
      [{ at: Date.parse('2026-12-01T10:00:01Z'), values: { cpuPercent: 99 } }],
    );
    expect(series.x).toHaveLength(2);
    expect(series.y.cpuPercent).toEqual([10, null]);
    expect(series.y.memoryPercent).toEqual([null, 40]);
    const long = emptySeries();
    for (let i = 0; i < MAX_POINTS + 10; i++) appendPoint(long, { at: i * 1000, values: { diskPercent: i } });
    expect(long.x).toHaveLength(MAX_POINTS);
    expect(long.y.diskPercent[0]).toBe(10);
    expect(long.x[0]).toBe(10);
  });

  it('a live view charts only the metrics its newest sample carried', () => {
    const telemetry = telemetryAt('2026-12-01T10:00:05Z', {
      cpuPercent: 30,
      memoryPercent: 50,
      metrics: {
        cpuPercent: { value: 30, sampledAt: '2026-12-01T10:00:05Z', ageMs: 0, stale: false },
        memoryPercent: { value: 50, sampledAt: '2026-12-01T09:59:00Z', ageMs: 65_000, stale: false },
      },
    });
    expect(pointOfView(telemetry)).toEqual({ at: Date.parse('2026-12-01T10:00:05Z'), values: { cpuPercent: 30 } });
  });

  it('lists the open alerts of the fleet newest first, critical before warning at the same time', () => {
    const alert = (metric: 'cpuPercent' | 'diskPercent', severity: 'warning' | 'critical', raisedAt: string) => ({ metric, severity, value: 1, threshold: 1, raisedAt });
    const robots = new Map([
      ['lekiwi-A', robotView('lekiwi-A', { alerts: [alert('cpuPercent', 'warning', '2026-12-01T09:00:00Z')] })],
      ['lekiwi-B', robotView('lekiwi-B', { alerts: [alert('diskPercent', 'warning', '2026-12-01T09:30:00Z'), alert('cpuPercent', 'critical', '2026-12-01T09:30:00Z')] })],
      ['lekiwi-C', robotView('lekiwi-C')],
    ]);
    expect(openAlerts(robots).map((row) => `${row.robotId}/${row.alert.metric}`)).toEqual(['lekiwi-B/cpuPercent', 'lekiwi-B/diskPercent', 'lekiwi-A/cpuPercent']);
  });
});
