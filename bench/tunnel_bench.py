#!/usr/bin/env python3
"""Tunnel benchmark for bench/egress.sh (stdlib only).

  tunnel_bench.py sink PORT
      A thread-per-connection sink on 127.0.0.1:PORT. Each connection sends one 32-byte
      command line: "up N" (the sink reads N bytes, then answers one byte), "down N" (the
      sink sends N bytes) or "ping" (the sink answers one byte).

  tunnel_bench.py xfer --via VIA --target PORT --bytes N --dir up|down
      Moves N bytes in 1 MiB sendall / recv_into chunks and prints MB/s as JSON. "up" runs
      from the first payload byte to the sink's acknowledgement of the last; "down" from
      the request to the last byte received.

  tunnel_bench.py setup --via VIA --target PORT --n N
      Opens N tunnels one after another and prints p50/p99 in microseconds of
      "established" (from before connect() to the end of the proxy's 200 head; for direct:
      connect() returned) and "first byte" (plus a 32-byte request and the sink's 1-byte
      answer).

VIA: direct | connect-tcp:HOST:PORT | connect-uds:PATH | relay-uds:PATH (a plain relay, no CONNECT)
--host ADDR (every mode): where the sink listens and the tunnels go (default 127.0.0.1).
"""
import argparse
import json
import socket
import sys
import threading
import time

CHUNK = 1 << 20
HOST = "127.0.0.1"


def line(cmd):
    b = cmd.encode()
    return b + b" " * (31 - len(b)) + b"\n"


def serve(conn):
    try:
        head = b""
        while len(head) < 32:
            part = conn.recv(32 - len(head))
            if not part:
                return
            head += part
        words = head.decode().split()
        if words[0] == "ping":
            conn.sendall(b"!")
        elif words[0] == "up":
            left = int(words[1])
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while left > 0:
                n = conn.recv_into(view, min(CHUNK, left))
                if n == 0:
                    return
                left -= n
            conn.sendall(b"K")
        elif words[0] == "down":
            left = int(words[1])
            data = b"\0" * CHUNK
            while left > 0:
                n = min(CHUNK, left)
                conn.sendall(data[:n] if n < CHUNK else data)
                left -= n
        # Wait for the client to close.
        conn.recv(1)
    except OSError:
        pass
    finally:
        conn.close()


def sink(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, port))
    s.listen(1024)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def open_tunnel(via, target):
    """Returns the socket, positioned after the proxy's answer."""
    if via == "direct":
        s = socket.create_connection((HOST, target))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    kind, _, where = via.partition(":")
    if kind == "connect-tcp":
        host, _, port = where.rpartition(":")
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    elif kind in ("connect-uds", "relay-uds"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(where)
        if kind == "relay-uds":
            return s
    else:
        sys.exit("unknown --via " + via)
    t = ("%s:%d" % (HOST, target)).encode()
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (t, t))
    head = b""
    while b"\r\n\r\n" not in head:
        part = s.recv(4096)
        if not part:
            sys.exit("the proxy closed the connection: %r" % head)
        head += part
    status = head.split(b" ", 2)[1]
    if status != b"200":
        sys.exit("the proxy answered %r" % head.split(b"\r\n", 1)[0])
    if not head.endswith(b"\r\n\r\n"):
        sys.exit("unexpected bytes after the proxy's answer")
    return s


def xfer(via, target, nbytes, direction):
    s = open_tunnel(via, target)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    if direction == "up":
        s.sendall(line("up %d" % nbytes))
        data = b"\1" * CHUNK
        t0 = time.perf_counter()
        left = nbytes
        while left > 0:
            n = min(CHUNK, left)
            s.sendall(data if n == CHUNK else data[:n])
            left -= n
        if s.recv(1) != b"K":
            sys.exit("no acknowledgement from the sink")
        dt = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        s.sendall(line("down %d" % nbytes))
        left = nbytes
        while left > 0:
            n = s.recv_into(view, min(CHUNK, left))
            if n == 0:
                sys.exit("short transfer")
            left -= n
        dt = time.perf_counter() - t0
    s.close()
    print(json.dumps({"mbps": nbytes / dt / 1e6, "seconds": dt}))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def setup(via, target, n):
    est, first = [], []
    ping = line("ping")
    for _ in range(n):
        t0 = time.perf_counter()
        s = open_tunnel(via, target)
        t1 = time.perf_counter()
        s.sendall(ping)
        if s.recv(1) != b"!":
            sys.exit("no answer from the sink")
        t2 = time.perf_counter()
        s.close()
        est.append((t1 - t0) * 1e6)
        first.append((t2 - t0) * 1e6)
    print(json.dumps({
        "n": n,
        "est_p50": pct(est, 50), "est_p99": pct(est, 99),
        "first_p50": pct(first, 50), "first_p99": pct(first, 99),
        "est": est, "first": first,
    }))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["sink", "xfer", "setup"])
    ap.add_argument("port", nargs="?", type=int)
    ap.add_argument("--via", default="direct")
    ap.add_argument("--target", type=int)
    ap.add_argument("--bytes", type=int, default=2 << 30)
    ap.add_argument("--dir", choices=["up", "down"], default="up")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    global HOST
    HOST = a.host
    if a.mode == "sink":
        sink(a.port)
    elif a.mode == "xfer":
        xfer(a.via, a.target, a.bytes, a.dir)
    else:
        setup(a.via, a.target, a.n)


if __name__ == "__main__":
    main()
