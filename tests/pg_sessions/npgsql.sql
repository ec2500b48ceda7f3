# Npgsql 4.0.10 (the version Power BI Desktop ships, built from its source) on .NET Core
# 3.1.23, recorded 2026-12-02 from a real session:
#   python tests/python/npgsql_browse.py browse NPGSQL_DIR DOTNET_ROOT HOST PORT patient pat-1
# (pythonnet 3.2.1 loads the driver: connect, GetSchema("Databases"), ("Schemata"),
# ("Tables"), ("Views"), ("Columns") for fhir.patient and for all, ("Indexes"),
# ("IndexColumns"), ("PrimaryKey"), ("ForeignKeys"), ("ConstraintColumns"), then an
# NpgsqlCommand with a parameter; its docstring says where the runtime and the driver came
# from) against `medlake serve --pg-listen` with MEDLAKE_LOG=medlake::server::pgwire=debug
# NO_COLOR=1, turned into this file by tests/python/pg_record.py with --name for the
# entries tests/tests/postgres_wire.rs checks. Npgsql 4.0 loads its types at connect with
# three extended-protocol statements (types, composite fields, enum labels), where later
# versions send one Query message (see npgsql_source.sql).
# Format: '@@ simple' (one Query message), '@@ extended {types, params}' (Parse/Bind/Execute).
@@ extended {"types": [], "params": [], "name": "load_types"}

/*** Load all supported types ***/
SELECT ns.nspname, a.typname, a.oid, a.typrelid, a.typbasetype,
CASE WHEN pg_proc.proname='array_recv' THEN 'a' ELSE a.typtype END AS type,
CASE
  WHEN pg_proc.proname='array_recv' THEN a.typelem
  WHEN a.typtype='r' THEN rngsubtype
  ELSE 0
END AS elemoid,
CASE
  WHEN pg_proc.proname IN ('array_recv','oidvectorrecv') THEN 3    /* Arrays last */
  WHEN a.typtype='r' THEN 2                                        /* Ranges before */
  WHEN a.typtype='d' THEN 1                                        /* Domains before */
  ELSE 0                                                           /* Base types first */
END AS ord
FROM pg_type AS a
JOIN pg_namespace AS ns ON (ns.oid = a.typnamespace)
JOIN pg_proc ON pg_proc.oid = a.typreceive
LEFT OUTER JOIN pg_class AS cls ON (cls.oid = a.typrelid)
LEFT OUTER JOIN pg_type AS b ON (b.oid = a.typelem)
LEFT OUTER JOIN pg_class AS elemcls ON (elemcls.oid = b.typrelid)
LEFT OUTER JOIN pg_range ON (pg_range.rngtypid = a.oid) 
WHERE
  a.typtype IN ('b', 'r', 'e', 'd') OR         /* Base, range, enum, domain */
  (a.typtype = 'c' AND cls.relkind='c') OR /* User-defined free-standing composites (not table composites) by default */
  (pg_proc.proname='array_recv' AND (
    b.typtype IN ('b', 'r', 'e', 'd') OR       /* Array of base, range, enum, domain */
    (b.typtype = 'p' AND b.typname IN ('record', 'void')) OR /* Arrays of special supported pseudo-types */
    (b.typtype = 'c' AND elemcls.relkind='c')  /* Array of user-defined free-standing composites (not table composites) */
  )) OR
  (a.typtype = 'p' AND a.typname IN ('record', 'void'))  /* Some special supported pseudo-types */
ORDER BY ord
@@ extended {"types": [], "params": [], "name": "load_composites"}
/*** Load field definitions for (free-standing) composite types ***/
SELECT typ.oid, att.attname, att.atttypid
FROM pg_type AS typ
JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace)
JOIN pg_class AS cls ON (cls.oid = typ.typrelid)
JOIN pg_attribute AS att ON (att.attrelid = typ.typrelid)
WHERE
  (typ.typtype = 'c' AND cls.relkind='c') AND
  attnum > 0 AND     /* Don't load system attributes */
  NOT attisdropped
ORDER BY typ.oid, att.attnum
@@ extended {"types": [], "params": [], "name": "load_enums"}
/*** Load enum fields ***/
SELECT pg_type.oid, enumlabel
FROM pg_enum
JOIN pg_type ON pg_type.oid=enumtypid
ORDER BY oid, enumsortorder
@@ extended {"types": [], "params": [], "name": "databases"}
SELECT d.datname AS database_name, u.usename AS owner, pg_catalog.pg_encoding_to_char(d.encoding) AS encoding FROM pg_catalog.pg_database d LEFT JOIN pg_catalog.pg_user u ON d.datdba = u.usesysid
@@ extended {"types": [], "params": [], "name": "schemata"}
select * from(
    select current_database() as catalog_name,
        nspname AS schema_name,
        r.rolname AS schema_owner
    from
        pg_catalog.pg_namespace left join pg_catalog.pg_roles r on r.oid = nspowner
    ) tmp
@@ extended {"types": [], "params": [], "name": "tables"}

SELECT table_catalog, table_schema, table_name, table_type
FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
@@ extended {"types": [], "params": [], "name": "views"}

