//! `pg_catalog` as datafusion-pg-catalog builds it, with the few tables where it departs
//! from Postgres in a way clients notice corrected.
//!
//! datafusion-pg-catalog ships Postgres's own catalog rows (exported from a real server)
//! and builds the tables that describe the session's objects (`pg_class`, `pg_attribute`,
//! ...). These things in it break clients that join the catalog the way Postgres allows:
//!
//! - the `regproc` columns of `pg_type` (`typinput`, `typreceive`, ...) and `pg_range`
//!   hold the function's name, where Postgres stores the function's oid (and only
//!   *displays* the name). Npgsql loads its types at connect with
//!   `LEFT JOIN pg_proc ON pg_proc.oid = pg_type.typreceive` to tell arrays apart, which
//!   cannot join a name to an oid. Here they hold the oid, resolved against the same
//!   `pg_proc` rows, `-` (no function) being 0 as in Postgres; a
//!   `'array_in'::regproc` cast resolves to the oid (datafusion-pg-catalog's rewrite), so
//!   comparing a column with one works too. What is lost is the display: selecting
//!   `typinput` shows the number, where Postgres shows the name.
//! - `pg_index`'s vector columns (`indkey` and `indoption`, Postgres's `int2vector`;
//!   `indclass` and `indcollation`, `oidvector`) hold their text form (`1 2`), which
//!   nothing can `unnest`. SQLAlchemy's `get_pk_constraint()`, `get_indexes()` and
//!   `get_unique_constraints()` unnest `indkey` and `indclass` to pair each indexed column
//!   with its operator class. Here they are arrays of the numbers the text lists. Postgres
//!   counts a vector's subscripts from 0, an array's from 1; Arrow lists have no lower
//!   bound, so `generate_subscripts` over one counts from 1 (clients order by it).
//! - `pg_constraint`'s array columns (`conkey`, `confkey` and `confdelsetcols`, `int2[]`;
//!   `conpfeqop`, `conppeqop`, `conffeqop` and `conexclop`, `oid[]`) hold text too
//!   (`[1, 2]`), so Npgsql's `GetSchema("ConstraintColumns")`, which joins
//!   `a.attnum = ANY(c.conkey)`, fails to plan. Here they are arrays of the numbers, as
//!   `pg_index`'s vectors are.
//! - `pg_class` lacks `relacl` and `reloptions`, which SQLAlchemy's `get_indexes()`
//!   selects. Here they are there, NULL, as Postgres has them for a relation with the
//!   default privileges and no storage options (which every relation here is).
//! - there is no `pg_user` (Npgsql's `GetSchema("Databases")` joins `pg_database` to
//!   it). Postgres defines it as the roles of `pg_authid` that can log in, with the
//!   password hidden; so it is here, over the same `pg_authid` rows.
//!
//! Every other table is datafusion-pg-catalog's, unchanged. The corrected tables are built
//! once per process: they come from the catalog rows compiled into that crate, not from
//! the lake.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_field::{kind, oid_field};

pub const NAME: &str = "pg_catalog";

/// The tables this module answers in place of (or beside) datafusion-pg-catalog's.
const PG_TYPE: &str = "pg_type";
const PG_RANGE: &str = "pg_range";
const PG_USER: &str = "pg_user";
const PG_INDEX: &str = "pg_index";
const PG_CLASS: &str = "pg_class";
const PG_CONSTRAINT: &str = "pg_constraint";

/// Postgres's `pg_class` columns that datafusion-pg-catalog's lacks (`aclitem[]` and
/// `text[]`, both NULL here).
const PG_CLASS_MISSING: &[&str] = &["relacl", "reloptions"];

/// `pg_index`'s `int2vector` and `oidvector` columns and `pg_constraint`'s `int2[]` and
/// `oid[]` ones, by table: text in the shipped rows, arrays here.
const NUMBER_LIST_COLUMNS: &[(&str, &[(&str, VectorOf)])] = &[
    (
        PG_INDEX,
        &[
            ("indkey", VectorOf::Int2),
            ("indcollation", VectorOf::Oid),
            ("indclass", VectorOf::Oid),
            ("indoption", VectorOf::Int2),
        ],
    ),
    (
        PG_CONSTRAINT,
        &[
            ("conkey", VectorOf::Int2),
            ("confkey", VectorOf::Int2),
            ("conpfeqop", VectorOf::Oid),
            ("conppeqop", VectorOf::Oid),
            ("conffeqop", VectorOf::Oid),
            ("confdelsetcols", VectorOf::Int2),
            ("conexclop", VectorOf::Oid),
        ],
    ),
];

