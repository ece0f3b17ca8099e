#!/usr/bin/python3
"""Session state that follows clients in transaction mode, and the SQL
sqlmux writes for it (issue 19): resets of settings whose names need
quoting, failures of sqlmux's own statements hidden from clients, reported
parameters as the server normalises them, and DEALLOCATE through the
extended protocol (psycopg 3's statement cache evictions)."""

import psycopg

from harness import *

# Names PostgreSQL accepts in SET only when quoted (reserved words, capitals,
# non-ASCII): sqlmux must quote them when it resets them for another client.
HOSTILE_SETS = [
    ('"select.x"', "y"),
    ('"select".y', "z"),
    ('"user"."From"', "it's"),
    ('"été"."名前"', "v\\1"),
]


def setting(conn, name):
    return conn.execute("SELECT pg_catalog.current_setting(%s, true)", (name,)).fetchone()[0]


def case_reset_of_quoted_names(pg):
    # One server connection: B gets the connection A left its settings on.
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=None) as a, \
                psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=None) as b:
            for name, value in HOSTILE_SETS:
                a.execute(f"SET {name} = {psycopg.sql.Literal(value).as_string(a)}")
                got = b.execute("SELECT 42").fetchone()[0]
                check_eq(got, 42, f"B's query after A set {name}")
                plain = name.replace('"', "")
                check(setting(b, plain) in (None, ""), f"B sees A's {plain}: {setting(b, plain)!r}")
                check_eq(setting(a, plain), value, f"A keeps its {plain}")
        mux.assert_serving()


def case_own_statement_failure_is_hidden(pg):
    # A's setting in plpgsql's namespace becomes invalid once plpgsql loads on
    # that connection: resetting it for B then fails. That connection must
    # go, and B must get its result from another one.
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=None) as a, \
                psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=None) as b:
            a.execute("SET plpgsql.sqlmux_probe = 1")
            a.execute("DO $$BEGIN END$$")  # loads plpgsql: the placeholder goes
            check_eq(b.execute("SELECT 7").fetchone()[0], 7, "B's query after a failing reset")
            check_eq(b.execute("SELECT 8").fetchone()[0], 8, "B's next query")
            check_eq(a.execute("SELECT 9").fetchone()[0], 9, "A still served")
        mux.assert_serving()


def case_reported_values_normalised(pg):
    # What PostgreSQL reports for these startup values, twice (the second
    # client may be served from what sqlmux learned from the first).
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        for round_ in range(2):
            with psycopg.connect(mux.dsn(), client_encoding="utf8",
                                 options="-c DateStyle=iso,\\ dmy -c IntervalStyle=SQL_standard",
                                 prepare_threshold=None) as c:
                info = c.info
                check_eq(info.parameter_status("client_encoding"), "UTF8", f"client_encoding ({round_})")
                check_eq(info.parameter_status("DateStyle"), "ISO, DMY", f"DateStyle ({round_})")
                check_eq(info.parameter_status("IntervalStyle"), "sql_standard", f"IntervalStyle ({round_})")
                check_eq(c.execute("SHOW DateStyle").fetchone()[0], "ISO, DMY", "SHOW DateStyle")
                check_eq(info.parameter_status("DateStyle"), "ISO, DMY", f"DateStyle after a query ({round_})")
                check_eq(info.parameter_status("client_encoding"), "UTF8", f"client_encoding after a query")
        mux.assert_serving()


def case_extended_deallocate(pg):
    # psycopg 3.1 evicts from its statement cache with DEALLOCATE sent as
    # Parse/Bind/Execute: 20 statements through a cache of 5, several times.
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=0) as conn:
            conn.prepared_max = 5
            for rnd in range(4):
                for i in range(20):
                    row = conn.execute(f"SELECT %s::int + {i}, 'q{i}'", (rnd,)).fetchone()
                    check_eq(row, (rnd + i, f"q{i}"), f"statement {i}, round {rnd}")
            # The same in one transaction, where the server skips nothing.
            with conn.transaction():
                for i in range(20):
                    check_eq(conn.execute(f"SELECT %s::int + {i}, 'q{i}'", (9,)).fetchone(),
                             (9 + i, f"q{i}"), f"statement {i} in a transaction")
        # DEALLOCATE ALL / DISCARD ALL through the extended protocol too (a
        # connection of its own: psycopg's cache does not notice them).
        with psycopg.connect(mux.dsn(), autocommit=True, prepare_threshold=None) as conn:
            for stmt in ("DEALLOCATE ALL", "DEALLOCATE PREPARE ALL", "DISCARD ALL"):
                cur = conn.cursor()
                cur.execute(stmt, binary=True)  # binary: Parse/Bind/Execute
                check_eq(cur.statusmessage, stmt.replace("PREPARE ", ""), f"{stmt} status")
                check_eq(conn.execute("SELECT %s::int + 1", (1,)).fetchone()[0], 2, f"query after {stmt}")
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_reset_of_quoted_names, case_own_statement_failure_is_hidden,
                         case_reported_values_normalised, case_extended_deallocate], timeout=110)
