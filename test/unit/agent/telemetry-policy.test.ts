import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  decideTelemetrySend,
  telemetryPolicyConfig,
  type TelemetryPolicyConfig,
} from '../../../agent/core/telemetry-policy.js';
import type { TelemetrySample } from '../../../schemas/device.js';

const T0 = 1_000_000;

/** A Pi idling along: the sample every test starts from. */
const baseline: TelemetrySample = {
  sampledAt: '2026-11-22T08:00:00.000Z',
  cpuPercent: 20,
  memoryPercent: 40,
  memoryUsedBytes: 1_600_000_000,
  diskPercent: 50,
  cpuTemperatureC: 55,
  uptimeSeconds: 3_600,
  load1: 0.8,
  networkRxBytes: 10_000_000,
  networkTxBytes: 5_000_000,
  agentVersion: '1.4.0',
  lerobotVersion: '0.3.2',
};

/** The baseline was sent at T0; here is a reading taken `afterMs` later. */
function decide(afterMs: number, reading: Partial<TelemetrySample>, config?: TelemetryPolicyConfig, requested?: boolean) {
  return decideTelemetrySend(
    { lastSent: { sample: baseline, at: T0 }, reading: { ...baseline, ...reading }, now: T0 + afterMs, requested },
    config,
  );
}

