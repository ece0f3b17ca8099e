#!/usr/bin/python3
"""pgbench through sqlmux in transaction mode (pool size 10, 100 clients),
simple and extended protocol, while pg_stat_activity is sampled to check
that PostgreSQL never sees more than `size` app connections. The same load
is run directly against PostgreSQL for a side-by-side TPS figure."""

import os
import re
import subprocess
import threading
import time

from harness import *

POOL_SIZE = 10
CLIENTS = 100
DURATION = int(os.environ.get("PGBENCH_SECONDS", "10"))


def pgbench(host, port, *args, db="appdb", timeout=DURATION + 60):
    env = dict(os.environ, PGPASSWORD="apppass")
    cmd = ["pgbench", "-h", host, "-p", str(port), "-U", "app", *args, db]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r


def parse(out: str) -> dict:
    res = {}
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    res["processed"] = int(m.group(1)) if m else None
    m = re.search(r"number of failed transactions: (\d+)", out)
    res["failed"] = int(m.group(1)) if m else None
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    res["tps"] = float(m.group(1)) if m else None
    m = re.search(r"latency average = ([\d.]+) ms", out)
    res["latency_ms"] = float(m.group(1)) if m else None
    return res


class Sampler(threading.Thread):
    """Counts app sessions on appdb in pg_stat_activity every 100 ms (as the
    superuser on database postgres, so it never counts itself)."""

    def __init__(self, pg):
        super().__init__(daemon=True)
        self.pg = pg
        self.stop_evt = threading.Event()
        self.samples = []
        self.error = None

    def run(self):
        try:
            c = self.pg.connect_super("postgres")
            cur = c.cursor()
            while not self.stop_evt.is_set():
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'appdb'")
                self.samples.append(cur.fetchone()[0])
                self.stop_evt.wait(0.1)
            c.close()
        except Exception as e:  # noqa: BLE001
            self.error = e

    def stop(self):
        self.stop_evt.set()
        self.join(10)


def consistency(pg) -> tuple:
    with pg.connect_super("appdb") as c, c.cursor() as cur:
        cur.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM pgbench_branches),"
                    " (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
                    " (SELECT count(*) FROM pgbench_history)")
        return cur.fetchone()


def run_load(pg, host, port, proto, label, assert_pool_limit):
    before = consistency(pg)
    sampler = Sampler(pg)
    sampler.start()
    try:
        r = pgbench(host, port, "-c", str(CLIENTS), "-j", "2", "-T", str(DURATION), "-M", proto, "-n")
    finally:
        sampler.stop()
    res = parse(r.stdout)
    maxconn = max(sampler.samples) if sampler.samples else None
    log(f"{label}: rc={r.returncode} tps={res['tps']} processed={res['processed']} failed={res['failed']} "
        f"latency={res['latency_ms']}ms max app backends={maxconn} ({len(sampler.samples)} samples)")
    if r.returncode != 0:
        fail(f"{label}: pgbench exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}")
    check(res["failed"] == 0, f"{label}: pgbench reported failed transactions: {res['failed']}\n{r.stdout}")
    check(res["tps"] is not None and res["tps"] > 0, f"{label}: tps not > 0\n{r.stdout}")
    check(res["processed"] and res["processed"] > 0, f"{label}: no transactions processed\n{r.stdout}")
    check(sampler.error is None, f"{label}: pg_stat_activity sampler failed: {sampler.error}")
    if assert_pool_limit:
        check(maxconn is not None and 0 < maxconn <= POOL_SIZE,
              f"{label}: PostgreSQL saw {maxconn} app sessions on appdb; pool size is {POOL_SIZE}")
    after = consistency(pg)
    # Every committed pgbench transaction adds one history row and moves the
    # same delta in accounts, branches and tellers: no lost or mixed-up work.
    check(after[0] == after[1] == after[2] == after[3],
          f"{label}: balances disagree after the run (accounts, branches, tellers, history) = {after[:4]}")
    check_eq(after[4] - before[4], res["processed"], f"{label}: history rows added vs transactions processed")
    return res


def case_pgbench(pg):
    r = pgbench(pg.host, pg.port, "-i", "-s", "1", "-q")
    if r.returncode != 0:
        fail(f"pgbench -i failed: {r.stderr}")
    results = {}
    with Sqlmux(pg, mode="transaction", size=POOL_SIZE) as mux:
        via = "direct(as-if-sqlmux)" if DIRECT else "sqlmux"
        for proto in ("simple", "extended"):
            results[(via, proto)] = run_load(pg, mux.host, mux.port, proto, f"{via} -M {proto}",
                                             assert_pool_limit=not DIRECT)
            mux.assert_serving()
        if DIRECT:
            log("direct mode: pool-size limit not asserted")
    results[("postgres", "simple")] = run_load(pg, pg.host, pg.port, "simple", "postgres direct -M simple",
                                               assert_pool_limit=False)
    print("\n  TPS (100 clients, -j 2, %ds)" % DURATION)
    for (via, proto), res in results.items():
        print(f"  {via:22s} -M {proto:9s} tps={res['tps']:10.1f}  latency={res['latency_ms']} ms")
    print()


def case_pgbench_select_only_session_mode(pg):
    """Short read-only run in session mode (pool >= clients) and statement
    mode with -S (single-statement transactions)."""
    for mode, clients, size in (("session", 20, 20), ("statement", 50, 5)):
        with Sqlmux(pg, mode=mode, size=size) as mux:
            r = pgbench(mux.host, mux.port, "-c", str(clients), "-j", "2", "-T", "3", "-S", "-n", "-M", "extended")
            res = parse(r.stdout)
            log(f"{mode} -S: rc={r.returncode} tps={res['tps']} failed={res['failed']}")
            if r.returncode != 0:
                fail(f"{mode} pgbench -S exited {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}")
            check(res["failed"] == 0 and res["tps"] and res["tps"] > 0, f"{mode} -S: {r.stdout}")
            mux.assert_serving()


if __name__ == "__main__":
    run_cases(__file__, [case_pgbench, case_pgbench_select_only_session_mode], timeout=150)
