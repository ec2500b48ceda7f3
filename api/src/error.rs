//! Where errors become HTTP answers.
//!
//! Every handler of the server (the FHIR API, bundles, `/sql`, `/ingest`) returns
//! `Result<Response, ApiError>`, and [`ApiError`] is the only thing that writes an error
//! response: an OperationOutcome (`application/fhir+json`), its status, and the headers
//! that go with it (`Retry-After`, `X-Request-Id`, and for a 410 the `ETag` and
//! `Last-Modified` of the deleted version). Deciding statuses in one place is what keeps
//! a lake failure from answering 500 in one handler and 503 in another, and keeps
//! internal detail out of every answer instead of out of most.
//!
//! Each library error enum has one `match` here with no catch-all arm
//! ([`ApiError::from_lake`], [`ApiError::from_query`], [`ApiError::from_search`],
//! [`ApiError::from_datafusion`]): a new kind of error does not compile until someone
//! decides what a client sees for it. (DataFusion's and Arrow's error enums are not
//! `non_exhaustive` in the versions we use, so they are matched exhaustively too; if an
//! upgrade makes them so, the wildcard it forces should answer 500.)
//!
//! # Statuses
//! - **400** the request cannot be used as sent: a body that is not JSON or not UTF-8
//!   (`structure`), SQL that does not parse (`structure`), a FHIR request that breaks
//!   the API's rules (a bad id, a bad search value, a resource failing the basic R4
//!   checks; the FHIR specification and HAPI answer these 400), a write in `/sql`.
//! - **422** the request was read and is well formed, but what it asks cannot be done:
//!   a patch whose result is not valid R4, SQL that parses but names unknown tables or
//!   columns or mixes types (planning), or fails on the data it meets (a cast, a
//!   division by zero).
//! - **404** an unknown resource, type or table; **410** a deleted resource.
//! - **409** a patch that kept losing races; **412** an `If-Match` on an older version,
//!   or a condition that matches several resources.
//! - **503** a transient state: too many rows waiting for object storage, or a query
//!   out of memory (with `Retry-After`); the WAL stopped after a failed write or fsync
//!   (without it: only an operator's restart helps).
//! - **500** everything else, with a generic text and a request id, in the body and as
//!   `X-Request-Id`. The detail (a path, a Delta or Arrow message, perhaps patient data)
//!   goes to the log under that id, never to the client. The context a 500 names is a
//!   `&'static str` for the same reason: no request data can reach it.

use std::fmt::Display;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use medlake_ingest::issue::{Issue, operation_outcome};
use medlake_ingest::view::ViewError;
use medlake_lake::LakeError;
use medlake_query::QueryError;
use medlake_query::search::SearchError;
use medlake_query::view_run::ViewRunError;
use serde_json::Value;

/// The media type of FHIR JSON, and so of every OperationOutcome this server answers.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Seconds a client is asked to wait when writes are held back.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The header that carries a 500's request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An error answer: its status, its OperationOutcome issues and its headers.
#[derive(Debug)]
#[must_use]
pub struct ApiError {
    status: StatusCode,
    issues: Vec<Issue>,
    retry_after: Option<u64>,
    /// Set for a 500: the id the log has the detail under.
    request_id: Option<String>,
    /// Headers some answers need beyond the above (a 410's `ETag`).
    headers: HeaderMap,
}

