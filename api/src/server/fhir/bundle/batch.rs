//! A batch: each entry on its own.
//!
//! Entries are taken in the order of the request, each written by itself, so one
//! entry's failure touches no other: it becomes that entry's answer, with the status a
//! plain request would get, and the batch itself answers 200. Each entry with a
//! condition holds the conditional lock only for its own search and write.

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
use crate::server::fhir::write::{Return, only_written};

pub(super) async fn batch(
    state: &AppState,
    entries: Vec<Value>,
    prefer: Return,
    pretty: bool,
) -> Response {
    let mut answers = HashMap::new();
    let count = entries.len();
    for (i, mut entry) in entries.into_iter().enumerate() {
        let guard = match has_conditions(&entry) {
            true => Some(conditional::lock(state).await),
            false => None,
        };
        let answer = match run_entry(state, &mut entry).await {
            Ok(answer) => answer,
            Err(e) => Answer::failed(e),
        };
        drop(guard);
        answers.insert(i, answer);
    }
    response_bundle(state, "batch-response", count, answers, prefer, pretty)
}

/// Resolve, understand and carry out one entry.
async fn run_entry(state: &AppState, entry: &mut Value) -> Result<Answer, ApiError> {
    let mut resolved = HashMap::new();
    resolve_conditions(state, entry, &mut resolved).await?;
    if let Some(resource) = entry.get_mut("resource") {
        rewrite_references(resource, &resolved)?;
    }
    let answer = match understand(state, entry, &HashMap::new())? {
        Action::Read {
            resource_type,
            id,
            version,
        } => read_answer(state, &resource_type, &id, version).await,
        Action::Search { path, query } => search_answer(state, &path, &query).await,
        Action::Delete {
            resource_type,
            id,
            if_match,
        } => {
            if is_live(state, &resource_type, &id) {
                let op = WriteOp::Delete {
                    resource_type,
                    id,
                    if_match,
                };
                single_write(state, op).await?
            } else {
                Answer::nothing_to_delete()
            }
        }
        Action::Create {
            resource_type,
            id,
            resource,
        } => {
            let op = WriteOp::Put {
                resource_type,
                id: Some(id),
                resource,
                if_match: None,
            };
            single_write(state, op).await?
        }
        Action::Patch {
            resource_type,
            id,
            patch,
            if_match,
        } => {
            let (resource, from_version) =
                patched(state, &resource_type, &id, &patch, if_match).await?;
            let op = WriteOp::Put {
                resource_type,
                id: Some(id),
                resource,
                if_match: Some(from_version),
            };
            single_write(state, op).await?
        }
        Action::Update {
            resource_type,
            id,
            resource,
            if_match,
        } => {
            let op = WriteOp::Put {
                resource_type,
                id: Some(id),
                resource,
                if_match,
            };
            single_write(state, op).await?
        }
    };
    Ok(answer)
}

async fn single_write(state: &AppState, op: WriteOp) -> Result<Answer, ApiError> {
    let written = state
        .lake
        .write(vec![op])
        .await
        .map_err(|e| ApiError::from_lake(&e, "the write"))?;
    Ok(Answer::written(&only_written(written)?))
}
