"""Replay a recorded Postgres client session (tests/pg_sessions/*.sql) over the wire.

Each statement goes out as its client sent it: the simple protocol as one Query message
(several statements in one, if the client batched them), the extended protocol as
Parse/Bind/Describe/Execute with the recorded parameter types and values (text, or
binary as recorded), a statement that was only parsed and described as Parse/Describe.
libpq (through psycopg's `pq` layer) does the protocol, nothing rewrites the SQL.

Prints one JSON object: how many statements ran, the errors (statement and message),
and every value and column name the answers held, for the caller to check; the answers
of an entry given a `name` are reported whole under `results` (one set of columns and
rows, as text, per statement it holds), for a check of what each statement answered. An entry
marked `known_gap` (a statement that fails today for the reason it gives) reports its
errors under `known_gaps` instead, or itself under `gaps_now_pass` once it works.

Usage: pg_replay.py FIXTURE CONNINFO
"""

import json
import re
import sys

from psycopg import pq


def read_fixture(path):
    """[(kind, {types, params, name}, sql)] from the fixture file."""
    entries = []
    current = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("@@ "):
                if current:
                    entries.append(current)
                head = line[3:].strip()
                kind, _, rest = head.partition(" ")
                meta = json.loads(rest) if rest else {}
                current = [kind, meta, []]
            elif current is None:
                continue  # the header
            else:
                current[2].append(line)
    if current:
        entries.append(current)
    return [(k, m, "".join(lines).rstrip("\n")) for k, m, lines in entries]


def encode_param(p):
    if p is None:
        return None, 0
    if isinstance(p, dict):
        return bytes.fromhex(p["binary"]), 1
    return p.encode("utf-8"), 0


def main():
    fixture, conninfo = sys.argv[1], sys.argv[2]
    conn = pq.PGconn.connect(conninfo.encode())
    if conn.status != pq.ConnStatus.OK:
        print(json.dumps({"connect_error": conn.get_error_message().decode()}))
        sys.exit(1)
    errors, values, columns = [], set(), set()
    results = {}
    known_gaps, gaps_now_pass = [], []
    entries = read_fixture(fixture)
    # A recording names tables by the oids of the session it came from (psql looks a table
    # up, then asks by oid). Oids follow the catalog's contents, so the fixture writes them
    # as {{oid:schema.table}} (in the SQL or a parameter), resolved here against this server.
    def oid_of(qualified):
        schema, table = qualified.split(".", 1)
        r = conn.exec_(
            ("SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
             f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' AND c.relname = '{table}'").encode()
        )
        return r.get_value(0, 0).decode() if r.ntuples else "0"
    def resolve(text):
        return re.sub(r"\{\{oid:([a-z_]+\.[a-z_]+)\}\}", lambda m: oid_of(m.group(1)), text)

    for _, meta, _ in entries:
        if "params" in meta:
            meta["params"] = [resolve(p) if isinstance(p, str) else p for p in meta["params"]]
    entries = [(kind, meta, resolve(sql)) for kind, meta, sql in entries]

    def drain(sql, answer=None):
        while True:
            r = conn.get_result()
            if r is None:
                return
            if r.status == pq.ExecStatus.FATAL_ERROR:
                errors.append({
                    "sql": sql,
                    "sqlstate": (r.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode(),
                    "error": str(r.get_error_message()).strip(),
                })
            for c in range(r.nfields):
                columns.add((r.fname(c) or b"").decode())
            if r.status == pq.ExecStatus.TUPLES_OK:
                if answer is not None:
                    answer.append({
                        "columns": [(r.fname(c) or b"").decode() for c in range(r.nfields)],
                        "rows": [
                            [None if r.get_value(i, c) is None or r.fformat(c) != 0
                             else r.get_value(i, c).decode("utf-8", errors="replace")
                             for c in range(r.nfields)]
                            for i in range(r.ntuples)
                        ],
                    })
                for i in range(r.ntuples):
                    for c in range(r.nfields):
                        v = r.get_value(i, c)
                        if v is not None and r.fformat(c) == 0:
                            values.add(v.decode("utf-8", errors="replace"))

    for kind, meta, sql in entries:
        before = len(errors)
        answer = None
        if meta.get("name"):
            answer = results.setdefault(meta["name"], [])
        run_entry(conn, kind, meta, sql, lambda sql: drain(sql, answer))
        if meta.get("known_gap"):
            if len(errors) > before:
                known_gaps.append({"gap": meta["known_gap"], "errors": errors[before:]})
                del errors[before:]
            else:
                gaps_now_pass.append(meta["known_gap"])
    conn.finish()
    print(json.dumps({
        "statements": len(entries),
        "errors": errors,
        "known_gaps": known_gaps,
        "gaps_now_pass": gaps_now_pass,
        "values": sorted(values),
        "columns": sorted(columns),
        "results": results,
    }))


def run_entry(conn, kind, meta, sql, drain):
    """Send one entry as its client did, and read every answer."""
    if kind == "simple":
        conn.send_query(sql.encode())
    elif kind == "extended":
        encoded = [encode_param(p) for p in meta.get("params", [])]
        types = meta.get("types") or None
        if types is not None:
            types = list(types) + [0] * (len(encoded) - len(types))
            types = types[: len(encoded)] or None
        conn.send_query_params(
            sql.encode(),
            [v for v, _ in encoded],
            param_types=types,
            param_formats=[f for _, f in encoded] or None,
        )
    elif kind == "parse":
        conn.send_prepare(b"", sql.encode(), param_types=meta.get("types") or None)
        drain(sql)
        conn.send_describe_prepared(b"")
    else:
        raise SystemExit(f"unknown entry kind {kind!r}")
    drain(sql)


if __name__ == "__main__":
    main()