SELECT table_catalog, table_schema, table_name, check_option, is_updatable
FROM information_schema.views
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
@@ extended {"types": [25, 25], "params": ["fhir", "patient"], "name": "columns_patient"}
SELECT table_catalog, table_schema, table_name, column_name, ordinal_position, column_default, is_nullable, udt_name AS data_type, character_maximum_length, character_octet_length, numeric_precision, numeric_precision_radix, numeric_scale, datetime_precision, character_set_catalog, character_set_schema, character_set_name, collation_catalog FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2
@@ extended {"types": [], "params": [], "name": "columns_all"}
SELECT table_catalog, table_schema, table_name, column_name, ordinal_position, column_default, is_nullable, udt_name AS data_type, character_maximum_length, character_octet_length, numeric_precision, numeric_precision_radix, numeric_scale, datetime_precision, character_set_catalog, character_set_schema, character_set_name, collation_catalog FROM information_schema.columns
@@ extended {"types": [], "params": [], "name": "indexes"}
select current_database() as table_catalog,
    n.nspname as table_schema,
    t.relname as table_name,
    i.relname as index_name
from
    pg_catalog.pg_class i join
    pg_catalog.pg_index ix ON ix.indexrelid = i.oid join
    pg_catalog.pg_class t ON ix.indrelid = t.oid join
    pg_attribute a on t.oid = a.attrelid left join
    pg_catalog.pg_user u ON u.usesysid = i.relowner left join
    pg_catalog.pg_namespace n ON n.oid = i.relnamespace
where
    i.relkind = 'i'
    and n.nspname not in ('pg_catalog', 'pg_toast')
    and a.attnum = ANY(ix.indkey)
    and t.relkind = 'r'
@@ extended {"types": [], "params": [], "name": "index_columns"}
select current_database() as table_catalog,
    n.nspname as table_schema,
    t.relname as table_name,
    i.relname as index_name,
    a.attname as column_name
from
    pg_class t join
    pg_index ix on t.oid = ix.indrelid join
    pg_class i on ix.indexrelid = i.oid join
    pg_attribute a on t.oid = a.attrelid left join
    pg_namespace n on i.relnamespace = n.oid
where
    i.relkind = 'i'
    and n.nspname not in ('pg_catalog', 'pg_toast')
    and pg_catalog.pg_table_is_visible(i.oid)
    and a.attnum = ANY(ix.indkey)
    and t.relkind = 'r'
@@ extended {"types": [], "params": [], "name": "primary_key"}
select
  current_database() as "CONSTRAINT_CATALOG",
  pgn.nspname as "CONSTRAINT_SCHEMA",
  pgc.conname as "CONSTRAINT_NAME",
  current_database() as "TABLE_CATALOG",
  pgtn.nspname as "TABLE_SCHEMA",
  pgt.relname as "TABLE_NAME",
  "CONSTRAINT_TYPE",
  pgc.condeferrable as "IS_DEFERRABLE",
  pgc.condeferred as "INITIALLY_DEFERRED"
from pg_catalog.pg_constraint pgc
inner join pg_catalog.pg_namespace pgn on pgc.connamespace = pgn.oid
inner join pg_catalog.pg_class pgt on pgc.conrelid = pgt.oid
inner join pg_catalog.pg_namespace pgtn on pgt.relnamespace = pgtn.oid
inner join (
select 'PRIMARY KEY' as "CONSTRAINT_TYPE", 'p' as "contype" union all
select 'FOREIGN KEY' as "CONSTRAINT_TYPE", 'f' as "contype" union all
select 'UNIQUE KEY' as "CONSTRAINT_TYPE", 'u' as "contype"
) mapping_table on mapping_table.contype = pgc.contype and pgc.contype='p'
@@ extended {"types": [], "params": [], "name": "foreign_keys"}
select
  current_database() as "CONSTRAINT_CATALOG",
  pgn.nspname as "CONSTRAINT_SCHEMA",
  pgc.conname as "CONSTRAINT_NAME",
  current_database() as "TABLE_CATALOG",
  pgtn.nspname as "TABLE_SCHEMA",
  pgt.relname as "TABLE_NAME",
  "CONSTRAINT_TYPE",
  pgc.condeferrable as "IS_DEFERRABLE",
  pgc.condeferred as "INITIALLY_DEFERRED"
from pg_catalog.pg_constraint pgc
inner join pg_catalog.pg_namespace pgn on pgc.connamespace = pgn.oid
inner join pg_catalog.pg_class pgt on pgc.conrelid = pgt.oid
inner join pg_catalog.pg_namespace pgtn on pgt.relnamespace = pgtn.oid
inner join (
select 'PRIMARY KEY' as "CONSTRAINT_TYPE", 'p' as "contype" union all
select 'FOREIGN KEY' as "CONSTRAINT_TYPE", 'f' as "contype" union all
select 'UNIQUE KEY' as "CONSTRAINT_TYPE", 'u' as "contype"
) mapping_table on mapping_table.contype = pgc.contype and pgc.contype='f'
@@ extended {"types": [], "params": [], "name": "constraint_columns"}
select current_database() as constraint_catalog,
    n.nspname as constraint_schema,
    c.conname as constraint_name,
    current_database() as table_catalog,
    n.nspname as table_schema,
    t.relname as table_name,
    a.attname as column_name,
    a.attnum as ordinal_number,
    mapping_table.constraint_type
from pg_constraint c
inner join pg_namespace n on n.oid = c.connamespace
inner join pg_class t on t.oid = c.conrelid and t.relkind = 'r'
inner join pg_attribute a on t.oid = a.attrelid and a.attnum = ANY(c.conkey)
inner join (
select 'PRIMARY KEY' as constraint_type, 'p' as contype union all
select 'FOREIGN KEY' as constraint_type, 'f' as contype union all
select 'UNIQUE KEY' as constraint_type, 'u' as contype
) mapping_table on mapping_table.contype = c.contype
and n.nspname not in ('pg_catalog', 'pg_toast')
@@ extended {"types": [25], "params": ["pat-1"], "name": "patient_row"}
SELECT id, version_id, last_updated FROM fhir.patient WHERE id = $1 ORDER BY id
