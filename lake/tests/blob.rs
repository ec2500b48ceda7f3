//! The blob store on local disk and on Azurite, a real Azure Blob Storage emulator: large
//! payloads streamed in chunks, whole and ranged reads, content addressing, keys, missing
//! blobs, and uploads that fail or are cut off.
//!
//! Azurite comes from `tests/node_modules`, which the test command (scripts/test) installs
//! with npm.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use medlake_lake::blob::{BlobError, BlobId, BlobRead, BlobStore, ByteRange, PART_SIZE};
use medlake_lake::{Lake, LakeOptions};
use sha2::{Digest, Sha256};
use url::Url;

/// Three parts and a bit: tens of MB through a multipart upload.
const LARGE: u64 = 3 * PART_SIZE as u64 + 123_457;
/// An odd chunk size, so chunks straddle part boundaries.
const CHUNK: u64 = 64 * 1024 + 7;

/// The byte at `i` of the payload of `seed`: every byte is known without keeping any.
fn byte_at(seed: u64, i: u64) -> u8 {
    ((i ^ seed.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn bytes_of(seed: u64, range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(|i| byte_at(seed, i)).collect()
}

/// `len` bytes produced chunk by chunk, never as one buffer.
fn payload(seed: u64, len: u64) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    stream::iter((0..len).step_by(CHUNK as usize))
        .map(move |start| Ok(Bytes::from(bytes_of(seed, start..(start + CHUNK).min(len)))))
}

/// The payload followed by a failure of its producer.
fn failing_payload(seed: u64, len: u64) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    payload(seed, len).chain(stream::once(async {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the client went away",
        ))
    }))
}

fn sha256_of(seed: u64, len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut start = 0;
    while start < len {
        let end = (start + CHUNK).min(len);
        hasher.update(bytes_of(seed, start..end));
        start = end;
    }
    hex::encode(hasher.finalize())
}

