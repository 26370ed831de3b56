#!/usr/bin/env python3
"""echo-rest: the reference sidecar of omac, Python standard library only.

omac starts it with SIDECAR_PORT (and SIDECAR_SKILL, OMAC_WORKDIR, the config fields and the
ECHO_API_KEY secret) in its environment; it listens on 127.0.0.1:$SIDECAR_PORT only.

Routes (as seen by the sidecar; through the facade they sit under /echo/):
  GET  /status               health probe: {"ok": true, "skill": ..., "pid": ..., "pgid": ...}
  GET  /whoami               config values and a fingerprint of ECHO_API_KEY (never the value)
  POST /echo                 the JSON body sent back under "you_sent"
  GET  /tick?n=3&gap_ms=30   Server-Sent Events: n "tick" events gap_ms apart, then "done"
  GET  /ws                   WebSocket echo (text and binary messages, ping/pong, close)
  GET  /slow?ms=500          answers after a delay (for timeout checks)
"""

import base64
import hashlib
import json
import os
import signal
import socketserver
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_BODY = 16 * 1024 * 1024
MAX_WS_MESSAGE = 16 * 1024 * 1024
TRUE_WORDS = {"true", "t", "yes", "y", "1", "on"}


def _int_env(name, default):
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        sys.stderr.write(f"echo-rest: {name}={raw!r} is not an integer; using {default}\n")
        return default


SKILL = os.environ.get("SIDECAR_SKILL", "echo-rest")
GREETING = os.environ.get("ECHO_GREETING", "hello")
VERBOSE = os.environ.get("ECHO_VERBOSE", "false").strip().lower() in TRUE_WORDS
MAX_TICK = _int_env("ECHO_MAX_TICK", 100)
MODE = os.environ.get("ECHO_MODE", "demo")


def fingerprint():
    """sha256 of ECHO_API_KEY, first 12 hex digits: proves which secret arrived, reveals nothing."""
    key = os.environ.get("ECHO_API_KEY")
    if not key:
        return None
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


class TooLarge(Exception):
    pass


