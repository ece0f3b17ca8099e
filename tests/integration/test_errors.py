#!/usr/bin/python3
"""Error cases: authentication methods and failures, unknown database,
protocol versions, SSLRequest, max_client_conn, query_wait_timeout, bad
startup packets and cancel keys, and `sqlmux --check-config`. Every case
checks what the client sees (SQLSTATE, message, closed connection) and that
sqlmux keeps serving another client afterwards."""

import asyncio
import re
import socket
import struct
import subprocess
import threading
import time

import psycopg2

from harness import *


def expect_startup_error(mux, user, db, password, sqlstate, message, what):
    r = RawPg(mux.host, mux.port)
    try:
        r.startup(user, mux.dbname(db), password)
    except PgError as e:
        check_eq(e.severity, "FATAL", f"{what}: severity")
        check_eq(e.sqlstate, sqlstate, f"{what}: SQLSTATE (message {e.message!r})")
        check_eq(e.message, message, f"{what}: message")
        check(r.at_eof(5), f"{what}: connection not closed after the FATAL error")
        return r
    finally:
        r.close()
    fail(f"{what}: startup succeeded (auth {r.auth_methods})")


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------


def case_scram_is_default(pg):
    with Sqlmux(pg) as mux:
        r = mux.raw()
        check_eq(r.auth_methods, ["sasl:SCRAM-SHA-256", "ok"], "auth exchange for a plaintext-password user")
        check(r.backend_pid is not None, "no BackendKeyData")
        for p in ("server_version", "client_encoding", "DateStyle", "TimeZone", "integer_datetimes",
                  "standard_conforming_strings"):
            check(p in r.params, f"ParameterStatus {p} missing (got {sorted(r.params)})")
        check_eq(r.status, "I", "ReadyForQuery status after startup")
        check_eq(r.scalar("SELECT current_user || '@' || current_database()"), "app@appdb", "identity")
        r.terminate()
        mux.assert_serving()


def _auth_users():
    return [
        {"name": "app", "password": "apppass"},
        {"name": "scramv", "password": scram_verifier("scram-secret")},
        {"name": "md5user", "password": "md5-secret", "auth": "md5"},
        {"name": "md5hashed", "password": md5_hash("hashed-secret", "md5hashed")},
        {"name": "clear", "password": "clear-secret", "auth": "password"},
        {"name": "scramexplicit", "password": "explicit-secret", "auth": "scram-sha-256"},
        {"name": "trusted", "password": "", "auth": "trust"},
    ]


def case_auth_methods(pg):
    require_sqlmux("per-user auth methods in sqlmux's config")

    def tweak(cfg):
        cfg["user"] = _auth_users()
        # Six wrong passwords below from one address: more than the failed-
        # login limit (tested in test_hostile.py).
        cfg["server"]["auth_failure_limit"] = 0

    cases = [
        ("app", "apppass", ["sasl:SCRAM-SHA-256", "ok"]),
        ("scramv", "scram-secret", ["sasl:SCRAM-SHA-256", "ok"]),
        ("scramexplicit", "explicit-secret", ["sasl:SCRAM-SHA-256", "ok"]),
        ("md5user", "md5-secret", ["md5", "ok"]),
        ("md5hashed", "hashed-secret", ["md5", "ok"]),
        ("clear", "clear-secret", ["password", "ok"]),
        ("trusted", None, ["ok"]),
    ]
    with Sqlmux(pg, tweak=tweak) as mux:
        for user, password, want in cases:
            try:
                r = mux.raw(user=user, password=password)
            except PgError as e:
                fail(f"{user}: login failed: {e}")
            check_eq(r.auth_methods, want, f"{user}: auth exchange")
            # The pool logs in to PostgreSQL as its configured user.
            check_eq(r.scalar("SELECT current_user"), "app", f"{user}: backend user")
            r.terminate()
            # libpq agrees
            c = psycopg2.connect(mux.dsn(user=user, password=password or ""))
            with c.cursor() as cur:
                cur.execute("SELECT 1")
                check_eq(cur.fetchone()[0], 1, f"{user}: psycopg2 query")
            c.close()
        for user, password, want in cases:
            if password is None:
                continue
            r = RawPg(mux.host, mux.port)
            try:
                r.startup(user, "appdb", password + "x")
                fail(f"{user}: wrong password accepted")
            except PgError as e:
                check_eq((e.severity, e.sqlstate, e.message),
                         ("FATAL", "28P01", f'password authentication failed for user "{user}"'),
                         f"{user}: wrong password")
                check_eq(r.auth_methods, want[:-1], f"{user}: auth exchange before the failure")
            finally:
                r.close()
            mux.assert_serving(user=user, password=password)


