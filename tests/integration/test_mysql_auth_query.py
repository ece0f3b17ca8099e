#!/usr/bin/python3
"""auth_query for MySQL pools (README "auth_query", issue 15): a mysql pool
without `user`, with auth_user and no [[user]] entry for its clients, looks
each client's mysql_native_password hash up on MariaDB (the default query
on mysql.user, which MariaDB 10.4+ keeps as a view over mysql.global_priv),
checks the client's scramble reply against it and logs in to the server as
the client (native-hash passthrough):

  - PyMySQL and aiomysql log in as themselves (SELECT CURRENT_USER()); a
    second login is served from the cache (sqlmux_auth_query_lookups_total);
  - eight aiomysql logins at once (lookups side by side on the loop);
  - a wrong password and an unknown user get the same ERR 1045;
  - ALTER USER ... IDENTIFIED BY: the new password works after the refresh
    a failed login makes, or at the first try after auth_query_cache_ttl;
    the old one is then refused;
  - a lookup that cannot run (auth_user's password wrong) gets an ERR and a
    log line.

    SQLMUX_BIN=build/sqlmux /usr/bin/python3 tests/integration/test_mysql_auth_query.py [case-filter]"""

import asyncio
import time

from harness import *
from mysql_harness import *

USERS = {"mya": "mya-pw-1", "myb": "myb secret", "myc": "myc-1", "myd": "myd-1"}
AUTH_USER = ("myauthq", "myauthq-pw")


def setup(my):
    stmts = []
    for name, pw in USERS.items():
        stmts += [f"DROP USER IF EXISTS '{name}'@'%'",
                  f"CREATE USER '{name}'@'%' IDENTIFIED BY '{pw}'",
                  f"GRANT ALL ON appdb.* TO '{name}'@'%'"]
    name, pw = AUTH_USER
    stmts += [f"DROP USER IF EXISTS '{name}'@'%'",
              f"CREATE USER '{name}'@'%' IDENTIFIED BY '{pw}'",
              f"GRANT SELECT ON mysql.user TO '{name}'@'%'"]
    my.sql_many(stmts)


def tweak_for(metrics_port=None, **extra):
    def tweak(cfg):
        pool = cfg["pool"][0]
        pool.pop("user", None)
        pool.pop("password", None)
        pool["auth_user"], pool["auth_password"] = AUTH_USER
        pool.update(extra)
        if metrics_port is not None:
            cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return tweak


def current_user(mux, user, password):
    c = mux.my_connect(user=user, password=password)
    try:
        with c.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            return cur.fetchone()[0]
    finally:
        c.close()


def aiomysql_user(mux, user, password):
    import aiomysql

    async def go():
        c = await aiomysql.connect(host=mux.host, port=mux.my_port, user=user, password=password, db="appdb")
        try:
            async with c.cursor() as cur:
                await cur.execute("SELECT CURRENT_USER()")
                return (await cur.fetchone())[0]
        finally:
            c.close()

    try:
        return asyncio.run(go())
    except Exception as e:  # noqa: BLE001
        # aiomysql raises 2003 "Can't connect" from the server's error.
        raise (e.__cause__ if e.__cause__ is not None else e)


def set_password(my, user, pw):
    my.sql_many([f"ALTER USER '{user}'@'%' IDENTIFIED BY '{pw}'"])


def case_clients_as_themselves(my):
    require_sqlmux_my("auth_query")
    metrics_port = free_port()
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak_for(metrics_port)) as mux:
        check_eq(current_user(mux, "mya", USERS["mya"]), "mya@%", "PyMySQL: CURRENT_USER()")
        check_eq(aiomysql_user(mux, "myb", USERS["myb"]), "myb@%", "aiomysql: CURRENT_USER()")
        check_eq(current_user(mux, "mya", USERS["mya"]), "mya@%", "PyMySQL again (cached entry)")
        got = scrape_metrics(metrics_port)
        lookups = {r: got.get(f'sqlmux_auth_query_lookups_total{{result="{r}"}}')
                   for r in ("found", "not_found", "cached", "error")}
        check_eq(lookups, {"found": 2.0, "not_found": 0.0, "cached": 1.0, "error": 0.0},
                 "sqlmux_auth_query_lookups_total: two lookups, one cached login")
        check(USERS["mya"] not in mux.log_text(), "the password is not in the log")


