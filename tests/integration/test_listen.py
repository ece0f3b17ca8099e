#!/usr/bin/python3
"""LISTEN/NOTIFY in transaction mode without pinning (issue 14): the pool's
one LISTEN connection listens to the union of its clients' channels and
fans each notification out to the clients listening on its channel.

Each client sees what a direct connection shows (SQLMUX_TEST_DIRECT=1 runs
the client side against PostgreSQL itself): LISTEN/UNLISTEN's command
tags, in and out of a block; a LISTEN whose transaction rolls back does not
take effect; a notification reaches a client inside a transaction only
after it ends; psycopg2, psycopg 3 (extended protocol) and asyncpg (its
statement cache: LISTEN as a named prepared statement) all work. Through
sqlmux the listening client is not pinned: other clients keep the pool's
connections. At scale, 200 listeners of three libraries on a pool of 5
receive every one of 10,000 notifications from 5 senders exactly once and
in order per sender, with at most 5 + 1 server connections; a LISTEN
connection killed mid-stream is reopened and the listeners get a NOTICE
that notifications may have been missed."""

import asyncio
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
import urllib.request

import asyncpg
import psycopg
import psycopg2

from harness import *

HERE = os.path.dirname(os.path.abspath(__file__))
# Sanitizer builds are several times slower: the fan-out case sends fewer.
SLOW = any(s in os.environ.get("SQLMUX_BUILD_DIR", "") for s in ("asan", "tsan"))


def p2(mux):
    c = psycopg2.connect(mux.dsn())
    c.autocommit = True
    return c


async def apg(mux):
    return await asyncpg.connect(host=mux.host, port=mux.port, user="app", password="apppass",
                                 database="appdb")


def drain(conn, want, timeout):
    """psycopg2: notifications (channel, payload) until `want` or `timeout`."""
    got = []
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        select.select([conn], [], [], 0.1)
        conn.poll()
        while conn.notifies:
            n = conn.notifies.pop(0)
            got.append((n.channel, n.payload))
    return got


def tag(cur, sql):
    cur.execute(sql)
    return cur.statusmessage


def app_server_sessions(pg):
    with pg.connect_super() as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'appdb'")
        return cur.fetchone()[0]


def case_tags_and_transactions(pg):
    """What a direct connection shows: tags, rollback, failed blocks,
    implicit transactions with an error, UNLISTEN one and *."""
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        a, b = p2(mux), p2(mux)
        ca, cb = a.cursor(), b.cursor()
        check_eq(tag(ca, "LISTEN jobs"), "LISTEN", "LISTEN's tag")
        check_eq(tag(ca, "LISTEN jobs"), "LISTEN", "LISTEN twice")
        cb.execute("NOTIFY jobs, 'one'")
        cb.execute("SELECT pg_notify('jobs', 'two')")
        check_eq(drain(a, 2, 5), [("jobs", "one"), ("jobs", "two")], "notifications after LISTEN")

        ca.execute("BEGIN")
        check_eq(tag(ca, "LISTEN rolled"), "LISTEN", "LISTEN's tag in a block")
        ca.execute("ROLLBACK")
        ca.execute("BEGIN")
        ca.execute("LISTEN failed")
        try:
            ca.execute("SELECT 1/0")
        except psycopg2.Error:
            pass
        check_eq(tag(ca, "COMMIT"), "ROLLBACK", "COMMIT of a failed block")
        try:
            ca.execute("LISTEN implicit; SELECT 1/0")
        except psycopg2.Error:
            pass
        ca.execute("BEGIN")
        ca.execute("LISTEN committed")
        ca.execute("COMMIT")
        for ch in ("rolled", "failed", "implicit", "committed"):
            cb.execute(f"NOTIFY {ch}, '{ch}'")
        check_eq(drain(a, 2, 2), [("committed", "committed")], "only the committed LISTEN took effect")

        check_eq(tag(ca, "UNLISTEN committed"), "UNLISTEN", "UNLISTEN's tag")
        cb.execute("NOTIFY committed, 'x'; NOTIFY jobs, 'three'")
        check_eq(drain(a, 2, 2), [("jobs", "three")], "after UNLISTEN of one channel")
        check_eq(tag(ca, "UNLISTEN *"), "UNLISTEN", "UNLISTEN *'s tag")
        cb.execute("NOTIFY jobs, 'four'")
        check_eq(drain(a, 1, 1), [], "after UNLISTEN *")
        # Quoted and case-folded names, as the server names channels.
        ca.execute('LISTEN "MiXed"; LISTEN Folded')
        cb.execute("""NOTIFY "MiXed", 'm'; NOTIFY folded, 'f'""")
        check_eq(sorted(drain(a, 2, 3)), [("MiXed", "m"), ("folded", "f")], "quoted and folded channels")
        a.close()
        b.close()


