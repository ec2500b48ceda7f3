//! `$viewdefinition-run`: a SQL-on-FHIR view run over the lake or over resources sent
//! with the request, answered as a table (SQL-on-FHIR v2 IG, OperationDefinition
//! `ViewDefinitionRun`).
//!
//! # Endpoints
//!
//! - `GET|POST /fhir/$viewdefinition-run` (system level, the IG's R4 mode) and
//!   `GET|POST /fhir/ViewDefinition/$viewdefinition-run` (type level): the view is
//!   `viewResource` (inline, POST only) or `viewReference` (a stored one);
//! - `GET|POST /fhir/ViewDefinition/<id>/$viewdefinition-run` (instance level): the
//!   stored view `<id>`.
//!
//! `$run`, the name earlier drafts of the IG used, is accepted at type and instance level
//! as well. A POST carries a `Parameters` resource; a GET, or a POST's query string,
//! carries the parameters that are not resources.
//!
//! # Parameters
//!
//! `_format` (`json`, `ndjson`, `csv`, `parquet`, or their media types; else `Accept`;
//! else JSON), `header` (CSV header row, default true), `viewReference`
//! (`ViewDefinition/<id>`, `ViewDefinition/<id>/_history/<v>`, the same under this
//! server's base URL, or a canonical `url` with an optional `|version`, found by the
//! stored views' `url`), `viewResource`, `resource` (the resources to run over, instead of
//! the lake's), `patient` and `group` (only the Patient compartments of that patient, of
//! the group's active Patient members, or of both), `_since` (resources last updated
//! after that instant), `_limit` (at most that many rows). `source` (an external data
//! source) is answered 400 "not supported": the lake is the only source.
//!
//! # Answers
//!
//! JSON is one array of row objects (keys in column order, nulls explicit, collections
//! as arrays), NDJSON one object per line, CSV one line per row with collections and
//! complex values as JSON text, Parquet one file with the typed columns of
//! [`medlake_query::view_batch`]. JSON, NDJSON and CSV are streamed while the scan runs
//! ([`medlake_query::view_run::run_over_lake`]); the answer waits for the first rows (or
//! the end) so that a view that fails at once is a proper OperationOutcome. A failure
//! after rows were sent (a later resource a column cannot take) can no longer change the
//! status: the body is cut off, which a client sees as an incomplete chunked answer, and
//! the error is logged. Parquet needs every row before it can write its footer.
//!
//! The CSV writer is a few lines here rather than Arrow's because it writes the rows'
//! JSON values as they are: Arrow's would type each chunk separately (a chunk of full
//! dateTimes becomes timestamps, printed in UTC, the next chunk's partial ones text), so
//! one column could change its form halfway through an answer.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use medlake_ingest::issue::Issue;
use medlake_ingest::validate::VIEW_DEFINITION;
use medlake_ingest::view::{ViewDefinition, ViewError};
use medlake_query::view_run::{
    PatientFilter, RunFilter, ViewRows, ViewRunError, run_over_lake, run_over_resources,
};
use serde_json::Value;

use super::search::query_pairs;
use super::{check_id, conditional, not_found};
use crate::error::ApiError;
use crate::server::AppState;

/// The operation's canonical name, and its definition in the IG.
pub(super) const OPERATION: &str = "viewdefinition-run";
pub(super) const DEFINITION: &str =
    "http://sql-on-fhir.org/OperationDefinition/$viewdefinition-run";

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Json,
    Ndjson,
    Csv,
    Parquet,
}

impl OutputFormat {
    /// A `_format` value: a short name or a media type.
    fn parse(s: &str) -> Option<OutputFormat> {
        let media = s.split(';').next().unwrap_or(s).trim();
        Some(match media {
            "json" | "application/json" | "application/fhir+json" => OutputFormat::Json,
            "ndjson"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/fhir+ndjson" => OutputFormat::Ndjson,
            "csv" | "text/csv" => OutputFormat::Csv,
            "parquet"
            | "application/vnd.apache.parquet"
            | "application/parquet"
            | "application/octet-stream" => OutputFormat::Parquet,
            _ => return None,
        })
    }

