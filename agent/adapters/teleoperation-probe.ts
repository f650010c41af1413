import type { TeleoperationConfig } from '../core/teleoperation-config.js';
import { watchedPorts, watchedProcesses } from '../core/teleoperation-config.js';
import type { TcpPeer, TeleoperationObservation } from '../core/teleoperation-scorer.js';
import type { Logger } from './json-log.js';
import { createProcessWatch, type ProcessWatch } from './process-watch.js';
import { readTcpConnectionCounters, readTcpPeers, type TcpConnectionCounters } from './proc-net-tcp.js';
import { createSocketCounters, type SocketCounters } from './socket-counters.js';

/**
 * One teleoperation reading of this machine, as the scorer wants it, for well under 1 % of a core at 30 readings a
 * second. Per reading:
 *
 * - /proc/net/snmp's PassiveOpens and CurrEstab (tiny): when they moved, a connection came or went, so the
 *   connections on the watched ports are discovered afresh (a walk of the kernel's socket table: never every tick);
 *   also every `rediscoverMs` as a safety net.
 * - While connections are known on the watched ports, the sock_diag co-process looks them up by 4-tuple (cheap) for
 *   their byte counters: deltas give `commandBytesIn` (actions) and `observationBytesOut` (video). With nobody
 *   connected it is not asked at all.
 * - The watched programs (process-watch.ts: /proc is listed only when a new PID was handed out).
 *
 * Without python3 (or netlink) the probe runs peers-only: discoveries read /proc/net/tcp{,6}, and no bytes are
 * reported, so network actions never start a session (local teleop programs and VR links still do).
 */

export interface TeleoperationProbe {
  /** Takes a reading stamped `at` (monotonic ms). Rejects only when /proc itself cannot be read. */
  read(at: number): Promise<TeleoperationObservation>;
  /** Ends the counter co-process. */
  close(): Promise<void>;
  /** The counter co-process's pid, when one runs (the bench adds its CPU to the agent's). */
  readonly counterPid: number | undefined;
  /** 'counters' with byte deltas, 'peers-only' without (no python3, no netlink). */
  readonly mode: 'counters' | 'peers-only';
  /** How many times the connections were discovered afresh (for benches and logs). */
  readonly discoveries: number;
  /** How many times /proc was listed for new processes (for benches and logs). */
  readonly processListings: number;
}

export interface TeleoperationProbeOptions {
  readonly config: TeleoperationConfig;
  readonly log: Logger;
  /** Default '/proc'. */
  readonly procRoot?: string;
  /** The Python 3 interpreter for the counter co-process. Default 'python3'. */
  readonly python?: string;
  /** Rediscover connections at least this often even when /proc/net/snmp did not move. Default 30 s. */
  readonly rediscoverMs?: number;
  /** Replaces the co-process (tests). */
  readonly counters?: SocketCounters;
  /** Replaces the /proc scan (tests). */
  readonly processes?: ProcessWatch;
}

/** Starts the counter co-process (waiting for it, so the first tick already has counters) and returns the probe. */
export async function createTeleoperationProbe(options: TeleoperationProbeOptions): Promise<TeleoperationProbe> {
  const { config, log } = options;
  const procRoot = options.procRoot ?? '/proc';
  const rediscoverMs = options.rediscoverMs ?? 30_000;
  const ports = new Set(watchedPorts(config));
  const counters =
    options.counters ??
    createSocketCounters({
      ports: [...ports],
      log,
      ...(options.python === undefined ? {} : { python: options.python }),
    });
  const processes = options.processes ?? createProcessWatch({ programs: watchedProcesses(config), procRoot });
  await counters.start();

  let lastCounters: TcpConnectionCounters | undefined;
  let lastDiscoveryAt = Number.NEGATIVE_INFINITY;
  let peers: TcpPeer[] = [];
  let discoveries = 0;
  let snmpFailed = false;

  /** Whether connections may have come or gone since the last discovery. */
  function connectionsMoved(at: number): { moved: boolean; now: TcpConnectionCounters | undefined } {
    let now: TcpConnectionCounters | undefined;
    try {
      now = readTcpConnectionCounters(procRoot);
    } catch (error) {
      if (!snmpFailed) log.warn('cannot read /proc/net/snmp: connections are rediscovered on a timer only', { error });
      snmpFailed = true;
    }
    const moved =
      at - lastDiscoveryAt >= rediscoverMs ||
      (now !== undefined &&
        (lastCounters === undefined || now.passiveOpens !== lastCounters.passiveOpens || now.currEstab !== lastCounters.currEstab));
    return { moved, now };
  }

  return {
    async read(at) {
      const running = processes.scan(at);
      const { moved, now } = connectionsMoved(at);
      let commandBytesIn = 0;
      let observationBytesOut = 0;
      let discovered = false;
      if (counters.available && (moved || counters.known > 0)) {
        const result = await counters.read(moved);
        if (result) {
          peers = result.sockets.map(({ localPort, remoteAddress, remotePort }) => ({ localPort, remoteAddress, remotePort }));
          commandBytesIn = result.traffic.get(config.commandPort)?.bytesIn ?? 0;
          observationBytesOut = result.traffic.get(config.observationPort)?.bytesOut ?? 0;
          discovered = moved;
        }
      } else if (counters.available) {
        peers = [];
      }
      if (moved && !discovered) {
        // peers-only, or the co-process failed this time: the tables still say who is connected
        peers = readTcpPeers(ports, procRoot);
        discovered = true;
      }
      if (discovered) {
        discoveries += 1;
        lastDiscoveryAt = at;
        lastCounters = now;
      }
      return { at, commandBytesIn, observationBytesOut, peers, processes: running };
    },
    close: () => counters.close(),
    get counterPid() {
      return counters.pid;
    },
    get mode() {
      return counters.available ? 'counters' : 'peers-only';
    },
    get discoveries() {
      return discoveries;
    },
    get processListings() {
      return processes.listings;
    },
  };
}
