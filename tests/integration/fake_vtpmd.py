#!/usr/bin/env python3
"""Stand-in for xtpm-vtpmd, used only to self-test the suites' xtpm-only paths (the "ready" line, the
pid file, the --mssim port pair) before the real daemon exists. NOT a product and not an oracle.

  XTPM_VTPMD=tests/integration/fake_vtpmd.py XTPM_DAEMON_KIND=xtpm bash tests/integration/bad_input.sh

It runs Debian's swtpm with the same `socket` options minus --mssim/--pid, writes its own pid file,
serves the Microsoft-simulator protocol (TpmTcpProtocol.h, peers-and-protocols.md 4.3) on the --mssim
ports by forwarding each command to swtpm's data port, prints "ready", and on SIGTERM stops swtpm
with SIGTERM and exits 0.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SWTPM = os.environ.get('SWTPM', '/usr/bin/swtpm')
MAX_COMMAND = 4096
PLATFORM_OK = {1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 17, 18}


def opt(args, name):
    """Value of `--name value`, removing both from args."""
    if name not in args:
        return None
    i = args.index(name)
    value = args[i + 1]
    del args[i:i + 2]
    return value


def kv(value, key):
    for part in value.split(','):
        k, _, v = part.partition('=')
        if k == key:
            return v
    return None


def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        if s.family == socket.AF_INET:  # ACK at once: tpm2-tss sends frame and command separately
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def address(spec):
    """--server/--ctrl value -> (family, address)."""
    if kv(spec, 'type') == 'unixio':
        return socket.AF_UNIX, kv(spec, 'path')
    return socket.AF_INET, ('127.0.0.1', int(kv(spec, 'port')))


def connect(spec, timeout):
    family, addr = address(spec)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except OSError:
        s.close()
        raise
    return s


class Forwarder:
    """One command at a time to swtpm's data port (it serves a single client)."""

    def __init__(self, server, ctrl):
        self.server = server
        self.ctrl = ctrl
        self.lock = threading.Lock()
        self.locality = 0

    def run(self, cmd, locality):
        with self.lock:
            if locality != self.locality:
                with connect(self.ctrl, 10) as c:
                    c.sendall(struct.pack('>IB', 5, locality))
                    recv_exact(c, 4)
                self.locality = locality
            with connect(self.server, 30) as s:
                s.sendall(cmd)
                head = recv_exact(s, 10)
                return head + recv_exact(s, struct.unpack('>I', head[2:6])[0] - 10)


def serve_command(conn, fwd):
    while True:
        code = struct.unpack('>I', recv_exact(conn, 4))[0]
        if code == 8:
            locality, length = struct.unpack('>BI', recv_exact(conn, 5))
            if length > MAX_COMMAND or length < 10 or locality > 4:
                return
            resp = fwd.run(recv_exact(conn, length), locality)
            conn.sendall(struct.pack('>I', len(resp)) + resp + bytes(4))
        elif code == 15:
            recv_exact(conn, 4)
            conn.sendall(struct.pack('>III', 1, 0x0D, 0))
        elif code in (5, 7):
            conn.sendall(bytes(4))
        elif code == 6:
            length = struct.unpack('>I', recv_exact(conn, 4))[0]
            if length > MAX_COMMAND:
                return
            recv_exact(conn, length)
            conn.sendall(bytes(4))
        elif code == 16:
            recv_exact(conn, 4)
            conn.sendall(bytes(4))
        else:
            return  # 20 SESSION_END, 21 STOP and anything unknown: close


def serve_platform(conn, fwd):
    while True:
        code = struct.unpack('>I', recv_exact(conn, 4))[0]
        if code in PLATFORM_OK:
            conn.sendall(bytes(4))
        elif code == 25:
            conn.sendall(struct.pack('>IIIIII', 16, MAX_COMMAND, 0, MAX_COMMAND, 0, 0))
        elif code in (20, 21):
            return
        else:
            conn.sendall(struct.pack('>I', 1))
            return


def listen(port, handler, fwd):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(16)

    def client(conn):
        with conn:
            try:
                handler(conn, fwd)
            except (EOFError, OSError):
                pass

    def loop():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


def main():
    args = sys.argv[1:]
    mssim = opt(args, '--mssim')
    pidfile = kv(opt(args, '--pid') or '', 'file')
    server = args[args.index('--server') + 1]
    ctrl = args[args.index('--ctrl') + 1]
    child = subprocess.Popen([SWTPM] + args)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: (stopping.append(1), child.terminate()))
    deadline = time.monotonic() + 15
    for spec in (server, ctrl):
        while time.monotonic() < deadline and child.poll() is None:
            try:
                connect(spec, 1).close()
                break
            except OSError:
                time.sleep(0.02)  # bounded poll until swtpm listens
    if child.poll() is not None:
        sys.exit(1)
    if mssim:
        q = int(kv(mssim, 'port'))
        fwd = Forwarder(server, ctrl)
        listen(q, serve_command, fwd)
        listen(q + 1, serve_platform, fwd)
    if pidfile:
        with open(pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())
    print('fake_vtpmd ready', flush=True)
    rc = child.wait()
    sys.exit(rc if stopping else 1)  # 1: swtpm ended on its own


if __name__ == '__main__':
    main()
