#!/usr/bin/python3
"""auth_query (README "auth_query"): a PostgreSQL pool without `user`, with
auth_user and auth_query and no [[user]] entry for its clients, looks each
client's SCRAM verifier up on the server and serves asyncpg, psycopg 3 and
psql, each logged in to the server as itself (SCRAM passthrough; an md5
role by md5 both ways). A wrong password and an unknown role get the same
28P01; a password changed on the server takes effect after a failed
login (the entry is refreshed) or after auth_query_cache_ttl; a lookup
that cannot run gets 08001 and a log line. With server_tls on, the lookup
and the passthrough login both go over TLS (a server that refuses
connections without TLS)."""

import asyncio
import os
import subprocess
import time

from harness import *

USERS = {"alice": "alice pw", "bob": "b0b-secret", "carol": "carol+pw", "dave": "dave-1", "erin": "erin-1"}
MD5_USER = ("frank", "frank-md5-pw")  # stored as md5; the server asks frank for md5
AUTH_USER = ("authq", "authq-pw")   # runs the SECURITY DEFINER lookup function
AUTH_SUPER = ("authsu", "authsu-pw")  # a superuser: PgBouncer's default query on pg_shadow
LOOKUP = "SELECT usename, passwd FROM public.sqlmux_lookup($1)"


def setup(pg):
    for name, pw in USERS.items():
        pg.psql(f"SET password_encryption = 'scram-sha-256'; DROP ROLE IF EXISTS {name}; "
                f"CREATE ROLE {name} LOGIN PASSWORD '{pw}'; GRANT ALL ON DATABASE appdb TO {name};")
    name, pw = MD5_USER
    pg.psql(f"SET password_encryption = 'md5'; DROP ROLE IF EXISTS {name}; "
            f"CREATE ROLE {name} LOGIN PASSWORD '{pw}';")
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        text = f.read()
    if f"all {name} " not in text:
        with open(hba, "w") as f:
            f.write(f"host all {name} 127.0.0.1/32 md5\n" + text)
        pg.psql("SELECT pg_reload_conf()")
    name, pw = AUTH_USER
    pg.psql(f"DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN PASSWORD '{pw}';")
    name, pw = AUTH_SUPER
    pg.psql(f"DROP ROLE IF EXISTS {name}; CREATE ROLE {name} SUPERUSER LOGIN PASSWORD '{pw}';")
    pg.psql("CREATE OR REPLACE FUNCTION public.sqlmux_lookup(p_usename text) "
            "RETURNS TABLE(usename name, passwd text) LANGUAGE sql SECURITY DEFINER AS "
            "$$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_usename $$; "
            "REVOKE ALL ON FUNCTION public.sqlmux_lookup(text) FROM PUBLIC; "
            f"GRANT EXECUTE ON FUNCTION public.sqlmux_lookup(text) TO {AUTH_USER[0]};", db="appdb")


def auth_query_config(pg, **pool_extra) -> dict:
    """A pool without `user` whose clients have no [[user]] entry."""
    opts = {"auth_user": AUTH_USER[0], "auth_password": AUTH_USER[1], "auth_query": LOOKUP}
    opts.update(pool_extra)
    cfg = default_config(pg.port, "@LISTEN_PORT@", mode="transaction", size=4, user=None, password=None,
                         **opts)
    cfg["user"] = [{"name": "app", "password": "apppass"}]  # none of USERS
    return cfg


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


def psql_as(mux, user, password, sql):
    env = dict(os.environ, PGPASSWORD=password)
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-h", mux.host, "-p", str(mux.port), "-U", user,
                           "-d", "appdb", "-c", sql], capture_output=True, text=True, timeout=60, env=env)


def set_password(pg, user, pw):
    pg.psql(f"SET password_encryption = 'scram-sha-256'; ALTER ROLE {user} PASSWORD '{pw}';")


