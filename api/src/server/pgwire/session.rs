//! One connection's session: its DataFusion context, its settings, and the statements
//! that read and change them (`SET`, `SHOW`, `RESET`, `current_setting()`,
//! `current_schema()`, `version()`).
//!
//! Each connection gets a context of its own from [`QueryEngine::session`]: the lake's
//! schemas are the engine's, but `pg_catalog` and the settings are the connection's, so
//! nothing one client sets is seen by another. The settings live in [`Settings`], which
//! `SHOW`, `current_setting()` and the `ParameterStatus` messages all read, so the three
//! always agree. datafusion-postgres answers `SHOW` for a few names with fixed text and
//! `current_setting()` not at all, which is why this hook replaces its `SET`/`SHOW` hook.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::CatalogProvider;
use datafusion::common::{DataFusionError, ParamValues, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, LogicalPlan, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Reset, Set, Statement, Value};
use datafusion_postgres::QueryHook;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::{Response, Tag};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::response::TransactionStatus;
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use medlake_query::{CATALOG, QueryEngine, QueryError};

/// The Postgres release whose behaviour clients should expect (its catalog tables and
/// functions are what datafusion-pg-catalog models).
pub const PG_VERSION: &str = "16.6";
const PG_VERSION_NUM: &str = "160006";

/// Where unqualified names resolve, as a client sees it in `search_path`.
const DEFAULT_SEARCH_PATH: &str = "fhir";

/// The connection's settings, by lower-case name. Seeded with what Postgres reports at
/// startup and what clients ask for; a `SET` of any other name is kept too, as Postgres
/// keeps a custom setting.
#[derive(Debug)]
pub struct Settings {
    values: RwLock<BTreeMap<String, String>>,
    /// What `RESET` goes back to: the defaults with what the client gave at startup.
    initial: RwLock<BTreeMap<String, String>>,
}

/// Settings Postgres sends in `ParameterStatus` at startup and whenever they change.
const REPORTED: &[(&str, &str)] = &[
    ("server_version", "server_version"),
    ("server_encoding", "server_encoding"),
    ("client_encoding", "client_encoding"),
    ("application_name", "application_name"),
    ("datestyle", "DateStyle"),
    ("intervalstyle", "IntervalStyle"),
    ("timezone", "TimeZone"),
    ("integer_datetimes", "integer_datetimes"),
    ("standard_conforming_strings", "standard_conforming_strings"),
    ("is_superuser", "is_superuser"),
    ("session_authorization", "session_authorization"),
    (
        "default_transaction_read_only",
        "default_transaction_read_only",
    ),
    ("in_hot_standby", "in_hot_standby"),
    ("search_path", "search_path"),
];

