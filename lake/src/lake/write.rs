//! The write path: versions handed out under the index lock, pending until the WAL says they are durable (or failed), and the rows of other table kinds.

use super::*;

/// A write to make.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Create or update. Without an id, the server assigns one.
    Put {
        resource_type: String,
        id: Option<String>,
        resource: Map<String, Value>,
        /// The version the writer last saw (HTTP `If-Match`): the write fails with
        /// [`LakeError::VersionConflict`] if the current version differs.
        if_match: Option<i64>,
    },
    /// A versioned soft delete.
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<i64>,
    },
}

/// The outcome of one [`WriteOp`].
#[derive(Debug, Clone)]
pub struct Written {
    pub version: Arc<ResourceVersion>,
    /// True when this write made version 1, or revived a deleted resource.
    pub created: bool,
}

impl WriteState {
    /// The newest version, durable or on its way: what the next write builds on.
    fn current(&self, resource_type: &str, id: &str) -> Option<Latest> {
        if !self.pending.is_empty() {
            if let Some((latest, _)) = self.pending.get(&pending_key(resource_type, id)) {
                return Some(*latest);
            }
        }
        self.index.get(resource_type, id)
    }

    /// A version reached the end of its way (durable or failed): forget it as pending,
    /// unless a newer write of the same resource is on its way behind it.
    fn settle(&mut self, row: &ResourceVersion) {
        if self.pending.is_empty() {
            return;
        }
        let key = pending_key(&row.resource_type, &row.id);
        if self
            .pending
            .get(&key)
            .is_some_and(|(_, seq)| Some(*seq) == row.wal_seq)
        {
            self.pending.remove(&key);
        }
    }
}

fn pending_key(resource_type: &str, id: &str) -> String {
    let mut k = String::with_capacity(resource_type.len() + id.len() + 1);
    k.push_str(resource_type);
    k.push('/');
    k.push_str(id);
    k
}

impl Shared {
    /// On the WAL writer thread, once entries are durable and before they are
    /// acknowledged: make them readable. The tail first, then the id index, so a read
    /// that finds a new version in the index also finds its row. (Lock order: the types
    /// lock, then the index lock inside it; nothing takes them the other way round.)
    pub(super) fn apply_durable(&self, entries: &[WalEntry]) {
        let mut added = 0;
        for entry in entries {
            match entry {
                WalEntry::Resources(rows) => {
                    // Search first: a reader that finds a row by id can then also find it
                    // by search.
                    if let Some(search) = &self.search {
                        let mut search = search.write();
                        for r in rows {
                            search.apply(
                                &r.resource_type,
                                &r.id,
                                r.version_id,
                                r.last_updated,
                                r.deleted,
                                &r.search,
                            );
                        }
                    }
                    // The tail and the index change under the types lock together, so a
                    // scan of current versions (which takes both) never sees a new row
                    // beside the stored row it replaces ([`IdIndex::hidden_rows`]).
                    let mut types = self.types.lock();
                    for r in rows {
                        types
                            .entry(r.resource_type.clone())
                            .or_default()
                            .buffer
                            .insert(r.clone());
                    }
                    let mut st = self.index.lock();
                    for r in rows {
                        st.index
                            .observe(&r.resource_type, &r.id, r.version_id, r.deleted);
                        st.settle(r);
                    }
                    drop(st);
                    drop(types);
                    added += rows.len();
                }
                WalEntry::Rows(t) => {
                    let Some(batch) = &t.batch else { continue };
                    if let Some(table) = self.tables.lock().get_mut(&*t.table) {
                        table.tail.push((t.seq, batch.clone()));
                        added += batch.num_rows();
                    }
                }
            }
        }
        self.tail_rows.fetch_add(added, Ordering::Relaxed);
    }

    /// On the WAL writer thread, for entries that will never be durable.
    pub(super) fn apply_failed(&self, entries: &[WalEntry]) {
        let mut st = self.index.lock();
        for entry in entries {
            if let WalEntry::Resources(rows) = entry {
                for r in rows {
                    st.settle(r);
                }
            }
        }
    }
}

/// Set `resourceType`, `id`, `meta.versionId` and `meta.lastUpdated`, keeping any other
/// `meta` elements (profiles, tags, security labels) the client sent.
pub fn stamp(
    resource: &mut Map<String, Value>,
    resource_type: &str,
    id: &str,
    version: i64,
    last_updated_micros: i64,
) {
    resource.insert("resourceType".into(), Value::String(resource_type.into()));
    resource.insert("id".into(), Value::String(id.into()));
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(m) = meta {
        m.insert("versionId".into(), Value::String(version.to_string()));
        m.insert(
            "lastUpdated".into(),
            Value::String(instant_string(last_updated_micros)),
        );
    }
    // resourceType and id first, as FHIR servers conventionally serve them.
    if resource.keys().next().map(String::as_str) != Some("resourceType") {
        let mut ordered = Map::with_capacity(resource.len());
        for k in ["resourceType", "id", "meta"] {
            if let Some(v) = resource.remove(k) {
                ordered.insert(k.into(), v);
            }
        }
        ordered.append(resource);
        *resource = ordered;
    }
}

