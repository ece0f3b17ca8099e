#!/usr/bin/python3
"""aiopg (psycopg2 in asynchronous mode) through sqlmux: 200 concurrent
tasks over an aiopg pool of 40 connections on a transaction-mode pool of
10, each in explicit transactions on its own rows; then a query timeout
(aiopg closes the connection mid-query) in session and transaction mode;
and LISTEN/NOTIFY through a transaction pool of 1 (conn.notifies)."""

import asyncio
import random
import time

import aiopg
import psycopg2

from harness import *

TASKS = 200


def setup(pg):
    pg.psql("CREATE TABLE aiopg_t(task int, seq int, val text, PRIMARY KEY (task, seq));"
            "ALTER TABLE aiopg_t OWNER TO app;", db="appdb")


async def worker(pool, task):
    token = f"ai{task}-{random.getrandbits(48):x}"
    async with pool.acquire() as conn:
        async with conn.cursor() as cur:
            async with cur.begin():
                for s in range(3):
                    await cur.execute("INSERT INTO aiopg_t(task, seq, val) VALUES (%s, %s, %s)",
                                      (task, s, f"{token}/{s}"))
                await cur.execute("SELECT txid_current_if_assigned() IS NOT NULL")
                if (await cur.fetchone())[0] is not True:
                    raise TestFailure(f"task {task}: not inside its transaction after INSERT")
            await asyncio.sleep(random.random() * 0.01)
            await cur.execute("SELECT seq, val FROM aiopg_t WHERE task = %s ORDER BY seq", (task,))
            rows = await cur.fetchall()
            if rows != [(s, f"{token}/{s}") for s in range(3)]:
                raise TestFailure(f"task {task}: read back {rows}")
            # a rolled-back transaction leaves nothing behind
            await cur.execute("BEGIN")
            await cur.execute("INSERT INTO aiopg_t(task, seq, val) VALUES (%s, 99, 'rollback me')", (task,))
            await cur.execute("ROLLBACK")
            await cur.execute("SELECT count(*) FROM aiopg_t WHERE task = %s", (task,))
            if (await cur.fetchone())[0] != 3:
                raise TestFailure(f"task {task}: rolled-back row visible")
            await cur.execute("DELETE FROM aiopg_t WHERE task = %s", (task,))
            if cur.rowcount != 3:
                raise TestFailure(f"task {task}: deleted {cur.rowcount}")


async def run_tasks(mux):
    t0 = time.monotonic()
    async with aiopg.create_pool(mux.dsn(), minsize=5, maxsize=40, timeout=60) as pool:
        results = await asyncio.gather(*(worker(pool, t) for t in range(TASKS)), return_exceptions=True)
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    log(f"{TASKS} aiopg tasks in {time.monotonic() - t0:.1f}s, {len(errors)} failed")
    if errors:
        fail(f"{len(errors)} of {TASKS} aiopg tasks failed:\n  " +
             "\n  ".join(f"task {i}: {type(e).__name__}: {e}" for i, e in errors[:8]))


def case_pool_transaction_mode(pg):
    with Sqlmux(pg, mode="transaction", size=10) as mux:
        asyncio.run(run_tasks(mux))
        mux.assert_serving()


def case_pool_session_mode(pg):
    with Sqlmux(pg, mode="session", size=45) as mux:
        asyncio.run(run_tasks(mux))
        mux.assert_serving()


async def timeout_closes(mux):
    # aiopg does not cancel on timeout: it closes the connection while the
    # query runs. sqlmux must cope with the vanished client and keep serving.
    conn = await aiopg.connect(mux.dsn(), timeout=60)
    async with conn.cursor() as cur:
        await cur.execute("BEGIN")
        await cur.execute("CREATE TEMP TABLE IF NOT EXISTS aiopg_gone(x int)" if mux.mode == "session"
                          else "SELECT 1")
        t0 = time.monotonic()
        try:
            await cur.execute("SELECT pg_sleep(30)", timeout=1)
            fail("pg_sleep(30) with timeout=1 returned normally")
        except asyncio.TimeoutError:
            pass
    check(conn.closed, "aiopg closes the connection on a timeout")
    async with aiopg.connect(mux.dsn(), timeout=60) as conn2:
        async with conn2.cursor() as cur:
            await asyncio.wait_for(cur.execute(
                "SELECT 'usable', txid_current_if_assigned() IS NULL, now() = statement_timestamp()"), 10)
            check_eq(await cur.fetchone(), ("usable", True, True), "a new client after the vanished one")
    el = time.monotonic() - t0
    check(el < 6, f"timeout + new connection + query took {el:.1f}s")


def case_timeout_closes_connection(pg):
    for mode in ("session", "transaction"):
        with Sqlmux(pg, mode=mode, size=2) as mux:
            asyncio.run(timeout_closes(mux))
            mux.assert_serving()


async def notifies_through_pool(mux):
    """aiopg's conn.notifies queue gets every notification in order while
    the listening connection shares the pool (LISTEN fan-out)."""
    async with aiopg.connect(mux.dsn()) as listener, aiopg.connect(mux.dsn()) as sender:
        async with listener.cursor() as cur:
            await cur.execute("LISTEN aiopg_chan")
        async with sender.cursor() as cur:
            for i in range(20):
                await cur.execute("SELECT pg_notify('aiopg_chan', %s)", (f"n{i}",))
        got = []
        for _ in range(20):
            msg = await asyncio.wait_for(listener.notifies.get(), 5)
            got.append((msg.channel, msg.payload))
        check_eq(got, [("aiopg_chan", f"n{i}") for i in range(20)], "aiopg notifications")
        async with listener.cursor() as cur:  # the listener still runs queries
            await cur.execute("SELECT 41 + 1")
            check_eq((await cur.fetchone())[0], 42, "a query on the listening connection")


def case_listen_notify(pg):
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        asyncio.run(notifies_through_pool(mux))
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_pool_transaction_mode, case_pool_session_mode, case_timeout_closes_connection,
                         case_listen_notify], timeout=110, setup=setup)
