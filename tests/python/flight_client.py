"""A Flight SQL client session against a running medlake, for tests/tests/flight_sql.rs:
the ADBC Flight SQL driver (the one pandas, polars and DBeaver-style tools use) asks for
the server's info and catalog, runs a prepared statement with a parameter, is refused a
write, and fetches a large answer into pandas and into polars while the server's peak
resident memory is watched.

usage: flight_client.py <grpc://host:port> <http://host:port> <server pid> <copies>

Every answer is checked against the same question put to POST /sql. Prints one line per
check and `flight sql: every check passed` at the end; exits non-zero on the first failure.
"""

import json
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import polars as pl

FLIGHT, HTTP, PID, COPIES = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

# Every version of every Observation, COPIES times over: a million rows or more from a
# data set that loads in seconds. The resource text makes the answer large.
BIG_FROM = (
    f"FROM generate_series(1, {COPIES}) AS g "
    "CROSS JOIN fhir_history.observation AS o"
)
BIG_QUERY = f"SELECT o.id, o.version_id, o.resource, g.value AS copy {BIG_FROM}"


def sql(query):
    """POST /sql, answered as JSON rows."""
    req = urllib.request.Request(
        HTTP + "/sql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)


def status_kb(field):
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{PID}/status")


def reset_peak():
    # Linux resets VmHWM (the peak resident size) to the current size on "5".
    with open(f"/proc/{PID}/clear_refs", "w") as f:
        f.write("5")


def expected_checksum():
    row = sql(
        "SELECT count(*) AS n, count(DISTINCT o.id) AS ids, sum(o.version_id) AS versions, "
        f"sum(g.value) AS copies, sum(character_length(o.resource)) AS chars {BIG_FROM}"
    )[0]
    return {k: int(v) for k, v in row.items()}


def main():
    conn = flight_sql.connect(FLIGHT, autocommit=True)

    # GetSqlInfo
    info = conn.adbc_get_info()
    check(info.get("vendor_name") == "medlake", f"GetSqlInfo names the server: {info}")
    check(info.get("vendor_arrow_version") == "59", "GetSqlInfo gives the server's Arrow version")

    # GetCatalogs, GetDbSchemas, GetTables (ADBC's GetObjects asks without a catalog).
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    listed = {
        (c["catalog_name"], s["db_schema_name"], t["table_name"], t["table_type"])
        for c in objects
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    }
    for want in [
        ("medlake", "fhir", "observation", "VIEW"),
        ("medlake", "fhir_history", "observation", "TABLE"),
        ("medlake", "fhir_history", "patient", "TABLE"),
        ("medlake", "medlake", "ingest_errors", "TABLE"),
    ]:
        check(want in listed, f"GetTables lists {want}")
    schemas = {(c["catalog_name"], s["db_schema_name"]) for c in objects for s in c["catalog_db_schemas"] or []}
    check({("medlake", "fhir"), ("medlake", "fhir_history"), ("medlake", "medlake")} <= schemas,
          f"GetDbSchemas lists the schemas: {sorted(schemas)}")
    catalogs = {c["catalog_name"] for c in objects}
    check(catalogs == {"medlake"}, f"GetCatalogs: {catalogs}")

    # GetTables with include_schema: the columns of one table.
    table_schema = conn.adbc_get_table_schema("observation", db_schema_filter="fhir_history", catalog_filter="medlake")
    check(
        table_schema.names == ["id", "version_id", "last_updated", "deleted", "resource", "wal_seq", "search"],
        f"GetTables with include_schema gives the columns: {table_schema.names}",
    )
    types = set(conn.adbc_get_table_types())
    check({"TABLE", "VIEW"} <= types, f"GetTableTypes: {types}")

    cur = conn.cursor()

    # A prepared statement with a parameter, against /sql.
    some = sql("SELECT id FROM fhir.observation ORDER BY id LIMIT 3")
    for row in some:
        cur.execute(
            "SELECT id, version_id, json_get_str(resource, 'status') AS status "
            "FROM fhir.observation WHERE id = $1",
            parameters=(row["id"],),
        )
        got = cur.fetchall()
        want = sql(
            "SELECT id, version_id, json_get_str(resource, 'status') AS status "
            f"FROM fhir.observation WHERE id = '{row['id']}'"
        )
        check(
            [list(r) for r in got] == [[w["id"], w["version_id"], w["status"]] for w in want] and len(got) == 1,
            f"prepared statement with $1 = {row['id']}: {got}",
        )
    # The same statement prepared once and run with another value binds anew.
    cur.adbc_prepare("SELECT count(*) AS n FROM fhir_history.observation WHERE version_id >= $1")
    cur.execute("SELECT count(*) AS n FROM fhir_history.observation WHERE version_id >= $1", parameters=(1,))
    n_all = cur.fetchone()[0]
    cur.execute("SELECT count(*) AS n FROM fhir_history.observation WHERE version_id >= $1", parameters=(2,))
    n_later = cur.fetchone()[0]
    want_all = sql("SELECT count(*) AS n FROM fhir_history.observation")[0]["n"]
    want_later = sql("SELECT count(*) AS n FROM fhir_history.observation WHERE version_id >= 2")[0]["n"]
    check((n_all, n_later) == (want_all, want_later), f"a parameter compared with a number: {(n_all, n_later)}")

    # Writes are refused, with the reason.
    for statement in ["CREATE TABLE t AS SELECT 1", "DELETE FROM fhir_history.patient", "SET datafusion.execution.batch_size = 10"]:
        try:
            cur.execute(statement)
            cur.fetchall()
            check(False, f"{statement} was refused")
        except adbc_driver_manager.Error as e:
            check("read-only" in str(e), f"{statement} is refused as a write: {str(e).splitlines()[0][:160]}")
    try:
        cur.execute("SELECT nope FROM fhir.observation")
        check(False, "an unknown column is an error")
    except adbc_driver_manager.ProgrammingError as e:
        check("nope" in str(e), f"an unknown column is the client's error: {str(e).splitlines()[0][:160]}")

    # A large answer, streamed: into pandas, then into polars.
    want = expected_checksum()
    check(want["n"] >= 1_000_000, f"the large query has {want['n']} rows")
    base_kb = status_kb("VmRSS")
    reset_peak()
    start = time.monotonic()
    cur.execute(BIG_QUERY)
    table = cur.fetch_arrow_table()
    took = time.monotonic() - start
    # Each string arrives once: a server that sent every string of a batch with each of
    # its messages (arrow-flight's own cut of view columns) delivered several copies.
    once = want["chars"] + want["n"] * (16 + 16 + 36 + 8 + 8)
    check(table.nbytes < once * 5 // 4,
          f"the Arrow answer holds {table.nbytes >> 20} MiB for {once >> 20} MiB of values")
    df = table.to_pandas()
    del table
    peak_kb = status_kb("VmHWM")
    answer_bytes = int(df["resource"].str.len().sum()) + 8 * 2 * len(df) + int(df["id"].str.len().sum())
    got = {
        "n": len(df),
        "ids": int(df["id"].nunique()),
        "versions": int(df["version_id"].sum()),
        "copies": int(df["copy"].sum()),
        "chars": int(df["resource"].str.len().sum()),
    }
    check(got == want, f"pandas: {len(df)} rows in {took:.1f} s, checksum {got} equals /sql's")
    growth = (peak_kb - base_kb) * 1024
    print(
        f"memory: server resident {base_kb // 1024} MiB before, peak {peak_kb // 1024} MiB while streaming "
        f"an answer of {answer_bytes // (1 << 20)} MiB (growth {growth // (1 << 20)} MiB)",
        flush=True,
    )
    # The server holds a few batches per query; a server that gathered the answer would
    # grow by at least its size.
    check(growth < answer_bytes // 4, "the server's memory grew by less than a quarter of the answer")
    del df

    # polars through the same connection, on the narrow columns (the wide ones were
    # checked above; a second gigabyte would only double the test's time).
    start = time.monotonic()
    frame = pl.read_database(f"SELECT o.id, o.version_id, g.value AS copy {BIG_FROM}", connection=conn)
    took = time.monotonic() - start
    got = {
        "n": frame.height,
        "ids": frame["id"].n_unique(),
        "versions": int(frame["version_id"].sum()),
        "copies": int(frame["copy"].sum()),
    }
    narrow = {k: v for k, v in want.items() if k != "chars"}
    check(got == narrow, f"polars: {frame.height} rows in {took:.1f} s, checksum {got} equals /sql's")

    cur.close()
    conn.close()
    print("flight sql: every check passed", flush=True)


if __name__ == "__main__":
    main()
