"""LISTEN/NOTIFY fan-out (scenario notify1000): N listening connections on
one channel, a few senders sending NOTIFY, each delivery timed from the
sender's clock reading in the payload to the listener's PQnotifies.

The load generator is notify_client.c (libpq, one epoll loop per process),
compiled here with cc into the run's temp dir. Per target:

1. `procs` listener processes open N connections between them, LISTEN on
   each, and report READY;
2. the rate phase: `senders` connections send `rate` notifications per
   second in total for `duration` seconds (absolute schedule): latency
   p50/p99/max from NOTIFY to delivery over every delivery;
3. the saturation phase: the same senders send `count` notifications back
   to back; deliveries per second = deliveries / (last delivery - first
   send);
4. each phase ends when every listener has every notification of it (or a
   grace period passed): lost = notifications a listener never got,
   dup_or_reordered = ones that came again or out of order per sender
   (both should be 0).

Around each phase (outside the senders' connect): the proxy's CPU
(utime + stime) and PostgreSQL's (the postmaster's children: backends,
background processes), per 1,000 deliveries. Server connections: the
largest count of `app` sessions in pg_stat_activity, sampled every 0.25 s
while the listeners are connected.

PgBouncer in transaction mode: a LISTEN runs on whatever server connection
the client gets for that transaction, which then goes back to the pool, so
notifications never reach idle clients. probe() checks that on a small
scale (20 listeners, 20 notifications) and the row says n/a with what it
saw."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import select
import subprocess
import threading
import time

from env import CLK_TCK, HarnessError, cpu_seconds, harness, log
from proxies import PASSWORD, USER, Target

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notify_client.c")
CHANNEL = "smx_bench_fanout"


def build_client(workdir: str) -> str:
    """Compiles notify_client.c (cc -O2, libpq from pkg-config) into workdir."""
    out = os.path.join(workdir, "notify_client")
    if os.path.exists(out):
        return out
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libpq"], capture_output=True, text=True)
    if flags.returncode != 0:
        raise HarnessError(f"pkg-config libpq failed: {flags.stderr.strip()}")
    r = subprocess.run(["cc", "-O2", "-Wall", "-o", out, SOURCE, *flags.stdout.split(), "-lpthread"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise HarnessError(f"compiling notify_client.c failed:\n{r.stderr[-2000:]}")
    return out


@contextlib.contextmanager
def server_for(pg, needed: int, what: str = "notify"):
    """The run's PostgreSQL when its max_connections leaves room for
    `needed` client connections, else a throwaway one of its own with
    max_connections = needed + 50 for this scenario only."""
    if needed + 10 <= pg.max_connections:
        yield pg
        return
    mc = needed + 50
    log(f"{what}: {needed} connections need more than max_connections = {pg.max_connections}: "
        f"a PostgreSQL of its own with max_connections = {mc}")
    try:
        with harness.PgServer(max_connections=mc) as own:
            yield own
    except harness.TestFailure as e:
        raise HarnessError(f"PostgreSQL with max_connections = {mc}: {e}") from None


def sched_cpu_seconds(pid: int | None) -> float | None:
    """On-CPU seconds of all threads of `pid` from schedstat (ns), a
    cross-check of the proxy's utime + stime (kept in the JSON)."""
    if pid is None:
        return None
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def postmaster_pid(pg) -> int | None:
    try:
        with open(os.path.join(pg.datadir, "postmaster.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return None


def server_cpu_seconds(pg) -> float | None:
    """CPU time of the postmaster's children (backends and background
    processes) that are alive now: the on-CPU nanoseconds of
    /proc/PID/schedstat, else utime + stime. Not clock ticks first: each of
    1,000 backends uses a few ms in a phase, and per-process ticks (10 ms)
    would make the sum of their differences coarse."""
    pm = postmaster_pid(pg)
    if pm is None:
        return None
    total = 0.0
    for path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(path) as f:
                s = f.read()
            fields = s[s.rfind(")") + 2:].split()
            if int(fields[1]) != pm:  # ppid
                continue
            try:
                with open(path[:-4] + "schedstat") as f:
                    total += int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, ValueError, IndexError):
            continue
    return total


class ConnSampler(threading.Thread):
    """The largest number of `app` sessions PostgreSQL shows (superuser
    connection over the unix socket: not counted), sampled every 0.25 s."""

    def __init__(self, pg):
        super().__init__(daemon=True)
        self.pg = pg
        self.max = 0
        self.stop_ev = threading.Event()
        self.error = None

    def run(self):
        try:
            c = self.pg.connect_super()
            try:
                cur = c.cursor()
                while not self.stop_ev.is_set():
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (USER,))
                    self.max = max(self.max, cur.fetchone()[0])
                    self.stop_ev.wait(0.25)
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001  (a sampler failure only loses this figure)
            self.error = str(e)

    def stop(self) -> int | None:
        self.stop_ev.set()
        self.join(10)
        return None if self.error else self.max