def case_three_clients_as_themselves(pg):
    """asyncpg, psycopg 3 and psql, none of them a [[user]], each logged in
    to the server as itself; a second login is served from the cache."""
    import psycopg

    cfg = auth_query_config(pg)
    metrics_port = free_port()
    cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    with Sqlmux(pg, config=cfg) as mux:
        check_eq(asyncpg_login(mux, "alice", USERS["alice"]), "alice", "asyncpg: current_user")
        with psycopg.connect(host=mux.host, port=mux.port, user="bob", password=USERS["bob"],
                             dbname="appdb", connect_timeout=10) as c:
            for _ in range(3):
                check_eq(c.execute("SELECT current_user").fetchone()[0], "bob", "psycopg 3: current_user")
            check_eq(c.execute("SELECT %s::text || 'x'", ("a",)).fetchone()[0], "ax", "psycopg 3 bind")
        r = psql_as(mux, "carol", USERS["carol"], "SELECT current_user, session_user")
        check(r.returncode == 0, f"psql as carol: rc {r.returncode}: {r.stderr}")
        check_eq(r.stdout.strip(), "carol|carol", "psql: current_user and session_user")
        check_eq(asyncpg_login(mux, "alice", USERS["alice"]), "alice", "asyncpg again (cached entry)")
        n = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice' AND datname = 'appdb'")
        check(int(n) >= 1, f"the server has a session of alice ({n.strip()})")
        got = scrape_metrics(metrics_port)
        lookups = {r: got.get(f'sqlmux_auth_query_lookups_total{{result="{r}"}}')
                   for r in ("found", "not_found", "cached", "error")}
        check_eq(lookups, {"found": 3.0, "not_found": 0.0, "cached": 1.0, "error": 0.0},
                 "sqlmux_auth_query_lookups_total: three lookups, one cached login")


def case_default_query(pg):
    """PgBouncer's default auth_query (pg_shadow) as a superuser auth_user."""
    cfg = auth_query_config(pg, auth_user=AUTH_SUPER[0], auth_password=AUTH_SUPER[1], auth_query=None)
    with Sqlmux(pg, config=cfg) as mux:
        check_eq(asyncpg_login(mux, "carol", USERS["carol"]), "carol", "default auth_query: current_user")


def case_md5_role(pg):
    """A role whose password the server keeps as md5: the client logs in to
    sqlmux with md5 against the looked-up hash, and to the server (which
    asks for md5) with it; a wrong password gets 28P01."""
    import psycopg

    name, pw = MD5_USER
    check(pg.psql(f"SELECT passwd FROM pg_shadow WHERE usename = '{name}'").strip().startswith("md5"),
          "the server keeps an md5 hash")
    with Sqlmux(pg, config=auth_query_config(pg)) as mux:
        with psycopg.connect(host=mux.host, port=mux.port, user=name, password=pw, dbname="appdb",
                             connect_timeout=10) as c:
            check_eq(c.execute("SELECT current_user").fetchone()[0], name, "psycopg 3: current_user")
        check_eq(asyncpg_login(mux, name, pw), name, "asyncpg: current_user")
        expect_error(lambda: asyncpg_login(mux, name, "nope"), "28P01", what="md5: wrong password")


def case_wrong_password_and_unknown_role(pg):
    """A wrong password and a role the server does not have: the same 28P01."""
    with Sqlmux(pg, config=auth_query_config(pg)) as mux:
        e1 = expect_error(lambda: asyncpg_login(mux, "alice", "nope"), "28P01",
                          'password authentication failed for user "alice"', what="wrong password")
        e2 = expect_error(lambda: asyncpg_login(mux, "mallory", "nope"), "28P01",
                          'password authentication failed for user "mallory"', what="unknown role")
        check_eq(str(e1).replace("alice", "X"), str(e2).replace("mallory", "X"), "the same error text")
        r = psql_as(mux, "mallory", "x", "SELECT 1")
        check(r.returncode != 0 and "password authentication failed" in r.stderr, f"psql: {r.stderr}")
        check_eq(asyncpg_login(mux, "alice", USERS["alice"]), "alice", "the right password still works")


