#!/usr/bin/python3
"""Transaction pooling that drivers don't notice: named prepared statements,
session settings and LISTEN/NOTIFY in transaction mode.

Every client runs with its driver's default prepared-statement settings on a
small transaction-mode pool, and checks its own rows, so that any mix-up
between clients fails."""

import asyncio
import os
import random
import re
import select
import struct
import subprocess
import time

from harness import *
from harness import _parse_fields

LIBPQ_PREPARED = os.environ.get("LIBPQ_PREPARED", "")


def case_asyncpg_default_cache(pg):
    """asyncpg pool, default statement cache, 200 tasks on a pool of 5."""
    import asyncpg
    pg.psql("DROP TABLE IF EXISTS apg; CREATE TABLE apg(id int PRIMARY KEY, owner int, v text);"
            "GRANT ALL ON apg TO app", db="appdb")
    with Sqlmux(pg, mode="transaction", size=5) as mux:
        async def worker(pool, i):
            for k in range(10):
                async with pool.acquire() as con:
                    async with con.transaction():
                        await con.execute("INSERT INTO apg(id, owner, v) VALUES ($1, $2, $3)",
                                          i * 1000 + k, i, f"v{i}-{k}")
                        r = await con.fetchrow("SELECT owner, v FROM apg WHERE id = $1", i * 1000 + k)
                        check(r["owner"] == i and r["v"] == f"v{i}-{k}", f"task {i}: read {r}")
                    rows = await con.fetch("SELECT id FROM apg WHERE owner = $1 ORDER BY id", i)
                    check_eq([x["id"] for x in rows], [i * 1000 + j for j in range(k + 1)], f"task {i} rows")
                    await con.executemany("UPDATE apg SET v = $2 WHERE id = $1",
                                          [(i * 1000 + k, f"u{i}-{k}")])
                    check_eq(await con.fetchval("SELECT v FROM apg WHERE id = $1", i * 1000 + k),
                             f"u{i}-{k}", f"task {i} update")

        async def main():
            pool = await asyncpg.create_pool(mux.url(), min_size=200, max_size=200)
            try:
                await asyncio.gather(*[worker(pool, i) for i in range(200)])
                # A timeout cancels the query (CancelRequest) and the
                # connection stays usable.
                async with pool.acquire() as con:
                    t0 = time.monotonic()
                    try:
                        await con.fetchval("SELECT pg_sleep(5)", timeout=0.5)
                        fail("pg_sleep(5) with timeout=0.5 returned")
                    except asyncio.TimeoutError:
                        pass
                    check(time.monotonic() - t0 < 3, "cancel took too long")
                    check_eq(await con.fetchval("SELECT 7"), 7, "after cancel")
            finally:
                await pool.close()
        asyncio.run(main())
        check(pg.app_sessions() <= 5, "more than 5 server connections")
        mux.assert_serving()


def case_sqlalchemy_orm_asyncpg(pg):
    """SQLAlchemy asyncio ORM CRUD over asyncpg, default caches, pool of 5."""
    require_sqlmux("transaction mode with prepared statements")
    from sqlalchemy import Column, Integer, String, select as sa_select
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import declarative_base, sessionmaker
    Base = declarative_base()

    class Item(Base):
        __tablename__ = "sa_items"
        id = Column(Integer, primary_key=True, autoincrement=True)
        owner = Column(Integer, nullable=False)
        name = Column(String(64), nullable=False)

    with Sqlmux(pg, mode="transaction", size=5) as mux:
        async def main():
            engine = create_async_engine(mux.url(scheme="postgresql+asyncpg"), pool_size=100,
                                         max_overflow=0)
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.run_sync(Base.metadata.create_all)
            Session = sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

            async def task(i):
                async with Session() as s:
                    items = [Item(owner=i, name=f"n{i}-{k}") for k in range(3)]
                    s.add_all(items)
                    await s.commit()
                    ids = sorted(x.id for x in items)
                    got = (await s.execute(sa_select(Item).where(Item.owner == i))).scalars().all()
                    check_eq(sorted(x.id for x in got), ids, f"task {i} ids")
                    for x in got:
                        x.name = x.name + "!"
                    await s.commit()
                    got = (await s.execute(sa_select(Item.name).where(Item.owner == i))).scalars().all()
                    check_eq(sorted(got), sorted(f"n{i}-{k}!" for k in range(3)), f"task {i} names")
                    await s.delete(got and (await s.get(Item, ids[0])))
                    await s.commit()
                    n = len((await s.execute(sa_select(Item).where(Item.owner == i))).scalars().all())
                    check_eq(n, 2, f"task {i} after delete")

            await asyncio.gather(*[task(i) for i in range(200)])
            await engine.dispose()
        asyncio.run(main())
        mux.assert_serving()


