//! Arrow Flight SQL: the same read-only SQL as `POST /sql`, for ADBC, JDBC and ODBC
//! drivers and pyarrow, on its own port (`medlake serve --flight-listen`).
//!
//! The protocol is arrow-flight's `FlightSqlService`; the service below implements it
//! over [`QueryEngine`], the engine of `/sql`, so both see the same catalog, refuse the
//! same statements and run their plans on the same query runtime, apart from the
//! threads that serve requests. A query's answer is never gathered: DataFusion's batches
//! come from [`QueryEngine::stream`], which runs at most a couple of batches ahead of
//! the reader, are cut into messages of about 2 MB as gRPC asks, each with only its own
//! rows' strings (`messages`: arrow-flight's own cut sent every string of a batch with
//! each piece), and go through arrow-flight's encoder; HTTP/2 flow control then stops
//! the encoder while the client is busy. So the server holds a few batches per query
//! whatever the answer's size.
//!
//! The protocol is stateless here: a statement handle is the SQL text, and a prepared
//! statement's handle carries its SQL and its bound parameter values (the encoding of
//! `datafusion-flight-sql-server`), so any request may land on any connection and
//! closing a statement frees nothing. Every request plans in a session of its own (a
//! clone of the engine's), and nothing a request could change in it is allowed anyway:
//! DDL, DML and `SET` are refused as `/sql` refuses them.
//!
//! What comes from `datafusion-flight-sql-server` (0.4): the prepared-statement handle,
//! the binding of parameter values sent with `DoPut`, `GetCatalogs`, and the `FlightInfo`
//! of the catalog commands.
//! What is done here instead, and why:
//! - queries and prepared statements: the crate plans and runs them on the runtime that
//!   serves requests, and answers every failure as `INTERNAL` with DataFusion's debug
//!   text; here they go through the engine, and errors through [`ApiError`], so a client
//!   learns the same class and message `/sql` would give (a 500's detail stays in the
//!   log);
//! - `GetDbSchemas` and `GetTables`: the crate lists nothing when the request names no
//!   catalog, which is how ADBC's `GetObjects` asks; and table types are named as JDBC
//!   and ODBC tools expect (`TABLE`, `VIEW`), not as DataFusion prints them (`Base`);
//! - `GetSqlInfo`: the crate does not answer it;
//! - updates, bulk ingestion, Substrait plans and transactions: refused with a sentence
//!   that says where writes go (the crate acknowledges a prepared update as if it had
//!   run).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::scalar::ScalarValue;
use datafusion_flight_sql_server::service::FlightSqlService as CrateService;
use datafusion_flight_sql_server::session::SessionStateProvider;
use datafusion_flight_sql_server::state::QueryHandle;
use futures::{Stream, StreamExt, TryStreamExt};
use medlake_query::{QueryEngine, QueryError};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::ApiError;

mod messages;

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Serve Flight SQL on `listener` until `stop` completes.
pub async fn serve(
    engine: QueryEngine,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(FlightServiceServer::new(MedlakeFlightSql::new(engine)))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}

/// The Flight SQL service over one [`QueryEngine`].
pub struct MedlakeFlightSql {
    engine: QueryEngine,
    /// The crate's service, for what it does as medlake needs (see the module docs).
    catalog: CrateService,
    sql_info: SqlInfoData,
}

/// Hands each request of the crate's service a session of its own.
struct EngineSessions(QueryEngine);

#[tonic::async_trait]
impl SessionStateProvider for EngineSessions {
    async fn new_context(&self, _request: &Request<()>) -> Result<SessionState, Status> {
        Ok(self.0.context().state())
    }
}

impl MedlakeFlightSql {
    pub fn new(engine: QueryEngine) -> Self {
        let read_only = datafusion::prelude::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let catalog = CrateService::new_with_provider(Box::new(EngineSessions(engine.clone())))
            .with_sql_options(read_only);
        MedlakeFlightSql {
            engine,
            catalog,
            sql_info: sql_info(),
        }
    }

    async fn plan(&self, sql: &str) -> Result<DataFrame, Status> {
        self.engine
            .plan(sql)
            .await
            .map_err(|e| query_status(&e, "planning the Flight SQL query"))
    }

    async fn run(&self, df: DataFrame, params: Option<ParamValues>) -> Result<DoGetStream, Status> {
        let schema = wire_schema(df.schema().as_arrow());
        let batches = self
            .engine
            .stream(df, params)
            .await
            .map_err(|e| query_status(&e, "running the Flight SQL query"))?;
        Ok(encode(schema, batches))
    }
}

