//! batch and transaction: `POST /fhir` with a Bundle.
//!
//! A **transaction** is one [`Lake::write`](medlake_lake::Lake::write): every write of
//! the Bundle goes into one write-ahead-log record (its CRC covers all of it, so a crash
//! keeps all or none) after every precondition was checked under the lake's lock. Before
//! that, `urn:uuid:` (and other) fullUrls of new resources get server ids and every
//! reference to them is rewritten, and the entries are taken in the order the
//! specification gives: DELETE, POST, PUT, then GET. Any failing entry fails the whole
//! transaction with its status and an OperationOutcome that names the entry.
//!
//! A **batch** runs each entry on its own; each answers with its own status.
//!
//! PATCH entries carry a Parameters resource (FHIRPath Patch) or a Binary holding a JSON
//! Patch, as the specification describes.
//!
//! Not supported yet, and refused as such: conditional create, update and delete,
//! conditional references (`Patient?identifier=...`), and searches.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medlake_ingest::issue::{Issue, operation_outcome};
use medlake_ingest::prepare::prepare_value;
use medlake_lake::{ResourceVersion, WriteOp, Written, instant_string};
use serde_json::{Map, Value, json};

use super::patch::{Patch, patched};
use super::search;
use super::write::{Return, prefer_return};
use super::{FHIR_JSON, check_format, check_id, check_type, is_pretty, outcome};
use crate::server::AppState;

/// Why an entry failed: its HTTP status and what to tell the client.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    issue: Issue,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            issue: Issue::error(code, message),
        }
    }

    fn not_supported(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_IMPLEMENTED, "not-supported", message)
    }
}

/// What an entry asks for, once understood.
#[derive(Debug)]
enum Action {
    Create {
        resource_type: String,
        id: String,
        resource: Map<String, Value>,
    },
    Update {
        resource_type: String,
        id: String,
        resource: Map<String, Value>,
        if_match: Option<i64>,
    },
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<i64>,
    },
    Patch {
        resource_type: String,
        id: String,
        patch: Patch,
        if_match: Option<i64>,
    },
    Read {
        resource_type: String,
        id: String,
        version: Option<i64>,
    },
    /// A search (`Observation?code=...`, `Patient/1/Observation`), answered with a
    /// searchset Bundle.
    Search { path: String, query: String },
}

impl Action {
    /// The order of processing in a transaction.
    fn rank(&self) -> u8 {
        match self {
            Action::Delete { .. } => 0,
            Action::Create { .. } => 1,
            Action::Update { .. } | Action::Patch { .. } => 2,
            Action::Read { .. } | Action::Search { .. } => 3,
        }
    }
}

/// The answer to one entry.
struct Answer {
    status: StatusCode,
    /// A resource to answer with that is not a stored version (a searchset Bundle).
    resource: Option<Value>,
    version: Option<ResourceVersion>,
    outcome: Option<Value>,
}

pub async fn post_bundle(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_format(&params, &headers) {
        return r;
    }
    let bundle: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return outcome(
                StatusCode::BAD_REQUEST,
                Issue::error("structure", format!("the body is not valid JSON: {e}")),
            );
        }
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return outcome(
            StatusCode::BAD_REQUEST,
            Issue::error(
                "invalid",
                "POST to the base URL takes a Bundle of type batch or transaction",
            ),
        );
    }
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let prefer = prefer_return(&headers);
    let pretty = is_pretty(&params);
    match kind {
        "transaction" => transaction(&state, entries, prefer, pretty).await,
        "batch" => batch(&state, entries, prefer, pretty).await,
        other => outcome(
            StatusCode::BAD_REQUEST,
            Issue::error(
                "invalid",
                format!(
                    "a Bundle of type '{other}' cannot be processed: send a batch or a transaction"
                ),
            ),
        ),
    }
}

/// The version an entry's `request.ifMatch` names.
fn entry_if_match(request: &Value) -> Result<Option<i64>, Failure> {
    let Some(text) = request.get("ifMatch").and_then(Value::as_str) else {
        return Ok(None);
    };
    let bare = text.trim().strip_prefix("W/").unwrap_or(text.trim());
    bare.trim_matches('"').parse().map(Some).map_err(|_| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("ifMatch '{text}' is not a version ETag like W/\"3\""),
        )
    })
}