impl Settings {
    /// The defaults, before the client says who it is.
    pub fn new() -> Settings {
        let format = FormatOptions::default();
        let server_version = format!("{PG_VERSION} (medlake {})", env!("CARGO_PKG_VERSION"));
        let values = [
            ("server_version", server_version.as_str()),
            ("server_version_num", PG_VERSION_NUM),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("application_name", ""),
            ("datestyle", format.date_style.as_str()),
            ("intervalstyle", format.interval_style.as_str()),
            ("timezone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "off"),
            ("session_authorization", ""),
            ("default_transaction_read_only", "on"),
            ("transaction_read_only", "on"),
            // Each statement reads the snapshot current when it starts.
            ("transaction_isolation", "read committed"),
            ("default_transaction_isolation", "read committed"),
            ("in_hot_standby", "off"),
            ("search_path", DEFAULT_SEARCH_PATH),
            ("statement_timeout", "0"),
            ("lock_timeout", "0"),
            ("idle_in_transaction_session_timeout", "0"),
            ("extra_float_digits", "1"),
            ("bytea_output", format.bytea_output.as_str()),
            ("client_min_messages", "notice"),
            ("max_identifier_length", "63"),
            ("max_index_keys", "32"),
            ("block_size", "8192"),
            ("lc_collate", "C"),
            ("lc_ctype", "C"),
            ("lc_messages", "C"),
            ("lc_numeric", "C"),
            ("lc_monetary", "C"),
            ("lc_time", "C"),
            ("max_connections", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
        Settings {
            values: RwLock::new(values.clone()),
            initial: RwLock::new(values),
        }
    }

    /// Who the client is, from its startup message.
    pub fn seed_client(&self, user: &str, application_name: &str) {
        self.set("session_authorization", user.to_string());
        self.set("application_name", application_name.to_string());
        let now = self
            .values
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        *self.initial.write().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn initial(&self, name: &str) -> Option<String> {
        let initial = self.initial.read().unwrap_or_else(|e| e.into_inner());
        initial.get(name).cloned()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        values.get(&name.to_ascii_lowercase()).cloned()
    }

    fn set(&self, name: &str, value: String) {
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        values.insert(name.to_ascii_lowercase(), value);
    }

    fn all(&self) -> Vec<(String, String)> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        values.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// What the startup sends as `ParameterStatus`, under Postgres's spelling.
    pub fn reported(&self) -> Vec<(String, String)> {
        REPORTED
            .iter()
            .filter_map(|(name, shown)| self.get(name).map(|v| (shown.to_string(), v)))
            .collect()
    }
}

/// A connection's DataFusion context: the engine's tables, plus `pg_catalog` and the
/// functions clients call at connect time, answering from `settings`.
pub fn context(
    engine: &QueryEngine,
    settings: &Arc<Settings>,
) -> Result<SessionContext, QueryError> {
    let ctx = engine.session()?;
    setup_pg_catalog(&ctx, CATALOG, EmptyContextProvider)
        .map_err(|e| QueryError::DataFusion(*e))?;
    let catalog = ctx.catalog(CATALOG).ok_or_else(|| {
        QueryError::DataFusion(DataFusionError::Internal(format!("no catalog {CATALOG}")))
    })?;
    // datafusion-pg-catalog's pg_catalog, with the tables it gets wrong for clients
    // (pg_type's function oids, pg_user) corrected.
    if let Some(inner) = catalog.schema(super::pg_catalog::NAME) {
        catalog
            .register_schema(
                super::pg_catalog::NAME,
                Arc::new(super::pg_catalog::PgCatalog::new(inner)),
            )
            .map_err(QueryError::DataFusion)?;
    }
    // Postgres's information_schema in place of DataFusion's, whose columns differ.
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .catalog
        .information_schema = false;
    catalog
        .register_schema(
            super::information_schema::NAME,
            Arc::new(super::information_schema::InformationSchema::new(
                CATALOG, &catalog,
            )),
        )
        .map_err(QueryError::DataFusion)?;
    // Registered after pg_catalog's, so that these replace its fixed answers.
    ctx.register_udf(version_udf());
    ctx.register_udf(current_setting_udf(settings.clone()));
    ctx.register_udf(to_regtype_udf());
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(
        JsonBuildObject::new(),
    ));
    // Answers that hold for every object medlake has: no column has a sequence (NULL,
    // as Postgres answers then), the collations are pg_catalog's, always visible, and no
    // relation has an index, so no oid names one (NULL, as Postgres answers for an oid
    // that is not an index's; `pg_index`'s rows are those of the Postgres that
    // datafusion-pg-catalog's rows came from, under oids no `pg_class` row has here).
    for (name, arities, value) in [
        ("pg_get_serial_sequence", &[2][..], ScalarValue::Utf8(None)),
        (
            "pg_collation_is_visible",
            &[1],
            ScalarValue::Boolean(Some(true)),
        ),
        ("pg_get_indexdef", &[1, 3], ScalarValue::Utf8(None)),
    ] {
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::from(Constant::new(
            name, arities, value,
        )));
    }
    ctx.register_udf(current_schema_udf(settings.clone(), catalog));
    Ok(ctx)
}

fn version_udf() -> datafusion::logical_expr::ScalarUDF {
    let text = format!(
        "PostgreSQL {PG_VERSION} (medlake {}, Apache DataFusion {}, read-only)",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

fn current_setting_udf(settings: Arc<Settings>) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args| {
            let lookup = |name: &str| {
                settings.get(name).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "unrecognized configuration parameter \"{name}\"; SHOW ALL lists them"
                    ))
                })
            };
            match args.first() {
                Some(ColumnarValue::Scalar(
                    ScalarValue::Utf8(name)
                    | ScalarValue::Utf8View(name)
                    | ScalarValue::LargeUtf8(name),
                )) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(match name {
                    Some(n) => Some(lookup(n)?),
                    None => None,
                }))),
                Some(ColumnarValue::Array(names)) => {
                    let names = datafusion::arrow::compute::cast(names, &DataType::Utf8)?;
                    let names = names
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| DataFusionError::Internal("cast to Utf8 failed".into()))?;
                    let values = names
                        .iter()
                        .map(|n| n.map(lookup).transpose())
                        .collect::<Result<StringArray, _>>()?;
                    Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
                }
                _ => Err(DataFusionError::Plan(
                    "current_setting takes the name of a setting".into(),
                )),
            }
        }),
    )
}

