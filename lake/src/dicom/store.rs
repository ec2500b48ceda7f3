//! [`Lake::store_dicom`]: one pass over an uploaded instance that stores its file in the
//! blob store and indexes its header, then one row through the WAL.
//!
//! The upload's chunks go to the blob store's streaming put; each chunk is also handed,
//! until the header is read, to the parser on a blocking thread through a queue of a few
//! chunks (the parser is synchronous, the upload is not). The parser reads up to the
//! pixel data and stops; the rest of the file only streams to the blob store. Before the
//! upload may complete, the tee waits for the parser's answer, and a refused instance
//! (not DICOM, damaged, a duplicate, another study) fails the upload: the blob store
//! aborts it, so a refused file leaves no blob. A duplicate is known as soon as the
//! header is read, so its pixel data is not uploaded again.

use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use medlake_ingest::dicom::{BulkData, DicomInstance, InstanceHeader, check_study};
use parking_lot::Mutex;
use tokio::sync::{OnceCell, mpsc};
use tokio::task::JoinHandle;

use super::error::DicomStoreError;
use super::instances::{INSTANCES_TABLE, StoredFile, instance_row};
use super::stored_sops::{Reservation, StoredSops};
use crate::blob::{BLOBS_DIR, BlobId, BlobStore};
use crate::lake::Lake;

/// How many upload chunks may wait for the parser: enough to keep it busy, few enough
/// that a slow parser holds back the upload rather than memory.
const PARSER_QUEUE: usize = 4;

/// The WADO-RS path under which an instance's bulk data is served; its `BulkDataURI`s in
/// `dicom_json` are this followed by `/{path}` ([`medlake_ingest::dicom::json`]).
pub fn bulkdata_prefix(study: &str, series: &str, sop: &str) -> String {
    format!("/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulkdata")
}

/// What the lake keeps for storing DICOM: the duplicate check, loaded by the first store,
/// and the blob store client.
#[derive(Default)]
pub(crate) struct DicomState {
    sops: OnceCell<Arc<StoredSops>>,
    blobs: OnceLock<BlobStore>,
}

/// An instance stored: its header, its file and its row's WAL sequence.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    /// The indexed attributes (UIDs, SOP Class for the STOW-RS answer, and
    /// `unreadable`, which a STOW-RS answer may report as warnings).
    pub header: InstanceHeader,
    /// The file in the workspace's blob store ([`Lake::blob_store`]).
    pub blob: BlobId,
    /// The file's object-store path relative to the workspace, as in `blob_path`.
    pub blob_path: String,
    pub size_bytes: u64,
    /// The SHA-256 of the file, lowercase hex.
    pub sha256: String,
    pub stored_at: DateTime<Utc>,
    /// The WAL sequence of the row: durable, and in SQL.
    pub wal_seq: i64,
}

/// What the parser thread hands back for a storable instance.
struct Parsed {
    instance: DicomInstance,
    reservation: Reservation,
}

type ParseOutcome = Result<Parsed, DicomStoreError>;

/// Reads the header from the upload's chunks, checks it against the URL's study, and
/// reserves its SOPInstanceUID. Not generic, unlike the store that calls it, so that it
/// is compiled once, with this crate.
fn parse_upload(
    chunks: mpsc::Receiver<Bytes>,
    requested: Option<String>,
    sops: &Arc<StoredSops>,
) -> ParseOutcome {
    let instance = DicomInstance::read(ChunkReader {
        chunks,
        current: Bytes::new(),
    })?;
    let header = instance.header();
    if let Some(requested) = requested {
        check_study(&requested, &header.study_instance_uid)?;
    }
    let reservation =
        sops.reserve(&header.sop_instance_uid)
            .ok_or_else(|| DicomStoreError::Duplicate {
                sop_instance_uid: header.sop_instance_uid.clone(),
            })?;
    Ok(Parsed {
        instance,
        reservation,
    })
}

