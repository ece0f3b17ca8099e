#!/usr/bin/python3
"""asyncpg through sqlmux.

Session mode with asyncpg's default statement cache (named prepared
statements): 300 concurrent tasks over an asyncpg pool of 50 connections,
sqlmux pool size 60. Transaction mode with statement_cache_size=0 (asyncpg
then uses unnamed statements): 300 tasks over 50 client connections on a
sqlmux pool of 10. Each task writes and reads back its own rows, so any
mix-up between clients fails. Plus an asyncpg timeout that cancels a query."""

import asyncio
import random
import time

import asyncpg

from harness import *

TASKS = 300


async def worker(pool, task: int, check_pid_stable: bool):
    token = f"t{task}-{random.getrandbits(64):016x}"
    async with pool.acquire() as conn:
        if check_pid_stable:
            pid1 = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SELECT set_config('sqlmux.token', $1, false)", token)
        async with conn.transaction():
            await conn.executemany("INSERT INTO asyncpg_t(task, seq, val) VALUES ($1, $2, $3)",
                                   [(task, s, f"{token}/{s}") for s in range(5)])
            n = await conn.fetchval("SELECT count(*) FROM asyncpg_t WHERE task = $1", task)
            if n != 5:
                raise TestFailure(f"task {task}: {n} rows inside its own transaction")
        rows = await conn.fetch("SELECT seq, val FROM asyncpg_t WHERE task = $1 ORDER BY seq", task)
        got = [(r["seq"], r["val"]) for r in rows]
        want = [(s, f"{token}/{s}") for s in range(5)]
        if got != want:
            raise TestFailure(f"task {task}: read back {got}, want {want}")
        echo = await conn.fetchval("SELECT $1::text || '!'", token)
        if echo != token + "!":
            raise TestFailure(f"task {task}: echo {echo!r}")
        await conn.execute("UPDATE asyncpg_t SET val = val || '+u' WHERE task = $1", task)
        vals = await conn.fetch("SELECT val FROM asyncpg_t WHERE task = $1 ORDER BY seq", task)
        if [r[0] for r in vals] != [f"{token}/{s}+u" for s in range(5)]:
            raise TestFailure(f"task {task}: after update {vals}")
        await asyncio.sleep(random.random() * 0.01)
        if check_pid_stable:
            pid2 = await conn.fetchval("SELECT pg_backend_pid()")
            tok = await conn.fetchval("SELECT current_setting('sqlmux.token')")
            if pid1 != pid2:
                raise TestFailure(f"session mode: backend pid changed within a client session ({pid1} -> {pid2})")
            if tok != token:
                raise TestFailure(f"session mode: session variable is {tok!r}, want {token!r}")
        res = await conn.execute("DELETE FROM asyncpg_t WHERE task = $1", task)
        if res != "DELETE 5":
            raise TestFailure(f"task {task}: {res}")


async def run_tasks(mux, pool_kw, check_pid_stable):
    t0 = time.monotonic()
    pool = await asyncpg.create_pool(mux.url(), min_size=10, max_size=50, timeout=30, **pool_kw)
    try:
        results = await asyncio.gather(*(worker(pool, t, check_pid_stable) for t in range(TASKS)),
                                       return_exceptions=True)
    finally:
        await asyncio.wait_for(pool.close(), 30)
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    log(f"{TASKS} tasks in {time.monotonic() - t0:.1f}s, {len(errors)} failed")
    if errors:
        kinds = {}
        for i, e in errors:
            kinds.setdefault(f"{type(e).__name__}: {e}"[:200], []).append(i)
        fail(f"{len(errors)} of {TASKS} asyncpg tasks failed:\n  " +
             "\n  ".join(f"{k} (tasks {v[:5]}{'...' if len(v) > 5 else ''})" for k, v in list(kinds.items())[:8]))


