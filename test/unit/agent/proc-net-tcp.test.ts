import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  parseProcNetTcp,
  parseTcpSnmp,
  ProcNetTcpFormatError,
  readProcText,
  readTcpConnectionCounters,
  readTcpPeers,
} from '../../../agent/adapters/proc-net-tcp.js';

/** Fixtures in the kernel's format (little-endian words, as on a Pi or x86). */
const HEADER =
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const row = (sl: number, local: string, remote: string, state: string, inode = 1000 + sl) =>
  `   ${sl}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000  1000        0 ${inode} 1 0000000000000000 20 4 30 10 -1`;

// 0x15B3 = 5555, 0x15B4 = 5556, 0x20FA = 8442, 0x0050 = 80
const TCP = [
  HEADER,
  row(0, '00000000:15B3', '00000000:0000', '0A'), // the host's PULL listening: not a peer
  row(1, '0100007F:15B3', '0100007F:9C40', '01'), // 127.0.0.1:5555 ← 127.0.0.1:40000
  row(2, '6401A8C0:15B4', '0A01A8C0:D431', '01'), // 192.168.1.100:5556 ← 192.168.1.10:54321
  row(3, '6401A8C0:15B3', '0B01A8C0:D432', '06'), // TIME_WAIT: gone
  row(4, '6401A8C0:0050', '0B01A8C0:D433', '01'), // port 80: not watched
  row(5, '0100007F:9C41', '0100007F:15B3', '01'), // this machine as a client OF 5555: local port is not watched
  '',
].join('\n');

const TCP6 = [
  HEADER,
  row(0, '00000000000000000000000000000000:15B3', '00000000000000000000000000000000:0000', '0A'),
  // ::ffff:127.0.0.1 — an IPv4 client of a dual-stack listener
  row(1, '0000000000000000FFFF00000100007F:15B3', '0000000000000000FFFF00000100007F:A410', '01'),
  // ::1
  row(2, '00000000000000000000000001000000:15B4', '00000000000000000000000001000000:A411', '01'),
  // 2001:db8::1 → fe80::1234:5678:9abc:def0 on the VR link port
  row(3, 'B80D0120000000000000000001000000:20FA', '000080FE0000000078563412F0DEBC9A:A412', '01'),
  '',
].join('\n');

const WATCHED = new Set([5555, 5556, 8442, 8443]);

describe('/proc/net/tcp parsing', () => {
  it('lists ESTABLISHED connections on watched local ports only, with dotted IPv4 peers', () => {
    expect(parseProcNetTcp(TCP, WATCHED, true)).toEqual([
      { localPort: 5555, remoteAddress: '127.0.0.1', remotePort: 40000 },
      { localPort: 5556, remoteAddress: '192.168.1.10', remotePort: 54321 },
    ]);
  });

  it('reads tcp6: IPv4-mapped peers as plain IPv4, others in RFC 5952 form', () => {
    expect(parseProcNetTcp(TCP6, WATCHED, true)).toEqual([
      { localPort: 5555, remoteAddress: '127.0.0.1', remotePort: 0xa410 },
      { localPort: 5556, remoteAddress: '::1', remotePort: 0xa411 },
      { localPort: 8442, remoteAddress: 'fe80::1234:5678:9abc:def0', remotePort: 0xa412 },
    ]);
  });

  it('reads big-endian kernels’ words in order', () => {
    const text = [HEADER, row(0, '7F000001:15B3', 'C0A8010A:D431', '01'), ''].join('\n');
    expect(parseProcNetTcp(text, WATCHED, false)).toEqual([
      { localPort: 5555, remoteAddress: '192.168.1.10', remotePort: 54321 },
    ]);
  });

  it('names the line of an entry it cannot read', () => {
    const text = [HEADER, row(0, '0100007F:15B3', 'nothex:9C40', '01'), ''].join('\n');
    expect(() => parseProcNetTcp(text, WATCHED, true)).toThrow(ProcNetTcpFormatError);
    expect(() => parseProcNetTcp(text, WATCHED, true)).toThrow(/line 1: bad address nothex/);
  });

  it('skips blank and foreign lines', () => {
    expect(parseProcNetTcp(`${HEADER}\n\n  garbage\n`, WATCHED, true)).toEqual([]);
    expect(parseProcNetTcp('', WATCHED, true)).toEqual([]);
  });
});

