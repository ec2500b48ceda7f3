"""DuckDB's side of benches/analytics: the same questions over the Parquet files that the
Delta log of `fhir_history.<type>` lists, with the current version of each id derived the
way DuckDB does it best (arg_max by version). Median of 5 after a warm-up, on 2 threads.

Usage: python duckdb_side.py <lake folder>/<workspace>/fhir/<type>   (needs duckdb, deltalake)
"""
import statistics
import sys
import time

import duckdb
from deltalake import DeltaTable

table = sys.argv[1]
files = DeltaTable(table).file_uris()
con = duckdb.connect()
con.execute("SET threads=2")
con.execute(f"CREATE VIEW h AS SELECT * FROM read_parquet({files!r})")
current = "(SELECT arg_max(resource, version_id) AS resource, arg_max(deleted, version_id) AS deleted FROM h GROUP BY id) WHERE NOT deleted"
queries = {
    "count, current": f"SELECT count(*) FROM {current}",
    "count, all versions": "SELECT count(*) FROM h",
    "group by status, current": f"SELECT json_extract_string(resource, '$.status') AS s, count(*) FROM {current} GROUP BY s",
}
print("| query | median of 5 | answer |")
print("|---|---|---|")
for name, q in queries.items():
    times = []
    for i in range(6):
        t = time.perf_counter()
        rows = con.execute(q).fetchall()
        if i:
            times.append(time.perf_counter() - t)
    print(f"| {name} | {statistics.median(times):.3f} s | {rows[:3]} |")
