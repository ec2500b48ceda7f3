"""Append rows to a medlake resource table as another engine would, for
tests/tests/other_writers.rs: delta-rs's Python writer, standing in for Spark or
Databricks appending to the same Delta table.

usage: append_delta.py <table folder> <rows.json>

Each row of rows.json is {"id", "version_id", "last_updated_us", "resource"}. The rows are
not deleted; `wal_seq` and `search` are left null, as another engine leaves them.
"""

import json
import sys

import pyarrow as pa
from deltalake import write_deltalake

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("version_id", pa.int64(), nullable=False),
        pa.field("last_updated", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("deleted", pa.bool_(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("wal_seq", pa.int64(), nullable=True),
        pa.field("search", pa.string(), nullable=True),
    ]
)


def main() -> None:
    table, rows_file = sys.argv[1], sys.argv[2]
    with open(rows_file, encoding="utf-8") as f:
        rows = json.load(f)
    data = pa.table(
        {
            "id": [r["id"] for r in rows],
            "version_id": [r["version_id"] for r in rows],
            "last_updated": [r["last_updated_us"] for r in rows],
            "deleted": [False for _ in rows],
            "resource": [r["resource"] for r in rows],
            "wal_seq": [None for _ in rows],
            "search": [None for _ in rows],
        },
        schema=SCHEMA,
    )
    write_deltalake(table, data, mode="append")
    print(f"appended {len(rows)} rows to {table}")


if __name__ == "__main__":
    main()
