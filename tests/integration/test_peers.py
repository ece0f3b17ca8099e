#!/usr/bin/python3
"""Cancel requests in a fleet (issue 16, README "Running several
instances"): two sqlmux instances (peer_id 1 and 2, one shared [peers]
table) behind HAProxy in TCP mode, round robin. A CancelRequest lands on
whichever instance the balancer picks; the cancel key names the instance
that issued it, and a CancelRequest for the other instance's key is
forwarded to it. psycopg2, psycopg 3, asyncpg and psql cancel pg_sleep(30)
through the balancer and get 57014 within a second, whichever instance the
cancel reached (both ways are checked by the metrics). A forged key cancels
nothing, and a [peers] table that points a peer back at the instance itself
drops the request after kMaxHops forwards instead of looping."""

import asyncio
import os
import random
import signal
import subprocess
import tempfile
import threading
import time

import psycopg2

from harness import *

SLEEP = "SELECT pg_sleep(30)"


def _cancels(ports, result: str) -> float:
    return sum(scrape_metrics(p).get(f'sqlmux_cancel_requests_total{{result="{result}"}}', 0.0) for p in ports)


class HAProxy:
    """haproxy in TCP mode, round robin over `backends` (ports)."""

    def __init__(self, backends: list[int]):
        self.backends = backends
        self.port = None
        self.proc = None
        self.dir = None

    def __enter__(self):
        if not os.path.exists("/usr/sbin/haproxy"):
            raise Skip("haproxy is not installed")
        self.dir = tempfile.mkdtemp(prefix="smx-it-haproxy-")
        self.port = free_port()
        servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(self.backends))
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
  maxconn 2000
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
listen pg
  bind 127.0.0.1:{self.port}
  balance roundrobin
{servers}
""")
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen(["/usr/sbin/haproxy", "-db", "-f", cfg], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        if not wait_port("127.0.0.1", self.port, 10, self.proc):
            self.__exit__(None, None, None)
            fail("haproxy did not start")
        return self

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir])
        return False


def _fleet_tweak(peer_id: int, metrics_port: int):
    def tweak(cfg):
        cfg["server"]["peer_id"] = peer_id
        cfg["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    return tweak


def _set_peers(mux, peers: dict[int, int]):
    """Writes [peers] into mux's config and reloads it."""
    with open(mux.config_path) as f:
        text = f.read()
    text += "\n[peers]\n" + "".join(f'{i} = "127.0.0.1:{p}"\n' for i, p in peers.items())
    with open(mux.config_path, "w") as f:
        f.write(text)
    mux.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: " not in mux.log_text() or "peers" not in mux.log_text().split("reload: ")[-1]:
        check(time.monotonic() < deadline, f"reload with [peers] not logged:\n{mux.log_tail(10)}")
        time.sleep(0.05)


class Fleet:
    def __init__(self, pg):
        self.pg = pg

    def __enter__(self):
        self.mports = [free_port(), free_port()]
        self.a = Sqlmux(self.pg, size=4, tweak=_fleet_tweak(1, self.mports[0])).__enter__()
        try:
            self.b = Sqlmux(self.pg, size=4, tweak=_fleet_tweak(2, self.mports[1])).__enter__()
        except BaseException:
            self.a.__exit__(None, None, None)
            raise
        peers = {1: self.a.port, 2: self.b.port}
        _set_peers(self.a, peers)
        _set_peers(self.b, peers)
        self.lb = HAProxy([self.a.port, self.b.port]).__enter__()
        return self

    def __exit__(self, *exc):
        self.lb.__exit__(*exc)
        self.b.__exit__(*exc)
        self.a.__exit__(*exc)
        return False

    def dsn(self, **extra) -> str:
        s = f"host=127.0.0.1 port={self.lb.port} dbname=appdb user=app password=apppass"
        return s + "".join(f" {k}={v}" for k, v in extra.items())

    def shift(self):
        """One connection through the balancer, so that the next two land on
        the instances the other way round."""
        psycopg2.connect(self.dsn()).close()


def _timed_cancel(run, cancel, what: str) -> float:
    """run() executes pg_sleep(30) and returns its SQLSTATE; cancel() is
    called 0.4 s after it started. Returns the seconds from cancel to end."""
    out = {}

    def target():
        out["state"] = run()
        out["end"] = time.monotonic()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    cancel()
    t.join(10)
    check("state" in out, f"{what}: pg_sleep(30) still running 10 s after the cancel")
    check_eq(out["state"], "57014", f"{what}: SQLSTATE")
    took = out["end"] - t0
    check(took < 1.0, f"{what}: ended {took:.2f} s after the cancel")
    return took


