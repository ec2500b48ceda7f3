//! `information_schema` as Postgres shapes it, for the Postgres wire.
//!
//! DataFusion has an `information_schema` of its own, but with its own columns: no
//! `udt_schema`/`udt_name` in `columns`, no `check_option` in `views`, Arrow type names
//! in `data_type`. Clients written for Postgres select those columns by name (Npgsql's
//! `GetSchema("Columns")` joins `udt_name` to `pg_type`), so a Postgres session gets this
//! schema instead: the SQL-standard columns Postgres has, filled from the session's
//! catalog at each scan and typed with the same Arrow-to-Postgres mapping the wire uses
//! for results (arrow-pg), so that a column's `udt_name` is the type its values arrive
//! as. Nothing here is writable: every `is_updatable` is `NO`.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;

pub const NAME: &str = "information_schema";

const TABLES: &[&str] = &["schemata", "tables", "columns", "views"];

/// The schema; it reads the catalog it is registered in, which it must not keep alive.
#[derive(Debug)]
pub struct InformationSchema {
    catalog_name: String,
    catalog: Weak<dyn CatalogProvider>,
}

impl InformationSchema {
    pub fn new(catalog_name: &str, catalog: &Arc<dyn CatalogProvider>) -> Self {
        InformationSchema {
            catalog_name: catalog_name.to_string(),
            catalog: Arc::downgrade(catalog),
        }
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        if !TABLES.contains(&name.as_str()) {
            return Ok(None);
        }
        Ok(Some(Arc::new(InfoTable {
            which: name.clone(),
            schema: table_schema(&name),
            catalog_name: self.catalog_name.clone(),
            catalog: self.catalog.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name.to_ascii_lowercase().as_str())
    }
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}

fn table_schema(which: &str) -> SchemaRef {
    let fields = match which {
        "schemata" => vec![
            text("catalog_name"),
            text("schema_name"),
            text("schema_owner"),
            text("default_character_set_catalog"),
            text("default_character_set_schema"),
            text("default_character_set_name"),
            text("sql_path"),
        ],
        "tables" => vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("table_type"),
            text("self_referencing_column_name"),
            text("reference_generation"),
            text("user_defined_type_catalog"),
            text("user_defined_type_schema"),
            text("user_defined_type_name"),
            text("is_insertable_into"),
            text("is_typed"),
            text("commit_action"),
        ],
        "views" => vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("view_definition"),
            text("check_option"),
            text("is_updatable"),
            text("is_insertable_into"),
            text("is_trigger_updatable"),
            text("is_trigger_deletable"),
            text("is_trigger_insertable_into"),
        ],
        _ => vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            int("ordinal_position"),
            text("column_default"),
            text("is_nullable"),
            text("data_type"),
            int("character_maximum_length"),
            int("character_octet_length"),
            int("numeric_precision"),
            int("numeric_precision_radix"),
            int("numeric_scale"),
            int("datetime_precision"),
            text("interval_type"),
            int("interval_precision"),
            text("character_set_catalog"),
            text("character_set_schema"),
            text("character_set_name"),
            text("collation_catalog"),
            text("collation_schema"),
            text("collation_name"),
            text("domain_catalog"),
            text("domain_schema"),
            text("domain_name"),
            text("udt_catalog"),
            text("udt_schema"),
            text("udt_name"),
            text("dtd_identifier"),
            text("is_self_referencing"),
            text("is_identity"),
            text("is_generated"),
            text("is_updatable"),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// One of the tables, computed when scanned.
#[derive(Debug)]
struct InfoTable {
    which: String,
    schema: SchemaRef,
    catalog_name: String,
    catalog: Weak<dyn CatalogProvider>,
}

/// A table of the catalog, with what a listing needs of it.
struct Listed {
    schema: String,
    name: String,
    kind: TableType,
    columns: Option<SchemaRef>,
}

impl InfoTable {
    async fn list(&self, with_columns: bool) -> Result<Vec<Listed>> {
        let catalog = self
            .catalog
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the session's catalog is gone".into()))?;
        let mut out = Vec::new();
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for schema_name in schemas {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                let Some(table) = schema.table(&name).await? else {
                    continue;
                };
                out.push(Listed {
                    schema: schema_name.clone(),
                    name,
                    kind: table.table_type(),
                    columns: with_columns.then(|| table.schema()),
                });
            }
        }
        Ok(out)
    }

    async fn batch(&self) -> Result<RecordBatch> {
        let cat = self.catalog_name.as_str();
        let n = |v: &[Option<String>]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let columns: Vec<ArrayRef> = match self.which.as_str() {
            "schemata" => {
                let catalog = self.catalog.upgrade().ok_or_else(|| {
                    DataFusionError::Internal("the session's catalog is gone".into())
                })?;
                let mut names = catalog.schema_names();
                names.sort();
                let k = names.len();
                let constant = |v: Option<&str>| n(&vec![v.map(str::to_string); k]);
                vec![
                    constant(Some(cat)),
                    n(&names.into_iter().map(Some).collect::<Vec<_>>()),
                    constant(Some("medlake")),
                    constant(None),
                    constant(None),
                    constant(None),
                    constant(None),
                ]
            }
            "tables" | "views" => {
                let listed: Vec<Listed> = self
                    .list(false)
                    .await?
                    .into_iter()
                    .filter(|t| self.which == "tables" || t.kind == TableType::View)
                    .collect();
                let k = listed.len();
                let constant = |v: Option<&str>| n(&vec![v.map(str::to_string); k]);
                let schemas = n(&listed
                    .iter()
                    .map(|t| Some(t.schema.clone()))
                    .collect::<Vec<_>>());
                let names = n(&listed
                    .iter()
                    .map(|t| Some(t.name.clone()))
                    .collect::<Vec<_>>());
                if self.which == "tables" {
                    let kinds = listed
                        .iter()
                        .map(|t| {
                            Some(match t.kind {
                                TableType::View => "VIEW".to_string(),
                                TableType::Temporary => "LOCAL TEMPORARY".to_string(),
                                TableType::Base => "BASE TABLE".to_string(),
                            })
                        })
                        .collect::<Vec<_>>();
                    vec![
                        constant(Some(cat)),
                        schemas,
                        names,
                        n(&kinds),
                        constant(None),
                        constant(None),
                        constant(None),
                        constant(None),
                        constant(None),
                        constant(Some("NO")),
                        constant(Some("NO")),
                        constant(None),
                    ]
                } else {
                    vec![
                        constant(Some(cat)),
                        schemas,
                        names,
                        constant(None),
                        constant(Some("NONE")),
                        constant(Some("NO")),
                        constant(Some("NO")),
                        constant(Some("NO")),
                        constant(Some("NO")),
                        constant(Some("NO")),
                    ]
                }
            }
            _ => return self.columns_batch().await,
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    async fn columns_batch(&self) -> Result<RecordBatch> {
        let mut rows: Vec<ColumnRow> = Vec::new();
        for t in self.list(true).await? {
            let Some(columns) = &t.columns else { continue };
            for (i, field) in columns.fields().iter().enumerate() {
                rows.push(ColumnRow {
                    schema: t.schema.clone(),
                    table: t.name.clone(),
                    column: field.name().clone(),
                    position: i as i32 + 1,
                    nullable: field.is_nullable(),
                    ty: PgColumnType::of(field.data_type()),
                });
            }
        }
        let k = rows.len();
        let s = |f: &dyn Fn(&ColumnRow) -> Option<String>| {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let i = |f: &dyn Fn(&ColumnRow) -> Option<i32>| {
            Arc::new(Int32Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let none_s = || Arc::new(StringArray::from(vec![None::<String>; k])) as ArrayRef;
        let none_i = || Arc::new(Int32Array::from(vec![None::<i32>; k])) as ArrayRef;
        let cat = self.catalog_name.clone();
        let columns: Vec<ArrayRef> = vec![
            s(&|_| Some(cat.clone())),
            s(&|r| Some(r.schema.clone())),
            s(&|r| Some(r.table.clone())),
            s(&|r| Some(r.column.clone())),
            i(&|r| Some(r.position)),
            none_s(),
            s(&|r| Some(if r.nullable { "YES" } else { "NO" }.to_string())),
            s(&|r| Some(r.ty.data_type.clone())),
            none_i(),
            i(&|r| r.ty.octet_length),
            i(&|r| r.ty.numeric_precision),
            i(&|r| r.ty.numeric_precision.map(|_| r.ty.radix)),
            i(&|r| r.ty.numeric_scale),
            i(&|r| r.ty.datetime_precision),
            none_s(),
            none_i(),
            none_s(),
            none_s(),
            none_s(),
            none_s(),
            none_s(),
            none_s(),
            none_s(),
            none_s(),
            none_s(),
            s(&|_| Some(cat.clone())),
            s(&|_| Some("pg_catalog".to_string())),
            s(&|r| Some(r.ty.udt_name.clone())),
            s(&|r| Some(r.position.to_string())),
            s(&|_| Some("NO".to_string())),
            s(&|_| Some("NO".to_string())),
            s(&|_| Some("NEVER".to_string())),
            s(&|_| Some("NO".to_string())),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

struct ColumnRow {
    schema: String,
    table: String,
    column: String,
    position: i32,
    nullable: bool,
    ty: PgColumnType,
}

/// How `information_schema.columns` describes a column's type.
#[derive(Debug, PartialEq)]
pub struct PgColumnType {
    /// The SQL name (`bigint`, `timestamp with time zone`, `ARRAY`).
    pub data_type: String,
    /// The `pg_type` name (`int8`, `timestamptz`, `_text`).
    pub udt_name: String,
    pub numeric_precision: Option<i32>,
    pub numeric_scale: Option<i32>,
    pub radix: i32,
    pub datetime_precision: Option<i32>,
    pub octet_length: Option<i32>,
}

impl PgColumnType {
    pub fn of(dt: &DataType) -> PgColumnType {
        let udt_name =
            into_pg_type(dt).map_or_else(|_| "text".to_string(), |t| t.name().to_string());
        let data_type = match udt_name.as_str() {
            "int2" => "smallint",
            "int4" => "integer",
            "int8" => "bigint",
            "float4" => "real",
            "float8" => "double precision",
            "bool" => "boolean",
            "varchar" => "character varying",
            "bpchar" => "character",
            "timestamptz" => "timestamp with time zone",
            "timestamp" => "timestamp without time zone",
            "time" => "time without time zone",
            "timetz" => "time with time zone",
            n if n.starts_with('_') => "ARRAY",
            "text" | "date" | "interval" | "numeric" | "bytea" | "json" | "jsonb" | "uuid" => {
                udt_name.as_str()
            }
            _ => "USER-DEFINED",
        }
        .to_string();
        let (numeric_precision, numeric_scale, radix) = match dt {
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => (Some(16), Some(0), 2),
            DataType::Int32 | DataType::UInt16 => (Some(32), Some(0), 2),
            DataType::Int64 | DataType::UInt32 => (Some(64), Some(0), 2),
            DataType::Float16 | DataType::Float32 => (Some(24), None, 2),
            DataType::Float64 => (Some(53), None, 2),
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                (Some(i32::from(*p)), Some(i32::from(*s)), 10)
            }
            _ => (None, None, 10),
        };
        let datetime_precision = match dt {
            DataType::Timestamp(unit, _) | DataType::Time64(unit) | DataType::Time32(unit) => {
                Some(match unit {
                    datafusion::arrow::datatypes::TimeUnit::Second => 0,
                    datafusion::arrow::datatypes::TimeUnit::Millisecond => 3,
                    _ => 6,
                })
            }
            DataType::Date32 | DataType::Date64 => Some(0),
            _ => None,
        };
        // Postgres's answer for an unlimited text column.
        let octet_length = (udt_name == "text" || udt_name == "varchar").then_some(1_073_741_824);
        PgColumnType {
            data_type,
            udt_name,
            numeric_precision,
            numeric_scale,
            radix,
            datetime_precision,
            octet_length,
        }
    }
}

#[async_trait]
impl TableProvider for InfoTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.batch().await?;
        MemTable::try_new(self.schema.clone(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn column_types_are_named_as_postgres_names_them() {
        let t = PgColumnType::of(&DataType::Utf8View);
        assert_eq!(
            (t.data_type.as_str(), t.udt_name.as_str()),
            ("text", "text")
        );
        let t = PgColumnType::of(&DataType::Int64);
        assert_eq!(
            (t.data_type.as_str(), t.udt_name.as_str()),
            ("bigint", "int8")
        );
        assert_eq!(t.numeric_precision, Some(64));
        let t = PgColumnType::of(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ));
        assert_eq!(
            (t.data_type.as_str(), t.udt_name.as_str()),
            ("timestamp with time zone", "timestamptz")
        );
        assert_eq!(t.datetime_precision, Some(6));
        let t = PgColumnType::of(&DataType::Decimal128(10, 2));
        assert_eq!(
            (t.data_type.as_str(), t.numeric_scale),
            ("numeric", Some(2))
        );
        let t = PgColumnType::of(&DataType::Boolean);
        assert_eq!(
            (t.data_type.as_str(), t.udt_name.as_str()),
            ("boolean", "bool")
        );
    }
}
