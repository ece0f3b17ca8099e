#!/usr/bin/python3
"""psycopg2 (simple protocol, client-side parameter interpolation) through
sqlmux from many threads: transaction mode with a small pool, session mode,
statement mode with autocommit; each thread writes and reads back its own
rows. Plus copy_expert, large objects of results and executemany."""

import io
import random
import threading
import time

import psycopg2
import psycopg2.extras

from harness import *


def setup(pg):
    pg.psql("CREATE TABLE pg2_t(thread int, seq int, val text, PRIMARY KEY (thread, seq));"
            "ALTER TABLE pg2_t OWNER TO app;", db="appdb")


def worker(mux, tid: int, errors: list, rounds: int, autocommit: bool, check_pid: bool):
    try:
        token = f"th{tid}-{random.getrandbits(48):x}"
        conn = mux.connect()
        conn.autocommit = autocommit
        try:
            with conn.cursor() as cur:
                if check_pid:
                    cur.execute("SELECT pg_backend_pid()")
                    pid = cur.fetchone()[0]
                for r in range(rounds):
                    base = r * 10
                    psycopg2.extras.execute_values(
                        cur, "INSERT INTO pg2_t(thread, seq, val) VALUES %s",
                        [(tid, base + s, f"{token}/{base + s}") for s in range(10)])
                    if not autocommit:
                        conn.commit()
                    cur.execute("SELECT seq, val FROM pg2_t WHERE thread = %s AND seq >= %s ORDER BY seq",
                                (tid, base))
                    rows = cur.fetchall()
                    want = [(base + s, f"{token}/{base + s}") for s in range(10)]
                    if rows != want:
                        raise TestFailure(f"thread {tid} round {r}: read back {rows[:3]}..., want {want[:3]}...")
                    cur.execute("SELECT %s || '!'", (token,))
                    check_eq(cur.fetchone()[0], token + "!", f"thread {tid}: echo")
                    if not autocommit:
                        conn.rollback()
                    time.sleep(random.random() * 0.005)
                if check_pid:
                    cur.execute("SELECT pg_backend_pid()")
                    check_eq(cur.fetchone()[0], pid, f"thread {tid}: session-mode backend pid")
                cur.execute("DELETE FROM pg2_t WHERE thread = %s", (tid,))
                check_eq(cur.rowcount, rounds * 10, f"thread {tid}: rows deleted")
                if not autocommit:
                    conn.commit()
        finally:
            conn.close()
    except Exception as e:  # noqa: BLE001
        errors.append((tid, e))


def run_threads(mux, n, base, rounds=5, autocommit=False, check_pid=False):
    errors = []
    ts = [threading.Thread(target=worker, args=(mux, base + i, errors, rounds, autocommit, check_pid))
          for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    check(not any(t.is_alive() for t in ts), "threads still running after 90s")
    log(f"{n} psycopg2 threads in {time.monotonic() - t0:.1f}s, {len(errors)} failed")
    if errors:
        fail(f"{len(errors)} of {n} psycopg2 threads failed:\n  " +
             "\n  ".join(f"thread {i}: {type(e).__name__}: {e}".strip() for i, e in errors[:8]))


def case_threads_transaction_mode(pg):
    with Sqlmux(pg, mode="transaction", size=5) as mux:
        run_threads(mux, 50, 0)
        if not DIRECT:
            n = pg.app_sessions()
            check(n <= 5, f"PostgreSQL has {n} app sessions for a pool of 5")
        mux.assert_serving()


def case_threads_session_mode(pg):
    with Sqlmux(pg, mode="session", size=20) as mux:
        run_threads(mux, 20, 100, check_pid=True)
        mux.assert_serving()


def case_threads_statement_mode_autocommit(pg):
    with Sqlmux(pg, mode="statement", size=3) as mux:
        run_threads(mux, 20, 200, autocommit=True)
        mux.assert_serving()


def case_copy_expert_and_large_results(pg):
    with Sqlmux(pg, mode="transaction", size=2) as mux:
        conn = mux.connect()
        try:
            cur = conn.cursor()
            cur.execute("DROP TABLE IF EXISTS pg2_copy; CREATE TABLE pg2_copy(id int, v text)")
            conn.commit()
            n = 100000
            buf = io.StringIO("".join(f"{i}\tvalue number {i}\n" for i in range(n)))
            cur.copy_expert("COPY pg2_copy FROM STDIN", buf)
            conn.commit()
            out = io.StringIO()
            cur.copy_expert("COPY (SELECT * FROM pg2_copy ORDER BY id) TO STDOUT", out)
            check(out.getvalue() == buf.getvalue(), "COPY OUT differs from COPY IN")
            conn.commit()
            # a large result set in one go, and through a server-side cursor
            cur.execute("SELECT id, v FROM pg2_copy ORDER BY id")
            rows = cur.fetchall()
            check(len(rows) == n and rows[-1] == (n - 1, f"value number {n - 1}"), "large result set")
            conn.commit()
            named = conn.cursor(name="pg2_named")
            named.itersize = 5000
            named.execute("SELECT id FROM pg2_copy ORDER BY id")
            total = sum(r[0] for r in named)
            check_eq(total, n * (n - 1) // 2, "sum via server-side cursor")
            named.close()
            conn.commit()
        finally:
            conn.close()
        mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_threads_transaction_mode, case_threads_session_mode,
                         case_threads_statement_mode_autocommit, case_copy_expert_and_large_results],
              timeout=110, setup=setup)