def case_psycopg3_prepared_pipeline(pg):
    """psycopg 3, prepare_threshold=0 and pipeline mode, 200 tasks on a pool of 5."""
    import psycopg
    pg.psql("DROP TABLE IF EXISTS pg3; CREATE TABLE pg3(id int PRIMARY KEY, owner int);"
            "GRANT ALL ON pg3 TO app", db="appdb")
    with Sqlmux(pg, mode="transaction", size=5) as mux:
        async def worker(i):
            async with await psycopg.AsyncConnection.connect(mux.dsn(), prepare_threshold=0,
                                                         autocommit=True) as con:
                for k in range(5):
                    async with con.transaction():
                        await con.execute("INSERT INTO pg3(id, owner) VALUES (%s, %s)", (i * 100 + k, i))
                        cur = await con.execute("SELECT owner FROM pg3 WHERE id = %s", (i * 100 + k,))
                        check_eq((await cur.fetchone())[0], i, f"task {i}")
                async with con.pipeline():
                    curs = [await con.execute("SELECT %s::int * 2", (j,)) for j in range(5)]
                for j, c in enumerate(curs):
                    check_eq((await c.fetchone())[0], j * 2, f"task {i} pipeline")
                cur = await con.execute("SELECT count(*) FROM pg3 WHERE owner = %s", (i,))
                check_eq((await cur.fetchone())[0], 5, f"task {i} count")
                # An error in the middle of a pipeline: the rest is skipped,
                # later statements work.
                try:
                    async with con.pipeline():
                        await con.execute("SELECT 1")
                        await con.execute("SELECT 1/0")
                        await con.execute("SELECT 2")
                    fail("division by zero in a pipeline did not raise")
                except psycopg.errors.DivisionByZero:
                    pass
                cur = await con.execute("SELECT %s::int + 1", (i,))
                check_eq((await cur.fetchone())[0], i + 1, f"task {i} after pipeline error")
                await con.execute("DEALLOCATE ALL")
                cur = await con.execute("SELECT %s::int + 2", (i,))
                check_eq((await cur.fetchone())[0], i + 2, f"task {i} after DEALLOCATE ALL")

        async def main():
            await asyncio.gather(*[worker(i) for i in range(200)])
        asyncio.run(main())
        mux.assert_serving()


def _pgbench_tps(args, dsn_env):
    r = subprocess.run(["pgbench", "-n", *args], capture_output=True, text=True, env=dsn_env,
                       timeout=120)
    out = r.stdout + r.stderr
    m = re.search(r"tps = ([0-9.]+) \(without", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return r.returncode, (float(m.group(1)) if m else 0.0), out, (int(failed.group(1)) if failed else None)


def case_pgbench_prepared(pg):
    """pgbench -M prepared -S, 50 clients on a pool of 5, beside -M simple."""
    require_sqlmux("transaction-mode prepared statements")
    env = dict(os.environ, PGPASSWORD="apppass")
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", pg.dsn()], env=env, check=True,
                   capture_output=True, timeout=120)
    with Sqlmux(pg, mode="transaction", size=5) as mux:
        results = {}
        for mode in ("prepared", "simple"):
            rc, tps, out, nfail = _pgbench_tps(["-c", "50", "-j", "2", "-T", "5", "-S", "-M", mode, mux.dsn()], env)
            check(rc == 0, f"pgbench -M {mode} failed:\n{out[-2000:]}")
            check_eq(nfail, 0, f"pgbench -M {mode} failed transactions")
            check(tps > 0, f"pgbench -M {mode}: no tps")
            results[mode] = tps
        log(f"pgbench -S 50 clients, pool 5, transaction mode: prepared {results['prepared']:.0f} tps, "
            f"simple {results['simple']:.0f} tps (ratio {results['prepared'] / results['simple']:.2f})")
        check(pg.app_sessions() <= 5, "more than 5 server connections")


