/**
 * Supervision of the local cloud's stand-ins, so that one that dies is never a silent failure.
 *
 * - A part that runs as its own process (DynamoDB Local's Java) is watched for its exit. An exit nobody asked for
 *   is logged loudly and the part is started again on its state (the same port and data directory, so every client's
 *   endpoint stays valid and nothing is lost that it had written), a bounded number of times within a window
 *   (by default 3 restarts in 60 s). Past the bound, or when a restart fails that often, the part is `down` and
 *   `onFatal` is called with a message that names what died, how, and what to do: the local cloud stops on it.
 * - A part that runs inside this process (PGlite, the Kinesis stand-in) cannot exit on its own, but it can break
 *   (a WebAssembly abort, a database that no longer answers): it is probed periodically, reported `down` after a few
 *   failed probes in a row, and then `onFatal` is called likewise (restarting it in-process on the same files while
 *   its old instance may still hold them is not safe).
 *
 * `health()` reports every part (`{ name, status: 'up' | 'restarting' | 'down', restarts, lastError? }`) for the
 * local cloud's `GET /health`.
 */
import { describeError } from '../lib/describe-error.js';

export type PartStatus = 'up' | 'restarting' | 'down';

export interface PartHealth {
  readonly name: string;
  readonly status: PartStatus;
  /** Restarts so far (for a probed part: always 0). */
  readonly restarts: number;
  /** What last went wrong (how it died, why a restart or a probe failed). */
  readonly lastError?: string;
}

export type SupervisorLogEntry = { level: 'info' | 'warn' | 'error'; message: string; [k: string]: unknown };

export interface SupervisorOptions {
  /**
   * Called once, for the first part that is down for good. The message names the part, says what happened and
   * what to do; the caller should print it and stop (the local cloud: log it, stop everything, exit non-zero).
   */
  readonly onFatal: (message: string, part: PartHealth) => void;
  /** Default: warn and error entries as JSON on stderr. */
  readonly log?: (entry: SupervisorLogEntry) => void;
}

/** A part running as a process of its own, e.g. `DynamoDbLocal`. */
export interface RestartablePart {
  /** Resolves when the part has ended, whether it died or was stopped, with how (e.g. "was killed by SIGKILL"). */
  readonly exited: Promise<string>;
  stop(): Promise<void>;
}

export interface RestartablePartOptions<T extends RestartablePart> {
  /** How the part is named in logs, health and the fatal message, e.g. "DynamoDB Local (event log)". */
  readonly name: string;
  /** Starts the part on its state; used for the first start and for every restart (same port, same data). */
  readonly start: () => Promise<T>;
  /** Restarts allowed within `windowMs`; one more death within the window is fatal. Default 3. */
  readonly maxRestarts?: number;
  /** Default 60 000. */
  readonly windowMs?: number;
  /** Wait before a restart (lets the port and file locks go). Default 500. */
  readonly restartDelayMs?: number;
  /** What the person should do when it is down for good; ends the fatal message. */
  readonly advice: string;
  /** Runs after every start, the first included (e.g. to record the new process id). */
  readonly onStarted?: (part: T) => void | Promise<void>;
}

export interface SupervisedPart<T> {
  readonly name: string;
  /** The instance running now (a new one after each restart); the last one while it is down. */
  current(): T;
  health(): PartHealth;
  /** Stops the part for good: its exit from now on is expected, nothing is restarted. */
  stop(): Promise<void>;
}

export interface ProbedPartOptions {
  readonly name: string;
  /** Resolves if the part works (e.g. `SELECT 1`), rejects or hangs if not. */
  readonly probe: () => Promise<unknown>;
  /** Default 5 000. */
  readonly intervalMs?: number;
  /** A probe that takes longer failed. Default 5 000. */
  readonly timeoutMs?: number;
  /** Failed probes in a row before the part is down (and fatal). Default 3. */
  readonly failuresBeforeDown?: number;
  readonly advice: string;
}

export interface ProbedPart {
  readonly name: string;
  health(): PartHealth;
  /** Probes now (tests, or a /health that wants a fresh answer); resolves with the health after it. */
  probeNow(): Promise<PartHealth>;
  stop(): void;
}

export const DEFAULT_MAX_RESTARTS = 3;
export const DEFAULT_RESTART_WINDOW_MS = 60_000;

export class Supervisor {
  private readonly parts: { readonly health: () => PartHealth; readonly stop: () => unknown }[] = [];
  private readonly log: (entry: SupervisorLogEntry) => void;
  private fatalSent = false;
  private stopping = false;

  constructor(private readonly options: SupervisorOptions) {
    this.log = options.log ?? defaultLog;
  }

