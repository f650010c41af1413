import { TELEMETRY_HISTORY_DEFAULT_MS, TELEMETRY_HISTORY_MAX_MS, type RobotTelemetryQuery } from '../../../schemas/index.js';
import { invalidRequest } from './errors.js';

/**
 * The window of `GET /api/v2/robots/{id}/telemetry` from its query and the clock: `to` defaults to now, `from` to
 * TELEMETRY_HISTORY_DEFAULT_MS before `to`. Invariant: the window returned is never empty and never longer than
 * TELEMETRY_HISTORY_MAX_MS; anything else is a 400 naming `from` (the edge to move), with both edges in the message.
 */
export interface TelemetryWindow {
  /** Inclusive. */
  readonly from: Date;
  /** Exclusive. */
  readonly to: Date;
}

export function telemetryWindow(query: RobotTelemetryQuery, now: Date): TelemetryWindow {
  const to = query.to === undefined ? now : new Date(query.to);
  const from = query.from === undefined ? new Date(to.getTime() - TELEMETRY_HISTORY_DEFAULT_MS) : new Date(query.from);
  const span = to.getTime() - from.getTime();
  if (span <= 0) {
    throw invalidRequest([{ field: 'from', message: `must be before to (${to.toISOString()}), is ${from.toISOString()}` }]);
  }
  if (span > TELEMETRY_HISTORY_MAX_MS) {
    throw invalidRequest([
      {
        field: 'from',
        message: `must be at most ${TELEMETRY_HISTORY_MAX_MS / 3_600_000} hours before to (${to.toISOString()}), is ${from.toISOString()}; ask for a longer span a day at a time`,
      },
    ]);
  }
  return { from, to };
}