/// `Type/id` or `Type/id/_history/v` of a request URL (relative, or under our base).
fn parse_url<'a>(state: &AppState, url: &'a str) -> Result<Vec<&'a str>, Failure> {
    let relative = url
        .strip_prefix(state.fhir_base.as_str())
        .unwrap_or(url)
        .trim_start_matches('/');
    if relative.contains('?') {
        return Err(Failure::not_supported(format!(
            "'{url}': searches in a Bundle entry are not supported"
        )));
    }
    Ok(relative.split('/').collect())
}

/// The resource of an entry, checked against R4 and against the URL's type.
fn entry_resource(entry: &Value, resource_type: &str) -> Result<Map<String, Value>, Failure> {
    let Some(resource) = entry.get("resource").cloned() else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "required",
            "this entry has no resource",
        ));
    };
    let found = resource.get("resourceType").and_then(Value::as_str);
    if found != Some(resource_type) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "the resource is {}, but the request is for {resource_type}",
                found.unwrap_or("of no type")
            ),
        ));
    }
    match prepare_value(resource) {
        Ok(p) => Ok(p.resource),
        Err(rejected) => {
            let detail = rejected
                .issues
                .iter()
                .map(|i| i.diagnostics.clone())
                .collect::<Vec<_>>()
                .join("; ");
            Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the resource is not valid FHIR R4: {detail}"),
            ))
        }
    }
}

/// Understand one entry. `ids` maps fullUrls of new resources to their `Type/id`.
fn understand(
    state: &AppState,
    entry: &Value,
    ids: &HashMap<String, String>,
) -> Result<Action, Failure> {
    let request = entry.get("request").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request.get("url").and_then(Value::as_str).unwrap_or("");
    if request.get("ifNoneMatch").is_some() || request.get("ifModifiedSince").is_some() {
        return Err(Failure::not_supported(
            "conditional reads in a Bundle (ifNoneMatch, ifModifiedSince) are not supported",
        ));
    }
    if method == "GET" {
        // Anything but `Type/id` and `Type/id/_history/v` is a search.
        let relative = url
            .strip_prefix(state.fhir_base.as_str())
            .unwrap_or(url)
            .trim_start_matches('/');
        let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let read = !relative.contains('?')
            && (segments.len() == 2 || segments.len() == 4 && segments[2] == "_history");
        if !read {
            return Ok(Action::Search {
                path: path.to_string(),
                query: query.to_string(),
            });
        }
    }
    let parts = parse_url(state, url)?;
    let checked = |t: &str| {
        check_type(t).map_err(|_| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not-supported",
                format!("'{t}' is not a FHIR R4 resource type"),
            )
        })
    };
    let valid_id = |id: &str| {
        check_id(id).map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("'{id}' is not a valid FHIR id"),
            )
        })
    };
    match (method, parts.as_slice()) {
        ("POST", [t]) => {
            checked(t)?;
            let resource = entry_resource(entry, t)?;
            let full_url = entry.get("fullUrl").and_then(Value::as_str).unwrap_or("");
            let id = ids
                .get(full_url)
                .and_then(|r| r.split('/').nth(1))
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
            Ok(Action::Create {
                resource_type: t.to_string(),
                id,
                resource,
            })
        }
        ("PUT", [t, id]) => {
            checked(t)?;
            valid_id(id)?;
            let resource = entry_resource(entry, t)?;
            if resource.get("id").and_then(Value::as_str) != Some(id) {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("the resource's id is not '{id}', the id in request.url"),
                ));
            }
            Ok(Action::Update {
                resource_type: t.to_string(),
                id: id.to_string(),
                resource,
                if_match: entry_if_match(&request)?,
            })
        }
        ("DELETE", [t, id]) => {
            checked(t)?;
            valid_id(id)?;
            Ok(Action::Delete {
                resource_type: t.to_string(),
                id: id.to_string(),
                if_match: entry_if_match(&request)?,
            })
        }
        ("GET", [t, id]) => {
            checked(t)?;
            valid_id(id)?;
            Ok(Action::Read {
                resource_type: t.to_string(),
                id: id.to_string(),
                version: None,
            })
        }
        ("GET", [t, id, "_history", v]) => {
            checked(t)?;
            valid_id(id)?;
            let version = v.parse().map_err(|_| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("'{v}' is not a version number"),
                )
            })?;
            Ok(Action::Read {
                resource_type: t.to_string(),
                id: id.to_string(),
                version: Some(version),
            })
        }
        ("PATCH", [t, id]) => {
            checked(t)?;
            valid_id(id)?;
            let resource = entry.get("resource").unwrap_or(&Value::Null);
            let patch = Patch::from_entry_resource(resource)
                .map_err(|m| Failure::new(StatusCode::BAD_REQUEST, "invalid", m))?;
            Ok(Action::Patch {
                resource_type: t.to_string(),
                id: id.to_string(),
                patch,
                if_match: entry_if_match(&request)?,
            })
        }
        ("GET", _) => Err(Failure::not_supported(format!(
            "GET {url}: only read and vread are supported in a Bundle, not searches"
        ))),
        ("", _) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "required",
            "every entry needs request.method and request.url",
        )),
        (m, _) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{m} {url} is not an interaction a Bundle entry can ask for"),
        )),
    }
}

