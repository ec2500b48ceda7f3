# SQLAlchemy 2.1.9 (postgresql+psycopg dialect) with pandas 3.1.1, recorded 2026-12-01
# from a real session:
#   tests/python/pg_clients.py sqlalchemy postgresql+psycopg://tester@HOST:PORT/medlake pat-1
# (pandas.read_sql, inspect(engine).get_schema_names(), get_table_names(schema=...),
# get_view_names(schema=...)) against `medlake serve --pg-listen` with
# MEDLAKE_LOG=medlake::server::pgwire=debug NO_COLOR=1, turned into this file by
# tests/python/pg_record.py. The statement of inspector.get_columns() is left out: DataFusion
# cannot plan it yet (its identity subquery selects a column of the outer row).
# Format: '@@ simple' (one Query message), '@@ extended {types, params}' (Parse/Bind/Execute).
@@ simple
BEGIN
@@ simple
select pg_catalog.version()
@@ simple
select current_schema()
@@ simple
show transaction isolation level
@@ simple
show standard_conforming_strings
@@ simple
SAVEPOINT "_pg3_1"
@@ extended {"types": [0], "params": ["hstore"]}
SELECT
    typname AS name, oid, typarray AS array_oid,
    oid::regtype::text AS regtype, typdelim AS delimiter
FROM pg_type t
WHERE t.oid = to_regtype($1)
ORDER BY t.oid

@@ simple
RELEASE "_pg3_1"
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0], "params": ["pat-1"]}
SELECT id, version_id, last_updated FROM fhir.patient WHERE id = $1
@@ simple
SELECT id, resource FROM fhir.patient ORDER BY id
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0], "params": ["pg/_"]}
SELECT pg_catalog.pg_namespace.nspname 
FROM pg_catalog.pg_namespace 
WHERE (pg_catalog.pg_namespace.nspname NOT LIKE $1::VARCHAR || '%' ESCAPE '/') ORDER BY pg_catalog.pg_namespace.nspname
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0, 0, 0, 0], "params": ["r", "p", "t", "fhir"]}
SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR, $2::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $3::VARCHAR AND pg_catalog.pg_namespace.nspname = $4::VARCHAR
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0, 0, 0], "params": ["v", "t", "fhir"]}
SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $2::VARCHAR AND pg_catalog.pg_namespace.nspname = $3::VARCHAR
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0, 0, 0, 0], "params": ["r", "p", "t", "fhir_history"]}
SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR, $2::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $3::VARCHAR AND pg_catalog.pg_namespace.nspname = $4::VARCHAR
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0, 0, 0], "params": ["v", "t", "fhir_history"]}
SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $2::VARCHAR AND pg_catalog.pg_namespace.nspname = $3::VARCHAR
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0, 0, 0, 0], "params": ["r", "p", "t", "medlake"]}
SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR, $2::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $3::VARCHAR AND pg_catalog.pg_namespace.nspname = $4::VARCHAR
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ extended {"types": [0, 0, 0], "params": ["v", "t", "medlake"]}
SELECT pg_catalog.pg_class.relname 
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace 
WHERE pg_catalog.pg_class.relkind = ANY (ARRAY[$1::VARCHAR]) AND pg_catalog.pg_class.relpersistence != $2::VARCHAR AND pg_catalog.pg_namespace.nspname = $3::VARCHAR
@@ simple
ROLLBACK
@@ simple
BEGIN
@@ simple
ROLLBACK