def case_libpq_prepared(pg):
    """libpq PQprepare/PQexecPrepared from 30 connections on a pool of 3."""
    require_sqlmux("transaction-mode prepared statements")
    check(bool(LIBPQ_PREPARED), "LIBPQ_PREPARED is not set (built by CMake)")
    pg.psql("DROP TABLE IF EXISTS lp; CREATE TABLE lp(owner text, n int); GRANT ALL ON lp TO app",
            db="appdb")
    with Sqlmux(pg, mode="transaction", size=3) as mux:
        procs = [subprocess.Popen([LIBPQ_PREPARED, mux.dsn(), f"c{i}", "15"], stderr=subprocess.PIPE,
                                  text=True) for i in range(30)]
        for i, p in enumerate(procs):
            _, err = p.communicate(timeout=90)
            check(p.returncode == 0, f"libpq client {i} failed: {err}")
        mux.assert_serving()


def case_ddl_during_traffic(pg):
    """A column changes type while asyncpg clients keep using prepared statements."""
    import asyncpg
    require_sqlmux("statement invalidation")
    pg.psql("DROP TABLE IF EXISTS ddl; CREATE TABLE ddl(id int PRIMARY KEY, v int);"
            "INSERT INTO ddl SELECT g, g FROM generate_series(1, 100) g; GRANT ALL ON ddl TO app",
            db="appdb")
    with Sqlmux(pg, mode="transaction", size=4) as mux:
        stop = False
        errors = []

        async def reader(pool, i):
            n = 0
            while not stop or n < 20:
                async with pool.acquire() as con:
                    row = await con.fetchrow("SELECT id, v FROM ddl WHERE id = $1", i % 100 + 1)
                    if row["id"] != i % 100 + 1 or int(row["v"]) != row["id"]:
                        errors.append(f"reader {i}: {row}")
                n += 1
                await asyncio.sleep(0.005)

        async def main():
            nonlocal stop
            pool = await asyncpg.create_pool(mux.url(), min_size=40, max_size=40)
            tasks = [asyncio.create_task(reader(pool, i)) for i in range(40)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(pg.psql, "ALTER TABLE ddl ALTER COLUMN v TYPE bigint", "appdb")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(pg.psql, "ALTER TABLE ddl ALTER COLUMN v TYPE numeric", "appdb")
            await asyncio.sleep(0.5)
            stop = True
            await asyncio.gather(*tasks)
            await pool.close()
        asyncio.run(main())
        check(not errors, "wrong rows: " + "; ".join(errors[:5]))
        mux.assert_serving()


def case_ddl_transparent_retry(pg):
    """Outside a transaction block, a statement whose result type changed is
    re-prepared and re-run transparently for clients that describe each
    portal (psycopg 3, libpq's PQexecPrepared); inside one the client gets
    0A000, as from PostgreSQL."""
    require_sqlmux("transparent re-prepare")
    import psycopg
    pg.psql("DROP TABLE IF EXISTS ddl2; CREATE TABLE ddl2(id int PRIMARY KEY, v int);"
            "INSERT INTO ddl2 VALUES (1, 10), (2, 20); GRANT ALL ON ddl2 TO app", db="appdb")
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        conns = [psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) for _ in range(4)]
        q = "SELECT v FROM ddl2 WHERE id = %s"
        for rnd in range(3):
            for c in conns:
                check_eq(c.execute(q, (1,)).fetchone()[0], 10, f"before DDL, round {rnd}")
        pg.psql("ALTER TABLE ddl2 ALTER COLUMN v TYPE text", db="appdb")
        for rnd in range(3):
            for i, c in enumerate(conns):
                got = c.execute(q, (1,)).fetchone()[0]
                check_eq(got, "10", f"client {i} after DDL, round {rnd} (new type, no error)")
        pg.psql("ALTER TABLE ddl2 ALTER COLUMN v TYPE bigint USING v::bigint", db="appdb")
        c = conns[0]
        try:
            with c.transaction():
                c.execute(q, (2,)).fetchone()
            fail("a stale statement inside a transaction block did not fail")
        except psycopg.errors.FeatureNotSupported as e:
            check("cached plan must not change result type" in str(e), f"error: {e}")
        check_eq(c.execute(q, (2,)).fetchone()[0], 20, "after the failed transaction")
        for c in conns:
            c.close()
        mux.assert_serving()


