import { nextRunAt } from './schedule.js';

/**
 * An async task run at most once per `intervalMs` however often it is asked for. INVARIANTS: never two runs at once;
 * a request during a run is remembered and served by one more run after it (no request is lost, none doubled);
 * `runNow` skips the wait (after a reconnect, an action) but still never overlaps a run.
 */
export class ThrottledTask {
  #lastRunAt: number | null = null;
  #cancelTimer: (() => void) | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  /** runNow callers waiting for the run after the one in progress. */
  #afterRun: Array<() => void> | null = null;
  #stopped = false;

  constructor(
    private readonly task: () => Promise<void>,
    private readonly intervalMs: number,
    private readonly clock: { now(): number; setTimer(callback: () => void, ms: number): () => void },
  ) {}

  /** Runs the task when the interval since the last run allows. */
  request(): void {
    if (this.#stopped) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    if (this.#cancelTimer !== null) return;
    const now = this.clock.now();
    const delay = nextRunAt(this.#lastRunAt, now, this.intervalMs) - now;
    this.#cancelTimer = this.clock.setTimer(() => {
      this.#cancelTimer = null;
      void this.#start();
    }, delay);
  }

  /** Runs the task now (or right after the run in progress); resolves when that run is over. */
  runNow(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#cancelTimer?.();
    this.#cancelTimer = null;
    if (this.#running !== null) {
      // The run in progress may have started before what the caller wants to see: one more run, right after it.
      return new Promise<void>((resolve) => (this.#afterRun ??= []).push(resolve));
    }
    return this.#start();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelTimer?.();
    this.#cancelTimer = null;
  }

  #start(): Promise<void> {
    this.#lastRunAt = this.clock.now();
    this.#running = this.task()
      .catch(() => undefined) // the task reports its own failures
      .finally(() => {
        this.#running = null;
        const waiting = this.#afterRun;
        this.#afterRun = null;
        if (waiting !== null && !this.#stopped) {
          this.#again = false;
          void this.#start().then(() => waiting.forEach((resolve) => resolve()));
        } else {
          waiting?.forEach((resolve) => resolve());
          if (this.#again) {
            this.#again = false;
            this.request();
          }
        }
      });
    return this.#running;
  }
}