/// [`stamp`] for a resource kept as text that has an id and no `meta`: append the meta
/// instead of rebuilding the JSON. `None` if the text is not a JSON object.
pub fn stamp_text(text: &str, version: i64, last_updated: &str) -> Option<String> {
    let body = text.trim_end();
    let open = body.strip_suffix('}')?.trim_end();
    if !text.trim_start().starts_with('{') || open.ends_with('{') {
        return None;
    }
    let mut out = String::with_capacity(open.len() + 64);
    out.push_str(open);
    out.push_str(",\"meta\":{\"versionId\":\"");
    out.push_str(&version.to_string());
    out.push_str("\",\"lastUpdated\":\"");
    out.push_str(last_updated);
    out.push_str("\"}}");
    Some(out)
}

/// The stored search values of a resource ([`medlake_ingest::search`]).
pub fn search_values(resource_type: &str, json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(v) => encode(&SearchParams::r4().extract(resource_type, &v)),
        Err(_) => String::new(),
    }
}

fn extract_searches(ops: &mut [WriteOp]) -> Vec<Arc<str>> {
    ops.iter_mut()
        .map(|op| match op {
            WriteOp::Put {
                resource_type,
                resource,
                ..
            } => Arc::from(search_values_of_map(resource_type, resource)),
            WriteOp::Delete { .. } => Arc::from(""),
        })
        .collect()
}

fn search_values_of_map(resource_type: &str, resource: &mut Map<String, Value>) -> String {
    // `extract` wants a `Value`: lend it the map rather than copy the resource.
    let value = Value::Object(std::mem::take(resource));
    let search = encode(&SearchParams::r4().extract(resource_type, &value));
    if let Value::Object(map) = value {
        *resource = map;
    }
    search
}

impl Lake {
    /// Put the rows of a batch committed straight to Delta (a bulk load) into the search
    /// index.
    pub(crate) fn index_committed(&self, resource_type: &str, batch: &RecordBatch) -> Result<()> {
        let Some(search) = &self.shared.search else {
            return Ok(());
        };
        let columns = KeyColumns::new(batch)?;
        let mut search = search.write();
        for i in 0..batch.num_rows() {
            let row = columns.row(i)?;
            index_row(&mut search, resource_type, &row, row.search.unwrap_or(""));
        }
        Ok(())
    }

    /// Newest version in the index, without reading data.
    pub fn latest(&self, resource_type: &str, id: &str) -> Option<Latest> {
        self.shared.index.lock().index.get(resource_type, id)
    }