def case_search_path_isolation(pg):
    """Two clients with their own search_path interleave on a pool of 1."""
    pg.psql("DROP SCHEMA IF EXISTS t1 CASCADE; DROP SCHEMA IF EXISTS t2 CASCADE;"
            "CREATE SCHEMA t1 AUTHORIZATION app; CREATE SCHEMA t2 AUTHORIZATION app;"
            "CREATE TABLE t1.x(v text); CREATE TABLE t2.x(v text);"
            "INSERT INTO t1.x VALUES ('one'); INSERT INTO t2.x VALUES ('two');"
            "GRANT ALL ON t1.x, t2.x TO app", db="appdb")
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        a = mux.connect(autocommit=True)
        b = mux.connect(autocommit=True)
        c = mux.connect(autocommit=False, options="-c search_path=t2")
        ca, cb, cc = a.cursor(), b.cursor(), c.cursor()
        ca.execute("SET search_path = t1, public")
        for i in range(20):
            ca.execute("SELECT v FROM x")
            check_eq(ca.fetchone()[0], "one", f"client a, round {i}")
            cb.execute("SHOW search_path")
            check_eq(cb.fetchone()[0], '"$user", public', f"client b, round {i}")
            cc.execute("SELECT v FROM x")
            check_eq(cc.fetchone()[0], "two", f"client c, round {i}")
            c.commit()
            if i == 10:
                ca.execute("RESET search_path")
                ca.execute("SET search_path TO t2")
                ca.execute("SELECT v FROM x")
                check_eq(ca.fetchone()[0], "two", "client a after changing its search_path")
                ca.execute("SET search_path TO t1")
        for conn in (a, b, c):
            conn.close()


def case_listen_notify(pg):
    """LISTEN in transaction mode keeps receiving notifications."""
    with Sqlmux(pg, mode="transaction", size=3) as mux:
        a = mux.connect(autocommit=True)
        a.cursor().execute("LISTEN ch1")
        b = mux.connect(autocommit=True)
        cb = b.cursor()
        for i in range(5):
            cb.execute("NOTIFY ch1, %s", (f"m{i}",))
            cb.execute("SELECT 1")
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            if select.select([a], [], [], 0.5) != ([], [], []):
                a.poll()
                while a.notifies:
                    got.append(a.notifies.pop(0).payload)
        check_eq(got, [f"m{i}" for i in range(5)], "notifications")
        a.close()
        time.sleep(0.3)
        for _ in range(3):
            c = mux.connect(autocommit=True)
            cur = c.cursor()
            cur.execute("SELECT count(*) FROM pg_listening_channels()")
            check_eq(cur.fetchone()[0], 0, "channels left on a reused server connection")
            c.close()


