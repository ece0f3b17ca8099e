#!/usr/bin/python3
"""MySQL session mode is transparent when the server ends an idle session
(issue 19 item 8): MariaDB 10.11 closes a session killed with KILL <id> or
past its wait_timeout without a message, so the client's next command gets
2013 Lost connection / 2006 server has gone away and the connection is
closed; through sqlmux the same. With the pool option
`session_reconnect = true` the client moves to a new server connection
instead, keeping its system variables and schema; a client whose session
cannot move (a user variable, a transaction, a prepared statement) is
closed as before.

SQLMUX_MY_DIRECT=1 runs the parity cases against MariaDB itself."""

import select
import socket
import time

import pymysql

from harness import *
from mysql_harness import *

# What a client library reports for a connection the server closed.
LOST = (2013, 2006)


def connect(mux, **kw):
    kw.setdefault("read_timeout", 30)
    kw.setdefault("write_timeout", 30)
    kw.setdefault("autocommit", True)
    return mux.my_connect(**kw)


def server_id(my, marker):
    """The server connection whose last statement carries `marker`
    (information_schema.processlist)."""
    rows = my.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND USER = %s",
                  (f"%{marker}%", MY_USER))
    check(len(rows) <= 1, f"several server connections ran {marker}: {rows}")
    return rows[0][0] if rows else None


def mark_and_find(my, c, marker):
    """Runs a statement carrying `marker` that stays in the process list
    (SLEEP), and returns the id of the server connection running it."""
    import threading
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("rows", q(c, f"SELECT /* {marker} */ SLEEP(0.6)")),
                          daemon=True)
    th.start()
    sid = None
    deadline = time.monotonic() + 3
    while sid is None and time.monotonic() < deadline:
        time.sleep(0.05)
        sid = server_id(my, marker)
    th.join(10)
    check(not th.is_alive() and "rows" in box, f"{marker}: the SLEEP did not finish")
    check(sid is not None, f"{marker}: not in information_schema.processlist")
    return sid


def wait_gone(my, sid):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not my.sql("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s", (sid,)):
            return
        time.sleep(0.05)
    fail(f"server connection {sid} still there 5s after KILL")


def pushed(c, timeout=2.0):
    """What the client's socket holds without a command: 'eof', 'reset',
    'nothing' or the bytes."""
    s = c._sock
    r, _, _ = select.select([s], [], [], timeout)
    if not r:
        return "nothing"
    try:
        d = s.recv(4096, socket.MSG_PEEK)
    except ConnectionResetError:
        return "reset"
    return "eof" if d == b"" else d


def expect_lost(c, what):
    """The next command fails as on a closed connection, and so does the
    one after it."""
    try:
        q(c, "SELECT 'still here?'")
        fail(f"{what}: the next command succeeded")
    except pymysql.MySQLError as e:
        check(my_errno(e) in LOST, f"{what}: next command: {type(e).__name__}: {e}")
    try:
        q(c, "SELECT 1")
        fail(f"{what}: the command after that succeeded")
    except (pymysql.err.InterfaceError, pymysql.MySQLError):
        pass


def case_killed_idle_session_closes(my):
    """Session pool: KILL <id> of an idle client's server connection (found
    in information_schema.processlist): the client is closed with no
    message and its next command gets 2013/2006, as directly."""
    with Sqlmux(None, my=my, mode="session", size=2) as mux:
        c = connect(mux)
        q(c, "SELECT 1")
        sid = mark_and_find(my, c, "end-kill")
        my.kill(sid)
        wait_gone(my, sid)
        got = pushed(c)
        check(got in ("eof", "reset"), f"after KILL the client's socket holds {got!r}, want a close")
        expect_lost(c, "KILL")
        c.close()
        if not mux.direct:
            assert_serving(mux)


def case_wait_timeout_closes(my):
    """Session pool, SET SESSION wait_timeout = 1: after 1 s idle the
    server closes the session; so is the client, and its next command gets
    2013/2006."""
    with Sqlmux(None, my=my, mode="session", size=2) as mux:
        c = connect(mux)
        q(c, "SET SESSION wait_timeout = 1")
        check_eq(one(c, "SELECT @@session.wait_timeout"), 1, "wait_timeout")
        time.sleep(2.5)
        got = pushed(c)
        check(got in ("eof", "reset"), f"after wait_timeout the client's socket holds {got!r}, want a close")
        expect_lost(c, "wait_timeout")
        c.close()
        if not mux.direct:
            assert_serving(mux)