def case_listen_in_do_block(pg):
    """A LISTEN sqlmux cannot read (dynamic SQL in a DO block, simple and
    extended protocol): the server says which channels the connection
    listens on after the transaction, and the client gets their
    notifications as on a direct connection."""
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        a, b = p2(mux), p2(mux)
        a.cursor().execute("DO $$ BEGIN EXECUTE 'LISTEN dyn1'; END $$")
        b.cursor().execute("NOTIFY dyn1, 'one'")
        check_eq(drain(a, 1, 5), [("dyn1", "one")], "after LISTEN in a DO block (simple query)")
        with psycopg.connect(mux.dsn(), autocommit=True) as c:
            seen = []
            c.add_notify_handler(lambda n: seen.append((n.channel, n.payload)))
            c.execute("DO $$ BEGIN PERFORM 1; EXECUTE 'LISTEN dyn2'; END $$")  # extended protocol
            b.cursor().execute("NOTIFY dyn2, 'two'")
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                c.execute("SELECT 1")  # lets psycopg read what arrived
                time.sleep(0.05)
            check_eq(seen, [("dyn2", "two")], "after LISTEN in a DO block (extended protocol)")
        a.close()
        b.close()


def case_held_until_transaction_ends(pg):
    """A notification for a client inside a transaction arrives after it
    ends, as from PostgreSQL."""
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        a, b = p2(mux), p2(mux)
        ca, cb = a.cursor(), b.cursor()
        ca.execute("LISTEN held")
        ca.execute("BEGIN")
        ca.execute("SELECT 1")
        cb.execute("NOTIFY held, 'during'")
        time.sleep(0.3)
        ca.execute("SELECT 2")
        a.poll()
        check_eq([n.payload for n in a.notifies], [], "no notification inside the transaction")
        ca.execute("COMMIT")
        check_eq(drain(a, 1, 3), [("held", "during")], "the notification after COMMIT")
        a.close()
        b.close()


def case_libraries_and_not_pinned(pg):
    """psycopg 3 (extended protocol) and asyncpg (LISTEN as a cached named
    statement) through a pool of 2; the listening clients do not hold
    server connections: two other clients can both be inside transactions."""

    async def body(mux):
        got = asyncio.Queue()
        c = await apg(mux)
        await c.add_listener("apg", lambda conn, pid, ch, payload: got.put_nowait(("asyncpg", payload)))
        await c.add_listener("shared", lambda conn, pid, ch, payload: got.put_nowait(("asyncpg", payload)))
        d = await psycopg.AsyncConnection.connect(mux.dsn(), autocommit=True)
        cur = await d.execute("LISTEN shared")
        check_eq(cur.statusmessage, "LISTEN", "psycopg 3's LISTEN tag")
        dn = d.notifies()

        if not mux.direct:
            # Both of the pool's connections inside other clients' transactions.
            x, y = await apg(mux), await apg(mux)
            tx, ty = x.transaction(), y.transaction()
            await asyncio.wait_for(tx.start(), 5)
            await asyncio.wait_for(ty.start(), 5)
            check(app_server_sessions(mux.pg) <= 3, "more server connections than the pool's 2 + 1")
            await tx.rollback()
            await ty.rollback()
            await x.close()
            await y.close()

        s = await apg(mux)
        await s.execute("NOTIFY apg, 'a1'")
        await s.execute("SELECT pg_notify('shared', 'b1')")
        seen = sorted([await asyncio.wait_for(got.get(), 5), await asyncio.wait_for(got.get(), 5)])
        check_eq(seen, [("asyncpg", "a1"), ("asyncpg", "b1")], "asyncpg's notifications")
        n = await asyncio.wait_for(dn.__anext__(), 5)
        check_eq((n.channel, n.payload), ("shared", "b1"), "psycopg 3's notification")
        # asyncpg's queries keep working on the shared pool.
        check_eq(await c.fetchval("SELECT $1::int + 1", 41), 42, "asyncpg query while listening")
        await c.execute("UNLISTEN apg")
        await s.execute("NOTIFY apg, 'a2'")
        await s.execute("NOTIFY shared, 'b2'")
        check_eq(await asyncio.wait_for(got.get(), 5), ("asyncpg", "b2"), "after UNLISTEN apg")
        await c.close()
        await d.close()
        await s.close()

    with Sqlmux(pg, mode="transaction", size=2) as mux:
        asyncio.run(body(mux))


