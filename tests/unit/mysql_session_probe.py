#!/usr/bin/python3
"""Shows what MariaDB's session-state tracking reports for the statements
that matter to transaction pooling (the findings at the top of
pool/mysql/session.h), and prints the real OK payloads that
tests/unit/test_my_session.cpp checks the pin rules against.

A raw-protocol client with CLIENT_DEPRECATE_EOF and CLIENT_SESSION_TRACK, as
sqlmux's backend connections have, so the OK that ends a result set (and its
session state) is shown too. Each case runs on a fresh connection with the
trackers sqlmux's backends use. No dependencies beyond Python 3.

Usage (a throwaway server, connected to over its Unix socket):
  mariadb-install-db --no-defaults --user=root --datadir=/tmp/x/data
  mariadbd --no-defaults --user=root --datadir=/tmp/x/data --socket=/tmp/x/sock \\
      --port=0 --skip-networking &
  mariadb -S /tmp/x/sock -uroot -e "CREATE USER probe@localhost; \\
      GRANT ALL ON *.* TO probe@localhost"
  tests/unit/mysql_session_probe.py /tmp/x/sock              # the findings
  tests/unit/mysql_session_probe.py /tmp/x/sock --fixtures   # C++ literals
"""
import socket
import struct
import sys

CAPS = (512 | 8192 | 32768 | (1 << 16) | (1 << 17) | (1 << 18) | (1 << 19) | (1 << 21)
        | (1 << 23) | (1 << 24))  # ... SESSION_TRACK | DEPRECATE_EOF
TRACKERS = ("SET SESSION session_track_system_variables='*', session_track_schema=ON, "
            "session_track_state_change=ON, session_track_transaction_info='CHARACTERISTICS'")
STATUS = {1: "IN_TRANS", 2: "AUTOCOMMIT", 8: "MORE_RESULTS", 0x40: "CURSOR_EXISTS",
          0x80: "LAST_ROW_SENT", 0x100: "DB_DROPPED", 0x2000: "IN_TRANS_READONLY",
          0x4000: "STATE_CHANGED"}


def lenenc(p, i):
    b = p[i]
    if b < 251:
        return b, i + 1
    if b == 0xFC:
        return struct.unpack("<H", p[i + 1:i + 3])[0], i + 3
    if b == 0xFD:
        return int.from_bytes(p[i + 1:i + 4], "little"), i + 4
    return struct.unpack("<Q", p[i + 1:i + 9])[0], i + 9


def lstr(p, i):
    n, i = lenenc(p, i)
    return p[i:i + n], i + n


def describe_ok(p):
    """The status flags and session-state entries of an OK payload."""
    _, i = lenenc(p, 1)
    _, i = lenenc(p, i)
    status = struct.unpack("<H", p[i:i + 2])[0]
    i += 4
    out = ["status " + "|".join(v for k, v in STATUS.items() if status & k)]
    if i < len(p):
        _, i = lstr(p, i)  # info
    if status & 0x4000 and i < len(p):
        data, _ = lstr(p, i)
        j = 0
        while j < len(data):
            kind = data[j]
            entry, j = lstr(data, j + 1)
            if kind == 0:
                name, k = lstr(entry, 0)
                value, _ = lstr(entry, k)
                out.append(f"variable {name.decode()}={value.decode()!r}")
            elif kind == 1:
                out.append(f"schema {lstr(entry, 0)[0].decode()!r}")
            elif kind == 2:
                out.append(f"state_change {entry.decode()!r}")
            elif kind == 4:
                out.append(f"characteristics {lstr(entry, 0)[0].decode()!r}")
            elif kind == 5:
                out.append(f"transaction_state {lstr(entry, 0)[0].decode()!r}")
            else:
                out.append(f"type {kind} {entry!r}")
    return status, out


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = b""
        self.oks = []  # every OK payload received, in order
        self.recv()  # greeting
        self.send(1, struct.pack("<IIB", CAPS, 16 << 20, 45) + b"\0" * 23 + b"probe\0\0"
                  + b"mysql_native_password\0")
        if self.recv()[0] != 0:
            raise RuntimeError("login failed (see the usage for the probe user)")
        self.query(TRACKERS)
        self.oks.clear()

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) >= 4 + n:
                    p, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return p
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("server closed")
            self.buf += chunk

    def send(self, seq, payload):
        self.sock.sendall(len(payload).to_bytes(3, "little") + bytes([seq]) + payload)

    def response(self):
        """Reads one response; returns the error message, or None."""
        while True:
            p = self.recv()
            if p[0] == 0xFF:
                return p[9:].decode()
            if p[0] == 0x00:
                self.oks.append(p)
                if describe_ok(p)[0] & 8:
                    continue
                return None
            ncols, _ = lenenc(p, 0)
            for _ in range(ncols):
                self.recv()
            while True:
                r = self.recv()
                if r[0] == 0xFF:
                    return r[9:].decode()
                if r[0] == 0xFE and len(r) < 0xFFFFFF:
                    self.oks.append(r)
                    break
            status = describe_ok(r)[0]
            if status & 0x40 or not status & 8:  # a cursor: no rows follow
                return None

    def query(self, sql):
        self.send(0, b"\x03" + sql.encode())
        return self.response()

    def prepare(self, sql):
        self.send(0, b"\x16" + sql.encode())
        p = self.recv()
        stmt, ncols, nparams = struct.unpack("<IHH", p[1:9])
        for _ in range(ncols + nparams):
            self.recv()
        return stmt


