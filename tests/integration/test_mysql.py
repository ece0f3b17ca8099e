#!/usr/bin/python3
"""MySQL clients through sqlmux's mysql listener, with a throwaway MariaDB
behind it (mysql_harness.MariaDbServer).

Most cases run in session and in transaction mode: the mariadb CLI,
PyMySQL (CRUD, error codes, LOAD DATA LOCAL INFILE, COM_PING), aiomysql
(300 tasks on a pool of 100 client connections over a sqlmux pool of 4,
each checking its own rows), mysqlclient (multi-statements, several result
sets, COM_CHANGE_USER), SQLAlchemy asyncio ORM with autoincrement ids, a
20 MiB blob, session state that must follow a client (and not leak to
others) in transaction mode, the server killing a backend (idle, mid-query,
KILL QUERY), libmariadb's server-side prepared statements
(mysql_stmt_client.c) and sysbench oltp_read_write with --db-ps-mode=auto.
Sqlmux-only: pool wait timeout (1040) and how many server connections
clients leave behind (multiplexing).

    SQLMUX_BIN=build/sqlmux /usr/bin/python3 tests/integration/test_mysql.py [case-filter]
    SQLMUX_MY_DIRECT=1 /usr/bin/python3 tests/integration/test_mysql.py   # clients to MariaDB itself

MYSQL_STMT_CLIENT: the built mysql_stmt_client (default build/tests/integration/)."""

import asyncio
import contextlib
import hashlib
import os
import random
import re
import subprocess
import tempfile
import threading
import time

import MySQLdb
import MySQLdb.constants.CLIENT
import pymysql

from harness import *
from mysql_harness import *

MODES = ["direct"] if MY_DIRECT else ["session", "transaction"]
STMT_CLIENT = os.environ.get("MYSQL_STMT_CLIENT") or os.path.join(REPO, "build", "tests", "integration",
                                                                   "mysql_stmt_client")
# A client whose server connection dies: lost connection, gone away (the
# client library's own), connection killed, server shutdown, aborting
# connection (what a proxy can send before closing).
LOST = (2013, 2006, 1927, 1053, 1184)


@contextlib.contextmanager
def mux_for(my, mode, size=4, **opts):
    with Sqlmux(None, my=my, mode=mode, size=size, **opts) as mux:
        yield mux


def connect(mux, **kw):
    """PyMySQL to the mysql listener; no single read or write waits > 30 s."""
    kw.setdefault("read_timeout", 30)
    kw.setdefault("write_timeout", 30)
    return mux.my_connect(**kw)


def assert_my_serving(mux, what="a new MySQL client is served"):
    if not mux.running():
        fail(f"{what}: sqlmux is not running\n{mux.log_tail(40)}")
    try:
        c = connect(mux, autocommit=True)
        try:
            check_eq(one(c, "SELECT 41 + 1"), 42, what)
        finally:
            c.close()
    except pymysql.MySQLError as e:
        fail(f"{what}: {type(e).__name__}: {e}")


def churn(mux, clients=3, rounds=4):
    """Other clients running short queries (so a transaction-mode client is
    likely to get another server connection next time); each checks it sees
    none of the session state the test set elsewhere."""
    for _ in range(rounds):
        cs = [connect(mux, autocommit=True) for _ in range(clients)]
        for c in cs:
            row = q(c, "SELECT @@time_zone, @v, DATABASE(), @@character_set_client")[0]
            check_eq(row, ("SYSTEM", None, "appdb", "utf8mb4"), "another client's session state (leak?)")
        for c in cs:
            c.close()


# ---------------------------------------------------------------------------


