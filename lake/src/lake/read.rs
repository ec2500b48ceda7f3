//! Reads of resources by id and version: the tail first, then Delta by place.

use super::*;

impl Lake {
    /// The newest version of a resource, deleted or not: from the tail, else from Delta.
    pub async fn read_latest(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Arc<ResourceVersion>>> {
        // The index knows every id: an unknown one needs no file read.
        let Some((_, place)) = self
            .shared
            .index
            .lock()
            .index
            .get_with_place(resource_type, id)
        else {
            return Ok(None);
        };
        let delta = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(None);
            };
            if let Some(r) = s.buffer.latest(id) {
                return Ok(Some(r));
            }
            s.delta.clone()
        };
        let Some(table) = delta else { return Ok(None) };
        let mut found = self
            .shared
            .points
            .read_many(&table, resource_type, &[(id, place)])
            .await?;
        Ok(found.remove(id).map(Arc::new))
    }

    /// The newest versions of several resources of one type (deleted or not), in the
    /// order asked; `None` for an id the lake does not know. Ids in Delta are read
    /// together, each data file once ([`PointReader`]), from the rows the id index
    /// places them at.
    pub async fn read_latest_many(
        &self,
        resource_type: &str,
        ids: &[&str],
    ) -> Result<Vec<Option<Arc<ResourceVersion>>>> {
        let mut out: Vec<Option<Arc<ResourceVersion>>> = vec![None; ids.len()];
        let mut from_delta: Vec<(usize, &str, Option<Place>)> = Vec::new();
        // The index first, apart from the tail's lock: an unknown id needs no read.
        let known: Vec<Option<Option<Place>>> = {
            let st = self.shared.index.lock();
            ids.iter()
                .map(|id| st.index.get_with_place(resource_type, id).map(|(_, p)| p))
                .collect()
        };
        let delta = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(out);
            };
            for ((i, id), place) in ids.iter().enumerate().zip(known) {
                let Some(place) = place else { continue };
                match s.buffer.latest(id) {
                    Some(r) => out[i] = Some(r),
                    None => from_delta.push((i, id, place)),
                }
            }
            s.delta.clone()
        };
        if let (Some(table), false) = (delta, from_delta.is_empty()) {
            let wanted: Vec<(&str, Option<Place>)> = from_delta
                .iter()
                .map(|(_, id, place)| (*id, place.clone()))
                .collect();
            let mut found = self
                .shared
                .points
                .read_many(&table, resource_type, &wanted)
                .await?;
            for (i, id, _) in from_delta {
                out[i] = found.remove(id).map(Arc::new);
            }
        }
        Ok(out)
    }

    /// One version of a resource.
    pub async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<Arc<ResourceVersion>>> {
        if self
            .latest(resource_type, id)
            .is_none_or(|l| version_id > l.version_id || version_id < 1)
        {
            return Ok(None);
        }
        let delta = {
            let types = self.shared.types.lock();
            let Some(s) = types.get(resource_type) else {
                return Ok(None);
            };
            if let Some(r) = s.buffer.version(id, version_id) {
                return Ok(Some(r));
            }
            s.delta.clone()
        };
        let Some(table) = delta else { return Ok(None) };
        let row = self
            .shared
            .points
            .read(&table, resource_type, id, Some(version_id))
            .await?;
        Ok(row.map(Arc::new))
    }
}

impl Lake {
    /// The data files of a snapshot of a resource table: each path relative to the table
    /// root, and its size. Kept per table version, so asking again costs a lookup.
    pub fn data_files(
        &self,
        resource_type: &str,
        table: &DeltaTable,
    ) -> Result<Vec<(String, u64)>> {
        let (_, listing) = self.shared.points.snapshot_files(table, resource_type)?;
        Ok(listing
            .files
            .iter()
            .map(|(p, size)| (p.as_ref().to_string(), *size))
            .collect())
    }

    /// How many rows each row group of a data file of `table` holds, from its footer
    /// (read once and kept, as the point reads do).
    pub async fn row_group_rows(
        &self,
        resource_type: &str,
        table: &DeltaTable,
        file: &str,
    ) -> Result<Vec<usize>> {
        let (table_key, listing) = self.shared.points.snapshot_files(table, resource_type)?;
        let Some(&i) = listing.by_path.get(file) else {
            return Err(LakeError::Io {
                context: format!("{file} is not a data file of the {resource_type} snapshot"),
                source: std::io::Error::other("file not in snapshot"),
            });
        };
        let (path, size) = &listing.files[i];
        let store = table.object_store();
        let index = self
            .shared
            .points
            .index(&table_key, &store, path, *size)
            .await?;
        Ok(index
            .metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as usize)
            .collect())
    }
}