# (name, setup statements, the statement under test)
CASES = [
    ("kOkSetUserVar", [], "SET @v=1"),
    (None, [], "SELECT @x:=1"),
    (None, [], "SELECT 1 INTO @w"),
    ("kOkCreateTemporary", [], "CREATE TEMPORARY TABLE probe.tt(x int)"),
    ("kOkPrepareSql", [], "PREPARE s FROM 'select 1'"),
    ("kOkSetTimeZone", [], "SET time_zone='+05:00'"),
    (None, [], "SET time_zone=DEFAULT"),
    (None, [], "SET STATEMENT time_zone='+01:00' FOR SELECT 1"),
    ("kOkSetNames", [], "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci"),
    (None, [], "SET collation_connection='utf8mb4_unicode_ci'"),
    (None, [], "SET character_set_results=NULL"),
    ("kOkUseDb", [], "USE probe"),
    ("kOkSetTransaction", [], "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
    (None, [], "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"),
    ("kOkBegin", [], "BEGIN"),
    ("kOkCommit", ["BEGIN"], "COMMIT"),
    ("kOkAutocommitConsumed", ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
     "INSERT INTO probe.t VALUES (3)"),
    ("kOkLockTables", [], "LOCK TABLES probe.t READ"),
    ("kOkUnlockTables", ["LOCK TABLES probe.t READ"], "UNLOCK TABLES"),
    ("kOkGetLock", [], "DO GET_LOCK('x',1)"),
    (None, [], "HANDLER probe.t OPEN"),
    (None, [], "SET autocommit=0"),
    ("kOkSetInsertId", [], "SET insert_id=5"),
    (None, [], "SET timestamp=DEFAULT"),
    ("kOkCallProc", [], "CALL probe.p()"),
    (None, ["CREATE DATABASE IF NOT EXISTS dd", "USE dd"], "DROP DATABASE dd"),
]


def setup(path):
    c = Conn(path)
    for q in ("CREATE DATABASE IF NOT EXISTS probe",
              "CREATE TABLE IF NOT EXISTS probe.t(x int)",
              "CREATE OR REPLACE PROCEDURE probe.p() SET time_zone='+04:00'"):
        err = c.query(q)
        if err:
            raise RuntimeError(f"{q}: {err}")
    c.sock.close()


def run_case(path, before, sql):
    c = Conn(path)
    for q in before:
        c.query(q)
    c.oks.clear()
    err = c.query(sql)
    c.sock.close()
    return err, list(c.oks)


def cursor_case(path):
    """A read-only cursor: the OK after the metadata, then the last FETCH's."""
    c = Conn(path)
    stmt = c.prepare("SELECT x FROM probe.t")
    c.oks.clear()
    c.send(0, b"\x17" + struct.pack("<IBI", stmt, 1, 1))
    c.response()
    c.send(0, b"\x1c" + struct.pack("<II", stmt, 100))
    while True:
        r = c.recv()
        if r[0] == 0xFE and len(r) < 0xFFFFFF:
            c.oks.append(r)
            break
    c.sock.close()
    return c.oks


def literal(name, p):
    body = "".join(f"\\x{b:02x}" for b in p)
    return f'const std::string_view {name}{{"{body}", {len(p)}}};'


def main():
    path = sys.argv[1]
    fixtures = "--fixtures" in sys.argv[2:]
    setup(path)
    for name, before, sql in CASES:
        err, oks = run_case(path, before, sql)
        if fixtures:
            if name:
                print(f"// {sql}\n{literal(name, oks[-1])}")
            continue
        print(sql + (f"  (after {'; '.join(before)})" if before else ""))
        if err:
            print(f"  ERROR {err}")
        for p in oks:
            print("  " + "; ".join(describe_ok(p)[1]))
    opened, last = cursor_case(path)
    if fixtures:
        print("// COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY: the OK that ends the metadata.")
        print(literal("kOkCursorOpened", opened))
        print("// COM_STMT_FETCH that returned the cursor's last row.")
        print(literal("kOkFetchLastRow", last))
    else:
        print("COM_STMT_EXECUTE (cursor) / COM_STMT_FETCH to the end")
        print("  " + "; ".join(describe_ok(opened)[1]))
        print("  " + "; ".join(describe_ok(last)[1]))


if __name__ == "__main__":
    main()
