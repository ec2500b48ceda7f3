//! A streamed `/ingest` body, split into records as it arrives, for the bulk path.
//!
//! NDJSON is split line by line, so a body of any size passes through in chunks of
//! [`CHUNK`] records and never lies whole in memory. A body that is one JSON document (a
//! Bundle, or one resource, possibly pretty-printed over many lines) has to be parsed
//! whole: it is recognised by its content type (`application/fhir+json`,
//! `application/json`) or by a first line that is not a JSON value by itself, and may be
//! at most [`MAX_DOCUMENT_BYTES`]; larger loads belong in NDJSON.

use std::sync::Arc;

use axum::body::Body;
use futures::StreamExt;
use medlake_ingest::source::{RawRecord, ndjson_record, read_json_text};
use tokio::sync::mpsc;

/// Records per chunk handed to the bulk pipeline.
pub const CHUNK: usize = 4096;

/// The largest single JSON document (a Bundle) the bulk path takes.
pub const MAX_DOCUMENT_BYTES: usize = 512 << 20;

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body could not be read to its end ({0}); send it again")]
    Read(String),
    #[error(
        "the body is one JSON document larger than {} MiB; send large loads as NDJSON (one \
         resource per line), which is streamed",
        MAX_DOCUMENT_BYTES >> 20
    )]
    DocumentTooLarge,
}

/// What the body turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Undecided,
    Ndjson,
    Document,
}

struct Splitter {
    source: Arc<str>,
    shape: Shape,
    /// Bytes not yet split: a partial line (NDJSON), or the whole document so far.
    pending: Vec<u8>,
    line_no: u64,
    chunk: Vec<RawRecord>,
    tx: mpsc::Sender<Vec<RawRecord>>,
}

impl Splitter {
    /// Hand a full chunk on. `false` once the pipeline has stopped listening.
    async fn emit(&mut self, record: RawRecord) -> bool {
        self.chunk.push(record);
        if self.chunk.len() < CHUNK {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.tx.send(full).await.is_ok()
    }

    /// Decide the shape from the first non-blank line, once it is complete.
    fn decide(&mut self, at_end: bool) {
        let mut rest = &self.pending[..];
        loop {
            let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, at_end),
            };
            if !complete {
                return; // wait for more bytes
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                if line.len() == rest.len() {
                    return; // only blank so far
                }
                rest = &rest[line.len() + 1..];
                continue;
            }
            let alone = serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
            self.shape = if alone {
                Shape::Ndjson
            } else {
                Shape::Document
            };
            return;
        }
    }

    /// Split off and emit every complete line.
    async fn split_lines(&mut self) -> bool {
        let mut start = 0;
        let pending = std::mem::take(&mut self.pending);
        while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
            self.line_no += 1;
            let record = ndjson_record(&self.source, self.line_no, &pending[start..start + i]);
            start += i + 1;
            if let Some(r) = record {
                if !self.emit(r).await {
                    return false;
                }
            }
        }
        self.pending = pending[start..].to_vec();
        true
    }
}

