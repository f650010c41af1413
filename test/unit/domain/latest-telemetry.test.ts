import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mergeTelemetry, newestSampleOf, telemetryView } from '../../../functions/domain/latest-telemetry.js';
import { LatestTelemetry, TELEMETRY_STALE_AFTER_MS, TelemetryView, type TelemetrySample } from '../../../schemas/index.js';

const T0 = Date.parse('2026-11-22T10:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
const FULL = { cpuPercent: 31, memoryPercent: 42, diskPercent: 53 };

describe('mergeTelemetry', () => {
  it('keeps the values a sample leaves out, each with the time of the sample that carried it', () => {
    const first = mergeTelemetry(null, { sampledAt: at(0), ...FULL });
    const { latest, taken } = mergeTelemetry(first.latest, { sampledAt: at(30), cpuPercent: 60 });

    expect(latest).toEqual({
      sampledAt: at(30),
      ...FULL,
      cpuPercent: 60,
      sampledEarlier: { memoryPercent: at(0), diskPercent: at(0) },
    });
    expect(LatestTelemetry.parse(latest)).toEqual(latest);
    expect(taken).toEqual({ sampledAt: at(30), cpuPercent: 60 });
    expect(newestSampleOf(latest)).toEqual({ sampledAt: at(30), cpuPercent: 60 });
  });

  it('takes from a late sample only the values it has newer; one with nothing newer is stale', () => {
    const stored = mergeTelemetry(mergeTelemetry(null, { sampledAt: at(0), ...FULL }).latest, { sampledAt: at(20), cpuPercent: 60 }).latest;

    const late = mergeTelemetry(stored, { sampledAt: at(10), cpuPercent: 90, memoryPercent: 47 });
    expect(late.latest).toMatchObject({ sampledAt: at(20), cpuPercent: 60, memoryPercent: 47, diskPercent: 53 });
    expect(late.latest.sampledEarlier).toEqual({ memoryPercent: at(10), diskPercent: at(0) });
    expect(late.taken).toEqual({ sampledAt: at(10), memoryPercent: 47 });

    expect(mergeTelemetry(late.latest, { sampledAt: at(5), cpuPercent: 1, memoryPercent: 1 }).taken).toBeNull();
    // The same sample again changes nothing.
    expect(mergeTelemetry(late.latest, { sampledAt: at(20), cpuPercent: 60 }).taken).toBeNull();
  });

  it('a sample with only sampledAt moves the time on and changes no value', () => {
    const stored = mergeTelemetry(null, { sampledAt: at(0), ...FULL }).latest;
    const { latest, taken } = mergeTelemetry(stored, { sampledAt: at(30) });
    expect(latest).toEqual({ sampledAt: at(30), ...FULL, sampledEarlier: { cpuPercent: at(0), memoryPercent: at(0), diskPercent: at(0) } });
    expect(taken).toEqual({ sampledAt: at(30) });
  });

  it('gives each metric its newest value whatever order the samples come in', () => {
    const sampleArb = fc
      .record(
        { seconds: fc.integer({ min: 0, max: 50 }), cpuPercent: fc.integer({ min: 0, max: 100 }), diskPercent: fc.integer({ min: 0, max: 100 }) },
        { requiredKeys: ['seconds'] },
      )
      .map(({ seconds, ...values }): TelemetrySample => ({ sampledAt: at(seconds), ...values }));
    // Distinct times: two different values of one metric at the same instant have no order to respect.
    const samplesArb = fc.uniqueArray(sampleArb, { selector: (sample) => sample.sampledAt, minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(samplesArb, fc.func(fc.integer()), (samples, key) => {
        const shuffled = [...samples].sort((a, b) => key(a.sampledAt) - key(b.sampledAt));
        const fold = (list: readonly TelemetrySample[]) => list.reduce<LatestTelemetry | null>((latest, s) => mergeTelemetry(latest, s).latest, null);
        const byTime = [...samples].sort((a, b) => a.sampledAt.localeCompare(b.sampledAt));
        const expected = telemetryView(fold(byTime), true, new Date(T0));
        expect(telemetryView(fold(shuffled), true, new Date(T0))).toEqual(expected);
      }),
    );
  });
});

describe('telemetryView', () => {
  const latest = mergeTelemetry(mergeTelemetry(null, { sampledAt: at(0), ...FULL }).latest, { sampledAt: at(200), cpuPercent: 60 }).latest;

  it('shows every value with its time and age, stale once older than the threshold', () => {
    const view = telemetryView(latest, true, new Date(T0 + 210_000))!;
    expect(TelemetryView.parse(view)).toEqual(view);
    expect(view).toMatchObject({ sampledAt: at(200), cpuPercent: 60, memoryPercent: 42, ageMs: 10_000, stale: false });
    expect(view.metrics.cpuPercent).toEqual({ value: 60, sampledAt: at(200), ageMs: 10_000, stale: false });
    expect(view.metrics.diskPercent).toEqual({ value: 53, sampledAt: at(0), ageMs: 210_000, stale: 210_000 > TELEMETRY_STALE_AFTER_MS });
    expect(view).not.toHaveProperty('sampledEarlier');
  });

  it("marks every value of an offline robot stale, however recent", () => {
    const view = telemetryView(latest, false, new Date(T0 + 200_000))!;
    expect(view.stale).toBe(true);
    expect(Object.values(view.metrics).every((metric) => metric.stale)).toBe(true);
  });

  it('never shows a negative age when the robot clock runs ahead', () => {
    expect(telemetryView(latest, true, new Date(T0))?.metrics.cpuPercent?.ageMs).toBe(0);
  });
});