    /// Apply writes durably. Returns when they are in the fsync'd WAL and readable.
    ///
    /// The preconditions (`if_match`) of all `ops` are checked first, under the same lock
    /// that assigns versions: if one fails, nothing is written.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<Written>> {
        let wal = self.writable()?;
        self.check_view_claims(&ops)?;
        // Extract search values before taking the lock: it is the costly part of a write,
        // and for a large request it moves off the async threads ([`crate::blocking`]).
        let mut ops = ops;
        let searches = if ops.len() >= crate::blocking::LARGE_REQUEST_RESOURCES {
            let (back, searches) = crate::blocking::run(move || {
                let searches = extract_searches(&mut ops);
                (ops, searches)
            })
            .await?;
            ops = back;
            searches
        } else {
            extract_searches(&mut ops)
        };
        let (pending, written) = {
            let mut st = self.shared.index.lock();
            for op in &ops {
                let (resource_type, id, if_match) = match op {
                    WriteOp::Put {
                        resource_type,
                        id: Some(id),
                        if_match: Some(v),
                        ..
                    } => (resource_type, id, *v),
                    WriteOp::Delete {
                        resource_type,
                        id,
                        if_match: Some(v),
                    } => (resource_type, id, *v),
                    _ => continue,
                };
                let current = st.current(resource_type, id);
                if current.map(|l| l.version_id) != Some(if_match) {
                    return Err(LakeError::VersionConflict {
                        resource: format!("{resource_type}/{id}"),
                        expected: if_match,
                        current: current.map(|l| l.version_id),
                    });
                }
            }
            let now = now_micros() / 1000 * 1000; // lastUpdated carries milliseconds
            let mut rows = Vec::with_capacity(ops.len());
            let mut written = Vec::with_capacity(ops.len());
            for (op, search) in ops.into_iter().zip(searches) {
                let seq = st.next_seq;
                st.next_seq += 1;
                let (resource_type, id, resource, deleted) = match op {
                    WriteOp::Put {
                        resource_type,
                        id,
                        resource,
                        ..
                    } => {
                        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                        (resource_type, id, Some(resource), false)
                    }
                    WriteOp::Delete {
                        resource_type, id, ..
                    } => (resource_type, id, None, true),
                };
                let prev = st.current(&resource_type, &id);
                let version_id = prev.map_or(1, |l| l.version_id + 1);
                let resource: Arc<str> = match resource {
                    Some(mut resource) => {
                        stamp(&mut resource, &resource_type, &id, version_id, now);
                        Arc::from(Value::Object(resource).to_string())
                    }
                    None => Arc::from(""),
                };
                st.pending.insert(
                    pending_key(&resource_type, &id),
                    (
                        Latest {
                            version_id,
                            deleted,
                        },
                        seq,
                    ),
                );
                let row = ResourceVersion {
                    resource_type,
                    id,
                    version_id,
                    last_updated: now,
                    deleted,
                    resource,
                    wal_seq: Some(seq),
                    search,
                };
                written.push(Written {
                    version: Arc::new(row.clone()),
                    created: prev.is_none_or(|l| l.deleted),
                });
                rows.push(row);
            }
            // Queue while still holding the lock: WAL order must be sequence order.
            match wal.submit(vec![WalEntry::Resources(rows)]) {
                Ok(p) => (p, written),
                Err(e) => {
                    for w in &written {
                        st.settle(&w.version);
                    }
                    return Err(e);
                }
            }
        };
        pending.wait().await?;
        Ok(written)
    }

    /// The WAL, if writes may be taken now.
    fn writable(&self) -> Result<Wal> {
        let wal = self.shared.wal.clone().ok_or_else(|| {
            LakeError::ReadOnly("writes go to the server that owns the workspace".into())
        })?;
        let waiting = self.shared.tail_rows.load(Ordering::Relaxed);
        if waiting >= self.shared.max_tail_rows {
            return Err(LakeError::Busy {
                waiting,
                bound: self.shared.max_tail_rows,
            });
        }
        let bytes = wal.bytes();
        if bytes >= self.shared.max_wal_bytes {
            return Err(LakeError::WalFull {
                bytes,
                bound: self.shared.max_wal_bytes,
            });
        }
        Ok(wal)
    }

    /// Make rows of a registered kind's table durable ([`TableKind`]). Returns their WAL
    /// sequence once they are in the fsync'd log and readable by SQL.
    pub async fn append(&self, table: &str, batch: RecordBatch) -> Result<i64> {
        if table == crate::dicom::INSTANCES_TABLE {
            return Err(LakeError::BadRows {
                table: table.to_string(),
                reason: "its rows are written by Lake::store_dicom, which stores the file \
                         and checks for duplicates with them"
                    .into(),
            });
        }
        self.append_rows(table, batch).await
    }

    /// [`Lake::append`] for any kind, the lake's own included.
    pub(crate) async fn append_rows(&self, table: &str, batch: RecordBatch) -> Result<i64> {
        let wal = self.writable()?;
        let kind = self
            .shared
            .tables
            .lock()
            .get(table)
            .map(|t| t.kind.clone())
            .ok_or_else(|| LakeError::UnknownTable(table.to_string()))?;
        let batch = kind::conform_batch(kind.as_ref(), batch)?;
        if batch.num_rows() == 0 {
            return Ok(self.shared.index.lock().next_seq - 1);
        }
        // Encode before taking the lock: it is the costly part.
        let encoded = kind.encode(&batch)?;
        let (pending, seq) = {
            let mut st = self.shared.index.lock();
            let seq = st.next_seq;
            st.next_seq += 1;
            let entry = WalEntry::Rows(TableRows {
                table: Arc::from(table),
                seq,
                encoded,
                batch: Some(batch),
            });
            (wal.submit(vec![entry])?, seq)
        };
        pending.wait().await?;
        Ok(seq)
    }

    /// The next version a bulk load gives a resource, recorded at once (bulk loads are
    /// their own acknowledgement).
    pub(crate) fn assign_bulk_version(&self, resource_type: &str, id: &str) -> i64 {
        let mut st = self.shared.index.lock();
        let v = st
            .current(resource_type, id)
            .map_or(1, |l| l.version_id + 1);
        st.index.observe_unplaced(resource_type, id, v);
        v
    }

    /// Record a version written outside the WAL (bulk loads) in the index.
    pub(crate) fn with_write_state<R>(&self, f: impl FnOnce(&mut IdIndex) -> R) -> R {
        f(&mut self.shared.index.lock().index)
    }

    /// Bytes the WAL holds on disk (0 for a lake without one): what waits for Delta, and
    /// the open segment.
    pub fn wal_bytes(&self) -> u64 {
        self.shared.wal.as_ref().map_or(0, |w| w.bytes())
    }

    /// The WAL's fault switches, for tests of the fail-stop behaviour.
    #[doc(hidden)]
    pub fn wal_faults(&self) -> Option<&crate::wal::WalFaults> {
        self.shared.wal.as_ref().map(|w| w.faults())
    }
}