/// `to_regtype(name)`: the oid of a built-in type (`int4`, `text`, `_text`), NULL for any
/// other name, as Postgres answers for a type that does not exist. psycopg asks it for
/// `hstore` when SQLAlchemy connects.
fn to_regtype_udf() -> datafusion::logical_expr::ScalarUDF {
    use datafusion_postgres::pgwire::api::Type;
    static BY_NAME: std::sync::LazyLock<std::collections::HashMap<String, i32>> =
        std::sync::LazyLock::new(|| {
            (0..10_000u32)
                .filter_map(Type::from_oid)
                .map(|t| (t.name().to_string(), t.oid() as i32))
                .collect()
        });
    let lookup = |name: &str| {
        let name = name
            .trim()
            .trim_start_matches("pg_catalog.")
            .trim_matches('"');
        let alias = match name {
            "integer" | "int" => "int4",
            "bigint" => "int8",
            "smallint" => "int2",
            "boolean" => "bool",
            "double precision" => "float8",
            "real" => "float4",
            "timestamp with time zone" => "timestamptz",
            "timestamp without time zone" | "timestamp" => "timestamp",
            "character varying" => "varchar",
            other => other,
        };
        BY_NAME.get(alias).copied()
    };
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Immutable,
        Arc::new(move |args| match args.first() {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(name)
                | ScalarValue::Utf8View(name)
                | ScalarValue::LargeUtf8(name),
            )) => Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                name.as_deref().and_then(lookup),
            ))),
            Some(ColumnarValue::Array(names)) => {
                let names = datafusion::arrow::compute::cast(names, &DataType::Utf8)?;
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| DataFusionError::Internal("cast to Utf8 failed".into()))?;
                let oids: datafusion::arrow::array::Int32Array =
                    names.iter().map(|n| n.and_then(lookup)).collect();
                Ok(ColumnarValue::Array(Arc::new(oids) as ArrayRef))
            }
            _ => Err(DataFusionError::Plan("to_regtype takes a type name".into())),
        }),
    )
}

/// A catalog function whose answer is the same for every object medlake has.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    value: ScalarValue,
    signature: datafusion::logical_expr::Signature,
}

