#!/usr/bin/python3
"""Pool-mode behaviour through sqlmux: session, transaction and statement
modes, CancelRequest, a backend killed mid-transaction, a client vanishing
mid-transaction, session parameters following clients across backends,
large values and COPY, the extended protocol with unnamed statements,
notices and notifications."""

import hashlib
import io
import os
import select
import threading
import time

import psycopg
import psycopg2
import psycopg2.extensions

from harness import *


def setup(pg):
    pg.psql("CREATE TABLE modes_t(id serial PRIMARY KEY, marker text, v int);"
            "ALTER TABLE modes_t OWNER TO app;"
            "CREATE SCHEMA s_a AUTHORIZATION app; CREATE SCHEMA s_b AUTHORIZATION app;"
            "CREATE TABLE s_a.who(v text); INSERT INTO s_a.who VALUES ('schema a');"
            "CREATE TABLE s_b.who(v text); INSERT INTO s_b.who VALUES ('schema b');"
            "ALTER TABLE s_a.who OWNER TO app; ALTER TABLE s_b.who OWNER TO app;", db="appdb")


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


# ---------------------------------------------------------------------------
# Pool modes
# ---------------------------------------------------------------------------


def case_session_mode(pg):
    with Sqlmux(pg, mode="session", size=2) as mux:
        a = mux.connect()
        b = mux.connect()
        pid_a = one(a, "SELECT pg_backend_pid()")
        a.commit()
        one(a, "SELECT set_config('sqlmux.who', 'client a', false)")
        a.commit()
        with a.cursor() as cur:
            cur.execute("CREATE TEMP TABLE session_tmp(x int); INSERT INTO session_tmp VALUES (1)")
        a.commit()
        with a.cursor() as cur:
            cur.execute("PREPARE sess_stmt(int) AS SELECT $1 * 10")
        a.commit()
        for i in range(5):
            one(b, "SELECT 1")  # interleave another client
            b.commit()
            check_eq(one(a, "SELECT pg_backend_pid()"), pid_a, f"session mode: backend pid in transaction {i}")
            check_eq(one(a, "SELECT current_setting('sqlmux.who')"), "client a", "session variable")
            check_eq(one(a, "SELECT count(*) FROM session_tmp"), 1, "temp table")
            check_eq(one(a, "EXECUTE sess_stmt(4)"), 40, "prepared statement")
            a.commit()
        check(one(b, "SELECT pg_backend_pid()") != pid_a, "two session clients share one backend")
        b.commit()
        a.close()
        b.close()
        mux.assert_serving()


def case_session_state_does_not_leak(pg):
    """A session-mode backend handed to the next client carries nothing of
    the previous client's session state."""
    require_sqlmux("backend reuse between sessions")
    with Sqlmux(pg, mode="session", size=1) as mux:
        a = mux.raw()
        pid = a.scalar("SELECT pg_backend_pid()")
        a.query_ok("SELECT set_config('sqlmux.leak', 'leaked', false)")
        a.query_ok("CREATE TEMP TABLE leak_tmp(x int)")
        a.query_ok("PREPARE leak_stmt AS SELECT 1")
        a.query_ok("SET statement_timeout = '123s'")
        a.query_ok("LISTEN leak_channel")
        a.terminate()
        time.sleep(0.2)
        b = mux.raw()
        r = b.query_ok("SELECT pg_backend_pid(), current_setting('sqlmux.leak', true), "
                       "(SELECT count(*) FROM pg_prepared_statements), to_regclass('pg_temp.leak_tmp') IS NULL, "
                       "current_setting('statement_timeout'), (SELECT count(*) FROM pg_listening_channels())")
        row = r.rows[0]
        log(f"session reuse: first pid {pid}, second pid {row[0]}")
        check(row[1] in (None, ""), f"session variable leaked to the next client: {row[1]!r}")
        check_eq(row[2], "0", "prepared statements left for the next client")
        check_eq(row[3], "t", "temp table leaked to the next client")
        check_eq(row[4], "0", "statement_timeout leaked to the next client")
        check_eq(row[5], "0", "LISTEN leaked to the next client")
        b.terminate()
        mux.assert_serving()