/// Turn an entry's conditions into plain ids, searching before anything is written:
/// - `ifNoneExist` on a POST: no match creates; one match turns the entry into a read
///   of it (the answer is 200 with the resource, and the entry's fullUrl points at it);
/// - a search in the URL of a PUT, DELETE or PATCH: it acts on the one match (a PUT with
///   no match creates, a DELETE with none deletes nothing);
/// - conditional references (`Patient?identifier=...`) in the resource, which must find
///   exactly one resource. `resolved` maps them (and matched fullUrls) to `Type/id`.
async fn resolve_conditions(
    state: &AppState,
    entry: &mut Value,
    resolved: &mut HashMap<String, String>,
) -> Result<(), Failure> {
    let failure = |f: search::ConditionFailed| Failure {
        status: f.status,
        issue: f.issue,
    };
    if let Some(resource) = entry.get("resource") {
        let mut conditional = Vec::new();
        collect_conditional_references(resource, &mut conditional);
        for reference in conditional {
            if resolved.contains_key(&reference) {
                continue;
            }
            let (ty, query) = reference.split_once('?').unwrap_or((&reference, ""));
            let ids = search::conditional_ids(state, ty, query)
                .await
                .map_err(failure)?;
            match ids.as_slice() {
                [id] => {
                    resolved.insert(reference.clone(), format!("{ty}/{id}"));
                }
                [] => {
                    return Err(Failure::new(
                        StatusCode::PRECONDITION_FAILED,
                        "not-found",
                        format!("the conditional reference '{reference}' matches no resource"),
                    ));
                }
                _ => return Err(failure(search::several(ty, query))),
            }
        }
    }
    let method = entry["request"]["method"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let url = entry["request"]["url"].as_str().unwrap_or("").to_string();
    let relative = url
        .strip_prefix(state.fhir_base.as_str())
        .unwrap_or(&url)
        .trim_start_matches('/')
        .to_string();
    let full_url = entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_string);
    if method == "POST" {
        let Some(condition) = entry["request"]["ifNoneExist"].as_str().map(str::to_string) else {
            return Ok(());
        };
        let ids = search::conditional_ids(state, &relative, &condition)
            .await
            .map_err(failure)?;
        match ids.as_slice() {
            [] => {
                if let Some(r) = entry["request"].as_object_mut() {
                    r.remove("ifNoneExist");
                }
            }
            [id] => {
                let target = format!("{relative}/{id}");
                entry["request"] = json!({"method": "GET", "url": target});
                if let Some(f) = full_url {
                    resolved.insert(f, target);
                }
            }
            _ => return Err(failure(search::several(&relative, &condition))),
        }
        return Ok(());
    }
    let Some((ty, query)) = relative.split_once('?') else {
        return Ok(());
    };
    if !matches!(method.as_str(), "PUT" | "DELETE" | "PATCH") {
        return Ok(());
    }
    let ids = search::conditional_ids(state, ty, query)
        .await
        .map_err(failure)?;
    let id = match (method.as_str(), ids.as_slice()) {
        (_, [id]) => id.clone(),
        ("PUT", []) => entry["resource"]["id"]
            .as_str()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
        // Nothing to delete: an id that cannot exist makes the DELETE a no-op.
        ("DELETE", []) => uuid::Uuid::new_v4().to_string(),
        ("PATCH", []) => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no {ty} matches {query}: nothing to patch"),
            ));
        }
        _ => return Err(failure(search::several(ty, query))),
    };
    if method == "PUT" {
        match entry["resource"]["id"].as_str() {
            Some(body_id) if body_id != id => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("the condition finds {ty}/{id}, but the resource's id is '{body_id}'"),
                ));
            }
            _ => {
                if let Some(r) = entry["resource"].as_object_mut() {
                    r.insert("id".into(), Value::String(id.clone()));
                }
            }
        }
    }
    entry["request"]["url"] = Value::String(format!("{ty}/{id}"));
    Ok(())
}

