#!/usr/bin/python3
"""20 concurrent libpq C clients (libpq_client.c: PQexec, PQexecParams with
unnamed statements, non-blocking PQsendQuery, COPY in/out) through sqlmux in
transaction and session mode."""

import os
import shutil
import subprocess
import tempfile
import time

from harness import *

CLIENTS = 20
ROUNDS = 3
_built_dir = None


def client_binary() -> str:
    """$LIBPQ_CLIENT (set by ctest), else compile libpq_client.c here."""
    global _built_dir
    if LIBPQ_CLIENT and os.path.exists(LIBPQ_CLIENT):
        return LIBPQ_CLIENT
    _built_dir = tempfile.mkdtemp(prefix="smx-it-libpq-")
    with open(os.path.join(_built_dir, "owner.pid"), "w") as f:  # the harness reaps it if we die
        f.write(str(os.getpid()))
    out = os.path.join(_built_dir, "libpq_client")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libpq_client.c")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libpq"], capture_output=True, text=True)
    if flags.returncode != 0:
        fail("LIBPQ_CLIENT not set and pkg-config libpq failed: " + flags.stderr)
    r = subprocess.run(["cc", "-O2", "-Wall", "-o", out, src, *flags.stdout.split()], capture_output=True, text=True)
    if r.returncode != 0:
        fail("compiling libpq_client.c failed:\n" + r.stderr)
    return out


def run_clients(binary, mux, n, tag_prefix):
    procs = []
    t0 = time.monotonic()
    for i in range(n):
        tag = f"{tag_prefix}{i}"
        procs.append((tag, subprocess.Popen([binary, mux.dsn(), tag, str(ROUNDS)], stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True)))
    failures = []
    deadline = time.monotonic() + 60
    for tag, p in procs:
        try:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            last = (out.strip().splitlines() or ["(no progress)"])[-1]
            failures.append(f"{tag}: stuck for 60s at '{last}'; stderr: {err.strip()}")
            continue
        if p.returncode != 0:
            failures.append(f"{tag}: exit {p.returncode}: {err.strip() or out.strip()[-300:]}")
        elif f"libpq_client[{tag}]: ok" not in out:
            failures.append(f"{tag}: no ok line: {out[-300:]!r}")
    log(f"{n} libpq clients ({tag_prefix}) done in {time.monotonic() - t0:.1f}s, {len(failures)} failed")
    if failures:
        fail(f"{len(failures)} of {n} libpq clients failed:\n  " + "\n  ".join(failures[:10]))


def setup(pg):
    pg.psql("CREATE TABLE libpq_t(tag text, n int, payload text); CREATE INDEX ON libpq_t(tag); "
            "ALTER TABLE libpq_t OWNER TO app;", db="appdb")


def case_transaction_mode(pg):
    binary = client_binary()
    with Sqlmux(pg, mode="transaction", size=5) as mux:
        run_clients(binary, mux, CLIENTS, "tx")
        if not DIRECT:
            n = pg.app_sessions()
            check(n <= 5, f"PostgreSQL has {n} app sessions for a pool of 5")
        mux.assert_serving()


def case_session_mode(pg):
    # More clients than backends: the rest wait in the queue for a backend.
    binary = client_binary()
    with Sqlmux(pg, mode="session", size=5) as mux:
        run_clients(binary, mux, CLIENTS, "sess")
        mux.assert_serving()


def case_session_mode_pool_per_client(pg):
    binary = client_binary()
    with Sqlmux(pg, mode="session", size=CLIENTS) as mux:
        run_clients(binary, mux, CLIENTS, "sessbig")
        mux.assert_serving()


if __name__ == "__main__":
    try:
        run_cases(__file__, [case_transaction_mode, case_session_mode, case_session_mode_pool_per_client],
                  timeout=110, setup=setup)
    finally:
        if _built_dir:
            shutil.rmtree(_built_dir, ignore_errors=True)