def case_wrong_password_and_unknown_user(pg):
    with Sqlmux(pg) as mux:
        a = expect_startup_error(mux, "app", "appdb", "wrong", "28P01",
                                 'password authentication failed for user "app"', "wrong password")
        b = expect_startup_error(mux, "nosuchuser", "appdb", "whatever", "28P01",
                                 'password authentication failed for user "nosuchuser"', "unknown user")
        # Same exchange for both: an unknown user is not revealed.
        check_eq(b.auth_methods, a.auth_methods, "auth exchange for an unknown user vs a wrong password")
        # libpq's view
        e = expect_error(lambda: psycopg2.connect(mux.dsn(password="wrong")), (None, "28P01"),
                         'password authentication failed for user "app"', what="psycopg2 wrong password")
        check("FATAL" in str(e), f"psycopg2 message lacks FATAL: {e}")
        mux.assert_serving()


NINE = "\u2168"  # ROMAN NUMERAL NINE: SASLprep (NFKC) makes it "IX"


def case_scram_saslprep_password(pg):
    """Issue 19: a password with a non-ASCII character is SASLprep'd on both
    sides of SCRAM, as PostgreSQL does. Users nine (SCRAM) and nineclear
    (cleartext auth, checked against the SCRAM verifier) are configured with
    the password U+2168; PostgreSQL roles of the same names have it too, and
    the pool has no fixed user, so sqlmux's server login (libpq) uses the
    client's configured password. psycopg 3 logs in with U+2168 and with "IX"
    (its SASLprep form), asyncpg with "IX"; "IX " is refused with 28P01."""
    import asyncpg
    import psycopg
    for role in ("nine", "nineclear"):
        pg.psql(f"DROP ROLE IF EXISTS {role}; SET password_encryption = 'scram-sha-256'; "
                f"CREATE ROLE {role} LOGIN PASSWORD '{NINE}'; GRANT CONNECT ON DATABASE appdb TO {role};")

    def tweak(cfg):
        cfg["user"] += [{"name": "nine", "password": NINE},
                        {"name": "nineclear", "password": NINE, "auth": "password"}]

    async def asyncpg_user(mux, user, password):
        con = await asyncpg.connect(host=mux.host, port=mux.port, user=user, password=password,
                                    database=mux.dbname("appdb"))
        try:
            return await con.fetchval("SELECT current_user")
        finally:
            await con.close()

    with Sqlmux(pg, mode="transaction", size=2, user=None, password=None, tweak=tweak) as mux:
        for user in ("nine", "nineclear"):
            for password in (NINE, "IX"):
                what = f"{user} with {password!r}"
                with psycopg.connect(mux.dsn(user=user, password=password)) as c:
                    check_eq(c.execute("SELECT current_user").fetchone()[0], user, f"psycopg 3: {what}")
                if password.isascii():  # asyncpg 0.27 cannot send a non-ASCII SCRAM password
                    check_eq(asyncio.run(asyncpg_user(mux, user, password)), user, f"asyncpg: {what}")
            expect_error(lambda: psycopg.connect(mux.dsn(user=user, password="IX ")), (None, "28P01"),
                         "password authentication failed", what=f"{user} with a wrong password")
        mux.assert_serving()


def case_unknown_database(pg):
    with Sqlmux(pg) as mux:
        expect_startup_error(mux, "app", "nosuchdb", "apppass", "3D000", 'database "nosuchdb" does not exist',
                             "unknown database")
        expect_error(lambda: psycopg2.connect(mux.dsn(db="nosuchdb")), (None, "3D000"),
                     'database "nosuchdb" does not exist', what="psycopg2 unknown database")
        mux.assert_serving()


