//! `medlake ingest`: stream files through parsing and validation into bulk Delta commits.
//!
//! A reader thread streams records from the files in chunks. Each chunk is parsed and
//! validated in parallel (rayon), given ids and versions in order (so a resource that
//! appears twice becomes versions 1 and 2, in file order), stamped and serialised in
//! parallel, and handed to the lake's [`BulkWriter`], which commits large batches while
//! the next chunks are parsed. Bounded channels keep memory flat.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use medlake_ingest::issue::operation_outcome;
use medlake_ingest::prepare::{Prepared, Rejected, prepare};
use medlake_ingest::search::{SearchParams, encode};
use medlake_ingest::source::{Origin, RawRecord, input_files, read_file};
use medlake_lake::{
    BulkOptions, BulkWriter, IngestErrorRow, Lake, instant_string, stamp, stamp_text,
};
use rayon::prelude::*;
use serde_json::Value;

const CHUNK: usize = 4096;

/// What an ingest run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub run_id: String,
    pub files: usize,
    pub accepted: u64,
    pub rejected: u64,
    pub per_type: BTreeMap<String, u64>,
    /// The first rejections, for the printout (all of them are in the errors table).
    pub first_errors: Vec<String>,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn print(&self) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        println!(
            "ingested {} resources from {} files in {:.1}s ({:.0} resources/s, {:.1} MB/s); {} rejected",
            self.accepted,
            self.files,
            secs,
            self.accepted as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.rejected
        );
        for (t, n) in &self.per_type {
            println!("  {t:<24} {n}");
        }
        if self.rejected > 0 {
            println!("rejected records:");
            for e in &self.first_errors {
                println!("  {e}");
            }
            if self.rejected as usize > self.first_errors.len() {
                println!(
                    "  ... and {} more",
                    self.rejected as usize - self.first_errors.len()
                );
            }
            println!(
                "every rejection is in the table medlake.ingest_errors (run_id '{}'), e.g.\n  medlake sql \"SELECT source, line, entry, diagnostics FROM medlake.ingest_errors WHERE run_id = '{}'\"",
                self.run_id, self.run_id
            );
        }
    }
}

enum Stage {
    Good(Prepared, String),
    Bad(Origin, Rejected),
}

/// Ingest `paths` into `lake` with bulk commits.
pub async fn run(
    lake: &Lake,
    paths: &[PathBuf],
    progress: bool,
    batch_rows: usize,
) -> Result<Summary> {
    let started = Instant::now();
    let files = input_files(paths)?;
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = crate::progress_bar(total_bytes, progress, "bytes");
    if progress {
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        ) {
            bar.set_style(style);
        }
    }
    let bytes_read = Arc::new(AtomicU64::new(0));

    // Reader thread -> chunks of raw records.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<RawRecord>>(4);
    let reader_files = files.clone();
    let reader_bytes = bytes_read.clone();
    let reader = std::thread::spawn(move || -> Result<()> {
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut closed = false;
        for f in &reader_files {
            read_file(f, &reader_bytes, &mut |r| {
                if closed {
                    return;
                }
                chunk.push(r);
                if chunk.len() >= CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    closed = tx.blocking_send(full).is_err();
                }
            })?;
        }
        if !chunk.is_empty() && !closed {
            let _ = tx.blocking_send(chunk);
        }
        Ok(())
    });

    let mut writer = BulkWriter::new(
        lake.clone(),
        BulkOptions {
            batch_rows,
            ..BulkOptions::default()
        },
    );
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut summary = Summary {
        run_id: run_id.clone(),
        files: files.len(),
        ..Summary::default()
    };
    let mut error_rows: Vec<IngestErrorRow> = Vec::new();
    let last_updated = writer.last_updated();
    let last_updated_text = Arc::new(instant_string(last_updated));

    while let Some(chunk) = rx.recv().await {
        // Parse and validate in parallel, off the async workers.
        let staged: Vec<Stage> = tokio::task::spawn_blocking(move || {
            chunk
                .into_par_iter()
                .map(|r| match prepare(r.payload) {
                    Ok(mut p) => {
                        let resource = Value::Object(std::mem::take(&mut p.resource));
                        let search =
                            encode(&SearchParams::r4().extract(&p.resource_type, &resource));
                        // Free the parsed tree on the thread that built it: the text
                        // is what gets stored, and freeing across threads is slow.
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
        })
        .await
        .context("a parsing thread panicked")?;

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
                    record_rejection(&origin, &rejected, &mut summary, &mut error_rows);
                }
            }
        }
        let last_updated_text = last_updated_text.clone();
        let stamped: Vec<(String, String, i64, String, String)> =
            tokio::task::spawn_blocking(move || {
                good.into_par_iter()
                    .map(|(t, id, v, mut p, search)| {
                        let spliced = match &p.text {
                            Some(text) if p.id.as_deref() == Some(id.as_str()) => {
                                stamp_text(text, v, &last_updated_text)
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
            })
            .await
            .context("a serialising thread panicked")?;
        for (t, id, v, json, search) in stamped {
            writer.push(&t, &id, v, &json, &search).await?;
            summary.accepted += 1;
            *summary.per_type.entry(t).or_default() += 1;
        }
        if error_rows.len() >= 10_000 {
            lake.append_ingest_errors(&run_id, &error_rows).await?;
            error_rows.clear();
        }
        bar.set_position(bytes_read.load(Ordering::Relaxed));
        bar.set_message(format!(
            "{} resources, {} rejected",
            summary.accepted, summary.rejected
        ));
    }
    match reader.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the file reader thread panicked"),
    }
    writer.finish().await?;
    lake.append_ingest_errors(&run_id, &error_rows).await?;
    bar.finish_and_clear();
    summary.bytes = bytes_read.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn record_rejection(
    origin: &Origin,
    rejected: &Rejected,
    summary: &mut Summary,
    rows: &mut Vec<IngestErrorRow>,
) {
    let outcome = operation_outcome(&rejected.issues).to_string();
    if summary.first_errors.len() < 20 {
        let first = rejected
            .issues
            .first()
            .map(|i| i.to_string())
            .unwrap_or_default();
        summary.first_errors.push(format!("{origin}: {first}"));
    }
    // One row per rejected record; its first issue is in the columns, all are in `outcome`.
    let first = rejected.issues.first();
    rows.push(IngestErrorRow {
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
    });
}