/// The size and SHA-256 of what a read streams, without keeping it.
async fn size_and_hash(read: BlobRead) -> (u64, String) {
    let mut hasher = Sha256::new();
    let mut size = 0;
    let mut body = read.body;
    while let Some(chunk) = body.try_next().await.expect("the read streams") {
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (size, hex::encode(hasher.finalize()))
}

/// The bytes of a small read.
async fn collect(read: BlobRead) -> Vec<u8> {
    let chunks: Vec<Bytes> = read.body.try_collect().await.expect("the read streams");
    chunks.concat()
}

async fn ids(store: &BlobStore, prefix: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list(prefix)
        .map_ok(|info| info.id.to_string())
        .try_collect()
        .await
        .expect("the listing works");
    ids.sort();
    ids
}

async fn large_payloads_round_trip(store: &BlobStore) {
    let expected = sha256_of(1, LARGE);
    let stored = store.put(payload(1, LARGE)).await.unwrap();
    assert_eq!(stored.size, LARGE);
    assert_eq!(stored.sha256, expected);
    assert_eq!(stored.id.sha256(), Some(expected.as_str()));
    assert_eq!(stored.id.to_string(), format!("sha256:{expected}"));
    assert!(!stored.deduplicated);

    let info = store.head(&stored.id).await.unwrap();
    assert_eq!(info.size, LARGE);
    assert_eq!(info.sha256.as_deref(), Some(expected.as_str()));

    let read = store.get(&stored.id).await.unwrap();
    assert_eq!(read.range, 0..LARGE);
    assert_eq!(read.info.size, LARGE);
    assert_eq!(size_and_hash(read).await, (LARGE, expected.clone()));

    // The first bytes.
    let read = store.get_range(&stored.id, 0..100).await.unwrap();
    assert_eq!(
        read.content_range().as_deref(),
        Some(&*format!("bytes 0-99/{LARGE}"))
    );
    assert_eq!(collect(read).await, bytes_of(1, 0..100));
    // The middle, across the boundary of the first two parts.
    let middle = PART_SIZE as u64 - 1000..PART_SIZE as u64 + 1000;
    let read = store.get_range(&stored.id, middle.clone()).await.unwrap();
    assert_eq!(read.range, middle);
    assert_eq!(collect(read).await, bytes_of(1, middle));
    // The last 1000 bytes, as `Range: bytes=-1000` asks.
    let suffix: ByteRange = "bytes=-1000".parse().unwrap();
    let read = store.get_range(&stored.id, suffix).await.unwrap();
    assert_eq!(read.range, LARGE - 1000..LARGE);
    assert_eq!(collect(read).await, bytes_of(1, LARGE - 1000..LARGE));
    // From an offset to the end.
    let read = store.get_range(&stored.id, LARGE - 10..).await.unwrap();
    assert_eq!(collect(read).await, bytes_of(1, LARGE - 10..LARGE));
    // An end past the end is cut there.
    let read = store
        .get_range(&stored.id, LARGE - 5..LARGE + 100)
        .await
        .unwrap();
    assert_eq!(read.range, LARGE - 5..LARGE);
    assert_eq!(collect(read).await, bytes_of(1, LARGE - 5..LARGE));
    // A start past the end is unsatisfiable, and says the size for Content-Range.
    for range in [
        ByteRange::from(LARGE..LARGE + 10),
        format!("bytes={}-", LARGE + 1).parse().unwrap(),
    ] {
        match store.get_range(&stored.id, range.clone()).await {
            Err(e @ BlobError::RangeNotSatisfiable { size, .. }) => {
                assert_eq!(size, LARGE);
                assert_eq!(e.http_status(), 416);
            }
            other => panic!("{range}: expected an unsatisfiable range, got {other:?}"),
        }
    }
    assert!(matches!(
        store.get_range(&stored.id, 10..10).await,
        Err(BlobError::BadRange { .. })
    ));

    // The same content again is stored once.
    let again = store.put(payload(1, LARGE)).await.unwrap();
    assert_eq!(again.id, stored.id);
    assert!(again.deduplicated);
    assert_eq!(ids(store, "sha256:").await, vec![stored.id.to_string()]);
    assert_eq!(
        ids(store, &format!("sha256:{}", &expected[..5])).await,
        vec![stored.id.to_string()]
    );
    assert_eq!(store.remove_stale_uploads(Duration::ZERO).await.unwrap(), 0);
}

async fn keyed_blobs(store: &BlobStore) {
    let instance = "studies/1.2.840/series/7/instance.dcm";
    let stored = store
        .put_with_key(instance, payload(2, 1000))
        .await
        .unwrap();
    assert_eq!(stored.id.key(), Some(instance));
    assert_eq!(stored.size, 1000);
    assert_eq!(stored.sha256, sha256_of(2, 1000));
    let id: BlobId = instance.parse().unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(
        collect(store.get(&id).await.unwrap()).await,
        bytes_of(2, 0..1000)
    );
    let info = store.head(&id).await.unwrap();
    assert_eq!((info.size, info.sha256), (1000, None));

    // A put by key replaces the blob.
    store.put_with_key(instance, payload(3, 500)).await.unwrap();
    assert_eq!(
        collect(store.get(&id).await.unwrap()).await,
        bytes_of(3, 0..500)
    );
    let read = store.get_range(&id, 490..).await.unwrap();
    assert_eq!(collect(read).await, bytes_of(3, 490..500));

    store
        .put_with_key("studies/1.2.9/a", payload(4, 10))
        .await
        .unwrap();
    store
        .put_with_key("exports/patients.ndjson", payload(5, 10))
        .await
        .unwrap();
    assert_eq!(
        ids(store, "studies/").await,
        vec!["studies/1.2.840/series/7/instance.dcm", "studies/1.2.9/a"]
    );
    assert_eq!(ids(store, "studies/1.2.8").await, vec![instance]);
    assert_eq!(ids(store, "exports").await, vec!["exports/patients.ndjson"]);
    assert_eq!(ids(store, "").await.len(), 3);

    // An empty blob: readable whole, no byte to range over.
    let empty = store.put_with_key("empty", payload(6, 0)).await.unwrap();
    assert_eq!(
        empty.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let read = store.get(&empty.id).await.unwrap();
    assert_eq!((read.range.clone(), read.content_range()), (0..0, None));
    assert!(collect(read).await.is_empty());
    assert!(matches!(
        store
            .get_range(&empty.id, "bytes=-1".parse::<ByteRange>().unwrap())
            .await,
        Err(BlobError::RangeNotSatisfiable { size: 0, .. })
    ));

    for bad in [
        "",
        "/abs",
        "a/../b",
        "..",
        "a//b",
        "a/",
        "a:b",
        "with space",
        "x/./y",
        "a~b",
    ] {
        match store.put_with_key(bad, payload(7, 10)).await {
            Err(e @ BlobError::BadKey { .. }) => assert_eq!(e.http_status(), 400),
            other => panic!("key {bad:?} was taken: {other:?}"),
        }
    }
    assert_eq!(ids(store, "").await.len(), 4, "no bad key stored anything");

    store.delete(&id).await.unwrap();
    assert!(matches!(
        store.get(&id).await,
        Err(BlobError::NotFound { .. })
    ));
    assert!(matches!(
        store.head(&id).await,
        Err(BlobError::NotFound { .. })
    ));
    store.delete(&id).await.expect("deleting twice is fine");
    assert_eq!(ids(store, "studies/").await, vec!["studies/1.2.9/a"]);
}

async fn missing_blobs_are_not_found(store: &BlobStore) {
    let missing = BlobId::from_sha256(&"AB".repeat(32)).unwrap();
    assert_eq!(missing.to_string(), format!("sha256:{}", "ab".repeat(32)));
    let key = BlobId::from_key("no/such/blob").unwrap();
    for id in [&missing, &key] {
        let err = store.get(id).await.unwrap_err();
        assert!(matches!(err, BlobError::NotFound { .. }), "{err}");
        assert_eq!(err.http_status(), 404);
        assert!(err.to_string().contains(&id.to_string()), "{err}");
        assert!(matches!(
            store.head(id).await,
            Err(BlobError::NotFound { .. })
        ));
        assert!(matches!(
            store.get_range(id, 0..10).await,
            Err(BlobError::NotFound { .. })
        ));
    }
}

async fn failed_uploads_leave_nothing(store: &BlobStore) {
    // Past the first part, so the multipart upload has begun when the producer fails.
    let len = 2 * PART_SIZE as u64 + 10;
    match store.put(failing_payload(8, len)).await {
        Err(e @ BlobError::Payload { received, .. }) => {
            assert_eq!(received, len);
            assert!(e.to_string().contains("the client went away"), "{e}");
        }
        other => panic!("a failed payload was stored: {other:?}"),
    }
    // Within the first part: one PUT that never happens.
    assert!(matches!(
        store.put(failing_payload(8, 1000)).await,
        Err(BlobError::Payload { received: 1000, .. })
    ));
    // A put by key that fails keeps the blob it would have replaced.
    store.put_with_key("kept", payload(9, 100)).await.unwrap();
    assert!(matches!(
        store.put_with_key("kept", failing_payload(10, len)).await,
        Err(BlobError::Payload { .. })
    ));
    let kept = BlobId::from_key("kept").unwrap();
    assert_eq!(
        collect(store.get(&kept).await.unwrap()).await,
        bytes_of(9, 0..100)
    );

    // An upload whose producer stalls and whose future is dropped (a client that stops
    // sending, then a timeout).
    let stalled = payload(11, len).chain(stream::pending());
    let cut_off = tokio::time::timeout(Duration::from_secs(3), store.put(stalled)).await;
    assert!(cut_off.is_err(), "a stalled upload completed: {cut_off:?}");

    assert_eq!(
        ids(store, "").await,
        vec!["kept"],
        "only the kept blob is visible"
    );
    assert_eq!(
        store.remove_stale_uploads(Duration::ZERO).await.unwrap(),
        0,
        "no temporary upload was completed"
    );
}

#[test]
fn byte_ranges_parse_and_resolve_as_http_says() {
    let parse = |s: &str| s.parse::<ByteRange>();
    assert_eq!(parse("bytes=0-499").unwrap(), ByteRange::Bounded(0..500));
    assert_eq!(parse(" bytes=7-7 ").unwrap(), ByteRange::Bounded(7..8));
    assert_eq!(parse("bytes=500-").unwrap(), ByteRange::From(500));
    assert_eq!(parse("bytes=-500").unwrap(), ByteRange::Suffix(500));
    assert_eq!(parse("bytes=0-499").unwrap().to_string(), "bytes=0-499");
    for bad in [
        "bytes=5-1",
        "bytes=0-1,4-5",
        "items=0-1",
        "bytes=-",
        "bytes=a-b",
        "bytes=0-18446744073709551615",
        "0-1",
    ] {
        match parse(bad) {
            Err(e @ BlobError::BadRange { .. }) => assert_eq!(e.http_status(), 400),
            other => panic!("{bad:?} parsed as {other:?}"),
        }
    }
    assert_eq!(ByteRange::Suffix(10).resolve(5), Some(0..5));
    assert_eq!(ByteRange::Suffix(0).resolve(5), None);
    assert_eq!(ByteRange::Bounded(3..100).resolve(10), Some(3..10));
    assert_eq!(ByteRange::From(9).resolve(10), Some(9..10));
    assert_eq!(ByteRange::From(10).resolve(10), None);
    assert_eq!(ByteRange::Bounded(0..1).resolve(0), None);
}

#[test]
fn blob_ids_have_one_text_form() {
    let hash = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    let id: BlobId = format!("sha256:{hash}").parse().unwrap();
    assert_eq!(id.sha256(), Some(hash.to_ascii_lowercase().as_str()));
    assert_eq!(id.to_string().parse::<BlobId>().unwrap(), id);
    let key: BlobId = "exports/a=1/b+c@d,e_f-g.ndjson".parse().unwrap();
    assert_eq!(key.key(), Some("exports/a=1/b+c@d,e_f-g.ndjson"));
    for bad in ["sha256:abc", "sha256:", "a:b"] {
        assert!(
            matches!(bad.parse::<BlobId>(), Err(BlobError::BadKey { .. })),
            "{bad}"
        );
    }
}

// Local disk.

fn local_store(dir: &Path) -> BlobStore {
    BlobStore::open(&Url::from_directory_path(dir.join("blobs")).unwrap()).unwrap()
}

/// The regular files under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_large_payloads_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    large_payloads_round_trip(&store).await;
    let hash = sha256_of(1, LARGE);
    let path = format!("sha256/{}/{hash}", &hash[..2]);
    assert_eq!(files_under(&dir.path().join("blobs")), vec![path.clone()]);
    let on_disk = std::fs::metadata(dir.path().join("blobs").join(path)).unwrap();
    assert_eq!(on_disk.len(), LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_keyed_blobs() {
    let dir = tempfile::tempdir().unwrap();
    keyed_blobs(&local_store(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_missing_blobs_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    missing_blobs_are_not_found(&local_store(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failed_uploads_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    failed_uploads_leave_nothing(&local_store(dir.path())).await;
    // Not even a staging file: the dropped upload removes its own in the background.
    let blobs = dir.path().join("blobs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while files_under(&blobs) != vec!["keys/kept"] {
        assert!(
            Instant::now() < deadline,
            "files left behind: {:?}",
            files_under(&blobs)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stale_uploads_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = local_store(dir.path());
    // What a process that died between an upload and its move leaves.
    let tmp = dir.path().join("blobs/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("3f2c9a1e-left-behind"), b"partial").unwrap();
    store.put_with_key("kept", payload(1, 10)).await.unwrap();

    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        store.remove_stale_uploads(day).await.unwrap(),
        0,
        "too young"
    );
    assert_eq!(ids(&store, "").await, vec!["kept"], "never listed");
    assert_eq!(store.remove_stale_uploads(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(files_under(&dir.path().join("blobs")), vec!["keys/kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_keeps_its_blobs_in_its_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LakeOptions::new(dir.path().to_str().unwrap());
    options.with_wal = false;
    let lake = Lake::open(options).await.unwrap();
    let store = lake.blob_store().unwrap();
    assert_eq!(
        store.url().as_str(),
        format!("{}blobs/", lake.workspace_url())
    );
    let stored = store.put(payload(1, 1000)).await.unwrap();
    let hash = &stored.sha256;
    let on_disk = dir
        .path()
        .join("default/blobs/sha256")
        .join(&hash[..2])
        .join(hash);
    assert_eq!(std::fs::read(on_disk).unwrap(), bytes_of(1, 0..1000));
    // Clones share the store.
    let clone = store.clone();
    assert_eq!(
        collect(clone.get(&stored.id).await.unwrap()).await,
        bytes_of(1, 0..1000)
    );
}

// Azurite.

/// Azurite's well-known development account and key (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "medlake";

struct Azurite {
    child: Child,
    /// The account URL, `http://127.0.0.1:<port>/devstoreaccount1`.
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end-to-end test crate's folder, where npm installs Azurite and the Azure SDK.
fn test_tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

fn start_azurite() -> Azurite {
    let bin = test_tools().join("node_modules/.bin/azurite-blob");
    assert!(
        bin.exists(),
        "{} is missing: run the test command (scripts/test), which installs Azurite with npm",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(&bin)
        .args([
            "--silent",
            "--skipApiVersionCheck",
            "--blobHost",
            "127.0.0.1",
        ])
        .args(["--blobPort", &port.to_string(), "--location"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("azurite-blob starts");
    let azurite = Azurite {
        child,
        endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "Azurite did not listen on {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // object_store does not create containers: the Azure SDK helper does.
    let out = Command::new("node")
        .arg(test_tools().join("azurite/blob.mjs"))
        .args([azurite.endpoint.as_str(), "create", CONTAINER])
        .current_dir(test_tools())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "creating the container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    azurite
}

/// A blob store in its own folder of the Azurite container. The account is given as
/// options rather than through `AZURE_*` variables, which would be shared by the tests
/// of this process.
fn azurite_store(azurite: &Azurite, folder: &str) -> BlobStore {
    let url = Url::parse(&format!("az://{CONTAINER}/{folder}/blobs/")).unwrap();
    BlobStore::open_with_options(
        &url,
        [
            ("azure_storage_account_name", AZURITE_ACCOUNT),
            ("azure_storage_account_key", AZURITE_KEY),
            ("azure_storage_endpoint", azurite.endpoint.as_str()),
            ("allow_http", "true"),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_blob_store() {
    let azurite = start_azurite();
    large_payloads_round_trip(&azurite_store(&azurite, "large")).await;
    keyed_blobs(&azurite_store(&azurite, "keyed")).await;
    missing_blobs_are_not_found(&azurite_store(&azurite, "missing")).await;
    failed_uploads_leave_nothing(&azurite_store(&azurite, "failed")).await;
}
