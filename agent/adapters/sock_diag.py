#!/usr/bin/env python3
"""Per-socket TCP byte counters for the edge agent's teleoperation probe (agent/adapters/socket-counters.ts).

Why this exists: /proc/net/tcp lists connections but has no byte counters; Linux only exposes them per socket
(tcp_info.tcpi_bytes_received / tcpi_bytes_acked) through netlink sock_diag, the interface `ss -ti` uses. Node cannot
open an AF_NETLINK socket, and spawning `ss` 30 times a second would cost far more than this small persistent
co-process. Python 3 is on every LeRobot Pi; this script uses the standard library only.

Cost matters more than anything here: a dump (NLM_F_DUMP) walks the kernel's whole established-socket hash table,
whose size scales with RAM, not with the sockets in use (262144 buckets on a 24 GB machine: ~1 ms per walk), so it
is done only when asked to discover; in between, the sockets found are looked up one by one (an exact sock_diag
request with the socket's 4-tuple and cookie: a hash lookup, microseconds).

Protocol (one line in, one line out, in order):
  request:  {"ports": [5555, 5556], "discover": true}
            discover true: dump all ESTABLISHED TCP sockets (IPv4 and IPv6) whose LOCAL port is one of the ports
            (1-65535, at most 64) and remember them; discover false: look up the remembered ones again (those no
            longer ESTABLISHED are dropped).
  answer:   {"sockets": [{"localPort": 5555, "remoteAddress": "127.0.0.1", "remotePort": 40312,
                          "bytesReceived": 1234, "bytesAcked": 56, "inode": 987654}, ...]}
  on a bad request or a netlink failure:  {"error": "<what went wrong>"}  (the process keeps serving)
The first line it writes is {"ready": true, "pid": N} once the netlink socket is open, or {"fatal": "..."} before
exiting 3 when it cannot be opened. It exits 0 when stdin closes (the agent exited or closed the pipe).
IPv4-mapped IPv6 peers (::ffff:a.b.c.d) are reported as plain IPv4.
"""

import json
import os
import socket
import struct
import sys

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
INET_DIAG_INFO = 2
TCP_ESTABLISHED = 1
MAX_PORTS = 64

NLMSGHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid (sport, dport big-endian, src[16],
# dst[16], if, cookie[2]).
REQ_V2 = struct.Struct("=BBBBI")
SOCKID = struct.Struct("!HH16s16s")
SOCKID_LEN = 48
# inet_diag_msg: family, state, timer, retrans, sockid, expires, rqueue, wqueue, uid, inode.
MSG_HEAD = struct.Struct("=BBBB")
MSG_TAIL = struct.Struct("=IIIII")
MSG_LEN = 4 + SOCKID_LEN + 20
RTATTR = struct.Struct("=HH")
# struct tcp_info: tcpi_bytes_acked at offset 120, tcpi_bytes_received at 128 (Linux 4.1 and later).
BYTES_ACKED_OFFSET = 120
BYTES_RECEIVED_OFFSET = 128
U64 = struct.Struct("=Q")

MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def diag_request(family, seq, sockid=None):
    """A dump of ESTABLISHED sockets (sockid None), or an exact lookup of one socket by its raw inet_diag_sockid."""
    states = 1 << TCP_ESTABLISHED if sockid is None else 0xFFFFFFFF
    body = REQ_V2.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, states)
    body += b"\x00" * SOCKID_LEN if sockid is None else sockid
    flags = NLM_F_REQUEST | NLM_F_DUMP if sockid is None else NLM_F_REQUEST
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, flags, seq, 0) + body


def address(family, raw):
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw.startswith(MAPPED_PREFIX):
        return socket.inet_ntop(socket.AF_INET, raw[12:16])
    return socket.inet_ntop(socket.AF_INET6, raw)