/// What `GetSqlInfo` answers.
fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "medlake");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    // DataFusion folds unquoted identifiers to lower case and keeps quoted ones.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    // Every value is fixed above, so building cannot meet a value of an unknown kind.
    b.build()
        .expect("the SqlInfo values are of supported kinds")
}

/// The schema a client is told and then sent: the plan's, as arrow-flight's encoder will
/// write it (dictionaries it expands to their values).
fn wire_schema(schema: &Schema) -> SchemaRef {
    let schema = Arc::new(schema.clone());
    FlightDataEncoderBuilder::new()
        .with_schema(schema.clone())
        .build(futures::stream::empty())
        .known_schema()
        .unwrap_or(schema)
}

/// A query's batches as Flight data, encoded as the client reads them.
fn encode(schema: SchemaRef, batches: SendableRecordBatchStream) -> DoGetStream {
    let batches = batches.map_err(|e| FlightError::ExternalError(Box::new(e)));
    let pieces = batches
        .map(|batch| {
            let pieces = batch.and_then(|b| {
                messages::cut(b, messages::MESSAGE_BYTES).map_err(FlightError::Arrow)
            });
            futures::stream::iter(match pieces {
                Ok(pieces) => pieces.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(e)],
            })
        })
        .flatten();
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        // The pieces are cut already; the encoder's own cut would send their strings again.
        .with_max_flight_data_size(usize::MAX)
        .build(pieces)
        .map_err(|e| match e {
            FlightError::ExternalError(inner) => match inner.downcast::<DataFusionError>() {
                Ok(d) => ApiError::from_datafusion(&d, "streaming a Flight SQL answer").to_grpc(),
                Err(other) => ApiError::internal("streaming a Flight SQL answer", &other).to_grpc(),
            },
            other => ApiError::internal("encoding a Flight SQL answer", &other).to_grpc(),
        })
        .boxed()
}

/// A batch that is already built (a catalog listing) as Flight data.
fn encode_one(
    schema: SchemaRef,
    batch: Result<arrow::record_batch::RecordBatch, FlightError>,
) -> DoGetStream {
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch }))
        .map_err(|e| ApiError::internal("listing the catalog over Flight SQL", &e).to_grpc())
        .boxed()
}

fn query_status(e: &QueryError, context: &'static str) -> Status {
    ApiError::from_query(e, context).to_grpc()
}

fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket {
        ticket: ticket.into(),
    });
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| ApiError::internal("describing a Flight SQL answer", &e).to_grpc())?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn encode_schema(schema: &Schema) -> Result<arrow_flight::IpcMessage, Status> {
    let options = arrow::ipc::writer::IpcWriteOptions::default();
    SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            ApiError::internal("describing a prepared statement", &e).to_grpc()
        })
}

/// The parameters of a planned query, in the order a client binds them: `$1`, `$2`, ...
/// by number, named ones by name. A parameter whose type the plan does not settle
/// (`SELECT $1`) is `Null`: it takes the type of the value bound to it.
fn parameter_schema(df: &DataFrame) -> Result<Schema, Status> {
    let types = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| ApiError::from_datafusion(&e, "describing a prepared statement").to_grpc())?;
    let mut params: Vec<(String, DataType)> = types
        .into_iter()
        .map(|(name, t)| (name, t.unwrap_or(DataType::Null)))
        .collect();
    params.sort_by_key(|(name, _)| placeholder_order(name));
    Ok(Schema::new(
        params
            .into_iter()
            .map(|(name, t)| Field::new(name, t, true))
            .collect::<Vec<_>>(),
    ))
}

/// `$2` before `$10`; names after numbers, alphabetically.
fn placeholder_order(name: &str) -> (usize, String) {
    let bare = name.trim_start_matches('$');
    match bare.parse::<usize>() {
        Ok(n) => (n, String::new()),
        Err(_) => (usize::MAX, bare.to_string()),
    }
}

