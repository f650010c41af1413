import { z } from 'zod';
import { TelemetrySample } from './device.js';

/**
 * A robot's latest known telemetry, as the cloud keeps it (the event log's head item, the robots read model) from the
 * samples the robot sends. Samples are merged PER METRIC:
 * - a sample updates only the metrics it carries; the others keep their last value (a sample with only `sampledAt`
 *   changes no value, it only says the robot is still reporting);
 * - every value keeps the `sampledAt` of the sample that carried it, so each one has its own age;
 * - a value is replaced only by one sampled later: a sample that arrives late still brings the metrics it has newer
 *   than the stored ones, and nothing else (equal times keep the stored value, so a redelivered sample is a no-op).
 */

/** The fields of a sample that carry a value (every one but `sampledAt`). */
export type TelemetryField = Exclude<keyof TelemetrySample, 'sampledAt'>;
export const TELEMETRY_FIELDS = Object.keys(TelemetrySample.shape).filter(
  (field): field is TelemetryField => field !== 'sampledAt',
) as readonly TelemetryField[];
export const TelemetryFieldName = z.enum(TELEMETRY_FIELDS as [TelemetryField, ...TelemetryField[]]);

const isoTimestamp = z.iso.datetime({ offset: true }).max(40);

/**
 * The values as one sample would carry them, `sampledAt` being the newest sample's time. Values that came with an
 * earlier sample are listed in `sampledEarlier` with that sample's time; every other value was sampled at `sampledAt`.
 * A plain sample (no `sampledEarlier`) is a LatestTelemetry too, which is how heads and rows written before the merge
 * read.
 */
export const LatestTelemetry = TelemetrySample.extend({
  sampledEarlier: z.partialRecord(TelemetryFieldName, isoTimestamp).optional(),
}).strict();
export type LatestTelemetry = z.infer<typeof LatestTelemetry>;

/**
 * A value is shown as stale when the robot is offline (it is the robot's last value, not a current one) or when it is
 * older than this: three of the agent's longest reporting intervals (agent/core/telemetry-policy.ts sends at least
 * every 60 s), so an online robot whose value stopped coming is noticed within three minutes.
 */
export const TELEMETRY_STALE_AFTER_MS = 180_000;
