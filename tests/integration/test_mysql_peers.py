#!/usr/bin/python3
"""MySQL KILL in a fleet (issue 16, README "Running several instances"):
two sqlmux instances (peer_id 1 and 2, one shared [peers] table naming
their postgres listeners, one server.peer_secret) with MySQL listeners in
front of one MariaDB. Thread ids carry the issuing instance's peer id; a
KILL on instance B of a thread id of instance A is forwarded to A, which
applies its own rules, and its answer is B's client's: a SLEEP(30) on A
killed from B ends within a second, another user's KILL gets ERR 1095, an
unknown id ERR 1094. A request that is not signed with the secret, a stale
one and a replayed one kill nothing and get no answer. Without a
peer_secret nothing is forwarded: ERR 1094."""

import hashlib
import hmac
import os
import signal
import socket
import struct
import threading
import time

from harness import *
from mysql_harness import *

SECRET = "integration-fleet-secret-0123"
OTHER, OTHER_PW = "other", "otherpass"
PEER_KILL_CODE = (1234 << 16) | 5901


def connect(mux, **kw):
    kw.setdefault("read_timeout", 40)
    kw.setdefault("write_timeout", 40)
    kw.setdefault("autocommit", True)
    return mux.my_connect(**kw)


def _tweak(peer_id: int, metrics_port: int, peer_port: int, secret: str | None):
    def tweak(cfg):
        cfg["server"]["peer_id"] = peer_id
        if secret is not None:
            cfg["server"]["peer_secret"] = secret
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
        # The address [peers] names: a postgres listener (no PostgreSQL pool).
        cfg["listener"].append({"protocol": "postgres", "listen": f"127.0.0.1:{peer_port}"})
        cfg["user"].append({"name": OTHER, "password": OTHER_PW, "default_pool": "appdb"})
    return tweak


def _set_peers(mux, peers: dict[int, int]):
    """Writes [peers] into mux's config and reloads it."""
    with open(mux.config_path) as f:
        text = f.read()
    text += "\n[peers]\n" + "".join(f'{i} = "127.0.0.1:{p}"\n' for i, p in peers.items())
    with open(mux.config_path, "w") as f:
        f.write(text)
    mux.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: " not in mux.log_text() or "peers" not in mux.log_text().split("reload: ")[-1]:
        check(time.monotonic() < deadline, f"reload with [peers] not logged:\n{mux.log_tail(10)}")
        time.sleep(0.05)


class Fleet:
    def __init__(self, my, secret: str | None = SECRET):
        self.my = my
        self.secret = secret

    def __enter__(self):
        self.mports = [free_port(), free_port()]
        self.peer_ports = [free_port(), free_port()]
        self.a = Sqlmux(None, my=self.my, mode="transaction", size=4,
                        tweak=_tweak(1, self.mports[0], self.peer_ports[0], self.secret)).__enter__()
        try:
            self.b = Sqlmux(None, my=self.my, mode="transaction", size=4,
                            tweak=_tweak(2, self.mports[1], self.peer_ports[1], self.secret)).__enter__()
        except BaseException:
            self.a.__exit__(None, None, None)
            raise
        peers = {1: self.peer_ports[0], 2: self.peer_ports[1]}
        _set_peers(self.a, peers)
        _set_peers(self.b, peers)
        return self

    def __exit__(self, *exc):
        self.b.__exit__(*exc)
        self.a.__exit__(*exc)
        return False


def kills(metrics_port: int) -> dict:
    """sqlmux_client_kills_total as {(route, result): value}."""
    import re
    out = {}
    for k, v in scrape_metrics(metrics_port).items():
        m = re.fullmatch(r'sqlmux_client_kills_total\{result="(\w+)",route="(\w+)"\}', k)
        if m:
            out[(m.group(2), m.group(1))] = v
    return out