fn has_conditions(entry: &Value) -> bool {
    let mut references = Vec::new();
    if let Some(r) = entry.get("resource") {
        collect_conditional_references(r, &mut references);
    }
    entry["request"].get("ifNoneExist").is_some()
        || entry["request"]["url"]
            .as_str()
            .is_some_and(|u| u.contains('?'))
        || !references.is_empty()
}

fn collect_conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(r)) if r.contains('?') => out.push(r.clone()),
                    _ => collect_conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_conditional_references(v, out)),
        _ => {}
    }
}

/// Give the new resources of a transaction their ids, keyed by fullUrl.
fn assign_ids(entries: &[Value]) -> Result<HashMap<String, String>, Failure> {
    let mut ids = HashMap::new();
    for entry in entries {
        let method = entry["request"]["method"].as_str().unwrap_or("");
        let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) else {
            continue;
        };
        let resource_type = entry["resource"]["resourceType"].as_str().unwrap_or("");
        let target = match method {
            "POST" => format!("{resource_type}/{}", uuid::Uuid::new_v4()),
            "PUT" => match entry["request"]["url"].as_str() {
                Some(url) if !url.contains('?') => url.trim_start_matches('/').to_string(),
                _ => continue,
            },
            _ => continue,
        };
        if ids.insert(full_url.to_string(), target).is_some() {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("the fullUrl {full_url} appears twice in the transaction"),
            ));
        }
    }
    Ok(ids)
}

/// Point every `reference` to a fullUrl of this transaction at its resource's new id.
fn rewrite_references(value: &mut Value, ids: &HashMap<String, String>) -> Result<(), Failure> {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "reference" {
                    if let Value::String(r) = v {
                        if let Some(target) = ids.get(r.as_str()) {
                            *r = target.clone();
                        } else if r.contains('?') {
                            return Err(Failure::new(
                                StatusCode::BAD_REQUEST,
                                "invalid",
                                format!("the conditional reference '{r}' was not resolved"),
                            ));
                        }
                    }
                } else {
                    rewrite_references(v, ids)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| rewrite_references(v, ids)),
        _ => Ok(()),
    }
}

async fn transaction(
    state: &AppState,
    mut entries: Vec<Value>,
    prefer: Return,
    pretty: bool,
) -> Response {
    let failed = |i: usize, f: Failure| {
        let mut issue = f.issue;
        issue.diagnostics = format!(
            "transaction failed at entry {i}: {}; nothing was written",
            issue.diagnostics
        );
        outcome(f.status, issue)
    };
    // Conditions are searched before anything is written, under the conditional lock
    // (only when there are any: plain transactions commit side by side).
    let _guard = match entries.iter().any(has_conditions) {
        true => Some(state.conditional.clone().lock_owned().await),
        false => None,
    };
    let mut resolved = HashMap::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        if let Err(f) = resolve_conditions(state, entry, &mut resolved).await {
            return failed(i, f);
        }
    }
    let mut ids = match assign_ids(&entries) {
        Ok(ids) => ids,
        Err(f) => return outcome(f.status, f.issue),
    };
    ids.extend(resolved);
    let mut actions = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter_mut().enumerate() {
        if let Some(resource) = entry.get_mut("resource") {
            if let Err(f) = rewrite_references(resource, &ids) {
                return failed(i, f);
            }
        }
        match understand(state, entry, &ids) {
            Ok(a) => actions.push((i, a)),
            Err(f) => return failed(i, f),
        }
    }
    actions.sort_by_key(|(i, a)| (a.rank(), *i));

    // Every write in one lake write: one WAL record, preconditions checked together.
    let mut ops = Vec::new();
    let mut write_entries = Vec::new();
    let mut answers: HashMap<usize, Answer> = HashMap::new();
    for (i, action) in &actions {
        match action {
            Action::Create {
                resource_type,
                id,
                resource,
            } => {
                ops.push(WriteOp::Put {
                    resource_type: resource_type.clone(),
                    id: Some(id.clone()),
                    resource: resource.clone(),
                    if_match: None,
                });
                write_entries.push(*i);
            }
            Action::Update {
                resource_type,
                id,
                resource,
                if_match,
            } => {
                ops.push(WriteOp::Put {
                    resource_type: resource_type.clone(),
                    id: Some(id.clone()),
                    resource: resource.clone(),
                    if_match: *if_match,
                });
                write_entries.push(*i);
            }
            Action::Delete {
                resource_type,
                id,
                if_match,
            } => {
                if is_live(state, resource_type, id) {
                    ops.push(WriteOp::Delete {
                        resource_type: resource_type.clone(),
                        id: id.clone(),
                        if_match: *if_match,
                    });
                    write_entries.push(*i);
                } else {
                    answers.insert(*i, nothing_to_delete());
                }
            }
            Action::Patch {
                resource_type,
                id,
                patch,
                if_match,
            } => match patched(state, resource_type, id, patch, *if_match).await {
                Ok((resource, from_version)) => {
                    ops.push(WriteOp::Put {
                        resource_type: resource_type.clone(),
                        id: Some(id.clone()),
                        resource,
                        if_match: Some(from_version),
                    });
                    write_entries.push(*i);
                }
                Err(f) => {
                    let issue = f
                        .issues
                        .into_iter()
                        .next()
                        .unwrap_or_else(|| Issue::error("processing", "the patch failed"));
                    return failed(
                        *i,
                        Failure {
                            status: f.status,
                            issue,
                        },
                    );
                }
            },
            Action::Read { .. } | Action::Search { .. } => {}
        }
    }
    if !ops.is_empty() {
        match state.lake.write(ops).await {
            Ok(written) => {
                for (i, w) in write_entries.iter().zip(written) {
                    answers.insert(*i, written_answer(&w));
                }
            }
            Err(e) => {
                let f = crate::error::LakeFailure::from(&e, "the transaction");
                let issue = Issue::error(
                    f.issue.code,
                    format!("{}; nothing was written", f.issue.diagnostics),
                );
                return f.decorate(outcome(f.status, issue));
            }
        }
    }
    // Reads come last and see the transaction's writes.
    for (i, action) in &actions {
        if let Action::Read {
            resource_type,
            id,
            version,
        } = action
        {
            answers.insert(*i, read_answer(state, resource_type, id, *version).await);
        }
        if let Action::Search { path, query } = action {
            answers.insert(*i, search_answer(state, path, query).await);
        }
    }
    response_bundle(
        state,
        "transaction-response",
        entries.len(),
        answers,
        prefer,
        pretty,
    )
}