def case_password_change_refresh(pg):
    """ALTER ROLE ... PASSWORD with a long TTL: the first login with the new
    password is checked against the cached verifier and fails, which drops
    the entry; the next one looks it up again and succeeds; the old
    password is then refused."""
    set_password(pg, "dave", USERS["dave"])
    with Sqlmux(pg, config=auth_query_config(pg, auth_query_cache_ttl="60s")) as mux:
        check_eq(asyncpg_login(mux, "dave", USERS["dave"]), "dave", "old password before the change")
        time.sleep(2.5)  # older than the refresh minimum age (2s)
        set_password(pg, "dave", "dave-2")
        expect_error(lambda: asyncpg_login(mux, "dave", "dave-2"), "28P01", what="new password, cached entry")
        check_eq(asyncpg_login(mux, "dave", "dave-2"), "dave", "new password after the refresh")
        expect_error(lambda: asyncpg_login(mux, "dave", USERS["dave"]), "28P01", what="old password refused")
        check("auth_query entry for user \"dave\" dropped" in mux.log_text(), "the refresh is logged")


def case_password_change_ttl(pg):
    """With auth_query_cache_ttl = 3s a changed password works at the first
    try once the TTL is over, and the old one is refused."""
    import psycopg

    set_password(pg, "erin", USERS["erin"])
    with Sqlmux(pg, config=auth_query_config(pg, auth_query_cache_ttl="3s")) as mux:
        check_eq(asyncpg_login(mux, "erin", USERS["erin"]), "erin", "old password before the change")
        set_password(pg, "erin", "erin-2")
        time.sleep(3.5)
        with psycopg.connect(host=mux.host, port=mux.port, user="erin", password="erin-2",
                             dbname="appdb", connect_timeout=10) as c:
            check_eq(c.execute("SELECT current_user").fetchone()[0], "erin", "new password after the TTL")
        expect_error(lambda: asyncpg_login(mux, "erin", USERS["erin"]), "28P01",
                     what="old password after the TTL")


def case_lookup_fails(pg):
    """auth_user's own login fails: the client gets 08001, the log says why."""
    with Sqlmux(pg, config=auth_query_config(pg, auth_password="wrong")) as mux:
        expect_error(lambda: asyncpg_login(mux, "alice", USERS["alice"]), "08001", "could not look up",
                     what="lookup failed")
        check("auth_query for user \"alice\" failed" in mux.log_text(), "logged")


def case_tls(pg):
    """server_tls = "verify-full": a server that rejects connections without
    TLS (hostnossl ... reject) serves both the lookup and the client's own
    passthrough login, whose session is encrypted."""
    require_sqlmux("TLS")
    from test_tls import certs, pg_with_tls

    d = certs()
    with pg_with_tls() as pgs:
        setup(pgs)
        hba = os.path.join(pgs.datadir, "pg_hba.conf")
        with open(hba) as f:
            text = f.read()
        with open(hba, "w") as f:
            f.write("hostnossl all all 127.0.0.1/32 reject\n" + text)
        pgs.psql("SELECT pg_reload_conf()")
        cfg = auth_query_config(pgs, server_tls="verify-full", server_tls_ca=f"{d}/ca.crt")
        with Sqlmux(pgs, config=cfg) as mux:
            r = psql_as(mux, "alice", USERS["alice"],
                        "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            check(r.returncode == 0, f"psql as alice: rc {r.returncode}: {r.stderr}")
            check_eq(r.stdout.strip(), "alice|t", "auth_query + passthrough over TLS")
            check_eq(asyncpg_login(mux, "bob", USERS["bob"]), "bob", "asyncpg as bob over TLS")


if __name__ == "__main__":
    run_cases(__file__, [case_three_clients_as_themselves, case_default_query, case_md5_role,
                         case_wrong_password_and_unknown_role, case_password_change_refresh,
                         case_password_change_ttl, case_lookup_fails, case_tls], timeout=170, setup=setup,
              direct=False)