def case_cli(my):
    """The mariadb CLI: -e with one and with several statements, a script on
    stdin with an error (the CLI prints the server's code and line), and a
    login that names no database (user app's default_pool)."""
    for mode in MODES:
        with mux_for(my, mode) as mux:
            base = ["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{mux.my_port}", "-uapp", "-papppass",
                    "--connect-timeout=10", "-N", "-B"]

            def cli(*args, stdin=None, db="appdb"):
                return subprocess.run(base + ([db] if db else []) + list(args), input=stdin,
                                      capture_output=True, text=True, timeout=60)

            r = cli("-e", "SELECT 1 + 1")
            check(r.returncode == 0, f"{mode}: mariadb -e failed: {r.stderr}")
            check_eq(r.stdout.strip(), "2", f"{mode}: SELECT 1 + 1")
            t = f"cli_{mode}"
            r = cli("-e", f"DROP TABLE IF EXISTS {t}; CREATE TABLE {t}(a INT); INSERT INTO {t} VALUES (1),(2),(3);"
                          f" SELECT SUM(a) FROM {t}; SELECT COUNT(*), DATABASE() FROM {t}; DROP TABLE {t}")
            check(r.returncode == 0, f"{mode}: batch -e failed: {r.stderr}")
            check_eq(r.stdout.split(), ["6", "3", "appdb"], f"{mode}: batch output")
            script = "SELECT 'a';\nSELECT 'b';\nSELEKT 3;\nSELECT 'not reached';\n"
            r = cli(stdin=script)
            check(r.returncode == 1, f"{mode}: script with a syntax error: rc {r.returncode}")
            check_eq(r.stdout.split(), ["a", "b"], f"{mode}: output before the error")
            check(re.search(r"ERROR 1064 \(42000\) at line 3", r.stderr) is not None,
                  f"{mode}: CLI error text: {r.stderr.strip()}")
            r = cli("-e", "SELECT 'nodb', 7 * 6", db=None)
            check(r.returncode == 0, f"{mode}: login naming no database: {r.stderr}")
            check_eq(r.stdout.split(), ["nodb", "42"], f"{mode}: query without a database")
            assert_my_serving(mux)


def case_pymysql_crud_and_errors(my):
    """CRUD with PyMySQL (autocommit off, as its default): rowcounts,
    lastrowid, rollback, executemany; errors relayed with their codes and
    SQLSTATEs, the connection usable after each."""
    for mode in MODES:
        with mux_for(my, mode) as mux:
            c = connect(mux)
            tag = f"crud-{mode}"
            with c.cursor() as cur:
                check_eq(cur.execute("INSERT INTO crud(name, qty) VALUES (%s, %s)", (tag, 1)), 1, "insert rowcount")
                first = cur.lastrowid
                check(first > 0, f"lastrowid {first}")
                check_eq(cur.executemany("INSERT INTO crud(name, qty) VALUES (%s, %s)",
                                         [(tag, i) for i in range(2, 6)]), 4, "executemany rowcount")
            c.commit()
            check_eq(one(c, "SELECT COUNT(*) FROM crud WHERE name = %s", (tag,)), 5, "rows after commit")
            check_eq(one(c, "SELECT name FROM crud WHERE id = %s", (first,)), tag, "row by lastrowid")
            with c.cursor() as cur:
                check_eq(cur.execute("UPDATE crud SET qty = qty * 10 WHERE name = %s", (tag,)), 5, "update rowcount")
                check_eq(cur.execute("DELETE FROM crud WHERE name = %s AND qty = 10", (tag,)), 1, "delete rowcount")
            c.rollback()
            check_eq(one(c, "SELECT SUM(qty) FROM crud WHERE name = %s", (tag,)), 15, "sum after rollback")
            e = expect_my_error(lambda: q(c, "INSERT INTO crud(id, name, qty) VALUES (%s, 'dup', 0)", (first,)),
                                1062, "Duplicate entry", f"{mode}: duplicate key")
            check_eq(one(c, "SELECT 1"), 1, "usable after 1062")
            expect_my_error(lambda: q(c, "SELECT * FROM no_such_table"), 1146, "doesn't exist", f"{mode}: 1146")
            expect_my_error(lambda: q(c, "SELECT nosuchcol FROM crud"), 1054, "Unknown column", f"{mode}: 1054")
            e = expect_my_error(lambda: q(c, "SELEC 1"), 1064, "SQL syntax", f"{mode}: syntax error")
            check(isinstance(e, pymysql.err.ProgrammingError), f"1064 as {type(e).__name__}")
            check_eq(one(c, "SELECT 'still here'"), "still here", "usable after errors")
            with c.cursor() as cur:
                cur.execute("DELETE FROM crud WHERE name = %s", (tag,))
                check_eq(cur.rowcount, 5, "cleanup rowcount (the update and delete were rolled back)")
            c.commit()
            c.close()
            assert_my_serving(mux)


def case_errors_at_login(my):
    """Unknown database -> 1049 (MariaDB itself says 1044 to a user without
    rights on that name), wrong password and unknown user -> 1045; then a
    good login still works."""
    for mode in MODES:
        with mux_for(my, mode) as mux:
            want_db = (1044,) if MY_DIRECT else (1049,)
            expect_my_error(lambda: connect(mux, db="no_such_db"), want_db, "no_such_db", f"{mode}: unknown db")
            expect_my_error(lambda: connect(mux, password="wrong"), 1045, "Access denied", f"{mode}: wrong password")
            expect_my_error(lambda: connect(mux, user="nobody", password="x"), 1045, "Access denied",
                            f"{mode}: unknown user")
            assert_my_serving(mux)