def case_protocol_versions(pg):
    with Sqlmux(pg) as mux:
        for major, minor in ((2, 0), (4, 0), (1234, 5679)):
            if (major, minor) == (1234, 5679):
                continue  # that is CancelRequest's code, not a protocol version
            r = RawPg(mux.host, mux.port)
            r.send_startup("app", mux.dbname("appdb"), protocol=(major << 16) | minor)
            data = r.read_raw_until_eof(5)
            closed = r.closed
            r.close()
            rep = parse_startup_reply(data)
            what = f"protocol {major}.{minor}"
            check(rep["format"] in ("v2", "v3"), f"{what}: no error reply, got {data[:80]!r}")
            check("protocol" in rep["text"].lower(), f"{what}: unclear message {rep['text']!r}")
            if major > 3:
                check_eq(rep["format"], "v3", f"{what}: reply format")
            if rep["format"] == "v3":
                check_eq(rep["fields"].get("C"), "0A000", f"{what}: SQLSTATE ({rep['text']!r})")
                check_eq(rep["fields"].get("V") or rep["fields"].get("S"), "FATAL", f"{what}: severity")
            check(closed, f"{what}: connection not closed")
        mux.assert_serving()


def case_ssl_request(pg):
    with Sqlmux(pg) as mux:
        b, s = ssl_request(mux.host, mux.port)
        check_eq(b, b"N", "answer to SSLRequest")
        # The same socket then goes on with a plain startup.
        r = RawPg.__new__(RawPg)
        RawPg.__init__(r, mux.host, mux.port)
        r.sock.close()
        r.sock = s
        r.startup("app", mux.dbname("appdb"), "apppass")
        check_eq(r.scalar("SELECT 'after N'"), "after N", "query after SSLRequest refused")
        r.terminate()
        c = psycopg2.connect(mux.dsn(sslmode="prefer"))
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        c.close()
        e = expect_error(lambda: psycopg2.connect(mux.dsn(sslmode="require")), (None,),
                         "server does not support SSL", what="sslmode=require")
        mux.assert_serving()


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


def case_max_client_conn(pg):
    require_sqlmux("max_client_conn")

    def tweak(cfg):
        cfg["server"]["max_client_conn"] = 3

    with Sqlmux(pg, tweak=tweak) as mux:
        held = [mux.raw() for _ in range(3)]
        for i, r in enumerate(held):
            check_eq(r.scalar(f"SELECT {i}"), str(i), f"client {i} below the limit")
        r4 = RawPg(mux.host, mux.port)
        try:
            r4.startup("app", "appdb", "apppass")
            fail("4th client accepted with max_client_conn = 3")
        except PgError as e:
            check_eq(e.sqlstate, "53300", f"over max_client_conn: SQLSTATE ({e.message!r})")
            check_eq(e.severity, "FATAL", "over max_client_conn: severity")
        except ConnectionClosed:
            fail("over max_client_conn: connection closed without an ErrorResponse")
        check(r4.at_eof(5), "over max_client_conn: connection not closed")
        r4.close()
        # The held clients still work; after one leaves, a new one gets in.
        for i, r in enumerate(held):
            check_eq(r.scalar("SELECT 'still'"), "still", f"held client {i} after the refusal")
        held.pop().terminate()
        time.sleep(0.3)
        mux.assert_serving(what="a client after a slot was freed")
        for r in held:
            r.terminate()