#[derive(Clone, Copy)]
enum VectorOf {
    Int2,
    Oid,
}

/// The `regproc` columns, by table: function names in the shipped rows, oids here.
const REGPROC_COLUMNS: &[(&str, &[&str])] = &[
    (
        PG_TYPE,
        &[
            "typsubscript",
            "typinput",
            "typoutput",
            "typreceive",
            "typsend",
            "typmodin",
            "typmodout",
            "typanalyze",
        ],
    ),
    (PG_RANGE, &["rngcanonical", "rngsubdiff"]),
];

/// The corrected tables, built from the rows compiled into datafusion-pg-catalog.
struct Corrected {
    pg_type: RecordBatch,
    pg_range: RecordBatch,
    pg_user: RecordBatch,
    pg_index: RecordBatch,
    pg_constraint: RecordBatch,
}

static CORRECTED: LazyLock<std::result::Result<Corrected, String>> = LazyLock::new(|| {
    let tables = PgCatalogStaticTables::try_new().map_err(|e| e.to_string())?;
    let build = || -> Result<Corrected> {
        let procs = ProcOids::new(&concat(tables.pg_proc.schema(), tables.pg_proc.data())?)?;
        Ok(Corrected {
            pg_type: with_regproc_oids(
                &concat(tables.pg_type.schema(), tables.pg_type.data())?,
                PG_TYPE,
                &procs,
            )?,
            pg_range: with_regproc_oids(
                &concat(tables.pg_range.schema(), tables.pg_range.data())?,
                PG_RANGE,
                &procs,
            )?,
            pg_user: pg_user(&concat(tables.pg_authid.schema(), tables.pg_authid.data())?)?,
            pg_index: with_number_lists(
                &concat(tables.pg_index.schema(), tables.pg_index.data())?,
                PG_INDEX,
            )?,
            pg_constraint: with_number_lists(
                &concat(tables.pg_constraint.schema(), tables.pg_constraint.data())?,
                PG_CONSTRAINT,
            )?,
        })
    };
    build().map_err(|e| e.to_string())
});

fn concat(schema: SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch> {
    Ok(datafusion::arrow::compute::concat_batches(
        &schema, batches,
    )?)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            DataFusionError::Internal(format!(
                "datafusion-pg-catalog's rows lack the column {name} of the expected type"
            ))
        })
}

/// `pg_proc`'s oids by function name. A `regproc` value names a function without its
/// arguments, which Postgres only does for a name no other function has, so a name
/// maps to one oid.
struct ProcOids(std::collections::HashMap<String, i32>);

impl ProcOids {
    fn new(pg_proc: &RecordBatch) -> Result<ProcOids> {
        let oids = column::<Int32Array>(pg_proc, "oid")?;
        let names = column::<StringArray>(pg_proc, "proname")?;
        let mut by_name = std::collections::HashMap::new();
        for i in 0..pg_proc.num_rows() {
            if oids.is_valid(i) && names.is_valid(i) {
                by_name
                    .entry(names.value(i).to_string())
                    .and_modify(|o: &mut i32| *o = (*o).min(oids.value(i)))
                    .or_insert(oids.value(i));
            }
        }
        Ok(ProcOids(by_name))
    }

    /// The oid of a `regproc` as Postgres prints it: `-` is no function (0); a name may
    /// be schema-qualified.
    fn resolve(&self, name: &str) -> Option<i32> {
        if name == "-" {
            return Some(0);
        }
        let bare = name.rsplit('.').next().unwrap_or(name).trim_matches('"');
        self.0.get(bare).copied()
    }
}

/// `batch` with its `regproc` columns as oids (`Int32` marked `regproc`, as
/// datafusion-pg-catalog marks its oid columns). A name that names no function in
/// `pg_proc` becomes NULL rather than a made-up oid.
fn with_regproc_oids(batch: &RecordBatch, table: &str, procs: &ProcOids) -> Result<RecordBatch> {
    let regproc: &[&str] = REGPROC_COLUMNS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .unwrap_or(&[]);
    replace_columns(batch, |field, array| {
        if !regproc.contains(&field.name().as_str()) {
            return Ok(None);
        }
        let Some(names) = array.as_any().downcast_ref::<StringArray>() else {
            return Ok(None);
        };
        let oids: Int32Array = names
            .iter()
            .map(|n| n.and_then(|n| procs.resolve(n)))
            .collect();
        Ok(Some((
            oid_field(field.name(), kind::REGPROC, true),
            Arc::new(oids) as ArrayRef,
        )))
    })
}

