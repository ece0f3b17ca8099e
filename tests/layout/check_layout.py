#!/usr/bin/env python3
"""Checks the #include lines of protocol/, pool/, config/ and daemon/ against
the source tree's layering rules (RULES, in this file).

  /usr/bin/python3 tests/layout/check_layout.py [SOURCE_DIR]          check
  /usr/bin/python3 tests/layout/check_layout.py --graph [SOURCE_DIR]  also print
                                                  the folder-level include graph

Prints each violation as `file:line: rule N (...): include`, then a summary;
exits 1 if there is any. Only direct includes are checked (not what they
include in turn); includes inside comments are ignored.
"""
import argparse
import collections
import os
import re
import sys

ROOTS = ("protocol", "pool", "config", "daemon")
SOURCE_EXTS = (".h", ".hpp", ".cpp", ".cc")
GENERATED = {"version.h"}  # configure_file()d into the build tree

RULES = {
    1: "protocol/<p> is a pure codec: only its own headers, system and OpenSSL",
    2: "pool/ is protocol-neutral policy: no protocol, pool/<p>, daemon, libuv, libpq, mysql",
    3: "pool/<p>: only protocol/<p>, pool/, pool/<p>, config/; no libuv, libpq, mysql",
    4: "daemon/core, net, ops are protocol-neutral",
    5: "daemon/net sits below the rest of daemon/, but for NET_ALLOW",
    6: "daemon/pg and daemon/mysql do not know each other nor the admin console",
    7: "daemon/admin speaks PostgreSQL; daemon/pg only by ADMIN_ALLOW",
    8: "only daemon/*.{h,cpp} (composition root) name both protocols",
    9: "project include does not resolve",
}

# Rule 5: what daemon/net/ may include from daemon/ outside daemon/net/.
NET_ALLOW = {
    "daemon/ops/metrics.h",  # Conn counts bytes in and out on metrics::Counter
}
# Rule 7: (file, header) pairs by which the admin console reaches daemon/pg/.
ADMIN_ALLOW = {
    # The console is a PgClient's LocalSession: it reads PgClient's input buffer and
    # answers with PgClient::send()/send_fatal().
    ("daemon/admin/session.h", "daemon/pg/client.h"),
}

PG = ("protocol/pg", "pool/pg", "daemon/pg")
MY = ("protocol/mysql", "pool/mysql", "daemon/mysql")

INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)
# Comments are blanked (keeping their newlines); string and character
# literals are matched only so that a "/*" or "//" inside one is not taken
# for a comment.
COMMENT_OR_LITERAL = re.compile(
    r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def library(name):
    """The third-party library an angle include belongs to, or None (system, stdlib)."""
    top = name.split("/")[0]
    if name == "uv.h" or top == "uv":
        return "libuv"
    if name in ("libpq-fe.h", "postgres_ext.h") or top == "libpq":
        return "libpq"
    if name in ("mysql.h", "errmsg.h", "mysqld_error.h") or top in ("mysql", "mariadb"):
        return "mysql"
    if top in ("openssl", "toml++", "prometheus", "systemd"):
        return top
    return None


def folder(path):
    """protocol/pg/codec.h -> protocol/pg; daemon/server.h -> daemon."""
    return "/".join(path.split("/")[:-1][:2])


def under(fold, *prefixes):
    return any(fold == p or fold.startswith(p + "/") for p in prefixes)


def layering_rule(src, inc, lib):
    """The rule (1-7) that src including project header inc, or library lib, breaks; else None."""
    s = folder(src)
    i = folder(inc) if inc else None
    for p, others, other_lib in (("pg", MY, "mysql"), ("mysql", PG, "libpq")):
        if under(s, "protocol/" + p):
            if (i and not under(i, "protocol/" + p)) or (lib and lib != "openssl"):
                return 1
        if under(s, "pool/" + p):
            if (i and not under(i, "protocol/" + p, "pool/" + p, "config") and i != "pool") or \
                    lib in ("libuv", "libpq", "mysql"):
                return 3
        if under(s, "daemon/" + p):
            if (i and under(i, *others, "daemon/admin")) or lib == other_lib:
                return 6
    if s == "pool":
        if (i and i not in ("pool", "config")) or lib in ("libuv", "libpq", "mysql"):
            return 2
    if under(s, "daemon/core", "daemon/net", "daemon/ops"):
        if (i and under(i, *PG, *MY, "daemon/admin")) or lib in ("libpq", "mysql"):
            return 4
    if under(s, "daemon/net") and i and under(i, "daemon") and not under(i, "daemon/net") \
            and inc not in NET_ALLOW:
        return 5
    if under(s, "daemon/admin"):
        if (i and under(i, *MY)) or lib == "mysql" or \
                (i and under(i, "daemon/pg") and (src, inc) not in ADMIN_ALLOW):
            return 7
    return None


def includes(text):
    """(line, delimiter, name) of each #include outside comments."""
    code = COMMENT_OR_LITERAL.sub(
        lambda m: re.sub(r"[^\n]", " ", m.group()) if m.group()[0] == "/" else m.group(), text)
    for m in INCLUDE.finditer(code):
        yield code.count("\n", 0, m.start()) + 1, m.group(1), m.group(2).strip()


def source_files(src_dir):
    for root in ROOTS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(src_dir, root)):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith(SOURCE_EXTS):
                    yield os.path.relpath(os.path.join(dirpath, f), src_dir).replace(os.sep, "/")


