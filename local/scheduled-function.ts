import { TeleoperationOfflineTimeoutEnv } from '../functions/app/expire-offline-teleoperation.js';

/**
 * EventBridge's schedule rule, locally: runs a function every `intervalMs`. INVARIANTS: runs never overlap (the next
 * is timed from the end of the previous); a failing run is logged and the schedule goes on, as a scheduled Lambda
 * whose invocation failed is simply invoked again next time; stop() waits for the run in flight.
 */
export interface Schedule {
  stop(): Promise<void>;
}

export function startSchedule(options: {
  readonly name: string;
  readonly intervalMs: number;
  readonly run: () => Promise<unknown>;
  readonly log: (entry: { level: string; message: string; [detail: string]: unknown }) => void;
}): Schedule {
  if (!Number.isFinite(options.intervalMs) || options.intervalMs < 1) {
    throw new RangeError(`${options.name}: intervalMs must be at least 1, got ${options.intervalMs}`);
  }
  let running = true;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  const next = () => {
    if (!running) return;
    timer = setTimeout(() => {
      timer = undefined;
      inFlight = options
        .run()
        .then(
          () => undefined,
          (error: unknown) => options.log({ level: 'error', message: `${options.name}: scheduled run failed; it runs again next time`, error: String(error) }),
        )
        .finally(() => {
          inFlight = undefined;
          next();
        });
    }, options.intervalMs);
    timer.unref?.();
  };
  next();
  return {
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      await inFlight;
    },
  };
}

/**
 * How often the local cloud runs the teleoperation offline timeout: every quarter of the timeout (30 s for the
 * default 120 s; tests set TELEOPERATION_OFFLINE_TIMEOUT_SECONDS to a few seconds), at most a minute apart as in AWS.
 */
export function teleoperationExpiryIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const { TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: seconds } = TeleoperationOfflineTimeoutEnv.parse(env);
  return Math.min(60_000, Math.max(250, (seconds * 1000) / 4));
}