def assert_serving(mux):
    c = connect(mux)
    try:
        check_eq(one(c, "SELECT 41 + 1"), 42, "a new client afterwards")
    finally:
        c.close()


def case_session_reconnect_option(my):
    """session_reconnect = true: KILL of an idle client's server connection
    goes unnoticed; its next command runs on a new server connection with
    its session variables. Closed as before: a client with a user variable,
    one inside a transaction."""
    require_sqlmux_my("the pool option")
    with Sqlmux(None, my=my, mode="session", size=4, session_reconnect=True) as mux:
        c = connect(mux)
        q(c, "SET SESSION sql_mode = 'ANSI_QUOTES'")
        sid1 = mark_and_find(my, c, "move-1")
        my.kill(sid1)
        wait_gone(my, sid1)
        check_eq(pushed(c, 0.5), "nothing", "the client's socket after KILL")
        check_eq(one(c, "SELECT 'moved'"), "moved", "the next command")
        # FROM DUAL: a bare SELECT CONNECTION_ID() is answered with sqlmux's thread id.
        sid2 = one(c, "SELECT CONNECTION_ID() FROM DUAL")
        check(sid2 != sid1, f"same server connection {sid1} after KILL")
        check_eq(one(c, "SELECT @@session.sql_mode"), "ANSI_QUOTES", "sql_mode on the new connection")
        c.close()
        check("session_reconnect" in mux.log_text(), "the move is not logged as session_reconnect")

        for what, setup in (("a user variable", ["SET @x = 1"]), ("a transaction", ["BEGIN", "SELECT 1"])):
            c = connect(mux)
            for s in setup:
                q(c, s)
            sid = mark_and_find(my, c, "stay-" + what.replace(" ", "-"))
            my.kill(sid)
            wait_gone(my, sid)
            got = pushed(c)
            check(got in ("eof", "reset"), f"{what}: after KILL the client's socket holds {got!r}")
            expect_lost(c, what)
            c.close()
        assert_serving(mux)


def case_killed_inside_transaction(my):
    """Transaction pool (and session pool): a client idle inside BEGIN
    whose server connection is killed loses its transaction, so its next
    command fails (2013/2006) and the connection is closed, as directly; it
    must not run on another server connection outside the transaction (its
    COMMIT would then report success for a rolled-back INSERT)."""
    my.sql("CREATE TABLE IF NOT EXISTS appdb.end_tx (v int)")
    my.sql("GRANT ALL ON appdb.* TO 'app'@'%'")
    for mode in (["direct"] if MY_DIRECT else ["transaction", "session"]):
        my.sql("DELETE FROM appdb.end_tx")
        with Sqlmux(None, my=my, mode=mode, size=2) as mux:
            c = connect(mux)
            q(c, "BEGIN")
            q(c, "INSERT INTO end_tx VALUES (1)")
            sid = mark_and_find(my, c, f"end-tx-{mode}")
            my.kill(sid)
            wait_gone(my, sid)
            expect_lost(c, f"{mode}: inside a transaction")
            c.close()
            check_eq(my.scalar("SELECT COUNT(*) FROM appdb.end_tx"), 0, f"{mode}: rows of the killed transaction")
            if not mux.direct:
                assert_serving(mux)


def case_transaction_mode_unchanged(my):
    """Transaction pool of 1: the pooled server connection of an idle
    client is killed; the client's next command runs unnoticed."""
    require_sqlmux_my("a shared server connection")
    with Sqlmux(None, my=my, mode="transaction", size=1) as mux:
        c = connect(mux)
        sid1 = mark_and_find(my, c, "tx-kill")
        my.kill(sid1)
        wait_gone(my, sid1)
        check_eq(one(c, "SELECT 'fresh'"), "fresh", "transaction mode: the next command")
        check(one(c, "SELECT CONNECTION_ID() FROM DUAL") != sid1, "transaction mode: same server connection")
        c.close()


if __name__ == "__main__":
    run_cases(__file__, [case_killed_idle_session_closes, case_wait_timeout_closes,
                         case_session_reconnect_option, case_killed_inside_transaction,
                         case_transaction_mode_unchanged],
              timeout=150, server=MariaDbServer, direct=MY_DIRECT)
