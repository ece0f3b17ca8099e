#!/usr/bin/python3
"""Session mode is transparent when the server ends an idle session (issue
19 item 8): pg_terminate_backend() and idle_session_timeout send the
client the server's own FATAL (57P01, 57P05) and close it, and a server
connection that closes without a message closes the client without one,
as a direct connection would. Pool libraries wait for exactly that to
discard the connection. With the pool option `session_reconnect = true`
the client moves to a new server connection instead (the earlier
behaviour). Transaction mode is unchanged between transactions; a client
idle inside one whose server connection closes without a message is
closed without one, as directly (case closed_in_transaction).

SQLMUX_TEST_DIRECT=1 runs the parity cases against PostgreSQL itself."""

import asyncio
import socket
import threading
import time

import asyncpg
import psycopg2

from harness import *

ADMIN_PASS = "adminpass"


def pid_of(pg, app_name):
    """The server process of the session whose application_name is app_name."""
    c = pg.connect_super()
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app_name,))
            rows = cur.fetchall()
    finally:
        c.close()
    check(len(rows) == 1, f"pg_stat_activity rows with application_name {app_name!r}: {rows}")
    return rows[0][0]


def pushed(r: RawPg, timeout: float = 3.0):
    """What the client is sent without asking: (first error or None, closed)."""
    return r.read_until_error_or_eof(timeout)