impl Lake {
    /// Store one DICOM Part 10 instance from its upload (any stream of byte chunks: an
    /// HTTP body part, a file through a reader stream): the file whole in the blob store,
    /// its header as a row of `dicom.instances`. One pass, never the whole file in memory
    /// (see [`crate::dicom`]). On return the row is durable and in SQL.
    ///
    /// Refused, with no row and no new blob: a file that is not a storable instance
    /// ([`DicomStoreError::Invalid`]) and an instance whose SOPInstanceUID is stored
    /// already ([`DicomStoreError::Duplicate`], `0xB00E`).
    pub async fn store_dicom<S, E>(&self, upload: S) -> Result<StoredInstance, DicomStoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.store_dicom_checked(upload, None).await
    }

    /// [`Lake::store_dicom`] for `POST /studies/{study}`: an instance of another study is
    /// refused ([`medlake_ingest::dicom::DicomError::StudyMismatch`], `0xA900`).
    pub async fn store_dicom_for_study<S, E>(
        &self,
        upload: S,
        study_instance_uid: &str,
    ) -> Result<StoredInstance, DicomStoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.store_dicom_checked(upload, Some(study_instance_uid))
            .await
    }

    /// How many instances `dicom.instances` holds, as the duplicate check counts them.
    pub async fn dicom_instance_count(&self) -> Result<usize, DicomStoreError> {
        Ok(self.stored_sops().await?.len())
    }

    async fn stored_sops(&self) -> Result<Arc<StoredSops>, DicomStoreError> {
        let state = self.dicom_state();
        let view = match self.kind_view(INSTANCES_TABLE) {
            Ok(v) => v,
            Err(_) => return Err(DicomStoreError::NotEnabled),
        };
        state
            .sops
            .get_or_try_init(|| async { StoredSops::load(view).await.map(Arc::new) })
            .await
            .cloned()
            .map_err(DicomStoreError::Lake)
    }

    fn dicom_blobs(&self) -> Result<BlobStore, DicomStoreError> {
        let state = self.dicom_state();
        if let Some(b) = state.blobs.get() {
            return Ok(b.clone());
        }
        let blobs = self.blob_store().map_err(DicomStoreError::Blob)?;
        Ok(state.blobs.get_or_init(|| blobs).clone())
    }

    async fn store_dicom_checked<S, E>(
        &self,
        upload: S,
        study: Option<&str>,
    ) -> Result<StoredInstance, DicomStoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let sops = self.stored_sops().await?;
        let blobs = self.dicom_blobs()?;

        let (tx, rx) = mpsc::channel::<Bytes>(PARSER_QUEUE);
        let requested = study.map(str::to_string);
        let parser = tokio::task::spawn_blocking(move || parse_upload(rx, requested, &sops));

        let outcome: Arc<Mutex<Option<ParseOutcome>>> = Arc::default();
        let tee = Tee {
            upload: Box::pin(upload),
            parser_input: Some(tx),
            parser: Some(parser),
            outcome: outcome.clone(),
            received: 0,
            done: false,
        };
        let put = blobs.put(futures::stream::unfold(tee, Tee::step)).await;
        let parsed = outcome.lock().take();
        let blob = match (put, parsed) {
            (Ok(blob), Some(Ok(parsed))) => (blob, parsed),
            (_, Some(Err(refused))) => return Err(refused),
            (Err(e), _) => return Err(DicomStoreError::Blob(e)),
            (Ok(_), None) => {
                return Err(DicomStoreError::Upload {
                    received: 0,
                    reason: "the upload ended before the instance was read".into(),
                });
            }
        };
        let (
            blob,
            Parsed {
                instance,
                reservation,
            },
        ) = blob;

        let header = instance.header();
        let json = instance
            .to_json(&BulkData::new(bulkdata_prefix(
                &header.study_instance_uid,
                &header.series_instance_uid,
                &header.sop_instance_uid,
            )))
            .to_string();
        let blob_path = format!("{BLOBS_DIR}{}", blob.id.path());
        let stored_at = Utc::now();
        let file = StoredFile {
            dicom_json: &json,
            blob_path: &blob_path,
            size_bytes: blob.size,
            sha256: &blob.sha256,
            stored_at,
        };
        let appended = match instance_row(header, &file) {
            Ok(row) => self.append_rows(INSTANCES_TABLE, row).await,
            Err(e) => Err(e),
        };
        let wal_seq = match appended {
            Ok(seq) => seq,
            Err(e) => {
                // A blob this store created is referenced by no row: a row with these
                // bytes would have this SOPInstanceUID, and this store was not refused
                // as a duplicate. Deduplicated content is left alone (an earlier store
                // that crashed before its row left it, and a retry will want it).
                if !blob.deduplicated {
                    if let Err(d) = blobs.delete(&blob.id).await {
                        tracing::warn!(
                            "could not delete blob {} of an instance not recorded ({d}): \
                             it stays unreferenced",
                            blob.id
                        );
                    }
                }
                return Err(DicomStoreError::Lake(e));
            }
        };
        reservation.stored();
        tracing::debug!(
            sop = %header.sop_instance_uid,
            size = blob.size,
            deduplicated = blob.deduplicated,
            "stored a DICOM instance"
        );
        Ok(StoredInstance {
            header: instance.into_header(),
            blob: blob.id,
            blob_path,
            size_bytes: blob.size,
            sha256: blob.sha256,
            stored_at,
            wal_seq,
        })
    }
}

