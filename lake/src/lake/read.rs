//! Reads of resources by id and version: the tail first, then Delta by place.

use super::*;

pub(crate) fn row_from_batch(
    b: &RecordBatch,
    resource_type: &str,
    i: usize,
) -> Result<ResourceVersion> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    let col = |name: &str| {
        b.column_by_name(name).cloned().ok_or_else(|| {
            LakeError::Arrow(arrow::error::ArrowError::SchemaError(format!(
                "missing column {name}"
            )))
        })
    };
    let id = col("id")?;
    let resource = col("resource")?;
    let seq = col("wal_seq")?;
    let seq = seq.as_primitive::<Int64Type>();
    Ok(ResourceVersion {
        resource_type: resource_type.to_string(),
        id: string_at(&id, i)?.to_string(),
        version_id: col("version_id")?.as_primitive::<Int64Type>().value(i),
        last_updated: col("last_updated")?
            .as_primitive::<TimestampMicrosecondType>()
            .value(i),
        deleted: col("deleted")?.as_boolean().value(i),
        resource: Arc::from(string_at(&resource, i)?),
        wal_seq: (!seq.is_null(i)).then(|| seq.value(i)),
        search: match b.column_by_name("search") {
            Some(s) if !s.is_null(i) => Arc::from(string_at(s, i)?),
            _ => Arc::from(""),
        },
    })
}

/// A string cell, whichever string layout the reader chose (delta-rs reads `Utf8View`).
pub(crate) fn string_at(array: &arrow::array::ArrayRef, i: usize) -> Result<&str> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Ok(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Ok(array.as_string_view().value(i)),
        other => Err(LakeError::Arrow(arrow::error::ArrowError::SchemaError(
            format!("expected a string column, found {other}"),
        ))),
    }
}

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
