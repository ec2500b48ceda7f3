"""The SQL part of benches/analytics: analytics queries over a loaded lake, timed in the
same run through medlake in process (QueryEngine, via `medlake-bench-analytics
sql-stdin`), through Arrow Flight SQL (ADBC, fetching Arrow), through the Postgres wire
protocol (psycopg, fetching every row) and in DuckDB over the Parquet files that the
Delta logs list (2 threads), with the current version of each id derived in DuckDB by a
semi-join on the newest version (what `fhir.<type>` and `views.<name>` mean). Then the
transfer of a million rows, Flight SQL against in process.

Rounds are interleaved: each round runs every query on every side in turn, so that the
load other processes put on the machine falls on all sides alike. The first round is a
warm-up and is not counted.

Usage (a server on the lake first, see benches/README.md):

    python sql_bench.py --lake /tmp/bench-lake --bench <medlake-bench-analytics> \
        --flight grpc://127.0.0.1:15051 --pg 'host=127.0.0.1 port=15433 dbname=medlake' \
        [--rounds 3] [--only q1,q2] [--sides inproc,flight,pg,duckdb]
"""
import argparse
import statistics
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
from deltalake import DeltaTable

# (name, medlake SQL, DuckDB SQL): the same question on each side. DuckDB's names
# `obs`, `pat`, ... stand for fhir.<type> (current versions) and `v_obs`, ... for
# views.<name> (each resource's newest rows), defined in `duckdb_connection`.
QUERIES = [
    (
        "q1 count by code, JSON path on fhir.observation",
        "SELECT json_get_str(resource, 'code', 'coding', 0, 'code') AS code, count(*) AS n "
        "FROM fhir.observation GROUP BY code ORDER BY n DESC, code LIMIT 10",
        "SELECT json_extract_string(resource, '$.code.coding[0].code') AS code, count(*) AS n "
        "FROM obs GROUP BY code ORDER BY n DESC, code LIMIT 10",
    ),
    (
        "q2 count by code, views.observation",
        "SELECT code, count(*) AS n FROM views.observation WHERE part = 'observation' "
        "GROUP BY code ORDER BY n DESC, code LIMIT 10",
        "SELECT code, count(*) AS n FROM v_obs WHERE part = 'observation' "
        "GROUP BY code ORDER BY n DESC, code LIMIT 10",
    ),
    (
        "q3 per-patient aggregates",
        "SELECT patient_id, count(*) AS n, count(DISTINCT code) AS codes, min(effective) AS first, "
        "max(effective) AS last, avg(value) AS mean FROM views.observation WHERE part = 'observation' "
        "GROUP BY patient_id ORDER BY n DESC, patient_id LIMIT 10",
        "SELECT patient_id, count(*) AS n, count(DISTINCT code) AS codes, min(effective) AS first, "
        "max(effective) AS last, avg(value) AS mean FROM v_obs WHERE part = 'observation' "
        "GROUP BY patient_id ORDER BY n DESC, patient_id LIMIT 10",
    ),
    (
        "q4 join patient, condition, observation",
        "SELECT p.gender, count(DISTINCT p.id) AS patients, count(*) AS readings, avg(o.value) AS mean "
        "FROM views.patient p JOIN views.observation o ON o.patient_id = p.id "
        "WHERE o.code = '39156-5' AND p.id IN "
        "(SELECT patient_id FROM views.condition WHERE code = '162864005') "
        "GROUP BY p.gender ORDER BY p.gender",
        "SELECT p.gender, count(DISTINCT p.id) AS patients, count(*) AS readings, avg(o.value) AS mean "
        "FROM v_pat p JOIN v_obs o ON o.patient_id = p.id "
        "WHERE o.code = '39156-5' AND p.id IN "
        "(SELECT patient_id FROM v_cond WHERE code = '162864005') "
        "GROUP BY p.gender ORDER BY p.gender",
    ),
    (
        "q5 window: latest systolic pressure per patient",
        "SELECT count(*) AS patients, avg(value) AS mean FROM (SELECT value, row_number() OVER "
        "(PARTITION BY patient_id ORDER BY effective DESC, id) AS rn FROM views.observation "
        "WHERE code = '8480-6') AS t WHERE rn = 1",
        "SELECT count(*) AS patients, avg(value) AS mean FROM (SELECT value, row_number() OVER "
        "(PARTITION BY patient_id ORDER BY effective DESC, id) AS rn FROM v_obs "
        "WHERE code = '8480-6') AS t WHERE rn = 1",
    ),
    (
        "q6 window: weight change between visits (lag)",
        "SELECT count(*) AS pairs, avg(value - prev) AS mean_change FROM (SELECT value, lag(value) OVER "
        "(PARTITION BY patient_id ORDER BY effective, id) AS prev FROM views.observation "
        "WHERE code = '29463-7') AS t WHERE prev IS NOT NULL",
        "SELECT count(*) AS pairs, avg(value - prev) AS mean_change FROM (SELECT value, lag(value) OVER "
        "(PARTITION BY patient_id ORDER BY effective, id) AS prev FROM v_obs "
        "WHERE code = '29463-7') AS t WHERE prev IS NOT NULL",
    ),
    (
        "q7 percentiles by code (approximate: t-digest on both sides)",
        "SELECT code, count(*) AS n, approx_percentile_cont(value, 0.5) AS p50, "
        "approx_percentile_cont(value, 0.9) AS p90 FROM views.observation WHERE value IS NOT NULL "
        "GROUP BY code ORDER BY n DESC, code LIMIT 20",
        "SELECT code, count(*) AS n, approx_quantile(value, 0.5) AS p50, "
        "approx_quantile(value, 0.9) AS p90 FROM v_obs WHERE value IS NOT NULL "
        "GROUP BY code ORDER BY n DESC, code LIMIT 20",
    ),
    (
        "q8 JSON-path filter on fhir.observation",
        "SELECT count(*) AS n FROM fhir.observation "
        "WHERE json_get_str(resource, 'category', 0, 'coding', 0, 'code') = 'laboratory' "
        "AND json_get_float(resource, 'valueQuantity', 'value') > 100",
        "SELECT count(*) AS n FROM obs "
        "WHERE json_extract_string(resource, '$.category[0].coding[0].code') = 'laboratory' "
        "AND CAST(json_extract(resource, '$.valueQuantity.value') AS DOUBLE) > 100",
    ),
    (
        "q9 observations by year, views.observation",
        "SELECT date_part('year', effective) AS y, count(*) AS n FROM views.observation "
        "GROUP BY y ORDER BY y",
        "SELECT date_part('year', effective) AS y, count(*) AS n FROM v_obs "
        "GROUP BY y ORDER BY y",
    ),
    (
        "q10 JSON join fhir.observation x fhir.patient",
        "SELECT json_get_str(p.resource, 'gender') AS gender, count(*) AS n FROM fhir.observation o "
        "JOIN fhir.patient p ON json_get_str(o.resource, 'subject', 'reference') = concat('Patient/', p.id) "
        "GROUP BY gender ORDER BY gender",
        "SELECT json_extract_string(p.resource, '$.gender') AS gender, count(*) AS n FROM obs o "
        "JOIN pat p ON json_extract_string(o.resource, '$.subject.reference') = concat('Patient/', p.id) "
        "GROUP BY gender ORDER BY gender",
    ),
]

