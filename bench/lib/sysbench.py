"""sysbench OLTP runs (oltp_point_select, oltp_read_write) with the pgsql
driver against PostgreSQL targets and the mysql driver against the mysql-*
targets (MariaDB directly, through HAProxy, through sqlmux's mysql
listener). Both drivers use server-side prepared statements (pgsql:
PQprepare, named statements; mysql: --db-ps-mode=auto, sysbench's default,
COM_STMT_PREPARE once per thread and COM_STMT_EXECUTE per query).

Latency: sysbench reports one integer percentile (--percentile=99 here, 95
in bench/mysql); the median comes from its --histogram output (logarithmic
buckets, ~1.8 % wide): the first bucket at which the cumulative count
reaches half of all events.

Fixed rate (`rate`: sysbench --rate=N): an event generator thread queues
transactions on a Poisson schedule at N per second in total; worker threads
take them from the queue (polling it with usleep(0.5 s x threads / N) when
it is empty). sysbench's latency then starts when a worker has dequeued a
transaction, so unlike pgbench -R's it does **not** include the time a
transaction waited in the queue (nor that polling). p50, p99 and p99.9 come
from the histogram (sysbench's own --percentile takes integers only, so it
cannot give p99.9; its p99 is kept as a cross-check, p99_sysbench_ms)."""

from __future__ import annotations

import collections
import re
import subprocess
import time

from env import HarnessError, children_cpu_seconds, cpu_seconds, log, proc_counters, proxy_per_tx
from proxies import PASSWORD, USER, Target

# Per protocol: how to point sysbench at a target.
DRIVERS = {
    "pgsql": lambda t: ["--db-driver=pgsql", f"--pgsql-host={t.host}", f"--pgsql-port={t.port}",
                        f"--pgsql-user={USER}", f"--pgsql-password={PASSWORD}", f"--pgsql-db={t.db}"],
    "mysql": lambda t: ["--db-driver=mysql", f"--mysql-host={t.host}", f"--mysql-port={t.port}",
                        f"--mysql-user={USER}", f"--mysql-password={PASSWORD}", f"--mysql-db={t.db}"],
}


def driver_for(target: Target) -> str:
    """mysql for the mysql-* targets (MariaDB behind them), else pgsql."""
    return "mysql" if target.name.startswith("mysql-") else "pgsql"


def _table_args(tables: int, table_size: int) -> list[str]:
    return [f"--tables={tables}", f"--table-size={table_size}"]