class Cutter:
    """A TCP relay to PostgreSQL whose connections can be cut: the side
    that connected to it sees the server close without a message."""

    def __init__(self, pg_port):
        self.pg_port = pg_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.pg_port))
            with self.lock:
                self.pairs.append((a, b))
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut_all(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        return len(pairs)

    def close(self):
        self.lsock.close()
        self.cut_all()


def case_terminated_idle_session_gets_fatal(pg):
    """Session pool: an idle client's server process is terminated. The
    client is sent FATAL 57P01 unasked and closed; psycopg2's next query
    fails as directly ("server closed the connection unexpectedly") and the
    connection is closed. Then sqlmux serves."""
    with Sqlmux(pg, mode="session", size=2) as mux:
        r = mux.raw(params={"application_name": "end-raw"})
        r.query_ok("SELECT 1")
        pg.terminate_backend(pid_of(pg, "end-raw"))
        err, closed = pushed(r)
        check(err is not None, f"no ErrorResponse pushed after pg_terminate_backend (closed={closed})")
        check_eq((err.get("V"), err.get("C")), ("FATAL", "57P01"), f"pushed error {err}")
        check_eq(err.get("M"), "terminating connection due to administrator command", "its message")
        check(closed, "client connection still open after the server's FATAL")
        r.close()

        c = mux.connect(autocommit=True, application_name="end-psycopg2")
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        pg.terminate_backend(pid_of(pg, "end-psycopg2"))
        time.sleep(0.3)
        try:
            with c.cursor() as cur:
                cur.execute("SELECT 'still here?'")
            fail("psycopg2: the query after pg_terminate_backend succeeded")
        except psycopg2.OperationalError as e:
            # As directly: libpq finds the socket closed when it sends the
            # query (the FATAL in front of the close is not what it reports).
            check("server closed the connection unexpectedly" in str(e), f"psycopg2's error: {str(e)!r}")
        check(c.closed != 0, "psycopg2 connection not closed after the server's FATAL")
        mux.assert_serving(what="a new session-mode client afterwards")


def case_idle_session_timeout_gets_fatal(pg):
    """Session pool, idle_session_timeout = 1s from the client's startup
    options: after 1 s idle the client is sent FATAL 57P05 and closed."""
    with Sqlmux(pg, mode="session", size=2) as mux:
        r = mux.raw(params={"options": "-c idle_session_timeout=1000"})
        check_eq(r.scalar("SHOW idle_session_timeout"), "1s", "idle_session_timeout of the session")
        err, closed = pushed(r, 5.0)
        check(err is not None, f"no ErrorResponse pushed after idle_session_timeout (closed={closed})")
        check_eq((err.get("V"), err.get("C")), ("FATAL", "57P05"), f"pushed error {err}")
        check(closed, "client connection still open after the server's FATAL")
        r.close()
        mux.assert_serving(what="a new session-mode client afterwards")


def case_server_closes_without_message(pg):
    """Session pool behind a relay that cuts its connections: the idle
    client sees the connection close with no message, and libpq reports
    "server closed the connection unexpectedly", as directly."""
    cutter = Cutter(pg.port)
    try:
        backends = [{"address": f"127.0.0.1:{cutter.port}"}]
        with Sqlmux(pg, mode="session", size=2, backends=backends) as mux:
            port = cutter.port if mux.direct else mux.port

            r = RawPg("127.0.0.1", port)
            r.startup("app", "appdb", "apppass")
            r.query_ok("SELECT 1")
            check(cutter.cut_all() >= 1, "no connection through the relay")
            err, closed = pushed(r)
            check(err is None, f"an error was sent where the server sent none: {err}")
            check(closed, "client connection still open after its server connection closed")
            r.close()

            c = psycopg2.connect(host="127.0.0.1", port=port, dbname="appdb", user="app",
                                 password="apppass", connect_timeout=10)
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SELECT 1")
            cutter.cut_all()
            time.sleep(0.3)
            try:
                with c.cursor() as cur:
                    cur.execute("SELECT 'still here?'")
                fail("psycopg2: the query after the server connection closed succeeded")
            except psycopg2.OperationalError as e:
                check("server closed the connection unexpectedly" in str(e), f"psycopg2's error: {str(e)!r}")
            check(c.closed != 0, "psycopg2 connection not closed")
            mux.assert_serving(what="a new session-mode client afterwards")
    finally:
        cutter.close()


def case_closed_in_transaction(pg):
    """Transaction pool behind a relay that cuts its connections: a client
    idle inside a transaction (it asked nothing) sees its connection close
    with no message, as directly (a SIGKILLed backend, or one ended by a
    crash restart, sends none). An ErrorResponse made up by sqlmux there
    reached asyncpg while no operation was in flight: its next operation
    then failed with InternalClientError "cannot switch to state 15;
    another operation (2) is in progress" instead of a lost connection
    (issue 14; seen in test_faults backend_sigkill_mid_transaction)."""
    cutter = Cutter(pg.port)
    try:
        backends = [{"address": f"127.0.0.1:{cutter.port}"}]
        with Sqlmux(pg, mode="transaction", size=2, backends=backends) as mux:
            port = cutter.port if mux.direct else mux.port

            r = RawPg("127.0.0.1", port)
            r.startup("app", "appdb", "apppass")
            r.query_ok("BEGIN")
            r.query_ok("SELECT 1")
            check(cutter.cut_all() >= 1, "no connection through the relay")
            err, closed = pushed(r)
            check(err is None, f"an error was sent where the server sent none: {err}")
            check(closed, "client connection still open after its server connection closed")
            r.close()

            async def asyncpg_client():
                # The answer to SELECT 1 and the close are read at once (the
                # loop is busy meanwhile); COMMIT starts right after.
                conn = await asyncpg.connect(host="127.0.0.1", port=port, user="app", password="apppass",
                                             database="appdb", timeout=10)
                try:
                    await asyncio.wait_for(conn.execute("BEGIN"), 5)

                    async def select_then_commit():
                        await conn.execute("SELECT 1")
                        await conn.execute("COMMIT")
                    op = asyncio.ensure_future(select_then_commit())
                    await asyncio.sleep(0)
                    time.sleep(0.3)
                    cutter.cut_all()
                    time.sleep(0.3)
                    try:
                        await asyncio.wait_for(op, 10)
                        return "no error"
                    except Exception as e:  # noqa: BLE001
                        return f"{type(e).__name__}: {e}"
                finally:
                    conn.terminate()
            got = asyncio.run(asyncpg_client())
            log(f"asyncpg, its server connection closed inside a transaction: {got}")
            check(got.startswith("ConnectionDoesNotExistError") or got.startswith("InterfaceError"),
                  f"asyncpg's COMMIT after its connection closed: {got} (want a lost connection)")
            mux.assert_serving(what="a new transaction-mode client afterwards")
    finally:
        cutter.close()


def case_session_reconnect_option(pg):
    """session_reconnect = true: an idle client whose server process is
    terminated, or whose server connection closes, is told nothing; its
    next query runs on a new server connection."""
    require_sqlmux("the pool option")
    cutter = Cutter(pg.port)
    try:
        backends = [{"address": f"127.0.0.1:{cutter.port}"}]
        with Sqlmux(pg, mode="session", size=2, session_reconnect=True, backends=backends) as mux:
            r = mux.raw(params={"application_name": "end-move"})
            r.query_ok("SELECT 1")
            pid1 = pid_of(pg, "end-move")
            pg.terminate_backend(pid1)
            err, closed = pushed(r, 1.0)
            check(err is None and not closed, f"the move was noticed: error {err}, closed {closed}")
            pid2 = int(r.scalar("SELECT pg_backend_pid()"))
            check(pid2 != pid1, f"same server process {pid1} after it was terminated")
            check(cutter.cut_all() >= 1, "no connection through the relay")
            err, closed = pushed(r, 1.0)
            check(err is None and not closed, f"the move was noticed: error {err}, closed {closed}")
            pid3 = int(r.scalar("SELECT pg_backend_pid()"))
            check(pid3 not in (pid1, pid2), "same server process after its connection was cut")
            r.terminate()
            check("session_reconnect" in mux.log_text(), "the move is not logged as session_reconnect")
    finally:
        cutter.close()


def case_transaction_mode_unchanged(pg):
    """Transaction pool: the pooled server connection of an idle client is
    terminated; the client is told nothing and its next query runs."""
    require_sqlmux("a shared server connection")
    with Sqlmux(pg, mode="transaction", size=1) as mux:
        r = mux.raw()
        pid1 = int(r.scalar("SELECT pg_backend_pid()"))
        pg.terminate_backend(pid1)
        err, closed = pushed(r, 1.0)
        check(err is None and not closed, f"transaction mode: error {err}, closed {closed}")
        pid2 = int(r.scalar("SELECT pg_backend_pid()"))
        check(pid2 != pid1, "transaction mode: the same server process")
        r.terminate()


if __name__ == "__main__":
    run_cases(__file__, [case_terminated_idle_session_gets_fatal, case_idle_session_timeout_gets_fatal,
                         case_server_closes_without_message, case_closed_in_transaction,
                         case_session_reconnect_option,
                         case_transaction_mode_unchanged], timeout=120)
