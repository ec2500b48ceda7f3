use std::sync::Mutex;

use super::*;

fn row(seq: i64) -> ResourceVersion {
    ResourceVersion {
        resource_type: "Patient".into(),
        id: format!("p{seq}"),
        version_id: 1,
        last_updated: 1_700_000_000_000_000 + seq,
        deleted: false,
        resource: Arc::from(format!(
            "{{\"resourceType\":\"Patient\",\"id\":\"p{seq}\"}}"
        )),
        wal_seq: Some(seq),
        search: Arc::from(""),
    }
}

fn fhir(seq: i64) -> Vec<WalEntry> {
    vec![WalEntry::Resources(vec![row(seq)])]
}

fn rows(seq: i64, text: &str) -> WalEntry {
    WalEntry::Rows(TableRows {
        table: Arc::from("metrics.samples"),
        seq,
        encoded: Bytes::copy_from_slice(text.as_bytes()),
        batch: None,
    })
}

/// Durable and failed sequences, as the callbacks saw them.
#[derive(Default)]
struct Seen {
    durable: Vec<i64>,
    failed: Vec<i64>,
}

fn start(dir: &Path, last_seq: i64) -> (Wal, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (a, b) = (seen.clone(), seen.clone());
    let wal = Wal::start(
        dir,
        last_seq,
        Box::new(move |e| {
            a.lock()
                .unwrap()
                .durable
                .extend(e.iter().filter_map(WalEntry::max_seq))
        }),
        Box::new(move |e| {
            b.lock()
                .unwrap()
                .failed
                .extend(e.iter().filter_map(WalEntry::max_seq))
        }),
    )
    .unwrap();
    (wal, seen)
}

fn seqs(replay: &Replay) -> Vec<i64> {
    replay
        .entries
        .iter()
        .filter_map(WalEntry::max_seq)
        .collect()
}

#[test]
fn entries_of_every_kind_round_trip() {
    let entries = vec![
        WalEntry::Resources(vec![row(1), row(2)]),
        rows(3, "arrow bytes"),
    ];
    let mut b = Vec::new();
    encode_entries(&entries, &mut b);
    let back = decode_entries(&b).unwrap();
    match (&back[0], &back[1]) {
        (WalEntry::Resources(r), WalEntry::Rows(t)) => {
            assert_eq!(r, &vec![row(1), row(2)]);
            assert_eq!(
                (&*t.table, t.seq, &t.encoded[..]),
                ("metrics.samples", 3, &b"arrow bytes"[..])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(decode_entries(&b[..b.len() - 1]).is_none());
}

#[tokio::test]
async fn acknowledged_entries_replay_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, seen) = start(dir.path(), 0);
    for i in 1..=10 {
        wal.append(fhir(i)).await.unwrap();
    }
    wal.append(vec![rows(11, "x")]).await.unwrap();
    assert_eq!(seen.lock().unwrap().durable, (1..=11).collect::<Vec<_>>());
    let rot = wal.rotate().await.unwrap();
    assert_eq!(rot.last_seq, 11);
    wal.append(fhir(12)).await.unwrap();
    drop(wal);
    // Tear the newest segment's last record in half.
    let segs = list_segments(dir.path()).unwrap();
    let newest = segs.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    let f = OpenOptions::new().write(true).open(newest).unwrap();
    f.set_len(len - 3).unwrap();
    let replay = Wal::replay(dir.path(), Recovery::Strict).unwrap();
    assert_eq!(seqs(&replay), (1..=11).collect::<Vec<_>>());
    assert_eq!(replay.last_seq, 11);
    // The repaired file now ends at a record boundary.
    assert_eq!(
        seqs(&Wal::replay(dir.path(), Recovery::Strict).unwrap()).len(),
        11
    );
}

#[test]
fn segments_of_an_earlier_medlake_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = Vec::new();
    encode_rows(&[row(1), row(2)], &mut payload);
    let mut seg = Vec::new();
    seg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    seg.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    seg.extend_from_slice(&payload);
    std::fs::write(dir.path().join(segment_name(1)), seg).unwrap();
    let replay = Wal::replay(dir.path(), Recovery::Strict).unwrap();
    assert_eq!(seqs(&replay), vec![2]);
    match &replay.entries[0] {
        WalEntry::Resources(r) => assert_eq!(r, &vec![row(1), row(2)]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn damage_in_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(segment_name(1)), b"\x05\x00\x00\x00garbage").unwrap();
    std::fs::write(dir.path().join(segment_name(9)), SEGMENT_MAGIC).unwrap();
    let err = Wal::replay(dir.path(), Recovery::Strict)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("damaged") && err.contains(&segment_name(1)),
        "{err}"
    );
}

/// Flip one byte inside the payload of the `n`th record (0-based) of a segment.
fn damage_record(path: &Path, n: usize) -> u64 {
    let mut bytes = std::fs::read(path).unwrap();
    let mut pos = SEGMENT_MAGIC.len();
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    bytes[pos + 12] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    pos as u64
}