def prepare(target: Target, tables: int, table_size: int, driver: str = "pgsql"):
    """Creates sbtest1..N directly on the database server (as app)."""
    t0 = time.monotonic()
    base = DRIVERS[driver](target) + _table_args(tables, table_size)
    subprocess.run(["sysbench", "oltp_common", *base, "cleanup"], capture_output=True, text=True, timeout=300)
    r = subprocess.run(["sysbench", "oltp_common", *base, "prepare"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise HarnessError(f"sysbench prepare failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    log(f"sysbench prepare ({tables} tables x {table_size} rows) done in {time.monotonic() - t0:.1f}s")


def parse_histogram(out: str) -> list[tuple[float, int]]:
    rows = []
    inside = False
    for line in out.splitlines():
        if line.startswith("Latency histogram"):
            inside = True
            continue
        if inside:
            m = re.match(r"\s*([\d.]+)\s*\|\**\s*(\d+)\s*$", line)
            if m:
                rows.append((float(m.group(1)), int(m.group(2))))
            elif rows:
                break  # the first line after the buckets
    return rows


def histogram_percentile(rows: list[tuple[float, int]], p: float) -> float | None:
    total = sum(c for _, c in rows)
    if not total:
        return None
    need = p / 100.0 * total
    acc = 0
    for v, c in rows:
        acc += c
        if acc >= need:
            return v
    return rows[-1][0]


def parse_report(out: str, percentile: int = 99) -> dict:
    def num(rx, conv=float):
        m = re.search(rx, out, re.M)
        return conv(m.group(1)) if m else None

    return {
        "transactions": num(r"^\s*transactions:\s+(\d+)", int),
        "tps": num(r"^\s*transactions:\s+\d+\s+\(([\d.]+) per sec"),
        "qps": num(r"^\s*queries:\s+\d+\s+\(([\d.]+) per sec"),
        "ignored_errors": num(r"^\s*ignored errors:\s+(\d+)", int),
        "reconnects": num(r"^\s*reconnects:\s+(\d+)", int),
        f"p{percentile}_ms": num(rf"^\s*{percentile}th percentile:\s+([\d.]+)"),
        "avg_ms": num(r"^\s*avg:\s+([\d.]+)"),
        "total_time_s": num(r"^\s*total time:\s+([\d.]+)s"),
    }


def run(target: Target, *, test: str, threads: int, duration: int, tables: int, table_size: int,
        driver: str | None = None, percentile: int = 99, extra: tuple = (), rate: int | None = None,
        events: int | None = None) -> dict:
    """One sysbench run; the result has p50_ms (histogram) and
    p<percentile>_ms (sysbench's own). extra: more sysbench options.
    driver: None = driver_for(target).

    rate: sysbench --rate (fixed rate, see the module doc): p50/p99/p99.9
    all from the histogram (excluding queue wait), rate_held (TPS at least
    95 % of the rate) and the proxy's user and system CPU and voluntary and
    involuntary context switches per transaction (env.proc_counters before
    and after, as pgbench's fixed-rate runs). events: --events=N (at most N
    transactions in all; the pre-warm of the fixed-rate runs)."""
    driver = driver or driver_for(target)
    base = DRIVERS[driver](target) + _table_args(tables, table_size)
    cmd = ["sysbench", test, *base, f"--threads={threads}", f"--time={duration}", "--report-interval=0",
           "--histogram=on", f"--percentile={percentile}", *extra]
    if rate:
        cmd.append(f"--rate={rate}")
    if events:
        cmd.append(f"--events={events}")
    cmd.append("run")
    pc0 = proc_counters(target.pid)
    cpu0, ccpu0, t0 = cpu_seconds(target.pid), children_cpu_seconds(), time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 180)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"sysbench {test} against {target.name} did not finish within {duration + 180}s") \
            from None
    wall = time.monotonic() - t0
    cpu1, ccpu1 = cpu_seconds(target.pid), children_cpu_seconds()
    pc1 = proc_counters(target.pid)
    rep = parse_report(r.stdout, percentile)
    hist = parse_histogram(r.stdout)
    proxy_cpu = (cpu1 - cpu0) if (cpu0 is not None and cpu1 is not None) else None
    tx = rep["transactions"] or 0
    fatal_lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines()
                   if any(w in ln for w in ("FATAL", "ALERT", "WARNING", "ERROR"))]
    res = {
        "tool": "sysbench",
        "test": test,
        "driver": driver,
        "target": target.name,
        "clients": threads,
        "duration_s": duration,
        "wall_s": round(wall, 3),
        "sysbench_total_time_s": rep["total_time_s"],
        "command": " ".join(cmd).replace(f"--{driver}-password={PASSWORD}", f"--{driver}-password=***"),
        "rc": r.returncode,
        "tps": rep["tps"],
        "qps": rep["qps"],
        "processed": tx,
        "p50_ms": histogram_percentile(hist, 50),
        "p50_source": "histogram",
        f"p{percentile}_ms": rep[f"p{percentile}_ms"],
        f"p{percentile}_source": f"sysbench --percentile={percentile}",
        "mean_ms": rep["avg_ms"],
        "ignored_errors": rep["ignored_errors"] or 0,
        "reconnects": rep["reconnects"] or 0,
        "proxy_cpu_s": round(proxy_cpu, 3) if proxy_cpu is not None else None,
        "proxy_cpu_s_per_1k_tx": (proxy_cpu / tx * 1000.0) if proxy_cpu is not None and tx else None,
        "client_cpu_s": round(ccpu1 - ccpu0, 3),
        "messages": dict(collections.Counter(ln[:160] for ln in fatal_lines).most_common(8)),
        "stderr_tail": (r.stdout[-800:] + r.stderr[-1500:]) if r.returncode != 0 else "",
    }
    if rate:
        res.update({
            "rate": rate, "rate_held": rep["tps"] is not None and rep["tps"] >= 0.95 * rate,
            "latency_includes_schedule_lag": False,
            "p99_ms": histogram_percentile(hist, 99), "p99_source": "histogram",
            "p99_sysbench_ms": rep.get("p99_ms") if percentile == 99 else None,
            "p999_ms": histogram_percentile(hist, 99.9), "p999_source": "histogram",
            "histogram_events": sum(c for _, c in hist),
            **proxy_per_tx(pc0, pc1, tx),
        })
    # sysbench retries "ignorable" errors (deadlock 40P01, unique violation
    # 23505, serialization 40001) and counts them; those are the errors.
    res["errors"] = res["ignored_errors"] + res["reconnects"]
    if r.returncode < 0:
        res["status"] = f"crashed (signal {-r.returncode})"
    elif r.returncode != 0 or rep["tps"] is None:
        res["status"] = f"could not run (rc {r.returncode})"
    elif tx == 0:
        res["status"] = "no transactions"
    else:
        res["status"] = "errors" if res["errors"] else "ok"
    res["fatal"] = res["status"] not in ("ok", "errors")
    return res