    /// The format an `Accept` header asks for; JSON when it names none of them.
    fn from_accept(accept: &str) -> OutputFormat {
        accept
            .split(',')
            .find_map(OutputFormat::parse)
            .unwrap_or(OutputFormat::Json)
    }

    fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Json => "application/json",
            OutputFormat::Ndjson => "application/x-ndjson",
            OutputFormat::Csv => "text/csv; charset=utf-8",
            OutputFormat::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// One parameter as sent, from the query string or the `Parameters` body.
enum ParamValue {
    /// A query-string value or a primitive `value[x]`, as text.
    Text(String),
    /// A `valueReference`'s `reference`.
    Reference(String),
    Resource(Value),
}

/// What a run was asked for.
struct RunRequest {
    format: OutputFormat,
    header: bool,
    view_reference: Option<String>,
    view_resource: Option<Value>,
    patient: Option<String>,
    groups: Vec<String>,
    resources: Option<Vec<Value>>,
    limit: Option<usize>,
    since: Option<i64>,
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::with_issues(
        StatusCode::BAD_REQUEST,
        vec![Issue::error("invalid", message).at(param)],
    )
}

fn text_of(name: &str, v: ParamValue) -> Result<String, ApiError> {
    match v {
        ParamValue::Text(t) | ParamValue::Reference(t) => Ok(t),
        ParamValue::Resource(_) => Err(invalid(
            name,
            format!("{name} takes a value, not a resource"),
        )),
    }
}

/// Set a parameter that may be given once.
fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), ApiError> {
    if slot.is_some() {
        return Err(invalid(name, format!("{name} may be given only once")));
    }
    *slot = Some(value);
    Ok(())
}

impl RunRequest {
    fn from_params(
        params: Vec<(String, ParamValue)>,
        headers: &HeaderMap,
    ) -> Result<RunRequest, ApiError> {
        let mut format = None;
        let mut header = None;
        let mut view_reference = None;
        let mut view_resource = None;
        let mut patient = None;
        let mut groups = Vec::new();
        let mut resources: Option<Vec<Value>> = None;
        let mut limit = None;
        let mut since = None;
        for (name, value) in params {
            match name.as_str() {
                "_format" => {
                    let text = text_of(&name, value)?;
                    let f = OutputFormat::parse(&text).ok_or_else(|| {
                        ApiError::with_issues(
                            StatusCode::BAD_REQUEST,
                            vec![
                                Issue::error(
                                    "not-supported",
                                    format!(
                                        "the format '{text}' is not supported: use json, ndjson, csv or parquet"
                                    ),
                                )
                                .at("_format"),
                            ],
                        )
                    })?;
                    once(&mut format, &name, f)?;
                }
                "header" => {
                    let h = match text_of(&name, value)?.as_str() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(invalid(
                                "header",
                                format!("header is true or false, not '{other}'"),
                            ));
                        }
                    };
                    once(&mut header, &name, h)?;
                }
                "viewReference" => {
                    let r = text_of(&name, value)?;
                    once(&mut view_reference, &name, r)?;
                }
                "viewResource" => match value {
                    ParamValue::Resource(r) => once(&mut view_resource, &name, r)?,
                    _ => {
                        return Err(invalid(
                            "viewResource",
                            "viewResource is an inline ViewDefinition: POST a Parameters resource with it as the parameter's resource".into(),
                        ));
                    }
                },
                "patient" => {
                    let r = text_of(&name, value)?;
                    once(&mut patient, &name, r)?;
                }
                "group" => groups.push(text_of(&name, value)?),
                "resource" => match value {
                    ParamValue::Resource(r) => resources.get_or_insert_default().push(r),
                    _ => {
                        return Err(invalid(
                            "resource",
                            "resource takes a FHIR resource: POST a Parameters resource with it as the parameter's resource".into(),
                        ));
                    }
                },
                "_limit" => {
                    let text = text_of(&name, value)?;
                    let n = text.parse::<usize>().map_err(|_| {
                        invalid(
                            "_limit",
                            format!("_limit is a number of rows (0 or more), not '{text}'"),
                        )
                    })?;
                    once(&mut limit, &name, n)?;
                }
                "_since" => {
                    let text = text_of(&name, value)?;
                    let t = chrono::DateTime::parse_from_rfc3339(&text).map_err(|_| {
                        invalid(
                            "_since",
                            format!(
                                "_since is an instant with a time zone, like 2024-01-31T12:00:00Z, not '{text}'"
                            ),
                        )
                    })?;
                    once(&mut since, &name, t.timestamp_micros())?;
                }
                "source" => {
                    return Err(ApiError::with_issues(
                        StatusCode::BAD_REQUEST,
                        vec![
                            Issue::error(
                                "not-supported",
                                "the source parameter is not supported: views run over this server's lake, or over the resources given as resource parameters",
                            )
                            .at("source"),
                        ],
                    ));
                }
                // Pretty-printing asks for nothing a table could honour; ignore it as
                // every other interaction does.
                "_pretty" => {}
                other => {
                    return Err(ApiError::with_issues(
                        StatusCode::BAD_REQUEST,
                        vec![Issue::error(
                            "not-supported",
                            format!(
                                "unknown parameter '{other}' of ${OPERATION}: it takes _format, header, viewReference, viewResource, patient, group, resource, _limit and _since"
                            ),
                        )
                        .at(other)],
                    ));
                }
            }
        }
        let format = match format {
            Some(f) => f,
            None => OutputFormat::from_accept(
                headers
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            ),
        };
        Ok(RunRequest {
            format,
            header: header.unwrap_or(true),
            view_reference,
            view_resource,
            patient,
            groups,
            resources,
            limit,
            since,
        })
    }
}

