# psycopg 3.3.9 (psycopg[binary], libpq), recorded 2026-12-01 from a real session:
#   tests/python/pg_clients.py psycopg 'host=HOST port=PORT user=tester dbname=medlake' pat-1
# against `medlake serve --pg-listen` with MEDLAKE_LOG=medlake::server::pgwire=debug NO_COLOR=1,
# turned into this file by tests/python/pg_record.py. The writes it sends are meant to be
# refused (25006). It opens a second connection for the per-connection SET check; both
# connections' statements are here, in the order the server received them.
# Format: '@@ simple' (one Query message), '@@ extended {types, params}' (Parse/Bind/Execute).
@@ extended {"types": [0], "params": ["pat-1"]}
SELECT id, version_id, last_updated, resource FROM fhir.patient WHERE id = $1
@@ extended {"types": [0], "params": ["pat-1"]}
SELECT CAST(7 AS INT) AS i, CAST(8 AS BIGINT) AS b, CAST(1.5 AS DOUBLE) AS f, CAST(12.34 AS DECIMAL(10,2)) AS n, true AS t, DATE '2024-02-29' AS d, json_get_str(resource, 'resourceType') AS rt, json_get_json(resource, 'name') AS j FROM fhir.patient WHERE id = $1
@@ extended {"types": [21], "params": ["1"]}
SELECT count(*) FROM fhir.patient WHERE version_id >= $1
@@ simple
SELECT count(*) FROM fhir.patient WHERE id = 'pat-1'
@@ simple
INSERT INTO fhir.patient (id) VALUES ('x')
@@ simple
CREATE TABLE t (a int)
@@ simple
DELETE FROM fhir.patient
@@ simple
DROP TABLE fhir.patient
@@ simple
SELECT 1 + 1
@@ simple
BEGIN
@@ simple
SELECT count(*) FROM fhir.patient
@@ simple
COMMIT
@@ simple
BEGIN
@@ simple
UPDATE fhir.patient SET id = 'y'
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ simple
SELECT 2 + 2
@@ simple
COMMIT
@@ simple
SHOW search_path
@@ simple
SELECT current_schema()
@@ simple
SELECT version()
@@ simple
SET application_name = 'first'
@@ simple
SET application_name = 'second'
@@ simple
SELECT current_setting('application_name')
@@ simple
SELECT current_setting('application_name')
@@ simple
SHOW application_name
