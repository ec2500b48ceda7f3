"""DuckDB's side of `medlake-bench-analytics --features benches/analytics/features.toml`:
the same point-in-time features over the Parquet files that the Delta logs list, written
as DuckDB SQL the way medlake plans them (per patient and resource, the newest version
recorded by the index time, not a delete, whose subject is the patient; then clinical
time in the window). Median of 5 after a warm-up, on 2 threads, and the same checksums
as the Rust side prints, to show both computed the same thing.

Usage: python duckdb_features.py <lake folder>/<workspace> [rounds, 5] [patients, 10000]
(needs duckdb, deltalake). The cohort is the first `patients` current Patients by id, as
features.toml's cohort query takes them.
"""
import statistics
import sys
import time

import duckdb
from deltalake import DeltaTable

workspace = sys.argv[1].rstrip("/")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
PATIENTS = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
INDEX = "TIMESTAMPTZ '2027-01-01 00:00:00+00'"
WINDOW = "INTERVAL 730 DAY"
con = duckdb.connect()
con.execute("SET threads=2")
con.execute("SET TimeZone='UTC'")
for t in ["patient", "observation", "condition", "medicationrequest", "encounter"]:
    files = DeltaTable(f"{workspace}/fhir/{t}").file_uris()
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet({files!r})")


def known(t):
    subject = "json_extract_string({r}, '$.subject.reference') = 'Patient/' || {p}"
    return f"""(SELECT patient_id, index_time, id, resource FROM (
        SELECT k.patient_id, k.index_time, h.id, h.deleted, h.resource,
          row_number() OVER (PARTITION BY k.patient_id, k.index_time, h.id ORDER BY h.version_id DESC) AS rn
        FROM (SELECT DISTINCT h.id, c.patient_id, c.index_time FROM {t} h JOIN cohort c
              ON {subject.format(r='h.resource', p='c.patient_id')}
              WHERE h.last_updated <= c.index_time) k
        JOIN {t} h ON h.id = k.id WHERE h.last_updated <= k.index_time)
      WHERE rn = 1 AND NOT deleted AND {subject.format(r='resource', p='patient_id')})"""


def has_code(code):
    return (f"list_contains(json_extract_string(resource, '$.code.coding[*].code'), '{code}')")


def value_of(code):
    """medlake's fhir_value_of: the valueQuantity of an Observation coded so, else of its
    first component coded so (a blood pressure panel carries systolic as a component)."""
    own = (f"CASE WHEN {has_code(code)} "
           "THEN TRY_CAST(json_extract(resource, '$.valueQuantity.value') AS DOUBLE) END")
    part = ("list_first(list_filter(list_transform(json_extract(resource, '$.component[*]'), "
            f"lambda c: CASE WHEN list_contains(json_extract_string(c, '$.code.coding[*].code'), '{code}') "
            "THEN TRY_CAST(json_extract(c, '$.valueQuantity.value') AS DOUBLE) END), lambda x: x IS NOT NULL))")
    return f"coalesce({own}, {part})"


def in_window(at):
    return f"({at} <= index_time AND {at} > index_time - {WINDOW})"


query = f"""
WITH cohort AS (SELECT id AS patient_id, {INDEX} AS index_time FROM (
        SELECT id, arg_max(deleted, version_id) AS deleted FROM patient GROUP BY id) WHERE NOT deleted
        ORDER BY id LIMIT {PATIENTS}),
obs AS (SELECT patient_id, index_time, id, {value_of('4548-4')} AS a1c, {value_of('8480-6')} AS sbp,
          TRY_CAST(coalesce(json_extract_string(resource, '$.effectiveDateTime'),
                            json_extract_string(resource, '$.effectivePeriod.start')) AS TIMESTAMPTZ) AS clinical_at
        FROM {known('observation')}
        WHERE coalesce(json_extract_string(resource, '$.status'), '') NOT IN ('entered-in-error', 'cancelled')),
o AS (SELECT patient_id, index_time,
        arg_max(a1c, clinical_at) FILTER (WHERE a1c IS NOT NULL AND {in_window('clinical_at')}) AS hba1c_last,
        min(a1c) FILTER (WHERE a1c IS NOT NULL AND {in_window('clinical_at')}) AS hba1c_min,
        max(a1c) FILTER (WHERE a1c IS NOT NULL AND {in_window('clinical_at')}) AS hba1c_max,
        avg(a1c) FILTER (WHERE a1c IS NOT NULL AND {in_window('clinical_at')}) AS hba1c_mean,
        count(*) FILTER (WHERE a1c IS NOT NULL AND {in_window('clinical_at')}) AS hba1c_count,
        avg(sbp) FILTER (WHERE sbp IS NOT NULL AND {in_window('clinical_at')}) AS systolic_mean,
        count(*) FILTER (WHERE sbp IS NOT NULL AND {in_window('clinical_at')}) AS systolic_count
      FROM obs WHERE a1c IS NOT NULL OR sbp IS NOT NULL GROUP BY ALL),
cond AS (SELECT patient_id, index_time, max(CASE WHEN {has_code('44054006')} AND TRY_CAST(coalesce(
          json_extract_string(resource, '$.onsetDateTime'), json_extract_string(resource, '$.recordedDate'))
          AS TIMESTAMPTZ) <= index_time THEN 1 ELSE 0 END) AS diabetes
      FROM {known('condition')} GROUP BY ALL),
med AS (SELECT patient_id, index_time, count(*) FILTER (WHERE {in_window("TRY_CAST(json_extract_string(resource, '$.authoredOn') AS TIMESTAMPTZ)")}) AS n
      FROM {known('medicationrequest')} GROUP BY ALL),
enc AS (SELECT patient_id, index_time, count(*) FILTER (WHERE {in_window("TRY_CAST(json_extract_string(resource, '$.period.start') AS TIMESTAMPTZ)")}) AS n
      FROM {known('encounter')} GROUP BY ALL)
SELECT count(*) AS rows, sum(coalesce(o.hba1c_count, 0)) AS hba1c_count,
       round(sum(o.hba1c_last), 3) AS hba1c_last_sum, sum(coalesce(o.systolic_count, 0)) AS systolic_count,
       sum(coalesce(cond.diabetes, 0)) AS diabetes, sum(coalesce(med.n, 0)) AS med_count,
       sum(coalesce(enc.n, 0)) AS enc_count
FROM cohort c
LEFT JOIN o USING (patient_id, index_time) LEFT JOIN cond USING (patient_id, index_time)
LEFT JOIN med USING (patient_id, index_time) LEFT JOIN enc USING (patient_id, index_time)
"""
times = []
for i in range(ROUNDS + 1):
    t = time.perf_counter()
    row = con.execute(query).fetchone()
    if i:
        times.append(time.perf_counter() - t)
print(f"DuckDB features: median of {ROUNDS} {statistics.median(times):.3f} s")
print("checksums: rows={} hba1c_count={} hba1c_last_sum={} systolic_count={} diabetes={} "
      "med_count={} enc_count={}".format(*row))