/// The parameters of a request: its query string, then its `Parameters` body.
fn request_params(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, ParamValue)>, ApiError> {
    let mut params: Vec<(String, ParamValue)> = query_pairs(uri.query())
        .into_iter()
        .map(|(k, v)| (k, ParamValue::Text(v)))
        .collect();
    if *method != Method::POST || body.is_empty() {
        return Ok(params);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("xml") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "FHIR XML is not supported: send the Parameters as application/fhir+json",
        ));
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("structure", format!("the body is not valid JSON: {e}"))
    })?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            "invalid",
            format!("${OPERATION} takes a Parameters resource as its body"),
        ));
    }
    let list = match body.get("parameter") {
        None => &Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(ApiError::bad_request(
                "structure",
                "Parameters.parameter must be an array",
            ));
        }
    };
    for (i, p) in list.iter().enumerate() {
        let at = format!("Parameters.parameter[{i}]");
        let Some(obj) = p.as_object() else {
            return Err(invalid(&at, format!("{at} must be an object")));
        };
        let Some(name) = obj.get("name").and_then(Value::as_str) else {
            return Err(invalid(&at, format!("{at} has no name")));
        };
        if obj.contains_key("part") {
            return Err(ApiError::bad_request(
                "not-supported",
                format!("{at} ({name}) has parts, which ${OPERATION} does not take"),
            ));
        }
        let value = if let Some(r) = obj.get("resource") {
            ParamValue::Resource(r.clone())
        } else if let Some(r) = obj.get("valueReference") {
            match r.get("reference").and_then(Value::as_str) {
                Some(r) => ParamValue::Reference(r.to_string()),
                None => {
                    return Err(invalid(
                        &at,
                        format!(
                            "{at} ({name}): the reference has no 'reference' (a logical reference by identifier is not supported)"
                        ),
                    ));
                }
            }
        } else {
            let primitive = obj
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| v);
            match primitive {
                Some(Value::String(s)) => ParamValue::Text(s.clone()),
                Some(v @ (Value::Bool(_) | Value::Number(_))) => ParamValue::Text(v.to_string()),
                _ => {
                    return Err(invalid(
                        &at,
                        format!("{at} ({name}) has no value: give a value[x] or a resource"),
                    ));
                }
            }
        };
        params.push((name.to_string(), value));
    }
    Ok(params)
}

/// `/$viewdefinition-run` and `/ViewDefinition/$viewdefinition-run`.
pub(super) async fn run_type(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    run(state, None, method, uri, headers, body).await
}

/// `/ViewDefinition/<id>/$viewdefinition-run`.
pub(super) async fn run_instance(
    State(state): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    run(state, Some(id), method, uri, headers, body).await
}

