//! Large payloads beside the tables: DICOM files now, export files and attachments later.
//!
//! A [`BlobStore`] is a folder of an object store (local disk, S3, Azure Blob, GCS). For a
//! lake it is `<workspace>/blobs/` ([`crate::Lake::blob_store`]), reached through the same
//! object store factories and environment as the tables ([`crate::storage`]):
//!
//! ```text
//! blobs/sha256/<hh>/<hash>   content-addressed blobs; <hh> is the first two hex digits
//! blobs/keys/<key>           blobs stored under a key the caller chose
//! blobs/tmp/<uuid>           uploads on their way to sha256/; never listed or read
//! ```
//!
//! # Why content addressing
//!
//! A content-addressed blob is named by the SHA-256 of its bytes. The same DICOM instance
//! sent twice (a retry, a study sent again) is stored once; the name checks the content;
//! and a blob never changes once written, so two writers of it cannot conflict and a
//! reader may cache it forever. Payloads the caller names (an export file) are stored by
//! key instead ([`BlobStore::put_with_key`]); a put by key replaces the blob.
//!
//! # Why upload to a temporary name, then move
//!
//! The hash is known only after the last byte, so [`BlobStore::put`] streams the payload
//! to `tmp/<uuid>` while hashing it, copies it to `sha256/<hh>/<hash>` without
//! overwriting, and deletes the temporary object. An upload becomes visible only by that
//! copy, whole: an upload that fails is aborted (uploaded parts are never committed), and
//! the copy is all or nothing. The copy without overwriting, per backend:
//!
//! - local disk: a hard link, which the file system refuses if the name exists;
//! - Azure Blob: Copy Blob with `If-None-Match: *`;
//! - GCS: a copy with `ifGenerationMatch=0`;
//! - S3: copy-if-not-exists works only where it is configured (`AWS_COPY_IF_NOT_EXISTS`);
//!   elsewhere object_store refuses it, and we `head` the name and copy if it is absent.
//!   Two writers racing there copy the same bytes to the same name, which is harmless
//!   because the name is the content.
//!
//! If the blob exists already, its size is compared with the upload's: equal means the
//! same content and nothing more is written ([`StoredBlob::deduplicated`]); different
//! means the stored object is damaged, and the verified upload replaces it.
//!
//! A put by key uploads straight to its name: completing a multipart upload (or a single
//! PUT) is atomic on every backend, so a reader sees the old blob or the new one.
//!
//! A process that dies between completing a temporary object and deleting it leaves it in
//! `tmp/`, unseen; [`BlobStore::remove_stale_uploads`] deletes such leftovers. Parts of
//! an upload that was never completed are invisible: Azure drops uncommitted blocks after
//! a week, local disk removes its staging file when the upload is dropped, and an S3
//! bucket needs a lifecycle rule that aborts incomplete multipart uploads.
//!
//! # Memory bound
//!
//! Payloads are never held whole. The first [`PART_SIZE`] bytes are gathered; a payload
//! that ends before that is stored with one PUT. A longer one becomes a multipart upload
//! in parts of [`PART_SIZE`] bytes, with at most [`PARTS_IN_FLIGHT`] uploading while the
//! next fills, so an upload holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes plus
//! the chunk its producer hands over; the producer is not polled while the parts are busy.
//! Reads are streams of the chunks the object store returns.
//!
//! # Ranges
//!
//! [`BlobStore::get_range`] takes a [`ByteRange`]: `start..end`, `start..`, or the last
//! `n` bytes, which is what HTTP's `Range: bytes=-n` asks (it parses from the header's
//! text). It is resolved against the blob's size as HTTP does: a range that starts at or
//! past the end fails with [`BlobError::RangeNotSatisfiable`], which carries the size for
//! a `416` answer; an end past the end is cut there; a suffix longer than the blob is the
//! whole blob. The read first asks the blob's size (`head`), resolves the range, then
//! reads those bytes with `If-Match` on the `head`'s ETag, so a keyed blob replaced in
//! between fails the read instead of mixing two versions. We resolve ranges ourselves
//! because backends differ: Azure has no suffix ranges, and each reports an unsatisfiable
//! range its own way.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use futures::{StreamExt, TryStreamExt, stream};
//! use medlake_lake::blob::ByteRange;
//!
//! # async fn example(lake: medlake_lake::Lake) -> Result<(), Box<dyn std::error::Error>> {
//! let blobs = lake.blob_store()?;
//! // Any stream of byte chunks: an HTTP body, or a file through tokio_util's ReaderStream.
//! let chunks = stream::iter([&b"DICM"[..], &b" and the rest"[..]])
//!     .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c)));
//! let stored = blobs.put(chunks).await?;
//! println!("{} bytes, sha256 {}", stored.size, stored.sha256);
//!
//! // The last 8 bytes, as `Range: bytes=-8` asks.
//! let range: ByteRange = "bytes=-8".parse()?;
//! let mut read = blobs.get_range(&stored.id, range).await?;
//! println!("Content-Range: {}", read.content_range().unwrap_or_default());
//! while let Some(chunk) = read.body.try_next().await? {
//!     // Send `chunk` on.
//! #   let _ = chunk;
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod id;
mod range;

