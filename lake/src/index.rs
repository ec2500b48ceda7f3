//! The resident id index: for every resource, its newest version, whether it is deleted,
//! and where in Delta that version is stored.
//!
//! Versioning needs it on every write (the next `meta.versionId`), so it lives in memory,
//! built at start from the Delta tables' key columns plus the replayed WAL.
//!
//! The place (a row of a row group of a data file, [`Place`]) lets a read go straight to
//! the page that holds the version, instead of testing the id against the bloom filter
//! of every row group of the table and decoding the ids of those that may hold it: both
//! cost more as the table grows, so a page of search results would too. Places
//! are learnt when the lake opens (it reads the tables row group by row group) and when
//! the process commits a file (it reads back the new file's keys); a version written
//! since has no place until its flush, and is read from the in-memory tail meanwhile.
//!
//! It also knows which stored rows are *not* current: a version that a newer one
//! replaced, and every delete marker. [`IdIndex::hidden_rows`] gives them per data file
//! and row group, as a Delta deletion vector would, so that `fhir.<type>` is a scan of
//! the files that skips those rows rather than a window over all versions. A row is
//! hidden when the index learns of the version that replaces it (a write made durable,
//! a flushed or compacted file located, a bulk version placed), always in the same step
//! that makes the newer version readable, so a scan never sees both or neither.
//!
//! It holds every resource, so it is kept small: a resource is a 128-bit fingerprint of
//! its type and id (two independently keyed SipHashes), a packed version and a place,
//! about 40 bytes each, rather than the id string itself (about 100). Two ids share a
//! fingerprint with probability near 2^-128 per pair: at a billion resources, around
//! 10^-21.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use roaring::RoaringBitmap;

/// Newest version of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub version_id: i64,
    pub deleted: bool,
}

/// A version (the low 31 bits) and the delete flag (the top bit) in one word.
#[derive(Clone, Copy)]
struct Packed(u32);

const DELETED: u32 = 1 << 31;

impl Packed {
    fn new(l: Latest) -> Packed {
        let v = l.version_id.clamp(0, (DELETED - 1) as i64) as u32;
        Packed(if l.deleted { v | DELETED } else { v })
    }

    fn unpack(self) -> Latest {
        Latest {
            version_id: (self.0 & !DELETED) as i64,
            deleted: self.0 & DELETED != 0,
        }
    }
}

/// Where a version is stored: a row of a row group of one of a table's data files (its
/// path relative to the table root).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub file: Arc<str>,
    pub row_group: u32,
    /// The row within the row group.
    pub row: u32,
}

/// What the index keeps per resource: 32 bytes with its fingerprint.
#[derive(Clone, Copy)]
struct Entry {
    packed: Packed,
    /// Index into [`IdIndex::row_groups`], or [`NOWHERE`].
    row_group: u32,
    row: u32,
}

const NOWHERE: u32 = u32::MAX;

pub struct IdIndex {
    keys: (RandomState, RandomState),
    latest: HashMap<Fingerprint, Entry, FingerprintHasher>,
    per_type: HashMap<String, usize>,
    /// Every row group located so far, of all types; an entry's `row_group` indexes it.
    row_groups: Vec<(Arc<str>, u32)>,
    /// Per type, the files located so far, with the number of their first row group
    /// and how many they have.
    located: HashMap<String, HashMap<Arc<str>, (u32, u32)>>,
    /// Rows that are not current, by row group number: replaced versions and delete
    /// markers.
    hidden: HashMap<u32, RoaringBitmap>,
    /// The previous place of a current version that a rewrite (a compaction, another
    /// process's commit) has just moved, while the file it left may still be scanned: if
    /// the version is replaced before that file leaves the snapshot, its row there is
    /// hidden too. Cleared when a snapshot is installed ([`IdIndex::forget_moves`]).
    moved: HashMap<String, HashMap<Fingerprint, (u32, u32), FingerprintHasher>>,
    /// The place of a version that a bulk load has replaced with one not placed yet: it
    /// stays visible until the new version's file is located, which hides it.
    deferred: HashMap<Fingerprint, (u32, u32), FingerprintHasher>,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex {
            keys: (RandomState::new(), RandomState::new()),
            latest: HashMap::default(),
            per_type: HashMap::new(),
            row_groups: Vec::new(),
            located: HashMap::new(),
            hidden: HashMap::new(),
            moved: HashMap::new(),
            deferred: HashMap::default(),
        }
    }
}

impl IdIndex {
    fn fingerprint(&self, resource_type: &str, id: &str) -> Fingerprint {
        let hash = |k: &RandomState| {
            let mut h = k.build_hasher();
            resource_type.hash(&mut h);
            id.hash(&mut h);
            h.finish()
        };
        Fingerprint(hash(&self.keys.0), hash(&self.keys.1))
    }

