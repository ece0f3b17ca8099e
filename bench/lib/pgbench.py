"""pgbench runs: select-only (-S) in simple or prepared protocol, optionally
with a new connection per transaction (-C). TPS and failure counts come from
pgbench's report, latency percentiles from its per-transaction logs (-l),
the proxy's CPU from /proc before and after."""

from __future__ import annotations

import collections
import glob
import math
import os
import re
import shutil
import subprocess
import time

from env import HarnessError, children_cpu_seconds, cpu_seconds, log, proc_counters, proxy_per_tx
from proxies import PASSWORD, USER, Target


def _env(target: Target | None = None) -> dict:
    """libpq's settings for pgbench: the password, a connect timeout and,
    for a TLS target (sqlmux-tls), PGSSLMODE=require (the target's
    listener refuses plaintext clients, so every connection is TLS). Other
    targets keep libpq's default (prefer: none of them offers TLS)."""
    e = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="15")
    if target is not None and target.sslmode:
        e["PGSSLMODE"] = target.sslmode
    return e


def init(pg, scale: int):
    """pgbench -i as app (the owner of appdb, so app owns the tables)."""
    t0 = time.monotonic()
    cmd = ["pgbench", "-i", "-q", "-s", str(scale), "-h", pg.host, "-p", str(pg.port), "-U", USER, "appdb"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    if r.returncode != 0:
        raise HarnessError(f"pgbench -i failed ({r.returncode}):\n{r.stderr[-3000:]}")
    pg.psql("VACUUM ANALYZE", db="appdb")
    log(f"pgbench -i -s {scale} done in {time.monotonic() - t0:.1f}s")


def percentile(sorted_vals: list, p: float):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def read_log(prefix: str, lags: list | None = None) -> tuple[list[int], collections.Counter, float | None]:
    """Per-transaction logs (one file per thread: PREFIX.PID[.N]): the third
    column is the latency in microseconds, or a word (failed, skipped, ...);
    the fifth and sixth are when the transaction ended (epoch s, us). With
    -R the latency counts from the transaction's scheduled start, and the
    seventh column is the schedule lag (scheduled to actual start, us),
    appended to `lags` when given. Returns (sorted latencies, other words,
    seconds from the first to the last transaction end: the length of the
    transaction phase)."""
    lat = []
    other = collections.Counter()
    first = last = None
    for path in glob.glob(prefix + ".*"):
        with open(path, "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                v = parts[2]
                if v.isdigit():
                    lat.append(int(v))
                    if lags is not None and len(parts) >= 7 and parts[6].isdigit():
                        lags.append(int(parts[6]))
                else:
                    other[v.decode("ascii", "replace")] += 1
                t = int(parts[4]) * 1000000 + int(parts[5])
                if first is None or t < first:
                    first = t
                if last is None or t > last:
                    last = t
    lat.sort()
    return lat, other, (last - first) / 1e6 if first is not None else None


_ERR_NORMALIZE = [
    (re.compile(r"client \d+"), "client N"),
    (re.compile(r"script \d+"), "script N"),
    (re.compile(r"command \d+"), "command N"),
    (re.compile(r"query \d+"), "query N"),
    (re.compile(r'"P\d+_\d+"'), '"P*"'),
    (re.compile(r"port \d+"), "port N"),
]


def error_summary(stderr: str) -> dict:
    """Counts what went wrong, from pgbench's stderr."""
    aborted = set()
    kinds = collections.Counter()
    prepared = 0
    conn_failed = 0
    for line in stderr.splitlines():
        m = re.search(r"client (\d+) (?:script \d+ )?aborted", line)
        if m:
            aborted.add(int(m.group(1)))
        if re.search(r'prepared statement "[^"]*" (already exists|does not exist)', line):
            prepared += 1
        if "connection to server" in line and "failed" in line or "could not connect" in line:
            conn_failed += 1
        if "error" in line.lower() or "fatal" in line.lower():
            msg = line.split("ERROR:", 1)[-1].strip() if "ERROR:" in line else line.strip()
            for rx, rep in _ERR_NORMALIZE:
                msg = rx.sub(rep, msg)
            kinds[msg[:160]] += 1
    return {
        "aborted_clients": len(aborted),
        "prepared_statement_errors": prepared,
        "connection_failures": conn_failed,
        "messages": dict(kinds.most_common(8)),
    }


def parse_report(out: str) -> dict:
    def num(rx, conv=float):
        m = re.search(rx, out, re.M)
        return conv(m.group(1)) if m else None

    return {
        "processed": num(r"number of transactions actually processed: (\d+)", int),
        "failed_tx": num(r"number of failed transactions: (\d+)", int),
        "tps": num(r"^tps = ([\d.]+)"),
        "latency_avg_ms": num(r"latency average = ([\d.]+) ms"),
        "conn_time_ms": num(r"(?:initial|average) connection time = ([\d.]+) ms"),
        "aborted_run": "Run was aborted" in out,
    }


def run(target: Target, *, clients: int, duration: int, mode: str = "simple", connect: bool = False,
        threads: int = 2, workdir: str, tag: str, expect_failure: bool = False, extra_s: int = 0,
        rate: float | None = None, transactions: int | None = None) -> dict:
    """One pgbench -S run against `target`; returns the result record.
    Raises HarnessError only when the run could not be executed at all.

    pgbench's -T clock includes connecting the clients, so -T is
    duration + extra_s: the caller sizes extra_s from the connect time it
    saw (see tx_phase_s, the time from the first to the last transaction).
    pgbench's tps already excludes the connect phase. With `transactions`,
    -t N (N transactions per client, however long connecting takes)
    replaces -T.

    With `rate` (tps), pgbench -R RATE: transactions start on a Poisson
    schedule at that total rate. The latencies reported then are pgbench's
    with -R: from each transaction's scheduled start to its end, so they
    include the schedule lag (whose own percentiles are kept as
    lag_p50/p99/p999_ms). rate_held says whether pgbench's tps reached 95 %
    of the rate (a target that cannot keep up measures a queue). The proxy's user and
    system CPU and its context switches per transaction come from /proc
    (env.proc_counters) before and after the run."""
    logdir = os.path.join(workdir, f"pgbench-{tag}")
    os.makedirs(logdir, exist_ok=True)
    prefix = os.path.join(logdir, "tx")
    cmd = ["pgbench", "-h", target.host, "-p", str(target.port), "-U", USER, "-n", "-S", "-M", mode,
           "-c", str(clients), "-j", str(max(1, min(threads, clients))),
           *(["-t", str(transactions)] if transactions else ["-T", str(duration + extra_s)]),
           "-l", f"--log-prefix={prefix}"]
    if connect:
        cmd.append("-C")
    if rate:
        cmd += ["-R", f"{rate:g}"]
    cmd.append(target.db)
    pc0 = proc_counters(target.pid)
    cpu0, ccpu0, t0 = cpu_seconds(target.pid), children_cpu_seconds(), time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=_env(target), timeout=duration + 180)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"pgbench against {target.name} did not finish within {duration + 180}s") from None
    wall = time.monotonic() - t0
    cpu1, ccpu1 = cpu_seconds(target.pid), children_cpu_seconds()
    pc1 = proc_counters(target.pid)
    rep = parse_report(r.stdout)
    errs = error_summary(r.stderr)
    lags: list[int] = []
    lat, lat_other, phase = read_log(prefix, lags if rate else None)
    shutil.rmtree(logdir, ignore_errors=True)

    proxy_cpu = (cpu1 - cpu0) if (cpu0 is not None and cpu1 is not None) else None
    processed = rep["processed"] or 0
    res = {
        "tool": "pgbench",
        "target": target.name,
        "clients": clients,
        "threads": max(1, min(threads, clients)),
        "protocol": mode,
        "connect_per_tx": connect,
        "sslmode": target.sslmode,
        "duration_s": duration,
        "connect_allowance_s": extra_s,
        "tx_phase_s": round(phase, 3) if phase is not None else None,
        "wall_s": round(wall, 3),
        "command": " ".join(cmd),
        "rc": r.returncode,
        "tps": rep["tps"],
        "processed": processed,
        "failed_tx": rep["failed_tx"] or 0,
        "latency_samples": len(lat),
        "latency_non_numeric": dict(lat_other),
        "p50_ms": percentile(lat, 50) / 1000.0 if lat else None,
        "p99_ms": percentile(lat, 99) / 1000.0 if lat else None,
        "mean_ms": sum(lat) / len(lat) / 1000.0 if lat else None,
        "pgbench_latency_avg_ms": rep["latency_avg_ms"],
        "pgbench_conn_time_ms": rep["conn_time_ms"],
        "proxy_cpu_s": round(proxy_cpu, 3) if proxy_cpu is not None else None,
        "proxy_cpu_s_per_1k_tx": (proxy_cpu / processed * 1000.0) if proxy_cpu is not None and processed else None,
        "client_cpu_s": round(ccpu1 - ccpu0, 3),
        **errs,
        "expect_failure": expect_failure,
        "stderr_tail": r.stderr[-1500:] if r.returncode != 0 or rep["tps"] is None else "",
        "stdout_tail": r.stdout[-1500:] if rep["tps"] is None else "",
    }
    if rate:
        res.update(rate_fields(rate, lat, lags, pc0, pc1, processed))
        res["rate_held"] = rep["tps"] is not None and rep["tps"] >= 0.95 * rate
    res["errors"] = res["failed_tx"] + res["aborted_clients"]
    # Executed: pgbench ran its clients (rc 0, or 2 = some clients failed)
    # and processed something. An expected failure (PgBouncer with prepared
    # statements in transaction mode) is recorded, whatever it did.
    if r.returncode < 0:
        res["status"] = f"crashed (signal {-r.returncode})"
    elif r.returncode not in (0, 2) or rep["tps"] is None:
        res["status"] = f"could not run (rc {r.returncode})"
    elif processed == 0:
        res["status"] = "no transactions"
    elif res["errors"]:
        res["status"] = "errors"
    else:
        res["status"] = "ok"
    if expect_failure and res["status"] not in ("ok",) and r.returncode >= 0:
        res["status"] = "failed (expected)"
    res["fatal"] = res["status"] in ("no transactions",) or res["status"].startswith(("crashed", "could not"))
    if expect_failure:
        res["fatal"] = r.returncode < 0
    return res


def rate_fields(rate: float, lat: list[int], lags: list[int], pc0: dict | None, pc1: dict | None,
                processed: int) -> dict:
    """A fixed-rate run's figures: the rate asked and whether it was held,
    p50/p99/p99.9 latency (including schedule lag), the lag and the
    latency without it, and the proxy's user and system CPU microseconds
    and voluntary and involuntary context switches per transaction."""
    def ms(v):
        return v / 1000.0 if v is not None else None

    lags.sort()
    out = {"rate": rate, "latency_includes_schedule_lag": True,
           "p999_ms": ms(percentile(lat, 99.9)),
           "lag_p50_ms": ms(percentile(lags, 50)), "lag_p99_ms": ms(percentile(lags, 99)),
           "lag_p999_ms": ms(percentile(lags, 99.9))}
    out.update(proxy_per_tx(pc0, pc1, processed))
    return out
