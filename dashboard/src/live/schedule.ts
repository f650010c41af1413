/**
 * Time rules of the live feed, pure (the store runs them on real timers).
 */

export const RECONNECT_MIN_MS = 500;
export const RECONNECT_MAX_MS = 10_000;

/**
 * The wait before reconnect attempt `attempt` (0 for the first after a drop): "full jitter" between RECONNECT_MIN_MS
 * and an exponential ceiling (0.5 s, 1 s, 2 s, … capped at RECONNECT_MAX_MS), so a fleet of pages that lost the
 * server together does not come back together. `random` is in [0, 1).
 */
export function reconnectDelay(attempt: number, random: number): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.max(0, attempt));
  return Math.round(RECONNECT_MIN_MS + random * (ceiling - RECONNECT_MIN_MS));
}

/** When a task throttled to one run per `intervalMs` may run next, asked at `now`. */
export function nextRunAt(lastRunAt: number | null, now: number, intervalMs: number): number {
  return lastRunAt === null ? now : Math.max(now, lastRunAt + intervalMs);
}
