//! Reading FHIR input files: NDJSON (`.ndjson`, `.ndjson.gz`), Bundles of any type, and
//! single resources (`.json`, `.json.gz`).
//!
//! Files are streamed: an NDJSON file is read line by line and never held whole, so
//! memory stays flat whatever the input size. A JSON file (a Bundle or one resource) is
//! parsed whole, as it must be. Every record keeps where it came from, so a rejection
//! can name its file and line or Bundle entry.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use serde_json::{Map, Value};

use crate::issue::Issue;

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: Arc<str>,
    /// 1-based line in an NDJSON file.
    pub line: Option<u64>,
    /// 0-based entry in a Bundle.
    pub entry: Option<u64>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(e) = self.entry {
            write!(f, " entry {e}")?;
        }
        Ok(())
    }
}

/// One input record, not yet parsed or already parsed (Bundle entries).
#[derive(Debug)]
pub enum Payload {
    Text(String),
    Json(Value),
    /// The record could not even be read (bad JSON file, unreadable entry).
    Broken(Issue),
}

#[derive(Debug)]
pub struct RawRecord {
    pub origin: Origin,
    pub payload: Payload,
}

/// Problems with the input files themselves.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("could not read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a FHIR input: expected .ndjson, .ndjson.gz, .json or .json.gz")]
    UnknownKind { path: PathBuf },
}

/// The input files under `paths`: files as given, folders searched recursively for
/// `.ndjson`, `.ndjson.gz`, `.json` and `.json.gz`, in name order.
pub fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| SourceError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect_dir(p, &mut out)?;
        } else if kind_of(p).is_some() {
            out.push(p.clone());
        } else {
            return Err(SourceError::UnknownKind { path: p.clone() });
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| SourceError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_dir(&p, out)?;
        } else if kind_of(&p).is_some() {
            out.push(p);
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ndjson { gz: bool },
    Json { gz: bool },
}

fn kind_of(p: &Path) -> Option<Kind> {
    let name = p.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".ndjson") {
        Some(Kind::Ndjson { gz: false })
    } else if name.ends_with(".ndjson.gz") {
        Some(Kind::Ndjson { gz: true })
    } else if name.ends_with(".json") {
        // manifest.json is what `medlake generate` writes beside its data.
        (name != "manifest.json").then_some(Kind::Json { gz: false })
    } else if name.ends_with(".json.gz") {
        Some(Kind::Json { gz: true })
    } else {
        None
    }
}

/// How an input file holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One resource per line.
    Ndjson,
    /// One JSON document: a Bundle, or one resource.
    Document,
}

/// Open an input file for reading, decompressed if it is gzipped, and say how it holds
/// its records. `bytes_read` advances with the (compressed) bytes read from disk.
pub fn open_input(
    path: &Path,
    bytes_read: &Arc<AtomicU64>,
) -> Result<(InputFormat, Box<dyn Read + Send>), SourceError> {
    let kind = kind_of(path).ok_or_else(|| SourceError::UnknownKind {
        path: path.to_path_buf(),
    })?;
    let file = File::open(path).map_err(|source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let counted = Counting {
        inner: file,
        counter: bytes_read.clone(),
    };
    let gz = matches!(kind, Kind::Ndjson { gz: true } | Kind::Json { gz: true });
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            counted,
        )))
    } else {
        Box::new(counted)
    };
    let format = match kind {
        Kind::Ndjson { .. } => InputFormat::Ndjson,
        Kind::Json { .. } => InputFormat::Document,
    };
    Ok((format, reader))
}

/// A reader that counts the bytes read from the file, for progress bars.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Read every record of `path`, calling `emit` for each in file order. `bytes_read`
/// advances with the (compressed) bytes consumed.
pub fn read_file(
    path: &Path,
    bytes_read: &Arc<AtomicU64>,
    emit: &mut dyn FnMut(RawRecord),
) -> Result<(), SourceError> {
    let (format, reader) = open_input(path, bytes_read)?;
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let source: Arc<str> = Arc::from(path.display().to_string());
    match format {
        InputFormat::Ndjson => read_ndjson(reader, source, emit).map_err(io),
        InputFormat::Document => {
            let mut text = String::new();
            let mut r = reader;
            if let Err(e) = r.read_to_string(&mut text) {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    emit(RawRecord {
                        origin: Origin {
                            source,
                            line: None,
                            entry: None,
                        },
                        payload: Payload::Broken(Issue::error(
                            "structure",
                            "the file is not UTF-8 text",
                        )),
                    });
                    return Ok(());
                }
                return Err(io(e));
            }
            read_json_text(&text, source, emit);
            Ok(())
        }
    }
}

fn read_ndjson(
    reader: Box<dyn Read + Send>,
    source: Arc<str>,
    emit: &mut dyn FnMut(RawRecord),
) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, reader);
    let mut buf = Vec::with_capacity(4096);
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if let Some(record) = ndjson_record(&source, line_no, &buf) {
            emit(record);
        }
    }
    Ok(())
}