use std::fmt;
use std::ops::Range;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

pub use error::BlobError;
pub use id::BlobId;
pub use range::ByteRange;

use id::ListPrefix;

/// The folder of a workspace that holds its blob store.
pub const BLOBS_DIR: &str = "blobs/";
/// The folder of uploads on their way to a content address.
const TMP_DIR: &str = "tmp";
/// The size of each part of a multipart upload. S3 wants at least 5 MiB (but the last);
/// 8 MiB parts reach 80 GB within S3's 10,000 parts, beyond the largest DICOM files.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// How many parts of one upload may be on their way at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// A store of large payloads in a folder of an object store. Cheap to clone: clones share
/// the object store client.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    url: Arc<Url>,
}

/// What a put stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub id: BlobId,
    pub size: u64,
    /// The SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// The same content was stored already (content-addressed puts only), so nothing new
    /// was kept.
    pub deduplicated: bool,
}

/// What is known of a stored blob without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub id: BlobId,
    pub size: u64,
    /// The SHA-256 (lowercase hex) of a content-addressed blob; `None` for a keyed blob,
    /// whose hash only its put returned.
    pub sha256: Option<String>,
    pub last_modified: DateTime<Utc>,
}

/// A blob being read: what it is, which of its bytes come, and the stream of them.
pub struct BlobRead {
    pub info: BlobInfo,
    /// The bytes `body` yields, within `0..info.size`.
    pub range: Range<u64>,
    pub body: BoxStream<'static, Result<Bytes, BlobError>>,
}

impl BlobRead {
    /// The HTTP `Content-Range` value of this read, `bytes <first>-<last>/<size>`; `None`
    /// for an empty blob, which has no byte to name.
    pub fn content_range(&self) -> Option<String> {
        (self.range.start < self.range.end).then(|| {
            format!(
                "bytes {}-{}/{}",
                self.range.start,
                self.range.end - 1,
                self.info.size
            )
        })
    }
}

impl fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobRead")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The size and hash of a finished upload.
struct Uploaded {
    size: u64,
    sha256: String,
}

impl BlobStore {
    /// The blob store in the folder at `url` (`file:///srv/lake/default/blobs/`,
    /// `az://container/lake/default/blobs/`, ...). Cloud stores take their configuration
    /// from the environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`), as the lake's tables do.
    pub fn open(url: &Url) -> Result<BlobStore, BlobError> {
        BlobStore::open_with_options(url, std::iter::empty::<(String, String)>())
    }