def case_query_wait_timeout(pg):
    require_sqlmux("query_wait_timeout")
    with Sqlmux(pg, mode="transaction", size=1, query_wait_timeout="1s") as mux:
        a = mux.raw()
        a.query_ok("BEGIN")
        pid = a.scalar("SELECT pg_backend_pid()")
        b = mux.raw()
        t0 = time.monotonic()
        res = None
        try:
            res = b.query("SELECT 'b got a backend'", timeout=10)
        except ConnectionClosed:
            pass
        el = time.monotonic() - t0
        err = b.last_result.error
        check(err is not None, f"waiting client: no ErrorResponse after {el:.1f}s (result {res and res.rows})")
        check_eq(err.get("C"), "57014", f"waiting client: SQLSTATE ({err.get('M')!r})")
        check("query_wait_timeout" in err.get("M", ""), f"waiting client: message {err.get('M')!r}")
        check(0.8 <= el <= 5.0, f"waiting client got the error after {el:.2f}s (query_wait_timeout = 1s)")
        check(b.at_eof(5), "waiting client: connection not closed after the timeout error")
        b.close()
        # The first client is unaffected.
        check_eq(a.scalar("SELECT pg_backend_pid()"), pid, "holder's backend")
        a.query_ok("COMMIT")
        check_eq(a.scalar("SELECT 'a ok'"), "a ok", "holder after COMMIT")
        a.terminate()
        mux.assert_serving()


def case_query_wait_timeout_session_mode(pg):
    require_sqlmux("query_wait_timeout in session mode")
    with Sqlmux(pg, mode="session", size=1, query_wait_timeout="1s") as mux:
        a = mux.raw()
        check_eq(a.scalar("SELECT 1"), "1", "session holder")
        # The second client may fail at startup or at its first query.
        b = RawPg(mux.host, mux.port)
        try:
            b.startup("app", "appdb", "apppass")
            try:
                err = b.query("SELECT 1", timeout=10).error
            except ConnectionClosed:
                err = b.last_result.error
        except PgError as e:
            err = e.fields
        check(err is not None and err.get("C") == "57014" and "query_wait_timeout" in err.get("M", ""),
              f"second session client while the only backend is held: {err}")
        b.close()
        a.terminate()
        time.sleep(0.3)
        mux.assert_serving()


# ---------------------------------------------------------------------------
# Malformed input
# ---------------------------------------------------------------------------


def case_garbage_and_silent_clients(pg):
    with Sqlmux(pg) as mux:
        silent = socket.create_connection((mux.host, mux.port))
        half = socket.create_connection((mux.host, mux.port))
        half.sendall(struct.pack("!I", 100) + b"\x00\x03")  # half a startup packet
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", struct.pack("!I", 0x7FFFFFFF) + b"\0" * 8,
                     struct.pack("!I", 4), struct.pack("!II", 8, 0xDEADBEEF)):
            s = socket.create_connection((mux.host, mux.port), timeout=10)
            s.sendall(junk)
            s.settimeout(10)
            try:
                while s.recv(65536):
                    pass
            except (socket.timeout, ConnectionResetError):
                pass
            s.close()
            mux.assert_serving(what=f"a client after junk {junk[:12]!r}")
        # startup without a user
        r = RawPg(mux.host, mux.port)
        body = struct.pack("!I", 196608) + b"database\0appdb\0\0"
        r.send(struct.pack("!I", len(body) + 4) + body)
        data = r.read_raw_until_eof(5)
        rep = parse_startup_reply(data)
        check(rep["format"] == "v3" and rep["fields"].get("V", rep["fields"].get("S")) == "FATAL",
              f"startup without user: {data[:120]!r}")
        r.close()
        mux.assert_serving()
        silent.close()
        half.close()


