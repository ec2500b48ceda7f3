//! read and vread: `GET /fhir/<type>/<id>` and `GET /fhir/<type>/<id>/_history/<vid>`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::subset::Subset;
use super::{check_instance, gone, is_pretty, not_found, resource_response};
use crate::error::ApiError;
use crate::server::AppState;

pub async fn read(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_instance(&params, &headers, &resource_type, &id)?;
    let subset = Subset::from_params(&params)?;
    match state.lake.read_latest(&resource_type, &id).await {
        Ok(Some(v)) if v.deleted => Err(gone(&v)),
        Ok(Some(v)) => Ok(resource_response(&v, is_pretty(&params), &subset)),
        Ok(None) => Err(not_found(&resource_type, &id)),
        Err(e) => Err(ApiError::from_lake(&e, "the read")),
    }
}

pub async fn vread(
    State(state): State<AppState>,
    Path((resource_type, id, vid)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_instance(&params, &headers, &resource_type, &id)?;
    let subset = Subset::from_params(&params)?;
    let Ok(version) = vid.parse::<i64>() else {
        return Err(ApiError::bad_request(
            "invalid",
            format!("'{vid}' is not a version number"),
        ));
    };
    match state.lake.read_version(&resource_type, &id, version).await {
        Ok(Some(v)) if v.deleted => Err(gone(&v)),
        Ok(Some(v)) => Ok(resource_response(&v, is_pretty(&params), &subset)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{resource_type}/{id} has no version {version}"),
        )),
        Err(e) => Err(ApiError::from_lake(&e, "the read")),
    }
}
