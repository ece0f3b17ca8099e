#!/usr/bin/python3
"""MySQL KILL in transaction mode (issue 16): every client sees a thread id
of sqlmux's own, in the handshake and from `SELECT CONNECTION_ID()`, and
sqlmux answers `KILL [QUERY|CONNECTION] <id>` and COM_PROCESS_KILL itself:
the statement of the client that owns the id is killed on whatever server
connection runs it (KILL QUERY on a connection of sqlmux's own to that
server), nobody else's; another user's id is refused with 1095, an unknown
one with 1094. Before, the ids were the shared server connection's and KILL
was relayed to it.

SQLMUX_MY_DIRECT=1 runs the parity cases against MariaDB itself."""

import threading
import time

import MySQLdb

from harness import *
from mysql_harness import *

LOST = (2013, 2006)
OTHER, OTHER_PW = "other", "otherpass"


def connect(mux, **kw):
    kw.setdefault("read_timeout", 40)
    kw.setdefault("write_timeout", 40)
    kw.setdefault("autocommit", True)
    return mux.my_connect(**kw)


def add_other_user(cfg):
    cfg["user"].append({"name": OTHER, "password": OTHER_PW, "default_pool": "appdb"})


def kills_counted(metrics_port) -> dict:
    """sqlmux_client_kills_total{route="local"} by outcome, from /metrics."""
    import re
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^sqlmux_client_kills_total\{result="(\w+)",route="local"\} (\S+)$', text, re.M)}


def setup_other(my):
    # The same user on MariaDB for the direct runs: no PROCESS / SUPER, so
    # it may not kill app's threads.
    my.sql_many([f"CREATE USER IF NOT EXISTS '{OTHER}'@'%' IDENTIFIED BY '{OTHER_PW}'",
                 f"CREATE USER IF NOT EXISTS '{OTHER}'@'127.0.0.1' IDENTIFIED BY '{OTHER_PW}'",
                 f"GRANT ALL ON appdb.* TO '{OTHER}'@'%'", f"GRANT ALL ON appdb.* TO '{OTHER}'@'127.0.0.1'"])


