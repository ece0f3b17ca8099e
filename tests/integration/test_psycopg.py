#!/usr/bin/python3
"""psycopg 3 (extended protocol, unnamed statements with prepare_threshold=None)
through sqlmux in transaction mode: sync threads, pipeline mode, COPY,
binary parameters, server-side cursors, and hundreds of concurrent async
tasks each writing and reading back its own rows. Plus session mode with
psycopg's default automatic prepared statements."""

import asyncio
import os
import random
import threading
import time

import psycopg
from psycopg import sql as psql

from harness import *

ASYNC_TASKS = 250


def setup(pg):
    pg.psql("CREATE TABLE pg3_t(task int, seq int, val text, data bytea, PRIMARY KEY (task, seq));"
            "ALTER TABLE pg3_t OWNER TO app;", db="appdb")


def sync_worker(mux, task: int, errors: list, prepare_threshold):
    try:
        token = f"s{task}-{random.getrandbits(48):x}"
        with psycopg.connect(mux.dsn(), prepare_threshold=prepare_threshold) as conn:
            blob = os.urandom(1000 + task)
            with conn.transaction():
                with conn.cursor() as cur:
                    # executemany runs in pipeline mode with libpq >= 14
                    cur.executemany("INSERT INTO pg3_t(task, seq, val, data) VALUES (%s, %s, %s, %s)",
                                    [(task, s, f"{token}/{s}", blob) for s in range(20)])
            with conn.cursor() as cur:
                for _ in range(7):  # > default prepare_threshold (5) in session mode
                    cur.execute("SELECT seq, val, data FROM pg3_t WHERE task = %s ORDER BY seq", (task,))
                    rows = cur.fetchall()
                    want = [(s, f"{token}/{s}", blob) for s in range(20)]
                    if rows != want:
                        raise TestFailure(f"sync task {task}: rows differ ({len(rows)} rows)")
                cur.execute("SELECT %s::text", (token,), binary=True)
                check_eq(cur.fetchone()[0], token, f"sync task {task}: binary echo")
            # explicit pipeline with several statements and a sync in between
            with conn.pipeline() as p, conn.cursor() as cur:
                cur.execute("UPDATE pg3_t SET val = val || '+p' WHERE task = %s", (task,))
                cur2 = conn.execute("SELECT count(*) FROM pg3_t WHERE task = %s AND val LIKE '%%+p'", (task,))
                p.sync()
                check_eq(cur2.fetchone()[0], 20, f"sync task {task}: pipelined update count")
            conn.commit()
            # server-side (named) cursor: DECLARE/FETCH inside a transaction
            with conn.transaction():
                with conn.cursor(name=f"cur_{task}") as sc:
                    sc.itersize = 7
                    sc.execute("SELECT seq FROM pg3_t WHERE task = %s ORDER BY seq", (task,))
                    check_eq([r[0] for r in sc], list(range(20)), f"sync task {task}: server-side cursor")
            conn.execute("DELETE FROM pg3_t WHERE task = %s", (task,))
            conn.commit()
    except Exception as e:  # noqa: BLE001
        errors.append((task, e))