def case_transaction_mode_alternating(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        a = mux.connect()
        b = mux.connect()
        pids = set()
        for i in range(10):
            for name, c in (("a", a), ("b", b)):
                with c.cursor() as cur:
                    cur.execute("INSERT INTO modes_t(marker, v) VALUES (%s, %s) RETURNING pg_backend_pid()",
                                (f"alt-{name}", i))
                    p1 = cur.fetchone()[0]
                    cur.execute("SELECT pg_backend_pid(), txid_current_if_assigned() IS NOT NULL")
                    p2, in_tx = cur.fetchone()
                    check_eq(p2, p1, f"client {name}: backend changed inside a transaction")
                    check(in_tx, f"client {name}: lost its transaction between statements")
                    pids.add(p1)
                c.commit()
        for name, c in (("a", a), ("b", b)):
            check_eq(one(c, "SELECT count(*) FROM modes_t WHERE marker = %s", (f"alt-{name}",)), 10,
                     f"client {name}: committed rows")
            c.commit()
        if not DIRECT:
            check_eq(len(pids), 1, "pool of size 1: backends used")
        # While a holds a transaction open, b waits and then proceeds.
        if not DIRECT:
            one(a, "SELECT 1")  # a is now inside a transaction (psycopg2 BEGINs implicitly)
            done = {}

            def run_b():
                t0 = time.monotonic()
                done["v"] = one(b, "SELECT 'b ran'")
                done["t"] = time.monotonic() - t0
                b.commit()

            th = threading.Thread(target=run_b)
            th.start()
            time.sleep(1.0)
            check("v" not in done, "b ran while a held the only backend in a transaction")
            a.commit()
            th.join(10)
            check_eq(done.get("v"), "b ran", "b after a committed")
            check(done["t"] >= 0.9, f"b waited only {done['t']:.2f}s")
        a.close()
        b.close()
        mux.assert_serving()


def case_statement_mode(pg):
    require_sqlmux("statement mode")
    with Sqlmux(pg, mode="statement", size=1) as mux:
        c = mux.connect(autocommit=True)
        for i in range(5):
            check_eq(one(c, "SELECT %s::int + 1", (i,)), i + 1, "single statement in statement mode")
        with c.cursor() as cur:
            cur.execute("INSERT INTO modes_t(marker, v) VALUES ('stmt', 1)")
        check_eq(one(c, "SELECT count(*) FROM modes_t WHERE marker = 'stmt'"), 1, "autocommit insert")
        c.close()
        # A transaction block is refused with SQLSTATE 25000 naming statement mode.
        r = mux.raw()
        res = None
        try:
            res = r.query("BEGIN")
            err = res.error
        except ConnectionClosed:
            err = r.last_result.error
        check(err is not None, f"BEGIN in statement mode: no error (status {res and res.status})")
        check_eq(err.get("C"), "25000", f"BEGIN in statement mode: SQLSTATE ({err.get('M')!r})")
        check("statement" in err.get("M", "").lower(), f"BEGIN in statement mode: message {err.get('M')!r}")
        r.close()
        # psycopg2 outside autocommit issues BEGIN itself.
        c = mux.connect()
        e = expect_error(lambda: one(c, "SELECT 1"), "25000", "statement", what="psycopg2 implicit BEGIN")
        c.close()
        mux.assert_serving()
        # A multi-statement transaction in one query string must not commit
        # half of its work either: either it runs whole or it is refused.
        r = mux.raw()
        try:
            res = r.query("BEGIN; INSERT INTO modes_t(marker, v) VALUES ('stmt-multi', 1); "
                          "INSERT INTO modes_t(marker, v) VALUES ('stmt-multi', 2); COMMIT")
        except ConnectionClosed:
            res = r.last_result
        r.close()
        n = int(pg.psql("SELECT count(*) FROM modes_t WHERE marker = 'stmt-multi'", db="appdb").strip())
        check(n in (0, 2), f"multi-statement transaction in statement mode left {n} of 2 rows")
        mux.assert_serving()


# ---------------------------------------------------------------------------
# Cancel
# ---------------------------------------------------------------------------


def _cancel_once(mux, conn, other_dsn):
    """conn runs pg_sleep(30); another thread cancels it; a parallel client's
    shorter sleep must not be cancelled."""
    other = psycopg2.connect(other_dsn)
    other.autocommit = True
    other_res = {}

    def other_sleep():
        try:
            other_res["v"] = one(other, "SELECT pg_sleep(2)::text || 'other done'")
        except Exception as e:  # noqa: BLE001
            other_res["e"] = e

    ot = threading.Thread(target=other_sleep)
    ot.start()
    time.sleep(0.2)
    timer = threading.Timer(0.7, conn.cancel)
    timer.start()
    t0 = time.monotonic()
    try:
        e = expect_error(lambda: one(conn, "SELECT pg_sleep(30)"), "57014", "canceling statement due to user request",
                         what="cancelled pg_sleep(30)")
    finally:
        timer.cancel()
    el = time.monotonic() - t0
    check(el < 5, f"cancel took {el:.1f}s")
    ot.join(15)
    check("e" not in other_res, f"the other client's query failed: {other_res.get('e')}")
    check_eq(other_res.get("v"), "other done", "the other client's query")
    other.close()


def case_cancel(pg):
    for mode in ("session", "transaction"):
        with Sqlmux(pg, mode=mode, size=2) as mux:
            # autocommit
            c = mux.connect(autocommit=True)
            _cancel_once(mux, c, mux.dsn())
            check_eq(one(c, "SELECT 'usable'"), "usable", f"{mode}: connection after cancel")
            # inside an explicit transaction: aborted, then ROLLBACK
            c.autocommit = False
            one(c, "SELECT 1")
            _cancel_once(mux, c, mux.dsn())
            expect_error(lambda: one(c, "SELECT 1"), "25P02", what=f"{mode}: statement in the cancelled transaction")
            c.rollback()
            check_eq(one(c, "SELECT 'usable again'"), "usable again", f"{mode}: after rollback")
            c.rollback()
            c.close()
            time.sleep(0.3)
            left = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                           "AND state = 'active'").strip()
            check_eq(left, "0", f"{mode}: pg_sleep(30) still running on PostgreSQL")
            mux.assert_serving()