def case_aiomysql_concurrency(my):
    """300 tasks over an aiomysql pool of up to 100 connections through a
    sqlmux pool of 4: each inserts its rows in a transaction, checks
    lastrowid, reads them back and checks they are exactly its own."""
    import aiomysql

    tasks, per = 300, 3

    async def worker(pool, mode, t):
        token = f"{mode}-{t}-{random.getrandbits(48):012x}"
        async with pool.acquire() as c:
            async with c.cursor() as cur:
                await c.begin()
                ids = []
                for k in range(per):
                    await cur.execute("INSERT INTO tasks(owner, k, val) VALUES (%s, %s, %s)", (t, k, token))
                    ids.append(cur.lastrowid)
                await c.commit()
                await cur.execute("SELECT id, k, val FROM tasks WHERE owner = %s AND val = %s ORDER BY k",
                                  (t, token))
                got = await cur.fetchall()
                want = tuple((ids[k], k, token) for k in range(per))
                if tuple(got) != want:
                    raise TestFailure(f"task {t}: read back {got}, want {want}")
                await cur.execute("SELECT %s", (token,))
                if (await cur.fetchone())[0] != token:
                    raise TestFailure(f"task {t}: echo mismatch")
            await asyncio.sleep(random.random() * 0.005)

    async def run(mux, mode):
        pool = await aiomysql.create_pool(host=mux.host, port=mux.my_port, user=MY_USER, password=MY_PASSWORD,
                                          db=mux.dbname("appdb"), minsize=10, maxsize=100, connect_timeout=30,
                                          autocommit=True)
        try:
            res = await asyncio.wait_for(asyncio.gather(*(worker(pool, mode, t) for t in range(tasks)),
                                                        return_exceptions=True), 120)
        finally:
            pool.close()
            await asyncio.wait_for(pool.wait_closed(), 30)
        return [(i, r) for i, r in enumerate(res) if isinstance(r, BaseException)]

    for mode in MODES:
        my.sql("TRUNCATE TABLE appdb.tasks")
        with mux_for(my, mode, size=4 if mode == "transaction" else 110) as mux:
            with timed(f"{mode}: {tasks} aiomysql tasks", 150) as tm:
                errors = asyncio.run(run(mux, mode))
            log(f"{mode}: {tasks} tasks in {tm['elapsed']:.1f}s, {len(errors)} failed")
            if errors:
                kinds = {}
                for i, e in errors:
                    kinds.setdefault(f"{type(e).__name__}: {e}"[:200], []).append(i)
                fail(f"{mode}: {len(errors)} tasks failed:\n  " + "\n  ".join(
                    f"{k} (tasks {v[:5]})" for k, v in list(kinds.items())[:8]))
            rows = my.sql("SELECT owner, COUNT(*), COUNT(DISTINCT val) FROM appdb.tasks GROUP BY owner")
            check_eq(len(rows), tasks, f"{mode}: owners with rows")
            bad = [r for r in rows if r[1] != per or r[2] != 1]
            check(not bad, f"{mode}: owners with lost, extra or mixed rows: {bad[:5]}")
            assert_my_serving(mux)