/// The record of one NDJSON line (1-based `line_no`), or `None` for a blank line.
pub fn ndjson_record(source: &Arc<str>, line_no: u64, line: &[u8]) -> Option<RawRecord> {
    let bytes = trim_ascii(line);
    if bytes.is_empty() {
        return None; // blank lines are not records
    }
    let payload = match std::str::from_utf8(bytes) {
        Ok(s) => Payload::Text(s.to_string()),
        Err(_) => Payload::Broken(Issue::error("structure", "the line is not UTF-8 text")),
    };
    Some(RawRecord {
        origin: Origin {
            source: source.clone(),
            line: Some(line_no),
            entry: None,
        },
        payload,
    })
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Records in one JSON document: a Bundle's entries, or the resource itself.
pub fn read_json_text(text: &str, source: Arc<str>, emit: &mut dyn FnMut(RawRecord)) {
    let whole = Origin {
        source: source.clone(),
        line: None,
        entry: None,
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            emit(RawRecord {
                origin: whole,
                payload: Payload::Broken(Issue::error(
                    "structure",
                    format!("the file is not valid JSON: {e}"),
                )),
            });
            return;
        }
    };
    if value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        emit(RawRecord {
            origin: whole,
            payload: Payload::Json(value),
        });
        return;
    }
    for (i, entry) in bundle_entries(value).into_iter().enumerate() {
        emit(RawRecord {
            origin: Origin {
                source: source.clone(),
                line: None,
                entry: Some(i as u64),
            },
            payload: entry,
        });
    }
}

/// The resources of a Bundle, of any type, with `urn:uuid:` and `urn:oid:` fullUrls
/// resolved: a resource without an id takes the UUID of its `urn:uuid:` fullUrl (or a new
/// one), and every reference to such a fullUrl becomes `Type/id`, as a FHIR server does
/// when it processes a transaction.
pub fn bundle_entries(bundle: Value) -> Vec<Payload> {
    let Value::Object(mut bundle) = bundle else {
        return Vec::new();
    };
    let entries = match bundle.remove("entry") {
        Some(Value::Array(a)) => a,
        Some(_) => {
            return vec![Payload::Broken(
                Issue::error("structure", "Bundle.entry must be an array").at("Bundle.entry"),
            )];
        }
        None => return Vec::new(),
    };
    // First pass: decide every entry's id and note fullUrl -> Type/id.
    let mut rewrites: std::collections::HashMap<String, String> = Default::default();
    let mut staged: Vec<Result<Map<String, Value>, Issue>> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Object(mut entry) = entry else {
            staged.push(Err(Issue::error(
                "structure",
                "a Bundle entry must be an object",
            )
            .at(format!("Bundle.entry[{i}]"))));
            continue;
        };
        let full_url = entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_string);
        match entry.remove("resource") {
            Some(Value::Object(mut resource)) => {
                if let (Some(url), Some(rt)) = (
                    full_url.as_deref(),
                    resource
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ) {
                    if url.starts_with("urn:uuid:") || url.starts_with("urn:oid:") {
                        let id = match resource.get("id").and_then(Value::as_str) {
                            Some(id) => id.to_string(),
                            None => {
                                let id = url
                                    .strip_prefix("urn:uuid:")
                                    .filter(|u| uuid::Uuid::parse_str(u).is_ok())
                                    .map(str::to_string)
                                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                                resource.insert("id".into(), Value::String(id.clone()));
                                id
                            }
                        };
                        rewrites.insert(url.to_string(), format!("{rt}/{id}"));
                    }
                }
                staged.push(Ok(resource));
            }
            Some(_) => staged.push(Err(Issue::error(
                "structure",
                "Bundle.entry.resource must be a JSON object",
            )
            .at(format!("Bundle.entry[{i}].resource")))),
            None => {
                let method = entry
                    .get("request")
                    .and_then(|r| r.get("method"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                staged.push(Err(Issue::error(
                    "not-supported",
                    if method.is_empty() {
                        "the Bundle entry has no resource to ingest".to_string()
                    } else {
                        format!("a {method} entry without a resource cannot be ingested; send it to the FHIR API")
                    },
                )
                .at(format!("Bundle.entry[{i}]"))));
            }
        }
    }
    staged
        .into_iter()
        .map(|r| match r {
            Ok(mut resource) => {
                if !rewrites.is_empty() {
                    for v in resource.values_mut() {
                        rewrite_references(v, &rewrites);
                    }
                }
                Payload::Json(Value::Object(resource))
            }
            Err(issue) => Payload::Broken(issue),
        })
        .collect()
}

fn rewrite_references(v: &mut Value, rewrites: &std::collections::HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "reference" {
                    if let Value::String(s) = child {
                        if let Some(new) = rewrites.get(s.as_str()) {
                            *s = new.clone();
                        }
                    }
                } else {
                    rewrite_references(child, rewrites);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_references(c, rewrites)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bundle_urn_uuids_become_ids_and_references() {
        let u = "urn:uuid:6c2f1f4e-43b1-4f3e-9d7e-6f0c1b2a3d4e";
        let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl": u, "resource": {"resourceType":"Patient"}},
            {"resource": {"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference": u}}},
            {"request": {"method":"DELETE","url":"Patient/1"}}
        ]});
        let out = bundle_entries(bundle);
        assert_eq!(out.len(), 3);
        let Payload::Json(p) = &out[0] else { panic!() };
        assert_eq!(p["id"], "6c2f1f4e-43b1-4f3e-9d7e-6f0c1b2a3d4e");
        let Payload::Json(o) = &out[1] else { panic!() };
        assert_eq!(
            o["subject"]["reference"],
            "Patient/6c2f1f4e-43b1-4f3e-9d7e-6f0c1b2a3d4e"
        );
        assert!(matches!(&out[2], Payload::Broken(i) if i.diagnostics.contains("DELETE")));
    }

    #[test]
    fn ndjson_lines_keep_their_numbers_and_blank_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ndjson");
        std::fs::write(&p, "{\"a\":1}\n\n{\"b\":2}\n").unwrap();
        let mut got = Vec::new();
        read_file(&p, &Arc::new(AtomicU64::new(0)), &mut |r| got.push(r)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].origin.line, Some(1));
        assert_eq!(got[1].origin.line, Some(3));
    }
}