def case_statement_names(pg):
    """Close, reuse of a name, a duplicate name (42P05), and the per-backend bound."""
    require_sqlmux("statement name mapping")
    with Sqlmux(pg, mode="transaction", size=2, max_prepared_statements=10) as mux:
        import psycopg
        with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) as con:
            for i in range(60):  # 60 distinct statements through a 10-statement cache
                check_eq(con.execute(f"SELECT {i} + %s::int", (1,)).fetchone()[0], i + 1, f"stmt {i}")
            for i in range(60):
                check_eq(con.execute(f"SELECT {i} + %s::int", (2,)).fetchone()[0], i + 2, f"again {i}")
        with pg.connect_super("appdb") as su, su.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE usename = 'app' AND datname = 'appdb'")
            check(cur.rowcount <= 2, "more than 2 server connections")
        r = mux.raw()
        # Parse a named statement, then the same name again: 42P05, and the
        # rest of the pipeline is skipped up to Sync, as PostgreSQL does.
        r.send_msg(b"P", b"s1\0SELECT 1\0\0\0")
        r.send_msg(b"P", b"s1\0SELECT 2\0\0\0")
        r.send_msg(b"B", b"\0s1\0\0\0\0\0\0\0")
        r.send_msg(b"S")
        types = []
        err = None
        while True:
            t, body = r.read_msg()
            types.append(t)
            if t == "E":
                err = body
            if t == "Z":
                break
        check_eq(types, ["1", "E", "Z"], "replies to P, P(duplicate), B, S")
        check(b"C42P05" in err, f"duplicate name error: {err!r}")
        # Close it, and the name is free again.
        r.send_msg(b"C", b"Ss1\0")
        r.send_msg(b"P", b"s1\0SELECT 3\0\0\0")
        r.send_msg(b"B", b"\0s1\0\0\0\0\0\0\0")
        r.send_msg(b"E", b"\0\0\0\0\0")
        r.send_msg(b"S")
        types = []
        rows = []
        while True:
            t, body = r.read_msg()
            types.append(t)
            if t == "D":
                rows.append(body)
            if t == "Z":
                break
        check_eq(types, ["3", "1", "2", "D", "C", "Z"], "replies to C, P, B, E, S")
        check(rows and rows[0].endswith(b"3"), f"row {rows!r}")
        r.close()
        mux.assert_serving()


def case_50000_parameters(pg):
    """Issue 19: a Parse with more than 32,767 parameters (PostgreSQL reads
    the count unsigned, up to 65,535). One INSERT with 50,000 parameters from
    psycopg 3, as a named prepared statement and unnamed, through a
    transaction pool inserts what it does on a direct connection. (asyncpg
    refuses more than 32,767 arguments itself.)"""
    import psycopg
    n = 50_000
    pg.psql("DROP TABLE IF EXISTS p50k; CREATE TABLE p50k(src text, v int); GRANT ALL ON p50k TO app",
            db="appdb")
    sql = "INSERT INTO p50k(src, v) VALUES " + ",".join(f"('{{src}}', %s)" for _ in range(n))

    def insert(dsn, src, prepare):
        with psycopg.connect(dsn, autocommit=True) as c:
            cur = c.execute(sql.replace("{src}", src), list(range(n)), prepare=prepare)
            return cur.rowcount, cur.statusmessage

    want = insert(pg.dsn(), "direct", True)
    check_eq(want, (n, f"INSERT 0 {n}"), "direct, prepared")
    check_eq(insert(pg.dsn(), "direct-unnamed", False), want, "direct, unnamed")
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        check_eq(insert(mux.dsn(), "mux", True), want, "through sqlmux, prepared")
        check_eq(insert(mux.dsn(), "mux-unnamed", False), want, "through sqlmux, unnamed")
        mux.assert_serving()
    got = dict(r.split("|") for r in
               pg.psql("SELECT src, count(*) || ':' || sum(v) FROM p50k GROUP BY src", db="appdb").split())
    for src in ("direct", "direct-unnamed", "mux", "mux-unnamed"):
        check_eq(got.get(src), f"{n}:{n * (n - 1) // 2}", f"rows (count:sum) of {src}")


# -- issue 19 item 3: re-preparing after a type change --------------------

def _pg_msgs(r, msgs, pause: float = 0.0):
    """Sends raw (tag, body) messages, each in a write of its own (`pause`
    seconds after the first one), and reads up to ReadyForQuery: the reply
    types, with an error's SQLSTATE in place of "E"."""
    for i, (tag, body) in enumerate(msgs):
        if i == 1 and pause:
            time.sleep(pause)
        r.send_msg(tag, body)
    got = []
    while True:
        t, body = r.read_msg()
        got.append("E" + _parse_fields(body).get("C", "?") if t == "E" else t)
        if t == "Z":
            return got