def in_background(fn):
    """Runs fn() in a thread; returns (thread, box) where box gets 'result'
    or 'error' and 'elapsed'."""
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["result"] = fn()
        except Exception as e:  # noqa: BLE001
            box["error"] = e
        box["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def wait_running(my, marker, timeout=5.0):
    """Waits until a server session runs a statement containing marker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(marker in (s["info"] or "") for s in my.sessions()):
            return
        time.sleep(0.02)
    fail(f"no server session runs {marker!r}")


def running(my, marker) -> bool:
    return any(marker in (s["info"] or "") for s in my.sessions())


def case_connection_id(my):
    """Two clients sharing one server connection (transaction pool of 1)
    each see a distinct CONNECTION_ID() equal to their handshake thread id,
    with or without an alias, and the column named as the server names it."""
    with Sqlmux(None, my=my, mode="transaction", size=1) as mux:
        a, b = connect(mux), connect(mux)
        ids = []
        for name, c in (("A", a), ("B", b)):
            tid = c.thread_id()
            check(tid != 0, f"{name}: handshake thread id 0")
            check_eq(one(c, "SELECT CONNECTION_ID()"), tid, f"{name}: CONNECTION_ID()")
            check_eq(one(c, "select /* id */ connection_id()  AS cid ;"), tid, f"{name}: with an alias")
            with c.cursor() as cur:
                cur.execute("SELECT CONNECTION_ID()")
                check_eq(cur.description[0][0], "CONNECTION_ID()", f"{name}: column name")
                cur.execute("SELECT CONNECTION_ID() `my id`")
                check_eq(cur.description[0][0], "my id", f"{name}: quoted alias")
                check_eq(cur.fetchall()[0][0], tid, f"{name}: quoted alias value")
            ids.append(tid)
        check(ids[0] != ids[1], f"both clients see thread id {ids[0]}")
        if not mux.direct:
            check_eq(my.app_sessions(), 1, "server connections behind the two clients")
        a.close()
        b.close()


def case_kill_refused(my):
    """KILL QUERY / KILL / COM_PROCESS_KILL of another user's thread id is
    refused with 1095, an unknown id with 1094; the target is untouched."""
    setup_other(my)
    metrics_port = free_port()

    def tweak(cfg):
        add_other_user(cfg)
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}

    with Sqlmux(None, my=my, mode="transaction", size=1, tweak=tweak) as mux:
        b = connect(mux)
        a = connect(mux, user=OTHER, password=OTHER_PW)
        bid = b.thread_id()
        expect_my_error(lambda: q(a, f"KILL QUERY {bid}"), 1095, f"not owner of thread {bid}",
                        "KILL QUERY of another user's thread")
        expect_my_error(lambda: q(a, f"KILL {bid}"), 1095, f"not owner of thread {bid}",
                        "KILL of another user's thread")
        expect_my_error(lambda: a.kill(bid), 1095, None, "COM_PROCESS_KILL of another user's thread")
        expect_my_error(lambda: q(b, "KILL QUERY 4000000000"), 1094, "Unknown thread id: 4000000000",
                        "KILL QUERY of an unknown id")
        check_eq(one(b, "SELECT 'still here'"), "still here", "the target after the refused KILLs")
        check_eq(one(a, "SELECT 'me too'"), "me too", "the refused client")
        if not mux.direct:
            log_text = mux.log_text()
            check(f"KILL QUERY {bid}" in log_text and "127.0.0.1" in log_text,
                  "the KILL is not logged with the client's address")
            got = kills_counted(metrics_port)
            check_eq((got.get("not_owner"), got.get("no_such_thread"), got.get("query")), (3.0, 1.0, 0.0),
                     f"sqlmux_client_kills_total by outcome ({got})")
        a.close()
        b.close()


def case_kill_query_own_user(my):
    """A second connection of the same user kills the first's SLEEP(30)
    within 1 s (it gets what MariaDB gives a killed SLEEP: 1317); a third client's
    SLEEP(2) on another server connection completes normally."""
    with Sqlmux(None, my=my, mode="transaction", size=2) as mux:
        s, k, t = connect(mux), connect(mux), connect(mux)
        sid = s.thread_id()
        th_t, box_t = in_background(lambda: one(t, "SELECT /* kill-bystander */ SLEEP(2)"))
        th_s, box_s = in_background(lambda: one(s, "SELECT /* kill-target */ SLEEP(30)"))
        wait_running(my, "kill-target")
        wait_running(my, "kill-bystander")
        t0 = time.monotonic()
        q(k, f"KILL QUERY {sid}")
        th_s.join(5)
        took = time.monotonic() - t0
        check(not th_s.is_alive(), "the killed SLEEP(30) still runs")
        check(took < 1.0, f"the killed SLEEP(30) ended after {took:.2f} s")
        # MariaDB 10.11 itself: a SLEEP killed by KILL QUERY fails with 1317.
        check_eq(my_errno(box_s.get("error")), 1317, f"the killed SLEEP's error ({box_s})")
        th_t.join(10)
        check_eq(box_t.get("result"), 0, f"the bystander's SLEEP(2) ({box_t})")
        check(box_t["elapsed"] >= 1.9, f"the bystander's SLEEP(2) ended after {box_t['elapsed']:.2f} s")
        # The killed client goes on.
        check_eq(one(s, "SELECT 'after'"), "after", "the killed client's next statement")
        for c in (s, k, t):
            c.close()


def case_client_library_kill(my):
    """PyMySQL's and mysqlclient's conn.kill(id) (COM_PROCESS_KILL) close the
    target's connection; mysqlclient's thread_id() is its CONNECTION_ID()."""
    with Sqlmux(None, my=my, mode="transaction", size=1) as mux:
        k = connect(mux)
        s = connect(mux)
        k.kill(s.thread_id())
        expect_my_error(lambda: q(s, "SELECT 1"), LOST, None, "PyMySQL: the killed connection")
        m = MySQLdb.connect(host=mux.host, port=mux.my_port, user="app", passwd="apppass", db="appdb",
                            connect_timeout=10, autocommit=True)
        m2 = MySQLdb.connect(host=mux.host, port=mux.my_port, user="app", passwd="apppass", db="appdb",
                             connect_timeout=10, autocommit=True)
        check_eq(one(m2, "SELECT CONNECTION_ID()"), m2.thread_id(), "mysqlclient: CONNECTION_ID()")
        m.kill(m2.thread_id())
        expect_my_error(lambda: q(m2, "SELECT 1"), LOST, None, "mysqlclient: the killed connection")
        check_eq(one(m, "SELECT 'fine'"), "fine", "the killer goes on")
        m.close()
        k.close()


def case_kill_connection_in_flight(my):
    """KILL CONNECTION of a client running SLEEP(30): the client is closed at
    once and its statement ends on the server, whose connection serves the
    next client."""
    with Sqlmux(None, my=my, mode="transaction", size=1) as mux:
        s, k = connect(mux), connect(mux)
        th, box = in_background(lambda: one(s, "SELECT /* kill-conn */ SLEEP(30)"))
        wait_running(my, "kill-conn")
        t0 = time.monotonic()
        q(k, f"KILL CONNECTION {s.thread_id()}")
        th.join(5)
        check(not th.is_alive(), "the killed client's SLEEP(30) still waits")
        check(time.monotonic() - t0 < 1.0, "the killed client was not closed within 1 s")
        check(my_errno(box.get("error")) in LOST + (1927,), f"the killed client got {box}")
        deadline = time.monotonic() + 1.0
        while running(my, "kill-conn") and time.monotonic() < deadline:
            time.sleep(0.02)
        check(not running(my, "kill-conn"), "the statement still runs on the server")
        check_eq(one(k, "SELECT 'next'"), "next", "the next client on the server connection")
        k.close()


def case_kill_self(my):
    """A client's KILL QUERY of its own id interrupts the KILL itself (1317);
    KILL of its own id ends its connection (1927, or lost)."""
    with Sqlmux(None, my=my, mode="transaction", size=1) as mux:
        c = connect(mux)
        expect_my_error(lambda: q(c, f"KILL QUERY {c.thread_id()}"), 1317, None, "KILL QUERY of its own id")
        check_eq(one(c, "SELECT 'alive'"), "alive", "after KILL QUERY of its own id")
        expect_my_error(lambda: q(c, f"KILL {c.thread_id()}"), LOST + (1927,), None, "KILL of its own id")
        expect_my_error(lambda: q(c, "SELECT 1"), LOST, None, "after KILL of its own id")


if __name__ == "__main__":
    run_cases(__file__, [case_connection_id, case_kill_refused, case_kill_query_own_user,
                         case_client_library_kill, case_kill_connection_in_flight, case_kill_self],
              timeout=90, server=MariaDbServer, direct=MY_DIRECT)