async fn batch(state: &AppState, entries: Vec<Value>, prefer: Return, pretty: bool) -> Response {
    let mut answers = HashMap::new();
    let count = entries.len();
    for (i, mut entry) in entries.into_iter().enumerate() {
        let mut resolved = HashMap::new();
        let guard = match has_conditions(&entry) {
            true => Some(state.conditional.clone().lock_owned().await),
            false => None,
        };
        let prepared = async {
            resolve_conditions(state, &mut entry, &mut resolved).await?;
            if let Some(resource) = entry.get_mut("resource") {
                rewrite_references(resource, &resolved)?;
            }
            understand(state, &entry, &HashMap::new())
        };
        let understood = prepared.await;
        let answer = match understood {
            Err(f) => failure_answer(f),
            Ok(Action::Read {
                resource_type,
                id,
                version,
            }) => read_answer(state, &resource_type, &id, version).await,
            Ok(Action::Search { path, query }) => search_answer(state, &path, &query).await,
            Ok(Action::Delete {
                resource_type,
                id,
                if_match,
            }) => {
                if is_live(state, &resource_type, &id) {
                    let op = WriteOp::Delete {
                        resource_type,
                        id,
                        if_match,
                    };
                    single_write(state, op).await
                } else {
                    nothing_to_delete()
                }
            }
            Ok(Action::Create {
                resource_type,
                id,
                resource,
            }) => {
                let op = WriteOp::Put {
                    resource_type,
                    id: Some(id),
                    resource,
                    if_match: None,
                };
                single_write(state, op).await
            }
            Ok(Action::Patch {
                resource_type,
                id,
                patch,
                if_match,
            }) => match patched(state, &resource_type, &id, &patch, if_match).await {
                Ok((resource, from_version)) => {
                    let op = WriteOp::Put {
                        resource_type,
                        id: Some(id),
                        resource,
                        if_match: Some(from_version),
                    };
                    single_write(state, op).await
                }
                Err(f) => Answer {
                    resource: None,
                    status: f.status,
                    version: None,
                    outcome: Some(operation_outcome(&f.issues)),
                },
            },
            Ok(Action::Update {
                resource_type,
                id,
                resource,
                if_match,
            }) => {
                let op = WriteOp::Put {
                    resource_type,
                    id: Some(id),
                    resource,
                    if_match,
                };
                single_write(state, op).await
            }
        };
        drop(guard);
        answers.insert(i, answer);
    }
    response_bundle(state, "batch-response", count, answers, prefer, pretty)
}