#[tokio::test]
async fn damage_followed_by_valid_records_refuses_to_start_unless_told_to_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = start(dir.path(), 0);
    for i in 1..=5 {
        wal.append(fhir(i)).await.unwrap();
    }
    drop(wal);
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let offset = damage_record(&seg, 2);

    let err = Wal::replay(dir.path(), Recovery::Strict).err().unwrap();
    match &err {
        LakeError::WalCorrupt {
            path, offset: at, ..
        } => {
            assert_eq!(path, &seg.display().to_string());
            assert_eq!(*at, offset);
        }
        other => panic!("expected WalCorrupt, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("--wal-truncate-damaged"),
        "the error says what to do: {msg}"
    );
    // Refusing changed nothing on disk.
    assert!(Wal::replay(dir.path(), Recovery::Strict).is_err());

    let replay = Wal::replay(dir.path(), Recovery::TruncateAtDamage).unwrap();
    assert_eq!(seqs(&replay), vec![1, 2]);
    assert_eq!(
        seqs(&Wal::replay(dir.path(), Recovery::Strict).unwrap()),
        vec![1, 2]
    );
}

#[tokio::test]
async fn truncating_at_damage_sets_later_segments_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = start(dir.path(), 0);
    for i in 1..=3 {
        wal.append(fhir(i)).await.unwrap();
    }
    wal.rotate().await.unwrap();
    wal.append(fhir(4)).await.unwrap();
    drop(wal);
    let first = list_segments(dir.path()).unwrap().remove(0);
    damage_record(&first, 1);
    assert!(Wal::replay(dir.path(), Recovery::Strict).is_err());
    let replay = Wal::replay(dir.path(), Recovery::TruncateAtDamage).unwrap();
    assert_eq!(seqs(&replay), vec![1]);
    assert_eq!(list_segments(dir.path()).unwrap(), vec![first]);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".damaged")
        })
        .count();
    assert_eq!(aside, 1);
}

#[tokio::test]
async fn a_failed_fsync_stops_the_log_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, seen) = start(dir.path(), 0);
    wal.append(fhir(1)).await.unwrap();
    wal.faults().fail_syncs.store(1, Ordering::SeqCst);
    let err = wal.append(fhir(2)).await.err().unwrap();
    assert!(matches!(err, LakeError::WalStopped(_)), "{err}");
    // The next sync would succeed, but the log must not be trusted again.
    let err = wal.append(fhir(3)).await.err().unwrap();
    assert!(matches!(err, LakeError::WalStopped(_)), "{err}");
    let s = seen.lock().unwrap();
    assert_eq!(s.durable, vec![1]);
    assert_eq!(s.failed, vec![2, 3]);
    drop(s);
    // A rotation hands out nothing to delete, and names only what was acknowledged.
    let rot = wal.rotate().await.unwrap();
    assert!(rot.closed.is_empty());
    assert_eq!(rot.last_seq, 1);
}

#[tokio::test]
async fn a_failed_write_stops_the_log_and_fails_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, seen) = start(dir.path(), 0);
    wal.append(fhir(1)).await.unwrap();
    wal.faults().fail_writes.store(1, Ordering::SeqCst);
    assert!(wal.append(fhir(2)).await.is_err());
    assert!(wal.append(fhir(3)).await.is_err());
    assert_eq!(seen.lock().unwrap().durable, vec![1]);
    drop(wal);
    // Recovery reads only what was acknowledged.
    let replay = Wal::replay(dir.path(), Recovery::Strict).unwrap();
    assert_eq!(seqs(&replay), vec![1]);
}

#[tokio::test]
async fn a_restart_onto_a_rotations_empty_segment_keeps_writing_it_and_never_hands_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = start(dir.path(), 0);
    wal.append(fhir(1)).await.unwrap();
    // A flush rotates, opening the segment of sequence 2, and the process dies before
    // its commit, with nothing written to the new segment.
    wal.rotate().await.unwrap();
    drop(wal);
    let replay = Wal::replay(dir.path(), Recovery::Strict).unwrap();
    assert_eq!(seqs(&replay), vec![1]);
    let (wal, _) = start(dir.path(), replay.last_seq);
    // The first flush after the restart rotates before any write, commits sequence 1 and
    // deletes what the rotation closed; then a write is acknowledged.
    let rotation = wal.rotate().await.unwrap();
    let current = dir.path().join(segment_name(2));
    assert!(!rotation.closed.contains(&current), "{:?}", rotation.closed);
    wal.remove_segments(&rotation.closed).unwrap();
    wal.append(fhir(2)).await.unwrap();
    drop(wal);
    let replay = Wal::replay(dir.path(), Recovery::Strict).unwrap();
    assert_eq!(seqs(&replay), vec![2]);
}