/// The upload's chunks, passed on to the blob store and, until the header is read, to
/// the parser.
struct Tee<S> {
    upload: Pin<Box<S>>,
    /// `None` once the parser has stopped reading (or the upload ended).
    parser_input: Option<mpsc::Sender<Bytes>>,
    /// `None` once its answer is in `outcome`.
    parser: Option<JoinHandle<ParseOutcome>>,
    outcome: Arc<Mutex<Option<ParseOutcome>>>,
    received: u64,
    done: bool,
}

/// The error that makes the blob store abort the upload; the reason is in `outcome`.
#[derive(Debug, thiserror::Error)]
#[error("the instance was refused: {0}")]
struct Refused(String);

type TeeItem = Result<Bytes, Refused>;

impl<S, E> Tee<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn step(mut self) -> Option<(TeeItem, Self)> {
        if self.done {
            return None;
        }
        match self.upload.next().await {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if let Some(input) = &self.parser_input {
                    if input.send(chunk.clone()).await.is_err() {
                        // The parser stopped reading: the header is read, or refused.
                        self.parser_input = None;
                        if let Err(refused) = self.parser_answer().await {
                            self.done = true;
                            return Some((Err(refused), self));
                        }
                    }
                }
                Some((Ok(chunk), self))
            }
            Some(Err(e)) => {
                let reason = e.into().to_string();
                self.parser_input = None;
                self.done = true;
                *self.outcome.lock() = Some(Err(DicomStoreError::Upload {
                    received: self.received,
                    reason: reason.clone(),
                }));
                Some((Err(Refused(reason)), self))
            }
            None => {
                // End of input for the parser too, then its answer decides.
                self.parser_input = None;
                self.done = true;
                match self.parser_answer().await {
                    Ok(()) => None,
                    Err(refused) => Some((Err(refused), self)),
                }
            }
        }
    }

    /// Waits for the parser and keeps its answer; `Err` if the instance is refused.
    async fn parser_answer(&mut self) -> Result<(), Refused> {
        let Some(parser) = self.parser.take() else {
            return Ok(());
        };
        let answer = parser.await.unwrap_or_else(|e| {
            Err(DicomStoreError::Upload {
                received: self.received,
                reason: format!("the header parser failed: {e}"),
            })
        });
        let refused = answer.as_ref().err().map(|e| Refused(e.to_string()));
        *self.outcome.lock() = Some(answer);
        refused.map_or(Ok(()), Err)
    }
}

/// The parser's side of the queue: the chunks as one byte stream; its end is the end of
/// the upload (or the tee giving up).
struct ChunkReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