impl Constant {
    /// `name` taking any arguments, as many as one of `arities`.
    fn new(name: &'static str, arities: &[usize], value: ScalarValue) -> Self {
        let signature = match arities {
            [one] => datafusion::logical_expr::Signature::any(*one, Volatility::Stable),
            many => datafusion::logical_expr::Signature::one_of(
                many.iter()
                    .map(|n| datafusion::logical_expr::TypeSignature::Any(*n))
                    .collect(),
                Volatility::Stable,
            ),
        };
        Constant {
            name,
            value,
            signature,
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(
        &self,
        _args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `json_build_object(key, value, ...)`: the object as JSON text (SQLAlchemy selects it
/// when it lists columns).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: datafusion::logical_expr::Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        JsonBuildObject {
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn scalar_to_json(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        v if v.is_null() => J::Null,
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(i)) => J::from(*i),
        ScalarValue::Int16(Some(i)) => J::from(*i),
        ScalarValue::Int32(Some(i)) => J::from(*i),
        ScalarValue::Int64(Some(i)) => J::from(*i),
        ScalarValue::UInt8(Some(i)) => J::from(*i),
        ScalarValue::UInt16(Some(i)) => J::from(*i),
        ScalarValue::UInt32(Some(i)) => J::from(*i),
        ScalarValue::UInt64(Some(i)) => J::from(*i),
        ScalarValue::Float32(Some(f)) => J::from(*f),
        ScalarValue::Float64(Some(f)) => J::from(*f),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => J::from(s.clone()),
        other => J::from(other.to_string()),
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object takes keys and values in pairs".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let key = match scalar_to_json(&key) {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                object.insert(key, scalar_to_json(&value));
            }
            out.push(Some(serde_json::Value::Object(object).to_string()));
        }
        Ok(ColumnarValue::Array(
            Arc::new(StringArray::from(out)) as ArrayRef
        ))
    }
}

/// The first schema of `search_path` that exists, as Postgres answers.
fn current_schema_udf(
    settings: Arc<Settings>,
    catalog: Arc<dyn CatalogProvider>,
) -> datafusion::logical_expr::ScalarUDF {
    create_udf(
        "current_schema",
        vec![],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |_| {
            let path = settings.get("search_path").unwrap_or_default();
            let schema = first_existing_schema(&path, catalog.as_ref());
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(schema)))
        }),
    )
}

fn first_existing_schema(search_path: &str, catalog: &dyn CatalogProvider) -> Option<String> {
    let names = catalog.schema_names();
    search_path
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .find(|s| names.contains(s))
}