    pub fn get(&self, resource_type: &str, id: &str) -> Option<Latest> {
        self.latest
            .get(&self.fingerprint(resource_type, id))
            .map(|e| e.packed.unpack())
    }

    /// The newest version of a resource, and where Delta stores it if that is known.
    pub fn get_with_place(&self, resource_type: &str, id: &str) -> Option<(Latest, Option<Place>)> {
        let entry = self.latest.get(&self.fingerprint(resource_type, id))?;
        let place = self
            .row_groups
            .get(entry.row_group as usize)
            .map(|(file, row_group)| Place {
                file: file.clone(),
                row_group: *row_group,
                row: entry.row,
            });
        Some((entry.packed.unpack(), place))
    }

    /// Record a version not (yet) in Delta, keeping the newest. The stored row of the
    /// version it replaces is hidden at once: the new version is readable from the tail.
    pub fn observe(&mut self, resource_type: &str, id: &str, version_id: i64, deleted: bool) {
        self.observe_at(resource_type, id, version_id, deleted, None);
    }

    /// Record a version of a bulk load, which becomes readable only when its file is
    /// committed and located: the row it replaces stays visible until then.
    pub fn observe_unplaced(&mut self, resource_type: &str, id: &str, version_id: i64) {
        let key = self.fingerprint(resource_type, id);
        let before = self.latest.get(&key).copied();
        self.observe_at(resource_type, id, version_id, false, None);
        // `observe_at` hid the replaced row; defer that to the placing of the new one.
        if let Some(e) = before
            && e.packed.unpack().version_id < version_id
            && e.row_group != NOWHERE
        {
            if let Some(rows) = self.hidden.get_mut(&e.row_group) {
                rows.remove(e.row);
            }
            self.deferred.insert(key, (e.row_group, e.row));
        }
    }

    /// Whether the rows of a data file have been located ([`IdIndex::locate_file`]).
    pub fn is_located(&self, resource_type: &str, file: &str) -> bool {
        self.located
            .get(resource_type)
            .is_some_and(|f| f.contains_key(file))
    }

    /// Number the row groups of a data file, once; the number of its first row group.
    pub fn locate_file(&mut self, resource_type: &str, file: &str, row_groups: u32) -> u32 {
        if let Some((first, _)) = self.located.get(resource_type).and_then(|f| f.get(file)) {
            return *first;
        }
        let first = self.row_groups.len() as u32;
        let file: Arc<str> = Arc::from(file);
        self.row_groups
            .extend((0..row_groups).map(|rg| (file.clone(), rg)));
        self.located
            .entry(resource_type.to_string())
            .or_default()
            .insert(file, (first, row_groups));
        first
    }

    /// The rows of a located data file that are not current, per row group (`None` for a
    /// row group with none); `None` if the file is not located, so nothing is known.
    pub fn hidden_rows(
        &self,
        resource_type: &str,
        file: &str,
    ) -> Option<Vec<Option<RoaringBitmap>>> {
        let (first, count) = *self.located.get(resource_type)?.get(file)?;
        Some(
            (first..first + count)
                .map(|rg| self.hidden.get(&rg).filter(|b| !b.is_empty()).cloned())
                .collect(),
        )
    }

    /// The rows of one row group of a located data file that are not current (`None`
    /// when it has none); `None` if the file is not located, so nothing is known.
    pub fn hidden_in_row_group(
        &self,
        resource_type: &str,
        file: &str,
        row_group: u32,
    ) -> Option<Option<&RoaringBitmap>> {
        let (first, count) = *self.located.get(resource_type)?.get(file)?;
        if row_group >= count {
            return None;
        }
        Some(
            self.hidden
                .get(&(first + row_group))
                .filter(|b| !b.is_empty()),
        )
    }

