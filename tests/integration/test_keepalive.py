#!/usr/bin/python3
"""TCP keepalive (issue 18, README [server] tcp_keepalive ...): the sockets
sqlmux accepts from clients and the ones it opens to PostgreSQL and
MariaDB carry SO_KEEPALIVE with tcp_keepidle / tcp_keepintvl / tcp_keepcnt,
as `ss -o` shows them (timer:(keepalive,<time to the first probe>,0));
tcp_keepalive = false leaves them without (libpq's own default, on, is
overridden on the server side too)."""

import re
import subprocess
import time

import psycopg2

from harness import *

IDLE = 77


def _timers() -> list[tuple[int, int, str]]:
    """(local port, peer port, timer) of every established loopback TCP socket."""
    out = subprocess.run(["ss", "-tnoH", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.search(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+)(.*)$", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return rows


def _seconds(timer: str) -> float | None:
    m = re.search(r"timer:\(keepalive,([^,]+),", timer)
    if not m:
        return None
    t = m.group(1)
    secs = 0.0
    for v, unit in re.findall(r"([\d.]+)(min|sec|ms|h)", t):
        secs += float(v) * {"h": 3600, "min": 60, "sec": 1, "ms": 0.001}[unit]
    return secs


def _hold_both(mux):
    """A PostgreSQL and a MySQL client, each in a transaction (so each holds
    a server connection)."""
    pg = psycopg2.connect(mux.dsn())
    pg.cursor().execute("SELECT 1")  # in a transaction: its server connection stays
    my = mux.my_connect()
    with my.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    return pg, my


def case_keepalive_options(pg):
    require_sqlmux("sqlmux's tcp_keepalive")
    from mysql_harness import MariaDbServer

    def tweak(cfg):
        cfg["server"].update({"tcp_keepidle": IDLE, "tcp_keepintvl": 11, "tcp_keepcnt": 5})

    with MariaDbServer() as my, Sqlmux(pg, my=my, size=2, tweak=tweak) as mux:
        c_pg, c_my = _hold_both(mux)
        try:
            # A socket with unacknowledged data shows its retransmission
            # timer ("on") instead: read until every one is quiet.
            deadline = time.monotonic() + 5
            while True:
                rows = _timers()
                ours = [t for lp, pp, t in rows if lp in (mux.port, mux.my_port) or pp in (pg.port, my.port)]
                if not any("timer:(on" in t for t in ours) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            where = {
                "postgres client": [t for lp, pp, t in rows if lp == mux.port],
                "mysql client": [t for lp, pp, t in rows if lp == mux.my_port],
                "postgres server connection": [t for lp, pp, t in rows if pp == pg.port],
                "mysql server connection": [t for lp, pp, t in rows if pp == my.port],
            }
            for what, timers in where.items():
                check(timers, f"no {what} socket in ss's list")
                for t in timers:
                    s = _seconds(t)
                    check(s is not None and IDLE - 15 <= s <= IDLE, f"{what}: {t.strip()!r}, want keepalive <= {IDLE}s")
                log(f"{what}: {timers[0].strip()}")
        finally:
            c_pg.close()
            c_my.close()


def case_keepalive_off(pg):
    require_sqlmux("sqlmux's tcp_keepalive")
    from mysql_harness import MariaDbServer

    def tweak(cfg):
        cfg["server"]["tcp_keepalive"] = False

    with MariaDbServer() as my, Sqlmux(pg, my=my, size=2, tweak=tweak) as mux:
        c_pg, c_my = _hold_both(mux)
        try:
            rows = _timers()
            mine = [t for lp, pp, t in rows if lp in (mux.port, mux.my_port) or pp in (pg.port, my.port)]
            check(len(mine) >= 4, f"sqlmux's sockets: {mine}")
            on = [t for t in mine if "keepalive" in t]
            check(not on, f"tcp_keepalive = false, yet: {on}")
            log(f"tcp_keepalive = false: none of sqlmux's {len(mine)} sockets has a keepalive timer")
        finally:
            c_pg.close()
            c_my.close()


if __name__ == "__main__":
    run_cases(__file__, [case_keepalive_options, case_keepalive_off], timeout=120)
