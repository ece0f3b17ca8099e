#!/usr/bin/python3
"""Opens N PostgreSQL client connections that complete the startup and the
SCRAM-SHA-256 login (up to ReadyForQuery), then keeps them open and idle.

It speaks the protocol itself (asyncio protocols, no libpq): the PBKDF2 of
the password is computed once per (salt, iterations) the server announces,
so 50,000 logins do not cost 50,000 PBKDF2s. The server's final signature
is still checked for every login.

Connections are made with at most --concurrency logins in flight (so the
listen backlog is not overrun) from source addresses 127.0.0.2,
127.0.0.3, ... in turn: loopback ephemeral ports run out near 28,000 per
(source, destination) pair.

Protocol with the parent: after the last login attempt one JSON line goes
to stdout ({"ok", "failed", "errors", "connect_s", ...}); then the tool
waits for a line on stdin (or EOF), writes a second JSON line
({"dropped": connections the server closed while idle}), closes everything
and exits.

    idle_client.py --host 127.0.0.1 --port 6432 -n 10000 [--user app
                   --password apppass --db appdb --concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import json
import os
import resource
import socket
import struct
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
PORTS_PER_SOURCE = 20000  # well below the ~28k ephemeral ports per destination

_keys: dict[tuple[bytes, int], tuple[bytes, bytes, bytes]] = {}


def scram_keys(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes, bytes]:
    """(ClientKey, StoredKey, ServerKey), cached per (salt, iterations)."""
    k = (salt, iterations)
    if k not in _keys:
        salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        _keys[k] = (client_key, hashlib.sha256(client_key).digest(),
                    hmac.new(salted, b"Server Key", hashlib.sha256).digest())
    return _keys[k]


def msg(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("!I", len(body) + 4) + body


class LoginError(Exception):
    pass


class IdleConn(asyncio.Protocol):
    """Startup + SCRAM-SHA-256 login; then idle. `ready` resolves at the
    first ReadyForQuery, or fails with LoginError."""

    def __init__(self, user: str, db: str, password: bytes, stats: collections.Counter):
        self.user, self.db, self.password, self.stats = user, db, password, stats
        self.buf = bytearray()
        self.ready = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        body = struct.pack("!I", 196608) + b"user\0" + self.user.encode() + b"\0database\0" \
            + self.db.encode() + b"\0application_name\0idle-bench\0\0"
        transport.write(struct.pack("!I", len(body) + 4) + body)

    def data_received(self, data):
        self.buf += data
        while len(self.buf) >= 5:
            (ln,) = struct.unpack_from("!I", self.buf, 1)
            if len(self.buf) < 1 + ln:
                return
            tag, body = self.buf[0:1], bytes(self.buf[5:1 + ln])
            del self.buf[:1 + ln]
            try:
                self.on_message(tag, body)
            except LoginError as e:
                self.fail(str(e))
                return

    def on_message(self, tag: bytes, body: bytes):
        if self.ready.done():
            return  # idle: ParameterStatus or NoticeResponse pushed later
        if tag == b"R":
            (code,) = struct.unpack_from("!I", body)
            if code == 0:
                return
            if code == 10:  # AuthenticationSASL
                if b"SCRAM-SHA-256" not in body[4:].split(b"\0"):
                    raise LoginError("server offers no SCRAM-SHA-256")
                self.nonce = base64.b64encode(os.urandom(18))
                self.first_bare = b"n=,r=" + self.nonce
                first = b"n,," + self.first_bare
                self.transport.write(msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            elif code == 11:  # AuthenticationSASLContinue: server-first
                server_first = body[4:]
                attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
                if not attrs[b"r"].startswith(self.nonce):
                    raise LoginError("SCRAM: server nonce does not extend ours")
                client_key, stored_key, self.server_key = scram_keys(
                    self.password, base64.b64decode(attrs[b"s"]), int(attrs[b"i"]))
                without_proof = b"c=biws,r=" + attrs[b"r"]
                self.auth_message = self.first_bare + b"," + server_first + b"," + without_proof
                sig = hmac.new(stored_key, self.auth_message, hashlib.sha256).digest()
                proof = bytes(a ^ b for a, b in zip(client_key, sig))
                self.transport.write(msg(b"p", without_proof + b",p=" + base64.b64encode(proof)))
            elif code == 12:  # AuthenticationSASLFinal
                attrs = dict(kv.split(b"=", 1) for kv in body[4:].split(b","))
                want = hmac.new(self.server_key, self.auth_message, hashlib.sha256).digest()
                if base64.b64decode(attrs.get(b"v", b"")) != want:
                    raise LoginError("SCRAM: wrong server signature")
            else:
                raise LoginError(f"unsupported authentication request {code}")
        elif tag == b"E":
            fields = {p[:1]: p[1:] for p in body.split(b"\0") if p}
            raise LoginError(f"{fields.get(b'C', b'?').decode()} {fields.get(b'M', b'').decode('utf-8', 'replace')}")
        elif tag == b"Z":
            self.ready.set_result(True)
        # S (ParameterStatus), K (BackendKeyData), N (notice): nothing to do

    def fail(self, why: str):
        if not self.ready.done():
            self.ready.set_exception(LoginError(why))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc):
        if not self.ready.done():
            self.ready.set_exception(LoginError(f"connection closed during login ({exc or 'EOF'})"))
        else:
            self.stats["dropped"] += 1


async def open_one(i: int, args, sources: list[str], stats, conns: list, sem: asyncio.Semaphore):
    loop = asyncio.get_running_loop()
    async with sem:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((sources[i % len(sources)], 0))
            await asyncio.wait_for(loop.sock_connect(sock, (args.host, args.port)), args.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, proto = await loop.create_connection(
                lambda: IdleConn(args.user, args.db, args.password.encode(), stats), sock=sock)
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            stats["failed"] += 1
            stats["err:" + (type(e).__name__ + (f" {e.strerror}" if getattr(e, "strerror", None) else ""))] += 1
            return
        try:
            await asyncio.wait_for(asyncio.shield(proto.ready), args.timeout)
        except (LoginError, asyncio.TimeoutError) as e:
            transport.abort()
            stats["failed"] += 1
            stats["err:" + (str(e)[:120] or type(e).__name__)] += 1
            return
        stats["ok"] += 1
        conns.append(transport)


async def main_async(args) -> int:
    n_sources = max(1, -(-args.n // PORTS_PER_SOURCE))
    sources = [f"127.0.0.{2 + k}" for k in range(n_sources)]
    stats: collections.Counter = collections.Counter()
    conns: list = []
    sem = asyncio.Semaphore(args.concurrency)
    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i, args, sources, stats, conns, sem) for i in range(args.n)))
    connect_s = time.monotonic() - t0
    errors = {k[4:]: v for k, v in stats.items() if k.startswith("err:")}
    print(json.dumps({"ok": stats["ok"], "failed": stats["failed"], "errors": errors,
                      "connect_s": round(connect_s, 3), "sources": sources,
                      "pbkdf2_computed": len(_keys), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}),
          flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"dropped": stats["dropped"], "still_open": len(conns) - stats["dropped"]}), flush=True)
    for t in conns:
        t.abort()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, required=True, help="connections to open")
    ap.add_argument("--user", default="app")
    ap.add_argument("--password", default="apppass")
    ap.add_argument("--db", default="appdb")
    ap.add_argument("--concurrency", type=int, default=64, help="logins in flight at once")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per connect and per login")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
