import {
  TELEMETRY_FIELDS,
  TELEMETRY_STALE_AFTER_MS,
  type LatestTelemetry,
  type TelemetryField,
  type TelemetrySample,
  type TelemetryValueView,
  type TelemetryView,
} from '../../schemas/index.js';

/**
 * A robot's latest telemetry, merged per metric (the rules are written in schemas/telemetry.ts). Pure: the clock comes
 * in as data. The ingest merges each sample into the head; the projector merges the heads into the robots row the
 * same way, so a row is right even for heads written before the merge existed (they carried the raw sample).
 *
 * INVARIANTS
 * - A value is replaced only by one sampled strictly later; merging the same telemetry twice changes nothing.
 * - `sampledAt` of the result is the newest sample time of either side; a value sampled before it is listed in
 *   `sampledEarlier` with its own time, a value sampled at it is not.
 * - The merge is order-independent (up to two values of one metric with the same time: the first kept), so however
 *   samples or heads arrive, the newest value of each metric wins.
 */

type Value = number | string;

interface Timed {
  readonly value: Value;
  readonly sampledAt: string;
  readonly ms: number;
}

/** Every value of `latest` with the time of the sample that carried it. */
function timedValues(latest: LatestTelemetry | null): Map<TelemetryField, Timed> {
  const values = new Map<TelemetryField, Timed>();
  if (!latest) return values;
  for (const field of TELEMETRY_FIELDS) {
    const value = latest[field];
    if (value === undefined) continue;
    const sampledAt = latest.sampledEarlier?.[field] ?? latest.sampledAt;
    values.set(field, { value, sampledAt, ms: Date.parse(sampledAt) });
  }
  return values;
}

export interface TelemetryMerge {
  readonly latest: LatestTelemetry;
  /**
   * What the incoming telemetry changed: its time and the values of it that were taken (newer than the stored ones);
   * null when it changed nothing (no value taken, and no newer than what was stored): a stale sample.
   */
  readonly taken: TelemetrySample | null;
}

export function mergeTelemetry(current: LatestTelemetry | null, incoming: LatestTelemetry): TelemetryMerge {
  const values = timedValues(current);
  const taken: Partial<Record<TelemetryField, Value>> = {};
  for (const [field, candidate] of timedValues(incoming)) {
    const stored = values.get(field);
    if (stored && !(candidate.ms > stored.ms)) continue;
    values.set(field, candidate);
    taken[field] = candidate.value;
  }
  const newer = !current || Date.parse(incoming.sampledAt) > Date.parse(current.sampledAt);
  const sampledAt = newer ? incoming.sampledAt : current.sampledAt;
  const newestMs = Date.parse(sampledAt);
  const latest: Record<string, unknown> = { sampledAt };
  const sampledEarlier: Partial<Record<TelemetryField, string>> = {};
  for (const field of TELEMETRY_FIELDS) {
    const timed = values.get(field);
    if (!timed) continue;
    latest[field] = timed.value;
    if (timed.ms < newestMs) sampledEarlier[field] = timed.sampledAt;
  }
  if (Object.keys(sampledEarlier).length > 0) latest.sampledEarlier = sampledEarlier;
  const changed = newer || Object.keys(taken).length > 0;
  return {
    latest: latest as LatestTelemetry,
    taken: changed ? ({ ...taken, sampledAt: incoming.sampledAt } as TelemetrySample) : null,
  };
}

/** The newest sample as the robot sent it: the values sampled at `sampledAt` (the history keeps samples as they came). */
export function newestSampleOf(latest: LatestTelemetry): TelemetrySample {
  const sample: Record<string, unknown> = { sampledAt: latest.sampledAt };
  for (const field of TELEMETRY_FIELDS) {
    if (latest[field] !== undefined && latest.sampledEarlier?.[field] === undefined) sample[field] = latest[field];
  }
  return sample as TelemetrySample;
}

/**
 * How a view shows the telemetry at `now`: every value with its time, age and staleness. A value is stale when the
 * robot is offline or it is older than TELEMETRY_STALE_AFTER_MS; an age is never negative (a robot's clock that runs
 * ahead of the cloud's gives age 0).
 */
export function telemetryView(latest: LatestTelemetry | null, robotOnline: boolean, now: Date): TelemetryView | null {
  if (!latest) return null;
  const nowMs = now.getTime();
  const ageOf = (ms: number) => (Number.isFinite(ms) ? Math.max(0, Math.round(nowMs - ms)) : 0);
  const staleAt = (ms: number) => !robotOnline || !Number.isFinite(ms) || nowMs - ms > TELEMETRY_STALE_AFTER_MS;
  const metrics: Partial<Record<TelemetryField, TelemetryValueView>> = {};
  for (const [field, { value, sampledAt, ms }] of timedValues(latest)) {
    metrics[field] = { value, sampledAt, ageMs: ageOf(ms), stale: staleAt(ms) };
  }
  const { sampledEarlier: _times, ...values } = latest;
  const newestMs = Date.parse(latest.sampledAt);
  return { ...values, metrics, ageMs: ageOf(newestMs), stale: staleAt(newestMs) };
}
