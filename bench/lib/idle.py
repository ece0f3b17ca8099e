"""Idle clients: resident memory per logged-in idle client and the proxy's
CPU while they sit idle.

For each proxy (a fresh instance): one warm-up login, then VmRSS "before";
idle_client.py opens N connections that complete startup + SCRAM; VmRSS
"after" (once logins are done and 0.5 s passed); then the proxy's CPU time
over an idle window. Memory per client = (after - before) / logged-in
clients. The CPU of the login phase is recorded too (per login)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

from env import BENCH_DIR, PYTHON, HarnessError, cpu_seconds, harness, log, rss_kib
from proxies import DB, PASSWORD, USER, Target

CLIENT = os.path.join(BENCH_DIR, "lib", "idle_client.py")
FD_MARGIN = 512  # descriptors a proxy / the client needs besides the clients


def max_clients(nofile_soft: int) -> int:
    """How many idle clients the open-file limit allows (the client tool and
    the proxies all run with the harness's limit)."""
    return max(0, nofile_soft - FD_MARGIN)


def _read_json_line(proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise HarnessError(f"idle client gave no report within {timeout:.0f}s")
        r, _, _ = select.select([proc.stdout], [], [], left)
        if not r:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            err = proc.stderr.read().decode("utf-8", "replace")[-2000:] if proc.stderr else ""
            raise HarnessError(f"idle client exited (rc {proc.wait()}) without a report:\n{err}")
        line += chunk
    return json.loads(line.decode())


def warm_login(target: Target):
    """One complete login and query, so that 'before' includes what the
    first client allocates once (pools, caches)."""
    try:
        r = harness.RawPg(target.host, target.port, timeout=15)
        try:
            r.startup(USER, DB, PASSWORD)
            r.query_ok("SELECT 1")
        finally:
            r.terminate()
    except (OSError, RuntimeError, harness.PgError, harness.ConnectionClosed) as e:
        raise HarnessError(f"warm-up login to {target.name} failed: {e}") from None
    time.sleep(0.3)


def run(target: Target, *, n: int, window: float, concurrency: int, workdir: str) -> dict:
    res = {"tool": "idle", "target": target.name, "clients": n, "window_s": window}
    warm_login(target)
    rss0 = rss_kib(target.pid)
    cpu0 = cpu_seconds(target.pid)
    errpath = os.path.join(workdir, f"idle-client-{target.name}-{n}.err")
    with open(errpath, "wb") as errf:
        proc = subprocess.Popen([PYTHON, CLIENT, "--host", target.host, "--port", str(target.port), "-n", str(n),
                                 "--user", USER, "--password", PASSWORD, "--db", target.db,
                                 "--concurrency", str(concurrency)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
        try:
            first = _read_json_line(proc, timeout=120 + n / 100)
            time.sleep(0.5)
            rss1 = rss_kib(target.pid)
            cpu1 = cpu_seconds(target.pid)
            time.sleep(window)
            cpu2 = cpu_seconds(target.pid)
            rss2 = rss_kib(target.pid)
            proc.stdin.write(b"quit\n")
            proc.stdin.flush()
            second = _read_json_line(proc, timeout=60)
            proc.stdin.close()
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode not in (0, None):
        res["client_rc"] = proc.returncode
    ok = first["ok"]
    res.update({
        "ok": ok,
        "failed": first["failed"],
        "login_errors": first["errors"],
        "connect_s": first["connect_s"],
        "logins_per_s": round(ok / first["connect_s"], 1) if first["connect_s"] else None,
        "dropped_while_idle": second.get("dropped"),
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "rss_end_of_window_kib": rss2,
        "rss_per_client_kib": (rss1 - rss0) / ok if ok and rss0 is not None and rss1 is not None else None,
        "login_cpu_s": round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None,
        "login_cpu_us_per_client": (cpu1 - cpu0) / ok * 1e6 if ok and cpu0 is not None and cpu1 is not None
        else None,
        "idle_cpu_s": round(cpu2 - cpu1, 3) if cpu1 is not None and cpu2 is not None else None,
        "client_sources": first.get("sources"),
    })
    res["errors"] = res["failed"] + (res["dropped_while_idle"] or 0)
    if not target.alive():
        res["status"] = "proxy died"
    elif ok == 0:
        res["status"] = "no logins"
    else:
        res["status"] = "errors" if res["errors"] else "ok"
    res["fatal"] = res["status"] in ("proxy died", "no logins")
    log(f"idle {target.name}: {ok}/{n} logged in in {first['connect_s']:.1f}s, failed {first['failed']}"
        f"{' ' + str(first['errors']) if first['errors'] else ''}; RSS {rss0} -> {rss1} KiB; "
        f"idle CPU {res['idle_cpu_s']} s over {window:.0f} s")
    return res
