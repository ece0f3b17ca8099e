#!/usr/bin/python3
"""Captures MySQL-protocol exchanges with a real MariaDB server and writes
them as C++ byte arrays (tests/unit/test_mysql_fixtures_real.h).

A tiny raw-socket client: it chooses its capabilities itself (with and
without CLIENT_DEPRECATE_EOF / CLIENT_SESSION_TRACK), so both response
styles are captured, and records every packet as sent or received. The
mysql_native_password response comes from pymysql (python3-pymysql), an
implementation independent of sqlmux's.

Usage (a throwaway server; see the header of the generated file):
  mariadb-install-db --no-defaults --datadir=/tmp/x/data --user=root \
      --auth-root-authentication-method=normal
  mariadbd --no-defaults --user=root --datadir=/tmp/x/data --port=PORT \
      --bind-address=127.0.0.1 --socket=/tmp/x/sock &
  mariadb --no-defaults -S /tmp/x/sock -uroot -e "CREATE USER app@'%' \
      IDENTIFIED VIA mysql_native_password USING PASSWORD('secret'); \
      GRANT ALL ON *.* TO app@'%'; CREATE DATABASE shop; CREATE TABLE \
      shop.items(id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), \
      price DECIMAL(6,2)); INSERT INTO shop.items(name,price) \
      VALUES('apple',1.50),('pear',NULL);"
  tests/unit/mysql_capture.py PORT > tests/unit/test_mysql_fixtures_real.h
"""
import socket
import struct
import sys

from pymysql import _auth

CLIENT_MYSQL = 1
CLIENT_CONNECT_WITH_DB = 8
CLIENT_LOCAL_FILES = 128
CLIENT_PROTOCOL_41 = 512
CLIENT_TRANSACTIONS = 8192
CLIENT_SECURE_CONNECTION = 32768
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_LENENC = 1 << 21
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24

BASE = (CLIENT_PROTOCOL_41 | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION
        | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS
        | CLIENT_PLUGIN_AUTH | CLIENT_LOCAL_FILES)


def lenenc(n):
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    return b"\xfd" + struct.pack("<I", n)[:3]


def lenenc_str(s):
    return lenenc(len(s)) + s


class Session:
    def __init__(self, port, name):
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.packets = []  # (label, direction, wire)
        self.buf = b""

    def recv_packet(self, label):
        while True:
            if len(self.buf) >= 4:
                n = int.from_bytes(self.buf[:3], "little")
                if len(self.buf) >= 4 + n:
                    wire, self.buf = self.buf[:4 + n], self.buf[4 + n:]
                    self.packets.append((label, "S", wire))
                    return wire[4:], wire[3]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("server closed")
            self.buf += chunk

    def send(self, label, seq, payload):
        wire = len(payload).to_bytes(3, "little") + bytes([seq & 0xff]) + payload
        self.packets.append((label, "C", wire))
        self.sock.sendall(wire)

    def read_response(self, label, binary=False, deprecate_eof=False, prepare=False):
        """Reads one whole response (multi-results included) with a simple
        independent state machine."""
        while True:
            p, _ = self.recv_packet(label)
            if p[0] == 0xFF:
                return
            if prepare:
                ncols, nparams = struct.unpack("<HH", p[5:9])
                for block in (nparams, ncols):
                    for _ in range(block):
                        self.recv_packet(label)
                    if block and not deprecate_eof:
                        self.recv_packet(label)
                return
            if p[0] == 0x00:
                status = self.ok_status(p)
                if status & 8:
                    continue
                return
            if p[0] == 0xFB:
                return
            ncols = p[0]
            for _ in range(ncols):
                self.recv_packet(label)
            if not deprecate_eof:
                self.recv_packet(label)
            while True:
                r, _ = self.recv_packet(label)
                if r[0] == 0xFF:
                    return
                if r[0] == 0xFE and (len(r) < 9 or deprecate_eof):
                    status = (struct.unpack("<H", r[3:5])[0] if not deprecate_eof
                              else self.ok_status(r))
                    break
            if status & 8:
                continue
            return

    @staticmethod
    def ok_status(p):
        i = 1
        for _ in range(2):
            if p[i] < 251:
                i += 1
            elif p[i] == 0xFC:
                i += 3
            elif p[i] == 0xFD:
                i += 4
            else:
                i += 9
        return struct.unpack("<H", p[i:i + 2])[0]

    def login(self, caps, user=b"app", password=b"secret", db=None, plugin=b"mysql_native_password",
              attrs=None, ext_caps=0):
        greeting, _ = self.recv_packet("greeting")
        ver_end = greeting.index(b"\0", 1)
        pos = ver_end + 1 + 4
        part1 = greeting[pos:pos + 8]
        pos += 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
        part2 = greeting[pos:pos + 12]
        scramble = part1 + part2
        if plugin == b"mysql_native_password":
            auth = _auth.scramble_native_password(password, scramble)
        else:
            auth = b"\x01" * 32  # a response the server cannot use: it switches plugins
        if db is not None:
            caps |= CLIENT_CONNECT_WITH_DB
        if attrs is not None:
            caps |= CLIENT_CONNECT_ATTRS
        body = struct.pack("<IIB", caps, 16 << 20, 45) + b"\0" * 19
        body += struct.pack("<I", ext_caps if not caps & CLIENT_MYSQL else 0)
        body += user + b"\0"
        if caps & CLIENT_LENENC:
            body += lenenc_str(auth)
        else:
            body += bytes([len(auth)]) + auth
        if db is not None:
            body += db + b"\0"
        body += plugin + b"\0"
        if attrs is not None:
            a = b"".join(lenenc_str(k) + lenenc_str(v) for k, v in attrs)
            body += lenenc_str(a)
        self.send("handshake_response", 1, body)
        p, seq = self.recv_packet("login_result")
        if p[0] == 0xFE:  # AuthSwitchRequest
            name_end = p.index(b"\0", 1)
            data = p[name_end + 1:]
            self.send("auth_switch_response", seq + 1,
                      _auth.scramble_native_password(password, data[:20]))
            self.recv_packet("login_result")
        return scramble

    def query(self, label, sql, deprecate_eof):
        self.send(label, 0, b"\x03" + sql)
        self.read_response(label, deprecate_eof=deprecate_eof)

    def close(self):
        self.sock.close()


