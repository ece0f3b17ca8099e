#!/usr/bin/python3
"""Issue 18: PgBouncer's tooling against the admin console. Debian's
prometheus-pgbouncer-exporter (unchanged: it connects to database
"pgbouncer" and reads SHOW STATS, POOLS, DATABASES and LISTS by column
name) runs against sqlmux's console; its /metrics must show the clients
that really hold connections and traffic counters that grow with queries.
The console's PgBouncer-named columns are also checked directly, with
their types (psycopg2 turns int4 into int and numeric into Decimal)."""

import decimal
import os
import re
import shutil
import subprocess
import time
import urllib.request

import psycopg2

from harness import *
from test_admin import ADMIN_PASS, with_console

EXPORTER = "/usr/bin/prometheus-pgbouncer-exporter"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(port):
    """{(name, labels text): float} of the exporter's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        check_eq(r.status, 200, "exporter /metrics status")
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def metric(samples, name, labels=""):
    key = (name, labels)
    check(key in samples, f"{name}{labels} missing from /metrics: "
          f"{sorted(k for k in samples if k[0].startswith('pgbouncer_'))}")
    return samples[key]


class Exporter:
    def __init__(self, console_port):
        self.port = free_port()
        # configargparse also reads PORT, HOST, CONFIG, PGBOUNCER_*: only ours.
        env = {k: v for k, v in os.environ.items()
               if k not in ("PORT", "HOST", "CONFIG") and not k.startswith(("PGBOUNCER_", "PG"))}
        env["PGPASSWORD"] = ADMIN_PASS
        self.errlog = open(os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                        f"sqlmux-exporter-{os.getpid()}.log"), "w+")
        self.proc = subprocess.Popen(
            [EXPORTER, "--host", "127.0.0.1", "--port", str(self.port), "--pgbouncer-host", "127.0.0.1",
             "--pgbouncer-port", str(console_port), "--pgbouncer-user", "admin"],
            env=env, stdout=self.errlog, stderr=subprocess.STDOUT)

    def output(self):
        self.errlog.seek(0)
        return self.errlog.read()[-3000:]

    def __enter__(self):
        if not wait_port("127.0.0.1", self.port, 20, self.proc):
            fail(f"exporter did not listen (exit {self.proc.poll()}): {self.output()}")
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        name = self.errlog.name
        self.errlog.close()
        os.remove(name)


def case_exporter_reads_real_values(pg):
    require_sqlmux("the admin console")
    if not shutil.which(EXPORTER):
        raise Skip("prometheus-pgbouncer-exporter is not installed (scripts/lib/deps.sh)")

    def body(mux, con):
        with Exporter(con.port) as ex:
            s0 = scrape(ex.port)
            check_eq(metric(s0, "pgbouncer_databases"), 1.0, "pgbouncer_databases (pools configured)")
            check_eq(metric(s0, "pgbouncer_users"), 2.0, "pgbouncer_users (app and admin)")
            check_eq(metric(s0, "pgbouncer_pool_size", '{database="appdb"}'), 10.0, "pool_size")
            check_eq(metric(s0, "pgbouncer_reserve_pool", '{database="appdb"}'), 0.0, "reserve_pool")
            check(metric(s0, "pgbouncer_used_clients") >= 1.0, "the exporter's own console client")

            # Three clients; two of them inside a transaction hold a server connection.
            clients = [mux.connect(autocommit=True) for _ in range(3)]
            for c in clients:
                with c.cursor() as cur:
                    cur.execute("SELECT 1")
            for c in clients[:2]:
                with c.cursor() as cur:
                    cur.execute("BEGIN; SELECT 1")
            s1 = scrape(ex.port)
            labels = '{database="appdb",user="app"}'
            check_eq(metric(s1, "pgbouncer_active_clients", labels), 3.0, "cl_active (linked and idle)")
            check_eq(metric(s1, "pgbouncer_waiting_clients", labels), 0.0, "cl_waiting")
            check_eq(metric(s1, "pgbouncer_pools"), 1.0, "pgbouncer_pools")
            check(metric(s1, "pgbouncer_used_servers") >= 2.0, "used_servers while two hold one")
            check(metric(s1, "pgbouncer_used_clients") >= 4.0, "used_clients: three and the exporter")

            # The same through the console under PgBouncer's name, with types.
            c = psycopg2.connect(con.dsn(db="pgbouncer"))
            c.autocommit = True
            with c.cursor() as cur:
                cur.execute("SHOW POOLS")
                cols = [d.name for d in cur.description]
                check_eq(cols[:17], ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
                                     "cl_waiting_cancel_req", "sv_active", "sv_active_cancel",
                                     "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
                                     "maxwait", "maxwait_us", "pool_mode", "protocol"], "SHOW POOLS columns")
                row = dict(zip(cols, cur.fetchone()))
                check_eq((row["sv_active"], row["cl_active"], row["cl_waiting"], row["pool_mode"]),
                         (2, 3, 0, "transaction"), f"SHOW POOLS row {row}")
                check(row["sv_active"] + row["sv_idle"] + row["sv_tested"] + row["sv_login"] >= 2,
                      f"server connections {row}")
                cur.execute("SHOW STATS")
                cols = [d.name for d in cur.description]
                check_eq(cols[:16], ["database", "total_xact_count", "total_query_count", "total_received",
                                     "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
                                     "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
                                     "avg_xact_time", "avg_query_time", "avg_wait_time", "protocol"],
                         "SHOW STATS columns")
                row = dict(zip(cols, cur.fetchone()))
                check(isinstance(row["total_query_count"], decimal.Decimal), f"numeric: {row}")
                check(row["total_query_count"] >= 5 and row["total_wait_time"] >= 0
                      and row["avg_query_time"] > 0 and row["total_query_time"] > 0, f"SHOW STATS row {row}")
                cur.execute("SHOW DATABASES")
                cols = [d.name for d in cur.description]
                check_eq(cols[:14], ["name", "host", "port", "database", "force_user", "pool_size",
                                     "min_pool_size", "reserve_pool", "pool_mode", "max_connections",
                                     "current_connections", "paused", "disabled", "protocol"],
                         "SHOW DATABASES columns")
                row = dict(zip(cols, cur.fetchone()))
                check_eq((row["name"], row["host"], row["port"], row["database"], row["pool_size"]),
                         ("appdb", "127.0.0.1", pg.port, "appdb", 10), f"SHOW DATABASES row {row}")
                check(row["current_connections"] >= 2, f"current_connections {row}")
            c.close()
            for c in clients[:2]:
                with c.cursor() as cur:
                    cur.execute("COMMIT")

            # Traffic counters grow with queries.
            cur = clients[2].cursor()
            for _ in range(5):
                cur.execute("SELECT repeat('x', 1000)")
                cur.fetchone()
            s2 = scrape(ex.port)
            stat = '{database="appdb"}'
            for name in ("pgbouncer_requests_total", "pgbouncer_received_bytes_total",
                         "pgbouncer_sent_bytes_total", "pgbouncer_query_microseconds_total"):
                check(metric(s2, name, stat) > metric(s1, name, stat),
                      f"{name} grew ({metric(s1, name, stat)} -> {metric(s2, name, stat)})")
            check(metric(s2, "pgbouncer_requests_total", stat) - metric(s1, "pgbouncer_requests_total", stat) >= 7,
                  "five queries and two COMMITs counted")
            check(metric(s2, "pgbouncer_sent_bytes_total", stat) - metric(s1, "pgbouncer_sent_bytes_total", stat)
                  >= 5000, "five 1000-byte rows sent")
            check(ex.proc.poll() is None, f"exporter still running: {ex.output()}")
            check("Traceback" not in ex.output(), f"exporter errors: {ex.output()}")
            log(f"exporter: requests {metric(s1, 'pgbouncer_requests_total', stat):.0f} -> "
                f"{metric(s2, 'pgbouncer_requests_total', stat):.0f}, active clients 3, used servers "
                f"{metric(s1, 'pgbouncer_used_servers'):.0f}")
            for c in clients:
                c.close()

    with_console(pg, body, metrics=True)


if __name__ == "__main__":
    run_cases(__file__, [case_exporter_reads_real_values], timeout=120)
