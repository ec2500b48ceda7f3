//! A transaction: all of its entries, or none.
//!
//! The steps run in this order so that every way to fail comes before the one write:
//! conditions are searched, new resources get their ids, references are rewritten,
//! every entry is understood and checked, patches are applied to the current versions,
//! and only then are all writes handed to the lake together, which checks every
//! precondition under its lock and logs them in one record. Reads and searches run
//! after the write, so they see it.

use std::collections::HashMap;

use axum::response::Response;
use medlake_lake::WriteOp;
use serde_json::Value;

use super::conditionals::{has_conditions, resolve_conditions};
use super::entries::{Action, rewrite_references, understand};
use super::is_live;
use super::response::{Answer, read_answer, response_bundle, search_answer};
use crate::error::ApiError;
use crate::server::AppState;
use crate::server::fhir::conditional;
use crate::server::fhir::patch::patched;
use crate::server::fhir::write::Return;

/// Name the entry that failed the transaction, and say that nothing was written.
fn at_entry(i: usize) -> impl FnOnce(&str) -> String {
    move |d: &str| format!("transaction failed at entry {i}: {d}; nothing was written")
}

pub(super) async fn transaction(
    state: &AppState,
    mut entries: Vec<Value>,
    prefer: Return,
    pretty: bool,
) -> Result<Response, ApiError> {
    // Conditions are searched before anything is written, under the conditional lock
    // (only when there are any: plain transactions commit side by side).
    let _guard = match entries.iter().any(has_conditions) {
        true => Some(conditional::lock(state).await),
        false => None,
    };
    let mut resolved = HashMap::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        resolve_conditions(state, entry, &mut resolved)
            .await
            .map_err(|e| e.explain(at_entry(i)))?;
    }
    let mut ids = assign_ids(&entries)?;
    ids.extend(resolved);
    // Validating every resource is the costly part: a large transaction does it on a
    // blocking thread, a core's worth at a time (`medlake_lake::blocking`).
    let mut actions = if entries.len() >= medlake_lake::blocking::LARGE_REQUEST_RESOURCES {
        let (st, owned) = (state.clone(), std::mem::take(&mut entries));
        let (back, understood) = medlake_lake::blocking::run(move || {
            let mut owned = owned;
            let understood = understand_all(&st, &mut owned, &ids);
            (owned, understood)
        })
        .await
        .map_err(|e| ApiError::from_lake(&e, "reading the transaction"))?;
        entries = back;
        understood?
    } else {
        understand_all(state, &mut entries, &ids)?
    };
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
                    answers.insert(*i, Answer::nothing_to_delete());
                }
            }
            Action::Patch {
                resource_type,
                id,
                patch,
                if_match,
            } => {
                let (resource, from_version) = patched(state, resource_type, id, patch, *if_match)
                    .await
                    .map_err(|e| e.explain(at_entry(*i)))?;
                ops.push(WriteOp::Put {
                    resource_type: resource_type.clone(),
                    id: Some(id.clone()),
                    resource,
                    if_match: Some(from_version),
                });
                write_entries.push(*i);
            }
            Action::Read { .. } | Action::Search { .. } => {}
        }
    }
    if !ops.is_empty() {
        let written = state.lake.write(ops).await.map_err(|e| {
            ApiError::from_lake(&e, "the transaction")
                .explain(|d| format!("{d}; nothing was written"))
        })?;
        for (i, w) in write_entries.iter().zip(written) {
            answers.insert(*i, Answer::written(&w));
        }
    }
    // Reads come last and see the transaction's writes.
    for (i, action) in &actions {
        match action {
            Action::Read {
                resource_type,
                id,
                version,
            } => {
                answers.insert(*i, read_answer(state, resource_type, id, *version).await);
            }
            Action::Search { path, query } => {
                answers.insert(*i, search_answer(state, path, query).await);
            }
            Action::Create { .. }
            | Action::Update { .. }
            | Action::Delete { .. }
            | Action::Patch { .. } => {}
        }
    }
    Ok(response_bundle(
        state,
        "transaction-response",
        entries.len(),
        answers,
        prefer,
        pretty,
    ))
}

/// Rewrite each entry's references to the ids assigned, and understand and check it.
fn understand_all(
    state: &AppState,
    entries: &mut [Value],
    ids: &HashMap<String, String>,
) -> Result<Vec<(usize, Action)>, ApiError> {
    let mut actions = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter_mut().enumerate() {
        if let Some(resource) = entry.get_mut("resource") {
            rewrite_references(resource, ids).map_err(|e| e.explain(at_entry(i)))?;
        }
        let action = understand(state, entry, ids).map_err(|e| e.explain(at_entry(i)))?;
        actions.push((i, action));
    }
    Ok(actions)
}

/// Give the new resources of a transaction their ids, keyed by fullUrl.
fn assign_ids(entries: &[Value]) -> Result<HashMap<String, String>, ApiError> {
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
            return Err(ApiError::bad_request(
                "invalid",
                format!("the fullUrl {full_url} appears twice in the transaction"),
            ));
        }
    }
    Ok(ids)
}