class SockDiag:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        self.sock.bind((0, 0))
        self.seq = 0
        # (family, raw sockid) of the sockets found by the last discovery, still ESTABLISHED at the last lookup
        self.known = []

    def discover(self, ports):
        found = []
        for family in (socket.AF_INET, socket.AF_INET6):
            self.seq += 1
            self.sock.send(diag_request(family, self.seq))
            self._collect(family, ports, found)
        self.known = [(entry.pop("_family"), entry.pop("_sockid")) for entry in found]
        return found

    def lookup(self):
        found, still = [], []
        for family, sockid in self.known:
            self.seq += 1
            self.sock.send(diag_request(family, self.seq, sockid))
            before = len(found)
            self._collect(family, None, found, single=True)
            if len(found) > before:
                entry = found[-1]
                still.append((entry.pop("_family"), entry.pop("_sockid")))
        self.known = still
        return found

    def _collect(self, family, ports, found, single=False):
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size:
                    raise OSError("malformed netlink message")
                if seq != self.seq:
                    offset += (length + 3) & ~3
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (errno,) = struct.unpack_from("=i", data, offset + NLMSGHDR.size)
                    # a looked-up socket that is gone: ENOENT, or ESTALE when its tuple now names another socket
                    if errno == 0 or (single and -errno in (2, 116)):
                        return
                    raise OSError(-errno, "sock_diag: " + os.strerror(-errno))
                if kind == SOCK_DIAG_BY_FAMILY:
                    self._socket(family, data, offset + NLMSGHDR.size, offset + length, ports, found)
                    if single:
                        return
                offset += (length + 3) & ~3

    @staticmethod
    def _socket(family, data, start, end, ports, found):
        if end - start < MSG_LEN:
            return
        _family, state, _timer, _retrans = MSG_HEAD.unpack_from(data, start)
        sport, dport, _src, dst = SOCKID.unpack_from(data, start + 4)
        if state != TCP_ESTABLISHED or (ports is not None and sport not in ports):
            return
        inode = MSG_TAIL.unpack_from(data, start + 4 + SOCKID_LEN)[4]
        bytes_acked = bytes_received = None
        attr = start + MSG_LEN
        while attr + RTATTR.size <= end:
            rta_len, rta_type = RTATTR.unpack_from(data, attr)
            if rta_len < RTATTR.size:
                break
            if rta_type == INET_DIAG_INFO and rta_len - RTATTR.size >= BYTES_RECEIVED_OFFSET + 8:
                info = attr + RTATTR.size
                (bytes_acked,) = U64.unpack_from(data, info + BYTES_ACKED_OFFSET)
                (bytes_received,) = U64.unpack_from(data, info + BYTES_RECEIVED_OFFSET)
            attr += (rta_len + 3) & ~3
        if bytes_received is None:
            return  # a kernel older than 4.1 has no byte counters: nothing useful to say about this socket
        found.append(
            {
                "localPort": sport,
                "remoteAddress": address(family, dst),
                "remotePort": dport,
                "bytesAcked": bytes_acked,
                "bytesReceived": bytes_received,
                "inode": inode,
                # the socket's own id (4-tuple, interface, cookie) for exact lookups later
                "_family": family,
                "_sockid": bytes(data[start + 4 : start + 4 + SOCKID_LEN]),
            }
        )


def parse_request(line):
    try:
        request = json.loads(line)
    except ValueError as error:
        raise ValueError("request is not JSON (%s)" % error)
    if not isinstance(request, dict):
        raise ValueError("request must be a JSON object")
    discover = request.get("discover", True)
    if not isinstance(discover, bool):
        raise ValueError("discover must be true or false")
    ports = request.get("ports")
    if not isinstance(ports, list) or not 0 < len(ports) <= MAX_PORTS:
        raise ValueError("request needs ports: a list of 1-%d TCP ports" % MAX_PORTS)
    for port in ports:
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValueError("ports must be integers 1-65535, got %r" % (port,))
    return frozenset(ports), discover


def write(message):
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    try:
        diag = SockDiag()
    except OSError as error:
        write({"fatal": "cannot open a NETLINK_SOCK_DIAG socket: %s" % error})
        return 3
    write({"ready": True, "pid": os.getpid()})
    cached_line, cached = None, None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            if line != cached_line:
                cached, cached_line = parse_request(line), line
            ports, discover = cached
            write({"sockets": diag.discover(ports) if discover else diag.lookup()})
        except (ValueError, OSError) as error:
            write({"error": str(error)})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(0)
