import { readdir, readFile, readlink } from 'node:fs/promises';
import { addressOf } from '../../agent/adapters/proc-net-tcp.js';

/**
 * The TCP sockets that processes listen on, read from Linux's /proc: each process's socket inodes
 * (/proc/<pid>/fd -> socket:[inode]) matched to the LISTEN rows of /proc/net/tcp and /proc/net/tcp6.
 */
export interface ListeningSocket {
  readonly pid: number;
  /** The address as text, as the agent's /proc reader writes it: "127.0.0.1", "0.0.0.0", "::", "::1" (IPv4-mapped as IPv4). */
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
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const rows = (await readFile(file, 'utf8').catch(() => '')).trim().split('\n').slice(1);
    for (const row of rows) {
      const columns = row.trim().split(/\s+/);
      const [hexAddress, hexPort] = columns[1]!.split(':') as [string, string];
      if (columns[3] !== '0A') continue; // TCP_LISTEN
      listening.set(columns[9]!, { address: addressOf(hexAddress, 0), port: Number.parseInt(hexPort, 16) });
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

export const isLoopback = (address: string): boolean => address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
