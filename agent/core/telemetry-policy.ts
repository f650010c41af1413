import { z } from 'zod';
import type { TelemetrySample } from '../../schemas/device.js';
import { assertNever } from '../../lib/assert-never.js';

/**
 * "Send this telemetry reading now?" Vital signs go out when they move past a deadband, never more often than the
 * minimum interval (the Pi's uplink and the messaging bill) and at least every maximum interval (so the cloud can
 * tell a quiet robot from a silent one). Readings are compared with the last sample *sent*, not the last one read,
 * so a slow drift still crosses its deadband eventually. Pure: the caller passes `now` and remembers what it sent.
 */

export type TelemetryField = Exclude<keyof TelemetrySample, 'sampledAt'>;

/** How a field can trigger a send. Typed over every field of the sample, so a new field must be classified here. */
const TRIGGER_OF = {
  cpuPercent: 'deadband',
  memoryPercent: 'deadband',
  diskPercent: 'deadband',
  cpuTemperatureC: 'deadband',
  load1: 'deadband',
  // Moves with memoryPercent, which carries the deadband.
  memoryUsedBytes: 'never',
  // Cumulative counters grow on every reading; only going backwards (a reboot, a counter reset) is news.
  uptimeSeconds: 'reset',
  networkRxBytes: 'reset',
  networkTxBytes: 'reset',
  agentVersion: 'any-change',
  lerobotVersion: 'any-change',
} as const satisfies Record<TelemetryField, 'deadband' | 'reset' | 'any-change' | 'never'>;

const TELEMETRY_FIELDS = Object.keys(TRIGGER_OF) as TelemetryField[];

type DeadbandField = { [F in TelemetryField]: (typeof TRIGGER_OF)[F] extends 'deadband' ? F : never }[TelemetryField];

const deadband = z.number().nonnegative();

export const TelemetryPolicyConfig = z
  .object({
    minIntervalMs: z.number().int().nonnegative(),
    maxIntervalMs: z.number().int().positive(),
    deadbands: z
      .object({
        cpuPercent: deadband,
        memoryPercent: deadband,
        diskPercent: deadband,
        cpuTemperatureC: deadband,
        load1: deadband,
      } satisfies Record<DeadbandField, typeof deadband>)
      .strict(),
  })
  .strict()
  .refine((config) => config.minIntervalMs <= config.maxIntervalMs, {
    path: ['maxIntervalMs'],
    message: 'must be at least minIntervalMs',
  });
export type TelemetryPolicyConfig = z.infer<typeof TelemetryPolicyConfig>;

export const DEFAULT_TELEMETRY_POLICY: TelemetryPolicyConfig = Object.freeze({
  // At most one message per 5 s even while everything moves: 12 a minute keeps a robot far under 1 KB/s.
  minIntervalMs: 5_000,
  // A robot that says nothing for a minute is worth a look; the cloud's staleness checks can rely on this.
  maxIntervalMs: 60_000,
  deadbands: Object.freeze({
    // CPU jitters by a few points between readings; 5 points is a real change in load.
    cpuPercent: 5,
    memoryPercent: 2,
    // Disk fills slowly and its alert sits at 90 %: every point counts.
    diskPercent: 1,
    // The critical alert is at 80 °C; 2 °C steps follow a heating Pi without reporting sensor noise.
    cpuTemperatureC: 2,
    load1: 0.5,
  }),
});

export interface TelemetryPolicyOverrides {
  readonly minIntervalMs?: number;
  readonly maxIntervalMs?: number;
  readonly deadbands?: Partial<TelemetryPolicyConfig['deadbands']>;
}

/** The defaults with `overrides` applied; a bad value throws a zod error whose path names the field. */
export function telemetryPolicyConfig(overrides: TelemetryPolicyOverrides = {}): TelemetryPolicyConfig {
  return TelemetryPolicyConfig.parse({
    ...DEFAULT_TELEMETRY_POLICY,
    ...overrides,
    deadbands: { ...DEFAULT_TELEMETRY_POLICY.deadbands, ...overrides.deadbands },
  });
}

export interface TelemetryPolicyInput {
  /** The last sample actually sent and when (same clock as `now`, in ms); null before the first send. */
  readonly lastSent: { readonly sample: TelemetrySample; readonly at: number } | null;
  readonly reading: TelemetrySample;
  readonly now: number;
  /** The cloud asked for a fresh report ("report now"): answer even inside the minimum interval. */
  readonly requested?: boolean;
}

export type TelemetrySendReason = 'first' | 'requested' | 'changed' | 'heartbeat' | 'clock-moved';
export type TelemetryHoldReason = 'too-soon' | 'unchanged';

/** `changed` lists the fields past their deadband since the last send, also when held back (for the logs). */
export type TelemetryDecision =
  | { readonly send: true; readonly reason: TelemetrySendReason; readonly changed: readonly TelemetryField[] }
  | { readonly send: false; readonly reason: TelemetryHoldReason; readonly changed: readonly TelemetryField[] };

export function decideTelemetrySend(
  { lastSent, reading, now, requested = false }: TelemetryPolicyInput,
  config: TelemetryPolicyConfig = DEFAULT_TELEMETRY_POLICY,
): TelemetryDecision {
  if (!Number.isFinite(now)) {
    throw new RangeError(`telemetry policy: now must be a finite number of milliseconds, got ${now}`);
  }
  if (lastSent === null) {
    return { send: true, reason: 'first', changed: TELEMETRY_FIELDS.filter((field) => reading[field] !== undefined) };
  }
  const changed = TELEMETRY_FIELDS.filter((field) => fieldChanged(field, lastSent.sample, reading, config));
  if (requested) return { send: true, reason: 'requested', changed };
  const elapsed = now - lastSent.at;
  // A clock that jumped back would otherwise hold every send until it caught up again.
  if (elapsed < 0) return { send: true, reason: 'clock-moved', changed };
  if (elapsed < config.minIntervalMs) return { send: false, reason: 'too-soon', changed };
  if (changed.length > 0) return { send: true, reason: 'changed', changed };
  if (elapsed >= config.maxIntervalMs) return { send: true, reason: 'heartbeat', changed };
  return { send: false, reason: 'unchanged', changed };
}

/** Readings are floats: without this, a load going 2.3 → 1.8 would miss its 0.5 deadband by a rounding error. */
const FLOAT_TOLERANCE = 1e-9;

function fieldChanged(
  field: TelemetryField,
  before: TelemetrySample,
  after: TelemetrySample,
  config: TelemetryPolicyConfig,
): boolean {
  const trigger = TRIGGER_OF[field];
  if (trigger === 'never') return false;
  const from = before[field];
  const to = after[field];
  // A metric appearing (a sensor became readable) or disappearing is news whatever its kind.
  if (from === undefined || to === undefined) return from !== to;
  switch (trigger) {
    case 'any-change':
      return from !== to;
    case 'deadband':
      return Math.abs(Number(to) - Number(from)) >= config.deadbands[field as DeadbandField] - FLOAT_TOLERANCE;
    case 'reset':
      return Number(to) < Number(from);
    default:
      return assertNever(trigger);
  }
}

