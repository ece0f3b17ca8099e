#!/usr/bin/python3
"""SCRAM passthrough (README "SCRAM passthrough"): a pool without `user`
whose [[user]] entries hold only the SCRAM verifiers copied from pg_authid
(no plaintext anywhere in the config) serves asyncpg, psycopg 3 and psql,
each logged in to the server as itself. sqlmux recovers the ClientKey from
the client's SCRAM proof and logs in to the server with it. Also: a wrong
password gets 28P01; a verifier whose salt is not the server's gets a clear
error (and a log line); an md5 hash in [[user]] logs in to an md5 server;
cancel reaches a natively logged-in server connection; the native login
over TLS (SSLRequest, then the handshake as the client: verify-full against
server_tls_ca; a wrong CA fails the login; prefer goes on in plaintext when
the server has no TLS, require refuses that server)."""

import asyncio
import os
import subprocess
import threading
import time

from harness import *

USERS = {"alice": "alice pw", "bob": "b0b-secret", "carol": "carol+pw"}
MD5_USER = ("erin", "erin-md5-pw")


def setup(pg):
    for name, pw in USERS.items():
        pg.psql(f"SET password_encryption = 'scram-sha-256'; DROP ROLE IF EXISTS {name}; "
                f"CREATE ROLE {name} LOGIN PASSWORD '{pw}'; GRANT ALL ON DATABASE appdb TO {name};")
    name, pw = MD5_USER
    pg.psql(f"SET password_encryption = 'md5'; DROP ROLE IF EXISTS {name}; "
            f"CREATE ROLE {name} LOGIN PASSWORD '{pw}';")
    # The server asks erin for md5 (the others keep scram-sha-256).
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        text = f.read()
    if f"all {name} " not in text:
        with open(hba, "w") as f:
            f.write(f"host all {name} 127.0.0.1/32 md5\n" + text)
        pg.psql("SELECT pg_reload_conf()")


def rolpassword(pg, name: str) -> str:
    return pg.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{name}'").strip()


def passthrough_config(pg, users: dict[str, str], **pool_extra) -> dict:
    """A pool without `user`; [[user]] passwords as given (verifiers/hashes)."""
    cfg = default_config(pg.port, "@LISTEN_PORT@", mode="transaction", size=4, user=None, password=None,
                         **pool_extra)
    cfg["user"] = [{"name": n, "password": p} for n, p in users.items()]
    return cfg


def verifiers(pg) -> dict[str, str]:
    v = {n: rolpassword(pg, n) for n in USERS}
    for n, text in v.items():
        check(text.startswith("SCRAM-SHA-256$"), f"{n}'s rolpassword is a SCRAM verifier: {text!r}")
    return v


def client_key(verifier: str, password: str) -> bytes:
    """ClientKey = HMAC(SaltedPassword, "Client Key") for the verifier's salt."""
    import base64
    import hashlib
    import hmac

    iters, salt = verifier.split("$")[1].split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iters))
    return hmac.new(salted, b"Client Key", "sha256").digest()


def config_has_no_plaintext(mux):
    with open(mux.config_path) as f:
        text = f.read()
    for pw in USERS.values():
        check(pw not in text, "the config holds no plaintext password")


def psql_as(mux, user, password, sql):
    env = dict(os.environ, PGPASSWORD=password)
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-h", mux.host, "-p", str(mux.port), "-U", user,
                        "-d", "appdb", "-c", sql], capture_output=True, text=True, timeout=60, env=env)
    return r