def in_background(fn):
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["result"] = fn()
        except Exception as e:  # noqa: BLE001
            box["error"] = e
        box["end"] = time.monotonic()
        box["elapsed"] = box["end"] - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def wait_running(my, marker, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running(my, marker):
            return
        time.sleep(0.02)
    fail(f"no server session runs {marker!r}")


def running(my, marker) -> bool:
    return any(marker in (s["info"] or "") for s in my.sessions())


def peer_request(thread_id: int, query_only: bool, user: str, secret: str, *, unix_time=None,
                 nonce: bytes | None = None) -> bytes:
    """sqlmux's peer KILL request (pool/peer_kill.h), signed with `secret`."""
    nonce = nonce if nonce is not None else os.urandom(16)
    unix_time = int(time.time()) if unix_time is None else unix_time
    u = user.encode()
    body = struct.pack(">BBIQ", 1, 1 if query_only else 0, thread_id, unix_time) + nonce + struct.pack(">H", len(u)) + u
    head = struct.pack(">Ii", 8 + len(body) + 32, PEER_KILL_CODE)
    return head + body + hmac.new(secret.encode(), head + body, hashlib.sha256).digest()


def send_raw(port: int, data: bytes) -> bytes:
    """Sends data to 127.0.0.1:port; returns what comes back before the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return got
            got += chunk


def case_kill_across_instances(my):
    """A SLEEP(30) on A killed by KILL QUERY from B ends within 1 s with
    1317; another user's KILL on B is refused with 1095 (the sleep goes on);
    an unknown id of A gets 1094; KILL CONNECTION and COM_PROCESS_KILL from
    B close A's client. Thread ids carry the peer id."""
    require_sqlmux_my("peer KILL")
    with Fleet(my) as fleet:
        a = connect(fleet.a)
        aid = a.thread_id()
        check_eq(aid >> 17, 1, f"A's thread id {aid} carries peer id 1")
        check(aid < 2**31, f"thread id {aid} below 2^31")
        check_eq(one(a, "SELECT CONNECTION_ID()"), aid, "CONNECTION_ID() on A")
        b = connect(fleet.b)
        check_eq(b.thread_id() >> 17, 2, f"B's thread id {b.thread_id()} carries peer id 2")
        o = connect(fleet.b, user=OTHER, password=OTHER_PW)

        th, box = in_background(lambda: one(a, "SELECT /* peer-kill-target */ SLEEP(30)"))
        wait_running(my, "peer-kill-target")
        expect_my_error(lambda: q(o, f"KILL QUERY {aid}"), 1095, f"not owner of thread {aid}",
                        "another user's KILL QUERY from B")
        expect_my_error(lambda: o.kill(aid), 1095, None, "another user's COM_PROCESS_KILL from B")
        time.sleep(0.3)
        check(th.is_alive() and running(my, "peer-kill-target"), "the refused KILLs killed the SLEEP")

        t0 = time.monotonic()
        q(b, f"KILL QUERY {aid}")
        th.join(5)
        check(not th.is_alive(), "the SLEEP(30) on A still runs after B's KILL QUERY")
        took = box["end"] - t0
        check(took < 1.0, f"the SLEEP(30) on A ended {took:.2f} s after B's KILL QUERY")
        log(f"the SLEEP(30) on A ended {took * 1000:.0f} ms after B's KILL QUERY {aid}")
        check_eq(my_errno(box.get("error")), 1317, f"the killed SLEEP's error ({box})")
        check_eq(one(a, "SELECT 'after'"), "after", "A's client after KILL QUERY")
        # An id of the instance itself is still answered there (route local).
        a_local = connect(fleet.a)
        q(a_local, f"KILL QUERY {aid}")
        check_eq(one(a, "SELECT 'still'"), "still", "A's idle client after a local KILL QUERY")
        a_local.close()

        unknown = (1 << 17) | 131000
        expect_my_error(lambda: q(b, f"KILL QUERY {unknown}"), 1094, f"Unknown thread id: {unknown}",
                        "KILL QUERY of an unknown id of A")
        check_eq(one(b, "SELECT 'b goes on'"), "b goes on", "B's client after the KILLs")

        # KILL CONNECTION from B closes A's client.
        q(b, f"KILL {aid}")
        expect_my_error(lambda: q(a, "SELECT 1"), (2013, 2006), None, "A's client after KILL from B")
        # COM_PROCESS_KILL (PyMySQL's conn.kill) from B.
        a2 = connect(fleet.a)
        b.kill(a2.thread_id())
        expect_my_error(lambda: q(a2, "SELECT 1"), (2013, 2006), None, "A's client after conn.kill from B")

        kb, ka = kills(fleet.mports[1]), kills(fleet.mports[0])
        check_eq((kb.get(("forwarded", "not_owner")), kb.get(("forwarded", "query")),
                  kb.get(("forwarded", "no_such_thread")), kb.get(("forwarded", "connection")),
                  kb.get(("forwarded", "peer_failed"))), (2.0, 1.0, 1.0, 2.0, 0.0),
                 f"B's forwarded KILLs ({kb})")
        check_eq((ka.get(("from_peer", "not_owner")), ka.get(("from_peer", "query")),
                  ka.get(("from_peer", "no_such_thread")), ka.get(("from_peer", "connection")),
                  ka.get(("from_peer", "rejected"))), (2.0, 1.0, 1.0, 2.0, 0.0),
                 f"A's KILLs from its peer ({ka})")
        check_eq(ka.get(("local", "query")), 1.0, f"A's local KILL QUERY ({ka})")
        check("from a peer (user 'other'): refused, thread of user 'app'" in fleet.a.log_text(),
              "A does not log the refused KILL with the requester's user")
        for c in (b, o):
            c.close()


def case_forged_requests(my):
    """Requests to A's peer address that a peer did not sign with the
    secret (another secret), a stale one and a replayed one: no answer, the
    SLEEP on A goes on; each is counted as rejected. A correctly signed one
    for an unknown thread is answered."""
    require_sqlmux_my("peer KILL")
    with Fleet(my) as fleet:
        a = connect(fleet.a)
        aid = a.thread_id()
        th, box = in_background(lambda: one(a, "SELECT /* peer-forged */ SLEEP(30)"))
        wait_running(my, "peer-forged")
        port = fleet.peer_ports[0]
        check_eq(send_raw(port, peer_request(aid, True, "app", "guessed-secret-0123456789")), b"",
                 "answer to a request signed with another secret")
        check_eq(send_raw(port, peer_request(aid, False, "app", "")), b"", "answer to an unsigned request")
        check_eq(send_raw(port, peer_request(aid, True, "app", SECRET, unix_time=int(time.time()) - 120)),
                 b"", "answer to a stale request")
        # A signed request for an unknown id is answered (38 bytes, "SQMK",
        # result 1) once; the same bytes again are a replay: no answer.
        valid = peer_request((1 << 17) | 131001, True, "app", SECRET)
        got = send_raw(port, valid)
        check_eq((len(got), got[:4], got[5:6]), (38, b"SQMK", b"\x01"), "answer to a signed request")
        check_eq(send_raw(port, valid), b"", "answer to a replayed request")
        time.sleep(1.0)
        check(th.is_alive() and running(my, "peer-forged"), "a forged request killed the SLEEP")
        ka = kills(fleet.mports[0])
        check_eq((ka.get(("from_peer", "rejected")), ka.get(("from_peer", "query")),
                  ka.get(("from_peer", "no_such_thread"))), (4.0, 0.0, 1.0), f"A's requests from peers ({ka})")
        log_text = fleet.a.log_text()
        for why in ("bad_mac", "stale", "replayed"):
            check(f"KILL from a peer refused: {why}" in log_text, f"no log line for the {why} request")
        my.kill(next(s["id"] for s in my.sessions() if "peer-forged" in (s["info"] or "")), query_only=True)
        th.join(5)
        a.close()


def case_no_secret(my):
    """Without server.peer_secret nothing is forwarded: B's KILL QUERY of
    A's id gets ERR 1094 and the SLEEP goes on; A refuses requests from
    peers, even well-formed ones."""
    require_sqlmux_my("peer KILL")
    with Fleet(my, secret=None) as fleet:
        a = connect(fleet.a)
        b = connect(fleet.b)
        aid = a.thread_id()
        check_eq(aid >> 17, 1, f"A's thread id {aid} carries peer id 1")
        th, box = in_background(lambda: one(a, "SELECT /* peer-nosecret */ SLEEP(30)"))
        wait_running(my, "peer-nosecret")
        expect_my_error(lambda: q(b, f"KILL QUERY {aid}"), 1094, f"Unknown thread id: {aid}",
                        "KILL QUERY of A's id from B without a peer_secret")
        check_eq(send_raw(fleet.peer_ports[0], peer_request(aid, True, "app", "")), b"",
                 "A's answer to a request without a peer_secret")
        time.sleep(0.5)
        check(th.is_alive() and running(my, "peer-nosecret"), "the SLEEP on A was killed")
        check_eq(kills(fleet.mports[1]).get(("local", "no_such_thread")), 1.0, "B's unforwarded KILL")
        check_eq(kills(fleet.mports[0]).get(("from_peer", "rejected")), 1.0, "A's refused request")
        check("server.peer_secret is not set" in fleet.b.log_text(), "B does not say why it did not forward")
        my.kill(next(s["id"] for s in my.sessions() if "peer-nosecret" in (s["info"] or "")), query_only=True)
        th.join(5)
        a.close()
        b.close()


if __name__ == "__main__":
    run_cases(__file__, [case_kill_across_instances, case_forged_requests, case_no_secret],
              server=MariaDbServer, direct=MY_DIRECT)