/// Whether a resource exists and is not deleted: a DELETE of anything else writes nothing.
fn is_live(state: &AppState, resource_type: &str, id: &str) -> bool {
    state
        .lake
        .latest(resource_type, id)
        .is_some_and(|l| !l.deleted)
}

/// A search entry: its searchset Bundle, or its OperationOutcome.
async fn search_answer(state: &AppState, path: &str, query: &str) -> Answer {
    let (status, body) = search::search_in_bundle(state, path, query).await;
    let ok = status == StatusCode::OK;
    Answer {
        status,
        resource: ok.then(|| body.clone()),
        version: None,
        outcome: (!ok).then_some(body),
    }
}

/// The answer to a DELETE of what does not exist or is already deleted.
fn nothing_to_delete() -> Answer {
    Answer {
        resource: None,
        status: StatusCode::NO_CONTENT,
        version: None,
        outcome: None,
    }
}

async fn single_write(state: &AppState, op: WriteOp) -> Answer {
    match state.lake.write(vec![op]).await {
        Ok(w) => match w.first() {
            Some(w) => written_answer(w),
            None => failure_answer(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                "no write was made",
            )),
        },
        Err(e) => {
            let f = crate::error::LakeFailure::from(&e, "the write");
            failure_answer(Failure {
                status: f.status,
                issue: f.issue,
            })
        }
    }
}

fn written_answer(w: &Written) -> Answer {
    let v = w.version.as_ref().clone();
    let status = if v.deleted {
        StatusCode::NO_CONTENT
    } else if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Answer {
        resource: None,
        status,
        version: Some(v),
        outcome: None,
    }
}

fn failure_answer(f: Failure) -> Answer {
    Answer {
        resource: None,
        status: f.status,
        version: None,
        outcome: Some(operation_outcome(&[f.issue])),
    }
}

async fn read_answer(
    state: &AppState,
    resource_type: &str,
    id: &str,
    version: Option<i64>,
) -> Answer {
    let read = match version {
        Some(v) => state.lake.read_version(resource_type, id, v).await,
        None => state.lake.read_latest(resource_type, id).await,
    };
    match read {
        Ok(Some(v)) if v.deleted => Answer {
            resource: None,
            status: StatusCode::GONE,
            version: None,
            outcome: Some(operation_outcome(&[Issue::error(
                "deleted",
                format!("{resource_type}/{id} was deleted"),
            )])),
        },
        Ok(Some(v)) => Answer {
            resource: None,
            status: StatusCode::OK,
            version: Some(v.as_ref().clone()),
            outcome: None,
        },
        Ok(None) => failure_answer(Failure::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{resource_type}/{id} is not known"),
        )),
        Err(e) => failure_answer(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            format!("the lake could not be read: {e}"),
        )),
    }
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim_end()
        .to_string()
}

fn response_bundle(
    state: &AppState,
    kind: &str,
    count: usize,
    mut answers: HashMap<usize, Answer>,
    prefer: Return,
    pretty: bool,
) -> Response {
    let entries: Vec<Value> = (0..count)
        .map(|i| {
            let Some(a) = answers.remove(&i) else {
                return json!({"response": {"status": "500 Internal Server Error"}});
            };
            let mut response = json!({"status": status_line(a.status)});
            let mut entry = json!({});
            if let Some(v) = &a.version {
                response["etag"] = json!(format!("W/\"{}\"", v.version_id));
                response["lastModified"] = json!(instant_string(v.last_updated));
                if a.status == StatusCode::CREATED || a.status == StatusCode::OK {
                    response["location"] = json!(format!(
                        "{}/{}/_history/{}",
                        v.resource_type, v.id, v.version_id
                    ));
                }
                if !v.deleted {
                    entry["fullUrl"] =
                        json!(format!("{}/{}/{}", state.fhir_base, v.resource_type, v.id));
                    if prefer == Return::Representation {
                        if let Ok(r) = serde_json::from_str::<Value>(&v.resource) {
                            entry["resource"] = r;
                        }
                    }
                }
            }
            if let Some(r) = a.resource {
                entry["resource"] = r;
            }
            if let Some(oo) = a.outcome {
                response["outcome"] = oo;
            }
            entry["response"] = response;
            entry
        })
        .collect();
    let mut b = json!({"resourceType": "Bundle", "type": kind});
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    let body = if pretty {
        serde_json::to_string_pretty(&b).unwrap_or_default()
    } else {
        b.to_string()
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}
