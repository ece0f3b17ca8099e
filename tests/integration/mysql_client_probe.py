#!/usr/bin/python3
"""What each MySQL client sends: starts a throwaway MariaDB, puts a
recording TCP relay in front of it and connects through the relay with
every client the MySQL tests use. Prints per client the HandshakeResponse41
fields (capability flags, max packet size, charset id, auth plugin,
database, connect attributes), the first commands it sends after logging
in, and what the session then reports for @@character_set_client,
@@collation_connection, @@autocommit and @@sql_mode.

    /usr/bin/python3 tests/integration/mysql_client_probe.py [--json FILE]

Not a test (no pass/fail): a record of the clients' habits for whoever
writes the server side of a MySQL proxy."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REPO, free_port  # noqa: E402
from mysql_harness import MariaDbServer  # noqa: E402

CAPS = {
    0x1: "LONG_PASSWORD", 0x2: "FOUND_ROWS", 0x4: "LONG_FLAG", 0x8: "CONNECT_WITH_DB", 0x10: "NO_SCHEMA",
    0x20: "COMPRESS", 0x40: "ODBC", 0x80: "LOCAL_FILES", 0x100: "IGNORE_SPACE", 0x200: "PROTOCOL_41",
    0x400: "INTERACTIVE", 0x800: "SSL", 0x1000: "IGNORE_SIGPIPE", 0x2000: "TRANSACTIONS", 0x4000: "RESERVED",
    0x8000: "SECURE_CONNECTION", 0x10000: "MULTI_STATEMENTS", 0x20000: "MULTI_RESULTS",
    0x40000: "PS_MULTI_RESULTS", 0x80000: "PLUGIN_AUTH", 0x100000: "CONNECT_ATTRS",
    0x200000: "PLUGIN_AUTH_LENENC_CLIENT_DATA", 0x400000: "CAN_HANDLE_EXPIRED_PASSWORDS",
    0x800000: "SESSION_TRACK", 0x1000000: "DEPRECATE_EOF", 0x2000000: "OPTIONAL_RESULTSET_METADATA",
    0x4000000: "ZSTD_COMPRESSION", 0x8000000: "QUERY_ATTRIBUTES", 0x20000000: "CAPABILITY_EXTENSION",
    0x40000000: "SSL_VERIFY_SERVER_CERT", 0x80000000: "REMEMBER_OPTIONS",
}
MARIADB_CAPS = {0x1: "MARIADB_CLIENT_PROGRESS", 0x2: "MARIADB_CLIENT_COM_MULTI",
                0x4: "MARIADB_CLIENT_STMT_BULK_OPERATIONS", 0x8: "MARIADB_CLIENT_EXTENDED_TYPE_INFO",
                0x10: "MARIADB_CLIENT_CACHE_METADATA"}
COMMANDS = {0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x0e: "COM_PING",
            0x11: "COM_CHANGE_USER", 0x16: "COM_STMT_PREPARE", 0x17: "COM_STMT_EXECUTE",
            0x18: "COM_STMT_SEND_LONG_DATA", 0x19: "COM_STMT_CLOSE", 0x1a: "COM_STMT_RESET",
            0x1b: "COM_SET_OPTION", 0x1c: "COM_STMT_FETCH", 0x1f: "COM_RESET_CONNECTION"}


def flag_names(v: int, table: dict) -> list[str]:
    return [n for bit, n in sorted(table.items()) if v & bit] + ([f"0x{v & ~sum(table):x}"]
                                                                  if v & ~sum(table) else [])


def lenenc(b: bytes, i: int) -> tuple[int, int]:
    c = b[i]
    if c < 0xfb:
        return c, i + 1
    if c == 0xfc:
        return struct.unpack_from("<H", b, i + 1)[0], i + 3
    if c == 0xfd:
        return int.from_bytes(b[i + 1:i + 4], "little"), i + 4
    return struct.unpack_from("<Q", b, i + 1)[0], i + 9


def parse_handshake_response(p: bytes) -> dict:
    caps, maxpkt, cs = struct.unpack_from("<IIB", p, 0)
    ext = struct.unpack_from("<I", p, 28)[0]  # MariaDB: the last 4 filler bytes
    i = 32
    end = p.index(b"\0", i)
    user = p[i:end].decode()
    i = end + 1
    if caps & 0x200000:
        n, i = lenenc(p, i)
    elif caps & 0x8000:
        n, i = p[i], i + 1
    else:
        n = p.index(b"\0", i) - i
    i += n
    out = {"capabilities": f"0x{caps:08x}", "capability_flags": flag_names(caps, CAPS),
           "mariadb_ext_capabilities": flag_names(ext, MARIADB_CAPS) if not caps & 1 else [],
           "max_packet": maxpkt, "charset_id": cs, "user": user, "auth_response_len": n}
    if caps & 0x8 and i < len(p):
        end = p.index(b"\0", i)
        out["database"] = p[i:end].decode()
        i = end + 1
    if caps & 0x80000 and i < len(p):
        end = p.find(b"\0", i)
        out["auth_plugin"] = p[i:end if end >= 0 else len(p)].decode()
        i = (end + 1) if end >= 0 else len(p)
    if caps & 0x100000 and i < len(p):
        total, i = lenenc(p, i)
        attrs, stop = {}, i + total
        while i < stop:
            kl, i = lenenc(p, i)
            k = p[i:i + kl].decode()
            i += kl
            vl, i = lenenc(p, i)
            attrs[k] = p[i:i + vl].decode(errors="replace")
            i += vl
        out["connect_attrs"] = attrs
    return out


class Relay:
    """Accepts on a free port, relays to MariaDB, records each connection's
    handshake response and first commands."""

    def __init__(self, backend_port: int):
        self.backend_port = backend_port
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.records: list[dict] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> list[dict]:
        out, self.records = self.records, []
        return out

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"handshake": None, "commands": []}
            self.records.append(rec)
            s = socket.create_connection(("127.0.0.1", self.backend_port))
            threading.Thread(target=self._pipe, args=(s, c, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(c, s, rec), daemon=True).start()

    @staticmethod
    def _pipe(src, dst, rec):
        buf = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
                if rec is None:
                    continue
                buf += data
                while len(buf) >= 4:
                    ln = int.from_bytes(buf[:3], "little")
                    if len(buf) < 4 + ln:
                        break
                    seq, payload = buf[3], buf[4:4 + ln]
                    buf = buf[4 + ln:]
                    if rec["handshake"] is None and seq == 1 and ln > 32:
                        rec["handshake"] = parse_handshake_response(payload)
                    elif seq == 0 and payload and len(rec["commands"]) < 12:
                        cmd = COMMANDS.get(payload[0], f"0x{payload[0]:02x}")
                        arg = payload[1:121].decode("utf-8", "replace") if payload[0] in (2, 3, 0x16) else ""
                        rec["commands"].append(f"{cmd} {arg}".strip())
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


PROBE = "SELECT @@character_set_client, @@collation_connection, @@autocommit, @@sql_mode"


def session_vars(row) -> dict:
    return {"character_set_client": row[0], "collation_connection": row[1], "autocommit": row[2],
            "sql_mode": row[3]}


def clients(port: int, stmt_client: str | None) -> dict:
    """name -> callable running PROBE through the relay, returning its row."""
    import MySQLdb
    import pymysql

    kw = dict(host="127.0.0.1", port=port, user="app", password="apppass", database="appdb")

    def pm(**extra):
        c = pymysql.connect(**kw, **extra)
        with c.cursor() as cur:
            cur.execute(PROBE)
            r = cur.fetchone()
        c.close()
        return r

    def mysqldb(**extra):
        c = MySQLdb.connect(host=kw["host"], port=port, user="app", passwd="apppass", db="appdb", **extra)
        cur = c.cursor()
        cur.execute(PROBE)
        r = cur.fetchone()
        c.close()
        return r

    def aiomy():
        import aiomysql

        async def go():
            c = await aiomysql.connect(host=kw["host"], port=port, user="app", password="apppass", db="appdb")
            async with c.cursor() as cur:
                await cur.execute(PROBE)
                r = await cur.fetchone()
            c.close()
            return r
        return asyncio.run(go())

    def sa_async():
        import sqlalchemy
        from sqlalchemy.ext.asyncio import create_async_engine

        async def go():
            eng = create_async_engine(f"mysql+aiomysql://app:apppass@127.0.0.1:{port}/appdb")
            async with eng.connect() as c:
                r = (await c.execute(sqlalchemy.text(PROBE))).fetchone()
            await eng.dispose()
            return tuple(r)
        return asyncio.run(go())

    def sa_sync():
        import sqlalchemy
        eng = sqlalchemy.create_engine(f"mysql+pymysql://app:apppass@127.0.0.1:{port}/appdb")
        with eng.connect() as c:
            r = tuple(c.execute(sqlalchemy.text(PROBE)).fetchone())
        eng.dispose()
        return r

    def cli():
        r = subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", "-uapp", "-papppass",
                            "appdb", "-N", "-B", "-e", PROBE], capture_output=True, text=True, timeout=30)
        if r.returncode:
            raise RuntimeError(r.stderr)
        return tuple(r.stdout.strip().split("\t"))

    out = {
        "PyMySQL (default)": pm,
        "PyMySQL charset=utf8mb4 autocommit=True": lambda: pm(charset="utf8mb4", autocommit=True),
        "PyMySQL client_flag=MULTI_STATEMENTS local_infile=True": lambda: pm(
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS, local_infile=True),
        "aiomysql (default)": aiomy,
        "MySQLdb (default)": mysqldb,
        "MySQLdb charset=utf8mb4": lambda: mysqldb(charset="utf8mb4"),
        "SQLAlchemy mysql+aiomysql": sa_async,
        "SQLAlchemy mysql+pymysql": sa_sync,
        "mariadb CLI": cli,
    }
    if stmt_client:
        out["libmariadb C (mysql_stmt_client)"] = None  # handshake only: see main()
    return out


def main() -> int:
    out_json = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    stmt_client = os.environ.get("MYSQL_STMT_CLIENT") or os.path.join(REPO, "build", "tests", "integration",
                                                                       "mysql_stmt_client")
    if not os.access(stmt_client, os.X_OK):
        stmt_client = None
    results = {}
    with MariaDbServer() as my:
        relay = Relay(my.port)
        my.sql("CREATE TABLE appdb.ms (owner VARCHAR(32), n INT, note VARCHAR(200))")
        for name, fn in clients(relay.port, stmt_client).items():
            relay.take()
            try:
                if fn is None:
                    r = subprocess.run([stmt_client, "127.0.0.1", str(relay.port), "app", "apppass", "appdb",
                                        "probe", "2"], capture_output=True, text=True, timeout=30)
                    row = None if r.returncode else ("(not queried)",) * 4
                else:
                    row = fn()
            except Exception as e:  # noqa: BLE001
                results[name] = {"error": f"{type(e).__name__}: {e}"}
                continue
            recs = [x for x in relay.take() if x["handshake"]]
            results[name] = {"session": session_vars(row) if row and len(row) == 4 else row,
                             "connections": recs}
        relay.sock.close()
    for name, r in results.items():
        print(f"== {name}")
        if "error" in r:
            print(f"   error: {r['error']}")
            continue
        print(f"   session: {r['session']}")
        for k, rec in enumerate(r["connections"]):
            h = rec["handshake"]
            print(f"   connection {k + 1}: charset id {h['charset_id']}, caps {h['capabilities']}, "
                  f"max_packet {h['max_packet']}, plugin {h.get('auth_plugin')}, db {h.get('database')}")
            print(f"     flags: {' '.join(h['capability_flags'])}")
            if h["mariadb_ext_capabilities"]:
                print(f"     MariaDB ext: {' '.join(h['mariadb_ext_capabilities'])}")
            if h.get("connect_attrs"):
                print(f"     attrs: {h['connect_attrs']}")
            print(f"     first commands: {rec['commands']}")
    if out_json:
        with open(out_json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