  /**
   * Starts a process part and keeps it running. The first start's failure is thrown to the caller (the local cloud
   * stops its start with that message); later deaths are handled as described at the top of this file.
   */
  async supervise<T extends RestartablePart>(options: RestartablePartOptions<T>): Promise<SupervisedPart<T>> {
    const { name, advice } = options;
    const maxRestarts = options.maxRestarts ?? DEFAULT_MAX_RESTARTS;
    const windowMs = options.windowMs ?? DEFAULT_RESTART_WINDOW_MS;
    const restartDelayMs = options.restartDelayMs ?? 500;
    let instance = await options.start();
    await options.onStarted?.(instance);
    let status: PartStatus = 'up';
    let restarts = 0;
    let lastError: string | undefined;
    let stopped = false;
    /** When each restart within the window began. */
    const recent: number[] = [];
    /** A restart under way, so that stop() can stop what it brings up. */
    let restarting: Promise<void> | undefined;

    const health = (): PartHealth => ({ name, status, restarts, ...(lastError !== undefined ? { lastError } : {}) });
    const expected = () => stopped || this.stopping;

    const watch = (watched: T): void => {
      void watched.exited.then((how) => {
        if (expected() || watched !== instance) return;
        restarting = restart(how);
      });
    };

    const restart = async (how: string): Promise<void> => {
      lastError = `${name} ${how}`;
      for (;;) {
        const now = Date.now();
        while (recent.length > 0 && now - recent[0]! >= windowMs) recent.shift();
        if (recent.length >= maxRestarts) {
          status = 'down';
          const message =
            `${name} died and was not restarted: ${lastError}. It has been restarted ${recent.length} time(s) within ` +
            `${Math.round(windowMs / 1000)} s and keeps dying. ${advice}`;
          this.log({ level: 'error', message, part: name, restarts });
          this.fatal(message, health());
          return;
        }
        recent.push(now);
        restarts++;
        status = 'restarting';
        this.log({
          level: 'error',
          message: `${lastError}: restarting it on its state (restart ${recent.length} of ${maxRestarts} allowed within ${Math.round(windowMs / 1000)} s)`,
          part: name,
        });
        await delay(restartDelayMs);
        if (expected()) return;
        try {
          const next = await options.start();
          if (expected()) {
            await next.stop();
            return;
          }
          instance = next;
          await options.onStarted?.(next);
          status = 'up';
          this.log({ level: 'warn', message: `${name} is back after restart ${restarts}`, part: name });
          watch(next);
          return;
        } catch (error) {
          lastError = `${name} could not be restarted: ${describeError(error)}`;
          this.log({ level: 'error', message: lastError, part: name });
        }
      }
    };

    watch(instance);
    const part: SupervisedPart<T> = {
      name,
      current: () => instance,
      health,
      stop: async () => {
        stopped = true;
        await restarting;
        await instance.stop();
      },
    };
    this.parts.push({ health, stop: () => (stopped = true) });
    return part;
  }

  /** Watches a part that runs in this process with a periodic probe (see the top of this file). */
  watch(options: ProbedPartOptions): ProbedPart {
    const { name, advice } = options;
    const intervalMs = options.intervalMs ?? 5_000;
    const timeoutMs = options.timeoutMs ?? 5_000;
    const failuresBeforeDown = options.failuresBeforeDown ?? 3;
    let status: PartStatus = 'up';
    let lastError: string | undefined;
    let failures = 0;
    let stopped = false;
    let inFlight: Promise<PartHealth> | undefined;

    const health = (): PartHealth => ({ name, status, restarts: 0, ...(lastError !== undefined ? { lastError } : {}) });
    const probeOnce = async (): Promise<PartHealth> => {
      if (status === 'down' || stopped) return health();
      try {
        await withTimeout(options.probe(), timeoutMs, `no answer within ${timeoutMs} ms`);
        failures = 0;
        status = 'up';
      } catch (error) {
        if (stopped || this.stopping) return health();
        failures++;
        lastError = `${name} failed a health check: ${describeError(error)}`;
        if (failures >= failuresBeforeDown) {
          status = 'down';
          const message = `${name} stopped working: ${failures} health checks in a row failed (last: ${describeError(error)}). ${advice}`;
          this.log({ level: 'error', message, part: name });
          this.fatal(message, health());
        } else {
          this.log({ level: 'error', message: `${lastError} (${failures} of ${failuresBeforeDown} before it counts as down)`, part: name });
        }
      }
      return health();
    };
    const probeNow = (): Promise<PartHealth> => (inFlight ??= probeOnce().finally(() => (inFlight = undefined)));
    const timer = setInterval(() => void probeNow(), intervalMs);
    timer.unref();
    const stop = (): void => {
      stopped = true;
      clearInterval(timer);
    };
    this.parts.push({ health, stop });
    return { name, health, probeNow, stop };
  }

  /** Every part, in the order they were added. */
  health(): PartHealth[] {
    return this.parts.map((part) => part.health());
  }

  /** The local cloud is stopping: from now on exits are expected and probes stop. Parts are stopped by their owners. */
  stop(): void {
    this.stopping = true;
    for (const part of this.parts) part.stop();
  }

  private fatal(message: string, part: PartHealth): void {
    if (this.fatalSent || this.stopping) return;
    this.fatalSent = true;
    this.options.onFatal(message, part);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function defaultLog(entry: SupervisorLogEntry): void {
  if (entry.level !== 'info') console.error(JSON.stringify({ component: 'supervisor', ...entry }));
}