def app_sessions(pg) -> int:
    c = pg.connect_super()
    try:
        cur = c.cursor()
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (USER,))
        return cur.fetchone()[0]
    finally:
        c.close()


def wait_sessions_gone(pg, timeout: float = 30.0) -> int:
    """After a target's run (its proxy stopped): waits until PostgreSQL has
    no `app` session left, so the next target starts with every connection
    slot free and its srv conns count is its own. Returns what is left."""
    deadline = time.monotonic() + timeout
    while True:
        n = app_sessions(pg)
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def _conninfo(t: Target) -> str:
    return f"host={t.host} port={t.port} dbname={t.db} user={USER} password={PASSWORD} connect_timeout=30"


def _read_line(proc: subprocess.Popen, timeout: float, what: str, errpath: str | None = None) -> str | None:
    """One line from proc's stdout within `timeout` (None: timed out). Its
    stderr is a pipe or the file `errpath`."""
    deadline = time.monotonic() + timeout
    buf = getattr(proc, "_buf", b"")
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            proc._buf = buf
            return None
        r, _, _ = select.select([proc.stdout], [], [], left)
        if not r:
            continue
        chunk = os.read(proc.stdout.fileno(), 1 << 20)
        if not chunk:
            if proc.stderr:
                err = proc.stderr.read().decode("utf-8", "replace")[-1500:]
            else:
                with open(errpath or os.devnull, errors="replace") as f:
                    err = f.read()[-1500:]
            raise HarnessError(f"{what} exited (rc {proc.wait()}) before reporting:\n{err}")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    proc._buf = rest
    return line.decode()


def _percentile_ms(hist: list, p: float) -> float | None:
    """Nearest rank over merged [lower_us, count] buckets; the bucket's
    lower bound (1 us wide below 1 ms, 10 us below 100 ms, then 1 ms)."""
    total = sum(c for _, c in hist)
    if not total:
        return None
    rank = max(1, -(-int(p * total * 1000) // 1000))
    cum = 0
    for lo, c in hist:
        cum += c
        if cum >= rank:
            return lo / 1000
    return hist[-1][0] / 1000


def _merge(reports: list[dict]) -> dict:
    hist = {}
    for r in reports:
        for lo, c in r["hist"]:
            hist[lo] = hist.get(lo, 0) + c
    merged = sorted(hist.items())
    firsts = [r["first_rx_ns"] for r in reports if r["first_rx_ns"]]
    return {
        "complete": all(r["complete"] for r in reports),
        "delivered": sum(r["delivered"] for r in reports),
        "lost": sum(r["lost"] for r in reports),
        "dup_or_reordered": sum(r["dup_or_reordered"] for r in reports),
        "stray": sum(r["stray"] for r in reports),
        "bad_payload": sum(r["bad_payload"] for r in reports),
        "notices": sum(r["notices"] for r in reports),
        "dead_conns": sum(r["dead_conns"] for r in reports),
        "first_rx_ns": min(firsts) if firsts else None,
        "last_rx_ns": max(r["last_rx_ns"] for r in reports),
        "p50_ms": _percentile_ms(merged, 0.50),
        "p99_ms": _percentile_ms(merged, 0.99),
        "max_ms": max(r["max_latency_us"] for r in reports) / 1000,
    }


class Listeners:
    """`procs` notify_client listen processes with n connections between them."""

    def __init__(self, binary: str, target: Target, n: int, procs: int, workdir: str):
        self.procs = []
        self.errfiles = []
        self.errpaths = []
        self.target = target
        self.n = n
        procs = max(1, min(procs, n))
        for i in range(procs):
            k = n // procs + (1 if i < n % procs else 0)
            self.errpaths.append(os.path.join(workdir, f"notify-listen-{target.name}-{i}.err"))
            errf = open(self.errpaths[-1], "wb")
            self.errfiles.append(errf)
            self.procs.append(subprocess.Popen([binary, "listen", _conninfo(target), CHANNEL, str(k)],
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf))

    def wait_ready(self, timeout: float) -> float:
        slowest = 0.0
        for p, errpath in zip(self.procs, self.errpaths):
            line = _read_line(p, timeout, "notify listener", errpath)
            if line is None:
                raise HarnessError(f"{self.target.name}: listeners not connected and listening within {timeout:.0f}s")
            if not line.startswith("READY"):
                raise HarnessError(f"{self.target.name}: listener said {line[:200]!r}")
            slowest = max(slowest, float(line.split()[1]))
        return slowest

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) or 0 for p in self.procs)

    def tell(self, cmd: str):
        for p in self.procs:
            p.stdin.write((cmd + "\n").encode())
            p.stdin.flush()

    def collect(self, timeout: float) -> dict:
        """Each process's phase report; those not complete within `timeout`
        are told to stop and report what they have."""
        deadline = time.monotonic() + timeout
        reports = [None] * len(self.procs)
        for i, p in enumerate(self.procs):
            line = _read_line(p, max(0.0, deadline - time.monotonic()), "notify listener", self.errpaths[i])
            if line is not None:
                reports[i] = json.loads(line)
        late = [i for i, r in enumerate(reports) if r is None]
        for i in late:
            self.procs[i].stdin.write(b"stop\n")
            self.procs[i].stdin.flush()
        for i in late:
            line = _read_line(self.procs[i], 30, "notify listener", self.errpaths[i])
            if line is None:
                raise HarnessError(f"{self.target.name}: a listener process did not report after stop")
            reports[i] = json.loads(line)
        return _merge(reports)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.stdin.write(b"quit\n")
                    p.stdin.close()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self.errfiles:
            f.close()