/// `batch` (of `table`) with its vector and array columns as arrays: `"1 2"` (a
/// vector's text) and `"[1, 2]"` (how the shipped rows write an array) become `[1, 2]`
/// (`Int16` for `int2`, `Int32` for `oid`, as the other oid columns are).
fn with_number_lists(batch: &RecordBatch, table: &str) -> Result<RecordBatch> {
    let lists: &[(&str, VectorOf)] = NUMBER_LIST_COLUMNS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .unwrap_or(&[]);
    replace_columns(batch, |field, array| {
        let vector = lists
            .iter()
            .find(|(name, _)| name == field.name())
            .map(|(_, of)| *of);
        let (Some(of), Some(texts)) = (vector, array.as_any().downcast_ref::<StringArray>()) else {
            return Ok(None);
        };
        let (item, list) = vector_array(texts, of, &format!("{table}.{}", field.name()))?;
        Ok(Some((
            Field::new(field.name(), DataType::List(Arc::new(item)), true),
            list,
        )))
    })
}

/// `batch` with the columns that `replace` gives a new field and array for replaced, and
/// the others kept.
fn replace_columns(
    batch: &RecordBatch,
    mut replace: impl FnMut(&Field, &ArrayRef) -> Result<Option<(Field, ArrayRef)>>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        match replace(field, array)? {
            Some((f, a)) => {
                fields.push(f);
                columns.push(a);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(array.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The arrays of the numbers each text lists; NULL stays NULL.
fn vector_array(texts: &StringArray, of: VectorOf, column: &str) -> Result<(Field, ArrayRef)> {
    use datafusion::arrow::datatypes::{Int16Type, Int32Type};
    let bad =
        |v: &str| DataFusionError::Internal(format!("{column} holds {v:?}, not a list of numbers"));
    let (item, list) = match of {
        VectorOf::Int2 => (
            DataType::Int16,
            number_lists::<Int16Type>(texts, |n| n.parse().ok()).map_err(bad)?,
        ),
        // An oid is unsigned; the oid columns here are Int32.
        VectorOf::Oid => (
            DataType::Int32,
            number_lists::<Int32Type>(texts, |n| n.parse::<u32>().ok().map(|o| o as i32))
                .map_err(bad)?,
        ),
    };
    Ok((Field::new("item", item, true), list))
}

/// One list per text of the numbers `parse` reads from its words (separated by spaces or
/// commas, within optional brackets or braces), or the first text with a word it cannot
/// read.
fn number_lists<'t, T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    texts: &'t StringArray,
    parse: impl Fn(&str) -> Option<T::Native>,
) -> std::result::Result<ArrayRef, &'t str> {
    use datafusion::arrow::array::{ListBuilder, PrimitiveBuilder};
    let mut list = ListBuilder::new(PrimitiveBuilder::<T>::new());
    for text in texts.iter() {
        match text {
            Some(text) => {
                let inner = text
                    .trim()
                    .trim_start_matches(['[', '{'])
                    .trim_end_matches([']', '}']);
                for n in inner
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|n| !n.is_empty())
                {
                    list.values().append_value(parse(n).ok_or(text)?);
                }
                list.append(true);
            }
            None => list.append(false),
        }
    }
    Ok(Arc::new(list.finish()))
}

/// Postgres's `pg_user` view: the roles that can log in, password hidden.
fn pg_user(pg_authid: &RecordBatch) -> Result<RecordBatch> {
    let login = column::<BooleanArray>(pg_authid, "rolcanlogin")?;
    let roles = filter_record_batch(pg_authid, login)?;
    let n = roles.num_rows();
    let by_name = |name: &str| {
        roles
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| DataFusionError::Internal(format!("pg_authid lacks {name}")))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("usename", DataType::Utf8, true),
        oid_field("usesysid", kind::OID, true),
        Field::new("usecreatedb", DataType::Boolean, true),
        Field::new("usesuper", DataType::Boolean, true),
        Field::new("userepl", DataType::Boolean, true),
        Field::new("usebypassrls", DataType::Boolean, true),
        Field::new("passwd", DataType::Utf8, true),
        Field::new(
            "valuntil",
            by_name("rolvaliduntil")?.data_type().clone(),
            true,
        ),
        Field::new(
            "useconfig",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]));
    let hidden: StringArray = (0..n).map(|_| Some("********")).collect();
    let columns: Vec<ArrayRef> = vec![
        by_name("rolname")?,
        by_name("oid")?,
        by_name("rolcreatedb")?,
        by_name("rolsuper")?,
        by_name("rolreplication")?,
        by_name("rolbypassrls")?,
        Arc::new(hidden),
        by_name("rolvaliduntil")?,
        new_null_array(schema.field(8).data_type(), n),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// `inner` (a table built from the session's objects at each scan) with the text-array
/// columns `missing` appended, NULL in every row.
fn with_null_columns(
    inner: Arc<dyn TableProvider>,
    missing: &[&str],
) -> Result<Arc<dyn TableProvider>> {
    use datafusion::common::ScalarValue;
    use datafusion::datasource::provider_as_source;
    use datafusion::datasource::view::ViewTable;
    use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
    let scan = LogicalPlanBuilder::scan(PG_CLASS, provider_as_source(inner), None)?;
    let mut columns: Vec<Expr> = scan
        .schema()
        .columns()
        .into_iter()
        .filter(|c| !missing.contains(&c.name.as_str()))
        .map(Expr::Column)
        .collect();
    let text_array = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    for name in missing {
        columns.push(lit(ScalarValue::try_from(&text_array)?).alias(*name));
    }
    let plan = scan.project(columns)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// `pg_catalog`: datafusion-pg-catalog's schema with the corrected tables in front.
#[derive(Debug)]
pub struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
}

impl PgCatalog {
    pub fn new(inner: Arc<dyn SchemaProvider>) -> Self {
        PgCatalog { inner }
    }

    fn corrected(name: &str) -> Result<Option<RecordBatch>> {
        let corrected = CORRECTED.as_ref().map_err(|e| {
            DataFusionError::Internal(format!("could not build pg_catalog's tables: {e}"))
        })?;
        Ok(match name {
            PG_TYPE => Some(corrected.pg_type.clone()),
            PG_RANGE => Some(corrected.pg_range.clone()),
            PG_USER => Some(corrected.pg_user.clone()),
            PG_INDEX => Some(corrected.pg_index.clone()),
            PG_CONSTRAINT => Some(corrected.pg_constraint.clone()),
            _ => None,
        })
    }
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        if !names.iter().any(|n| n == PG_USER) {
            names.push(PG_USER.to_string());
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(PG_CLASS) {
            return match self.inner.table(name).await? {
                Some(inner) => Ok(Some(with_null_columns(inner, PG_CLASS_MISSING)?)),
                None => Ok(None),
            };
        }
        match Self::corrected(&name.to_ascii_lowercase())? {
            Some(batch) => Ok(Some(Arc::new(MemTable::try_new(
                batch.schema(),
                vec![vec![batch]],
            )?))),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(PG_USER) || self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
    use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;

    async fn session() -> SessionContext {
        let ctx = SessionContext::new();
        setup_pg_catalog(&ctx, "datafusion", EmptyContextProvider).unwrap();
        let catalog = ctx.catalog("datafusion").unwrap();
        let inner = catalog.schema(NAME).unwrap();
        catalog
            .register_schema(NAME, Arc::new(PgCatalog::new(inner)))
            .unwrap();
        ctx
    }

    async fn strings(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let c = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            out.extend(c.iter().map(|v| v.unwrap_or("NULL").to_string()));
        }
        out
    }

    #[tokio::test]
    async fn regproc_columns_join_pg_proc_by_oid() {
        let ctx = session().await;
        // Arrays are the types whose receive function is array_recv, as Npgsql finds them.
        let arrays = strings(
            &ctx,
            "SELECT t.typname FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_proc p ON p.oid = t.typreceive \
             WHERE p.proname = 'array_recv' AND t.typname IN ('_text', '_int4', 'text') \
             ORDER BY 1",
        )
        .await;
        assert_eq!(arrays, ["_int4", "_text"]);
        let text_recv = strings(
            &ctx,
            "SELECT p.proname FROM pg_catalog.pg_type t \
             JOIN pg_catalog.pg_proc p ON p.oid = t.typreceive WHERE t.typname = 'text'",
        )
        .await;
        assert_eq!(text_recv, ["textrecv"]);
        // No subscript function is 0, as in Postgres.
        let none = strings(
            &ctx,
            "SELECT typsubscript FROM pg_catalog.pg_type WHERE typname = 'int4'",
        )
        .await;
        assert_eq!(none, ["0"]);
        let range = strings(
            &ctx,
            "SELECT p.proname FROM pg_catalog.pg_range r \
             JOIN pg_catalog.pg_proc p ON p.oid = r.rngsubdiff WHERE r.rngtypid = 3904",
        )
        .await;
        assert_eq!(range, ["int4range_subdiff"]);
    }

    #[tokio::test]
    async fn pg_user_lists_the_login_roles_of_pg_authid_without_passwords() {
        let ctx = session().await;
        let users = strings(&ctx, "SELECT usename FROM pg_catalog.pg_user").await;
        let login = strings(
            &ctx,
            "SELECT rolname FROM pg_catalog.pg_authid WHERE rolcanlogin",
        )
        .await;
        assert!(!users.is_empty());
        assert_eq!(users, login);
        let passwords = strings(&ctx, "SELECT DISTINCT passwd FROM pg_catalog.pg_user").await;
        assert_eq!(passwords, ["********"]);
        // pg_database's owner is one of them, as Npgsql's GetSchema("Databases") joins.
        let owners = strings(
            &ctx,
            "SELECT u.usename FROM pg_catalog.pg_database d \
             JOIN pg_catalog.pg_user u ON d.datdba = u.usesysid",
        )
        .await;
        assert!(!owners.is_empty());
    }

    #[tokio::test]
    async fn pg_index_vectors_are_arrays_and_pg_class_has_postgres_columns() {
        let ctx = session().await;
        // The shipped rows' text `"1 2"` as the numbers, in order, which unnest.
        let text = concat(
            PgCatalogStaticTables::try_new().unwrap().pg_index.schema(),
            PgCatalogStaticTables::try_new().unwrap().pg_index.data(),
        )
        .unwrap();
        let keys = column::<StringArray>(&text, "indkey").unwrap();
        let oids = column::<Int32Array>(&text, "indexrelid").unwrap();
        let (oid, key) = (0..text.num_rows())
            .find(|&i| keys.value(i).contains(' '))
            .map(|i| (oids.value(i), keys.value(i).to_string()))
            .expect("an index on several columns");
        let unnested = strings(
            &ctx,
            &format!("SELECT unnest(indkey) FROM pg_catalog.pg_index WHERE indexrelid = {oid}"),
        )
        .await;
        assert_eq!(unnested.join(" "), key);
        let classes = strings(
            &ctx,
            &format!(
                "SELECT CAST(unnest(indclass) AS BIGINT) FROM pg_catalog.pg_index \
                 WHERE indexrelid = {oid}"
            ),
        )
        .await;
        assert_eq!(classes.len(), unnested.len());
        // relacl and reloptions, NULL: default privileges, no options.
        let options = strings(
            &ctx,
            "SELECT DISTINCT CAST(reloptions AS VARCHAR) || CAST(relacl AS VARCHAR) \
             FROM pg_catalog.pg_class",
        )
        .await;
        assert_eq!(options, ["NULL"]);
    }

    #[tokio::test]
    async fn pg_constraint_key_columns_are_arrays_that_any_matches() {
        let ctx = session().await;
        // The shipped rows write an array as `[2, 20, 3]`.
        let text = concat(
            PgCatalogStaticTables::try_new()
                .unwrap()
                .pg_constraint
                .schema(),
            PgCatalogStaticTables::try_new()
                .unwrap()
                .pg_constraint
                .data(),
        )
        .unwrap();
        let keys = column::<StringArray>(&text, "conkey").unwrap();
        let names = column::<StringArray>(&text, "conname").unwrap();
        let (name, key) = (0..text.num_rows())
            .find(|&i| keys.is_valid(i) && keys.value(i).contains(','))
            .map(|i| (names.value(i).to_string(), keys.value(i).to_string()))
            .expect("a constraint on several columns");
        let unnested = strings(
            &ctx,
            &format!(
                "SELECT unnest(conkey) FROM pg_catalog.pg_constraint WHERE conname = '{name}'"
            ),
        )
        .await;
        assert_eq!(format!("[{}]", unnested.join(", ")), key);
        // Npgsql's GetSchema("ConstraintColumns") matches a column number with ANY.
        let second = &unnested[1];
        let matched = strings(
            &ctx,
            &format!(
                "SELECT conname FROM pg_catalog.pg_constraint \
                 WHERE conname = '{name}' AND CAST({second} AS SMALLINT) = ANY(conkey)"
            ),
        )
        .await;
        assert_eq!(matched, [name.clone()]);
        let none = strings(
            &ctx,
            &format!(
                "SELECT conname FROM pg_catalog.pg_constraint \
                 WHERE conname = '{name}' AND CAST(999 AS SMALLINT) = ANY(conkey)"
            ),
        )
        .await;
        assert!(none.is_empty(), "{none:?}");
        // A constraint with no key columns (a domain's check) keeps NULL.
        let nulls = strings(
            &ctx,
            "SELECT count(*) FROM pg_catalog.pg_constraint WHERE conkey IS NULL",
        )
        .await;
        assert_ne!(nulls, ["0"]);
    }
}