def _metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^" + name + r"\{[^}]*\} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def _start_listeners(mux, per_kind, channel, total, timeout):
    procs = []
    for kind, n in per_kind.items():
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "listen_client.py"), kind, str(n), mux.host,
                              str(mux.port), channel, str(total), str(timeout)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((kind, p))
    for kind, p in procs:
        line = p.stdout.readline()
        if line.strip() != "READY":
            p.kill()
            fail(f"{kind} listeners did not start: {line!r} {p.stderr.read()[-2000:]}")
    return procs


def _results(procs, timeout):
    out = {}
    for kind, p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            fail(f"{kind} listeners still running")
        lines = [l for l in stdout.splitlines() if l.startswith("{")]
        check(p.returncode == 0 and lines, f"{kind} listeners failed: {stderr[-2000:]}")
        out[kind] = json.loads(lines[-1])["conns"]
    return out


def case_fanout_200_listeners(pg):
    """200 listeners (asyncpg, psycopg 3, psycopg2) on a pool of 5 receive
    every one of 10,000 notifications from 5 senders exactly once, in order
    per sender; at most 5 + 1 server connections; queries keep running."""
    senders, per_sender = 5, (400 if SLOW else 2000)
    total = senders * per_sender
    port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}

    with Sqlmux(pg, mode="transaction", size=5, tweak=tweak) as mux:
        procs = _start_listeners(mux, {"asyncpg": 80, "psycopg": 60, "psycopg2": 60}, "fan", total, 150)
        stop = threading.Event()
        peak = [0]
        queries = [0]
        errors = []

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], app_server_sessions(pg))
                time.sleep(0.2)

        def query_client():
            try:
                with psycopg.connect(mux.dsn(), autocommit=True) as c:
                    while not stop.is_set():
                        check_eq(c.execute("SELECT 7").fetchone(), (7,), "a query during the fan-out")
                        queries[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"query client: {e}")

        def sender(i):
            try:
                with psycopg.connect(mux.dsn(), autocommit=True) as c:
                    for seq in range(per_sender):
                        c.execute("SELECT pg_notify('fan', %s)", (f"s{i}:{seq}",))
            except Exception as e:  # noqa: BLE001
                errors.append(f"sender {i}: {e}")

        threads = [threading.Thread(target=watch, daemon=True), threading.Thread(target=query_client, daemon=True)]
        threads += [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(senders)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads[2:]:
            t.join(120)
        results = _results(procs, 170)
        elapsed = time.monotonic() - t0
        stop.set()
        for t in threads[:2]:
            t.join(10)
        check(not errors, f"errors: {errors[:3]}")
        bad = []
        for kind, conns in results.items():
            for i, c in enumerate(conns):
                if c["count"] != total or c["dups"] or c["disorder"]:
                    bad.append((kind, i, c))
        log(f"fan-out: 200 listeners x {total} notifications in {elapsed:.1f}s; "
            f"{queries[0]} queries meanwhile; peak server sessions {peak[0]}")
        check(not bad, f"{len(bad)} listeners missed, repeated or reordered notifications: {bad[:3]}")
        check(queries[0] > 0, "no query ran during the fan-out")
        if mux.direct:
            return  # (a direct connection per listener: 200 server sessions)
        check(peak[0] <= 6, f"peak server sessions {peak[0]} > 5 + 1")
        delivered = _metric(port, "sqlmux_notifications_delivered_total")
        check(delivered is not None and delivered >= 200 * total,
              f"sqlmux_notifications_delivered_total {delivered} < {200 * total}")


def case_listen_connection_killed(pg):
    """The LISTEN connection killed mid-stream: reopened and re-LISTENed;
    each listener gets a NOTICE that notifications may have been missed,
    and later notifications arrive; a metric counts the loss."""
    require_sqlmux("the pool's LISTEN connection")
    port = free_port()

    def tweak(cfg):
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        a = p2(mux)
        a.cursor().execute("LISTEN k")

        async def body():
            notices = asyncio.Queue()
            got = asyncio.Queue()
            c = await apg(mux)
            c.add_log_listener(lambda conn, msg: notices.put_nowait(str(msg)))
            await c.add_listener("k", lambda conn, pid, ch, payload: got.put_nowait(payload))
            d = await psycopg.AsyncConnection.connect(mux.dsn(), autocommit=True)
            d_notices = []
            d.add_notice_handler(lambda diag: d_notices.append(diag.message_primary))
            await d.execute("LISTEN k")
            s = await apg(mux)
            await s.execute("NOTIFY k, 'before'")
            check_eq(await asyncio.wait_for(got.get(), 5), "before", "before the kill")
            # Mid-stream: a sender notifies every 5 ms while the connection is killed.
            sending = True

            async def stream():
                seq = 0
                while sending:
                    await s.execute(f"NOTIFY k, 's:{seq}'")
                    seq += 1
                    await asyncio.sleep(0.005)

            sender = asyncio.ensure_future(stream())
            await asyncio.sleep(0.3)
            with pg.connect_super() as sc, sc.cursor() as cur:
                cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'sqlmux listen'")
                pids = [r[0] for r in cur.fetchall()]
            check_eq(len(pids), 1, "one LISTEN connection")
            pg.terminate_backend(pids[0])
            note = await asyncio.wait_for(notices.get(), 10)
            check("may have been missed" in note, f"asyncpg's NOTICE: {note}")
            # Reopened: the stream flows again, in order, nothing twice.
            before = got.qsize()
            await asyncio.sleep(0.5)
            sending = False
            await sender
            received = []
            while not got.empty():
                received.append(got.get_nowait())
            seqs = [int(p.split(":")[1]) for p in received if p.startswith("s:")]
            check(len(seqs) > before, f"no notification after the reopening ({len(seqs)} in all)")
            check_eq(seqs, sorted(set(seqs)), "notifications in order, none twice")
            with pg.connect_super() as sc, sc.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sqlmux listen'")
                check_eq(cur.fetchone()[0], 1, "one LISTEN connection after the reopening")
            await d.execute("SELECT 1")  # lets psycopg read what arrived
            check(any("may have been missed" in n for n in d_notices), f"psycopg 3's notices: {d_notices}")
            for x in (c, d, s):
                await x.close()

        asyncio.run(body())
        a.poll()
        check(any("may have been missed" in n for n in a.notices), f"psycopg2's notices: {a.notices}")
        check("LISTEN connection lost" in mux.log_text(), "no log line for the lost LISTEN connection")
        check((_metric(port, "sqlmux_listen_connection_losses_total") or 0) >= 1,
              "sqlmux_listen_connection_losses_total")
        a.close()


def case_listen_pin_option(pg):
    """listen_pin = true: the old way, a listening client holds its server
    connection (SHOW CLIENTS pinned 'listen') and still gets notifications."""
    require_sqlmux("listen_pin")
    admin_port = free_port()

    def tweak(cfg):
        cfg["pool"][0]["listen_pin"] = True
        cfg["user"].append({"name": "admin", "password": "adminpass"})
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "users": ["admin"]}

    with Sqlmux(pg, mode="transaction", size=2, tweak=tweak) as mux:
        a, b = p2(mux), p2(mux)
        a.cursor().execute("LISTEN pinned")
        with psycopg.connect(f"host=127.0.0.1 port={admin_port} dbname=sqlmux user=admin password=adminpass",
                             autocommit=True) as con:
            cur = con.execute("SHOW CLIENTS")
            cols = [d.name for d in cur.description]
            pins = [dict(zip(cols, r))["pinned"] for r in cur.fetchall() if dict(zip(cols, r))["user"] == "app"]
        check("listen" in pins, f"SHOW CLIENTS pinned: {pins}")
        b.cursor().execute("NOTIFY pinned, 'p'")
        check_eq(drain(a, 1, 5), [("pinned", "p")], "notification to a pinned listener")
        check("sqlmux listen" not in str(pg.psql("SELECT application_name FROM pg_stat_activity")),
              "a LISTEN connection with listen_pin = true")
        a.close()
        b.close()


if __name__ == "__main__":
    run_cases(__file__, [case_tags_and_transactions, case_listen_in_do_block, case_held_until_transaction_ends,
                         case_libraries_and_not_pinned, case_fanout_200_listeners,
                         case_listen_connection_killed, case_listen_pin_option], timeout=300)
