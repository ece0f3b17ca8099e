#!/usr/bin/python3
"""Listening clients of one library for test_listen.py's fan-out case.

    listen_client.py KIND COUNT HOST PORT CHANNEL TOTAL TIMEOUT

KIND: asyncpg | psycopg | psycopg2. Opens COUNT connections (user app,
database appdb), LISTENs on CHANNEL on each, prints "READY", then collects
notifications until every connection has TOTAL of them or TIMEOUT seconds
pass, and prints one JSON line: per connection the count, duplicates,
payloads out of order per sender (payload "sender:seq") and notices seen."""

import asyncio
import json
import select
import sys
import time


class Tally:
    def __init__(self):
        self.count = 0
        self.seen = set()
        self.dups = 0
        self.last = {}
        self.disorder = 0
        self.notices = []

    def add(self, payload):
        self.count += 1
        if payload in self.seen:
            self.dups += 1
        self.seen.add(payload)
        sender, _, seq = payload.partition(":")
        seq = int(seq)
        if seq <= self.last.get(sender, -1):
            self.disorder += 1
        self.last[sender] = seq

    def summary(self):
        return {"count": self.count, "dups": self.dups, "disorder": self.disorder,
                "notices": self.notices[:3]}


async def run_asyncpg(n, host, port, channel, total, timeout):
    import asyncpg
    tallies = [Tally() for _ in range(n)]
    conns = []
    done = asyncio.Event()
    remaining = [n]

    def make_cb(t):
        def cb(conn, pid, ch, payload):
            t.add(payload)
            if t.count == total:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
        return cb

    for t in tallies:
        c = await asyncpg.connect(host=host, port=port, user="app", password="apppass", database="appdb")
        c.add_log_listener(lambda conn, msg, t=t: t.notices.append(str(msg)))
        await c.add_listener(channel, make_cb(t))
        conns.append(c)
    print("READY", flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    for c in conns:
        await c.close()
    return tallies


async def run_psycopg(n, host, port, channel, total, timeout):
    import psycopg
    tallies = [Tally() for _ in range(n)]
    conns = []
    for t in tallies:
        c = await psycopg.AsyncConnection.connect(host=host, port=port, user="app", password="apppass",
                                                  dbname="appdb", autocommit=True)
        c.add_notice_handler(lambda d, t=t: t.notices.append(d.message_primary))
        await c.execute(f"LISTEN {channel}")
        conns.append(c)
    print("READY", flush=True)

    async def collect(c, t):
        async for note in c.notifies():
            t.add(note.payload)
            if t.count >= total:
                return

    try:
        await asyncio.wait_for(asyncio.gather(*(collect(c, t) for c, t in zip(conns, tallies))), timeout)
    except asyncio.TimeoutError:
        pass
    for c in conns:
        await c.close()
    return tallies


def run_psycopg2(n, host, port, channel, total, timeout):
    import psycopg2
    tallies = [Tally() for _ in range(n)]
    conns = []
    for _ in tallies:
        c = psycopg2.connect(host=host, port=port, user="app", password="apppass", dbname="appdb")
        c.autocommit = True
        c.cursor().execute(f"LISTEN {channel}")
        conns.append(c)
    print("READY", flush=True)
    deadline = time.monotonic() + timeout
    open_ = {i for i in range(n)}
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select([conns[i] for i in open_], [], [], 0.5)
        for c in ready:
            i = conns.index(c)
            c.poll()
            t = tallies[i]
            while c.notifies:
                t.add(c.notifies.pop(0).payload)
            while c.notices:
                t.notices.append(c.notices.pop(0).strip())
            if t.count >= total:
                open_.discard(i)
    for c in conns:
        c.close()
    return tallies


def main():
    kind, n, host, port, channel, total, timeout = sys.argv[1:8]
    n, port, total, timeout = int(n), int(port), int(total), float(timeout)
    if kind == "asyncpg":
        tallies = asyncio.run(run_asyncpg(n, host, port, channel, total, timeout))
    elif kind == "psycopg":
        tallies = asyncio.run(run_psycopg(n, host, port, channel, total, timeout))
    else:
        tallies = run_psycopg2(n, host, port, channel, total, timeout)
    print(json.dumps({"kind": kind, "conns": [t.summary() for t in tallies]}), flush=True)


if __name__ == "__main__":
    main()
