import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from './json-log.js';

/**
 * The established connections on the watched local ports with their byte counters (tcp_info.tcpi_bytes_received
 * and tcpi_bytes_acked). Linux only exposes those through netlink sock_diag, which Node cannot open, so a small
 * persistent Python co-process (sock_diag.py, stdlib only; Python 3 is on every LeRobot Pi) answers one JSON line
 * per query: a discovery (a dump: walks the kernel's socket hash table, so only when connections came or went) or
 * a lookup of the sockets already found (cheap). This module keeps each socket's previous totals and turns them
 * into per-port deltas:
 *
 * - sockets that already existed when the counters started are a baseline (their past traffic is not news: an
 *   agent restarted next to an idle operator must not see a burst of old actions);
 * - a socket first seen later counts from 0 (a connection that opened and drove within one tick still counts);
 * - a socket that vanished contributes nothing.
 *
 * Without python3 (or without netlink permission) `start()` resolves false after logging once: the probe then
 * reports peers only, and the scorer never sees actions from the network (local teleop programs and VR links still
 * start sessions). A co-process that dies later is restarted a few times, then given up on, logged.
 */

export interface SocketCounterReading {
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Payload bytes received on this socket since it opened. */
  readonly bytesReceived: number;
  /** Payload bytes sent and acknowledged by the peer since it opened. */
  readonly bytesAcked: number;
  readonly inode: number;
}

export interface PortTraffic {
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** Turns socket totals into per-port deltas (see the module comment for the rules). Pure apart from its memory. */
export class CounterDeltas {
  private totals = new Map<string, { received: number; acked: number }>();
  private baselined = false;

  /** Per local port, the bytes since the previous `update`; ports with no socket are absent. */
  update(sockets: readonly SocketCounterReading[]): Map<number, PortTraffic> {
    const next = new Map<string, { received: number; acked: number }>();
    const traffic = new Map<number, PortTraffic>();
    for (const socket of sockets) {
      const key = `${socket.localPort}|${socket.remoteAddress}|${socket.remotePort}|${socket.inode}`;
      const previous = this.totals.get(key) ?? (this.baselined ? { received: 0, acked: 0 } : null);
      next.set(key, { received: socket.bytesReceived, acked: socket.bytesAcked });
      const bytesIn = previous === null ? 0 : Math.max(0, socket.bytesReceived - previous.received);
      const bytesOut = previous === null ? 0 : Math.max(0, socket.bytesAcked - previous.acked);
      const port = traffic.get(socket.localPort) ?? { bytesIn: 0, bytesOut: 0 };
      traffic.set(socket.localPort, { bytesIn: port.bytesIn + bytesIn, bytesOut: port.bytesOut + bytesOut });
    }
    this.totals = next;
    this.baselined = true;
    return traffic;
  }