async fn run(
    state: AppState,
    instance: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request =
        RunRequest::from_params(request_params(&method, &uri, &headers, &body)?, &headers)?;
    let view = Arc::new(resolve_view(&state, instance.as_deref(), &request).await?);
    let over_lake = request.resources.is_none();
    let patients = patient_ids(&state, &request, over_lake).await?;
    let filter = RunFilter {
        since: request.since,
        patients: match patients {
            Some(ids) => Some(
                PatientFilter::new(view.resource_type(), ids)
                    .map_err(|e| ApiError::from_view_run(&e, "the view"))?,
            ),
            None => None,
        },
        limit: request.limit,
    };
    let source = match request.resources {
        Some(resources) => {
            for (i, r) in resources.iter().enumerate() {
                if r.get("resourceType").and_then(Value::as_str).is_none() {
                    return Err(invalid(
                        &format!("resource[{i}]"),
                        format!("resource[{i}] is not a FHIR resource: it has no resourceType"),
                    ));
                }
            }
            let view = view.clone();
            let rows =
                tokio::task::spawn_blocking(move || run_over_resources(&view, &resources, &filter))
                    .await
                    .map_err(|e| ApiError::internal("the view", &e))?
                    .map_err(|e| ApiError::from_view_run(&e, "the view"))?;
            Rows::Ready(Some(rows))
        }
        None => Rows::Lake(run_over_lake(&state.engine, view.clone(), filter)),
    };
    answer(view, request.format, request.header, source).await
}

/// The view a run is for: the instance's, the reference's, or the inline one.
async fn resolve_view(
    state: &AppState,
    instance: Option<&str>,
    request: &RunRequest,
) -> Result<ViewDefinition, ApiError> {
    let (json, param) = match (instance, &request.view_reference, &request.view_resource) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid",
                "an instance-level run takes its ViewDefinition from the URL: leave out viewReference and viewResource",
            ));
        }
        (None, Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid",
                "give either viewReference or viewResource, not both",
            ));
        }
        (None, None, None) => {
            return Err(ApiError::bad_request(
                "required",
                "either viewReference or viewResource parameter is required when invoking at type or system level",
            ));
        }
        (Some(id), None, None) => (read_view(state, id, None).await?, None),
        (None, Some(reference), None) => (
            referenced_view(state, reference).await?,
            Some("viewReference"),
        ),
        (None, None, Some(inline)) => (inline.clone(), Some("viewResource")),
    };
    ViewDefinition::from_json(&json).map_err(|e| {
        let issue = match &e {
            ViewError::Invalid { at, message } => {
                let issue = Issue::error(
                    "invalid",
                    format!("the ViewDefinition is invalid: {message}"),
                );
                match param {
                    Some(p) if at != "(root)" => issue.at(format!("{p}.{at}")),
                    Some(p) => issue.at(p),
                    None => issue,
                }
            }
            ViewError::Evaluation { .. } | ViewError::NotJson(_) => {
                Issue::error("invalid", e.to_string())
            }
        };
        ApiError::with_issues(StatusCode::UNPROCESSABLE_ENTITY, vec![issue])
    })
}

/// A stored ViewDefinition, current or at a version.
async fn read_view(state: &AppState, id: &str, version: Option<i64>) -> Result<Value, ApiError> {
    check_id(id)?;
    let found = match version {
        None => state.lake.read_latest(VIEW_DEFINITION, id).await,
        Some(v) => state.lake.read_version(VIEW_DEFINITION, id, v).await,
    }
    .map_err(|e| ApiError::from_lake(&e, "the read of the ViewDefinition"))?;
    match found {
        Some(v) if !v.deleted => serde_json::from_str(&v.resource)
            .map_err(|e| ApiError::internal("the read of the ViewDefinition", &e)),
        Some(_) | None => Err(not_found(VIEW_DEFINITION, id)),
    }
}