impl ApiError {
    /// An answer with one error issue.
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        ApiError::with_issues(status, vec![Issue::error(code, diagnostics)])
    }

    /// An answer with these issues (a validation that found several problems).
    pub fn with_issues(status: StatusCode, issues: Vec<Issue>) -> Self {
        ApiError {
            status,
            issues,
            retry_after: None,
            request_id: None,
            headers: HeaderMap::new(),
        }
    }

    /// A 400: the request cannot be used as sent.
    pub fn bad_request(code: &'static str, diagnostics: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, diagnostics)
    }

    /// A 500 for a failure inside the server. `detail` goes to the log under a new
    /// request id; the client gets the id and `context` ("the write"), nothing else.
    pub fn internal(context: &'static str, detail: &dyn Display) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        tracing::error!(request_id = %id, "{context} failed: {detail}");
        ApiError {
            request_id: Some(id.clone()),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                format!(
                    "{context} failed inside the server; its log has the detail under request \
                     id {id}"
                ),
            )
        }
    }

    /// A 503 the client may retry after [`RETRY_AFTER_SECS`].
    fn retry_later(diagnostics: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(RETRY_AFTER_SECS),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "transient", diagnostics)
        }
    }

    /// The answer to a lake error. `context` names the operation for the log and for a
    /// 500's text.
    pub fn from_lake(e: &LakeError, context: &'static str) -> Self {
        match e {
            LakeError::VersionConflict { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", e.to_string())
            }
            LakeError::UnknownType(_) | LakeError::UnknownTable(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            LakeError::BadRows { .. } => ApiError::bad_request("structure", e.to_string()),
            // A view definition that cannot be used, or a view that does not exist.
            LakeError::View { .. } => ApiError::bad_request("invalid", e.to_string()),
            // Not retryable by waiting: the log stays stopped until a restart, so no
            // Retry-After. Its reason (an fsync error, a path) stays in the log.
            LakeError::WalStopped(_) => {
                tracing::error!("{context}: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "writes are stopped after a failure of the write-ahead log; nothing was \
                     stored. An operator must restart the server",
                )
            }
            LakeError::Busy { .. } | LakeError::WalFull { .. } => {
                ApiError::retry_later(e.to_string())
            }
            LakeError::BadDataUrl { .. }
            | LakeError::Io { .. }
            | LakeError::Delta { .. }
            | LakeError::Arrow(_)
            | LakeError::DataFusion(_)
            | LakeError::WalCorrupt { .. }
            | LakeError::WalLocked { .. }
            | LakeError::ReadOnly(_)
            | LakeError::Internal(_) => ApiError::internal(context, e),
        }
    }

    /// The answer to a failed `/sql` query (or any query a client wrote).
    pub fn from_query(e: &QueryError, context: &'static str) -> Self {
        match e {
            QueryError::ReadOnly(_) => ApiError::bad_request("not-supported", e.to_string()),
            QueryError::DataFusion(d) => ApiError::from_datafusion(d, context),
        }
    }

    /// The answer to a `/sql` query sent to the Ballista cluster (`--sql-engine`).
    pub fn from_cluster(e: &crate::cluster::ClusterError) -> Self {
        use crate::cluster::ClusterError;
        match e {
            ClusterError::Plan(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "processing",
                e.to_string(),
            ),
            // The cluster's failure, not this server's: its message names the scheduler.
            ClusterError::Run { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "transient", e.to_string())
            }
            ClusterError::Setup(_) => ApiError::internal("listing the tables for the cluster", e),
        }
    }

    /// The answer to a search that could not run.
    pub fn from_search(e: &SearchError, context: &'static str) -> Self {
        match e {
            SearchError::Invalid(m) => ApiError::bad_request("invalid", m.clone()),
            SearchError::UnknownParameter(p) => ApiError::bad_request(
                "not-supported",
                format!(
                    "unknown search parameter {p} (a search ignores it unless the request has \
                     Prefer: handling=strict; a condition never does)"
                ),
            ),
            SearchError::NotSupported(m) => ApiError::bad_request("not-supported", m.clone()),
            SearchError::Lake(l) => ApiError::from_lake(l, context),
        }
    }

    /// The answer to a SQL-on-FHIR view that could not be run (`$viewdefinition-run`).
    /// The scan is the server's own query, so its failures are the server's; the view
    /// and what it meets in the data are the client's.
    pub fn from_view_run(e: &ViewRunError, context: &'static str) -> Self {
        match e {
            ViewRunError::View(ViewError::Invalid { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            }
            ViewRunError::View(ViewError::Evaluation { .. }) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "processing",
                e.to_string(),
            ),
            // Only stored resources are read as text, and the lake keeps JSON.
            ViewRunError::View(ViewError::NotJson(_)) => ApiError::internal(context, e),
            ViewRunError::NotInCompartment { .. } => {
                ApiError::bad_request("not-supported", e.to_string())
            }
            ViewRunError::Query(QueryError::DataFusion(d)) => {
                match ApiError::from_datafusion(d, context) {
                    // A lake that is busy or out of memory is still that; anything else
                    // the scan meets is not the client's query.
                    a if a.status.is_server_error() => a,
                    _ => ApiError::internal(context, e),
                }
            }
            ViewRunError::Query(QueryError::ReadOnly(_)) | ViewRunError::Stored { .. } => {
                ApiError::internal(context, e)
            }
        }
    }

    /// The answer to a DataFusion error from a query the client wrote. (The server's
    /// own queries, like history's, answer any failure with [`ApiError::internal`]: a
    /// planning error there is a bug, not the client's.)
    ///
    /// The client is told DataFusion's message only for the classes that are the
    /// query's fault; the wrappers (`Context`, `Diagnostic`, `Shared`, `External`) are
    /// classified by what they wrap, so a lake error under a scan answers as the lake
    /// mapping says.
    pub fn from_datafusion(e: &DataFusionError, context: &'static str) -> Self {
        datafusion_answer(e, e, context)
    }

    /// The same answer for a gRPC client (Flight SQL): the status's nearest gRPC code
    /// and the issues' text, which for a 500 is the request id only.
    pub fn to_grpc(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
            StatusCode::NOT_FOUND | StatusCode::GONE => Code::NotFound,
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => Code::FailedPrecondition,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
            _ => Code::Unknown,
        };
        let text: Vec<&str> = self.issues.iter().map(|i| i.diagnostics.as_str()).collect();
        tonic::Status::new(code, text.join("; "))
    }

    /// Add headers (the `ETag` and `Last-Modified` of a deleted version on a 410).
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Rewrite the first issue's text, to say where the error happened ("transaction
    /// failed at entry 3: ...") or what it means ("nothing was stored").
    pub fn explain(mut self, rewrite: impl FnOnce(&str) -> String) -> Self {
        if let Some(first) = self.issues.first_mut() {
            first.diagnostics = rewrite(&first.diagnostics);
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The OperationOutcome, for answers that carry it inside something else (the
    /// response entry of a batch).
    pub fn outcome(&self) -> Value {
        operation_outcome(&self.issues)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = operation_outcome(&self.issues).to_string();
        let mut r = (self.status, body).into_response();
        let h = r.headers_mut();
        h.extend(self.headers);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(v) = self
            .request_id
            .and_then(|id| HeaderValue::from_str(&id).ok())
        {
            h.insert(REQUEST_ID_HEADER, v);
        }
        r
    }
}

/// Classify `e`, a part of `whole`: the client is told `whole`'s message (with the
/// context DataFusion added) when `e` is the query's fault.
fn datafusion_answer(
    whole: &DataFusionError,
    e: &DataFusionError,
    context: &'static str,
) -> ApiError {
    let theirs = |status, code| ApiError::new(status, code, whole.to_string());
    match e {
        DataFusionError::SQL(..) => theirs(StatusCode::BAD_REQUEST, "structure"),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            theirs(StatusCode::UNPROCESSABLE_ENTITY, "invalid")
        }
        DataFusionError::NotImplemented(_) => {
            theirs(StatusCode::UNPROCESSABLE_ENTITY, "not-supported")
        }
        // Raised by functions and operators on the rows they meet: the query planned,
        // so it is the query's (or the data's) doing.
        DataFusionError::Execution(_) => theirs(StatusCode::UNPROCESSABLE_ENTITY, "processing"),
        DataFusionError::ArrowError(a, _) => arrow_answer(whole, a, context),
        DataFusionError::ResourcesExhausted(_) => {
            tracing::warn!("{context}: {whole}");
            ApiError::retry_later(
                "the query needs more memory than the server has free now: retry later, or \
                 narrow the query",
            )
        }
        DataFusionError::External(inner) => external_answer(whole, inner.as_ref(), context),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_answer(whole, inner, context)
        }
        DataFusionError::Shared(inner) => datafusion_answer(whole, inner, context),
        DataFusionError::Collection(all) => match all.first() {
            Some(first) => datafusion_answer(whole, first, context),
            None => ApiError::internal(context, whole),
        },
        DataFusionError::ParquetError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::IoError(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::Internal(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Substrait(_)
        | DataFusionError::Ffi(_) => ApiError::internal(context, whole),
    }
}

/// Arrow errors under a query: the compute kernels' complaints about values are the
/// query's; reading, writing and building arrays are the server's.
fn arrow_answer(whole: &DataFusionError, e: &ArrowError, context: &'static str) -> ApiError {
    let theirs = |status, code| ApiError::new(status, code, whole.to_string());
    match e {
        ArrowError::CastError(_)
        | ArrowError::ComputeError(_)
        | ArrowError::DivideByZero
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::ParseError(_)
        | ArrowError::DictionaryKeyOverflowError
        | ArrowError::RunEndIndexOverflowError
        | ArrowError::OffsetOverflowError(_) => {
            theirs(StatusCode::UNPROCESSABLE_ENTITY, "processing")
        }
        ArrowError::NotYetImplemented(_) => {
            theirs(StatusCode::UNPROCESSABLE_ENTITY, "not-supported")
        }
        ArrowError::ExternalError(inner) => external_answer(whole, inner.as_ref(), context),
        ArrowError::SchemaError(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::MemoryError(_)
        | ArrowError::CsvError(_)
        | ArrowError::JsonError(_)
        | ArrowError::AvroError(_)
        | ArrowError::IoError(..)
        | ArrowError::IpcError(_)
        | ArrowError::ParquetError(_)
        | ArrowError::CDataInterface(_) => ApiError::internal(context, whole),
    }
}

/// An error boxed into DataFusion or Arrow by a table provider: the lake's own errors
/// answer as the lake mapping says; anything unknown is the server's.
fn external_answer(
    whole: &DataFusionError,
    inner: &(dyn std::error::Error + Send + Sync + 'static),
    context: &'static str,
) -> ApiError {
    if let Some(lake) = inner.downcast_ref::<LakeError>() {
        ApiError::from_lake(lake, context)
    } else if let Some(d) = inner.downcast_ref::<DataFusionError>() {
        datafusion_answer(whole, d, context)
    } else if let Some(a) = inner.downcast_ref::<ArrowError>() {
        arrow_answer(whole, a, context)
    } else {
        ApiError::internal(context, whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path and a patient's name, as an internal error might carry them.
    const SECRET: &str = "/var/lib/medlake/default/fhir/patient/part-0001.parquet Jane Doe";

    fn text(e: &ApiError) -> String {
        e.outcome().to_string()
    }

    /// A 500 tells the client nothing but the id its detail is logged under, in the body
    /// and in `X-Request-Id`.
    async fn assert_opaque_500(e: ApiError) {
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = text(&e);
        assert!(
            !body.contains("parquet") && !body.contains("Jane") && !body.contains("/var"),
            "{body}"
        );
        let id = e
            .request_id
            .as_deref()
            .expect("a 500 has a request id")
            .to_string();
        assert!(body.contains(&id), "{body}");
        let r = e.into_response();
        assert_eq!(r.headers()[REQUEST_ID_HEADER], id.as_str());
        assert_eq!(r.headers()[header::CONTENT_TYPE], FHIR_JSON);
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let oo: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["code"], "exception");
    }

    fn io_error() -> LakeError {
        LakeError::Io {
            context: SECRET.into(),
            source: std::io::Error::other("disk on fire"),
        }
    }

    #[test]
    fn lake_errors_the_client_can_act_on_keep_their_message() {
        let conflict = ApiError::from_lake(
            &LakeError::VersionConflict {
                resource: "Patient/p1".into(),
                expected: 1,
                current: Some(2),
            },
            "the write",
        );
        assert_eq!(conflict.status(), StatusCode::PRECONDITION_FAILED);
        assert!(text(&conflict).contains("version 2"));
        assert!(conflict.request_id.as_deref().is_none());
        let unknown = ApiError::from_lake(&LakeError::UnknownType("Patientt".into()), "the read");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let rows = ApiError::from_lake(
            &LakeError::BadRows {
                table: "t".into(),
                reason: "no column x".into(),
            },
            "the write",
        );
        assert_eq!(rows.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_stopped_log_is_503_and_a_full_tail_asks_to_retry() {
        let stopped = ApiError::from_lake(&LakeError::WalStopped(SECRET.into()), "the write");
        assert_eq!(stopped.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(stopped.retry_after.is_none());
        assert!(!text(&stopped).contains("Jane"));
        let busy = ApiError::from_lake(
            &LakeError::Busy {
                waiting: 10,
                bound: 10,
            },
            "the write",
        );
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.retry_after, Some(RETRY_AFTER_SECS));
        let r = busy.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }

    #[tokio::test]
    async fn a_lake_500_carries_no_internal_detail() {
        assert_opaque_500(ApiError::from_lake(
            &LakeError::Internal(SECRET.into()),
            "the write",
        ))
        .await;
        assert_opaque_500(ApiError::from_lake(&io_error(), "the read")).await;
    }

    #[tokio::test]
    async fn search_errors_are_the_clients_except_the_lakes() {
        let invalid = ApiError::from_search(
            &SearchError::Invalid("birthdate 'soon' is not a date".into()),
            "the search",
        );
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        assert_eq!(invalid.issues[0].code, "invalid");
        let unknown = ApiError::from_search(
            &SearchError::UnknownParameter("shoe-size".into()),
            "the search",
        );
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        assert!(text(&unknown).contains("shoe-size"));
        let unsupported =
            ApiError::from_search(&SearchError::NotSupported("near".into()), "the search");
        assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);
        let busy = ApiError::from_search(
            &SearchError::Lake(LakeError::Busy {
                waiting: 1,
                bound: 1,
            }),
            "the search",
        );
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.retry_after, Some(RETRY_AFTER_SECS));
        assert_opaque_500(ApiError::from_search(
            &SearchError::Lake(io_error()),
            "the search",
        ))
        .await;
    }

    #[test]
    fn query_errors_split_into_structure_and_what_cannot_be_done() {
        let read_only = ApiError::from_query(
            &QueryError::ReadOnly("DROP statements are refused".into()),
            "the query",
        );
        assert_eq!(read_only.status(), StatusCode::BAD_REQUEST);
        assert!(text(&read_only).contains("read-only"));
        let parser = datafusion::sql::sqlparser::parser::ParserError::ParserError(
            "Expected: an SQL statement, found: SELEC".into(),
        );
        let syntax = ApiError::from_query(
            &QueryError::DataFusion(DataFusionError::SQL(Box::new(parser), None)),
            "the query",
        );
        assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);
        assert_eq!(syntax.issues[0].code, "structure");
        assert!(text(&syntax).contains("SELEC"));
        let plan = ApiError::from_query(
            &QueryError::DataFusion(DataFusionError::Plan(
                "table 'medlake.fhir.nope' not found".into(),
            )),
            "the query",
        );
        assert_eq!(plan.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text(&plan).contains("nope"));
    }

    #[tokio::test]
    async fn datafusion_errors_are_classified_by_what_they_wrap() {
        let divide = DataFusionError::Context(
            "evaluating 1/0".into(),
            Box::new(DataFusionError::ArrowError(
                Box::new(ArrowError::DivideByZero),
                None,
            )),
        );
        let e = ApiError::from_datafusion(&divide, "the query");
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.issues[0].code, "processing");

        let memory = DataFusionError::ResourcesExhausted("pool is full".into());
        let e = ApiError::from_datafusion(&memory, "the query");
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(RETRY_AFTER_SECS));

        // A lake error a table provider boxed keeps the lake's status.
        let conflict = DataFusionError::External(Box::new(LakeError::UnknownTable("x".into())));
        assert_eq!(
            ApiError::from_datafusion(&conflict, "the query").status(),
            StatusCode::NOT_FOUND
        );

        // Storage failures, wrapped or not, are the server's and say nothing of themselves.
        let wrapped = DataFusionError::Shared(std::sync::Arc::new(DataFusionError::Context(
            "scanning".into(),
            Box::new(DataFusionError::External(Box::new(io_error()))),
        )));
        assert_opaque_500(ApiError::from_datafusion(&wrapped, "the query")).await;
        let io = DataFusionError::IoError(std::io::Error::other(SECRET));
        assert_opaque_500(ApiError::from_datafusion(&io, "the query")).await;
        let internal = DataFusionError::Internal(SECRET.into());
        assert_opaque_500(ApiError::from_datafusion(&internal, "the query")).await;
        let arrow_io = DataFusionError::ArrowError(
            Box::new(ArrowError::IoError(
                SECRET.into(),
                std::io::Error::other("x"),
            )),
            None,
        );
        assert_opaque_500(ApiError::from_datafusion(&arrow_io, "the query")).await;
    }

    #[test]
    fn extra_headers_and_explanations_reach_the_response() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"2\""));
        let gone = ApiError::new(StatusCode::GONE, "deleted", "Patient/p1 was deleted")
            .with_headers(headers)
            .explain(|d| format!("entry 0: {d}"));
        assert_eq!(text(&gone), {
            let oo =
                operation_outcome(&[Issue::error("deleted", "entry 0: Patient/p1 was deleted")]);
            oo.to_string()
        });
        let r = gone.into_response();
        assert_eq!(r.status(), StatusCode::GONE);
        assert_eq!(r.headers()[header::ETAG], "W/\"2\"");
        assert!(r.headers().get(REQUEST_ID_HEADER).is_none());
    }
}
