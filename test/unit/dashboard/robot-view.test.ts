import { describe, expect, it } from 'vitest';
import { appendPoint, emptySeries, MAX_POINTS, pointOfView, seriesOf } from '../../../dashboard/src/views/chart-data.js';
import { eventLabel, summarizeEvent, teleoperationSessions } from '../../../dashboard/src/views/event-summary.js';
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

  it('summarizes provisioning and certificate events', () => {
    const say = (type: string, data: Record<string, unknown>) => summarizeEvent(eventView(1, { type, data }));
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    expect(say('RobotProvisioned', { serial: 'LK0001', model: 'lekiwi', batch: 'B1', certificateId: a, claim: 'reimage' })).toBe(
      'Provisioned by claim (re-image) as serial LK0001 of batch B1',
    );
    expect(say('CertificateIssued', { requestId: 'rot-12345678', certificateId: a })).toBe('Certificate issued for rotation rot-12345678');
    expect(say('CertificateRotated', { requestId: 'rot-12345678', oldCertificateId: a, newCertificateId: b, notAfter: null })).toBe(
      'Certificate rotated (aaaaaaaa → bbbbbbbb)',
    );
    expect(say('CertificateRotationFailed', { requestId: 'rot-12345678', reason: 'REIMAGED' })).toBe('Rotation abandoned: the robot was re-imaged');
    expect(say('CertificateRotationFailed', { requestId: 'rot-12345678', reason: 'NO_REPLY', detail: '30 s' })).toBe(
      'Certificate rotation failed: NO_REPLY (30 s)',
    );
    expect(say('ProvisioningFailed', { serial: 'LK0001', reason: 'HOOK_DENIED_RETIRED', step: 'registering' })).toBe(
      'Provisioning failed: HOOK_DENIED_RETIRED at registering',
    );
  });

  it('summarizes the software update events and labels them readably', () => {
    const say = (type: string, data: Record<string, unknown>) => summarizeEvent(eventView(1, { type, data }));
    const ref = { deploymentId: 'dep-01JE0000000000000000000000', jobId: 'dep-01JE0000000000000000000000-b1', version: '1.1.0' };
    expect(say('RobotUpdateQueued', { ...ref, kind: 'deploy', batch: 1 })).toBe('Update to 1.1.0 queued in batch 1 of dep-01JE0000000000000000000000');
    expect(say('RobotUpdateDeferred', { ...ref, reason: 'teleoperation' })).toBe('Update to 1.1.0 put off: the robot is being driven; it starts when that ends');
    expect(say('RobotUpdateStarted', { ...ref, kind: 'deploy', fromVersion: '1.0.0', filesToFetch: 3, bytesToFetch: 2_500_000 })).toBe(
      'Installing 1.0.0 → 1.1.0: 3 files (2.4 MB) to fetch',
    );
    expect(say('RobotUpdateSucceeded', { ...ref, kind: 'deploy', fromVersion: null, filesFetched: 1, bytesFetched: 512, durationMs: 42_000 })).toBe(
      'Updated no release → 1.1.0 in 42 s, 1 file fetched (512 B)',
    );
    expect(
      say('RobotUpdateFailed', { ...ref, kind: 'deploy', reason: 'HEALTH_CHECK_FAILED', step: 'restarted', detail: 'port 5555 closed', runningVersion: '1.0.0', source: 'robot' }),
    ).toBe('Update to 1.1.0 failed: HEALTH_CHECK_FAILED at restarted (port 5555 closed); runs 1.0.0');
    expect(say('RobotUpdateFailed', { ...ref, kind: 'deploy', reason: 'TIMED_OUT', runningVersion: null, source: 'jobs' })).toBe(
      'Update to 1.1.0 failed: TIMED_OUT; runs no release — ended by IoT Jobs, not reported by the robot',
    );
    expect(say('RobotUpdateRolledBack', { ...ref, version: '1.0.0', kind: 'rollback', fromVersion: '1.1.0', filesFetched: 0, bytesFetched: 0, durationMs: 9_000, parentDeploymentId: null })).toBe(
      'Rolled back 1.1.0 → 1.0.0 in 9 s, 0 files fetched (0 B)',
    );
    expect(say('SoftwareVersionReported', { version: '1.1.0', previous: '1.0.0' })).toBe('Runs 1.1.0 (was 1.0.0)');
    expect(say('SoftwareVersionReported', { version: '1.0.0', previous: null })).toBe('Runs 1.0.0 (was no release)');
    expect(['RobotUpdateQueued', 'RobotUpdateFailed', 'RobotUpdateRolledBack', 'SoftwareVersionReported', 'RobotConnected', 'AlertRaised'].map(eventLabel)).toEqual([
      'Update queued',
      'Update failed',
      'Rolled back',
      'Software version',
      'Robot connected',
      'Alert raised',
    ]);
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