def case_cancel_through_balancer(pg):
    require_sqlmux("[peers]")
    with Fleet(pg) as fleet:
        took = []
        for rnd in range(4):
            # Round robin alternates per connection: a client's cancel
            # connection, the next one, lands on the other instance
            # (forwarded) unless another connection comes in between (odd
            # rounds: it lands where the query runs).
            between = fleet.shift if rnd % 2 else (lambda: None)
            # psycopg2
            c = psycopg2.connect(fleet.dsn())
            between()
            cur = c.cursor()

            def run2():
                try:
                    cur.execute(SLEEP)
                    return "none"
                except psycopg2.Error as e:
                    return e.pgcode
            took.append(_timed_cancel(run2, c.cancel, f"psycopg2 round {rnd}"))
            c.rollback()
            cur.execute("SELECT 1")
            c.close()

            # psycopg 3
            import psycopg
            c3 = psycopg.connect(fleet.dsn(), autocommit=True)
            between()

            def run3():
                try:
                    c3.execute(SLEEP)
                    return "none"
                except psycopg.Error as e:
                    return e.sqlstate
            took.append(_timed_cancel(run3, c3.cancel, f"psycopg 3 round {rnd}"))
            check_eq(c3.execute("SELECT 7").fetchone()[0], 7, "psycopg 3 after the cancel")
            c3.close()

            # asyncpg: a command timeout sends a CancelRequest.
            import asyncpg

            async def run_asyncpg():
                conn = await asyncpg.connect(host="127.0.0.1", port=fleet.lb.port, user="app", password="apppass",
                                             database="appdb")
                between()
                try:
                    t0 = time.monotonic()
                    try:
                        await conn.fetch(SLEEP, timeout=0.4)
                        fail("asyncpg: pg_sleep(30) returned")
                    except asyncio.TimeoutError:
                        pass
                    v = await conn.fetchval("SELECT 8")
                    check_eq(v, 8, "asyncpg after the cancel")
                    return time.monotonic() - t0 - 0.4
                finally:
                    await conn.close()
            t = asyncio.run(asyncio.wait_for(run_asyncpg(), 15))
            check(t < 1.0, f"asyncpg round {rnd}: next query {t:.2f} s after the timeout")
            took.append(t)

            # psql: SIGINT sends a CancelRequest.
            env = dict(os.environ, PGPASSWORD="apppass")
            p = subprocess.Popen(["psql", "-X", "-h", "127.0.0.1", "-p", str(fleet.lb.port), "-U", "app", "-d",
                                  "appdb", "-c", SLEEP], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.6)
            between()
            t0 = time.monotonic()
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=10)
            t = time.monotonic() - t0
            check("canceling statement due to user request" in err.decode(), f"psql round {rnd}: {err.decode()!r}")
            check(t < 1.0, f"psql round {rnd}: ended {t:.2f} s after SIGINT")
            took.append(t)
        ports = fleet.mports
        local, forwarded = _cancels(ports, "local"), _cancels(ports, "forwarded")
        # A forwarded request counts as forwarded where it landed and as
        # local at the peer that cancels.
        direct = local - forwarded
        log(f"{len(took)} cancels through HAProxy, slowest {max(took):.2f} s; {direct:.0f} handled where they "
            f"landed, {forwarded:.0f} forwarded to the peer")
        # About half each way (a client may open a connection of its own
        # in between, shifting the alternation).
        check_eq(direct + forwarded, float(len(took)), "cancel requests counted")
        check(direct >= 3 and forwarded >= 3, f"handled where they landed {direct}, forwarded {forwarded}")
        check(_cancels(ports, "unknown") == 0, "a genuine cancel dropped as unknown")


def case_forged_key_cancels_nothing(pg):
    require_sqlmux("[peers]")
    with Fleet(pg) as fleet:
        c = psycopg2.connect(fleet.dsn())
        cur = c.cursor()
        out = {}

        def run():
            try:
                cur.execute("SELECT pg_sleep(2)")
                out["state"] = "done"
            except psycopg2.Error as e:
                out["state"] = e.pgcode
        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.3)
        rnd = random.Random(7)
        for peer in (1, 2, 3, 999):
            for _ in range(3):
                pid = (peer << 17) | (rnd.getrandbits(15) << 2) | 3
                send_cancel("127.0.0.1", fleet.lb.port, pid, rnd.getrandbits(31))
        t.join(10)
        check_eq(out.get("state"), "done", "the query under forged cancel keys")
        c.close()
        time.sleep(0.3)
        unknown = _cancels(fleet.mports, "unknown")
        check(unknown >= 12, f"forged keys counted as unknown: {unknown}")
        log(f"12 forged keys (peer ids 1, 2, 3, 999): the query ran its 2 s; {unknown:.0f} dropped as unknown")


def case_forwarding_loop_is_bounded(pg):
    require_sqlmux("[peers]")
    mport = free_port()
    with Sqlmux(pg, size=2, tweak=_fleet_tweak(1, mport)) as mux:
        _set_peers(mux, {1: mux.port, 2: mux.port})  # peer 2 misconfigured as this instance
        send_cancel("127.0.0.1", mux.port, (2 << 17) | (123 << 2) | 3, 4567)
        deadline = time.monotonic() + 5
        while _cancels([mport], "hops_exhausted") < 1:
            check(time.monotonic() < deadline, "the looping cancel request was not dropped")
            time.sleep(0.05)
        time.sleep(0.3)
        check_eq(_cancels([mport], "forwarded"), 3.0, "forwards before the request is dropped")
        check_eq(_cancels([mport], "hops_exhausted"), 1.0, "dropped after its hops")
        check("forwarded too many times" in mux.log_text(), "no log line for the dropped request")
        mux.assert_serving()
    log("a [peers] loop: 3 forwards, then dropped with a log line")


if __name__ == "__main__":
    run_cases(__file__, [case_cancel_through_balancer, case_forged_key_cancels_nothing,
                         case_forwarding_loop_is_bounded], timeout=170)