def _query_int(query, name, default, low, high):
    try:
        value = int(query.get(name, [default])[0])
    except ValueError:
        value = default
    return max(low, min(high, value))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The stdlib listens with a backlog of 5: under load, connections beyond it wait for SYN
    # retransmissions (1 s, 3 s, ...).
    request_queue_size = 128

    def server_bind(self):
        # HTTPServer.server_bind looks up the host's fully qualified name, which can stall for
        # many seconds (macOS); the name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, so omac's connection pool is used; with it, TCP_NODELAY is a must: the
    # headers and the body go out in two writes, and Nagle would hold the body until the
    # peer's delayed ACK, 40 ms later.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "echo-rest/0.1"
    sys_version = ""

    # -- plumbing ---------------------------------------------------------------------------

    def log_message(self, format, *args):
        if VERBOSE:
            sys.stderr.write("echo-rest: %s %s\n" % (self.address_string(), format % args))

    def log_error(self, format, *args):
        sys.stderr.write("echo-rest: error: %s\n" % (format % args))

    def send_json(self, status, obj):
        body = json.dumps(obj).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ValueError("body ended early")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                total += size
                if total > MAX_BODY:
                    raise TooLarge()
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise TooLarge()
        return self.rfile.read(length)

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # -- routes -----------------------------------------------------------------------------

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        route = {
            "/status": self.status,
            "/whoami": self.whoami,
            "/tick": self.tick,
            "/ws": self.websocket,
            "/slow": self.slow,
        }.get(url.path)
        if route is None:
            return self.send_json(404, {"error": "no such route", "path": url.path})
        route(query)

    def do_HEAD(self):
        if urlsplit(self.path).path == "/status":
            return self.status({})
        self.send_json(404, {})

    def do_POST(self):
        if urlsplit(self.path).path != "/echo":
            return self.send_json(404, {"error": "no such route"})
        try:
            raw = self.read_body()
        except TooLarge:
            self.close_connection = True
            return self.send_json(413, {"error": f"body larger than {MAX_BODY} bytes"})
        except ValueError as e:
            self.close_connection = True
            return self.send_json(400, {"error": f"bad body: {e}"})
        try:
            sent = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return self.send_json(400, {"error": f"the body is not JSON: {e}"})
        self.send_json(
            200,
            {
                "skill": SKILL,
                "secret_fingerprint": fingerprint(),
                "you_sent": sent,
                "bytes": len(raw),
            },
        )

    def status(self, _query):
        self.send_json(200, {"ok": True, "skill": SKILL, "pid": os.getpid(), "pgid": os.getpgrp()})

    def whoami(self, _query):
        fp = fingerprint()
        doc = {
            "skill": SKILL,
            "greeting": f"{GREETING}, agent",
            "config": {
                "ECHO_GREETING": GREETING,
                "ECHO_VERBOSE": VERBOSE,
                "ECHO_MAX_TICK": MAX_TICK,
                "ECHO_MODE": MODE,
            },
            "secret_present": fp is not None,
            "secret_fingerprint": fp,
            "forwarded_prefix": self.headers.get("X-Forwarded-Prefix"),
            "client_port": self.client_address[1],
        }
        if VERBOSE:
            doc["headers"] = {k: v for k, v in self.headers.items()}
        self.send_json(200, doc)

    def slow(self, query):
        ms = _query_int(query, "ms", 500, 0, 60000)
        time.sleep(ms / 1000)
        self.send_json(200, {"slept_ms": ms})

    def tick(self, query):
        n = _query_int(query, "n", 3, 0, max(0, MAX_TICK))
        gap_ms = _query_int(query, "gap_ms", 30, 0, 60000)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(1, n + 2):
                if i > 1:
                    time.sleep(gap_ms / 1000)
                if i <= n:
                    data = json.dumps({"i": i, "n": n, "ts": time.time()})
                    self.write_chunk(f"id: {i}\nevent: tick\ndata: {data}\n\n".encode())
                else:
                    self.write_chunk(b"event: done\ndata: {}\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- WebSocket (RFC 6455), server side ----------------------------------------------------

    def websocket(self, _query):
        key = self.headers.get("Sec-WebSocket-Key", "").strip()
        tokens = [t.strip().lower() for t in self.headers.get("Connection", "").split(",")]
        if (
            self.headers.get("Upgrade", "").lower() != "websocket"
            or "upgrade" not in tokens
            or not key
            or self.headers.get("Sec-WebSocket-Version", "").strip() != "13"
        ):
            return self.send_json(400, {"error": "expected a WebSocket upgrade, version 13"})
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        try:
            self.ws_echo()
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass

    def ws_read(self, n):
        data = self.rfile.read(n)
        if len(data) < n:
            raise EOFError()
        return data

    def ws_send(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + payload)

    def ws_close(self, code):
        self.ws_send(0x8, struct.pack("!H", code))

    def ws_echo(self):
        message_op, parts, size = None, [], 0
        while True:
            b0, b1 = self.ws_read(2)
            fin, rsv, opcode = b0 & 0x80, b0 & 0x70, b0 & 0x0F
            masked, length = b1 & 0x80, b1 & 0x7F
            if rsv or not masked:
                return self.ws_close(1002)  # protocol error: no extensions; clients must mask
            if length == 126:
                (length,) = struct.unpack("!H", self.ws_read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self.ws_read(8))
            if length > MAX_WS_MESSAGE or size + length > MAX_WS_MESSAGE:
                return self.ws_close(1009)  # too big
            mask = self.ws_read(4)
            payload = self.ws_read(length)
            if length:
                key = (mask * (length // 4 + 1))[:length]
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                    length, "big"
                )
            if opcode >= 0x8:
                if not fin or length > 125:
                    return self.ws_close(1002)
                if opcode == 0x8:
                    code = payload[:2] if len(payload) >= 2 else struct.pack("!H", 1000)
                    return self.ws_send(0x8, code)
                if opcode == 0x9:
                    self.ws_send(0xA, payload)
                continue  # pong: nothing to do
            if opcode in (0x1, 0x2):
                if message_op is not None:
                    return self.ws_close(1002)
                message_op = opcode
            elif opcode != 0x0 or message_op is None:
                return self.ws_close(1002)
            parts.append(payload)
            size += length
            if fin:
                whole = b"".join(parts)
                if message_op == 0x1:
                    try:
                        whole.decode("utf-8")
                    except UnicodeDecodeError:
                        return self.ws_close(1007)
                self.ws_send(message_op, whole)
                message_op, parts, size = None, [], 0


def stop_now(*_):
    """SIGTERM: exit at once. Nothing is kept between requests, and requests in flight die with
    the process either way (their threads are daemons); what sys.exit would add is the
    interpreter's teardown, about 10 ms that omac's session would wait for at every stop."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def main():
    raw = os.environ.get("SIDECAR_PORT", "")
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError()
    except ValueError:
        sys.stderr.write(
            "echo-rest: SIDECAR_PORT is not set to a port number; omac sets it when it starts "
            "the sidecar (run it by hand with SIDECAR_PORT=8080 python3 scripts/sidecar.py)\n"
        )
        sys.exit(2)
    server = Server(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, stop_now)
    sys.stderr.write(f"echo-rest: listening on 127.0.0.1:{port} (pid {os.getpid()})\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