def run_sync(mux, threads, prepare_threshold, base):
    errors = []
    ts = [threading.Thread(target=sync_worker, args=(mux, base + i, errors, prepare_threshold)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    check(not any(t.is_alive() for t in ts), "sync psycopg threads still running after 90s")
    log(f"{threads} sync psycopg threads in {time.monotonic() - t0:.1f}s, {len(errors)} failed")
    if errors:
        fail(f"{len(errors)} sync psycopg workers failed:\n  " +
             "\n  ".join(f"task {i}: {type(e).__name__}: {e}" for i, e in errors[:8]))


async def async_worker(mux, task: int, sem: asyncio.Semaphore):
    token = f"a{task}-{random.getrandbits(48):x}"
    async with sem:
        aconn = await psycopg.AsyncConnection.connect(mux.dsn(), prepare_threshold=None)
    try:
        async with aconn.transaction():
            async with aconn.cursor() as cur:
                for s in range(4):
                    await cur.execute("INSERT INTO pg3_t(task, seq, val) VALUES (%s, %s, %s)",
                                      (task, s, f"{token}/{s}"))
        await asyncio.sleep(random.random() * 0.02)
        async with aconn.cursor() as cur:
            await cur.execute("SELECT seq, val FROM pg3_t WHERE task = %s ORDER BY seq", (task,))
            rows = await cur.fetchall()
            if rows != [(s, f"{token}/{s}") for s in range(4)]:
                raise TestFailure(f"async task {task}: read back {rows}")
            await cur.execute(psql.SQL("SELECT {}::text, %s::int + 1").format(psql.Literal(token)), (task,))
            if await cur.fetchone() != (token, task + 1):
                raise TestFailure(f"async task {task}: echo mismatch")
            await cur.execute("DELETE FROM pg3_t WHERE task = %s", (task,))
            check_eq(cur.rowcount, 4, f"async task {task}: deleted rows")
        await aconn.commit()
    finally:
        await aconn.close()


async def run_async(mux, base):
    sem = asyncio.Semaphore(50)  # limits concurrent connection attempts only
    t0 = time.monotonic()
    results = await asyncio.gather(*(async_worker(mux, base + i, sem) for i in range(ASYNC_TASKS)),
                                   return_exceptions=True)
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    log(f"{ASYNC_TASKS} async psycopg tasks in {time.monotonic() - t0:.1f}s, {len(errors)} failed")
    if errors:
        fail(f"{len(errors)} of {ASYNC_TASKS} async tasks failed:\n  " +
             "\n  ".join(f"task {i}: {type(e).__name__}: {e}" for i, e in errors[:8]))


def case_sync_transaction_mode(pg):
    with Sqlmux(pg, mode="transaction", size=5) as mux:
        run_sync(mux, 20, None, 0)
        mux.assert_serving()


def case_async_transaction_mode(pg):
    with Sqlmux(pg, mode="transaction", size=10) as mux:
        asyncio.run(run_async(mux, 1000))
        mux.assert_serving()


def case_session_mode_prepared(pg):
    # psycopg prepares statements server-side after 5 executions (default
    # prepare_threshold): fine in session mode.
    with Sqlmux(pg, mode="session", size=12) as mux:
        run_sync(mux, 10, 5, 5000)
        mux.assert_serving()


def case_copy_and_notices(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        with psycopg.connect(mux.dsn(), prepare_threshold=None) as conn:
            notices = []
            conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
            conn.execute("DROP TABLE IF EXISTS pg3_copy; CREATE TABLE pg3_copy(id int, v text, b bytea)")
            conn.commit()
            n = 20000
            with conn.cursor() as cur:
                with cur.copy("COPY pg3_copy (id, v, b) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int4", "text", "bytea"])
                    for i in range(n):
                        cp.write_row((i, f"row {i}\t\\ \"q\"", bytes([i % 256]) * (i % 50)))
            conn.commit()
            with conn.cursor() as cur:
                got = 0
                with cur.copy("COPY (SELECT id, v, b FROM pg3_copy ORDER BY id) TO STDOUT (FORMAT BINARY)") as cp:
                    cp.set_types(["int4", "text", "bytea"])
                    for row in cp.rows():
                        i = got
                        if row != (i, f"row {i}\t\\ \"q\"", bytes([i % 256]) * (i % 50)):
                            fail(f"COPY OUT row {i}: {row!r}")
                        got += 1
                check_eq(got, n, "rows from binary COPY OUT")
            conn.commit()
            conn.execute("DO $$ BEGIN RAISE NOTICE 'psycopg3 notice %', 7; RAISE WARNING 'careful'; END $$")
            conn.commit()
            check(("NOTICE", "00000", "psycopg3 notice 7") in notices, f"notices: {notices}")
            check(("WARNING", "01000", "careful") in notices, f"notices: {notices}")
        mux.assert_serving()


def case_errors_keep_connection(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        with psycopg.connect(mux.dsn(), prepare_threshold=None, autocommit=True) as conn:
            e = expect_error(lambda: conn.execute("SELECT 1/0"), "22012", "division by zero", what="division by zero")
            check(isinstance(e, psycopg.errors.DivisionByZero), f"exception class {type(e)}")
            expect_error(lambda: conn.execute("SELECT %s::int", ("x",)), "22P02", what="bad int parameter")
            check_eq(conn.execute("SELECT %s::int * 2", (21,)).fetchone()[0], 42, "query after errors")
        e = expect_error(lambda: psycopg.connect(mux.dsn(password="nope")), (None, "28P01"),
                         'password authentication failed for user "app"', what="wrong password")
        mux.assert_serving()


def case_set_follows_through_extended_protocol(pg):
    """psycopg 3 sends SET through the extended protocol (Parse/Bind/
    Execute): the setting follows the client to its next transactions on
    other server connections, as in a simple query; so do the session's
    transaction characteristics. Another client never sees them."""
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        with psycopg.connect(mux.dsn(), autocommit=True) as a, psycopg.connect(mux.dsn(), autocommit=True) as b:
            a.execute("SET statement_timeout = '42s'")
            a.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for i in range(6):
                # b inside a transaction holds the connection a used last.
                b.execute("BEGIN")
                check_eq(b.execute("SHOW statement_timeout").fetchone()[0], "0", f"b's statement_timeout ({i})")
                check_eq(a.execute("SELECT current_setting('statement_timeout'), "
                                   "current_setting('default_transaction_isolation'), "
                                   "current_setting('transaction_read_only')").fetchone(),
                         ("42s", "repeatable read", "on"), f"a's settings ({i})")
                b.execute("COMMIT")
            # set_config(): a literal name follows the client like SET; a
            # parameter name cannot, and never reaches another client (b
            # alone gets the connection a used last).
            for i in range(3):
                a.execute("SELECT set_config('work_mem', '9MB', false)")
                a.execute("SELECT set_config(%s, %s, false)", ("lock_timeout", "3s"))
                check_eq(b.execute("SELECT current_setting('work_mem'), current_setting('lock_timeout')").fetchone(),
                         ("4MB", "0"), f"b's settings after a's set_config ({i})")
                b.execute("BEGIN")
                check_eq(a.execute("SHOW work_mem").fetchone()[0], "9MB", f"a's set_config ({i})")
                b.execute("COMMIT")
            a.execute("RESET statement_timeout")
            check_eq(a.execute("SHOW statement_timeout").fetchone()[0], "0", "after RESET")
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_sync_transaction_mode, case_async_transaction_mode, case_session_mode_prepared,
                         case_copy_and_notices, case_errors_keep_connection,
                         case_set_follows_through_extended_protocol], timeout=110, setup=setup)