def case_cancel_raw_idle_and_after(pg):
    """A CancelRequest for an idle client is harmless; the key stays valid
    for later queries, which may run on another backend in transaction mode."""
    with Sqlmux(pg, mode="transaction", size=3) as mux:
        a = mux.raw()
        send_cancel(mux.host, mux.port, a.backend_pid, a.backend_key)  # nothing running
        time.sleep(0.2)
        check_eq(a.scalar("SELECT 'idle cancel harmless'"), "idle cancel harmless", "after an idle cancel")
        holders = [mux.raw() for _ in range(2)]
        for h in holders:
            h.query_ok("BEGIN")
            h.query_ok("SELECT 1")
        a.send_msg(b"Q", b"SELECT pg_sleep(30)\0")
        time.sleep(0.5)
        t0 = time.monotonic()
        send_cancel(mux.host, mux.port, a.backend_pid, a.backend_key)
        res = a.read_result(10)
        check_eq(res.sqlstate, "57014", f"raw cancel: {res.error}")
        check(time.monotonic() - t0 < 5, "raw cancel too slow")
        for h in holders:
            check_eq(h.scalar("SELECT 'holder fine'"), "holder fine", "holder after someone else's cancel")
            h.query_ok("COMMIT")
            h.terminate()
        check_eq(a.scalar("SELECT 'after'"), "after", "cancelled client afterwards")
        a.terminate()
        mux.assert_serving()


# ---------------------------------------------------------------------------
# Backend killed / client vanishing
# ---------------------------------------------------------------------------


def _terminate(pg, pid):
    with pg.connect_super() as s, s.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (int(pid),))
        check(cur.fetchone()[0], f"pg_terminate_backend({pid}) returned false")