    /// Whether a bulk load has versions whose files are not located yet: until they are,
    /// the rows they replace are not hidden although they are no longer the newest.
    pub fn has_unplaced_replacements(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Forget where rewritten versions of a type were: the files they left are no longer
    /// scanned.
    pub fn forget_moves(&mut self, resource_type: &str) {
        self.moved.remove(resource_type);
    }

    /// Forget the hidden rows of files that left the table for good (compacted and
    /// vacuumed away).
    pub fn forget_files(&mut self, resource_type: &str, files: &[&str]) {
        let Some(located) = self.located.get(resource_type) else {
            return;
        };
        for file in files {
            if let Some((first, count)) = located.get(*file) {
                for rg in *first..first + count {
                    self.hidden.remove(&rg);
                }
            }
        }
    }

    /// Hide a stored row that is not current for a reason the index cannot see itself
    /// (a version another process committed again: a clash).
    pub fn hide(&mut self, (row_group, row): (u32, u32)) {
        self.hidden.entry(row_group).or_default().insert(row);
    }

    /// Record a version, keeping the newest, and where Delta stores it: `at` is the row
    /// group's number ([`IdIndex::locate_file`]) and the row within it, or `None` for a
    /// version that is not in Delta yet. The same version seen again in another place (a
    /// compaction rewrote it) moves there.
    pub fn observe_at(
        &mut self,
        resource_type: &str,
        id: &str,
        version_id: i64,
        deleted: bool,
        at: Option<(u32, u32)>,
    ) {
        let key = self.fingerprint(resource_type, id);
        let new = Entry {
            packed: Packed::new(Latest {
                version_id,
                deleted,
            }),
            row_group: at.map_or(NOWHERE, |a| a.0),
            row: at.map_or(0, |a| a.1),
        };
        let place = |e: &Entry| (e.row_group != NOWHERE).then_some((e.row_group, e.row));
        match self.latest.get_mut(&key) {
            Some(e) if e.packed.unpack().version_id > version_id => {
                if let Some(at) = at {
                    self.hide(at);
                }
            }
            Some(e) if e.packed.unpack().version_id == version_id => {
                if let Some(at) = at {
                    let before = place(e);
                    let same_file = |a: (u32, u32), b: (u32, u32)| {
                        let file = |p: (u32, u32)| self.row_groups.get(p.0 as usize).map(|f| &f.0);
                        file(a) == file(b)
                    };
                    if before.is_some_and(|b| b != at && same_file(b, at)) {
                        // The same version twice in one file: a copy another process
                        // committed again (a clash) that a compaction gathered with the
                        // first. The first stays current; this copy is hidden.
                        self.hide(at);
                        return;
                    }
                    let Some(e) = self.latest.get_mut(&key) else {
                        return;
                    };
                    (e.row_group, e.row) = (new.row_group, new.row);
                    if let Some(before) = before.filter(|b| *b != at) {
                        self.moved
                            .entry(resource_type.to_string())
                            .or_default()
                            .insert(key, before);
                    }
                    if let Some(replaced) = self.deferred.remove(&key) {
                        self.hide(replaced);
                    }
                    if deleted {
                        self.hide(at);
                    }
                }
            }
            Some(e) => {
                let replaced = place(e);
                *e = new;
                if let Some(replaced) = replaced {
                    self.hide(replaced);
                }
                if let Some(moved) = self
                    .moved
                    .get_mut(resource_type)
                    .and_then(|m| m.remove(&key))
                {
                    self.hide(moved);
                }
                if let Some(replaced) = self.deferred.remove(&key) {
                    self.hide(replaced);
                }
                if let (true, Some(at)) = (deleted, at) {
                    self.hide(at);
                }
            }
            None => {
                self.latest.insert(key, new);
                match self.per_type.get_mut(resource_type) {
                    Some(n) => *n += 1,
                    None => {
                        self.per_type.insert(resource_type.to_string(), 1);
                    }
                }
                if let (true, Some(at)) = (deleted, at) {
                    self.hide(at);
                }
            }
        }
    }

    /// The next version for `id`: 1 for a new resource.
    pub fn next_version(&self, resource_type: &str, id: &str) -> i64 {
        self.get(resource_type, id).map_or(1, |l| l.version_id + 1)
    }

    /// Number of resources (current or deleted) of a type.
    pub fn count(&self, resource_type: &str) -> usize {
        self.per_type.get(resource_type).copied().unwrap_or(0)
    }
}

/// A resource's 128-bit fingerprint.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64, u64);

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a uniform hash: its first word is the table's hash.
        state.write_u64(self.0);
    }
}