def _parse_msg(name: str, sql: str, types: list[int]) -> tuple[bytes, bytes]:
    return (b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types)) +
            b"".join(struct.pack("!I", t) for t in types))


def _bind_msg(name: str, value: str) -> tuple[bytes, bytes]:
    v = value.encode()
    return (b"B", b"\0" + name.encode() + b"\0" + struct.pack("!HHI", 0, 1, len(v)) + v +
            struct.pack("!H", 0))


_DESCRIBE_EXEC = [(b"D", b"P\0"), (b"E", b"\0\0\0\0\0"), (b"S", b"")]
_EXEC = [(b"E", b"\0\0\0\0\0"), (b"S", b"")]


def case_reprepare_after_type_change(pg):
    """Issue 19 item 3: after ALTER TABLE t ALTER COLUMN name TYPE int, a
    brand-new connection that prepares INSERT INTO t(name) VALUES ($1) again
    gets what a direct connection gets: with the parameter type left to the
    server (0) it works, with text (25) the statement fails with 42804. On a
    transaction pool of 1, where sqlmux used to answer that Parse itself from
    the server statement prepared before the DDL, for ever. The DDL runs
    through the pool (then sqlmux sends the Parse to the server again: exact
    parity) and on the server directly (sqlmux learns it from the error of
    the first Bind: a client that describes its portal, as libpq's
    PQexecPrepared does, gets its rows; an explicit text parameter fails at
    that Bind rather than at the Parse, once). Clients prepare the libpq way
    (Parse, Sync; then Bind, Describe portal, Execute, Sync), the raw way and
    with psycopg 3."""
    import psycopg
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        for via in ("pool", "server"):
            t = f"rp_{via}"
            ins = f"INSERT INTO {t}(name) VALUES ($1)"
            pg.psql(f"DROP TABLE IF EXISTS {t}; CREATE TABLE {t}(name text); ALTER TABLE {t} OWNER TO app",
                    db="appdb")
            # Before the DDL: both forms prepared and used (shared on the one
            # server connection), and psycopg 3's own.
            for types in ([0], [25]):
                r = mux.raw()
                check_eq(_pg_msgs(r, [_parse_msg("s", ins, types), (b"S", b"")]), ["1", "Z"],
                         f"{via}: Parse {types} before the DDL")
                check_eq(_pg_msgs(r, [_bind_msg("s", "a")] + _DESCRIBE_EXEC), ["2", "n", "C", "Z"],
                         f"{via}: insert {types} before the DDL")
                r.close()
            with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) as c:
                c.execute(f"INSERT INTO {t}(name) VALUES (%s)", ("b",))
            alter = f"ALTER TABLE {t} ALTER COLUMN name TYPE int USING NULL"
            if via == "server":
                pg.psql(alter, db="appdb")
            else:
                with psycopg.connect(mux.dsn(), autocommit=True) as c:
                    c.execute(alter)
            for attempt in range(2):
                first_unseen = via == "server" and attempt == 0 and not mux.direct
                # Parameter type left to the server: now int; '5' goes in.
                r = mux.raw()
                check_eq(_pg_msgs(r, [_parse_msg("s", ins, [0]), (b"S", b"")]), ["1", "Z"],
                         f"{via}: Parse [0] after the DDL, attempt {attempt}")
                # (The Bind alone first: the server's error for it, the plan
                # being stale, must not reach the client before its Sync does.)
                check_eq(_pg_msgs(r, [_bind_msg("s", "5")] + _DESCRIBE_EXEC, pause=0.3),
                         ["2", "n", "C", "Z"], f"{via}: insert [0] after the DDL, attempt {attempt}")
                check_eq(_pg_msgs(r, [_bind_msg("s", "6")] + _DESCRIBE_EXEC), ["2", "n", "C", "Z"],
                         f"{via}: insert [0] again, attempt {attempt}")
                r.close()
                # Parameter typed text: the Parse itself fails, as on PostgreSQL
                # (after DDL sqlmux did not see: at the first Bind, once).
                r = mux.raw()
                if first_unseen:
                    check_eq(_pg_msgs(r, [_parse_msg("s", ins, [25]), (b"S", b"")]), ["1", "Z"],
                             f"{via}: Parse [25] after unseen DDL")
                    check_eq(_pg_msgs(r, [_bind_msg("s", "7")] + _DESCRIBE_EXEC), ["E42804", "Z"],
                             f"{via}: Bind [25] after unseen DDL")
                else:
                    check_eq(_pg_msgs(r, [_parse_msg("s", ins, [25]), (b"S", b"")]), ["E42804", "Z"],
                             f"{via}: Parse [25] after the DDL, attempt {attempt}")
                    check_eq(_pg_msgs(r, [_bind_msg("s", "7")] + _DESCRIBE_EXEC), ["E26000", "Z"],
                             f"{via}: Bind of the failed statement, attempt {attempt}")
                r.close()
                r = mux.raw()
                check_eq(_pg_msgs(r, [_parse_msg("s", ins, [25]), _bind_msg("s", "7")] + _EXEC),
                         ["E42804", "Z"], f"{via}: Parse [25] + Bind in one go, attempt {attempt}")
                r.close()
                with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) as c:
                    for v in ("8", "9"):
                        cur = c.execute(f"INSERT INTO {t}(name) VALUES (%s)", (v,))
                        check_eq(cur.statusmessage, "INSERT 0 1", f"{via}: psycopg 3 after the DDL")
            got = pg.psql(f"SELECT count(*) FROM {t} WHERE name IS NOT NULL", db="appdb").strip()
            check_eq(got, "8", f"{via}: rows inserted after the DDL")
        mux.assert_serving()