/// The view a `viewReference` names: by id on this server, or by canonical URL.
async fn referenced_view(state: &AppState, reference: &str) -> Result<Value, ApiError> {
    let local = reference
        .strip_prefix(state.fhir_base.as_str())
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(reference);
    if let Some(rest) = local.strip_prefix("ViewDefinition/") {
        return match rest.split('/').collect::<Vec<_>>()[..] {
            [id] => read_view(state, id, None).await,
            [id, "_history", v] => match v.parse::<i64>() {
                Ok(v) => read_view(state, id, Some(v)).await,
                Err(_) => Err(invalid(
                    "viewReference",
                    format!("'{v}' in viewReference is not a version number"),
                )),
            },
            _ => Err(invalid(
                "viewReference",
                format!(
                    "viewReference '{reference}' is not ViewDefinition/<id> or ViewDefinition/<id>/_history/<version>"
                ),
            )),
        };
    }
    if !local.contains("://") && !local.starts_with("urn:") {
        return Err(invalid(
            "viewReference",
            format!(
                "viewReference '{reference}' is neither ViewDefinition/<id> nor a canonical URL"
            ),
        ));
    }
    // A canonical URL: the stored view with that `url` (and version, when given).
    let (url, version) = match local.split_once('|') {
        Some((u, v)) => (u, Some(v)),
        None => (local, None),
    };
    let condition = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("url", url)
        .finish();
    let matches = conditional::search(state, VIEW_DEFINITION, &condition).await?;
    let Some(id) = matches.at_most_one()?.map(str::to_string) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no ViewDefinition stored here has the url {url}"),
        ));
    };
    let json = read_view(state, &id, None).await?;
    if let Some(want) = version
        && json.get("version").and_then(Value::as_str) != Some(want)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!(
                "the ViewDefinition with url {url} is not at version {want} (only the current version of a view is found by its url)"
            ),
        ));
    }
    Ok(json)
}

/// The ids of the patients a run is restricted to, from `patient` and `group` (both:
/// those in both). A patient or group that is not there is an error, as the IG asks.
async fn patient_ids(
    state: &AppState,
    request: &RunRequest,
    over_lake: bool,
) -> Result<Option<HashSet<String>>, ApiError> {
    let mut out: Option<HashSet<String>> = None;
    if let Some(reference) = &request.patient {
        let id = typed_id(reference, "Patient", "patient")?;
        if over_lake && !exists(state, "Patient", &id).await? {
            return Err(ApiError::with_issues(
                StatusCode::BAD_REQUEST,
                vec![
                    Issue::error("not-found", format!("Patient with id '{id}' not found"))
                        .at("patient"),
                ],
            ));
        }
        out = Some(HashSet::from([id]));
    }
    if !request.groups.is_empty() {
        let mut members = HashSet::new();
        for reference in &request.groups {
            let id = typed_id(reference, "Group", "group")?;
            let group = group_resource(state, request, &id).await?;
            members.extend(group_patients(&group));
        }
        out = Some(match out {
            Some(patients) => patients.intersection(&members).cloned().collect(),
            None => members,
        });
    }
    Ok(out)
}

/// `Patient/123` (or a bare `123`) as `123`.
fn typed_id(reference: &str, ty: &str, param: &str) -> Result<String, ApiError> {
    let id = match reference.split_once('/') {
        None => reference,
        Some((t, id)) if t == ty && !id.contains('/') => id,
        Some(_) => {
            return Err(invalid(
                param,
                format!("{param} is a reference to a {ty}, like {ty}/123, not '{reference}'"),
            ));
        }
    };
    check_id(id)?;
    Ok(id.to_string())
}

async fn exists(state: &AppState, ty: &str, id: &str) -> Result<bool, ApiError> {
    match state.lake.read_latest(ty, id).await {
        Ok(found) => Ok(found.is_some_and(|v| !v.deleted)),
        Err(e) => Err(ApiError::from_lake(&e, "the read")),
    }
}

/// A Group: from the resources sent with the request, else from the lake.
async fn group_resource(
    state: &AppState,
    request: &RunRequest,
    id: &str,
) -> Result<Value, ApiError> {
    let sent = request.resources.iter().flatten().find(|r| {
        r.get("resourceType").and_then(Value::as_str) == Some("Group")
            && r.get("id").and_then(Value::as_str) == Some(id)
    });
    if let Some(g) = sent {
        return Ok(g.clone());
    }
    let not_there = || {
        ApiError::with_issues(
            StatusCode::BAD_REQUEST,
            vec![Issue::error("not-found", format!("Group with id '{id}' not found")).at("group")],
        )
    };
    match state.lake.read_latest("Group", id).await {
        Ok(Some(v)) if !v.deleted => {
            serde_json::from_str(&v.resource).map_err(|e| ApiError::internal("the read", &e))
        }
        Ok(_) => Err(not_there()),
        Err(e) => Err(ApiError::from_lake(&e, "the read")),
    }
}

