//! Which SOPInstanceUIDs the lake holds: the duplicate check of [`crate::Lake::store_dicom`].
//!
//! A set in memory, loaded from `dicom.instances` (its Delta snapshot and the in-memory
//! tail, which holds what recovery replayed from the WAL) by the first store after the
//! lake opens, and kept by every store since. Querying the table per instance would cost
//! a scan (or at best a bloom-filter probe of every file) per STOW instance, and would
//! not see a store that is in flight; the set answers in a hash lookup and holds the
//! in-flight ones too.
//!
//! It keeps 128 bits of each UID's SHA-256, not the UID: 16 bytes a UID plus the hash
//! table's control byte and spare room, about 20 to 40 MB at a million instances (the
//! UIDs as strings would take about 100 MB). Two different UIDs share 128 hash bits with
//! a probability of about n²/2¹²⁹, 10⁻²⁷ at a million instances: a false duplicate is not
//! a practical concern.
//!
//! A store reserves its UID before its row is appended; the reservation becomes a stored
//! UID when the append is durable, and is released if anything fails before. So two
//! concurrent stores of one instance cannot both append a row: the second is answered as
//! a duplicate at once (if the first then fails, a retry succeeds).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::lake::KindView;

/// The SOPInstanceUIDs stored, and those being stored.
#[derive(Debug, Default)]
pub(crate) struct StoredSops {
    inner: Mutex<Sets>,
}

#[derive(Debug, Default)]
struct Sets {
    stored: HashSet<u128>,
    reserved: HashSet<u128>,
}

fn key(uid: &str) -> u128 {
    let digest = Sha256::digest(uid.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(first)
}

impl StoredSops {
    /// The UIDs of a view of `dicom.instances`.
    pub(crate) async fn load(view: KindView) -> Result<StoredSops> {
        let mut stored = HashSet::new();
        let mut add = |batch: &arrow::array::RecordBatch| -> Result<()> {
            let column = batch.column(0);
            let column = arrow::compute::cast(column, &DataType::Utf8)?;
            let uids = column.as_string::<i32>();
            stored.reserve(uids.len());
            for i in 0..uids.len() {
                if uids.is_valid(i) {
                    stored.insert(key(uids.value(i)));
                }
            }
            Ok(())
        };
        if let Some(table) = view.delta {
            let provider = table.table_provider().await?;
            let ctx = SessionContext::new();
            let mut batches = ctx
                .read_table(provider)?
                .select_columns(&["sop_instance_uid"])?
                .execute_stream()
                .await?;
            while let Some(batch) = batches.try_next().await? {
                add(&batch)?;
            }
        }
        for batch in &view.tail {
            let projected = batch.project(&[batch.schema().index_of("sop_instance_uid")?])?;
            add(&projected)?;
        }
        tracing::info!("dicom.instances holds {} instances", stored.len());
        Ok(StoredSops {
            inner: Mutex::new(Sets {
                stored,
                reserved: HashSet::new(),
            }),
        })
    }

    /// Reserve `uid` for a store: `None` if it is stored or being stored.
    pub(crate) fn reserve(self: &Arc<Self>, uid: &str) -> Option<Reservation> {
        let key = key(uid);
        let mut sets = self.inner.lock();
        if sets.stored.contains(&key) || !sets.reserved.insert(key) {
            return None;
        }
        Some(Reservation {
            sops: self.clone(),
            key,
            done: false,
        })
    }

    /// How many instances are stored.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().stored.len()
    }
}

/// A SOPInstanceUID being stored. Released when dropped, unless [`Reservation::stored`].
#[derive(Debug)]
pub(crate) struct Reservation {
    sops: Arc<StoredSops>,
    key: u128,
    done: bool,
}

impl Reservation {
    /// The instance's row is durable: its UID is stored.
    pub(crate) fn stored(mut self) {
        let mut sets = self.sops.inner.lock();
        sets.reserved.remove(&self.key);
        sets.stored.insert(self.key);
        self.done = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            self.sops.inner.lock().reserved.remove(&self.key);
        }
    }
}
