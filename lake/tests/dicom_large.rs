//! A large multi-frame instance is stored in one pass with bounded memory: its 200 MiB of
//! pixel data stream to the blob store while the header is indexed, and the process's
//! peak of allocated memory stays far below the file's size.
//!
//! The allocations are counted by this test binary's global allocator, so this file
//! holds this one test (nextest runs each test in its own process anyway).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use futures::{StreamExt, TryStreamExt, stream};
use medlake_lake::{Lake, LakeOptions};
use sha2::{Digest, Sha256};

/// Counts the bytes allocated now and at the peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let grew = new_size - layout.size();
                let now = CURRENT.fetch_add(grew, Ordering::Relaxed) + grew;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The pixel data's bytes. Each chunk is copied to the heap as the upload hands it over,
/// as a network body's chunks are, so whatever holds on to chunks counts in the peak.
static PIXEL_CHUNK: [u8; 1 << 20] = [0; 1 << 20];
const PIXEL_CHUNKS: usize = 200;

const STUDY: &str = "1.2.826.0.1.3680043.2.1125.77";
const SERIES: &str = "1.2.826.0.1.3680043.2.1125.77.1";
const SOP: &str = "1.2.826.0.1.3680043.2.1125.77.1.1";

/// A Part 10 file (Explicit VR Little Endian) up to its pixel data, with a private
/// binary element large enough to be bulk data in the DICOM JSON.
fn header() -> Vec<u8> {
    let mut obj = InMemDicomObject::new_empty();
    for (tag, vr, value) in [
        (tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        (tags::SOP_INSTANCE_UID, VR::UI, SOP),
        (tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
        (tags::SERIES_INSTANCE_UID, VR::UI, SERIES),
        (tags::PATIENT_ID, VR::LO, "P-77"),
        (tags::PATIENT_NAME, VR::PN, "Doe^Jane"),
        (tags::STUDY_DATE, VR::DA, "20261202"),
        (tags::MODALITY, VR::CS, "XC"),
        (tags::NUMBER_OF_FRAMES, VR::IS, "200"),
    ] {
        obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    obj.put(DataElement::new(
        Tag(0x0009, 0x0010),
        VR::LO,
        PrimitiveValue::from("MEDLAKE TEST"),
    ));
    obj.put(DataElement::new(
        Tag(0x0009, 0x1000),
        VR::OB,
        PrimitiveValue::from(vec![7_u8; 4096]),
    ));
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .expect("meta");
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).expect("write");
    let pixels = (PIXEL_CHUNKS * PIXEL_CHUNK.len()) as u32;
    bytes.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
    bytes.extend_from_slice(&pixels.to_le_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_instance_is_stored_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()).with_dicom())
        .await
        .unwrap();
    // Load the duplicate check first: its cost is not the upload's.
    assert_eq!(lake.dicom_instance_count().await.unwrap(), 0);

    let head = Bytes::from(header());
    let size = head.len() + PIXEL_CHUNKS * PIXEL_CHUNK.len();
    let mut sha = Sha256::new();
    sha.update(&head);
    for _ in 0..PIXEL_CHUNKS {
        sha.update(PIXEL_CHUNK);
    }
    let sha256 = hex_string(&sha.finalize());

    let pulled = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let upload = stream::iter(
        std::iter::once(head)
            .chain(std::iter::repeat_n(&PIXEL_CHUNK[..], PIXEL_CHUNKS).map(Bytes::from_static)),
    )
    .inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    })
    .map(Ok::<_, std::io::Error>);

    // The counter sees a heap chunk (a check of the measure itself).
    let probe_before = CURRENT.load(Ordering::Relaxed);
    let probe = Bytes::copy_from_slice(&PIXEL_CHUNK[..]);
    assert!(CURRENT.load(Ordering::Relaxed) >= probe_before + probe.len());
    drop(probe);

    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let stored = lake.store_dicom(upload).await.unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;

    assert_eq!(pulled.load(Ordering::Relaxed), 1 + PIXEL_CHUNKS);
    assert_eq!(stored.size_bytes, size as u64);
    assert_eq!(stored.sha256, sha256);
    assert_eq!(stored.header.sop_instance_uid, SOP);
    assert_eq!(stored.header.number_of_frames, Some(200));
    eprintln!(
        "stored {} MiB with a peak of {:.1} MiB allocated",
        size >> 20,
        peak as f64 / f64::from(1 << 20)
    );
    // The blob store holds at most three 8 MiB parts; the header and its JSON are small.
    assert!(
        peak < 48 << 20,
        "storing {size} bytes allocated up to {peak} bytes at once"
    );

    // The blob is the file: its size, and its bytes hash to the same SHA-256.
    let blobs = lake.blob_store().unwrap();
    let read = blobs.get(&stored.blob).await.unwrap();
    assert_eq!(read.info.size, size as u64);
    let mut check = Sha256::new();
    let mut body = read.body;
    while let Some(chunk) = body.try_next().await.unwrap() {
        check.update(&chunk);
    }
    assert_eq!(hex_string(&check.finalize()), sha256);

    // The row's DICOM JSON has the private binary element as bulk data under the WADO-RS
    // path of the instance, and no pixel data.
    let view = lake.kind_view("dicom.instances").unwrap();
    let row = view.tail.first().expect("the row is in the tail");
    let json = row
        .column_by_name("dicom_json")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap()
        .value(0)
        .to_string();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["00091000"]["BulkDataURI"],
        format!("/dicomweb/studies/{STUDY}/series/{SERIES}/instances/{SOP}/bulkdata/00091000")
    );
    assert!(json.get("7FE00010").is_none());
    assert_eq!(json["00080018"]["Value"][0], SOP);
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