def _error_after_kill(r: RawPg):
    """What a client sees after its backend was killed: read anything
    already pushed to it, else send a query and read the answer."""
    time.sleep(0.5)
    rl, _, _ = select.select([r.sock], [], [], 0)
    if not rl:
        try:
            r.send_msg(b"Q", b"SELECT 'still alive?'\0")
        except OSError:
            pass
    return r.read_until_error_or_eof(10)


def case_backend_killed(pg):
    for mode in ("transaction", "session"):
        with Sqlmux(pg, mode=mode, size=2) as mux:
            r = mux.raw()
            r.query_ok("BEGIN")
            r.query_ok("INSERT INTO modes_t(marker, v) VALUES ('killed', 1)")
            pid = r.scalar("SELECT pg_backend_pid()")
            _terminate(pg, pid)
            err, closed = _error_after_kill(r)
            check(err is not None, f"{mode}: no ErrorResponse after the backend was killed (closed={closed})")
            check(err.get("C") in ("08006", "57P01"), f"{mode}: SQLSTATE {err.get('C')} ({err.get('M')!r})")
            check(closed, f"{mode}: client connection not closed after its backend died")
            r.close()
            mux.assert_serving(what=f"{mode}: a new client right after the backend was killed")
            # psycopg2's view: an error and a closed connection
            c = mux.connect()
            one(c, "SELECT 1")
            _terminate(pg, one(c, "SELECT pg_backend_pid()"))
            time.sleep(0.5)
            try:
                one(c, "SELECT 1")
                fail(f"{mode}: psycopg2 query on a killed backend succeeded")
            except psycopg2.Error:
                pass
            check(c.closed != 0, f"{mode}: psycopg2 connection not closed")
            check_eq(pg.psql("SELECT count(*) FROM modes_t WHERE marker = 'killed'", db="appdb").strip(), "0",
                     f"{mode}: row of the killed transaction")
            mux.assert_serving()


def case_idle_pooled_backends_killed(pg):
    """Transaction mode: killing idle pooled backends is invisible to idle
    clients; their next transactions run on fresh backends."""
    with Sqlmux(pg, mode="transaction", size=3) as mux:
        clients = [mux.connect(autocommit=True) for _ in range(3)]
        for c in clients:
            one(c, "SELECT 1")
        with pg.connect_super() as s, s.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE usename = 'app' AND datname = 'appdb'")
        time.sleep(0.5)
        for i, c in enumerate(clients):
            if DIRECT:
                continue  # direct connections are the backends themselves
            try:
                check_eq(one(c, "SELECT 'fresh backend'"), "fresh backend", f"idle client {i}")
            except psycopg2.Error as e:
                fail(f"idle client {i} (not in a transaction) got an error after idle pooled backends "
                     f"were killed: {e.pgcode} {str(e).strip()}")
        for c in clients:
            c.close()
        mux.assert_serving()


def case_client_vanishes_mid_transaction(pg):
    for mode in ("transaction", "session"):
        for how in ("close", "reset"):
            with Sqlmux(pg, mode=mode, size=1) as mux:
                marker = f"vanish-{mode}-{how}"
                a = mux.raw()
                a.query_ok("BEGIN")
                a.query_ok(f"INSERT INTO modes_t(marker, v) VALUES ('{marker}', 1)")
                a.query_ok("SELECT id FROM modes_t WHERE id = (SELECT min(id) FROM modes_t) FOR UPDATE")
                a.close() if how == "close" else a.abort()
                b = mux.raw()
                res = b.query_ok("SELECT txid_current_if_assigned() IS NULL, now() = statement_timestamp(), "
                                 f"(SELECT count(*) FROM modes_t WHERE marker = '{marker}')")
                check_eq(res.rows[0], ["t", "t", "0"],
                         f"{mode}/{how}: next client (not in a transaction; vanished client's row absent)")
                check_eq(res.status, "I", f"{mode}/{how}: ReadyForQuery status of the next client")
                b.query_ok("BEGIN")
                b.query_ok("SET LOCAL lock_timeout = '2s'")
                upd = b.query("UPDATE modes_t SET v = v WHERE id = (SELECT min(id) FROM modes_t)")
                check(upd.error is None, f"{mode}/{how}: row lock of the vanished client still held: {upd.error}")
                b.query_ok("COMMIT")
                b.terminate()
                mux.assert_serving()