def check(src_dir):
    """Returns (violations, files, includes, graph, allow-list entries used)."""
    violations, graph, used = [], collections.Counter(), set()
    n_files = n_includes = 0
    for path in source_files(src_dir):
        n_files += 1
        with open(os.path.join(src_dir, path), encoding="utf-8", errors="replace") as f:
            text = f.read()
        flagged, sides = set(), {}
        for line, delim, name in includes(text):
            n_includes += 1
            project = name.split("/")[0] in ROOTS
            shown = f"<{name}>" if delim == "<" else f'"{name}"'
            if (delim == '"' or project) and name not in GENERATED and \
                    not os.path.isfile(os.path.join(src_dir, name)):
                violations.append((path, line, 9, shown))
            inc = name if project else None
            lib = None if project else library(name)
            rule = layering_rule(path, inc, lib)
            if rule:
                violations.append((path, line, rule, shown))
                flagged.add(line)
            elif inc in NET_ALLOW and under(folder(path), "daemon/net"):
                used.add(inc)
            elif (path, inc) in ADMIN_ALLOW:
                used.add((path, inc))
            if inc:
                side = "pg" if under(folder(inc), *PG) else "mysql" if under(folder(inc), *MY) else None
                if side:
                    sides.setdefault(side, (line, shown))
                if folder(inc) != folder(path):
                    graph[(folder(path), folder(inc))] += 1
            elif lib:
                graph[(folder(path), f"<{lib}>")] += 1
        # Rule 8, for what rules 1-7 do not already cover: report the first
        # include of the protocol named second.
        if len(sides) == 2 and folder(path) != "daemon":
            line, shown = max(sides.values())
            if line not in flagged:
                violations.append((path, line, 8, shown))
    violations.sort()
    return violations, n_files, n_includes, graph, used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source_dir", nargs="?",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--graph", action="store_true", help="print the folder-level include graph")
    args = ap.parse_args()
    violations, n_files, n_includes, graph, used = check(args.source_dir)
    for path, line, rule, shown in violations:
        print(f"{path}:{line}: rule {rule} ({RULES[rule]}): {shown}")
    for entry in sorted(NET_ALLOW | ADMIN_ALLOW, key=str):
        if entry not in used:
            print(f"note: allow-list entry no longer needed: {entry}", file=sys.stderr)
    if args.graph:
        print("include graph (folder -> folder: #includes; within a folder not shown):")
        for (a, b), n in sorted(graph.items()):
            print(f"  {a} -> {b}: {n}")
    print(f"{n_files} files, {n_includes} includes checked, {len(violations)} violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