def setup(pg):
    pg.psql("CREATE TABLE asyncpg_t(task int, seq int, val text, PRIMARY KEY (task, seq));"
            "ALTER TABLE asyncpg_t OWNER TO app;", db="appdb")


def case_session_mode_statement_cache(pg):
    with Sqlmux(pg, mode="session", size=60) as mux:
        asyncio.run(run_tasks(mux, {}, check_pid_stable=True))
        mux.assert_serving()


def case_transaction_mode_no_statement_cache(pg):
    with Sqlmux(pg, mode="transaction", size=10) as mux:
        asyncio.run(run_tasks(mux, {"statement_cache_size": 0}, check_pid_stable=False))
        if not DIRECT:
            n = pg.app_sessions()
            check(n <= 10, f"PostgreSQL has {n} app sessions for a pool of 10")
        mux.assert_serving()


async def timeout_cancel(mux, conn_kw):
    conn = await asyncpg.connect(mux.url(), timeout=15, **conn_kw)
    try:
        # Another client sleeping at the same time must not be the one cancelled.
        other = await asyncpg.connect(mux.url(), timeout=15, **conn_kw)
        other_task = asyncio.ensure_future(other.fetchval("SELECT pg_sleep(2.5)::text || 'done'"))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        try:
            await conn.execute("SELECT pg_sleep(30)", timeout=1.0)
        except asyncio.TimeoutError:
            pass
        else:
            fail("pg_sleep(30) with timeout=1 did not time out")
        v = await asyncio.wait_for(conn.fetchval("SELECT 'usable after cancel'"), 10)
        el = time.monotonic() - t0
        check_eq(v, "usable after cancel", "query after the cancelled one")
        check(el < 6, f"timeout + cancel + next query took {el:.1f}s (the cancel did not reach the backend?)")
        o = await asyncio.wait_for(other_task, 10)
        check_eq(o, "done", "the other client's pg_sleep(2.5) (must not be cancelled)")
        await other.close()
        # A cancelled statement inside a transaction aborts the transaction.
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
        except asyncio.TimeoutError:
            pass
        try:
            await conn.fetchval("SELECT 1")
            fail("query in a transaction aborted by a cancel did not fail")
        except asyncpg.exceptions.InFailedSQLTransactionError:
            pass
        await tr.rollback()
        check_eq(await conn.fetchval("SELECT 2"), 2, "query after rollback")
    finally:
        await conn.close()


def case_timeout_cancels_query(pg):
    for mode, kw in (("session", {}), ("transaction", {"statement_cache_size": 0})):
        with Sqlmux(pg, mode=mode, size=4) as mux:
            asyncio.run(timeout_cancel(mux, kw))
            # No pg_sleep(30) may still be running on PostgreSQL.
            time.sleep(0.5)
            left = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                           "AND state = 'active'").strip()
            check_eq(left, "0", f"{mode}: pg_sleep(30) still active on PostgreSQL after the cancel")
            mux.assert_serving()


async def auth_and_errors(mux):
    try:
        await asyncpg.connect(mux.url(password="wrong"), timeout=15)
        fail("wrong password accepted")
    except asyncpg.exceptions.InvalidPasswordError as e:
        check_eq(e.sqlstate, "28P01", "wrong password sqlstate")
    conn = await asyncpg.connect(mux.url(), timeout=15, statement_cache_size=0)
    try:
        try:
            await conn.fetch("SELECT * FROM asyncpg_no_such_table")
            fail("missing table not reported")
        except asyncpg.exceptions.UndefinedTableError as e:
            check_eq(e.sqlstate, "42P01", "missing table sqlstate")
        check_eq(await conn.fetchval("SELECT $1::int * 2", 21), 42, "query after an error")
    finally:
        await conn.close()


def case_errors(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        asyncio.run(auth_and_errors(mux))
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_session_mode_statement_cache, case_transaction_mode_no_statement_cache,
                         case_timeout_cancels_query, case_errors], timeout=110, setup=setup)