def case_bogus_cancel_key(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        a = mux.raw()
        a.send_msg(b"Q", b"SELECT pg_sleep(1.5)::text || 'slept'\0")
        time.sleep(0.3)
        send_cancel(mux.host, mux.port, a.backend_pid, (a.backend_key + 1) & 0xFFFFFFFF)
        send_cancel(mux.host, mux.port, a.backend_pid + 1, a.backend_key)
        res = a.read_result(10)
        check(res.error is None, f"query cancelled by a CancelRequest with a wrong key: {res.error}")
        check_eq(res.rows, [["slept"]], "result of the query that must not be cancelled")
        a.terminate()
        mux.assert_serving()


# ---------------------------------------------------------------------------
# --check-config
# ---------------------------------------------------------------------------

GOOD = """\
[server]
workers = 2
max_client_conn = 100
log_level = "info"
shutdown_timeout = "30s"

[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"

[[user]]
name = "app"
password = "apppass"

[[pool]]
name = "appdb"
protocol = "postgres"
mode = "transaction"
size = 10
database = "appdb"
user = "app"
password = "apppass"
backends = [ { address = "127.0.0.1:5432" } ]
query_wait_timeout = "120s"
"""


def _error_lines(out: str, path: str):
    pat = re.compile(r"^" + re.escape(path) + r":(\d+):(\d+): (\S+): (.+)$")
    return [m.groups() for m in (pat.match(line.strip()) for line in out.splitlines()) if m]


def case_check_config(pg):
    require_sqlmux("--check-config")
    rc, out, path = check_config(GOOD)
    check_eq(rc, 0, f"--check-config on a good config (output: {out.strip()!r})")
    bad = GOOD.replace('mode = "transaction"', 'mode = "bogus"').replace("size = 10", 'size = "ten"')
    bad = bad.replace('shutdown_timeout = "30s"', 'shutdown_timeout = "soon"')
    lines = bad.splitlines()
    want = {i + 1: key for i, l in enumerate(lines) for key in ("mode", "size", "shutdown_timeout")
            if l.startswith(key + " =")}
    rc, out, path = check_config(bad, "bad.toml")
    check_eq(rc, 1, f"--check-config exit code on a bad config (output: {out.strip()!r})")
    errs = _error_lines(out, path)
    check(errs, f"no 'file:line:column: key: message' line in output:\n{out}")
    for line, key in want.items():
        hit = [e for e in errs if int(e[0]) == line and key in e[2]]
        check(hit, f"no error reported at {path}:{line} for key {key!r}; output:\n{out}")
    # A TOML syntax error is reported with its position too.
    rc, out, path = check_config(GOOD + "\n[[pool]\nname = 1\n", "syntax.toml")
    check_eq(rc, 1, f"--check-config on a TOML syntax error (output: {out.strip()!r})")
    check(re.search(re.escape(path) + r":\d+:\d+: ", out), f"syntax error without file:line:column:\n{out}")
    # A missing file.
    r = subprocess.run([SQLMUX_BIN, "--check-config", "/nonexistent/sqlmux.toml"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode != 0, "--check-config on a missing file exits 0")
    # --version and --help
    r = subprocess.run([SQLMUX_BIN, "--version"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "sqlmux" in (r.stdout + r.stderr).lower(), f"--version: rc {r.returncode} {r.stdout!r}")
    r = subprocess.run([SQLMUX_BIN, "--help"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "--config" in r.stdout + r.stderr, f"--help: rc {r.returncode} {r.stdout!r}")
    # Starting with a bad config fails fast with the same diagnostics.
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "bad.toml")
        with open(p, "w") as f:
            f.write(bad)
        try:
            r = subprocess.run([SQLMUX_BIN, "--config", p], capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            fail("sqlmux --config with an invalid config did not exit within 15s")
        check(r.returncode != 0, "sqlmux --config with an invalid config exited 0")
        check(_error_lines(r.stdout + r.stderr, p), f"no file:line diagnostics on startup:\n{r.stderr}")
        # The other spellings of the options (issue 18: they printed usage).
        for argv in (["--config=" + p], ["-c", p]):
            r = subprocess.run([SQLMUX_BIN] + argv, capture_output=True, text=True, timeout=15)
            check(r.returncode == 1 and _error_lines(r.stdout + r.stderr, p),
                  f"sqlmux {argv}: rc {r.returncode}, no file:line diagnostics:\n{r.stderr}")
        good = os.path.join(REPO, "config/examples/postgres.toml")
        for argv in (["--check-config=" + good], ["-t", good]):
            r = subprocess.run([SQLMUX_BIN] + argv, capture_output=True, text=True, timeout=15)
            check(r.returncode == 0 and "configuration is valid" in r.stdout, f"sqlmux {argv}: {r.stdout}{r.stderr}")


if __name__ == "__main__":
    run_cases(__file__, [case_scram_is_default, case_auth_methods, case_wrong_password_and_unknown_user,
                         case_scram_saslprep_password,
                         case_unknown_database, case_protocol_versions, case_ssl_request, case_max_client_conn,
                         case_query_wait_timeout, case_query_wait_timeout_session_mode,
                         case_garbage_and_silent_clients, case_bogus_cancel_key, case_check_config],
              timeout=110)