def case_client_vanishes_mid_query(pg):
    """The result of a query whose client is gone never reaches the next
    client of the backend."""
    for mode in ("transaction", "session"):
        with Sqlmux(pg, mode=mode, size=1) as mux:
            a = mux.raw()
            a.send_msg(b"Q", b"SELECT 'stale result', pg_sleep(1.5)\0")
            time.sleep(0.3)
            a.abort()
            b = mux.raw(timeout=20)
            for i in range(3):
                res = b.query_ok(f"SELECT 'mine {i}'")
                check_eq(res.rows, [[f"mine {i}"]], f"{mode}: next client's result {i}")
            b.terminate()
            mux.assert_serving()


# ---------------------------------------------------------------------------
# Session parameters follow the client
# ---------------------------------------------------------------------------


def case_parameters_follow_client(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        spec = {
            "a": dict(application_name="alpha", options="-c search_path=s_a,public -c TimeZone=America/New_York "
                                                        "-c DateStyle=ISO,DMY"),
            "b": dict(application_name="beta", options="-c search_path=s_b,public -c TimeZone=Asia/Tokyo "
                                                       "-c DateStyle=ISO,MDY"),
        }
        want = {
            "a": {"app": "alpha", "tz": "America/New_York", "ds": "ISO, DMY", "sp": "s_a, public", "who": "schema a"},
            "b": {"app": "beta", "tz": "Asia/Tokyo", "ds": "ISO, MDY", "sp": "s_b, public", "who": "schema b"},
        }
        conns = {k: mux.connect(**v) for k, v in spec.items()}

        def verify(k, step):
            c = conns[k]
            with c.cursor() as cur:
                cur.execute("SELECT current_setting('application_name'), current_setting('TimeZone'), "
                            "current_setting('DateStyle'), current_setting('search_path'), (SELECT v FROM who), "
                            "to_char('2024-01-02 12:00+00'::timestamptz, 'HH24')")
                row = cur.fetchone()
                cur.execute("SHOW TimeZone")
                tz_show = cur.fetchone()[0]
                cur.execute("SHOW search_path")
                sp_show = cur.fetchone()[0]
            c.commit()
            w = want[k]
            nosp = lambda s: s.replace(" ", "")  # noqa: E731  ("s_a,public" from a startup packet)
            got = dict(app=row[0], tz=row[1], ds=row[2], sp=nosp(row[3]), who=row[4])
            check_eq(got, {x: nosp(w[x]) if x == "sp" else w[x] for x in got}, f"client {k} at step {step}")
            check_eq(tz_show, w["tz"], f"client {k} SHOW TimeZone at step {step}")
            check_eq(nosp(sp_show), nosp(w["sp"]), f"client {k} SHOW search_path at step {step}")
            hour = {"America/New_York": "07", "Asia/Tokyo": "21", "UTC": "12"}[w["tz"]]
            check_eq(row[5], hour, f"client {k}: timestamptz rendered in its time zone at step {step}")
            check_eq(c.get_parameter_status("application_name"), w["app"],
                     f"client {k}: ParameterStatus application_name at step {step}")
            check_eq(c.get_parameter_status("TimeZone"), w["tz"], f"client {k}: ParameterStatus TimeZone at {step}")

        for i in range(6):
            verify("a", i)
            verify("b", i)
        # SET outside a transaction follows that client only.
        conns["a"].autocommit = True
        with conns["a"].cursor() as cur:
            cur.execute("SET TimeZone = 'UTC'")
            cur.execute("SET application_name = 'alpha2'")
        conns["a"].autocommit = False
        want["a"]["tz"] = "UTC"
        want["a"]["app"] = "alpha2"
        # SET inside a committed transaction persists; SET LOCAL does not.
        with conns["b"].cursor() as cur:
            cur.execute("SET application_name = 'beta2'")
            cur.execute("SET LOCAL TimeZone = 'UTC'")
        conns["b"].commit()
        want["b"]["app"] = "beta2"
        # SET in a rolled-back transaction is undone.
        with conns["a"].cursor() as cur:
            cur.execute("SET DateStyle = 'ISO, YMD'")
        conns["a"].rollback()
        for i in range(6, 12):
            verify("a", i)
            verify("b", i)
        # A fresh client gets its own (default) values, not the others'.
        with mux.connect() as c, c.cursor() as cur:
            cur.execute("SELECT current_setting('application_name'), current_setting('TimeZone'), "
                        "current_setting('search_path')")
            row = cur.fetchone()
            check(row[0] not in ("alpha", "alpha2", "beta"), f"fresh client sees application_name {row[0]!r}")
            check(row[1] not in ("America/New_York", "Asia/Tokyo"), f"fresh client sees TimeZone {row[1]!r}")
            check_eq(row[2], '"$user", public', "fresh client's search_path")
        for c in conns.values():
            c.close()
        mux.assert_serving()


def case_unreported_set_follows_client(pg):
    """SET of parameters PostgreSQL does not report through ParameterStatus
    (search_path in PostgreSQL 15, statement_timeout, work_mem) also follows
    the client in transaction mode and does not leak to other clients."""
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        a = mux.raw()
        b = mux.raw()
        q = ("SELECT current_setting('search_path'), current_setting('statement_timeout'), "
             "current_setting('work_mem'), (SELECT v FROM who)")
        a.query_ok("SET search_path = s_a, public")           # outside a transaction
        a.query_ok("SET statement_timeout = '77s'")
        a.query_ok("BEGIN; SET work_mem = '7MB'; COMMIT")      # inside a committed transaction
        want_a = ["s_a, public", "77s", "7MB", "schema a"]
        for i in range(4):
            got_b2 = b.query_ok("SELECT current_setting('search_path'), current_setting('statement_timeout'), "
                                "current_setting('work_mem')").rows[0]
            check_eq(got_b2, ['"$user", public', "0", "4MB"], f"step {i}: client b's own settings")
            got_a = a.query_ok(q).rows[0]
            check_eq(got_a, want_a, f"step {i}: client a's SET values (search_path, statement_timeout, work_mem, who)")
        a.terminate()
        b.terminate()
        mux.assert_serving()


# ---------------------------------------------------------------------------
# Large data, COPY, extended protocol, notices
# ---------------------------------------------------------------------------


def case_large_values(pg):
    size = 100 * 1024 * 1024
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        pg.psql("CREATE TABLE big_t(id int PRIMARY KEY, t text, b bytea); ALTER TABLE big_t OWNER TO app;",
                db="appdb")
        # text through psycopg2 (simple protocol: one 100 MB Query message)
        text = os.urandom(size // 2).hex()
        want = hashlib.md5(text.encode()).hexdigest()
        t0 = time.monotonic()
        c = mux.connect()
        with c.cursor() as cur:
            cur.execute("INSERT INTO big_t(id, t) VALUES (1, %s)", (text,))
        c.commit()
        with c.cursor() as cur:
            cur.execute("SELECT md5(t), length(t) FROM big_t WHERE id = 1")
            check_eq(cur.fetchone(), (want, size), "server-side md5/length of the 100 MB text")
            cur.execute("SELECT t FROM big_t WHERE id = 1")
            back = cur.fetchone()[0]
        c.commit()
        c.close()
        check(hashlib.md5(back.encode()).hexdigest() == want, "100 MB text read back differs")
        del back, text
        log(f"100 MB text round trip (psycopg2) in {time.monotonic() - t0:.1f}s")
        # bytea through psycopg 3 (extended protocol, binary parameter and result)
        blob = os.urandom(size)
        want = hashlib.md5(blob).hexdigest()
        t0 = time.monotonic()
        with psycopg.connect(mux.dsn(), prepare_threshold=None) as c3:
            c3.execute("INSERT INTO big_t(id, b) VALUES (2, %b)", (blob,))
            c3.commit()
            row = c3.execute("SELECT md5(b), length(b) FROM big_t WHERE id = 2").fetchone()
            check_eq(row, (want, size), "server-side md5/length of the 100 MB bytea")
            back = c3.execute("SELECT b FROM big_t WHERE id = 2", binary=True).fetchone()[0]
            c3.commit()
        check(hashlib.md5(back).hexdigest() == want, "100 MB bytea read back differs")
        del back, blob
        log(f"100 MB bytea round trip (psycopg 3, binary) in {time.monotonic() - t0:.1f}s")
        pg.psql("DROP TABLE big_t", db="appdb")
        mux.assert_serving()


def _extended_query(sql: str, params: list[str]) -> bytes:
    """Parse/Bind/Execute/Sync for an unnamed statement, text parameters."""
    import struct
    q = sql.encode() + b"\0"
    parse = b"\0" + q + b"\0\0"
    bind = b"\0\0" + b"\0\0" + struct.pack("!H", len(params))
    for v in params:
        b = v.encode()
        bind += struct.pack("!i", len(b)) + b
    bind += b"\0\0"
    msgs = [(b"P", parse), (b"B", bind), (b"E", b"\0" + b"\0\0\0\0"), (b"S", b"")]
    return b"".join(t + struct.pack("!I", len(body) + 4) + body for t, body in msgs)


def case_large_message_while_queued(pg):
    """A client whose large message (> 256 KiB) arrives while it waits for a
    backend gets its answer once a backend is free."""
    import struct
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        for kind, nbytes in (("simple", 4_000_000), ("extended", 4_000_000), ("extended", 300_000)):
            a = mux.raw()
            b = mux.raw()
            a.query_ok("BEGIN")
            a.query_ok("SELECT 1")  # a holds the only backend
            payload = "x" * nbytes
            if kind == "simple":
                body = f"SELECT length('{payload}')".encode() + b"\0"
                msg = b"Q" + struct.pack("!I", len(body) + 4) + body
            else:
                msg = _extended_query("SELECT length($1::text)", [payload])
            sender = threading.Thread(target=lambda: b.send(msg), daemon=True)
            sender.start()
            time.sleep(0.5)
            a.query_ok("COMMIT")
            try:
                res = b.read_result(15)
            except TimeoutError:
                seen = pg.psql("SELECT state || ' / ' || wait_event FROM pg_stat_activity WHERE usename = 'app'")
                fail(f"{kind} message of {nbytes} bytes sent while queued: no answer within 15s after the "
                     f"backend was freed (PostgreSQL backend: {seen.strip()!r})")
            check(res.error is None, f"{kind} {nbytes}: {res.error}")
            check_eq(res.rows, [[str(nbytes)]], f"{kind} message of {nbytes} bytes sent while queued")
            sender.join(10)
            a.terminate()
            b.terminate()
        mux.assert_serving()


def case_copy_200k(pg):
    n = 200_000
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        c = mux.connect()
        with c.cursor() as cur:
            cur.execute("CREATE TABLE copy_t(id int, name text, amount numeric, ts timestamptz)")
        c.commit()
        data = "".join(f"{i}\tname {i} \\\\ tab\\there\t{i * 3}.{i % 100:02d}\t2024-01-01 00:00:00+00\n"
                       for i in range(n))
        t0 = time.monotonic()
        with c.cursor() as cur:
            cur.copy_expert("COPY copy_t FROM STDIN", io.StringIO(data))
            check_eq(cur.rowcount, n, "COPY IN row count")
        c.commit()
        with c.cursor() as cur:
            cur.execute("SELECT count(*), sum(id) FROM copy_t")
            check_eq(cur.fetchone(), (n, n * (n - 1) // 2), "rows after COPY IN")
            out = io.StringIO()
            cur.execute("SET LOCAL TimeZone = 'UTC'")
            cur.copy_expert("COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT", out)
        c.commit()
        got = out.getvalue()
        check(hashlib.md5(got.encode()).hexdigest() == hashlib.md5(data.encode()).hexdigest(),
              "COPY OUT content differs from COPY IN")
        log(f"COPY in+out of {n} rows in {time.monotonic() - t0:.1f}s")
        # Another client interleaving with a COPY in progress on a pool of 2.
        with c.cursor() as cur:
            cur.execute("DROP TABLE copy_t")
        c.commit()
        c.close()
        mux.assert_serving()


def case_extended_protocol_unnamed(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        conns = [psycopg.connect(mux.dsn(), prepare_threshold=None) for _ in range(3)]
        for i in range(10):
            for k, c in enumerate(conns):
                row = c.execute("SELECT %s::int, %s::text, %s::numeric, %s::bytea, %s::int[]",
                                (i, f"c{k}", 1.5, bytes([k, i]), [k, i])).fetchone()
                check_eq(row[:2], (i, f"c{k}"), f"conn {k} round {i}")
                check_eq(bytes(row[3]), bytes([k, i]), f"conn {k} round {i} bytea")
                check_eq(row[4], [k, i], f"conn {k} round {i} array")
                c.commit()
        # An error in the middle of a pipeline: the rest up to Sync is
        # skipped, the connection recovers.
        c = conns[0]
        c.autocommit = True
        try:
            with c.pipeline():
                c.execute("SELECT 1")
                c.execute("SELECT 1/0")
                c.execute("SELECT 2")
            fail("pipeline with a division by zero did not raise")
        except psycopg.errors.DivisionByZero:
            pass
        check_eq(c.execute("SELECT 'recovered'").fetchone()[0], "recovered", "after pipeline error")
        # Describe of a statement with parameters, no execution (client-side cursor description)
        cur = c.execute("SELECT %s::int AS x, 'y'::text AS y", (5,))
        check_eq([d.name for d in cur.description], ["x", "y"], "row description")
        for c in conns:
            c.close()
        mux.assert_serving()


def case_notices_and_notify(pg):
    for mode in ("transaction", "session", "statement"):
        with Sqlmux(pg, mode=mode, size=1) as mux:
            c = mux.connect(autocommit=True)
            with c.cursor() as cur:
                cur.execute("DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$")
                cur.execute("DROP TABLE IF EXISTS no_such_table_for_notice")
            check(any("hello from plpgsql" in n for n in c.notices), f"{mode}: notices {c.notices}")
            check(any("does not exist, skipping" in n for n in c.notices), f"{mode}: notices {c.notices}")
            c.close()
            mux.assert_serving()
    # LISTEN/NOTIFY needs a session: session mode.
    with Sqlmux(pg, mode="session", size=3) as mux:
        listener = mux.connect(autocommit=True)
        with listener.cursor() as cur:
            cur.execute("LISTEN sqlmux_chan")
        sender = mux.connect(autocommit=True)
        with sender.cursor() as cur:
            cur.execute("NOTIFY sqlmux_chan, 'payload 1'")
            cur.execute("SELECT pg_notify('sqlmux_chan', 'payload 2')")
        deadline = time.monotonic() + 5
        got = []
        while time.monotonic() < deadline and len(got) < 2:
            if select.select([listener], [], [], 0.5)[0]:
                listener.poll()
                while listener.notifies:
                    n = listener.notifies.pop(0)
                    got.append((n.channel, n.payload))
        check_eq(got, [("sqlmux_chan", "payload 1"), ("sqlmux_chan", "payload 2")], "notifications received")
        listener.close()
        sender.close()
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_session_mode, case_session_state_does_not_leak, case_transaction_mode_alternating,
                         case_statement_mode, case_cancel, case_cancel_raw_idle_and_after, case_backend_killed,
                         case_idle_pooled_backends_killed, case_client_vanishes_mid_transaction,
                         case_client_vanishes_mid_query, case_parameters_follow_client,
                         case_unreported_set_follows_client, case_large_values, case_large_message_while_queued,
                         case_copy_200k, case_extended_protocol_unnamed, case_notices_and_notify],
              timeout=150, setup=setup)