def session_deprecate_eof(port):
    s = Session(port, "de")
    caps = BASE | CLIENT_LENENC | CLIENT_SESSION_TRACK | CLIENT_DEPRECATE_EOF
    s.login(caps, db=b"shop", attrs=[(b"_client_name", b"sqlmux-capture"), (b"_pid", b"42")])
    s.query("select_items", b"SELECT id, name, price FROM shop.items ORDER BY id", True)
    s.query("no_such_table", b"SELECT * FROM nosuch", True)
    s.query("track_vars", b"SET SESSION session_track_system_variables='autocommit,time_zone', "
            b"session_track_state_change=1, session_track_schema=1, "
            b"session_track_transaction_info='CHARACTERISTICS'", True)
    s.query("set_autocommit", b"SET autocommit=0", True)
    s.send("init_db", 0, b"\x02shop")
    s.read_response("init_db", deprecate_eof=True)
    s.query("begin", b"START TRANSACTION READ ONLY", True)
    s.query("multi", b"SELECT 1 AS one; SELECT 'a' AS x, NULL AS n", True)
    s.query("commit", b"COMMIT", True)
    s.send("prepare", 0, b"\x16SELECT id, name FROM shop.items WHERE id > ? AND name <> ?")
    s.read_response("prepare", deprecate_eof=True, prepare=True)
    prep = [p for p in s.packets if p[0] == "prepare" and p[1] == "S"][0][2][4:]
    stmt = struct.unpack("<I", prep[1:5])[0]
    # id > 0 (LONGLONG), name <> 'zzz' (VAR_STRING), types bound
    execute = (b"\x17" + struct.pack("<IBI", stmt, 0, 1) + b"\x00" + b"\x01"
               + bytes([0x08, 0x00, 0xFD, 0x00]) + struct.pack("<q", 0) + lenenc_str(b"zzz"))
    s.send("execute_types", 0, execute)
    s.read_response("execute_types", binary=True, deprecate_eof=True)
    execute2 = (b"\x17" + struct.pack("<IBI", stmt, 0, 1) + b"\x02" + b"\x00"
                + struct.pack("<q", 1))
    s.send("execute_null_no_types", 0, execute2)
    s.read_response("execute_null_no_types", binary=True, deprecate_eof=True)
    s.send("stmt_close", 0, b"\x19" + struct.pack("<I", stmt))
    s.send("ping", 0, b"\x0e")
    s.read_response("ping", deprecate_eof=True)
    s.send("reset_connection", 0, b"\x1f")
    s.read_response("reset_connection", deprecate_eof=True)
    s.send("local_infile", 0, b"\x03LOAD DATA LOCAL INFILE '/nonexistent.csv' INTO TABLE shop.items")
    s.read_response("local_infile", deprecate_eof=True)
    s.send("local_infile_data", 2, b"")
    s.read_response("local_infile_result", deprecate_eof=True)
    s.send("quit", 0, b"\x01")
    s.close()
    return s


