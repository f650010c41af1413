/**
 * What a stop signal (SIGINT, SIGTERM, SIGHUP) means to `npm start`.
 *
 * One Ctrl-C in a terminal signals the whole foreground process group, npm, the shell and node, and the processes in
 * between relay it to their child (npm forwards SIGINT and SIGTERM; the tsx CLI re-sends a signal its child did not
 * report within 30 ms): node receives the same Ctrl-C two or three times within milliseconds. So:
 *
 * - the first signal starts the orderly stop (`'stop'`), exactly once;
 * - a signal within `relayWindowMs` of the first is that same Ctrl-C relayed: `'ignore'`;
 * - a signal after that is the person asking again: `'exit-now'` (the orderly stop is abandoned).
 *
 * Invariant: `'stop'` is answered once, to the first signal, and never after; `'exit-now'` only to a signal that
 * arrived more than `relayWindowMs` after the first.
 */
export type StopSignalDecision = 'stop' | 'ignore' | 'exit-now';

/** Relays arrive within milliseconds; a person pressing Ctrl-C again takes longer than this. */
export const RELAY_WINDOW_MS = 3_000;

export class StopSignals {
  private firstAt: number | undefined;

  constructor(
    private readonly relayWindowMs: number = RELAY_WINDOW_MS,
    private readonly now: () => number = Date.now,
  ) {}

  receive(): StopSignalDecision {
    const now = this.now();
    if (this.firstAt === undefined) {
      this.firstAt = now;
      return 'stop';
    }
    return now - this.firstAt <= this.relayWindowMs ? 'ignore' : 'exit-now';
  }
}