def case_reprepare_asyncpg(pg):
    """Issue 19 item 3 with asyncpg (Parse, Describe statement, Sync; then
    Bind, Execute, Sync) on a transaction pool of 1: after ALTER COLUMN TYPE,
    run through the pool or on the server directly, a new connection
    prepares the same INSERT and SELECT again and gets the new types, as
    from PostgreSQL; a connection that prepared them before gets an error
    for its old statements (PostgreSQL's 42804 and 42883 directly; through
    sqlmux 0A000, on which asyncpg prepares them again). DDL through the pool
    is seen at once; DDL on the server directly is learned from those
    errors (asyncpg has a statement's parameters described from the old
    preparation, which the server does not revalidate for that, so before a
    Bind of the old one failed sqlmux cannot tell; see README)."""
    import asyncpg
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        for via in ("pool", "server"):
            t = f"rpa_{via}"
            pg.psql(f"DROP TABLE IF EXISTS {t}; CREATE TABLE {t}(name text); ALTER TABLE {t} OWNER TO app",
                    db="appdb")
            ins = f"INSERT INTO {t}(name) VALUES ($1)"
            sel = f"SELECT name FROM {t} WHERE name = $1"
            log(f"DDL {via == 'pool' and 'through the pool' or 'on the server'}")

            async def main():
                old = await asyncpg.connect(mux.url())
                await old.execute(ins, "x")
                check_eq(await old.fetchval(sel, "x"), "x", f"{via}: before the DDL")
                alter = f"ALTER TABLE {t} ALTER COLUMN name TYPE int USING length(name)"
                if via == "server":
                    await asyncio.to_thread(pg.psql, alter, "appdb")
                else:
                    c = await asyncpg.connect(mux.url())
                    await c.execute(alter)
                    await c.close()
                async def new_connections():
                    for i in range(2):
                        new = await asyncpg.connect(mux.url())
                        await new.execute(ins, 5 + i)
                        check_eq(await new.fetchval(sel, 5 + i), 5 + i, f"{via}: new connection {i}")
                        check_eq(await new.fetchval(sel, 1), 1, f"{via}: the old row, now int")
                        await new.close()

                if via == "pool":
                    await new_connections()  # sqlmux saw the DDL: the Parses go to the server
                # The old statements: PostgreSQL fails them with its error
                # every time. Through sqlmux the first failure is the
                # server's too; after it asyncpg is told "cached plan must
                # not change result type" (0A000), as for any stale
                # statement, prepares them again by itself, and then fails to
                # encode "y" for the int parameter: an error either way.
                for k in range(2):
                    try:
                        await old.execute(ins, "y")
                        fail(f"{via}: the INSERT prepared before the DDL worked")
                    except asyncpg.exceptions.DatatypeMismatchError as e:
                        check(mux.direct or k == 0, f"{via}: {e!r} through sqlmux, again")
                        check("is of type integer but expression is of type text" in str(e),
                              f"{via}: {e}")
                    except asyncpg.exceptions.DataError as e:
                        check(not mux.direct, f"{via}: {e!r} from PostgreSQL")
                        check("invalid input for query argument $1" in str(e), f"{via}: {e}")
                    try:
                        await old.fetchval(sel, "x")
                        fail(f"{via}: the SELECT prepared before the DDL worked")
                    except asyncpg.exceptions.UndefinedFunctionError as e:
                        check(mux.direct or k == 0, f"{via}: {e!r} through sqlmux, again")
                        check("operator does not exist: integer = text" in str(e), f"{via}: {e}")
                    except asyncpg.exceptions.DataError as e:
                        check(not mux.direct, f"{via}: {e!r} from PostgreSQL")
                # Told to prepare them again, it gets the new types.
                await old.reload_schema_state()
                await old.execute(ins, 3)
                check_eq(await old.fetchval(sel, 3), 3, f"{via}: the old connection after re-preparing")
                if via == "server":
                    await new_connections()  # sqlmux learned it from those errors
                await old.close()
            asyncio.run(main())
            got = pg.psql(f"SELECT string_agg(name::text, ',' ORDER BY name) FROM {t}", db="appdb").strip()
            check_eq(got, "1,3,5,6", f"{via}: rows")
        mux.assert_serving()


