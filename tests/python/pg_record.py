"""Turn the statements a medlake server logged into a session fixture (tests/pg_sessions/).

Run the server with `MEDLAKE_LOG=medlake::server::pgwire=debug NO_COLOR=1`, point a real
client at it, and feed the server's standard error to this script:

    pg_record.py HEADER_FILE [--name N=NAME ...] < server.log > tests/pg_sessions/CLIENT.sql

Every Query message becomes an `@@ simple` entry; a Parse followed by a Bind of the same
statement becomes one `@@ extended` entry with the Parse's parameter types and the Bind's
values (binary values of the common types are turned into their text form, others are
kept as hex); a Parse never bound becomes `@@ parse`. A statement parsed once and bound
several times is replayed once per Bind, as the client ran it. `--name N=NAME` gives the
N-th entry (counted from 1) the name under which pg_replay.py reports its answers, for
a test to check them.
"""

import json
import re
import struct
import sys

LINE = re.compile(
    r'statement conn=(\d+) protocol="(\w+)"'
    r'(?: name=("(?:[^"\\]|\\.)*"))?'
    r'(?: types=\[([^\]]*)\])?'
    r' (sql|params)=(.*)$'
)

# Binary parameters of these types (by OID) are written in their text form.
BINARY_TO_TEXT = {
    16: lambda b: "t" if b[0] else "f",
    20: lambda b: str(struct.unpack(">q", b)[0]),
    21: lambda b: str(struct.unpack(">h", b)[0]),
    23: lambda b: str(struct.unpack(">i", b)[0]),
    25: lambda b: b.decode("utf-8"),
    19: lambda b: b.decode("utf-8"),
    1043: lambda b: b.decode("utf-8"),
}


def main():
    args = sys.argv[1:]
    header = open(args[0], encoding="utf-8").read()
    names = {}
    rest = args[1:]
    while rest:
        if rest[0] != "--name" or len(rest) < 2 or "=" not in rest[1]:
            sys.exit(f"expected --name N=NAME, got {rest[0]!r}")
        n, name = rest[1].split("=", 1)
        names[int(n)] = name
        rest = rest[2:]
    out = [header.rstrip("\n") + "\n"]
    entries = []  # (kind, meta, sql)
    parsed = {}  # (conn, statement name) -> (types, sql, bound?)

    def flush_unbound(conn=None):
        # A Parse the client did not bind is written where it was sent: before the
        # connection's next statement (or at the end).
        for key, (types, sql, bound) in list(parsed.items()):
            if not bound and (conn is None or key[0] == conn):
                entries.append(("parse", {"types": types}, sql))
                parsed[key] = (types, sql, True)

    for line in sys.stdin:
        m = LINE.search(line.rstrip("\n"))
        if not m:
            continue
        conn, protocol, name, types, field, value = m.groups()
        value = json.loads(value)
        key = (conn, json.loads(name) if name else "")
        if protocol == "simple":
            flush_unbound(conn)
            entries.append(("simple", {}, value))
        elif protocol == "parse":
            flush_unbound(conn)
            types = [int(t) for t in types.split(",") if t.strip()] if types else []
            parsed[key] = (types, value, False)
        elif protocol == "bind":
            if key not in parsed:
                continue
            types, sql, _ = parsed[key]
            params = []
            for i, p in enumerate(value):
                if isinstance(p, dict):
                    oid = types[i] if i < len(types) else 0
                    raw = bytes.fromhex(p["binary"])
                    if oid in BINARY_TO_TEXT:
                        p = BINARY_TO_TEXT[oid](raw)
                params.append(p)
            meta = {"types": types, "params": params}
            entries.append(("extended", meta, sql))
            parsed[key] = (types, sql, True)
    flush_unbound()
    unknown = set(names) - set(range(1, len(entries) + 1))
    if unknown:
        sys.exit(f"--name: no entry {sorted(unknown)} (there are {len(entries)})")
    for i, (kind, meta, sql) in enumerate(entries, 1):
        if i in names:
            meta = {**meta, "name": names[i]}
        head = "@@ " + kind + (" " + json.dumps(meta) if meta else "")
        out.append(head + "\n" + sql + "\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
