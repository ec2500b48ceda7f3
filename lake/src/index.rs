//! The resident id index: for every resource, its newest version and whether it is deleted.
//!
//! Versioning needs it on every write (the next `meta.versionId`), so it lives in memory,
//! built at start from the Delta tables' key columns plus the replayed WAL.
//!
//! It is the one structure that grows with the data, so it is kept small: a resource is
//! a 128-bit fingerprint of its type and id (two independently keyed SipHashes) and a
//! packed version, about 30 bytes each, rather than the id string itself (about 100).
//! Two ids share a fingerprint with probability near 2^-128 per pair: at a billion
//! resources, around 10^-21.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

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

pub struct IdIndex {
    keys: (RandomState, RandomState),
    latest: HashMap<Fingerprint, Packed, FingerprintHasher>,
    per_type: HashMap<String, usize>,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex {
            keys: (RandomState::new(), RandomState::new()),
            latest: HashMap::default(),
            per_type: HashMap::new(),
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
            .map(|p| p.unpack())
    }

    /// Record a version, keeping the newest.
    pub fn observe(&mut self, resource_type: &str, id: &str, version_id: i64, deleted: bool) {
        let key = self.fingerprint(resource_type, id);
        let new = Latest {
            version_id,
            deleted,
        };
        match self.latest.get_mut(&key) {
            Some(p) if p.unpack().version_id >= version_id => {}
            Some(p) => *p = Packed::new(new),
            None => {
                self.latest.insert(key, Packed::new(new));
                match self.per_type.get_mut(resource_type) {
                    Some(n) => *n += 1,
                    None => {
                        self.per_type.insert(resource_type.to_string(), 1);
                    }
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
}