/// `SET`, `RESET` and `SHOW` of one connection.
#[derive(Debug)]
pub struct SessionStatements {
    pub settings: Arc<Settings>,
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

fn api_error(e: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// The value of `SET name = a, b` or `SET name TO 'a'` as Postgres shows it.
fn set_value(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The lower-case name of a `SHOW` variable (`SHOW TIME ZONE` is `timezone`).
fn show_name(variable: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    let words: Vec<String> = variable
        .iter()
        .map(|i| i.value.to_ascii_lowercase())
        .collect();
    match words.join(" ").as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        other => other.replace(' ', "_"),
    }
}

impl SessionStatements {
    /// Apply a `SET` or `RESET`; `None` if `statement` is neither.
    async fn apply(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let (name, value) = match statement {
            Statement::Set(Set::SingleAssignment {
                variable, values, ..
            }) => (
                variable.to_string().to_ascii_lowercase(),
                Some(set_value(values)),
            ),
            Statement::Set(Set::SetTimeZone { value, .. }) => (
                "timezone".to_string(),
                Some(set_value(std::slice::from_ref(value))),
            ),
            Statement::Set(Set::SetNames { charset_name, .. }) => (
                "client_encoding".to_string(),
                Some(charset_name.to_string()),
            ),
            // Every transaction is read-only and reads committed snapshots already.
            Statement::Set(Set::SetTransaction { .. } | Set::SetSessionParam(_)) => {
                return Some(Ok(Response::Execution(Tag::new("SET"))));
            }
            Statement::Set(other) => {
                return Some(Err(user_error(
                    "0A000",
                    format!("{other} is not supported by medlake's Postgres interface"),
                )));
            }
            // Nothing is written, so a savepoint has nothing to keep: it only has to be
            // accepted, and rolling back to it ends a failed state as Postgres does.
            Statement::Savepoint { .. } => {
                return Some(Ok(Response::Execution(Tag::new("SAVEPOINT"))));
            }
            Statement::ReleaseSavepoint { .. } => {
                return Some(Ok(Response::Execution(Tag::new("RELEASE"))));
            }
            Statement::Rollback {
                savepoint: Some(_), ..
            } => {
                if client.transaction_status() == TransactionStatus::Error {
                    client.set_transaction_status(TransactionStatus::Transaction);
                }
                return Some(Ok(Response::Execution(Tag::new("ROLLBACK"))));
            }
            Statement::Reset(r) => match &r.reset {
                Reset::ConfigurationParameter(name) => {
                    (name.to_string().to_ascii_lowercase(), None)
                }
                Reset::ALL => {
                    for (name, value) in self.settings.all() {
                        let initial = self.settings.initial(&name);
                        if initial.as_ref() == Some(&value) {
                            continue;
                        }
                        if let Err(e) = self.assign(ctx, client, &name, initial).await {
                            return Some(Err(e));
                        }
                    }
                    return Some(Ok(Response::Execution(Tag::new("RESET"))));
                }
            },
            _ => return None,
        };
        let tag = if value.is_some() { "SET" } else { "RESET" };
        let value = value.or_else(|| self.settings.initial(&name));
        Some(
            self.assign(ctx, client, &name, value)
                .await
                .map(|()| Response::Execution(Tag::new(tag))),
        )
    }

    /// Set `name` to `value` (`None`: forget a custom setting), with what it changes.
    async fn assign(
        &self,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
        name: &str,
        value: Option<String>,
    ) -> PgWireResult<()> {
        let Some(value) = value else {
            let mut values = self
                .settings
                .values
                .write()
                .unwrap_or_else(|e| e.into_inner());
            values.remove(name);
            return Ok(());
        };
        match name {
            // Read-only facts of the server.
            "server_version"
            | "server_version_num"
            | "server_encoding"
            | "integer_datetimes"
            | "max_identifier_length"
            | "max_index_keys"
            | "block_size"
            | "lc_collate"
            | "lc_ctype"
            | "is_superuser"
            | "in_hot_standby" => {
                if self.settings.get(name).as_deref() != Some(value.as_str()) {
                    return Err(user_error(
                        "55P02",
                        format!("parameter \"{name}\" cannot be changed"),
                    ));
                }
                return Ok(());
            }
            "default_transaction_read_only" | "transaction_read_only"
                if !matches!(value.to_ascii_lowercase().as_str(), "on" | "true" | "1") =>
            {
                return Err(user_error(
                    "25006",
                    "medlake's SQL is read-only; write data with `medlake ingest`, POST /ingest or the FHIR API".into(),
                ));
            }
            // The result formatting of arrow-pg reads these from the connection's metadata.
            "datestyle" | "intervalstyle" | "bytea_output" | "extra_float_digits" => {
                client
                    .metadata_mut()
                    .insert(name.to_string(), value.clone());
            }
            "statement_timeout" => {
                let millis = parse_millis(&value).ok_or_else(|| {
                    user_error(
                        "22023",
                        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
                    )
                })?;
                // datafusion-postgres enforces the timeout it finds under this key.
                if millis == 0 {
                    client.metadata_mut().remove("statement_timeout_ms");
                } else {
                    client
                        .metadata_mut()
                        .insert("statement_timeout_ms".into(), millis.to_string());
                }
            }
            "timezone" => {
                client
                    .metadata_mut()
                    .insert("timezone".into(), value.clone());
                ctx.state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .execution
                    .time_zone = Some(value.clone());
            }
            "search_path" => {
                if let Some(catalog) = ctx.catalog(CATALOG)
                    && let Some(schema) = first_existing_schema(&value, catalog.as_ref())
                {
                    ctx.state_ref()
                        .write()
                        .config_mut()
                        .options_mut()
                        .catalog
                        .default_schema = schema;
                }
            }
            _ if name.starts_with("datafusion.") => {
                ctx.state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .set(name, &value)
                    .map_err(api_error)?;
            }
            _ => {}
        }
        self.settings.set(name, value.clone());
        if let Some((_, shown)) = REPORTED.iter().find(|(n, _)| *n == name) {
            client
                .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    shown.to_string(),
                    value,
                )))
                .await?;
        }
        Ok(())
    }

    /// `SHOW name` as a query on `current_setting`, so that both protocols describe and
    /// encode it as any other query; `SHOW ALL` as the table of every setting.
    fn show_sql(&self, statement: &Statement) -> Option<PgWireResult<String>> {
        let Statement::ShowVariable { variable } = statement else {
            return None;
        };
        let name = show_name(variable);
        if name == "all" {
            let rows: Vec<String> = self
                .settings
                .all()
                .into_iter()
                .map(|(n, v)| format!("('{}', '{}')", n.replace('\'', "''"), v.replace('\'', "''")))
                .collect();
            return Some(Ok(format!(
                "SELECT column1 AS name, column2 AS setting FROM (VALUES {}) ORDER BY name",
                rows.join(", ")
            )));
        }
        if self.settings.get(&name).is_none() {
            return Some(Err(user_error(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )));
        }
        let shown = REPORTED
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(name.as_str(), |(_, s)| s);
        Some(Ok(format!(
            "SELECT current_setting('{}') AS \"{}\"",
            name.replace('\'', "''"),
            shown.replace('"', "\"\"")
        )))
    }
}