def case_three_clients_as_themselves(pg):
    """asyncpg, psycopg 3 and psql, each as its own user, through one pool
    without `user`: the server sees each user (current_user and
    pg_stat_activity), for new connections and reused ones."""
    import asyncpg
    import psycopg

    v = verifiers(pg)
    cfg = passthrough_config(pg, v)
    cfg["server"]["log_level"] = "debug"
    with Sqlmux(pg, config=cfg) as mux:
        if not mux.direct:
            config_has_no_plaintext(mux)

        async def via_asyncpg():
            c = await asyncpg.connect(host=mux.host, port=mux.port, user="alice", password=USERS["alice"],
                                      database="appdb")
            try:
                return await c.fetchval("SELECT current_user"), await c.fetchval("SELECT 40 + $1::int", 2)
            finally:
                await c.close()

        got = asyncio.run(via_asyncpg())
        check_eq(got, ("alice", 42), "asyncpg: current_user and a bound query")

        with psycopg.connect(host=mux.host, port=mux.port, user="bob", password=USERS["bob"],
                             dbname="appdb", connect_timeout=10) as c:
            for _ in range(3):  # the server connection is reused between transactions
                check_eq(c.execute("SELECT current_user").fetchone()[0], "bob", "psycopg 3: current_user")
            check_eq(c.execute("SELECT %s::text || 'x'", ("a",)).fetchone()[0], "ax", "psycopg 3 bind")
            # The server's own view of the session.
            n = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'bob' AND datname = 'appdb'")
            check(int(n) >= 1, f"the server has a session of bob ({n.strip()})")

        r = psql_as(mux, "carol", USERS["carol"], "SELECT current_user, session_user")
        check(r.returncode == 0, f"psql as carol: rc {r.returncode}: {r.stderr}")
        check_eq(r.stdout.strip(), "carol|carol", "psql: current_user, session_user")

        # The keys were held only while the clients were connected: a new
        # client logs in again (its proof gives the key back), sequentially
        # and concurrently.
        errors = []

        def worker(user):
            try:
                for _ in range(3):
                    with psycopg.connect(host=mux.host, port=mux.port, user=user, password=USERS[user],
                                         dbname="appdb", connect_timeout=10) as c:
                        u = c.execute("SELECT current_user, pg_sleep(0.05)").fetchone()[0]
                        if u != user:
                            errors.append(f"{user} got {u}")
            except Exception as e:  # noqa: BLE001
                errors.append(f"{user}: {e}")

        threads = [threading.Thread(target=worker, args=(u,)) for u in USERS for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        check(not errors, f"concurrent passthrough clients: {errors}")
        mux.assert_serving(user="alice", password=USERS["alice"])
        if not mux.direct:
            # The recovered keys never reach the log (debug level), in any encoding.
            import base64
            import hashlib

            text = mux.log_text()
            check("login" in text, "the log has the clients' lines")
            for name in USERS:
                k = client_key(v[name], USERS[name])
                stored = base64.b64decode(v[name].split("$")[2].split(":")[0])
                check(hashlib.sha256(k).digest() == stored, f"{name}: H(ClientKey) == StoredKey")
                for form in (base64.b64encode(k).decode(), k.hex(), k.hex().upper()):
                    check(form not in text, f"{name}'s ClientKey is not in the log")


def asyncpg_login(mux, user, password):
    import asyncpg

    async def go():
        c = await asyncpg.connect(host=mux.host, port=mux.port, user=user, password=password,
                                  database="appdb", timeout=10)
        try:
            return await c.fetchval("SELECT current_user")
        finally:
            await c.close()

    return asyncio.run(go())


def case_session_mode(pg):
    """Session mode: each client keeps its own server connection, logged in
    natively as that client's user; a second client of the same user while
    the first is connected gets a new one with the held key."""
    import psycopg

    cfg = passthrough_config(pg, verifiers(pg))
    cfg["pool"][0]["mode"] = "session"
    with Sqlmux(pg, config=cfg) as mux:
        kw = dict(host=mux.host, port=mux.port, dbname="appdb", connect_timeout=10)
        with psycopg.connect(user="alice", password=USERS["alice"], **kw) as a1, \
                psycopg.connect(user="alice", password=USERS["alice"], **kw) as a2, \
                psycopg.connect(user="bob", password=USERS["bob"], **kw) as b:
            pids = set()
            for c, want in ((a1, "alice"), (a2, "alice"), (b, "bob")):
                u, pid = c.execute("SELECT current_user, pg_backend_pid()").fetchone()
                check_eq(u, want, "session mode: current_user")
                pids.add(pid)
            check_eq(len(pids), 3, "three server connections")
            a1.execute("SET application_name = 'kept'")
            check_eq(a1.execute("SHOW application_name").fetchone()[0], "kept", "session state kept")
        r = psql_as(mux, "carol", USERS["carol"], "SELECT current_user")
        check_eq(r.stdout.strip(), "carol", "psql in session mode")


def case_cleartext_client(pg):
    """auth = "password": the client sends its password in clear; sqlmux
    checks it against the verifier and derives the ClientKey from it."""
    v = verifiers(pg)
    cfg = passthrough_config(pg, v)
    for u in cfg["user"]:
        if u["name"] == "carol":
            u["auth"] = "password"
    with Sqlmux(pg, config=cfg) as mux:
        r = psql_as(mux, "carol", USERS["carol"], "SELECT current_user")
        check(r.returncode == 0, f"psql as carol (cleartext to sqlmux): rc {r.returncode}: {r.stderr}")
        check_eq(r.stdout.strip(), "carol", "cleartext client: current_user")
        r = psql_as(mux, "carol", "wrong", "SELECT 1")
        check(r.returncode != 0 and "password authentication failed" in r.stderr,
              f"cleartext, wrong password: rc {r.returncode}: {r.stderr}")


def case_listen_pins(pg):
    """Transaction mode: LISTEN pins the client to its natively logged-in
    server connection (the pool's LISTEN connection could not log in), and
    a NOTIFY from another user reaches it."""
    import asyncpg

    with Sqlmux(pg, config=passthrough_config(pg, verifiers(pg))) as mux:
        async def go():
            kw = dict(host=mux.host, port=mux.port, database="appdb", timeout=10)
            a = await asyncpg.connect(user="alice", password=USERS["alice"], **kw)
            b = await asyncpg.connect(user="bob", password=USERS["bob"], **kw)
            got = asyncio.get_running_loop().create_future()
            try:
                await a.add_listener("pt_ch", lambda *args: got.done() or got.set_result(args[3]))
                await b.execute("NOTIFY pt_ch, 'hello'")
                return await asyncio.wait_for(got, 10)
            finally:
                await a.close()
                await b.close()

        check_eq(asyncio.run(go()), "hello", "notification through a passthrough pool")
        if not mux.direct:
            check("LISTEN connection failed" not in mux.log_text(), "no failing LISTEN connection")


def case_wrong_password(pg):
    import psycopg

    with Sqlmux(pg, config=passthrough_config(pg, verifiers(pg))) as mux:
        expect_error(lambda: asyncpg_login(mux, "alice", "nope"), "28P01", "password authentication failed",
                     "wrong password (asyncpg)")
        try:
            psycopg.connect(host=mux.host, port=mux.port, user="alice", password="nope", dbname="appdb",
                            connect_timeout=10).close()
            fail("psycopg 3 logged in with a wrong password")
        except psycopg.OperationalError as e:
            check("password authentication failed" in str(e), f"psycopg 3: {e}")
        r = psql_as(mux, "bob", "wrong", "SELECT 1")
        check(r.returncode != 0 and "password authentication failed" in r.stderr,
              f"psql with a wrong password: rc {r.returncode}: {r.stderr}")


def case_salt_mismatch(pg):
    """A verifier of the right password with another salt: the client logs
    in to sqlmux, but the server's salt differs: a clear error, a log line."""
    require_sqlmux("a verifier that is not the server's")
    import psycopg

    users = verifiers(pg)
    users["alice"] = scram_verifier(USERS["alice"])  # a fresh random salt
    with Sqlmux(pg, config=passthrough_config(pg, users)) as mux:
        e = expect_error(lambda: asyncpg_login(mux, "alice", USERS["alice"]), ("08001", "08006", "08000"),
                         "salt", "salt mismatch (asyncpg)")
        log(f"client saw: {str(e).strip()}")
        check("pg_authid" in str(e), f"the error says what to do: {e}")
        if not mux.direct:
            check(mux.log_has("copy rolpassword from pg_authid again"), "the salt mismatch is logged")
        # The other users are unaffected.
        with psycopg.connect(host=mux.host, port=mux.port, user="bob", password=USERS["bob"],
                             dbname="appdb", connect_timeout=10) as c:
            check_eq(c.execute("SELECT current_user").fetchone()[0], "bob", "bob still logs in")


def case_md5_hash(pg):
    """[[user]] holds the md5 hash from pg_authid; the server asks md5."""
    import psycopg

    name, pw = MD5_USER
    stored = rolpassword(pg, name)
    check(stored.startswith("md5") and len(stored) == 35, f"erin's rolpassword is md5: {stored!r}")
    with Sqlmux(pg, config=passthrough_config(pg, {name: stored})) as mux:
        with psycopg.connect(host=mux.host, port=mux.port, user=name, password=pw, dbname="appdb",
                             connect_timeout=10) as c:
            check_eq(c.execute("SELECT current_user").fetchone()[0], name, "md5 passthrough: current_user")


def case_cancel(pg):
    """A cancel reaches a server connection sqlmux logged in to itself."""
    import psycopg

    with Sqlmux(pg, config=passthrough_config(pg, verifiers(pg))) as mux:
        with psycopg.connect(host=mux.host, port=mux.port, user="alice", password=USERS["alice"],
                             dbname="appdb", connect_timeout=10, autocommit=True) as c:
            threading.Timer(0.5, c.cancel).start()
            t0 = time.monotonic()
            expect_error(lambda: c.execute("SELECT pg_sleep(20)"), "57014", what="cancelled pg_sleep")
            check(time.monotonic() - t0 < 10, "the cancel ended the query early")
            check_eq(c.execute("SELECT current_user").fetchone()[0], "alice", "usable after the cancel")


def case_tls(pg):
    """The native login over TLS: PostgreSQL with ssl = on, the pool
    server_tls = "verify-full" with server_tls_ca: asyncpg and psql log in
    as themselves and the server session is encrypted; a CA that did not
    sign the server's certificate fails the login with the reason."""
    require_sqlmux("TLS")
    import asyncpg
    from test_tls import certs, pg_with_tls

    d = certs()
    with pg_with_tls() as pgs:
        setup(pgs)
        v = verifiers(pgs)
        cfg = passthrough_config(pgs, v, server_tls="verify-full", server_tls_ca=f"{d}/ca.crt")
        with Sqlmux(pgs, config=cfg) as mux:
            async def via_asyncpg():
                c = await asyncpg.connect(host=mux.host, port=mux.port, user="alice",
                                          password=USERS["alice"], database="appdb")
                try:
                    return (await c.fetchval("SELECT current_user"),
                            await c.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
                            await c.fetchval("SELECT length(repeat('x', $1::int))", 3_000_000))
                finally:
                    await c.close()

            check_eq(asyncio.run(via_asyncpg()), ("alice", True, 3_000_000),
                     "asyncpg: current_user, TLS on the server session, a large value")
            r = psql_as(mux, "bob", USERS["bob"],
                        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            check(r.returncode == 0, f"psql as bob: rc {r.returncode}: {r.stderr}")
            check_eq(r.stdout.strip(), "bob|t", "psql: current_user, TLS on the server session")
        # sqlmux said goodbye (Terminate) over TLS on each connection it closed.
        time.sleep(0.5)
        with open(pgs.logfile) as f:
            log = f.read()
        check("could not receive data from client" not in log, f"server connections closed uncleanly:\n{log[-1500:]}")
        cfg = passthrough_config(pgs, v, server_tls="verify-full", server_tls_ca=f"{d}/otherca.crt")
        with Sqlmux(pgs, config=cfg) as mux:
            r = psql_as(mux, "alice", USERS["alice"], "SELECT 1")
            check(r.returncode != 0 and "certificate verify failed" in r.stderr,
                  f"a wrong CA fails the login with the reason: rc {r.returncode}: {r.stderr}")
    # The run's own server has no TLS: prefer goes on in plaintext, require refuses it.
    v = verifiers(pg)
    with Sqlmux(pg, config=passthrough_config(pg, v, server_tls="prefer")) as mux:
        r = psql_as(mux, "carol", USERS["carol"],
                    "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        check(r.returncode == 0, f"psql as carol (prefer): rc {r.returncode}: {r.stderr}")
        check_eq(r.stdout.strip(), "carol|f", "prefer against a server without TLS: plaintext")
    with Sqlmux(pg, config=passthrough_config(pg, v, server_tls="require")) as mux:
        r = psql_as(mux, "carol", USERS["carol"], "SELECT 1")
        check(r.returncode != 0 and "does not support TLS" in r.stderr,
              f"require against a server without TLS fails clearly: rc {r.returncode}: {r.stderr}")


if __name__ == "__main__":
    run_cases(__file__, [case_three_clients_as_themselves, case_session_mode, case_cleartext_client,
                         case_listen_pins, case_wrong_password, case_salt_mismatch,
                         case_md5_hash, case_cancel, case_tls], timeout=170, setup=setup)