    /// [`BlobStore::open`] with object store options (`azure_storage_account_name`,
    /// `aws_region`, ...) on top of the environment.
    pub fn open_with_options<K, V>(
        url: &Url,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<BlobStore, BlobError>
    where
        K: AsRef<str> + Into<String>,
        V: AsRef<str> + Into<String>,
    {
        crate::storage::register_cloud_stores();
        let mut url = url.clone();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        // The factories deltalake resolves table URLs with: one way from URL to store.
        let store =
            deltalake::logstore::store_for(&url, options).map_err(|e| BlobError::BadLocation {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(BlobStore {
            store,
            url: Arc::new(url),
        })
    }

    /// The URL of the store's folder.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Store a payload under its SHA-256. Equal content is stored once: a put of content
    /// already here keeps the stored blob and says so in [`StoredBlob::deduplicated`].
    ///
    /// If the payload stream fails, nothing is stored and [`BlobError::Payload`] says how
    /// far it got.
    pub async fn put<S, E>(&self, payload: S) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let temp = Path::from(format!("{TMP_DIR}/{}", Uuid::new_v4()));
        let uploaded = self.upload(&temp, payload).await?;
        let id = BlobId::from_sha256(&uploaded.sha256)?;
        let moved = self
            .copy_to_content_address(&temp, &id, uploaded.size)
            .await;
        // The temporary object goes whatever the copy did: nothing reads it again.
        if let Err(e) = self.store.delete(&temp).await {
            tracing::warn!(
                "could not delete the temporary upload {}{temp} ({e}); \
                 remove_stale_uploads will",
                self.url
            );
        }
        let deduplicated = moved?;
        tracing::debug!(%id, size = uploaded.size, deduplicated, "stored a blob");
        Ok(StoredBlob {
            id,
            size: uploaded.size,
            sha256: uploaded.sha256,
            deduplicated,
        })
    }

    /// Store a payload under `key`, replacing any blob stored under it. Readers see the
    /// old blob or the new one, never a part. If the payload stream fails, the old blob
    /// stays.
    pub async fn put_with_key<S, E>(&self, key: &str, payload: S) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let id = BlobId::from_key(key)?;
        let uploaded = self.upload(&id.path(), payload).await?;
        tracing::debug!(%id, size = uploaded.size, "stored a blob by key");
        Ok(StoredBlob {
            id,
            size: uploaded.size,
            sha256: uploaded.sha256,
            deduplicated: false,
        })
    }

    /// Read a whole blob.
    pub async fn get(&self, id: &BlobId) -> Result<BlobRead, BlobError> {
        let result = self
            .store
            .get(&id.path())
            .await
            .map_err(|e| self.read_error(id, e))?;
        let info = blob_info(id.clone(), &result.meta);
        let range = result.range.clone();
        Ok(BlobRead {
            info,
            range,
            body: self.body(id, result.into_stream()),
        })
    }

    /// Read part of a blob: see the module documentation for how ranges resolve.
    pub async fn get_range(
        &self,
        id: &BlobId,
        range: impl Into<ByteRange>,
    ) -> Result<BlobRead, BlobError> {
        let range = range.into();
        range.check()?;
        let path = id.path();
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| self.read_error(id, e))?;
        let Some(bytes) = range.resolve(meta.size) else {
            return Err(BlobError::RangeNotSatisfiable {
                id: id.to_string(),
                range: range.to_string(),
                size: meta.size,
            });
        };
        let options = GetOptions {
            range: Some(GetRange::Bounded(bytes)),
            // A content-addressed blob never changes; a keyed one may be replaced between
            // the head and this read, and then the read must fail, not mix versions.
            if_match: id.key().and(meta.e_tag.clone()),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| match e {
                object_store::Error::Precondition { .. } => BlobError::Storage {
                    action: format!(
                        "read {id}, which was replaced while being read (read it again)"
                    ),
                    source: e,
                },
                e => self.read_error(id, e),
            })?;
        let info = blob_info(id.clone(), &result.meta);
        let range = result.range.clone();
        Ok(BlobRead {
            info,
            range,
            body: self.body(id, result.into_stream()),
        })
    }

