/**
 * How long to wait before the next connection attempt: exponential backoff with full jitter (AWS Architecture Blog,
 * "Exponential Backoff And Jitter"). A fleet that lost its broker at the same moment must not come back in lockstep:
 * a uniform draw from [0, ceiling] spreads a thousand robots over the whole window, while the exponentially growing
 * ceiling (capped) keeps one robot from hammering an endpoint that is down. Pure: the caller passes the random source.
 */

export interface BackoffOptions {
  /** The ceiling of the first retry (attempt 0), in ms. */
  readonly baseMs: number;
  /** The ceiling never grows past this, in ms. */
  readonly capMs: number;
}

/** Connecting to IoT Core: first retry within 1 s, never waiting more than 2 minutes between attempts. */
export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ baseMs: 1_000, capMs: 120_000 });

/** The upper bound of the wait before retry number `attempt` (0-based): min(cap, base · 2^attempt). */
export function backoffCeiling(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  assertOptions(options);
  if (!Number.isInteger(attempt) || attempt < 0) {
    throw new RangeError(`backoff: attempt must be a non-negative integer, got ${attempt}`);
  }
  // 2^attempt overflows to Infinity for large attempts, which min() turns into the cap: never NaN, never negative.
  return Math.min(options.capMs, options.baseMs * 2 ** attempt);
}

/**
 * The wait before retry number `attempt`, uniformly in [0, ceiling]. `random` returns a number in [0, 1), like
 * Math.random; anything outside is clamped so a bad source can never produce a negative or over-cap delay.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = backoffCeiling(attempt, options);
  const draw = random();
  const unit = Number.isFinite(draw) ? Math.min(1, Math.max(0, draw)) : 0;
  return Math.round(unit * ceiling);
}

function assertOptions({ baseMs, capMs }: BackoffOptions): void {
  if (!Number.isFinite(baseMs) || baseMs <= 0) throw new RangeError(`backoff: baseMs must be positive, got ${baseMs}`);
  if (!Number.isFinite(capMs) || capMs < baseMs) {
    throw new RangeError(`backoff: capMs must be at least baseMs (${baseMs}), got ${capMs}`);
  }
}
