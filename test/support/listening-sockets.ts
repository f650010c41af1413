import { readdir, readFile, readlink } from 'node:fs/promises';

/**
 * The TCP sockets that processes listen on, read from Linux's /proc: each process's socket inodes
 * (/proc/<pid>/fd -> socket:[inode]) matched to the LISTEN rows of /proc/net/tcp and /proc/net/tcp6.
 */
export interface ListeningSocket {
  readonly pid: number;
  /** The address as text: "127.0.0.1", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1". */
  readonly address: string;
  readonly port: number;
}

/** Processes whose process group is `pgid` (a process started with `detached: true` leads its own). */
export async function processGroup(pgid: number): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const members: number[] = [];
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid) members.push(pid);
  }
  return members;
}

export async function listeningSockets(pids: readonly number[]): Promise<ListeningSocket[]> {
  const listening = new Map<string, { address: string; port: number }>();
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    const rows = (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').slice(1);
    for (const row of rows) {
      const columns = row.trim().split(/\s+/);
      const [hexAddress, hexPort] = columns[1]!.split(':') as [string, string];
      if (columns[3] !== '0A') continue; // TCP_LISTEN
      listening.set(columns[9]!, { address: v6 ? ipv6(hexAddress) : ipv4(hexAddress), port: Number.parseInt(hexPort, 16) });
    }
  }
  const sockets: ListeningSocket[] = [];
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
      const socket = inode ? listening.get(inode) : undefined;
      if (socket) sockets.push({ pid, ...socket });
    }
  }
  return sockets;
}

/** /proc/net/tcp writes the address as one little-endian 32-bit word in hex. */
function ipv4(hex: string): string {
  const word = Number.parseInt(hex, 16);
  return [word & 0xff, (word >>> 8) & 0xff, (word >>> 16) & 0xff, word >>> 24].join('.');
}

/** /proc/net/tcp6 writes the address as four little-endian 32-bit words in hex. */
function ipv6(hex: string): string {
  const bytes: number[] = [];
  for (let word = 0; word < 4; word++) {
    const value = Number.parseInt(hex.slice(word * 8, word * 8 + 8), 16);
    bytes.push(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24);
  }
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) return `::ffff:${bytes.slice(12).join('.')}`;
  if (bytes.every((b) => b === 0)) return '::';
  if (bytes.slice(0, 15).every((b) => b === 0) && bytes[15] === 1) return '::1';
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

export const isLoopback = (address: string): boolean => address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
