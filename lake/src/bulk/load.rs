//! The bulk-load pipeline: chunks of raw records in, large Delta commits out.
//!
//! Each chunk is parsed and validated in parallel (rayon, on a blocking thread that holds
//! every core's permit of [`crate::blocking`], so a serving process's requests are not
//! starved by more than one chunk at a time), given ids and versions in input order (so
//! a resource that appears twice becomes versions 1 and 2, in input order), stamped and
//! serialised in parallel, and pushed to the [`BulkWriter`], which commits large batches
//! while the next chunks are parsed. The channel the chunks come through is bounded by
//! its sender, so memory stays flat whatever the input's size.
//!
//! Where the chunks come from is the caller's business: `medlake ingest` reads files on a
//! thread; the server splits a streamed request body.

use std::collections::BTreeMap;
use std::sync::Arc;

use medlake_ingest::issue::operation_outcome;
use medlake_ingest::prepare::{Prepared, Rejected, prepare};
use medlake_ingest::search::{SearchParams, encode};
use medlake_ingest::source::{Origin, RawRecord};
use rayon::prelude::*;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{BulkOptions, BulkWriter, IngestErrorRow};
use crate::error::Result;
use crate::lake::{Lake, stamp, stamp_text};
use crate::record::instant_string;

/// The input of a bulk load: chunks of records, in input order. A few thousand records
/// per chunk keeps the parallel parse busy and memory small.
pub type RecordChunks = mpsc::Receiver<Vec<RawRecord>>;

/// How many rejections a summary quotes; all of them are in the `ingest_errors` table.
const QUOTED_ERRORS: usize = 20;

/// What a bulk load did (so far, while it runs).
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    /// The `run_id` of this load's rows in the `ingest_errors` table.
    pub run_id: String,
    pub accepted: u64,
    pub rejected: u64,
    pub per_type: BTreeMap<String, u64>,
    /// The first rejections, as `origin: issue` lines.
    pub first_errors: Vec<String>,
    /// Delta commits made.
    pub commits: u64,
}

enum Stage {
    Good(Prepared, String),
    Bad(Origin, Rejected),
}

impl Lake {
    /// Load every record of `chunks` with bulk commits; `progress` is called after each
    /// chunk. Rejected records are counted, quoted, and stored in the `ingest_errors`
    /// table under the summary's `run_id`; the good ones land anyway.
    pub async fn bulk_load(
        &self,
        mut chunks: RecordChunks,
        options: BulkOptions,
        mut progress: impl FnMut(&LoadSummary) + Send,
    ) -> Result<LoadSummary> {
        let mut writer = BulkWriter::new(self.clone(), options);
        let mut summary = LoadSummary {
            run_id: uuid::Uuid::new_v4().to_string(),
            ..LoadSummary::default()
        };
        let mut error_rows: Vec<IngestErrorRow> = Vec::new();
        let last_updated = writer.last_updated();
        let last_updated_text = Arc::new(instant_string(last_updated));

        while let Some(chunk) = chunks.recv().await {
            let staged: Vec<Stage> =
                crate::blocking::run_on_every_core(move || parse_chunk(chunk)).await?;

            // Ids and versions in input order; then stamp and serialise in parallel.
            let mut good: Vec<(String, String, i64, Prepared, String)> =
                Vec::with_capacity(staged.len());
            for s in staged {
                match s {
                    Stage::Good(p, search) => {
                        let (id, version) = writer.assign(&p.resource_type, p.id.as_deref());
                        good.push((p.resource_type.clone(), id, version, p, search));
                    }
                    Stage::Bad(origin, rejected) => {
                        summary.rejected += 1;
                        error_rows.push(rejection_row(&origin, &rejected, &mut summary));
                    }
                }
            }
            let text = last_updated_text.clone();
            let stamped =
                crate::blocking::run_on_every_core(move || stamp_all(good, last_updated, &text))
                    .await?;
            for (t, id, v, json, search) in stamped {
                writer.push(&t, &id, v, &json, &search).await?;
                summary.accepted += 1;
                *summary.per_type.entry(t).or_default() += 1;
            }
            if error_rows.len() >= 10_000 {
                self.append_ingest_errors(&summary.run_id, &error_rows)
                    .await?;
                error_rows.clear();
            }
            progress(&summary);
        }
        let stats = writer.finish().await?;
        summary.commits = stats.commits;
        self.append_ingest_errors(&summary.run_id, &error_rows)
            .await?;
        progress(&summary);
        Ok(summary)
    }
}

/// Parse, validate and extract search values, in parallel.
fn parse_chunk(chunk: Vec<RawRecord>) -> Vec<Stage> {
    chunk
        .into_par_iter()
        .map(|r| match prepare(r.payload) {
            Ok(mut p) => {
                let resource = Value::Object(std::mem::take(&mut p.resource));
                let search = encode(&SearchParams::r4().extract(&p.resource_type, &resource));
                // Free the parsed tree on the thread that built it: the text is what gets
                // stored, and freeing across threads is slow.
                if p.text.is_none() {
                    if let Value::Object(m) = resource {
                        p.resource = m;
                    }
                }
                Stage::Good(p, search)
            }
            Err(e) => Stage::Bad(r.origin, e),
        })
        .collect()
}

/// Stamp `meta` into each resource and serialise it, in parallel. A resource kept as
/// text that already has its id gets its `meta` appended to the text, which is a fifth
/// of the cost of serialising it again.
fn stamp_all(
    good: Vec<(String, String, i64, Prepared, String)>,
    last_updated: i64,
    last_updated_text: &str,
) -> Vec<(String, String, i64, String, String)> {
    good.into_par_iter()
        .map(|(t, id, v, mut p, search)| {
            let spliced = match &p.text {
                Some(text) if p.id.as_deref() == Some(id.as_str()) => {
                    stamp_text(text, v, last_updated_text)
                }
                _ => None,
            };
            let json = spliced.unwrap_or_else(|| {
                if let (true, Some(text)) = (p.resource.is_empty(), &p.text) {
                    if let Ok(Value::Object(m)) = serde_json::from_str(text) {
                        p.resource = m;
                    }
                }
                stamp(&mut p.resource, &t, &id, v, last_updated);
                Value::Object(std::mem::take(&mut p.resource)).to_string()
            });
            (t, id, v, json, search)
        })
        .collect()
}

/// The `ingest_errors` row of a rejected record; the first rejections are quoted in the
/// summary too.
fn rejection_row(
    origin: &Origin,
    rejected: &Rejected,
    summary: &mut LoadSummary,
) -> IngestErrorRow {
    let outcome = operation_outcome(&rejected.issues).to_string();
    let first = rejected.issues.first();
    if summary.first_errors.len() < QUOTED_ERRORS {
        let text = first.map(|i| i.to_string()).unwrap_or_default();
        summary.first_errors.push(format!("{origin}: {text}"));
    }
    // One row per rejected record; its first issue is in the columns, all are in `outcome`.
    IngestErrorRow {
        source: origin.source.to_string(),
        line: origin.line.map(|l| l as i64),
        entry: origin.entry.map(|e| e as i64),
        resource_type: rejected.resource_type.clone(),
        resource_id: rejected.id.clone(),
        severity: first.map_or("error", |i| i.severity.as_str()).to_string(),
        code: first.map_or("invalid", |i| i.code).to_string(),
        diagnostics: rejected
            .issues
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        expression: first.and_then(|i| i.expression.clone()),
        outcome,
    }
}
