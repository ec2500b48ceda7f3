//! Delta helpers: table URLs, loading, the WAL `txn` version, and installing new snapshots.

use super::*;

/// Load a Delta table, or `None` if there is none at `url`.
pub(crate) async fn load_table(url: &Url) -> Result<Option<DeltaTable>> {
    let builder =
        DeltaTableBuilder::from_url(url.clone()).map_err(|e| LakeError::delta(url.as_str(), e))?;
    // Probe first: loading a missing table reports the absence as a kernel error that
    // we cannot tell apart from a real failure.
    let probe = builder
        .build()
        .map_err(|e| LakeError::delta(url.as_str(), e))?;
    let exists = probe
        .log_store()
        .is_delta_table_location()
        .await
        .map_err(|e| LakeError::delta(url.as_str(), e))?;
    if !exists {
        return Ok(None);
    }
    let builder =
        DeltaTableBuilder::from_url(url.clone()).map_err(|e| LakeError::delta(url.as_str(), e))?;
    match builder.load().await {
        Ok(t) => Ok(Some(t)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(DeltaTableError::InvalidTableLocation(_)) => Ok(None),
        Err(e) => Err(LakeError::delta(url.as_str(), e)),
    }
}

pub(super) async fn wal_txn_version(table: &DeltaTable) -> Result<i64> {
    let snapshot = table
        .snapshot()
        .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), WAL_APP_ID)
        .await
        .map_err(|e| LakeError::delta(table.table_url().as_str(), e))?;
    Ok(v.unwrap_or(0))
}

/// The URL of a kind's table: `<workspace>/<namespace>/<name>/`.
pub(crate) fn kind_table_url(workspace: &Url, kind: &dyn TableKind) -> Result<Url> {
    workspace
        .join(&format!("{}/{}/", kind.namespace(), kind.name()))
        .map_err(|e| LakeError::BadDataUrl {
            url: workspace.to_string(),
            reason: e.to_string(),
        })
}

pub(crate) fn table_url(workspace: &Url, resource_type: &str) -> Result<Url> {
    workspace
        .join(&format!("{}/", resource_table_dir(resource_type)))
        .map_err(|e| LakeError::BadDataUrl {
            url: workspace.to_string(),
            reason: e.to_string(),
        })
}

impl Lake {
    /// A Delta handle for a type, loaded if it exists or ready to be created.
    pub(crate) async fn table_handle(&self, resource_type: &str) -> Result<DeltaTable> {
        self.table_handle_at(&self.table_url(resource_type)?).await
    }

    /// A Delta handle for a table, loaded if it exists or ready to be created.
    pub(crate) async fn table_handle_at(&self, url: &Url) -> Result<DeltaTable> {
        match load_table(url).await? {
            Some(t) => Ok(t),
            None => DeltaTableBuilder::from_url(url.clone())
                .and_then(|b| b.build())
                .map_err(|e| LakeError::delta(url.as_str(), e)),
        }
    }

    /// The snapshot of a type that queries see now, if it has a table.
    pub(crate) fn installed_table(&self, resource_type: &str) -> Option<DeltaTable> {
        self.shared
            .types
            .lock()
            .get(resource_type)
            .and_then(|s| s.delta.clone())
    }

    /// After a compaction of a kind's table: make the new snapshot the one queries see.
    pub(crate) fn install_kind_table(&self, name: &str, table: DeltaTable) {
        if self.install_view_table(name, table.clone()) {
            return;
        }
        if let Some(t) = self.shared.tables.lock().get_mut(name) {
            t.delta = Some(table);
        }
    }

    /// After a bulk commit: make the new snapshot the one queries see.
    pub(crate) fn install_table(&self, resource_type: &str, table: DeltaTable) {
        let replaced = {
            let mut types = self.shared.types.lock();
            let slot = &mut types.entry(resource_type.to_string()).or_default().delta;
            let replaced = slot.take();
            *slot = Some(table.clone());
            // The files that rewritten versions left are out of the snapshot now.
            self.shared.index.lock().index.forget_moves(resource_type);
            replaced
        };
        // And so are the hidden rows of the files it removed. A failure to list them
        // only leaves their few bytes in memory.
        if let Some(replaced) = replaced {
            let points = &self.shared.points;
            if let (Ok((_, old)), Ok((_, new))) = (
                points.snapshot_files(&replaced, resource_type),
                points.snapshot_files(&table, resource_type),
            ) {
                let removed: Vec<&str> = old
                    .files
                    .iter()
                    .map(|(p, _)| p.as_ref())
                    .filter(|p| !new.by_path.contains_key(*p))
                    .collect();
                if !removed.is_empty() {
                    self.shared
                        .index
                        .lock()
                        .index
                        .forget_files(resource_type, &removed);
                }
            }
        }
    }

    /// The URL of the ingest errors table.
    pub fn ingest_errors_url(&self) -> Result<Url> {
        self.shared
            .workspace_url
            .join(&format!("{INGEST_ERRORS_DIR}/"))
            .map_err(|e| LakeError::BadDataUrl {
                url: self.shared.workspace_url.to_string(),
                reason: e.to_string(),
            })
    }

    /// The ingest errors table, if any record was ever rejected.
    pub async fn ingest_errors_table(&self) -> Result<Option<DeltaTable>> {
        load_table(&self.ingest_errors_url()?).await
    }
}

impl Lake {
    /// A resource table as it was at a Delta version (time travel), or `None` when the
    /// type has no table. The version must exist: an older one removed by a checkpoint
    /// and vacuum is an error that names it.
    pub async fn table_at_version(
        &self,
        resource_type: &str,
        version: i64,
    ) -> Result<Option<DeltaTable>> {
        let url = self.table_url(resource_type)?;
        if load_table(&url).await?.is_none() {
            return Ok(None);
        }
        let version = u64::try_from(version).map_err(|_| {
            LakeError::delta(
                url.as_str(),
                DeltaTableError::Generic(format!("{version} is not a Delta version")),
            )
        })?;
        DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| LakeError::delta(url.as_str(), e))?
            .with_version(version)
            .load()
            .await
            .map(Some)
            .map_err(|e| LakeError::delta(url.as_str(), e))
    }
}