TRANSFER = [
    (
        "1M rows: id, version_id, last_updated",
        "SELECT id, version_id, last_updated FROM fhir_history.observation LIMIT 1000000",
    ),
    (
        "1M rows: id, version_id, last_updated, resource (~0.9 KB each)",
        "SELECT id, version_id, last_updated, resource FROM fhir_history.observation LIMIT 1000000",
    ),
]


def duckdb_connection(lake, workspace, memory_limit):
    con = duckdb.connect()
    con.execute("SET threads=2")
    con.execute("SET TimeZone='UTC'")
    # The medlake server of the run holds its search index in memory beside it.
    con.execute(f"SET memory_limit='{memory_limit}'")
    root = f"{lake}/{workspace}"
    for name, folder in [("obs", "fhir/observation"), ("pat", "fhir/patient"), ("cond", "fhir/condition")]:
        files = DeltaTable(f"{root}/{folder}").file_uris()
        con.execute(f"CREATE VIEW h_{name} AS SELECT * FROM read_parquet({files!r})")
        # The current version of each id: the newest, unless it is a delete.
        con.execute(
            f"CREATE VIEW {name} AS SELECT h.* FROM h_{name} h SEMI JOIN "
            f"(SELECT id, max(version_id) AS v FROM h_{name} GROUP BY id) m "
            f"ON h.id = m.id AND h.version_id = m.v WHERE NOT h.deleted"
        )
    for name, view in [("v_obs", "observation"), ("v_pat", "patient"), ("v_cond", "condition")]:
        files = DeltaTable(f"{root}/views/{view}").file_uris()
        con.execute(f"CREATE VIEW h_{name} AS SELECT * FROM read_parquet({files!r})")
        # Each resource's rows of its newest version, without the bookkeeping rows, as
        # the README tells other engines to read a view's table (and as `views.<name>`
        # does): the newest version of the resources that have a version past the first.
        con.execute(
            f"CREATE VIEW {name} AS SELECT h.* FROM h_{name} h LEFT JOIN "
            f"(SELECT _resource_id, max(_version_id) AS v FROM h_{name} "
            f"WHERE _version_id > 1 GROUP BY _resource_id) m "
            f"ON h._resource_id = m._resource_id "
            f"WHERE NOT h._empty AND (m.v IS NULL OR h._version_id = m.v)"
        )
    return con


