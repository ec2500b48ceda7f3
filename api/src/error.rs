//! Where a library error becomes an HTTP answer.
//!
//! [`LakeFailure::from`] is one `match` over every [`LakeError`], with no catch-all arm:
//! a new kind of lake error does not compile until someone decides what a client sees
//! for it. The statuses:
//! - 412 for a version conflict (`If-Match`), 404 for an unknown type or table, 400 for
//!   rows that do not fit their table;
//! - 503 for a transient state: the WAL stopped after a failed write or fsync (until a
//!   restart), or too many rows waiting for object storage (with `Retry-After`);
//! - 500 for everything else, with a generic text and a request id. The detail (a path,
//!   a Delta or Arrow message, perhaps patient data) goes to the log under that id, never
//!   to the client.
//!
//! Handlers of the FHIR API, `/ingest` and bundles answer lake errors through it. (The
//! issue that asks for one error type returned by every handler is not finished: `/sql`
//! and search still build their own answers.)

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use medlake_ingest::issue::Issue;
use medlake_lake::LakeError;

/// Seconds a client is asked to wait when writes are held back.
pub const RETRY_AFTER_SECS: u64 = 5;

/// What a client is told about a lake error.
#[derive(Debug)]
pub struct LakeFailure {
    pub status: StatusCode,
    /// The OperationOutcome issue.
    pub issue: Issue,
    pub retry_after: Option<u64>,
    /// Set for a 500: the id the log has the detail under.
    pub request_id: Option<String>,
}

impl LakeFailure {
    /// Decide the answer, and log the detail of what the client is not told.
    pub fn from(e: &LakeError, context: &str) -> LakeFailure {
        let told = |status, code, text: String| LakeFailure {
            status,
            issue: Issue::error(code, text),
            retry_after: None,
            request_id: None,
        };
        match e {
            LakeError::VersionConflict { .. } => {
                told(StatusCode::PRECONDITION_FAILED, "conflict", e.to_string())
            }
            LakeError::UnknownType(_) | LakeError::UnknownTable(_) => {
                told(StatusCode::NOT_FOUND, "not-found", e.to_string())
            }
            LakeError::BadRows { .. } => told(StatusCode::BAD_REQUEST, "structure", e.to_string()),
            LakeError::WalStopped(_) => {
                tracing::error!("{context}: {e}");
                told(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "transient",
                    "writes are stopped after a failure of the write-ahead log; nothing was \
                     stored. An operator must restart the server"
                        .into(),
                )
            }
            LakeError::Busy { .. } | LakeError::WalFull { .. } => LakeFailure {
                retry_after: Some(RETRY_AFTER_SECS),
                ..told(StatusCode::SERVICE_UNAVAILABLE, "transient", e.to_string())
            },
            LakeError::BadDataUrl { .. }
            | LakeError::Io { .. }
            | LakeError::Delta { .. }
            | LakeError::Arrow(_)
            | LakeError::DataFusion(_)
            | LakeError::WalCorrupt { .. }
            | LakeError::WalLocked { .. }
            | LakeError::ReadOnly(_)
            | LakeError::Internal(_) => {
                let id = uuid::Uuid::new_v4().to_string();
                tracing::error!(request_id = %id, "{context}: {e}");
                LakeFailure {
                    request_id: Some(id.clone()),
                    ..told(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "exception",
                        format!(
                            "{context} failed inside the server; its log has the detail \
                             under request id {id}"
                        ),
                    )
                }
            }
        }
    }

    /// Add `Retry-After` and `X-Request-Id` to a response built from this failure.
    pub fn decorate(&self, mut r: Response) -> Response {
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(id) = &self.request_id {
            if let Ok(v) = HeaderValue::from_str(id) {
                r.headers_mut().insert("x-request-id", v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_log_is_503_and_a_full_tail_asks_to_retry() {
        let stopped = LakeFailure::from(&LakeError::WalStopped("fsync failed".into()), "the write");
        assert_eq!(stopped.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(stopped.retry_after.is_none());
        let busy = LakeFailure::from(
            &LakeError::Busy {
                waiting: 10,
                bound: 10,
            },
            "the write",
        );
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.retry_after, Some(RETRY_AFTER_SECS));
    }

    #[test]
    fn a_500_carries_no_internal_detail() {
        let secret = "/var/lib/medlake/default/fhir/patient/part-0001.parquet Jane Doe";
        let f = LakeFailure::from(&LakeError::Internal(secret.into()), "the write");
        assert_eq!(f.status, StatusCode::INTERNAL_SERVER_ERROR);
        let text =
            serde_json::to_string(&medlake_ingest::issue::operation_outcome(&[f.issue])).unwrap();
        assert!(
            !text.contains("parquet") && !text.contains("Jane"),
            "{text}"
        );
        assert!(text.contains(f.request_id.as_deref().unwrap()), "{text}");
    }
}