  /** Sockets whose totals are kept. */
  get size(): number {
    return this.totals.size;
  }
}

export interface SocketCountersOptions {
  /** The local ports to watch. */
  readonly ports: readonly number[];
  readonly log: Logger;
  /** The Python 3 interpreter. Default `python3`. */
  readonly python?: string;
  /** The co-process script. Default: sock_diag.py beside this module. */
  readonly script?: string;
  /** How long one query may take before it counts as a failure. Default 2 s. */
  readonly queryTimeoutMs?: number;
  /** How long the co-process may take to say it is ready. Default 10 s (a cold Pi is slow to start Python). */
  readonly startTimeoutMs?: number;
  /** Restarts after the co-process died, before giving up for good. Default 3. */
  readonly maxRestarts?: number;
}

export interface SocketCounterRead {
  /** The ESTABLISHED sockets on the watched local ports now. */
  readonly sockets: readonly SocketCounterReading[];
  /** Per local port, bytes since the previous read. */
  readonly traffic: ReadonlyMap<number, PortTraffic>;
}

export interface SocketCounters {
  /** Starts the co-process and takes the baseline (a discovery). False (logged once) when counters cannot be had. */
  start(): Promise<boolean>;
  /**
   * `discover`: find the sockets on the watched ports afresh (costly: only when connections came or went);
   * otherwise look up the ones found before. Null when the read failed or the co-process is unavailable.
   */
  read(discover: boolean): Promise<SocketCounterRead | null>;
  /** How many sockets the last read found. */
  readonly known: number;
  /** True while reads can give counters. */
  readonly available: boolean;
  /** The co-process's pid (for CPU accounting), if one runs. */
  readonly pid: number | undefined;
  /** Ends the co-process (closing its stdin; SIGKILL if it lingers). Idempotent. */
  close(): Promise<void>;
}

export class SockDiagError extends Error {
  override readonly name = 'SockDiagError';
}

const DEFAULT_SCRIPT = fileURLToPath(new URL('./sock_diag.py', import.meta.url));
const MAX_LINE_BYTES = 1 << 20;

interface Pending {
  resolve(line: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export function createSocketCounters(options: SocketCountersOptions): SocketCounters {
  const { log } = options;
  const python = options.python ?? 'python3';
  const script = options.script ?? DEFAULT_SCRIPT;
  const queryTimeoutMs = options.queryTimeoutMs ?? 2_000;
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const maxRestarts = options.maxRestarts ?? 3;
  const ports = [...new Set(options.ports)];
  const requests = {
    discover: `${JSON.stringify({ ports, discover: true })}\n`,
    lookup: `${JSON.stringify({ ports, discover: false })}\n`,
  };
  let known = 0;

  let child: ChildProcessWithoutNullStreams | undefined;
  let pending: Pending[] = [];
  let buffered = '';
  let deltas = new CounterDeltas();
  let state: 'new' | 'running' | 'down' | 'gone' | 'closed' = 'new';
  let restarts = 0;
  let restarting: Promise<boolean> | undefined;

  const failAll = (error: Error) => {
    const waiting = pending;
    pending = [];
    for (const entry of waiting) {
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  };

  const onLine = (line: string) => {
    const entry = pending.shift();
    if (!entry) return;
    clearTimeout(entry.timer);
    try {
      entry.resolve(JSON.parse(line));
    } catch {
      entry.reject(new SockDiagError(`sock_diag.py answered a line that is not JSON: ${line.slice(0, 120)}`));
    }
  };

  function nextLine(timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const entry: Pending = {
        resolve,
        reject,
        timer: setTimeout(() => {
          pending = pending.filter((other) => other !== entry);
          reject(new SockDiagError(`sock_diag.py did not answer within ${timeoutMs} ms`));
          // Answers are matched by order: after a lost one, a late answer would be taken for the next query.
          child?.kill('SIGKILL');
        }, timeoutMs),
      };
      pending.push(entry);
    });
  }

  async function spawnCoProcess(): Promise<boolean> {
    let spawned: ChildProcessWithoutNullStreams;
    try {
      spawned = spawn(python, [script], { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (error) {
      return unavailable(`cannot start ${python}`, error);
    }
    child = spawned;
    buffered = '';
    spawned.stdout.setEncoding('utf8');
    spawned.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        onLine(line);
        newline = buffered.indexOf('\n');
      }
      if (buffered.length > MAX_LINE_BYTES) {
        buffered = '';
        spawned.kill('SIGKILL');
      }
    });
    let stderr = '';
    spawned.stderr.setEncoding('utf8');
    spawned.stderr.on('data', (chunk: string) => {
      if (stderr.length < 4_096) stderr += chunk;
    });
    spawned.stdin.on('error', () => undefined);
    const exited = new Promise<Error>((resolve) => {
      spawned.once('error', (error) => resolve(error));
      spawned.once('exit', (code, signal) => {
        resolve(new SockDiagError(`sock_diag.py exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim().slice(0, 300)}` : ''}`));
      });
    });
    void exited.then((error) => {
      if (child !== spawned) return;
      child = undefined;
      failAll(error);
      if (state === 'running') {
        state = 'down';
        log.warn('socket counter co-process died; restarting it on the next read', { error, restarts });
      }
    });

    const ready = await Promise.race([nextLine(startTimeoutMs).catch((error: Error) => error), exited]);
    if (ready instanceof Error || typeof ready !== 'object' || ready === null || !('ready' in ready)) {
      spawned.kill('SIGKILL');
      const reason = ready instanceof Error ? ready : new SockDiagError(JSON.stringify(ready).slice(0, 300));
      return unavailable('socket byte counters are unavailable', reason);
    }
    state = 'running';
    // The baseline: traffic before this moment is history, not driving.
    deltas = new CounterDeltas();
    try {
      const sockets = await query(true);
      deltas.update(sockets);
      known = sockets.length;
    } catch (error) {
      log.warn('socket counter baseline failed; the first reading will be the baseline', { error });
    }
    return true;
  }

  function unavailable(message: string, error: unknown): false {
    child = undefined;
    if (state !== 'gone') {
      log.warn(`${message}: teleoperation detection falls back to peers only (no actions seen over the network)`, {
        python,
        script,
        error,
      });
    }
    state = 'gone';
    return false;
  }

  async function query(discover: boolean): Promise<SocketCounterReading[]> {
    const running = child;
    if (!running) throw new SockDiagError('sock_diag.py is not running');
    const answer = nextLine(queryTimeoutMs);
    running.stdin.write(discover ? requests.discover : requests.lookup);
    return parseAnswer(await answer);
  }

  return {
    start() {
      if (state !== 'new') return Promise.resolve(state === 'running');
      return spawnCoProcess();
    },

    async read(discover) {
      if (state === 'down') {
        if (restarts >= maxRestarts) {
          unavailable(`socket counter co-process died ${restarts + 1} times`, undefined);
          return null;
        }
        restarts += 1;
        restarting ??= spawnCoProcess().finally(() => {
          restarting = undefined;
        });
        const back = await restarting;
        // The restart took a fresh baseline: this tick has no deltas to give.
        if (!back) known = 0;
        return null;
      }
      if (state !== 'running') return null;
      try {
        const sockets = await query(discover);
        known = sockets.length;
        return { sockets, traffic: deltas.update(sockets) };
      } catch (error) {
        if (state === 'running' && child) log.warn('socket counter query failed', { error });
        return null;
      }
    },

    get available() {
      return state === 'running' || state === 'down';
    },

    get known() {
      return known;
    },

    get pid() {
      return child?.pid;
    },

    async close() {
      state = 'closed';
      const running = child;
      child = undefined;
      failAll(new SockDiagError('socket counters closed'));
      if (!running || running.exitCode !== null || running.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          running.kill('SIGKILL');
          resolve();
        }, 1_000);
        running.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        running.stdin.end();
      });
    },
  };
}

function parseAnswer(answer: unknown): SocketCounterReading[] {
  if (typeof answer !== 'object' || answer === null) throw new SockDiagError('sock_diag.py answered a non-object');
  if ('error' in answer) throw new SockDiagError(`sock_diag.py: ${String(answer.error)}`);
  const sockets = (answer as { sockets?: unknown }).sockets;
  if (!Array.isArray(sockets)) throw new SockDiagError('sock_diag.py answered without a sockets list');
  return sockets.map((entry: unknown, index) => {
    const socket = entry as Record<string, unknown>;
    const valid =
      typeof socket === 'object' &&
      socket !== null &&
      isCount(socket.localPort) &&
      typeof socket.remoteAddress === 'string' &&
      isCount(socket.remotePort) &&
      isCount(socket.bytesReceived) &&
      isCount(socket.bytesAcked) &&
      isCount(socket.inode);
    if (!valid) throw new SockDiagError(`sock_diag.py answered a malformed socket at sockets[${index}]`);
    return socket as unknown as SocketCounterReading;
  });
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