describe('telemetry policy', () => {
  it('sends the first reading at once, listing everything it carries', () => {
    // Given nothing sent yet
    // When the first reading comes
    const reading = { sampledAt: baseline.sampledAt, cpuPercent: 3, agentVersion: '1.4.0' };
    const decision = decideTelemetrySend({ lastSent: null, reading, now: T0 });

    // Then it goes out
    expect(decision).toEqual({ send: true, reason: 'first', changed: ['cpuPercent', 'agentVersion'] });
  });

  it.each<[keyof TelemetrySample, number, number]>([
    ['cpuPercent', 24.9, 25],
    ['memoryPercent', 41.9, 42],
    ['diskPercent', 50.9, 51],
    ['cpuTemperatureC', 56.9, 57],
    ['load1', 1.2, 1.3],
    ['load1', 0.4, 0.3],
  ])('holds %s inside its deadband (%d) and sends it at the edge (%d)', (metric, inside, edge) => {
    // Given the baseline sent 6 s ago (past the 5 s minimum, far from the 60 s maximum)
    // When the metric moves just inside its deadband, then to its edge
    const held = decide(6_000, { [metric]: inside });
    const sent = decide(6_000, { [metric]: edge });

    // Then only the edge is news
    expect(held).toEqual({ send: false, reason: 'unchanged', changed: [] });
    expect(sent).toEqual({ send: true, reason: 'changed', changed: [metric] });
  });

  it('counts a step of exactly the deadband despite float rounding', () => {
    // Given a load of 2.3 sent 6 s ago (2.3 - 1.8 is 0.4999999999999998 in floating point)
    const lastSent = { sample: { ...baseline, load1: 2.3 }, at: T0 };

    // When the load falls to 1.8
    const decision = decideTelemetrySend({ lastSent, reading: { ...baseline, load1: 1.8 }, now: T0 + 6_000 });

    // Then that is a 0.5 step, past the deadband
    expect(decision).toEqual({ send: true, reason: 'changed', changed: ['load1'] });
  });

  it('compares with the last sample sent, so a slow drift still gets through', () => {
    // Given CPU creeping up 3 points per reading, each held back as inside the deadband
    const first = decide(6_000, { cpuPercent: 23 });

    // When it has crept 6 points from what was sent
    const second = decide(12_000, { cpuPercent: 26 });

    // Then the second reading goes out
    expect(first.send).toBe(false);
    expect(second).toEqual({ send: true, reason: 'changed', changed: ['cpuPercent'] });
  });

  it('never sends more often than the minimum interval, but says what changed', () => {
    // Given the baseline sent 4.999 s ago
    // When the temperature jumps
    const early = decide(4_999, { cpuTemperatureC: 79, cpuPercent: 90 });
    const onTime = decide(5_000, { cpuTemperatureC: 79, cpuPercent: 90 });

    // Then it waits for the interval, and goes out as soon as it has passed
    expect(early).toEqual({ send: false, reason: 'too-soon', changed: ['cpuPercent', 'cpuTemperatureC'] });
    expect(onTime).toEqual({ send: true, reason: 'changed', changed: ['cpuPercent', 'cpuTemperatureC'] });
  });

  it('sends at least every maximum interval, even when nothing moved', () => {
    // Given an unchanged robot
    // When 59.999 s and then 60 s have passed since the last send
    const before = decide(59_999, {});
    const at = decide(60_000, {});

    // Then the heartbeat is due at exactly the maximum interval
    expect(before).toEqual({ send: false, reason: 'unchanged', changed: [] });
    expect(at).toEqual({ send: true, reason: 'heartbeat', changed: [] });
  });

  it('does not let cumulative counters trigger sends by growing', () => {
    // Given network traffic of a gigabyte and a minute more uptime since the last send
    const reading = {
      networkRxBytes: 1_010_000_000,
      networkTxBytes: 905_000_000,
      uptimeSeconds: 3_659,
      memoryUsedBytes: 1_700_000_000,
    };

    // When read 30 s after the last send
    const decision = decide(30_000, reading);

    // Then that alone is not news
    expect(decision).toEqual({ send: false, reason: 'unchanged', changed: [] });
  });

  it('sends when a counter goes backwards: the robot rebooted', () => {
    // Given uptime and the network counters restarting from zero
    // When read 30 s after the last send
    const decision = decide(30_000, { uptimeSeconds: 25, networkRxBytes: 4_000, networkTxBytes: 2_000 });

    // Then it goes out, naming the counters that reset
    expect(decision).toEqual({ send: true, reason: 'changed', changed: ['uptimeSeconds', 'networkRxBytes', 'networkTxBytes'] });
  });

  it('sends any version change, and a metric appearing or disappearing', () => {
    // Given an upgrade of LeRobot, and separately a thermal sensor that stopped answering
    const upgraded = decide(6_000, { lerobotVersion: '0.3.3' });
    const sensorLost = decide(6_000, { cpuTemperatureC: undefined });

    // Then both are news
    expect(upgraded).toEqual({ send: true, reason: 'changed', changed: ['lerobotVersion'] });
    expect(sensorLost).toEqual({ send: true, reason: 'changed', changed: ['cpuTemperatureC'] });
  });

  it('answers a "report now" request at once, even inside the minimum interval', () => {
    // Given the baseline sent 1 s ago and nothing changed
    // When the cloud asks for a fresh report
    const decision = decide(1_000, {}, undefined, true);

    // Then it goes out
    expect(decision).toEqual({ send: true, reason: 'requested', changed: [] });
  });

  it('does not go silent when the clock jumps backwards', () => {
    // Given a clock that now reads an hour before the last send
    // When a reading comes
    const decision = decide(-3_600_000, {});

    // Then it is sent, which also gives the caller a new baseline on the new clock
    expect(decision).toEqual({ send: true, reason: 'clock-moved', changed: [] });
  });

  it('rejects a time that is not a number', () => {
    expect(() => decide(Number.NaN, {})).toThrow(/now must be a finite number/);
  });

  it('uses configured intervals and deadbands', () => {
    // Given a policy of 1–10 s with a 10-point CPU deadband
    const config = telemetryPolicyConfig({ minIntervalMs: 1_000, maxIntervalMs: 10_000, deadbands: { cpuPercent: 10 } });

    // When readings come
    const cpuNine = decide(1_000, { cpuPercent: 29 }, config);
    const cpuTen = decide(1_000, { cpuPercent: 30 }, config);
    const quiet = decide(10_000, {}, config);

    // Then the configured values rule, and the other deadbands keep their defaults
    expect(cpuNine).toMatchObject({ send: false, reason: 'unchanged' });
    expect(cpuTen).toMatchObject({ send: true, reason: 'changed' });
    expect(quiet).toMatchObject({ send: true, reason: 'heartbeat' });
    expect(config.deadbands.diskPercent).toBe(1);
  });

  it.each<[string, Parameters<typeof telemetryPolicyConfig>[0]]>([
    ['maxIntervalMs', { minIntervalMs: 10_000, maxIntervalMs: 5_000 }],
    ['deadbands.load1', { deadbands: { load1: -0.5 } }],
    ['minIntervalMs', { minIntervalMs: 1.5 }],
  ])('rejects a bad %s, naming it', (path, overrides) => {
    // When a bad config is built
    let error: unknown;
    try {
      telemetryPolicyConfig(overrides);
    } catch (caught) {
      error = caught;
    }

    // Then the error points at the field
    expect(error).toBeInstanceOf(z.ZodError);
    expect((error as z.ZodError).issues.map((issue) => issue.path.join('.'))).toEqual([path]);
  });

  it('over any stream of readings: sends are never closer than the minimum nor further apart than the maximum', () => {
    const reading = fc.record({
      cpuPercent: fc.double({ min: 0, max: 100, noNaN: true }),
      cpuTemperatureC: fc.double({ min: 30, max: 90, noNaN: true }),
      diskPercent: fc.double({ min: 0, max: 100, noNaN: true }),
      agentVersion: fc.constantFrom('1.4.0', '1.5.0'),
    });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 2_000 }), reading), { minLength: 1, maxLength: 300 }), (readings) => {
        // Given readings arriving every 1–2000 ms
        let now = T0;
        let lastSent: { sample: TelemetrySample; at: number } | null = null;
        const sentAt: number[] = [];

        // When each is decided on and the sent ones remembered
        for (const [dt, values] of readings) {
          now += dt;
          const sample = { sampledAt: baseline.sampledAt, ...values };
          const decision = decideTelemetrySend({ lastSent, reading: sample, now });
          if (decision.send) {
            sentAt.push(now);
            lastSent = { sample, at: now };
          }
        }

        // Then consecutive sends are 5–62 s apart (60 s plus at most one reading period of lateness)
        sentAt.slice(1).forEach((at, index) => {
          const gap = at - sentAt[index]!;
          expect(gap).toBeGreaterThanOrEqual(5_000);
          expect(gap).toBeLessThanOrEqual(62_000);
        });
        expect(sentAt[0]).toBe(T0 + readings[0]![0]);
      }),
      { numRuns: 300 },
    );
  });
});