/// Milliseconds of a Postgres duration setting: `5000`, `5s`, `'5 s'`, `2min`, `100ms`.
fn parse_millis(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    let number: u64 = digits.parse().ok()?;
    let unit = v[digits.len()..].trim();
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(number * factor)
}

#[async_trait]
impl QueryHook for SessionStatements {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(sql) = self.show_sql(statement) {
            let run = async {
                let df = ctx.sql(&sql?).await.map_err(api_error)?;
                let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
                Ok(Response::Query(
                    encode_dataframe(df, &Format::UnifiedText, Some(format)).await?,
                ))
            };
            return Some(run.await);
        }
        self.apply(statement, ctx, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Some(sql) = self.show_sql(statement) {
            let plan = async {
                let sql = sql?;
                ctx.state()
                    .create_logical_plan(&sql)
                    .await
                    .map_err(api_error)
            };
            return Some(plan.await);
        }
        if matches!(
            statement,
            Statement::Set(_)
                | Statement::Reset(_)
                | Statement::Savepoint { .. }
                | Statement::ReleaseSavepoint { .. }
                | Statement::Rollback {
                    savepoint: Some(_),
                    ..
                }
        ) {
            // Nothing to plan: the statement is applied when it is executed.
            let plan = datafusion::logical_expr::LogicalPlanBuilder::empty(false).build();
            return Some(plan.map_err(api_error));
        }
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // A SHOW runs its planned query like any other.
        self.apply(statement, ctx, client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_postgres_units() {
        assert_eq!(parse_millis("5000"), Some(5000));
        assert_eq!(parse_millis("5s"), Some(5000));
        assert_eq!(parse_millis("2 min"), Some(120_000));
        assert_eq!(parse_millis("100ms"), Some(100));
        assert_eq!(parse_millis("soon"), None);
    }

    #[test]
    fn show_names_follow_postgres() {
        use datafusion::sql::sqlparser::ast::Ident;
        assert_eq!(
            show_name(&[Ident::new("TIME"), Ident::new("ZONE")]),
            "timezone"
        );
        assert_eq!(show_name(&[Ident::new("DateStyle")]), "datestyle");
    }

    #[test]
    fn startup_reports_what_show_answers() {
        let s = Settings::new();
        s.seed_client("alice", "psql");
        let reported: BTreeMap<String, String> = s.reported().into_iter().collect();
        assert_eq!(reported["search_path"], "fhir");
        assert_eq!(reported["session_authorization"], "alice");
        assert_eq!(reported["application_name"], "psql");
        assert_eq!(reported["default_transaction_read_only"], "on");
        assert!(reported["server_version"].starts_with(PG_VERSION));
        assert_eq!(s.get("TimeZone"), Some(reported["TimeZone"].clone()));
    }
}