/// The ids of a Group's Patient members that are not marked inactive.
fn group_patients(group: &Value) -> Vec<String> {
    group
        .get("member")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("inactive").and_then(Value::as_bool) != Some(true))
        .filter_map(|m| m.pointer("/entity/reference").and_then(Value::as_str))
        .filter_map(|r| {
            let mut parts = r.rsplit('/');
            let id = parts.next()?;
            (parts.next()? == "Patient").then(|| id.to_string())
        })
        .collect()
}

/// Where the rows come from.
enum Rows {
    /// Already evaluated (resources sent with the request); taken on first use.
    Ready(Option<Vec<Vec<Value>>>),
    Lake(ViewRows),
}

impl Rows {
    async fn next(&mut self) -> Option<Result<Vec<Vec<Value>>, ViewRunError>> {
        match self {
            Rows::Ready(rows) => rows.take().map(Ok),
            Rows::Lake(rows) => rows.next().await,
        }
    }
}

/// Writes rows in one of the streamed formats, chunk by chunk.
struct Encoder {
    format: OutputFormat,
    names: Vec<String>,
    header: bool,
    /// Whether anything (a JSON `[`, a CSV header) was written yet.
    started: bool,
}

impl Encoder {
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        match self.format {
            OutputFormat::Json => out.push(b'['),
            OutputFormat::Csv if self.header => {
                let names: Vec<Value> = self.names.iter().cloned().map(Value::String).collect();
                csv_line(&names, out);
            }
            _ => {}
        }
    }

    fn chunk(&mut self, rows: &[Vec<Value>]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rows.len() * 64);
        for row in rows {
            match self.format {
                OutputFormat::Json => {
                    if self.started {
                        out.push(b',');
                    }
                    self.start(&mut out);
                    self.object(row, &mut out);
                }
                OutputFormat::Ndjson => {
                    self.object(row, &mut out);
                    out.push(b'\n');
                }
                OutputFormat::Csv => {
                    self.start(&mut out);
                    csv_line(row, &mut out);
                }
                OutputFormat::Parquet => {}
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.start(&mut out);
        if self.format == OutputFormat::Json {
            out.push(b']');
        }
        out
    }

    /// One row as a JSON object, keys in column order.
    fn object(&self, row: &[Value], out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, value)) in self.names.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(Value::String(name.clone()).to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.to_string().as_bytes());
        }
        out.push(b'}');
    }
}