/// The values bound to a prepared statement (one row, as an Arrow IPC stream), cast to
/// the types the plan inferred for its parameters.
///
/// Columns whose names are numbers (ADBC names them `0`, `1`, ...; `$1` works too) are
/// positional, in the order of those numbers; otherwise each column binds the named
/// parameter `$<column>`. Clients send Python strings as `Utf8` where the plan compares
/// with a `Utf8View` column, so values are cast rather than checked for an exact type.
fn bound_values(ipc: &[u8], df: &DataFrame) -> Result<ParamValues, Status> {
    let bad = |m: String| {
        Status::invalid_argument(format!(
            "the prepared statement's parameter values could not be read: {m}"
        ))
    };
    let reader = StreamReader::try_new(ipc, None).map_err(|e| bad(e.to_string()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Err(bad("no row of values was bound".into()));
    };
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "{rows} rows of parameter values were bound: medlake runs a prepared query with \
             one row of values at a time; execute it once per row"
        )));
    }
    let types: HashMap<String, Option<DataType>> = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| ApiError::from_datafusion(&e, "binding parameters").to_grpc())?;
    let mut values = Vec::with_capacity(batch.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        let bare = field.name().trim_start_matches('$').to_string();
        let value =
            ScalarValue::try_from_array(batch.column(i), 0).map_err(|e| bad(e.to_string()))?;
        values.push((bare, value));
    }
    let positional = values.iter().all(|(name, _)| name.parse::<usize>().is_ok());
    let cast = |placeholder: &str, value: ScalarValue| -> Result<ScalarValue, Status> {
        match types.get(placeholder) {
            Some(Some(t)) if !value.is_null() && &value.data_type() != t => {
                value.cast_to(t).map_err(|e| {
                    Status::invalid_argument(format!(
                        "the value bound to {placeholder} cannot be used as {t}: {e}"
                    ))
                })
            }
            Some(Some(t)) if value.is_null() => {
                ScalarValue::try_from(t).map_err(|e| bad(format!("a null for {placeholder}: {e}")))
            }
            _ => Ok(value),
        }
    };
    if positional {
        values.sort_by_key(|(name, _)| name.parse::<usize>().unwrap_or(usize::MAX));
        let list = values
            .into_iter()
            .enumerate()
            .map(|(i, (_, v))| cast(&format!("${}", i + 1), v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ParamValues::from(list))
    } else {
        let named = values
            .into_iter()
            .map(|(name, v)| {
                let v = cast(&format!("${name}"), v)?;
                Ok((name, v))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(ParamValues::from(named))
    }
}

fn read_only(what: &str) -> Status {
    Status::invalid_argument(format!(
        "medlake's SQL is read-only: {what} is refused. Write data with `medlake ingest`, \
         POST /ingest or the FHIR API"
    ))
}

#[tonic::async_trait]
impl FlightSqlService for MedlakeFlightSql {
    type FlightService = MedlakeFlightSql;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let df = self.plan(&query.query).await?;
        let schema = wire_schema(df.schema().as_arrow());
        // The handle is the SQL itself: the rows are planned again when they are fetched.
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = std::str::from_utf8(&ticket.statement_handle).map_err(|_| {
            Status::invalid_argument(
                "the statement handle is not one this server gave: ask for the query's FlightInfo again",
            )
        })?;
        let df = self.plan(sql).await?;
        Ok(Response::new(self.run(df, None).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let df = self.plan(&query.query).await?;
        let IpcMessage(dataset_schema) = encode_schema(&wire_schema(df.schema().as_arrow()))?;
        let IpcMessage(parameter_schema) = encode_schema(&parameter_schema(&df)?)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: QueryHandle::new(query.query, None).encode(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        // The crate folds the bound row into the handle it gives back.
        self.catalog
            .do_put_prepared_statement_query(query, request)
            .await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = decode_handle(&cmd)?;
        let df = self.plan(handle.query()).await?;
        let schema = wire_schema(df.schema().as_arrow());
        flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = decode_handle(&cmd)?;
        let df = self.plan(handle.query()).await?;
        let params = match handle.parameters() {
            Some(ipc) => Some(bound_values(ipc, &df)?),
            None => None,
        };
        Ok(Response::new(self.run(df, params).await?))
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Nothing is kept per statement (the handle carries it all).
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog.get_flight_info_catalogs(query, request).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.catalog.do_get_catalogs(query, request).await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog.get_flight_info_schemas(query, request).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let ctx = self.engine.context();
        // Every catalog's schemas; the builder keeps those the filters match.
        let mut builder = query.into_builder();
        for catalog_name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                for schema_name in catalog.schema_names() {
                    builder.append(&catalog_name, schema_name);
                }
            }
        }
        let schema = builder.schema();
        Ok(Response::new(encode_one(schema, builder.build())))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog.get_flight_info_tables(query, request).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let ctx = self.engine.context();
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        let no_columns = Schema::empty();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    let table = schema.table(&table_name).await.map_err(|e| {
                        ApiError::from_datafusion(&e, "listing tables over Flight SQL").to_grpc()
                    })?;
                    let Some(table) = table else { continue };
                    // A table's schema is encoded only when asked for.
                    let columns = if include_schema {
                        table.schema()
                    } else {
                        Arc::new(no_columns.clone())
                    };
                    builder
                        .append(
                            &catalog_name,
                            &schema_name,
                            &table_name,
                            table_type_name(table.table_type()),
                            &columns,
                        )
                        .map_err(|e| {
                            ApiError::internal("listing tables over Flight SQL", &e).to_grpc()
                        })?;
                }
            }
        }
        let schema = builder.schema();
        Ok(Response::new(encode_one(schema, builder.build())))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog
            .get_flight_info_table_types(query, request)
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for t in [TableType::Base, TableType::View, TableType::Temporary] {
            builder.append(table_type_name(t));
        }
        let schema = builder.schema();
        Ok(Response::new(encode_one(schema, builder.build())))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(
            &self.sql_info.schema(),
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<arrow_flight::Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        let schema = builder.schema();
        Ok(Response::new(encode_one(schema, builder.build())))
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        // A query sent as an update is the client's mix-up, not a write: say so.
        match self.engine.plan(&ticket.query).await {
            Ok(_) => Err(Status::invalid_argument(
                "this statement is a query: run it as a query (ExecuteQuery, cursor.execute), \
                 not as an update",
            )),
            Err(e) => Err(query_status(&e, "planning the Flight SQL update")),
        }
    }

    async fn do_put_prepared_statement_update(
        &self,
        _handle: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("a prepared update"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("bulk ingestion over Flight SQL"))
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported: send the query as SQL",
        ))
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        Err(Status::unimplemented(
            "Substrait plans are not supported: prepare the query as SQL",
        ))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The names JDBC and ODBC tools filter on (DataFusion's own are `Base`, `View`,
/// `Temporary`).
fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

fn decode_handle(cmd: &CommandPreparedStatementQuery) -> Result<QueryHandle, Status> {
    QueryHandle::try_decode(cmd.prepared_statement_handle.clone()).map_err(|_| {
        Status::invalid_argument(
            "the prepared statement handle is not one this server gave: prepare the statement again",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query's answer as the client receives it: messages of at most about
    /// [`messages::MESSAGE_BYTES`] (a larger row alone in its own), each carrying its own
    /// rows' strings, decoding to the rows sent.
    #[tokio::test]
    async fn an_answer_goes_out_in_messages_of_the_configured_size_each_with_its_own_strings() {
        use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringViewArray};
        use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("resource", DataType::Utf8View, false),
        ]));
        let big_row = 5 * 1024 * 1024;
        let len = |i: usize| if i == 3000 { big_row } else { 900 + i % 200 };
        // Two batches as a scan gives them: 8,192 rows of JSON-sized strings, one far
        // larger than a message.
        let batches: Vec<RecordBatch> = (0..2)
            .map(|b| {
                let rows = b * 8192..(b + 1) * 8192;
                let text: ArrayRef = Arc::new(StringViewArray::from_iter_values(
                    rows.clone().map(|i| "x".repeat(len(i))),
                ));
                let n: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.map(|i| i as i64)));
                RecordBatch::try_new(schema.clone(), vec![n, text]).unwrap()
            })
            .collect();
        let strings: usize = (0..2 * 8192).map(len).sum();
        let stream = RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.clone().into_iter().map(Ok)),
        );
        let data: Vec<FlightData> = encode(schema.clone(), Box::pin(stream))
            .try_collect()
            .await
            .unwrap();

        let bodies: Vec<usize> = data.iter().map(|d| d.data_body.len()).collect();
        let sent: usize = bodies.iter().sum();
        // Each string once, with its 16-byte view and the numbers, and each message's
        // three buffers padded to 64 bytes.
        assert!(
            sent <= strings + 2 * 8192 * (16 + 8) + bodies.len() * 3 * 64,
            "{sent} bytes sent for {strings} bytes of strings"
        );
        let overhead = 64 * 1024;
        let large: Vec<&usize> = bodies
            .iter()
            .filter(|b| **b > messages::MESSAGE_BYTES + overhead)
            .collect();
        assert_eq!(large.len(), 1, "messages over the size: {large:?}");
        assert!(
            *large[0] < big_row + overhead,
            "the large row travels alone"
        );

        let flight = futures::stream::iter(data.into_iter().map(Ok));
        let got: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(flight)
                .try_collect()
                .await
                .unwrap();
        let got = arrow::compute::concat_batches(&schema, &got).unwrap();
        let want = arrow::compute::concat_batches(&schema, &batches).unwrap();
        assert_eq!(got.num_rows(), 2 * 8192);
        assert_eq!(got.column(1).as_string_view().value(3000).len(), big_row);
        assert_eq!(got, want);
    }

    #[test]
    fn placeholders_are_ordered_by_number_then_name() {
        let mut names = vec!["$10", "$b", "$2", "$a", "$1"];
        names.sort_by_key(|n| placeholder_order(n));
        assert_eq!(names, ["$1", "$2", "$10", "$a", "$b"]);
    }
}
