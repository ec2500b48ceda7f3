"""Other engines read medlake's tables, for tests/tests/other_engines.rs: delta-rs (the
Python `deltalake` package) reads a resource table through its Delta log, and DuckDB
reads exactly the Parquet files that the log lists, with the current-version SQL that
the README gives. Both must return what medlake's SQL returns.

usage: other_engines.py <table folder> <history.json> <current.json>

history.json: medlake's `SELECT id, version_id, deleted, md5(resource) AS md5 FROM
fhir_history.<type>`; current.json: `SELECT id, version_id, md5(resource) AS md5 FROM
fhir.<type>`, both as JSON rows. Prints `other engines: every check passed` at the end.
"""

import hashlib
import json
import sys

import duckdb
from deltalake import DeltaTable

TABLE, HISTORY, CURRENT = sys.argv[1], sys.argv[2], sys.argv[3]

# The README's current-version view, for an engine that reads the Parquet files: the
# newest version_id (a 64-bit integer) per id, dropping ids whose newest is a delete.
CURRENT_SQL = """
SELECT id, version_id, last_updated, resource
FROM (
  SELECT *, row_number() OVER (PARTITION BY id ORDER BY version_id DESC) AS version_rank
  FROM read_parquet($files)
) AS versions
WHERE version_rank = 1 AND NOT deleted
"""


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def load(path, keys):
    with open(path, encoding="utf-8") as f:
        return sorted(tuple(row[k] for k in keys) for row in json.load(f))


def md5(text):
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def main():
    want_history = load(HISTORY, ["id", "version_id", "deleted", "md5"])
    want_current = load(CURRENT, ["id", "version_id", "md5"])
    check(len(want_current) < len(want_history), "the table holds versions besides the current ones")

    # delta-rs through the Delta log.
    table = DeltaTable(TABLE)
    arrow = table.to_pyarrow_table(columns=["id", "version_id", "deleted", "resource"])
    rows = arrow.to_pydict()
    got = sorted(
        zip(rows["id"], rows["version_id"], rows["deleted"], map(md5, rows["resource"]))
    )
    check(got == want_history, f"deltalake reads the {len(got)} versions medlake's SQL has")

    # DuckDB on the files the log lists (no Delta reader): every version, then the
    # current ones by the README's SQL.
    files = table.file_uris()
    check(len(files) > 0, f"the Delta log lists {len(files)} Parquet files")
    db = duckdb.connect()
    got = sorted(
        db.execute(
            "SELECT id, version_id, deleted, md5(resource) FROM read_parquet($files)",
            {"files": files},
        ).fetchall()
    )
    check(got == want_history, f"DuckDB reads the same {len(got)} versions from those files")
    got = sorted(
        db.execute(
            f"SELECT id, version_id, md5(resource) FROM ({CURRENT_SQL})", {"files": files}
        ).fetchall()
    )
    check(got == want_current, f"DuckDB's current-version SQL gives fhir.<type>'s {len(got)} rows")
    print("other engines: every check passed", flush=True)


if __name__ == "__main__":
    main()
