import { closeSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';
import type { TcpPeer } from '../core/teleoperation-scorer.js';

/**
 * Who is connected to the robot's watched ports, from /proc/net/tcp and /proc/net/tcp6 (no byte counters: those come
 * from sock_diag, see socket-counters.ts), and when to look again, from /proc/net/snmp.
 *
 * Reading /proc/net/tcp is NOT cheap: the kernel walks its whole established-socket hash table, sized by RAM rather
 * than by the sockets in use (262144 buckets on a 24 GB machine: ~1 ms of CPU per read, more when read in small
 * chunks). /proc/net/snmp's TCP counters cost a tenth of that, and PassiveOpens / CurrEstab change whenever a
 * connection is accepted or closes, so the tables are read only when those move (see `TcpConnectionCounters`).
 * Reads are synchronous into one buffer: procfs files are generated in memory, and one large read() spares the
 * kernel from restarting its walk for every chunk (and the thread-pool round trips of fs/promises).
 *
 * Addresses in these files are hex words in the kernel's byte order (little-endian on a Pi); IPv4-mapped IPv6 peers
 * (`::ffff:a.b.c.d`, what a dual-stack listener sees for IPv4 clients) are reported as plain IPv4, so one operator
 * has one address whichever socket family the host bound.
 */

const TCP_ESTABLISHED = '01';

export class ProcNetTcpFormatError extends Error {
  override readonly name = 'ProcNetTcpFormatError';
}

/**
 * The ESTABLISHED connections in one /proc/net/tcp or tcp6 text whose LOCAL port is in `ports`. Lines that are not
 * socket entries are skipped; an entry whose address fields cannot be read throws, naming the line.
 */
export function parseProcNetTcp(
  text: string,
  ports: ReadonlySet<number>,
  littleEndian: boolean = endianness() === 'LE',
): TcpPeer[] {
  const peers: TcpPeer[] = [];
  const lines = text.split('\n');
  for (let index = 1; index < lines.length; index += 1) {
    const line = lines[index]!;
    // "  sl  local_address rem_address   st ..." — fields are separated by runs of spaces.
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || !fields[0]!.endsWith(':')) continue;
    const [, local, remote, state] = fields as [string, string, string, string];
    if (state !== TCP_ESTABLISHED) continue;
    const localPort = portOf(local, index);
    if (!ports.has(localPort)) continue;
    const [remoteHex] = remote.split(':');
    peers.push({ localPort, remoteAddress: addressOf(remoteHex ?? '', index, littleEndian), remotePort: portOf(remote, index) });
  }
  return peers;
}

/** Reads both tables under `procRoot` (default /proc). A missing table (IPv6 disabled) is no peers, not an error. */
export function readTcpPeers(ports: ReadonlySet<number>, procRoot = '/proc'): TcpPeer[] {
  const v4 = readProcText(join(procRoot, 'net', 'tcp'));
  const v6 = readProcText(join(procRoot, 'net', 'tcp6'));
  return [...parseProcNetTcp(v4, ports), ...parseProcNetTcp(v6, ports)];
}

/** The TCP counters that move when a connection is accepted or goes away (IPv4 and IPv6 share them). */
export interface TcpConnectionCounters {
  readonly passiveOpens: number;
  readonly currEstab: number;
}

/** The `Tcp:` counters of one /proc/net/snmp text; throws when the lines are missing or malformed. */
export function parseTcpSnmp(text: string): TcpConnectionCounters {
  const lines = text.split('\n').filter((line) => line.startsWith('Tcp:'));
  const [names, values] = lines.map((line) => line.trim().split(/\s+/));
  if (!names || !values || names.length !== values.length) throw new ProcNetTcpFormatError('/proc/net/snmp: no Tcp: lines');
  const value = (name: string) => {
    const number = Number(values[names.indexOf(name)]);
    if (!Number.isSafeInteger(number)) throw new ProcNetTcpFormatError(`/proc/net/snmp: no Tcp ${name}`);
    return number;
  };
  return { passiveOpens: value('PassiveOpens'), currEstab: value('CurrEstab') };
}

export function readTcpConnectionCounters(procRoot = '/proc'): TcpConnectionCounters {
  return parseTcpSnmp(readProcText(join(procRoot, 'net', 'snmp')));
}

let buffer = Buffer.allocUnsafe(64 * 1024);

/** A procfs file in as few read() calls as possible; '' when it does not exist. */
export function readProcText(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
  try {
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const bigger = Buffer.allocUnsafe(buffer.length * 2);
        buffer.copy(bigger, 0, 0, length);
        buffer = bigger;
      }
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    return buffer.toString('latin1', 0, length);
  } finally {
    closeSync(fd);
  }
}

function portOf(endpoint: string, line: number): number {
  const hex = endpoint.slice(endpoint.lastIndexOf(':') + 1);
  const port = /^[0-9A-Fa-f]{4}$/.test(hex) ? Number.parseInt(hex, 16) : Number.NaN;
  if (!Number.isInteger(port)) throw new ProcNetTcpFormatError(`/proc/net/tcp line ${line}: bad endpoint ${endpoint}`);
  return port;
}

/**
 * An address column of /proc/net/tcp or tcp6 (hex words in the kernel's byte order) as text: dotted IPv4, IPv4-mapped
 * IPv6 as plain IPv4, other IPv6 in RFC 5952 form. `line` only names the line in the error for a malformed column.
 */
export function addressOf(hex: string, line: number, littleEndian: boolean = endianness() === 'LE'): string {
  if (!/^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32})$/.test(hex)) {
    throw new ProcNetTcpFormatError(`/proc/net/tcp line ${line}: bad address ${hex}`);
  }
  const bytes: number[] = [];
  for (let word = 0; word < hex.length; word += 8) {
    const wordBytes = [0, 2, 4, 6].map((at) => Number.parseInt(hex.slice(word + at, word + at + 2), 16));
    bytes.push(...(littleEndian ? wordBytes.reverse() : wordBytes));
  }
  if (bytes.length === 4) return bytes.join('.');
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  if (mapped) return bytes.slice(12).join('.');
  return formatIpv6(bytes);
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run (≥ 2) of zero groups as `::`. */
function formatIpv6(bytes: readonly number[]): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
  let bestStart = -1;
  let bestLength = 0;
  for (let start = 0; start < 8; ) {
    if (groups[start] !== '0') {
      start += 1;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === '0') end += 1;
    if (end - start > bestLength) [bestStart, bestLength] = [start, end - start];
    start = end;
  }
  if (bestLength < 2) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}
