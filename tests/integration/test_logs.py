#!/usr/bin/python3
"""Logs operators can use (issue 18, README "Logs"):

- every line about a client names it the same way: its id, its address
  (host:port, the port the client connected from), and once it said them
  its user, database and application name (PostgreSQL's application_name,
  MySQL's program_name connection attribute);
- log_connections / log_disconnections put a client's login and its end at
  info (default) or at debug;
- log_format = "json": one JSON object per line, with the client's fields
  apart; a user name with quotes, a newline and bytes that are not UTF-8
  stays inside its line in both formats;
- when stderr is the journal (JOURNAL_STREAM names it), each line starts
  with its syslog priority and carries no time of its own;
- a reload switches the format."""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2

from harness import *


def _local_port(conn) -> int:
    s = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        return s.getsockname()[1]
    finally:
        s.close()


def _wait_for(mux, pattern: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, mux.log_text())
        if m:
            return m.group(0)
        time.sleep(0.05)
    fail(f"no log line matching {pattern!r}; log tail:\n{mux.log_tail(20)}")


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue  # lines the harness itself wrote
        out.append(json.loads(line))
    return out


def _bad_user_login(mux, user: bytes):
    """A startup packet for `user` (raw bytes), answered by an error."""
    body = struct_pack_startup({b"user": user, b"database": b"appdb"})
    s = socket.create_connection((mux.host, mux.port), timeout=10)
    try:
        s.sendall(body)
        s.settimeout(10)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if data[:1] == b"E":
                break
            if data[:1] == b"R":  # asks for a password: send a wrong one
                s.sendall(b"p" + (4 + 6).to_bytes(4, "big") + b"wrong\x00")
                data = b""
        return data
    finally:
        s.close()


def struct_pack_startup(params: dict) -> bytes:
    payload = (3 << 16).to_bytes(4, "big")
    for k, v in params.items():
        payload += k + b"\x00" + v + b"\x00"
    payload += b"\x00"
    return (4 + len(payload)).to_bytes(4, "big") + payload


def case_text_client_lines(pg):
    require_sqlmux("sqlmux's log lines")
    with Sqlmux(pg, size=2) as mux:
        conn = psycopg2.connect(mux.dsn(application_name="billing-worker"))
        port = _local_port(conn)
        cur = conn.cursor()
        cur.execute("SELECT 1")
        conn.close()
        login = _wait_for(mux, rf"info  \[w\d+\] client \d+ \(127\.0\.0\.1:{port} user=app db=appdb "
                               rf"app=\"billing-worker\"\): login")
        cid = re.search(r"client (\d+)", login).group(1)
        _wait_for(mux, rf"client {cid} \(127\.0\.0\.1:{port} [^)]*\): closing: client_closed")
        # A failed login names the address too; the user's own bytes (a
        # newline, a quote) stay inside the line.
        _bad_user_login(mux, b'evil\nINFO  forged "line"')
        _wait_for(mux, r"client \d+ \(127\.0\.0\.1:\d+ user=evil\?INFO  forged \"line\" db=appdb\): ")
        check(not re.search(r"^INFO  forged", mux.log_text(), re.M), "a user name started a log line of its own")
        log(f"login and end lines name 127.0.0.1:{port}, the user, database and application")


def case_connections_switches(pg):
    require_sqlmux("log_connections / log_disconnections")

    def tweak(cfg):
        cfg["server"]["log_connections"] = False
        cfg["server"]["log_disconnections"] = False

    with Sqlmux(pg, size=2, tweak=tweak) as mux:
        for _ in range(3):
            conn = psycopg2.connect(mux.dsn())
            conn.cursor().execute("SELECT 1")
            conn.close()
        # An error still is logged at info.
        try:
            psycopg2.connect(mux.dsn(password="wrong")).close()
            fail("wrong password accepted")
        except psycopg2.OperationalError:
            pass
        _wait_for(mux, r"closing: auth_failed")
        text = mux.log_text()
        check(": login" not in text, "log_connections = false: a login line at info")
        check("closing: client_closed" not in text, "log_disconnections = false: an end line at info")
    log("with both switched off: no login or end line at info; the failed login still logged")