#[derive(Default, Clone, Copy)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Fingerprint`; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for FingerprintHasher {
    type Hasher = FingerprintHasher;

    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_deletes_are_kept() {
        let mut index = IdIndex::default();
        assert_eq!(index.next_version("Patient", "a"), 1);
        index.observe("Patient", "a", 1, false);
        index.observe("Patient", "a", 3, true);
        index.observe("Patient", "a", 2, false);
        assert_eq!(
            index.get("Patient", "a"),
            Some(Latest {
                version_id: 3,
                deleted: true
            })
        );
        assert_eq!(index.next_version("Patient", "a"), 4);
        // Same id, other type: another resource.
        assert_eq!(index.get("Observation", "a"), None);
        index.observe("Observation", "a", 1, false);
        assert_eq!(index.count("Patient"), 1);
        assert_eq!(index.count("Observation"), 1);
        assert_eq!(index.count("Device"), 0);
    }

    #[test]
    fn many_ids_stay_distinct() {
        let mut index = IdIndex::default();
        for i in 0..50_000 {
            index.observe(
                "Observation",
                &format!("obs-{i}"),
                1 + (i % 3) as i64,
                false,
            );
        }
        for i in 0..50_000 {
            let l = index.get("Observation", &format!("obs-{i}")).unwrap();
            assert_eq!(l.version_id, 1 + (i % 3) as i64);
        }
        assert_eq!(index.count("Observation"), 50_000);
    }

    #[test]
    fn a_place_belongs_to_the_newest_version_only() {
        let mut index = IdIndex::default();
        let first = index.locate_file("Patient", "a.parquet", 3);
        assert_eq!(
            index.locate_file("Patient", "a.parquet", 3),
            first,
            "once per file"
        );
        assert!(index.is_located("Patient", "a.parquet"));
        assert!(!index.is_located("Observation", "a.parquet"));
        let second = index.locate_file("Patient", "b.parquet", 1);
        index.observe_at("Patient", "p", 1, false, Some((first + 2, 7)));
        let place = |index: &IdIndex| index.get_with_place("Patient", "p").unwrap().1;
        assert_eq!(
            place(&index),
            Some(Place {
                file: "a.parquet".into(),
                row_group: 2,
                row: 7
            })
        );
        // A new version in the tail has no place; an older one found later is ignored.
        index.observe("Patient", "p", 2, false);
        assert_eq!(place(&index), None);
        index.observe_at("Patient", "p", 1, false, Some((first, 0)));
        assert_eq!(place(&index), None);
        // Its flush places it; a compaction moves it.
        index.observe_at("Patient", "p", 2, false, Some((first + 1, 3)));
        index.observe_at("Patient", "p", 2, false, Some((second, 5)));
        assert_eq!(
            place(&index),
            Some(Place {
                file: "b.parquet".into(),
                row_group: 0,
                row: 5
            })
        );
        assert_eq!(index.get("Patient", "p").unwrap().version_id, 2);
    }

    #[test]
    fn rows_that_are_not_current_are_hidden_when_their_replacement_is_readable() {
        let mut index = IdIndex::default();
        let hidden = |index: &IdIndex, file: &str| -> Vec<u32> {
            index.hidden_rows("Patient", file).expect("located")[0]
                .as_ref()
                .map_or_else(Vec::new, |b| b.iter().collect())
        };
        let a = index.locate_file("Patient", "a.parquet", 1);
        for (row, id) in ["p", "q", "r"].into_iter().enumerate() {
            index.observe_at("Patient", id, 1, false, Some((a, row as u32)));
        }
        assert!(hidden(&index, "a.parquet").is_empty());
        assert!(index.hidden_rows("Patient", "unknown.parquet").is_none());

        // A write made durable replaces p at once; a delete of r too.
        index.observe("Patient", "p", 2, false);
        index.observe("Patient", "r", 2, true);
        assert_eq!(hidden(&index, "a.parquet"), vec![0, 2]);

        // A bulk version of q is not readable until its file is located.
        index.observe_unplaced("Patient", "q", 2);
        assert_eq!(hidden(&index, "a.parquet"), vec![0, 2]);
        let b = index.locate_file("Patient", "b.parquet", 1);
        index.observe_at("Patient", "q", 2, false, Some((b, 0)));
        index.observe_at("Patient", "p", 2, false, Some((b, 1)));
        // The flushed delete marker is hidden itself.
        index.observe_at("Patient", "r", 2, true, Some((b, 2)));
        assert_eq!(hidden(&index, "a.parquet"), vec![0, 1, 2]);
        assert_eq!(hidden(&index, "b.parquet"), vec![2]);

        // A compaction moves p and q to c; an update before the old file leaves the
        // snapshot hides q in both. A second copy of p in c (a clash) is hidden.
        let c = index.locate_file("Patient", "c.parquet", 1);
        index.observe_at("Patient", "q", 2, false, Some((c, 0)));
        index.observe_at("Patient", "p", 2, false, Some((c, 1)));
        index.observe_at("Patient", "p", 2, false, Some((c, 2)));
        index.observe("Patient", "q", 3, false);
        assert_eq!(hidden(&index, "b.parquet"), vec![0, 2]);
        assert_eq!(hidden(&index, "c.parquet"), vec![0, 2]);
        index.forget_moves("Patient");
        index.forget_files("Patient", &["a.parquet"]);
        assert!(hidden(&index, "a.parquet").is_empty());
    }
}