def _phase(binary: str, target: Target, pg, lis: Listeners, phase: int, senders: int, per_sender: int,
           rate: float, grace: float) -> dict:
    """One phase: senders send, listeners collect. Returns its figures."""
    expect = senders * per_sender
    lis.tell(f"phase {phase} {expect}")
    cpu0, scpu0, lcpu0 = cpu_seconds(target.pid), server_cpu_seconds(pg), lis.cpu_seconds()
    pcpu0 = sched_cpu_seconds(target.pid)
    sender = subprocess.Popen([binary, "send", _conninfo(target), CHANNEL, str(senders), str(per_sender),
                               str(rate), str(phase)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        send_timeout = (per_sender * senders / rate if rate else 0) * 3 + 60 + per_sender * senders / 500
        line = _read_line(sender, send_timeout, "notify sender")
        if line is None:
            raise HarnessError(f"{target.name}: the senders did not finish within {send_timeout:.0f}s")
        s = json.loads(line)
        got = lis.collect(grace)
        cpu1, scpu1, lcpu1 = cpu_seconds(target.pid), server_cpu_seconds(pg), lis.cpu_seconds()
        pcpu1 = sched_cpu_seconds(target.pid)
    finally:
        if sender.poll() is None:
            sender.stdin.close()
            try:
                sender.wait(20)
            except subprocess.TimeoutExpired:
                sender.kill()
                sender.wait()
    if s["sent"] == 0:
        raise HarnessError(f"{target.name}: no NOTIFY succeeded: {s['error']}")
    d = got["delivered"]
    out = {
        "senders": senders, "per_sender": per_sender, "rate_asked": rate or None, "sent": s["sent"],
        "send_errors": s["errors"], "send_error": s["error"] or None,
        "send_s": round((s["last_tx_ns"] - s["first_tx_ns"]) / 1e9, 3),
        "max_behind_schedule_ms": s["max_behind_schedule_ms"] if rate else None,
        "expected_deliveries": s["sent"] * lis.n, **got,
    }
    # what the listeners never got of what was sent (a failed NOTIFY is a
    # send error, not a loss): sent x listeners - distinct deliveries
    out["lost"] = max(0, out["expected_deliveries"] - (got["delivered"] - got["dup_or_reordered"]))
    span = ((got["last_rx_ns"] or s["first_tx_ns"]) - s["first_tx_ns"]) / 1e9
    out["delivery_span_s"] = round(span, 3)
    out["sent_per_s"] = round(s["sent"] / ((s["last_tx_ns"] - s["first_tx_ns"]) / 1e9), 1) \
        if s["last_tx_ns"] > s["first_tx_ns"] else None
    out["deliveries_per_s"] = round(d / span, 1) if span > 0 else None
    out["proxy_cpu_s"] = round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None
    out["proxy_cpu_s_per_1k_deliveries"] = (cpu1 - cpu0) / d * 1000 if d and out["proxy_cpu_s"] is not None \
        else None
    out["proxy_cpu_schedstat_s"] = round(pcpu1 - pcpu0, 3) if pcpu0 is not None and pcpu1 is not None else None
    out["server_cpu_s"] = round(scpu1 - scpu0, 3) if scpu0 is not None and scpu1 is not None else None
    out["server_cpu_s_per_1k_deliveries"] = (scpu1 - scpu0) / d * 1000 if d and out["server_cpu_s"] is not None \
        else None
    # the load generator's own CPU: is it the bottleneck? (2 processes can
    # use at most 2 cores, shared with everything else on this machine)
    out["listener_cpu_s"] = round(lcpu1 - lcpu0, 3)
    out["listener_cpu_share"] = round((lcpu1 - lcpu0) / span, 2) if span > 0 else None
    for k in ("first_rx_ns", "last_rx_ns"):
        out.pop(k, None)
    return out


def run(binary: str, target: Target, pg, *, listeners: int, procs: int, senders: int, rate: float,
        duration: float, count: int, workdir: str) -> dict:
    """Both phases against one target; the result row (tool "notify")."""
    res = {"tool": "notify", "target": target.name, "clients": listeners, "senders": senders,
           "listener_procs": procs}
    sampler = ConnSampler(pg)
    sampler.start()
    lis = Listeners(binary, target, listeners, procs, workdir)
    try:
        res["connect_s"] = lis.wait_ready(120 + listeners / 10)
        log(f"notify {target.name}: {listeners} listeners connected and listening in {res['connect_s']:.1f}s")
        per = max(1, round(rate * duration / senders))
        grace = max(15.0, duration * 2)
        rp = _phase(binary, target, pg, lis, 1, senders, per, rate, grace)
        log(f"notify {target.name} rate: {rp['sent']} sent at {rp['sent_per_s']}/s, {rp['delivered']:,} "
            f"delivered, p50 {rp['p50_ms']} ms, p99 {rp['p99_ms']} ms, max {rp['max_ms']} ms, lost {rp['lost']}, "
            f"dup {rp['dup_or_reordered']}; CPU: proxy {rp['proxy_cpu_s']} s (schedstat "
            f"{rp['proxy_cpu_schedstat_s']}), PostgreSQL {rp['server_cpu_s']} s, "
            f"listeners {rp['listener_cpu_s']} s")
        per = max(1, count // senders)
        sp = _phase(binary, target, pg, lis, 2, senders, per, 0, max(30.0, per * senders * listeners / 20000))
        log(f"notify {target.name} saturation: {sp['sent']} sent at {sp['sent_per_s']}/s, {sp['delivered']:,} "
            f"delivered in {sp['delivery_span_s']}s = {sp['deliveries_per_s']:,.0f}/s, lost {sp['lost']}, "
            f"dup {sp['dup_or_reordered']}; CPU: proxy {sp['proxy_cpu_s']} s (schedstat "
            f"{sp['proxy_cpu_schedstat_s']}), PostgreSQL {sp['server_cpu_s']} s, "
            f"listeners {sp['listener_cpu_s']} s")
    finally:
        lis.close()
        res["server_conns"] = sampler.stop()
    res["rate_phase"] = rp
    res["saturation_phase"] = sp
    # the columns the other scenarios have: TPS = deliveries per second at
    # saturation, latency from the rate phase
    res["tps"] = sp["deliveries_per_s"]
    res["p50_ms"], res["p99_ms"], res["max_ms"] = rp["p50_ms"], rp["p99_ms"], rp["max_ms"]
    res["proxy_cpu_s_per_1k_tx"] = rp["proxy_cpu_s_per_1k_deliveries"]
    res["server_cpu_s_per_1k_deliveries"] = rp["server_cpu_s_per_1k_deliveries"]
    res["lost"] = rp["lost"] + sp["lost"]
    res["dup_or_reordered"] = rp["dup_or_reordered"] + sp["dup_or_reordered"]
    res["errors"] = res["lost"] + res["dup_or_reordered"] + rp["send_errors"] + sp["send_errors"] \
        + rp["dead_conns"] + sp["dead_conns"]
    res["status"] = "errors" if res["errors"] else "ok"
    res["fatal"] = False
    return res


def probe(binary: str, target: Target, pg, *, listeners: int, workdir: str, wait: float = 3.0) -> dict:
    """PgBouncer in transaction mode: do idle listeners get notifications?
    20 listeners (fewer if asked), 20 notifications at 20/s, `wait` seconds
    of grace. Returns the row: status n/a with what was delivered."""
    n, sent_n = min(listeners, 20), 20
    res = {"tool": "notify", "target": target.name, "clients": listeners, "probe_listeners": n}
    lis = Listeners(binary, target, n, 1, workdir)
    try:
        lis.wait_ready(60)
        p = _phase(binary, target, pg, lis, 1, 1, sent_n, 20.0, wait)
    finally:
        lis.close()
    res["probe"] = p
    res["errors"] = 0
    res["fatal"] = False
    res["tps"] = None
    if p["delivered"] < p["expected_deliveries"]:
        got = "no notifications" if p["delivered"] == 0 else "only some notifications"
        res["status"] = (f"n/a: idle listeners get {got} (probe: {p['delivered']} of "
                         f"{p['expected_deliveries']} delivered)")
        res["why"] = (f"transaction pooling returns LISTEN's server connection to the pool, and PgBouncer does "
                      f"not pass on notifications that arrive there ({n} listeners, {p['sent']} NOTIFY, "
                      f"{wait:.0f} s of grace)")
    else:
        res["status"] = (f"probe: {n} listeners got all {p['delivered']} notifications "
                         f"(not measured at scale)")
    log(f"notify {target.name}: {res['status']}: {res.get('why', '')}")
    return res
