import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { argvOfCmdline, matchingPrograms } from '../core/program-match.js';
import { readProcText } from './proc-net-tcp.js';

/**
 * Which watched programs run (the LeKiwi host, XLeRobot's local teleop scripts), at a cost fit for 30 readings a
 * second. A process counts when its *program* is a watched one (agent/core/program-match.ts: the script or module a
 * Python interpreter runs, or the executable itself), not when a watched name merely appears among its arguments
 * (`tail -f 4_xlerobot_teleop_keyboard.py`, an editor, grep):
 *
 * - /proc is listed only when a process may have started: the last PID the kernel handed out (the fifth field of
 *   /proc/loadavg, per PID namespace) moved since the previous scan, or `rescanMs` passed (a safety net). A quiet
 *   robot costs one tiny read per scan.
 * - Only PIDs not seen before have their /proc/<pid>/cmdline read. A new PID is read again at 250 ms and 2 s of age,
 *   because a process caught between fork and exec still shows its parent's command line.
 * - A PID that matched is checked every scan (its cmdline read again), so its exit is seen at once.
 *
 * (A PID reused between two listings would keep the old answer until the next rescan: not a case PIDs on a Pi
 * run into.)
 */

export interface ProcessWatchOptions {
  /** Watched program names: script base names or paths, or module names (see agent/core/program-match.ts). */
  readonly programs: readonly string[];
  /** Default '/proc'. */
  readonly procRoot?: string;
  /** PIDs never to report (default: this process). */
  readonly ignorePids?: readonly number[];
  /** Full listing at least this often, whatever /proc/loadavg says. Default 5 s. */
  readonly rescanMs?: number;
}

export interface ProcessWatch {
  /** The watched programs found running now, in the order they were given. `now` is monotonic ms. */
  scan(now: number): string[];
  /** How many PIDs are remembered (for logs). */
  readonly known: number;
  /** Full /proc listings so far (for benches). */
  readonly listings: number;
}

/** Ages (ms since first seen) at which a PID's command line is read again. */
const RECHECK_AT_MS = [250, 2_000] as const;

interface KnownProcess {
  readonly firstSeenAt: number;
  matches: readonly string[];
  /** Index into RECHECK_AT_MS of the next re-read; RECHECK_AT_MS.length when settled. */
  nextCheck: number;
}

export function createProcessWatch(options: ProcessWatchOptions): ProcessWatch {
  const procRoot = options.procRoot ?? '/proc';
  const programs = [...new Set(options.programs)];
  const ignore = new Set(options.ignorePids ?? [process.pid]);
  const rescanMs = options.rescanMs ?? 5_000;
  const known = new Map<number, KnownProcess>();
  /** PIDs still due a re-read, or matching: the only ones looked at between listings. */
  const watched = new Set<number>();
  let lastPid: string | undefined;
  let lastListingAt = Number.NEGATIVE_INFINITY;
  let listings = 0;

  /** The watched programs a PID runs; none when it is gone, unreadable, a kernel thread or a zombie. */
  function matchesOf(pid: number): readonly string[] {
    let commandLine: string;
    try {
      commandLine = readProcText(join(procRoot, String(pid), 'cmdline'));
    } catch {
      return [];
    }
    return matchingPrograms(argvOfCmdline(commandLine), programs);
  }

  function check(pid: number, entry: KnownProcess): void {
    entry.matches = matchesOf(pid);
    if (entry.nextCheck < RECHECK_AT_MS.length || entry.matches.length > 0) watched.add(pid);
    else watched.delete(pid);
  }

  function list(now: number): void {
    listings += 1;
    lastListingAt = now;
    const seen = new Set<number>();
    for (const name of readdirSync(procRoot)) {
      const code = name.charCodeAt(0);
      if (code < 48 || code > 57) continue;
      const pid = Number(name);
      if (!Number.isInteger(pid) || ignore.has(pid)) continue;
      seen.add(pid);
      if (known.has(pid)) continue;
      const entry: KnownProcess = { firstSeenAt: now, matches: [], nextCheck: 0 };
      known.set(pid, entry);
      check(pid, entry);
    }
    for (const pid of known.keys()) {
      if (!seen.has(pid)) {
        known.delete(pid);
        watched.delete(pid);
      }
    }
  }

  function lastPidNow(): string | undefined {
    try {
      const loadavg = readProcText(join(procRoot, 'loadavg'));
      return loadavg.trim().split(/\s+/)[4];
    } catch {
      return undefined;
    }
  }

  return {
    scan(now) {
      const pid = lastPidNow();
      const listed = pid === undefined || pid !== lastPid || now - lastListingAt >= rescanMs;
      if (listed) list(now);
      lastPid = pid;
      for (const watchedPid of [...watched]) {
        const entry = known.get(watchedPid);
        if (!entry) continue;
        const due = entry.nextCheck < RECHECK_AT_MS.length && now - entry.firstSeenAt >= RECHECK_AT_MS[entry.nextCheck]!;
        if (due) {
          const next = RECHECK_AT_MS.findIndex((age) => now - entry.firstSeenAt < age);
          entry.nextCheck = next < 0 ? RECHECK_AT_MS.length : next;
        }
        if (due || entry.matches.length > 0) check(watchedPid, entry);
      }
      const running = new Set<string>();
      for (const watchedPid of watched) for (const match of known.get(watchedPid)?.matches ?? []) running.add(match);
      return programs.filter((program) => running.has(program));
    },
    get known() {
      return known.size;
    },
    get listings() {
      return listings;
    },
  };
}
