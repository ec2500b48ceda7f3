//! `medlake ingest`: load files, into the lake directly or through a running server.
//!
//! Directly ([`run`]): a reader thread streams records from the files in chunks into the
//! lake's bulk-load pipeline ([`Lake::bulk_load`]), which parses, versions and commits
//! them in large Delta commits. This needs the workspace to itself: a server that owns
//! it holds its WAL, and the lake refuses a second writer.
//!
//! Through a server ([`run_remote`], `--server <url>`): each file is streamed, as it is
//! read and decompressed, to the server's `POST /ingest?bulk=true`, which runs the same
//! pipeline inside the server. The server then assigns the versions, as the one process
//! that owns versioning must, and its indexes take the new rows at once.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use medlake_ingest::source::{InputFormat, RawRecord, input_files, open_input, read_file};
use medlake_lake::{BulkOptions, Lake, LoadSummary};
use serde_json::Value;

/// Records per chunk handed to the pipeline.
const CHUNK: usize = 4096;

/// What an ingest run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// The `run_id`s of the runs' rows in `medlake.ingest_errors` (one per file through a
    /// server).
    pub run_ids: Vec<String>,
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
    fn add(&mut self, s: &LoadSummary) {
        self.run_ids.push(s.run_id.clone());
        self.accepted += s.accepted;
        self.rejected += s.rejected;
        for (t, n) in &s.per_type {
            *self.per_type.entry(t.clone()).or_default() += n;
        }
        let room = 20usize.saturating_sub(self.first_errors.len());
        self.first_errors
            .extend(s.first_errors.iter().take(room).cloned());
    }

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
            let ids = self
                .run_ids
                .iter()
                .map(|r| format!("'{r}'"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "every rejection is in the table medlake.ingest_errors, e.g.\n  medlake sql \"SELECT source, line, entry, diagnostics FROM medlake.ingest_errors WHERE run_id IN ({ids})\""
            );
        }
    }
}

fn bytes_bar(total: u64, visible: bool) -> indicatif::ProgressBar {
    let bar = crate::progress_bar(total, visible, "bytes");
    if visible {
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        ) {
            bar.set_style(style);
        }
    }
    bar
}

fn total_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
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
    let bar = bytes_bar(total_bytes(&files), progress);
    let bytes_read = Arc::new(AtomicU64::new(0));

    // Reader thread -> chunks of raw records, a few ahead of the pipeline.
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<RawRecord>>(4);
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

    let options = BulkOptions {
        batch_rows,
        ..BulkOptions::default()
    };
    let loaded = lake
        .bulk_load(rx, options, |s| {
            bar.set_position(bytes_read.load(Ordering::Relaxed));
            bar.set_message(format!("{} resources, {} rejected", s.accepted, s.rejected));
        })
        .await;
    // The reader's own error (an unreadable file) explains a load that ended early.
    match reader.join() {
        Ok(r) => r?,
        Err(_) => bail!("the file reader thread panicked"),
    }
    let loaded = loaded?;
    bar.finish_and_clear();
    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    summary.add(&loaded);
    summary.bytes = bytes_read.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Stream `paths` to the server at `server` (its root URL, e.g. `http://127.0.0.1:8080`),
/// one `POST /ingest?bulk=true` per file.
pub async fn run_remote(server: &str, paths: &[PathBuf], progress: bool) -> Result<Summary> {
    let server = server.trim_end_matches('/').to_string();
    let paths = paths.to_vec();
    tokio::task::spawn_blocking(move || upload_files(&server, &paths, progress))
        .await
        .context("the upload thread panicked")?
}

fn upload_files(server: &str, paths: &[PathBuf], progress: bool) -> Result<Summary> {
    let started = Instant::now();
    let files = input_files(paths)?;
    let bar = bytes_bar(total_bytes(&files), progress);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A large file is answered once its last commit is done.
        .timeout_global(None)
        .build()
        .into();
    let url = format!("{server}/ingest?bulk=true");
    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    for file in &files {
        let (format, reader) = open_input(file, &bytes_read)?;
        let content_type = match format {
            InputFormat::Ndjson => "application/x-ndjson",
            InputFormat::Document => "application/fhir+json",
        };
        let mut body = Progress {
            inner: reader,
            bar: bar.clone(),
            bytes_read: bytes_read.clone(),
        };
        let mut response = agent
            .post(&url)
            .header("Content-Type", content_type)
            .send(ureq::SendBody::from_reader(&mut body))
            .with_context(|| format!("could not send {} to {url}", file.display()))?;
        let status = response.status();
        let answer: Value = response.body_mut().read_json().with_context(|| {
            format!(
                "{url} answered {status} for {} with a body that is not JSON; is it a medlake server?",
                file.display()
            )
        })?;
        if !status.is_success() {
            let why = answer
                .pointer("/issue/0/diagnostics")
                .or_else(|| answer.pointer("/outcome/issue/0/diagnostics"))
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            bail!("the server refused {} ({status}): {why}", file.display());
        }
        summary.add(&load_summary_of(&answer));
        bar.set_message(format!(
            "{} resources, {} rejected",
            summary.accepted, summary.rejected
        ));
    }
    bar.finish_and_clear();
    summary.bytes = bytes_read.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The server's bulk answer (see `server::ingest`) as a [`LoadSummary`].
fn load_summary_of(answer: &Value) -> LoadSummary {
    let count = |k: &str| answer.get(k).and_then(Value::as_u64).unwrap_or(0);
    LoadSummary {
        run_id: answer
            .get("runId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        accepted: count("accepted"),
        rejected: count("rejected"),
        per_type: answer
            .get("types")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(t, n)| (t.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
        first_errors: answer
            .get("firstErrors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        commits: count("commits"),
    }
}

/// A file being uploaded, moving the progress bar as it is read.
struct Progress {
    inner: Box<dyn Read + Send>,
    bar: indicatif::ProgressBar,
    bytes_read: Arc<AtomicU64>,
}

impl Read for Progress {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar
            .set_position(self.bytes_read.load(Ordering::Relaxed));
        Ok(n)
    }
}
