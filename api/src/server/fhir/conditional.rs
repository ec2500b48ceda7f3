//! The search of a conditional interaction, and what its matches mean.
//!
//! Conditional create (`If-None-Exist`), update and delete (`PUT` and
//! `DELETE /fhir/<type>?<search>`), the same in a Bundle entry, and a Bundle's
//! conditional references (`Patient?identifier=...`) all pick their resource by a search.
//! They share this module so that a condition means the same thing wherever it is
//! written: a client that moves a conditional update into a transaction gets the same
//! resource, or the same refusal.
//!
//! - The search is strict: an unknown parameter is an error whatever `Prefer` says,
//!   because ignoring it would widen the condition and could pick the wrong resource.
//! - It asks for two matches at most: "several" is all any caller needs to know, and
//!   several is always 412, never a guess.
//! - Callers hold [`lock`] from the search until their write is in the log, so two
//!   conditional creates of the same resource cannot both see "none" and both create.

use axum::http::StatusCode;
use medlake_query::search::{Search, SearchError, Total, run};
use tokio::sync::OwnedMutexGuard;

use super::search::query_pairs;
use crate::error::ApiError;
use crate::server::AppState;

/// Hold conditional interactions apart between their search and their write.
pub(super) async fn lock(state: &AppState) -> OwnedMutexGuard<()> {
    state.conditional.clone().lock_owned().await
}

/// What a condition found: none, one, or (as two ids) several.
pub(super) struct Matches {
    resource_type: String,
    query: String,
    ids: Vec<String>,
}

/// Search `resource_type` for a condition: `identifier=urn:mrn|123`, or the same after
/// a `Type?` (as in a conditional reference or a Bundle entry's URL).
pub(super) async fn search(
    state: &AppState,
    resource_type: &str,
    condition: &str,
) -> Result<Matches, ApiError> {
    let query = condition.split_once('?').map_or(condition, |(_, q)| q);
    let pairs = query_pairs(Some(query));
    if pairs.is_empty() {
        return Err(ApiError::bad_request(
            "invalid",
            format!(
                "the condition on {resource_type} is empty: give search parameters, like identifier=system|value"
            ),
        ));
    }
    // A client's mistake is named with its condition; a 500 names nothing of the request.
    let in_condition = |e: SearchError| {
        let answer = ApiError::from_search(&e, "the conditional search");
        if answer.status().is_client_error() {
            answer.explain(|d| format!("the condition {query:?}: {d}"))
        } else {
            answer
        }
    };
    let mut search =
        Search::parse(vec![resource_type.to_string()], &pairs, true).map_err(in_condition)?;
    search.count = 2;
    search.total = Total::None;
    let page = run(&state.lake, &search, &state.fhir_base)
        .await
        .map_err(in_condition)?;
    Ok(Matches {
        resource_type: resource_type.to_string(),
        query: query.to_string(),
        ids: page.matches.iter().map(|r| r.id.clone()).collect(),
    })
}

impl Matches {
    /// The one match, or none; several is 412. A conditional create writes only when
    /// there is none, a conditional delete deletes the one (or nothing), and a
    /// conditional patch or reference needs the one.
    pub(super) fn at_most_one(&self) -> Result<Option<&str>, ApiError> {
        match self.ids.as_slice() {
            [] => Ok(None),
            [id] => Ok(Some(id)),
            _ => Err(self.several()),
        }
    }

    /// The id a conditional update writes: its one match, or with none the resource's
    /// own id (create-on-update) or a new one. A resource whose id is not its match's
    /// is refused rather than written over another resource.
    pub(super) fn update_target(&self, resource_id: Option<&str>) -> Result<String, ApiError> {
        match (self.at_most_one()?, resource_id) {
            (None, Some(id)) => Ok(id.to_string()),
            (None, None) => Ok(uuid::Uuid::new_v4().to_string()),
            (Some(found), Some(id)) if found != id => Err(ApiError::bad_request(
                "invalid",
                format!(
                    "the condition finds {}/{found}, but the resource's id is '{id}'",
                    self.resource_type
                ),
            )),
            (Some(found), _) => Ok(found.to_string()),
        }
    }

    fn several(&self) -> ApiError {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            format!(
                "the condition {}?{} matches more than one resource: make it more specific",
                self.resource_type, self.query
            ),
        )
    }
}