/// Read `body` to its end, sending its records in chunks to `tx`. `document` says the
/// content type announced one JSON document.
pub async fn split(
    body: Body,
    document: bool,
    tx: mpsc::Sender<Vec<RawRecord>>,
) -> Result<(), BodyError> {
    let mut s = Splitter {
        source: Arc::from("request body"),
        shape: if document {
            Shape::Document
        } else {
            Shape::Undecided
        },
        pending: Vec::new(),
        line_no: 0,
        chunk: Vec::with_capacity(CHUNK),
        tx,
    };
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let bytes = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        s.pending.extend_from_slice(&bytes);
        if s.shape == Shape::Undecided {
            s.decide(false);
        }
        match s.shape {
            Shape::Undecided => {}
            Shape::Ndjson => {
                if !s.split_lines().await {
                    return Ok(()); // the pipeline stopped; its error says why
                }
            }
            Shape::Document => {
                if s.pending.len() > MAX_DOCUMENT_BYTES {
                    return Err(BodyError::DocumentTooLarge);
                }
            }
        }
    }
    if s.shape == Shape::Undecided {
        s.decide(true);
    }
    match s.shape {
        Shape::Undecided => {} // an empty or blank body: no records
        Shape::Ndjson => {
            if !s.split_lines().await {
                return Ok(());
            }
            let last = std::mem::take(&mut s.pending);
            s.line_no += 1;
            if let Some(r) = ndjson_record(&s.source, s.line_no, &last) {
                if !s.emit(r).await {
                    return Ok(());
                }
            }
        }
        Shape::Document => {
            let text = std::mem::take(&mut s.pending);
            let source = s.source.clone();
            let records = medlake_lake::blocking::run(move || {
                let mut out = Vec::new();
                match std::str::from_utf8(&text) {
                    Ok(text) => read_json_text(text, source, &mut |r| out.push(r)),
                    // Read as text anyway: the record comes back as a structure error.
                    Err(_) => read_json_text(&String::from_utf8_lossy(&text), source, &mut |r| {
                        out.push(r)
                    }),
                }
                out
            })
            .await
            .map_err(|e| BodyError::Read(e.to_string()))?;
            for r in records {
                if !s.emit(r).await {
                    return Ok(());
                }
            }
        }
    }
    if !s.chunk.is_empty() {
        let last = std::mem::take(&mut s.chunk);
        let _ = s.tx.send(last).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use medlake_ingest::source::Payload;

    async fn records_of(parts: &[&str], document: bool) -> Vec<RawRecord> {
        let owned: Vec<Result<bytes::Bytes, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(bytes::Bytes::from(p.to_string())))
            .collect();
        let body = Body::from_stream(futures::stream::iter(owned));
        let (tx, mut rx) = mpsc::channel(4);
        let splitter = tokio::spawn(split(body, document, tx));
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend(chunk);
        }
        splitter.await.unwrap().unwrap();
        out
    }

    fn text(r: &RawRecord) -> &str {
        match &r.payload {
            Payload::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn ndjson_lines_split_across_frames_keep_their_line_numbers() {
        let parts = [
            "\n{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceT",
            "ype\":\"Patient\",\"id\":\"b\"}\n\n",
            "{\"resourceType\":\"Patient\",\"id\":\"c\"}",
        ];
        let records = records_of(&parts, false).await;
        let got: Vec<(&str, Option<u64>)> =
            records.iter().map(|r| (text(r), r.origin.line)).collect();
        assert_eq!(
            got,
            vec![
                ("{\"resourceType\":\"Patient\",\"id\":\"a\"}", Some(2)),
                ("{\"resourceType\":\"Patient\",\"id\":\"b\"}", Some(3)),
                ("{\"resourceType\":\"Patient\",\"id\":\"c\"}", Some(5)),
            ]
        );
    }

    #[tokio::test]
    async fn a_pretty_printed_bundle_is_one_document() {
        let bundle = "{\n  \"resourceType\": \"Bundle\",\n  \"type\": \"collection\",\n  \"entry\": [\n    {\"resource\": {\"resourceType\": \"Patient\", \"id\": \"x\"}},\n    {\"resource\": {\"resourceType\": \"Patient\", \"id\": \"y\"}}\n  ]\n}\n";
        let (a, b) = bundle.split_at(30);
        let records = records_of(&[a, b], false).await;
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].origin.entry, Some(1));
        // The content type alone also says so, even on one line.
        let one_line = "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"id\":\"z\"}}]}";
        assert_eq!(records_of(&[one_line], true).await.len(), 1);
    }

    #[tokio::test]
    async fn more_than_a_chunk_arrives_in_chunks() {
        let line = "{\"resourceType\":\"Patient\"}\n";
        let body = line.repeat(CHUNK * 2 + 3);
        let records = records_of(&[&body], false).await;
        assert_eq!(records.len(), CHUNK * 2 + 3);
        assert_eq!(
            records.last().unwrap().origin.line,
            Some(CHUNK as u64 * 2 + 3)
        );
    }
}