def case_mysql_lines(pg):
    require_sqlmux("sqlmux's log lines")
    from mysql_harness import MariaDbServer

    with MariaDbServer() as my, Sqlmux(None, my=my, size=2) as mux:
        c = mux.my_connect(program_name="report-job")
        port = c._sock.getsockname()[1]
        with c.cursor() as cur:
            cur.execute("SELECT 1")
        c.close()
        login = _wait_for(mux, rf"mysql client \d+ \(127\.0\.0\.1:{port} user=app db=appdb app=\"report-job\"\): login")
        cid = re.search(r"client (\d+)", login).group(1)
        _wait_for(mux, rf"mysql client {cid} \(127\.0\.0\.1:{port} [^)]*\): closing: client_closed")
        log(f"MySQL: login and end lines name 127.0.0.1:{port} and the program name")


def case_json_format_and_reload(pg):
    require_sqlmux("log_format")

    def tweak(cfg):
        cfg["server"]["log_format"] = "json"

    with Sqlmux(pg, size=2, tweak=tweak) as mux:
        conn = psycopg2.connect(mux.dsn(application_name='app "quoted"'))
        port = _local_port(conn)
        conn.close()
        _bad_user_login(mux, b'bad"\\\n\xff\xfeuser')
        _wait_for(mux, r'"user":"bad')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = _json_lines(mux.log_text())
            logins = [l for l in lines if l.get("message") == "login"]
            bad = [l for l in lines if l.get("user", "").startswith("bad")]
            if logins and bad:
                break
            time.sleep(0.05)
        for l in lines:
            for k in ("time", "level", "thread", "message"):
                check(k in l, f"json line without {k}: {l}")
        check_eq(len(logins), 1, "json login lines")
        got = logins[0]
        check_eq(got["address"], f"127.0.0.1:{port}", "json address")
        check_eq((got["protocol"], got["user"], got["database"], got["application"]),
                 ("postgres", "app", "appdb", 'app "quoted"'), "json client fields")
        check(isinstance(got["client"], int), f"json client id: {got['client']!r}")
        check(bad, "no json line for the bad user")
        check_eq(bad[0]["user"], 'bad"\\\n\ufffd\ufffduser', "json: the user's bytes escaped, non-UTF-8 replaced")
        # Every line of the file is one JSON object (the harness's own
        # lines aside).
        for line in mux.log_text().splitlines():
            if line and not line.startswith("---"):
                json.loads(line)

        # Reload to text.
        with open(mux.config_path) as f:
            text = f.read()
        with open(mux.config_path, "w") as f:
            f.write(text.replace('log_format = "json"', 'log_format = "text"'))
        mux.send_signal(signal.SIGHUP)
        _wait_for(mux, r"info  \[main\] reload: .*server\.log_format")
        conn = psycopg2.connect(mux.dsn())
        conn.close()
        _wait_for(mux, r"info  \[w\d+\] client \d+ \(127\.0\.0\.1:\d+ user=app db=appdb\): login")
    log("json: one object per line with client fields apart; reload switched back to text")


def case_journal_priorities(pg):
    require_sqlmux("journald priorities")
    d = tempfile.mkdtemp(prefix="smx-it-journal-")
    try:
        port = free_port()
        cfg = default_config(pg.port, port, "transaction", 2)
        path = os.path.join(d, "mux.toml")
        with open(path, "w") as f:
            f.write(to_toml(cfg))
        for journal in (True, False):
            out_path = os.path.join(d, f"stderr-{journal}")
            with open(out_path, "wb") as out:
                st = os.fstat(out.fileno())
                env = dict(os.environ)
                # JOURNAL_STREAM naming another file: not the journal.
                env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino if journal else st.st_ino + 1}"
                proc = subprocess.Popen([SQLMUX_BIN, "--config", path], stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=out, env=env)
                try:
                    check(wait_port("127.0.0.1", port, 10, proc), "sqlmux did not start")
                    conn = psycopg2.connect(f"host=127.0.0.1 port={port} dbname=appdb user=app password=apppass")
                    conn.close()
                    time.sleep(0.3)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
            with open(out_path, "rb") as f:
                text = f.read().decode()
            lines = [l for l in text.splitlines() if l]
            check(lines, "no log lines")
            if journal:
                for l in lines:
                    check(re.match(r"<[3467]>(error|warn |info |debug)", l), f"journal line without a priority: {l!r}")
                check(any(l.startswith("<6>info  [w") and ": login" in l for l in lines), "no <6> login line")
            else:
                for l in lines:
                    check(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z ", l), f"plain line without its time: {l!r}")
    finally:
        subprocess.run(["rm", "-rf", d])
    log("JOURNAL_STREAM naming stderr: <N> priorities and no time; naming another file: plain lines")


if __name__ == "__main__":
    run_cases(__file__, [case_text_client_lines, case_connections_switches, case_mysql_lines,
                         case_json_format_and_reload, case_journal_priorities], timeout=150)