def case_reprepare_bounded(pg):
    """Issue 19 item 3: every DDL through the pool names new server
    statements; the ones they supersede stay for the clients that prepared
    them and leave with the connection's LRU, so the server never holds
    more than max_prepared_statements however many schema changes pass."""
    require_sqlmux("max_prepared_statements")
    import psycopg
    pg.psql("DROP TABLE IF EXISTS rb; CREATE TABLE rb(v int); INSERT INTO rb VALUES (1);"
            "ALTER TABLE rb OWNER TO app", db="appdb")
    with Sqlmux(pg, mode="transaction", size=1, max_prepared_statements=4) as mux:
        with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) as old:
            check_eq(old.execute("SELECT v, %s::int FROM rb", (0,)).fetchone(), (1, 0), "before")
            for i in range(12):
                typ = ("bigint", "numeric", "text")[i % 3]
                old.execute(f"ALTER TABLE rb ALTER COLUMN v TYPE {typ} USING v::{typ}")
                with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) as c:
                    got = c.execute("SELECT v, %s::int FROM rb", (i,)).fetchone()
                    want = {"bigint": 1, "numeric": 1, "text": "1"}[typ]
                    check_eq(got, (want, i), f"round {i} ({typ})")
                    check_eq(type(got[0]).__name__, type(want).__name__ if typ != "numeric" else "Decimal",
                             f"round {i}: the new column type")
                    n = c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
                    check(n <= 4, f"round {i}: {n} statements prepared on the server connection")
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_asyncpg_default_cache, case_sqlalchemy_orm_asyncpg,
                         case_psycopg3_prepared_pipeline, case_pgbench_prepared, case_libpq_prepared,
                         case_ddl_during_traffic, case_ddl_transparent_retry, case_search_path_isolation, case_listen_notify,
                         case_statement_names, case_50000_parameters,
                         case_reprepare_after_type_change, case_reprepare_asyncpg,
                         case_reprepare_bounded], timeout=400)