    /// What is known of a blob without reading it.
    pub async fn head(&self, id: &BlobId) -> Result<BlobInfo, BlobError> {
        let meta = self
            .store
            .head(&id.path())
            .await
            .map_err(|e| self.read_error(id, e))?;
        Ok(blob_info(id.clone(), &meta))
    }

    /// Delete a blob. Deleting a blob that is not there succeeds (object stores differ on
    /// reporting it). A content-addressed blob is one for all who stored that content:
    /// delete it only when nothing refers to it.
    pub async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        match self.store.delete(&id.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.storage(format!("delete {id}"), e)),
        }
    }

    /// The blobs whose id ([`BlobId`]'s text form) starts with `prefix`, in no particular
    /// order: `""` lists all, `sha256:` (and hex digits) lists content-addressed blobs,
    /// anything else lists keys, e.g. `exports/` the keys in that folder.
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<BlobInfo, BlobError>> {
        let prefix = match ListPrefix::parse(prefix) {
            Ok(p) => p,
            Err(e) => return stream::once(async { Err(e) }).boxed(),
        };
        let this = self.clone();
        let id_prefix = prefix.id_prefix;
        stream::iter(prefix.folders)
            .flat_map(move |folder| {
                let this = this.clone();
                let listing = this.store.list(Some(&folder));
                listing.map_err(move |e| this.storage(format!("list {folder}"), e))
            })
            .try_filter_map(move |meta| {
                let listed = match BlobId::from_path(&meta.location) {
                    Some(id) if id.to_string().starts_with(&id_prefix) => {
                        Some(blob_info(id, &meta))
                    }
                    Some(_) => None,
                    None => {
                        tracing::warn!(
                            "{} is no blob's name; it is left out of the listing",
                            meta.location
                        );
                        None
                    }
                };
                async move { Ok::<_, BlobError>(listed) }
            })
            .boxed()
    }

    /// Delete what uploads left in `tmp/` if they are older than `older_than`: the
    /// temporary objects of processes that stopped between an upload and its move. Use an
    /// age well above the longest upload (a day): a younger one may still be on its way.
    /// Returns how many were deleted.
    pub async fn remove_stale_uploads(&self, older_than: Duration) -> Result<usize, BlobError> {
        let Some(cutoff) = TimeDelta::from_std(older_than)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
        else {
            return Ok(0);
        };
        let tmp = Path::from(TMP_DIR);
        let stale: Vec<Path> = self
            .store
            .list(Some(&tmp))
            .try_filter_map(|meta| async move {
                Ok::<_, object_store::Error>(
                    (meta.last_modified <= cutoff).then_some(meta.location),
                )
            })
            .try_collect()
            .await
            .map_err(|e| self.storage(format!("list {tmp}"), e))?;
        for path in &stale {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.storage(format!("delete {path}"), e)),
            }
        }
        if !stale.is_empty() {
            tracing::info!(
                "removed {} stale temporary uploads from {}",
                stale.len(),
                self.url
            );
        }
        Ok(stale.len())
    }

    /// Stream `payload` to `location` while hashing it: one PUT if it fits in a part, a
    /// multipart upload otherwise. On failure the upload is aborted.
    async fn upload<S, E>(&self, location: &Path, payload: S) -> Result<Uploaded, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut payload = pin!(payload);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        // The payload's start, until it is known whether one PUT will do.
        let mut first_part: Vec<Bytes> = Vec::new();
        let mut first_part_len = 0usize;
        let mut multipart: Option<WriteMultipart> = None;

        let fed: Result<(), BlobError> = async {
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| BlobError::Payload {
                    received: size,
                    source: e.into(),
                })?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if let Some(writer) = multipart.as_mut() {
                    // Back pressure: the next chunk waits for a free part slot.
                    writer
                        .wait_for_capacity(PARTS_IN_FLIGHT)
                        .await
                        .map_err(|e| self.storage(format!("upload a part of {location}"), e))?;
                    writer.put(chunk);
                    continue;
                }
                first_part_len += chunk.len();
                first_part.push(chunk);
                if first_part_len >= PART_SIZE {
                    let upload = self
                        .store
                        .put_multipart(location)
                        .await
                        .map_err(|e| self.storage(format!("start uploading {location}"), e))?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                    for chunk in first_part.drain(..) {
                        writer.put(chunk);
                    }
                    multipart = Some(writer);
                }
            }
            Ok(())
        }
        .await;

        if let Err(e) = fed {
            if let Some(writer) = multipart {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(
                        "could not abort the upload of {}{location} ({abort}); its parts \
                         stay invisible until the store expires them",
                        self.url
                    );
                }
            }
            return Err(e);
        }
        match multipart {
            Some(writer) => writer
                .finish()
                .await
                .map_err(|e| self.storage(format!("complete the upload of {location}"), e))?,
            None => self
                .store
                .put(location, PutPayload::from_iter(first_part))
                .await
                .map_err(|e| self.storage(format!("upload {location}"), e))?,
        };
        Ok(Uploaded {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// Copy a finished upload to the content address of `id` without overwriting (see
    /// the module documentation for each backend). Returns whether the content was there
    /// already.
    async fn copy_to_content_address(
        &self,
        temp: &Path,
        id: &BlobId,
        size: u64,
    ) -> Result<bool, BlobError> {
        let target = id.path();
        let create = CopyOptions::new().with_mode(CopyMode::Create);
        match self.store.copy_opts(temp, &target, create).await {
            Ok(()) => Ok(false),
            // Azure answers an existing target with 409, others with 412.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => self.keep_or_replace(temp, id, size).await,
            // S3 without copy-if-not-exists.
            Err(
                object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. },
            ) => match self.store.head(&target).await {
                Ok(_) => self.keep_or_replace(temp, id, size).await,
                Err(object_store::Error::NotFound { .. }) => {
                    self.store
                        .copy(temp, &target)
                        .await
                        .map_err(|e| self.storage(format!("store {id}"), e))?;
                    Ok(false)
                }
                Err(e) => Err(self.storage(format!("look for {id}"), e)),
            },
            Err(e) => Err(self.storage(format!("store {id}"), e)),
        }
    }

    /// The content address of `id` holds an object already: keep it if it has the
    /// upload's size (then it is the same content), replace it with the upload if not.
    async fn keep_or_replace(
        &self,
        temp: &Path,
        id: &BlobId,
        size: u64,
    ) -> Result<bool, BlobError> {
        let target = id.path();
        let existing = self
            .store
            .head(&target)
            .await
            .map_err(|e| self.storage(format!("look for {id}"), e))?;
        if existing.size == size {
            return Ok(true);
        }
        tracing::warn!(
            "blob {id} has {} bytes where its content has {size}: replacing the damaged \
             object with the new upload",
            existing.size
        );
        self.store
            .copy(temp, &target)
            .await
            .map_err(|e| self.storage(format!("replace {id}"), e))?;
        Ok(false)
    }

    /// A read's chunks, with errors that name the blob.
    fn body(
        &self,
        id: &BlobId,
        chunks: BoxStream<'static, object_store::Result<Bytes>>,
    ) -> BoxStream<'static, Result<Bytes, BlobError>> {
        let action = format!("read {id} from {}", self.url);
        chunks
            .map_err(move |source| BlobError::Storage {
                action: action.clone(),
                source,
            })
            .boxed()
    }

    fn read_error(&self, id: &BlobId, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound { id: id.to_string() },
            e => self.storage(format!("read {id}"), e),
        }
    }

    fn storage(&self, action: String, source: object_store::Error) -> BlobError {
        BlobError::Storage {
            action: format!("{action} in {}", self.url),
            source,
        }
    }
}

fn blob_info(id: BlobId, meta: &ObjectMeta) -> BlobInfo {
    BlobInfo {
        sha256: id.sha256().map(str::to_string),
        id,
        size: meta.size,
        last_modified: meta.last_modified,
    }
}
