//! The resident id index: for every resource, its newest version and whether it is deleted.
//!
//! Versioning needs it on every write (the next `meta.versionId`), so it lives in memory,
//! built at start from the Delta tables' key columns plus the replayed WAL. It costs about
//! a hundred bytes per resource.

use std::collections::HashMap;

/// Newest version of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub version_id: i64,
    pub deleted: bool,
}

#[derive(Default)]
pub struct IdIndex {
    by_type: HashMap<String, HashMap<String, Latest>>,
}

impl IdIndex {
    pub fn get(&self, resource_type: &str, id: &str) -> Option<Latest> {
        self.by_type.get(resource_type)?.get(id).copied()
    }

    /// Record a version, keeping the newest.
    pub fn observe(&mut self, resource_type: &str, id: &str, version_id: i64, deleted: bool) {
        let ids = match self.by_type.get_mut(resource_type) {
            Some(m) => m,
            None => self.by_type.entry(resource_type.to_string()).or_default(),
        };
        match ids.get_mut(id) {
            Some(l) if l.version_id >= version_id => {}
            Some(l) => {
                *l = Latest {
                    version_id,
                    deleted,
                }
            }
            None => {
                ids.insert(
                    id.to_string(),
                    Latest {
                        version_id,
                        deleted,
                    },
                );
            }
        }
    }

    /// The next version for `id`: 1 for a new resource.
    pub fn next_version(&self, resource_type: &str, id: &str) -> i64 {
        self.get(resource_type, id).map_or(1, |l| l.version_id + 1)
    }

    /// Number of resources (current or deleted) of a type.
    pub fn count(&self, resource_type: &str) -> usize {
        self.by_type.get(resource_type).map_or(0, |m| m.len())
    }
}