def case_concurrent_lookups(my):
    """Eight aiomysql logins at once (four users, a wrong password each
    time for one): the lookups run side by side on the loop; each client
    is the user it named."""
    require_sqlmux_my("auth_query")
    import aiomysql

    async def one(mux, user, password):
        try:
            c = await aiomysql.connect(host=mux.host, port=mux.my_port, user=user, password=password, db="appdb")
        except Exception as e:  # noqa: BLE001
            return my_errno(e.__cause__ if e.__cause__ is not None else e)
        try:
            async with c.cursor() as cur:
                await cur.execute("SELECT CURRENT_USER()")
                return (await cur.fetchone())[0]
        finally:
            c.close()

    with Sqlmux(None, my=my, mode="transaction", size=8, tweak=tweak_for()) as mux:
        logins = [("mya", USERS["mya"]), ("myb", USERS["myb"]), ("mya", USERS["mya"]), ("myb", "nope"),
                  ("mallory", "x"), ("mya", USERS["mya"]), ("myb", USERS["myb"]), ("eve", "y")]

        async def run():
            return await asyncio.gather(*(one(mux, u, p) for u, p in logins))

        check_eq(asyncio.run(run()), ["mya@%", "myb@%", "mya@%", 1045, 1045, "mya@%", "myb@%", 1045],
                 "eight concurrent logins")


def case_wrong_password_and_unknown_user(my):
    require_sqlmux_my("auth_query")
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak_for()) as mux:
        e1 = expect_my_error(lambda: current_user(mux, "mya", "nope"), 1045, "Access denied for user 'mya'",
                             what="wrong password")
        e2 = expect_my_error(lambda: current_user(mux, "mallory", "nope"), 1045,
                             "Access denied for user 'mallory'", what="unknown user")
        check_eq(str(e1).replace("mya", "X"), str(e2).replace("mallory", "X"), "the same error text")
        expect_my_error(lambda: aiomysql_user(mux, "mallory", "x"), 1045, what="aiomysql: unknown user")
        check_eq(current_user(mux, "mya", USERS["mya"]), "mya@%", "the right password still works")


def case_password_change_refresh(my):
    require_sqlmux_my("auth_query")
    set_password(my, "myc", USERS["myc"])
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak_for(auth_query_cache_ttl="60s")) as mux:
        check_eq(current_user(mux, "myc", USERS["myc"]), "myc@%", "old password before the change")
        time.sleep(2.5)  # older than the refresh minimum age (2s)
        set_password(my, "myc", "myc-2")
        expect_my_error(lambda: current_user(mux, "myc", "myc-2"), 1045, what="new password, cached entry")
        check_eq(current_user(mux, "myc", "myc-2"), "myc@%", "new password after the refresh")
        expect_my_error(lambda: current_user(mux, "myc", USERS["myc"]), 1045, what="old password refused")
        check("auth_query entry for user 'myc' dropped" in mux.log_text(), "the refresh is logged")


def case_password_change_ttl(my):
    require_sqlmux_my("auth_query")
    set_password(my, "myd", USERS["myd"])
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak_for(auth_query_cache_ttl="3s")) as mux:
        check_eq(current_user(mux, "myd", USERS["myd"]), "myd@%", "old password before the change")
        set_password(my, "myd", "myd-2")
        time.sleep(3.5)
        check_eq(aiomysql_user(mux, "myd", "myd-2"), "myd@%", "new password after the TTL (aiomysql)")
        expect_my_error(lambda: current_user(mux, "myd", USERS["myd"]), 1045, what="old password after the TTL")


def case_lookup_fails(my):
    require_sqlmux_my("auth_query")
    with Sqlmux(None, my=my, mode="transaction", size=4, tweak=tweak_for(auth_password="wrong")) as mux:
        expect_my_error(lambda: current_user(mux, "mya", USERS["mya"]), 1105, "could not look up",
                        what="lookup failed")
        check("auth_query for user 'mya' failed" in mux.log_text(), "logged")


if __name__ == "__main__":
    run_cases(__file__, [case_clients_as_themselves, case_concurrent_lookups, case_wrong_password_and_unknown_user,
                         case_password_change_refresh, case_password_change_ttl, case_lookup_fails],
              timeout=150, server=MariaDbServer, setup=setup, direct=MY_DIRECT)
