//! DICOM instances stored in the lake, on the files pydicom ships: each file is stored
//! whole in the blob store and indexed in `dicom.instances`, or refused with its STOW-RS
//! reason and no row; duplicates are refused, across a crash and a flush; and SQL sees
//! instances, series and studies as the parsed headers say.
//!
//! The expected answers come from reading each file with `medlake_ingest::dicom`
//! directly, not from the lake. `tests/python/dicom_dump.py` (run with tests/.venv's
//! python) lists pydicom's files; without it the tests say so loudly and pass, except
//! under CI (`CI` set), where that is a failure.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use futures::{TryStreamExt, stream};
use medlake_ingest::dicom::error::{FAILURE_DATA_SET_MISMATCH, FAILURE_DUPLICATE};
use medlake_ingest::dicom::{DicomInstance, InstanceHeader};
use medlake_lake::dicom::{DicomStoreError, INSTANCES_TABLE, StoredInstance};
use medlake_lake::{Lake, LakeError, LakeOptions};
use medlake_query::QueryEngine;

#[path = "../../ingest/tests/support/pydicom_dump.rs"]
mod pydicom_dump;

/// The paths of pydicom's test and character-set files, or none (loudly) without pydicom.
fn pydicom_files() -> Vec<PathBuf> {
    pydicom_dump::pydicom_dump()
        .map(|dump| {
            dump["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| PathBuf::from(f["path"].as_str().expect("path")))
                .collect()
        })
        .unwrap_or_default()
}

async fn open(data: &Path) -> Lake {
    Lake::open(LakeOptions::new(data.to_str().unwrap()).with_dicom())
        .await
        .unwrap()
}

/// A file as an upload of odd-sized chunks, as a network delivers it.
fn upload(bytes: &[u8]) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let chunks: Vec<_> = bytes
        .chunks(7001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

async fn blob_bytes(lake: &Lake, stored: &StoredInstance) -> Vec<u8> {
    let read = lake.blob_store().unwrap().get(&stored.blob).await.unwrap();
    let chunks: Vec<Bytes> = read.body.try_collect().await.unwrap();
    chunks.concat()
}

async fn sql(engine: &QueryEngine, query: &str) -> Vec<RecordBatch> {
    engine
        .sql(query)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

async fn count(engine: &QueryEngine, query: &str) -> i64 {
    let batches = sql(engine, query).await;
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn text_column(batches: &[RecordBatch], i: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = datafusion::arrow::compute::cast(
                b.column(i),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let c = c.as_string::<i32>();
            (0..c.len())
                .map(|j| c.value(j).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn int_column(batches: &[RecordBatch], i: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(i).as_primitive::<Int64Type>();
            (0..c.len()).map(|j| c.value(j)).collect::<Vec<_>>()
        })
        .collect()
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Files under a folder of the workspace's blob store, recursively.
fn blob_files(data: &Path, folder: &str) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        let Ok(entries) = std::fs::read_dir(p) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, n);
            } else {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&data.join("default/blobs").join(folder), &mut n);
    n
}

/// What the test expects of the lake, from the headers of the files it stored.
#[derive(Default)]
struct Expected {
    /// The headers of the instances stored (one per SOPInstanceUID).
    stored: Vec<InstanceHeader>,
    /// The SHA-256 content addresses of their files.
    contents: BTreeSet<String>,
}

impl Expected {
    fn studies(&self) -> BTreeMap<String, (i64, i64)> {
        let mut series: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
        let mut instances: BTreeMap<String, i64> = BTreeMap::new();
        for h in &self.stored {
            series
                .entry(h.study_instance_uid.clone())
                .or_default()
                .insert(&h.series_instance_uid);
            *instances.entry(h.study_instance_uid.clone()).or_default() += 1;
        }
        instances
            .into_iter()
            .map(|(study, n)| {
                let s = series[&study].len() as i64;
                (study, (n, s))
            })
            .collect()
    }
}

/// SQL agrees with the expected instances: counts, a PatientID, a date range, studies
/// and series.
async fn check_sql(lake: &Lake, expected: &Expected) {
    let engine = QueryEngine::new(lake.clone()).unwrap();
    let lake = &engine;
    let stored = &expected.stored;
    assert_eq!(
        count(lake, "SELECT count(*) FROM dicom.instances").await,
        stored.len() as i64
    );

    // The most frequent PatientID.
    let mut by_patient: BTreeMap<&str, i64> = BTreeMap::new();
    for h in stored {
        *by_patient.entry(&h.patient_id).or_default() += 1;
    }
    let (patient, n) = by_patient
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("some instance was stored");
    assert!(*n > 1, "the pydicom files share PatientIDs");
    assert_eq!(
        count(
            lake,
            &format!(
                "SELECT count(*) FROM dicom.instances WHERE patient_id = {}",
                quoted(patient)
            )
        )
        .await,
        *n,
        "instances of patient {patient}"
    );

    // A StudyDate range.
    let from = chrono::NaiveDate::from_ymd_opt(1995, 1, 1).unwrap();
    let to = chrono::NaiveDate::from_ymd_opt(2005, 12, 31).unwrap();
    let in_range = stored
        .iter()
        .filter(|h| h.study_date.is_some_and(|d| d >= from && d <= to))
        .count() as i64;
    assert!(in_range > 0, "some pydicom files are of 1995-2005");
    assert_eq!(
        count(
            lake,
            "SELECT count(*) FROM dicom.instances \
             WHERE study_date BETWEEN DATE '1995-01-01' AND DATE '2005-12-31'"
        )
        .await,
        in_range
    );

    // A PatientName word, as fuzzy matching looks it up.
    let named = stored
        .iter()
        .find_map(|h| {
            h.patient_name
                .as_ref()
                .and_then(|n| n.words.first().cloned())
        })
        .expect("some instance has a PatientName");
    let with_word = stored
        .iter()
        .filter(|h| {
            h.patient_name
                .as_ref()
                .is_some_and(|n| n.words.contains(&named))
        })
        .count() as i64;
    assert_eq!(
        count(
            lake,
            &format!(
                "SELECT count(*) FROM dicom.instances WHERE array_has(patient_name_words, {})",
                quoted(&named)
            )
        )
        .await,
        with_word
    );

    // Studies: one row each, with their instance and series counts.
    let batches = sql(
        lake,
        "SELECT study_instance_uid, number_of_study_related_instances, \
         number_of_study_related_series FROM dicom.studies",
    )
    .await;
    let studies = text_column(&batches, 0);
    let instances = int_column(&batches, 1);
    let series = int_column(&batches, 2);
    let got: BTreeMap<String, (i64, i64)> = studies
        .into_iter()
        .zip(instances.into_iter().zip(series))
        .collect();
    assert_eq!(got, expected.studies());

    // Series: one row per (study, series), counts adding up to the instances.
    let series_rows: HashSet<(&str, &str)> = stored
        .iter()
        .map(|h| {
            (
                h.study_instance_uid.as_str(),
                h.series_instance_uid.as_str(),
            )
        })
        .collect();
    assert_eq!(
        count(lake, "SELECT count(*) FROM dicom.series").await,
        series_rows.len() as i64
    );
    assert_eq!(
        count(
            lake,
            "SELECT sum(number_of_series_related_instances) FROM dicom.series"
        )
        .await,
        stored.len() as i64
    );

    // ModalitiesInStudy of a study: its instances' distinct modalities, sorted.
    let study = &stored[0].study_instance_uid;
    let want: BTreeSet<&str> = stored
        .iter()
        .filter(|h| &h.study_instance_uid == study)
        .filter_map(|h| h.modality.as_deref())
        .collect();
    let batches = sql(
        lake,
        &format!(
            "SELECT array_to_string(modalities_in_study, ',') FROM dicom.studies \
             WHERE study_instance_uid = {}",
            quoted(study)
        ),
    )
    .await;
    assert_eq!(
        text_column(&batches, 0),
        [want.into_iter().collect::<Vec<_>>().join(",")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pydicom_files_are_stored_whole_or_refused_with_their_reason() {
    let files = pydicom_files();
    if files.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;

    let mut expected = Expected::default();
    let mut sops: HashSet<String> = HashSet::new();
    let (mut refused, mut duplicates) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let parsed = DicomInstance::read(BufReader::new(File::open(path).unwrap()));
        let result = lake.store_dicom(upload(&bytes)).await;
        match parsed {
            Err(e) => {
                let err = result.expect_err("a file the parser refuses is not stored");
                assert!(
                    matches!(err, DicomStoreError::Invalid(_)),
                    "{}: {err}",
                    path.display()
                );
                assert_eq!(
                    err.failure_reason(),
                    e.failure_reason(),
                    "{}",
                    path.display()
                );
                refused += 1;
            }
            Ok(instance) => {
                let header = instance.into_header();
                if !sops.insert(header.sop_instance_uid.clone()) {
                    let err = result.expect_err("a second instance with a stored SOP UID");
                    assert_eq!(err.failure_reason(), FAILURE_DUPLICATE, "{err}");
                    assert_eq!(FAILURE_DUPLICATE, 45070);
                    duplicates += 1;
                    continue;
                }
                let stored = result.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(stored.header, header);
                assert_eq!(stored.size_bytes, bytes.len() as u64);
                assert!(
                    blob_bytes(&lake, &stored).await == bytes,
                    "{}: the blob is the file",
                    path.display()
                );
                assert_eq!(
                    stored.blob_path,
                    format!("blobs/sha256/{}/{}", &stored.sha256[..2], stored.sha256)
                );
                expected.contents.insert(stored.sha256.clone());
                expected.stored.push(header);
            }
        }
    }
    eprintln!(
        "{} files: {} stored, {refused} refused, {duplicates} duplicates",
        files.len(),
        expected.stored.len()
    );
    assert!(
        expected.stored.len() > 50,
        "most pydicom files are instances"
    );
    assert!(
        refused > 5,
        "pydicom ships files that are not storable instances"
    );
    assert!(
        duplicates > 0,
        "pydicom ships one instance in several encodings"
    );

    // Refused files left no blob: the content addresses are exactly the stored files'.
    assert_eq!(blob_files(dir.path(), "sha256"), expected.contents.len());
    assert_eq!(blob_files(dir.path(), "tmp"), 0);
    assert_eq!(
        lake.dicom_instance_count().await.unwrap(),
        expected.stored.len()
    );
    check_sql(&lake, &expected).await;

    // A crash: the lake goes away without a flush; the WAL has the rows.
    drop(lake);
    let lake = open(dir.path()).await;
    check_sql(&lake, &expected).await;
    let first_stored = files
        .iter()
        .find(|p| DicomInstance::read(BufReader::new(File::open(p).unwrap())).is_ok())
        .unwrap();
    let err = lake
        .store_dicom(upload(&std::fs::read(first_stored).unwrap()))
        .await
        .expect_err("stored before the crash");
    assert_eq!(err.failure_reason(), FAILURE_DUPLICATE, "{err}");

    // Flushed to Delta, reopened: the same rows, still duplicates.
    lake.flush().await.unwrap();
    check_sql(&lake, &expected).await;
    drop(lake);
    let lake = open(dir.path()).await;
    assert_eq!(lake.buffered_rows(), 0);
    check_sql(&lake, &expected).await;
    let err = lake
        .store_dicom(upload(&std::fs::read(first_stored).unwrap()))
        .await
        .expect_err("stored before the flush");
    assert_eq!(err.failure_reason(), FAILURE_DUPLICATE, "{err}");
    assert_eq!(
        count(
            &QueryEngine::new(lake.clone()).unwrap(),
            "SELECT count(*) FROM dicom.instances"
        )
        .await,
        expected.stored.len() as i64
    );
    assert_eq!(blob_files(dir.path(), "sha256"), expected.contents.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_another_study_is_refused_for_the_url_study() {
    let files = pydicom_files();
    let Some((bytes, header)) = files.iter().find_map(|p| {
        let header = DicomInstance::read(BufReader::new(File::open(p).ok()?)).ok()?;
        Some((std::fs::read(p).ok()?, header.into_header()))
    }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;

    let err = lake
        .store_dicom_for_study(upload(&bytes), "1.2.3.4.5.6.7")
        .await
        .expect_err("another study");
    assert_eq!(err.failure_reason(), FAILURE_DATA_SET_MISMATCH, "{err}");
    assert_eq!(
        count(
            &QueryEngine::new(lake.clone()).unwrap(),
            "SELECT count(*) FROM dicom.instances"
        )
        .await,
        0
    );
    assert_eq!(blob_files(dir.path(), "sha256"), 0);

    let stored = lake
        .store_dicom_for_study(upload(&bytes), &header.study_instance_uid)
        .await
        .unwrap();
    assert_eq!(stored.header.sop_instance_uid, header.sop_instance_uid);
    let batches = sql(
        &QueryEngine::new(lake.clone()).unwrap(),
        &format!(
            "SELECT sop_instance_uid, blob_path, sha256, size_bytes FROM dicom.instances \
             WHERE study_instance_uid = {}",
            quoted(&header.study_instance_uid)
        ),
    )
    .await;
    assert_eq!(text_column(&batches, 0), [header.sop_instance_uid.clone()]);
    assert_eq!(text_column(&batches, 1), [stored.blob_path.clone()]);
    assert_eq!(text_column(&batches, 2), [stored.sha256.clone()]);
    assert_eq!(int_column(&batches, 3), [bytes.len() as i64]);
}

#[tokio::test]
async fn dicom_rows_are_written_only_by_store_dicom() {
    let dir = tempfile::tempdir().unwrap();
    let lake = open(dir.path()).await;
    let empty = RecordBatch::new_empty(medlake_lake::dicom::instances_schema());
    let err = lake.append(INSTANCES_TABLE, empty).await.unwrap_err();
    assert!(matches!(err, LakeError::BadRows { .. }), "{err}");
    assert!(err.to_string().contains("store_dicom"), "{err}");

    // Without the DICOM tables, storing says how to get them.
    drop(lake);
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    let err = lake
        .store_dicom(upload(b"DICM"))
        .await
        .expect_err("no DICOM tables");
    assert!(matches!(err, DicomStoreError::NotEnabled), "{err}");
    assert!(err.to_string().contains("with_dicom"), "{err}");
}