class InProcess:
    """medlake's QueryEngine in the benchmark binary, one query a line."""

    def __init__(self, binary, lake):
        self.p = subprocess.Popen(
            [binary, "sql-stdin", "--data", lake],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = self.p.stdout.readline().strip()
        if line != "ready":
            sys.exit(f"the in-process side did not start: {line!r}")

    def run(self, sql):
        self.p.stdin.write(sql.replace("\n", " ") + "\n")
        self.p.stdin.flush()
        parts = self.p.stdout.readline().rstrip("\n").split("\t")
        if parts[0] != "ok":
            raise RuntimeError(f"in process: {parts}")
        return float(parts[2]), int(parts[1]), parts[3] if len(parts) > 3 else ""


def show(row):
    return "|".join("" if v is None else str(v) for v in row)


class Flight:
    def __init__(self, uri):
        self.conn = flight_sql.connect(uri)

    def run(self, sql):
        t = time.perf_counter()
        with self.conn.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
        took = time.perf_counter() - t
        first = table.slice(0, 1).to_pylist()
        return took, table.num_rows, show(first[0].values()) if first else ""


class Pg:
    def __init__(self, dsn):
        self.conn = psycopg.connect(dsn, autocommit=True)

    def run(self, sql):
        t = time.perf_counter()
        with self.conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
        took = time.perf_counter() - t
        return took, len(rows), show(rows[0]) if rows else ""


class Duck:
    def __init__(self, con):
        self.con = con

    def run(self, sql):
        t = time.perf_counter()
        rows = self.con.execute(sql).fetchall()
        took = time.perf_counter() - t
        return took, len(rows), show(rows[0]) if rows else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--workspace", default="default")
    ap.add_argument("--bench", required=True, help="the medlake-bench-analytics binary")
    ap.add_argument("--flight", default="grpc://127.0.0.1:15051")
    ap.add_argument("--pg", default="host=127.0.0.1 port=15433 dbname=medlake user=bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated query prefixes (q1,q5)")
    ap.add_argument("--sides", default="inproc,flight,pg,duckdb")
    ap.add_argument("--no-transfer", action="store_true")
    ap.add_argument("--duckdb-memory", default="4GB")
    a = ap.parse_args()

    queries = [q for q in QUERIES if not a.only or q[0].split()[0] in a.only.split(",")]
    sides = a.sides.split(",")
    runners = {}
    if "inproc" in sides:
        runners["inproc"] = InProcess(a.bench, a.lake)
    if "flight" in sides:
        runners["flight"] = Flight(a.flight)
    if "pg" in sides:
        runners["pg"] = Pg(a.pg)
    if "duckdb" in sides:
        runners["duckdb"] = Duck(duckdb_connection(a.lake, a.workspace, a.duckdb_memory))

    times = {(q[0], s): [] for q in queries for s in runners}
    answers = {}
    for r in range(a.rounds + 1):
        for name, ours, theirs in queries:
            for side, runner in runners.items():
                took, rows, first = runner.run(theirs if side == "duckdb" else ours)
                if r:
                    times[(name, side)].append(took)
                answers[(name, side)] = (rows, first)
                print(f"round {r} {name} {side}: {took:.3f} s", file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    cols = list(runners)
    print(f"### Queries: median of {a.rounds} interleaved rounds (after a warm-up)\n")
    print("| query | " + " | ".join(cols) + " | " + " | ".join(f"{c} / duckdb" for c in cols if c != "duckdb") + " |")
    print("|---" * (2 * len(cols)) + "|")
    ratios = {c: [] for c in cols if c != "duckdb"}
    for name, _, _ in queries:
        cells = [f"{med[(name, c)]:.3f} s" for c in cols]
        rcells = []
        for c in ratios:
            if "duckdb" in runners:
                x = med[(name, c)] / med[(name, "duckdb")]
                ratios[c].append(x)
                rcells.append(f"{x:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(rcells) + " |")
    if "duckdb" in runners:
        print()
        for c, xs in ratios.items():
            print(f"- {c} / duckdb: median {statistics.median(xs):.2f}, max {max(xs):.2f}, "
                  f"queries worse than 2x: {sum(x > 2 for x in xs)}")
    print("\n### Answers (rows, first row) per side\n")
    for name, _, _ in queries:
        print(f"- {name}")
        for c in cols:
            rows, first = answers[(name, c)]
            print(f"  - {c}: {rows} rows; {first[:160]}")

    if a.no_transfer or "inproc" not in runners or "flight" not in runners:
        return
    print(f"\n### Transfer: median of {a.rounds} interleaved rounds (after a warm-up)\n")
    print("| query | in process | Flight SQL (ADBC, Arrow) | Flight / in process |")
    print("|---|---|---|---|")
    for name, sql in TRANSFER:
        t_in, t_fl = [], []
        for r in range(a.rounds + 1):
            took_in, rows_in, _ = runners["inproc"].run(sql)
            took_fl, rows_fl, _ = runners["flight"].run(sql)
            assert rows_in == rows_fl == 1_000_000, (rows_in, rows_fl)
            print(f"round {r} {name}: in process {took_in:.3f} s, Flight {took_fl:.3f} s", file=sys.stderr, flush=True)
            if r:
                t_in.append(took_in)
                t_fl.append(took_fl)
        m_in, m_fl = statistics.median(t_in), statistics.median(t_fl)
        print(f"| {name} | {m_in:.3f} s | {m_fl:.3f} s | {m_fl / m_in:.2f} |")


if __name__ == "__main__":
    main()