/// One CSV line (RFC 4180): strings as they are, null empty, anything else as its JSON
/// text; quoted when it holds a comma, quote or line break.
fn csv_line(values: &[Value], out: &mut Vec<u8>) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let text = match v {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn ok_response(format: OutputFormat, body: Body) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

async fn answer(
    view: Arc<ViewDefinition>,
    format: OutputFormat,
    header: bool,
    mut rows: Rows,
) -> Result<Response, ApiError> {
    if format == OutputFormat::Parquet {
        let mut all = Vec::new();
        while let Some(chunk) = rows.next().await {
            all.extend(chunk.map_err(|e| ApiError::from_view_run(&e, "the view"))?);
        }
        let bytes = parquet_file(&view, &all)?;
        return Ok(ok_response(format, Body::from(bytes)));
    }
    let mut encoder = Encoder {
        format,
        names: view.columns().iter().map(|c| c.name.clone()).collect(),
        header,
        started: false,
    };
    // Wait for the first rows, so that a view failing at once gets its status.
    let first = match rows.next().await {
        Some(Ok(chunk)) => encoder.chunk(&chunk),
        Some(Err(e)) => return Err(ApiError::from_view_run(&e, "the view")),
        None => return Ok(ok_response(format, Body::from(encoder.finish()))),
    };
    let stream = futures::stream::unfold(
        (Some(first), Some((rows, encoder))),
        |(pending, state)| async move {
            if let Some(bytes) = pending {
                return Some((Ok(Bytes::from(bytes)), (None, state)));
            }
            let (mut rows, mut encoder) = state?;
            match rows.next().await {
                Some(Ok(chunk)) => {
                    let bytes = encoder.chunk(&chunk);
                    Some((Ok(Bytes::from(bytes)), (None, Some((rows, encoder)))))
                }
                Some(Err(e)) => {
                    tracing::error!(
                        "a view failed after its answer had begun; the body is cut off: {e}"
                    );
                    Some((Err(std::io::Error::other(e.to_string())), (None, None)))
                }
                None => Some((Ok(Bytes::from(encoder.finish())), (None, None))),
            }
        },
    );
    Ok(ok_response(format, Body::from_stream(stream)))
}

fn parquet_file(view: &ViewDefinition, rows: &[Vec<Value>]) -> Result<Vec<u8>, ApiError> {
    let batch = medlake_query::view_batch::rows_to_batch(view, rows).map_err(|e| match e {
        medlake_query::view_batch::ViewBatchError::Value { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "processing",
            e.to_string(),
        ),
        medlake_query::view_batch::ViewBatchError::Arrow(_) => {
            ApiError::internal("the Parquet answer", &e)
        }
    })?;
    let mut buf = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)
        .map_err(|e| ApiError::internal("the Parquet answer", &e))?;
    writer
        .write(&batch)
        .and_then(|()| writer.close().map(drop))
        .map_err(|e| ApiError::internal("the Parquet answer", &e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(format: OutputFormat, header: bool, chunks: &[Vec<Vec<Value>>]) -> String {
        let mut e = Encoder {
            format,
            names: vec!["id".into(), "given".into()],
            header,
            started: false,
        };
        let mut out = Vec::new();
        for c in chunks {
            out.extend(e.chunk(c));
        }
        out.extend(e.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_over_several_chunks() {
        let chunks = vec![
            vec![vec![json!("a"), json!(["x, y", "z"])]],
            vec![],
            vec![vec![json!("b\"c"), Value::Null]],
        ];
        let text = encode(OutputFormat::Json, true, &chunks);
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!([{"id": "a", "given": ["x, y", "z"]}, {"id": "b\"c", "given": null}])
        );
        assert_eq!(
            encode(OutputFormat::Ndjson, true, &chunks),
            "{\"id\":\"a\",\"given\":[\"x, y\",\"z\"]}\n{\"id\":\"b\\\"c\",\"given\":null}\n"
        );
        assert_eq!(
            encode(OutputFormat::Csv, true, &chunks),
            "id,given\r\na,\"[\"\"x, y\"\",\"\"z\"\"]\"\r\n\"b\"\"c\",\r\n"
        );
        assert_eq!(
            encode(OutputFormat::Csv, false, &chunks[2..]),
            "\"b\"\"c\",\r\n"
        );
        // Nothing at all is still a document.
        assert_eq!(encode(OutputFormat::Json, true, &[]), "[]");
        assert_eq!(encode(OutputFormat::Csv, true, &[]), "id,given\r\n");
        assert_eq!(encode(OutputFormat::Ndjson, true, &[]), "");
    }

    #[test]
    fn formats_by_name_media_type_and_accept() {
        assert_eq!(OutputFormat::parse("csv"), Some(OutputFormat::Csv));
        assert_eq!(
            OutputFormat::parse("application/x-ndjson"),
            Some(OutputFormat::Ndjson)
        );
        assert_eq!(OutputFormat::parse("xml"), None);
        assert_eq!(
            OutputFormat::from_accept("text/html, text/csv;q=0.9"),
            OutputFormat::Csv
        );
        assert_eq!(OutputFormat::from_accept("*/*"), OutputFormat::Json);
    }

    #[test]
    fn group_members_are_active_patients() {
        let g = json!({"resourceType": "Group", "member": [
            {"entity": {"reference": "Patient/p1"}},
            {"entity": {"reference": "Patient/p2"}, "inactive": true},
            {"entity": {"reference": "Practitioner/d1"}}
        ]});
        assert_eq!(group_patients(&g), ["p1"]);
    }
}