def session_eof(port):
    s = Session(port, "eof")
    s.login(BASE | CLIENT_MYSQL, db=b"shop")
    s.query("select_items", b"SELECT id, name, price FROM shop.items ORDER BY id", False)
    s.query("empty_result", b"SELECT id FROM shop.items WHERE id < 0", False)
    s.send("prepare", 0, b"\x16SELECT name, price FROM shop.items WHERE id = ?")
    s.read_response("prepare", deprecate_eof=False, prepare=True)
    prep = [p for p in s.packets if p[0] == "prepare" and p[1] == "S"][0][2][4:]
    stmt = struct.unpack("<I", prep[1:5])[0]
    execute = (b"\x17" + struct.pack("<IBI", stmt, 0, 1) + b"\x00" + b"\x01"
               + bytes([0x03, 0x80]) + struct.pack("<I", 1))
    s.send("execute", 0, execute)
    s.read_response("execute", binary=True, deprecate_eof=False)
    # A read-only cursor: metadata with SERVER_STATUS_CURSOR_EXISTS, then FETCH.
    cursor = (b"\x17" + struct.pack("<IBI", stmt, 1, 1) + b"\x00" + b"\x01"
              + bytes([0x03, 0x80]) + struct.pack("<I", 1))
    s.send("execute_cursor", 0, cursor)
    for _ in range(4):  # column count, 2 definitions, EOF
        s.recv_packet("execute_cursor")
    s.send("fetch", 0, b"\x1c" + struct.pack("<II", stmt, 10))
    while True:
        p, _ = s.recv_packet("fetch")
        if p[0] in (0xFE, 0xFF) and len(p) < 9:
            break
    s.send("stmt_reset", 0, b"\x1a" + struct.pack("<I", stmt))
    s.recv_packet("stmt_reset")
    s.send("field_list", 0, b"\x04items\0")
    # COM_FIELD_LIST: column definitions until EOF
    while True:
        p, _ = s.recv_packet("field_list")
        if p[0] in (0xFE, 0xFF) and len(p) < 9:
            break
    s.send("set_option", 0, b"\x1b" + struct.pack("<H", 1))
    s.recv_packet("set_option")
    s.send("statistics", 0, b"\x09")
    s.recv_packet("statistics")
    s.send("quit", 0, b"\x01")
    s.close()
    return s


def session_auth_switch(port):
    s = Session(port, "switch")
    s.login(BASE | CLIENT_LENENC, plugin=b"caching_sha2_password")
    s.send("quit", 0, b"\x01")
    s.close()
    return s


def session_denied(port):
    s = Session(port, "denied")
    s.login(BASE | CLIENT_LENENC, password=b"wrong")
    s.close()
    return s


def emit(sessions):
    out = []
    out.append("// Generated by tests/unit/mysql_capture.py from MariaDB 10.11 (Debian 12):")
    out.append("// real packets as sent and received (4-byte header included). User app,")
    out.append("// password 'secret' (mysql_native_password); 'C' = client, 'S' = server.")
    out.append("#pragma once")
    out.append("")
    out.append("#include <cstdint>")
    out.append("#include <string_view>")
    out.append("")
    out.append("namespace sqlmux::my::testing {")
    out.append("")
    out.append("struct RealPacket {")
    out.append("  const char* session;")
    out.append("  const char* label;")
    out.append("  char dir;")
    out.append("  std::string_view wire;")
    out.append("};")
    out.append("")
    names = []
    for s in sessions:
        for i, (label, d, wire) in enumerate(s.packets):
            name = f"k{s.name.capitalize()}{i}"
            names.append((s.name, label, d, name, len(wire)))
            body = ", ".join(f"0x{b:02x}" for b in wire)
            lines = []
            line = "    "
            for tok in body.split(" "):
                if len(line) + len(tok) + 1 > 98:
                    lines.append(line.rstrip())
                    line = "    "
                line += tok + " "
            lines.append(line.rstrip())
            out.append(f"inline constexpr uint8_t {name}[] = {{")
            out.extend(lines)
            out.append("};")
    out.append("")
    out.append("inline const RealPacket kRealPackets[] = {")
    for session, label, d, name, n in names:
        out.append(f"    {{\"{session}\", \"{label}\", '{d}', "
                   f"{{reinterpret_cast<const char*>({name}), {n}}}}},")
    out.append("};")
    out.append("")
    out.append("}  // namespace sqlmux::my::testing")
    return "\n".join(out) + "\n"


def main():
    port = int(sys.argv[1])
    sessions = [session_deprecate_eof(port), session_eof(port), session_auth_switch(port),
                session_denied(port)]
    sys.stdout.write(emit(sessions))


if __name__ == "__main__":
    main()
