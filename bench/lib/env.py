"""Environment for the benchmark harness: the integration-test harness
(tests/integration/harness.py) imported as a library, file-descriptor
limits, /proc readings of a process (CPU time, resident memory), the
Release build step and the environment record written to the JSON."""

from __future__ import annotations

import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH_DIR)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402  (tests/integration/harness.py)

# Temp dirs (ours and the ones harness.PgServer / harness.Sqlmux make) start
# with this prefix; never with the daemon's name, so that someone's broad
# `pkill -f sqlmux` on a shared machine cannot hit them. harness's stale-run
# reaper then also cleans up after a SIGKILLed benchmark run.
TMP_PREFIX = "smx-bench-"
harness.TMP_PREFIX = TMP_PREFIX

PYTHON = "/usr/bin/python3"  # Debian's interpreter (not the one first on PATH)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BUILD_DIR = os.path.join(REPO, "build-bench")


class HarnessError(Exception):
    """A run could not be executed at all (a proxy did not start, a tool
    could not connect or crashed). Figures never raise this."""


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def make_workdir(what: str) -> str:
    """A temp dir named smx-bench-<what>-XXXX, readable by the postgres user,
    with our pid recorded so that harness's reaper knows when it is stale."""
    d = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{what}-")
    os.chmod(d, 0o755)
    with open(os.path.join(d, "owner.pid"), "w") as f:
        f.write(str(os.getpid()))
    return d


# ---------------------------------------------------------------------------
# File-descriptor limits
# ---------------------------------------------------------------------------


def nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def raise_nofile(want: int | None = None) -> tuple[int, int]:
    """Raises RLIMIT_NOFILE as far as allowed: the hard limit up to
    /proc/sys/fs/nr_open (needs CAP_SYS_RESOURCE, which root in a container
    may lack), the soft limit up to the hard one. Returns (soft, hard).
    Processes started afterwards inherit the limits."""
    target = min(want or nr_open(), nr_open())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def preexec_raise_nofile():
    """preexec_fn for proxies: the child raises its own limit too (the same
    as the harness's, which it inherits, unless the harness could not)."""
    raise_nofile()


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of the whole process (all its threads), in seconds."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # fields from #3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # #14 utime, #15 stime


def proc_counters(pid: int | None) -> dict | None:
    """The process's CPU split into user and system seconds (utime, stime
    of /proc/PID/stat: all its threads) and its context switches, voluntary
    and involuntary, summed over its threads (/proc/PID/task/*/status:
    voluntary_ctxt_switches, nonvoluntary_ctxt_switches; the process's own
    status file counts its main thread only). None: no process."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    out = {"user_s": int(fields[11]) / CLK_TCK, "sys_s": int(fields[12]) / CLK_TCK, "vcsw": 0, "ivcsw": 0,
           "threads": 0}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out["vcsw"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        out["ivcsw"] += int(line.split()[1])
            out["threads"] += 1
        except (OSError, ValueError, IndexError):
            continue  # a thread that exited meanwhile
    return out


def proxy_per_tx(pc0: dict | None, pc1: dict | None, processed: int) -> dict:
    """A fixed-rate run's proxy figures from proc_counters() before and
    after: user and system CPU seconds and voluntary and involuntary context
    switches, in all and per transaction (CPU in microseconds). {} when
    there is no proxy (direct) or nothing was processed."""
    if pc0 is None or pc1 is None or not processed:
        return {}
    d = {k: pc1[k] - pc0[k] for k in ("user_s", "sys_s", "vcsw", "ivcsw")}
    return {
        "proxy_user_s": round(d["user_s"], 3), "proxy_sys_s": round(d["sys_s"], 3),
        "proxy_vcsw": d["vcsw"], "proxy_ivcsw": d["ivcsw"], "proxy_threads": pc1["threads"],
        "proxy_user_us_per_tx": d["user_s"] / processed * 1e6,
        "proxy_sys_us_per_tx": d["sys_s"] / processed * 1e6,
        "proxy_vcsw_per_tx": d["vcsw"] / processed,
        "proxy_ivcsw_per_tx": d["ivcsw"] / processed,
    }


def rss_kib(pid: int | None) -> int | None:
    """VmRSS of a process in KiB."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_nofile(pid: int) -> int | None:
    """The soft 'Max open files' limit of a running process."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError):
        return None
    return None


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children (for the load generators)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------


def build_release(jobs: int = 2) -> str:
    """Configures and builds the daemon in build-bench/ (Release); returns
    the binary's path. Only the sqlmux target is built (not the tests)."""
    os.makedirs(BUILD_DIR, exist_ok=True)
    logpath = os.path.join(BUILD_DIR, "bench-build.log")
    steps = [
        ["cmake", "-S", REPO, "-B", BUILD_DIR, "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", BUILD_DIR, f"-j{jobs}", "--target", "sqlmux"],
    ]
    t0 = time.monotonic()
    log(f"building Release into {os.path.relpath(BUILD_DIR, REPO)}/ (log: {os.path.relpath(logpath, REPO)})")
    with open(logpath, "w") as lf:
        for cmd in steps:
            lf.write("$ " + " ".join(cmd) + "\n")
            lf.flush()
            r = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, cwd=REPO)
            if r.returncode != 0:
                raise HarnessError(f"build failed ({' '.join(cmd)} exited {r.returncode}):\n"
                                   + harness._tail(logpath, 40))
    log(f"build done in {time.monotonic() - t0:.1f}s")
    return os.path.join(BUILD_DIR, "sqlmux")


# ---------------------------------------------------------------------------
# Environment record
# ---------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0].strip() if out else None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            return m.group(1) if m else None
    except OSError:
        return None


def git_revision() -> str | None:
    rev = _first_line(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    if rev is None:
        return None
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return rev + ("-dirty" if dirty else "")


def version_line(sqlmux_bin: str) -> str | None:
    """The first line of `sqlmux --version`."""
    return _first_line([sqlmux_bin, "--version"])


def environment(sqlmux_bin: str, pg=None) -> dict:
    mem_kib = None
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    env = {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mem_total_mib": mem_kib // 1024 if mem_kib else None,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "git_revision": git_revision(),
        "sqlmux_bin": sqlmux_bin,
        "sqlmux_version": version_line(sqlmux_bin),
        "pgbouncer_version": _first_line([shutil.which("pgbouncer") or "pgbouncer", "--version"]),
        "haproxy_version": _first_line([shutil.which("haproxy") or "/usr/sbin/haproxy", "-v"]),
        "pgbench_version": _first_line(["pgbench", "--version"]),
        "sysbench_version": _first_line(["sysbench", "--version"]),
        "clk_tck": CLK_TCK,
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "nr_open": nr_open(),
    }
    if pg is not None:
        try:
            env["postgresql_version"] = pg.psql("SHOW server_version").strip()
        except Exception:  # noqa: BLE001
            env["postgresql_version"] = None
    return env