describe('readTcpPeers', () => {
  let root: string | undefined;
  afterEach(async () => {
    if (root) await rm(root, { recursive: true, force: true });
    root = undefined;
  });

  it('reads both tables under procRoot', async () => {
    root = await mkdtemp(join(tmpdir(), 'proc-net-tcp-'));
    await mkdir(join(root, 'net'));
    await writeFile(join(root, 'net', 'tcp'), TCP);
    await writeFile(join(root, 'net', 'tcp6'), TCP6);
    const peers = readTcpPeers(new Set([5555]), root);
    // (fixtures are little-endian: this machine is x86 or arm64, both little-endian)
    expect(peers).toEqual([
      { localPort: 5555, remoteAddress: '127.0.0.1', remotePort: 40000 },
      { localPort: 5555, remoteAddress: '127.0.0.1', remotePort: 0xa410 },
    ]);
  });

  it('treats a missing table (IPv6 disabled, or no IPv4) as no peers', async () => {
    root = await mkdtemp(join(tmpdir(), 'proc-net-tcp-'));
    await mkdir(join(root, 'net'));
    await writeFile(join(root, 'net', 'tcp'), TCP);
    expect(readTcpPeers(WATCHED, root)).toHaveLength(2);
    await rm(join(root, 'net', 'tcp'));
    await writeFile(join(root, 'net', 'tcp6'), TCP6);
    expect(readTcpPeers(WATCHED, root)).toHaveLength(3);
    expect(readTcpPeers(WATCHED, join(root, 'nowhere'))).toEqual([]);
  });

  it('finds a real loopback connection on this machine', async () => {
    const { createServer, connect } = await import('node:net');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const client = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    try {
      const peers = readTcpPeers(new Set([port]));
      expect(peers).toEqual([{ localPort: port, remoteAddress: '127.0.0.1', remotePort: client.localPort }]);
    } finally {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

const SNMP = [
  'Ip: Forwarding DefaultTTL InReceives',
  'Ip: 1 64 145678',
  'Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors',
  'Tcp: 1 200 120000 -1 8121 2114 5947 375 2 145428 141857 33 0 6405 0',
  'Udp: InDatagrams NoPorts',
  'Udp: 10 2',
  '',
].join('\n');

describe('/proc/net/snmp TCP counters', () => {
  it('reads PassiveOpens and CurrEstab', () => {
    expect(parseTcpSnmp(SNMP)).toEqual({ passiveOpens: 2114, currEstab: 2 });
  });

  it('refuses a text without Tcp lines, naming the file', () => {
    expect(() => parseTcpSnmp('Ip: a\nIp: 1\n')).toThrow(/\/proc\/net\/snmp: no Tcp: lines/);
    expect(() => parseTcpSnmp('Tcp: A B\nTcp: 1 2\n')).toThrow(/no Tcp PassiveOpens/);
  });

  it('sees an accepted connection move PassiveOpens and CurrEstab on this machine', async () => {
    const { createServer, connect } = await import('node:net');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const before = readTcpConnectionCounters();
    const client = connect((server.address() as { port: number }).port, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('connection', () => resolve()));
    try {
      const after = readTcpConnectionCounters();
      expect(after.passiveOpens).toBeGreaterThan(before.passiveOpens);
      expect(after.currEstab).toBeGreaterThan(before.currEstab);
    } finally {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('reads a procfs file larger than its first buffer whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'proc-text-'));
    try {
      const big = 'x'.repeat(200_000);
      await writeFile(join(dir, 'big'), big);
      expect(readProcText(join(dir, 'big'))).toBe(big);
      expect(readProcText(join(dir, 'missing'))).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