def case_mysqldb_multi_statements(my):
    """mysqlclient with CLIENT.MULTI_STATEMENTS: several statements in one
    COM_QUERY and their result sets through nextset(); a stored procedure's
    result sets; an error in the middle of a batch."""
    my.sql("CREATE PROCEDURE appdb.two_sets(IN n INT) BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    for mode in MODES:
        with mux_for(my, mode) as mux:
            c = MySQLdb.connect(host=mux.host, port=mux.my_port, user=MY_USER, passwd=MY_PASSWORD,
                                db=mux.dbname("appdb"), connect_timeout=10, read_timeout=30,
                                client_flag=MySQLdb.constants.CLIENT.MULTI_STATEMENTS)
            c.autocommit(True)
            cur = c.cursor()
            cur.execute("SELECT 1; SELECT 2, 3; DO 0; SELECT 'four' UNION ALL SELECT 'five'")
            sets = [cur.fetchall()]
            while cur.nextset():
                sets.append(cur.fetchall() if cur.description else "no rows")
            check_eq(sets, [((1,),), ((2, 3),), "no rows", (("four",), ("five",))], f"{mode}: result sets")
            cur.execute("CALL two_sets(%s)", (41,))
            sets = [cur.fetchall()]
            while cur.nextset():
                if cur.description:
                    sets.append(cur.fetchall())
            check_eq(sets, [((41,),), ((42, "x"),)], f"{mode}: procedure result sets")
            cur.close()
            cur = c.cursor()
            cur.execute("SELECT 'before'; SELECT nosuchcol FROM crud; SELECT 'after'")
            check_eq(cur.fetchall(), (("before",),), f"{mode}: first set before the error")
            expect_my_error(cur.nextset, 1054, "nosuchcol", f"{mode}: error in the second statement")
            cur.close()
            cur = c.cursor()
            cur.execute("SELECT 'usable'")
            check_eq(cur.fetchall(), (("usable",),), f"{mode}: after the failed batch")
            c.close()
            assert_my_serving(mux)


def case_sqlalchemy_orm(my):
    """SQLAlchemy asyncio (mysql+aiomysql) ORM: 40 concurrent sessions each
    add 5 objects; every autoincrement id comes back set, unique, and names
    its own object."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import declarative_base

    Base = declarative_base()

    class Item(Base):
        __tablename__ = "orm_items"
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
        name = sa.Column(sa.String(80), nullable=False)

    async def session_work(eng, mode, s):
        async with AsyncSession(eng, expire_on_commit=False) as sess:
            items = [Item(name=f"{mode}-{s}-{k}") for k in range(5)]
            sess.add_all(items)
            await sess.commit()
            got = {}
            for it in items:
                if it.id is None:
                    raise TestFailure(f"session {s}: no id for {it.name}")
                row = (await sess.execute(sa.select(Item.name).where(Item.id == it.id))).scalar_one()
                got[it.id] = row
            for it in items:
                if got[it.id] != it.name:
                    raise TestFailure(f"session {s}: id {it.id} names {got[it.id]!r}, want {it.name!r}")
            return [it.id for it in items]

    async def run(mux, mode):
        url = f"mysql+aiomysql://{MY_USER}:{MY_PASSWORD}@{mux.host}:{mux.my_port}/{mux.dbname('appdb')}"
        eng = create_async_engine(url, pool_size=20, max_overflow=0, pool_timeout=60)
        try:
            async with eng.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            res = await asyncio.wait_for(asyncio.gather(*(session_work(eng, mode, s) for s in range(40)),
                                                        return_exceptions=True), 90)
        finally:
            await eng.dispose()
        return res

    for mode in MODES:
        with mux_for(my, mode, size=4 if mode == "transaction" else 25) as mux:
            res = asyncio.run(run(mux, mode))
            errors = [r for r in res if isinstance(r, BaseException)]
            check(not errors, f"{mode}: {len(errors)} sessions failed, first: {errors[:1]!r}")
            ids = [i for r in res for i in r]
            check_eq(len(set(ids)), 200, f"{mode}: distinct ids")
            n = my.scalar("SELECT COUNT(*) FROM appdb.orm_items WHERE name LIKE %s", (f"{mode}-%",))
            check_eq(n, 200, f"{mode}: rows on the server")
            assert_my_serving(mux)


def case_blob_20mib(my):
    """A 20 MiB LONGBLOB written and read back (packets over 16 MiB are
    split); SHA-256 compared on both sides."""
    data = random.randbytes(20 << 20)
    digest = hashlib.sha256(data).hexdigest()
    for mode in MODES:
        with mux_for(my, mode) as mux:
            c = connect(mux, autocommit=True, max_allowed_packet=64 << 20, read_timeout=60, write_timeout=60)
            with timed(f"{mode}: 20 MiB round trip", 60):
                with c.cursor() as cur:
                    cur.execute("REPLACE INTO blobs(id, b) VALUES (%s, %s)", (1, data))
                check_eq(one(c, "SELECT SHA2(b, 256) FROM blobs WHERE id = 1"), digest, f"{mode}: server-side sha256")
                back = one(c, "SELECT b FROM blobs WHERE id = 1")
            check_eq(len(back), len(data), f"{mode}: length read back")
            check_eq(hashlib.sha256(back).hexdigest(), digest, f"{mode}: sha256 read back")
            check_eq(one(c, "SELECT 'after'"), "after", f"{mode}: usable after the blob")
            c.close()
            assert_my_serving(mux)


def case_session_state_follows_client(my):
    """Session state set by a client stays its own across later statements
    (transaction mode: sqlmux must keep or restore it, or pin the client)
    while other clients run in between and never see it: time_zone, a user
    variable, USE and COM_INIT_DB, SET NAMES."""
    for mode in MODES:
        # transaction mode: few server connections, so the churn reuses them;
        # session mode: one for this client and each churning one
        with mux_for(my, mode, size=2 if mode == "transaction" else 6) as mux:
            c = connect(mux, autocommit=True)
            q(c, "SET time_zone = '+05:00'")
            churn(mux)
            check_eq(one(c, "SELECT @@time_zone"), "+05:00", f"{mode}: time_zone")
            q(c, "SET @v = 42")
            churn(mux)
            check_eq(one(c, "SELECT @v"), 42, f"{mode}: user variable")
            q(c, "USE otherdb")
            churn(mux)
            check_eq(one(c, "SELECT DATABASE()"), "otherdb", f"{mode}: USE otherdb")
            check_eq(one(c, "SELECT COUNT(*) FROM marker"), 1, f"{mode}: table of otherdb")
            c.select_db("appdb")  # COM_INIT_DB
            churn(mux)
            check_eq(one(c, "SELECT DATABASE()"), "appdb", f"{mode}: COM_INIT_DB appdb")
            c.select_db("otherdb")
            churn(mux)
            check_eq(one(c, "SELECT DATABASE()"), "otherdb", f"{mode}: COM_INIT_DB otherdb")
            q(c, "SET NAMES latin1")
            churn(mux)
            check_eq(q(c, "SELECT @@character_set_client, @@character_set_results, @@character_set_connection")[0],
                     ("latin1", "latin1", "latin1"), f"{mode}: SET NAMES latin1")
            check_eq(q(c, "SELECT @@time_zone, @v")[0], ("+05:00", 42), f"{mode}: all of it still there")
            c.close()
            assert_my_serving(mux)


def case_pool_wait_timeout(my):
    """Pool of 1, query_wait_timeout 1s: while one client holds the server
    connection (an open transaction; in session mode its session), another
    gets 1040 within a few seconds; then it is served again."""
    require_sqlmux_my("pool wait timeout")
    for mode in MODES:
        with mux_for(my, mode, size=1, query_wait_timeout="1s") as mux:
            holder = connect(mux)
            holder.begin()
            q(holder, "SELECT COUNT(*) FROM crud")
            t0 = time.monotonic()

            def waiter():
                c = connect(mux, autocommit=True)
                try:
                    q(c, "SELECT 1")
                finally:
                    c.close()

            expect_my_error(waiter, 1040, None, f"{mode}: waiting client")
            el = time.monotonic() - t0
            check(0.8 <= el <= 6, f"{mode}: 1040 after {el:.1f}s (query_wait_timeout 1s)")
            holder.commit()
            holder.close()
            assert_my_serving(mux, f"{mode}: served once the holder is gone")


def case_multiplexing(my):
    """50 clients that each ran a query: in transaction mode (pool 2) they
    leave at most 2 server connections; in session mode one each."""
    require_sqlmux_my("server connections per client")
    for mode, size in (("transaction", 2), ("session", 60)):
        with mux_for(my, mode, size=size) as mux:
            cs = []
            for i in range(50):
                c = connect(mux, autocommit=True)
                check_eq(one(c, "SELECT %s + 1", (i,)), i + 1, f"{mode}: client {i}")
                cs.append(c)
            n = my.app_sessions()
            log(f"{mode}: {n} app server connections for 50 clients")
            if mode == "transaction":
                check(1 <= n <= 2, f"transaction mode, pool 2: {n} server connections for 50 clients")
            else:
                check(n >= 50, f"session mode: {n} server connections for 50 connected clients")
            for c in cs:
                c.close()


def case_prepared_statements_c(my):
    """libmariadb's mysql_stmt_* (prepare, bind, execute many times, long
    data, cursor fetch, reset, close) from 8 processes at once."""
    check(os.access(STMT_CLIENT, os.X_OK), f"{STMT_CLIENT} not built (MYSQL_STMT_CLIENT; cmake target "
                                           "mysql_stmt_client, needs libmariadb-dev)")
    for mode in MODES:
        with mux_for(my, mode, size=3) as mux:
            procs = [subprocess.Popen([STMT_CLIENT, mux.host, str(mux.my_port), MY_USER, MY_PASSWORD,
                                       mux.dbname("appdb"), f"{mode}-c{i}", "25"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for i in range(8)]
            bad = []
            for i, p in enumerate(procs):
                try:
                    out, err = p.communicate(timeout=90)
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, err = p.communicate()
                    err += " (timed out after 90s)"
                if p.returncode != 0 or out.strip() != f"ok {mode}-c{i} 25":
                    bad.append(f"c{i}: rc {p.returncode}: {err.strip()[:300]}")
            check(not bad, f"{mode}: prepared-statement clients failed:\n  " + "\n  ".join(bad))
            check_eq(my.scalar("SELECT COUNT(*) FROM appdb.ms WHERE owner LIKE %s", (f"{mode}-%",)), 200,
                     f"{mode}: rows")
            assert_my_serving(mux)


def case_json_columns_c(my):
    """libmariadb (mariadb_field_attr) reads MariaDB's extended metadata
    through sqlmux as from MariaDB itself: JSON columns and JSON_OBJECT()
    have the format name json, a POINT column the type name point, in text
    and prepared-statement results (without the extended metadata a JSON
    column is a plain BLOB to the client)."""
    check(os.access(STMT_CLIENT, os.X_OK), f"{STMT_CLIENT} not built")
    my.sql("CREATE TABLE IF NOT EXISTS json_c (id INT PRIMARY KEY, doc JSON, pt POINT)", db="appdb")
    my.sql("REPLACE INTO json_c VALUES (1, JSON_OBJECT('a', 1), POINT(1, 2))", db="appdb")
    sql = "SELECT id, doc, pt, JSON_OBJECT('k', id) AS j FROM json_c"

    def types(port, db):
        r = subprocess.run([STMT_CLIENT, "127.0.0.1", str(port), MY_USER, MY_PASSWORD, db, "--types", sql],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"--types: {r.stderr.strip()}")
        return r.stdout.splitlines()

    want = types(my.port, "appdb")
    for how in ("text", "stmt"):
        check(f"{how} doc 252 - json" in want, f"direct: {want}")
        check(f"{how} pt 255 point -" in want, f"direct: {want}")
        check(any(l.startswith(f"{how} j ") and l.endswith(" json") for l in want), f"direct: {want}")
    for mode in MODES:
        with mux_for(my, mode, size=1) as mux:
            for i in range(2):
                check_eq(types(mux.my_port, mux.dbname("appdb")), want, f"{mode}, round {i}")


def case_load_data_local(my):
    """LOAD DATA LOCAL INFILE through PyMySQL (local_infile=True): a small
    CSV and one of ~1.5 MB (many packets); a missing file fails on the
    client side and the connection goes on."""
    d = tempfile.mkdtemp(prefix="smx-it-csv-")
    try:
        small, big = os.path.join(d, "small.csv"), os.path.join(d, "big.csv")
        with open(small, "w") as f:
            f.write("".join(f"{i},name {i}\n" for i in range(10)))
        with open(big, "w") as f:
            f.write("".join(f"{i},{'x' * 20} row {i}\n" for i in range(50000)))
        load = ("LOAD DATA LOCAL INFILE %s INTO TABLE ld FIELDS TERMINATED BY ',' "
                "LINES TERMINATED BY '\\n' (n, s)")
        for mode in MODES:
            my.sql("TRUNCATE TABLE appdb.ld")
            with mux_for(my, mode) as mux:
                c = connect(mux, autocommit=True, local_infile=True)
                with c.cursor() as cur:
                    check_eq(cur.execute(load, (small,)), 10, f"{mode}: small file rows")
                check_eq(q(c, "SELECT n, s FROM ld ORDER BY n LIMIT 2"), ((0, "name 0"), (1, "name 1")),
                         f"{mode}: loaded rows")
                q(c, "TRUNCATE TABLE ld")
                with c.cursor() as cur:
                    check_eq(cur.execute(load, (big,)), 50000, f"{mode}: big file rows")
                check_eq(q(c, "SELECT COUNT(*), SUM(n) FROM ld")[0], (50000, sum(range(50000))), f"{mode}: big")
                expect_my_error(lambda: q(c, load, (os.path.join(d, "missing.csv"),)), 1017, "find file",
                                f"{mode}: missing file")
                check_eq(one(c, "SELECT 'after'"), "after", f"{mode}: usable after a failed LOAD DATA")
                c.close()
                assert_my_serving(mux)
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


def case_ping_and_change_user(my):
    """COM_PING on an idle connection; COM_CHANGE_USER (mysqlclient's
    change_user) to another user and database: the session is reset (user
    variables gone), the user and database are the new ones (through sqlmux:
    another pool); a wrong password gets 1045."""
    my.sql("CREATE DATABASE IF NOT EXISTS otherdb")
    my.sql("GRANT ALL ON otherdb.* TO 'app'@'%'")

    def add_pool(cfg):
        other = dict(next(p for p in cfg["pool"] if p["protocol"] == "mysql"))
        other["name"] = "otherdb"
        other["database"] = "otherdb"
        cfg["pool"].append(other)

    for mode in MODES:
        with mux_for(my, mode, tweak=add_pool) as mux:
            c = connect(mux, autocommit=True)
            c.ping(reconnect=False)
            q(c, "SELECT 1")
            time.sleep(0.2)
            c.ping(reconnect=False)
            c.close()
            m = MySQLdb.connect(host=mux.host, port=mux.my_port, user=MY_USER, passwd=MY_PASSWORD,
                                db=mux.dbname("appdb"), connect_timeout=10, read_timeout=30)
            m.autocommit(True)
            cur = m.cursor()
            cur.execute("SET @v = 1")
            cur.execute("SELECT @v")
            check_eq(cur.fetchone(), (1,), f"{mode}: user variable before change_user")
            m.ping()
            m.change_user(MY_USER, MY_PASSWORD, "otherdb")
            cur = m.cursor()
            cur.execute("SELECT @v, SUBSTRING_INDEX(CURRENT_USER(), '@', 1), DATABASE()")
            check_eq(cur.fetchone(), (None, MY_USER, "otherdb"), f"{mode}: after change_user")
            expect_my_error(lambda: m.change_user(MY_USER, "wrong", "appdb"), 1045, "Access denied",
                            f"{mode}: change_user with a wrong password")
            m.close()
            assert_my_serving(mux)


def _backend_of(my, marker):
    for s in my.sessions():
        if s["info"] and marker in s["info"]:
            return s["id"]
    return None


def _run_in_thread(c, sql):
    box = {}

    def run():
        t0 = time.monotonic()
        try:
            box["rows"] = q(c, sql)
        except Exception as e:  # noqa: BLE001
            box["error"] = e
        box["elapsed"] = time.monotonic() - t0

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, box


def _kill_running(my, c, mode, query_only):
    marker = f"kill-me-{random.getrandbits(40):x}"
    th, box = _run_in_thread(c, f"SELECT /* {marker} */ SLEEP(5)")
    deadline = time.monotonic() + 4
    conn_id = None
    while conn_id is None and time.monotonic() < deadline:
        time.sleep(0.1)
        conn_id = _backend_of(my, marker)
    check(conn_id is not None, f"{mode}: the SLEEP never showed in the process list")
    my.kill(conn_id, query_only=query_only)
    th.join(35)
    check(not th.is_alive(), f"{mode}: the client never got an answer")
    return box


def case_backend_killed(my):
    """The server kills a client's connection: idle (session mode: the
    client gets an error next time; transaction mode: it may not own one),
    running SELECT SLEEP(5) (an error well before 5 s, then the connection
    is closed), KILL QUERY (1317, the connection goes on). A new client is
    served after each."""
    for mode in MODES:
        with mux_for(my, mode) as mux:
            # idle
            c = connect(mux, autocommit=True)
            q(c, "SELECT 1")
            for s in my.sessions():
                my.kill(s["id"])
            time.sleep(0.3)
            try:
                q(c, "SELECT 1")
                check(mode == "transaction" and not MY_DIRECT,
                      f"{mode}: a client whose server connection was killed ran a query without error")
                log(f"{mode}: idle client had no server connection to lose")
            except pymysql.MySQLError as e:
                check(my_errno(e) in LOST, f"{mode}: idle kill: {type(e).__name__}: {e}")
                expect_my_error(lambda: q(c, "SELECT 1"), LOST + (0,), None, f"{mode}: closed after the kill")
            c.close()
            assert_my_serving(mux, f"{mode}: after an idle backend was killed")
            # running
            c = connect(mux, autocommit=True)
            box = _kill_running(my, c, mode, query_only=False)
            check("error" in box, f"{mode}: SLEEP(5) killed but the client got rows {box.get('rows')}")
            check(my_errno(box["error"]) in LOST, f"{mode}: killed mid-query: {box['error']!r}")
            check(box["elapsed"] < 4.5, f"{mode}: the error came after {box['elapsed']:.1f}s")
            t0 = time.monotonic()
            expect_my_error(lambda: q(c, "SELECT 1"), LOST + (0,), None, f"{mode}: closed after the kill")
            check(time.monotonic() - t0 < 5, f"{mode}: noticing the closed connection took too long")
            c.close()
            assert_my_serving(mux, f"{mode}: after a running backend was killed")
            # KILL QUERY
            c = connect(mux, autocommit=True)
            box = _kill_running(my, c, mode, query_only=True)
            check(my_errno(box.get("error")) == 1317, f"{mode}: KILL QUERY: {box!r}")
            check_eq(one(c, "SELECT 'alive'"), "alive", f"{mode}: connection after KILL QUERY")
            c.close()
            assert_my_serving(mux)


def _sysbench(port, db, *args, timeout=120):
    cmd = ["sysbench", "oltp_read_write", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
           f"--mysql-user={MY_USER}", f"--mysql-password={MY_PASSWORD}", f"--mysql-db={db}", "--tables=4",
           "--table-size=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def case_sysbench_read_write(my):
    """sysbench oltp_read_write with server-side prepared statements
    (--db-ps-mode=auto), 4 threads, 10 s, 4 tables of 5,000 rows, through
    transaction mode (pool 4): no errors and no reconnects, except the
    deadlocks (1213) that its threads provoke among themselves, also
    directly against MariaDB (sysbench retries those; --verbosity=5 names
    each ignored error, so any other code fails)."""
    r = _sysbench(my.port, "appdb", "prepare")
    check(r.returncode == 0, f"sysbench prepare: {r.stdout[-1000:]}{r.stderr[-1000:]}")
    try:
        with mux_for(my, "transaction", size=4) as mux:
            r = _sysbench(mux.my_port, mux.dbname("appdb"), "--db-ps-mode=auto", "--threads=4", "--time=10",
                          "--report-interval=0", "--verbosity=5", "run", timeout=90)
            out = r.stdout + r.stderr
            codes = set(re.findall(r"Ignoring error (\d+)", out))
            tx = re.search(r"^\s*transactions:\s+(\d+)", out, re.M)
            ign = re.search(r"^\s*ignored errors:\s+(\d+)", out, re.M)
            rec = re.search(r"^\s*reconnects:\s+(\d+)", out, re.M)
            check(r.returncode == 0 and tx is not None, f"sysbench run failed (rc {r.returncode}):\n{out[-2000:]}")
            log(f"sysbench: {tx.group(1)} transactions, {ign.group(1) if ign else '?'} ignored errors, "
                f"{rec.group(1) if rec else '?'} reconnects")
            check(int(tx.group(1)) > 0, "sysbench: no transactions")
            check(ign is not None, f"sysbench: no 'ignored errors' line:\n{out[-1500:]}")
            check(codes <= {"1213"}, f"sysbench: ignored errors other than deadlocks: {sorted(codes)}\n"
                  + "\n".join(ln for ln in out.splitlines() if "Ignoring error" in ln and "1213" not in ln)[:1500])
            check(int(ign.group(1)) <= max(5, int(tx.group(1)) // 100), f"sysbench: {ign.group(1)} deadlocks")
            check(rec is not None and int(rec.group(1)) == 0, "sysbench: reconnects")
            check("FATAL" not in out and "ALERT" not in out, f"sysbench: {out[-1500:]}")
            assert_my_serving(mux)
    finally:
        _sysbench(my.port, "appdb", "cleanup")


def setup(my):
    my.sql_many([
        "CREATE TABLE crud (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64), qty INT)",
        "CREATE TABLE tasks (id BIGINT AUTO_INCREMENT PRIMARY KEY, owner INT, k INT, val VARCHAR(64), KEY (owner))",
        "CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)",
        "CREATE TABLE ms (owner VARCHAR(32), n INT, note VARCHAR(200), KEY (owner))",
        "CREATE TABLE ld (n INT, s VARCHAR(64))",
        "CREATE DATABASE otherdb",
        "CREATE TABLE otherdb.marker (x INT)",
        "INSERT INTO otherdb.marker VALUES (1)",
        "GRANT ALL PRIVILEGES ON otherdb.* TO 'app'@'%'",
        "GRANT ALL PRIVILEGES ON otherdb.* TO 'app'@'127.0.0.1'",
    ], db="appdb")


if __name__ == "__main__":
    run_cases(__file__, [case_cli, case_pymysql_crud_and_errors, case_errors_at_login, case_aiomysql_concurrency,
                         case_mysqldb_multi_statements, case_sqlalchemy_orm, case_blob_20mib,
                         case_session_state_follows_client, case_pool_wait_timeout, case_multiplexing,
                         case_prepared_statements_c, case_json_columns_c, case_load_data_local, case_ping_and_change_user,
                         case_backend_killed, case_sysbench_read_write],
              timeout=420, setup=setup, server=MariaDbServer, direct=MY_DIRECT)
