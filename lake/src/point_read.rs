//! Reading one resource from Delta by id, without a query plan.
//!
//! A REST read wants one row. Planning and running a DataFusion scan for it costs more
//! than the read itself (about 9 ms at a million resources, most of it re-reading Parquet
//! footers). Instead, for each data file of the snapshot, its footer and the bloom
//! filters of its `id` column (one per row group, see
//! [`resource_writer_properties`](crate::schema::resource_writer_properties)) are read
//! once and kept: Delta data files never change. A read checks the bloom filters in
//! memory, then reads only the row groups that may hold the id, with the id filter
//! applied inside the Parquet reader, so only matching rows have their `resource`
//! decoded. A file written without bloom filters is simply read whole.
//!
//! Where the id index knows the row that holds a resource's newest version ([`Place`]),
//! a read selects that row and tests no bloom filter; through the page index the reader
//! then decodes only the pages (at most [`PAGE_ROWS`](crate::schema::PAGE_ROWS) rows and
//! about [`PAGE_BYTES`](crate::schema::PAGE_BYTES)) that hold it. The bloom filters grow with the table, and a row group's ids with the row group;
//! the pages a page of search results sits in do neither. The bloom filters remain the
//! way to versions without a place (older versions, files that another process wrote
//! since this one located its files), and to any id a place did not hold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use deltalake::DeltaTable;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use crate::error::{LakeError, Result};
use crate::index::Place;
use crate::record::ResourceVersion;

/// What is kept of one data file.
pub(crate) struct FileIndex {
    pub(crate) metadata: ArrowReaderMetadata,
    /// Leaf column index of `id`.
    id_column: usize,
    /// Per row group; `None` where the file has no bloom filter.
    blooms: Vec<Option<Sbbf>>,
}

/// The data files of one version of a table.
pub(crate) struct Listing {
    pub(crate) files: Vec<(Path, u64)>,
    /// Position in `files` by path, for reads that come with a [`Place`].
    pub(crate) by_path: HashMap<String, usize>,
}

/// Footers and bloom filters of the data files read so far, by table, then by path.
/// Kept per table so that reads of one type never evict another type's files.
#[derive(Default)]
pub(crate) struct PointReader {
    files: Mutex<HashMap<String, HashMap<String, Arc<FileIndex>>>>,
    /// Each table's data files at the version last read.
    listings: Mutex<HashMap<String, (Option<u64>, Arc<Listing>)>>,
    /// Ids that [`PointReader::read_many`] had to look for by bloom filter: reads of
    /// current versions should find their place instead.
    unplaced: std::sync::atomic::AtomicU64,
}

pub(crate) fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> LakeError {
    LakeError::Io {
        context: format!("could not read the Parquet file {path}"),
        source: std::io::Error::other(e),
    }
}

impl PointReader {
    /// The newest version of `id` in `table` (or version `version`), if any.
    pub(crate) async fn read(
        &self,
        table: &DeltaTable,
        resource_type: &str,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<ResourceVersion>> {
        let store = table.object_store();
        let (table_key, listing) = self.snapshot_files(table, resource_type)?;
        let mut best: Option<ResourceVersion> = None;
        for (path, size) in listing.files.iter().cloned() {
            let index = self.index(&table_key, &store, &path, size).await?;
            let row_groups: Vec<usize> = index
                .blooms
                .iter()
                .enumerate()
                .filter(|(_, b)| b.as_ref().is_none_or(|b| b.check(id)))
                .map(|(i, _)| i)
                .collect();
            if row_groups.is_empty() {
                continue;
            }
            for row in read_rows(
                ObjectFile::new(&store, &path, size),
                &index,
                row_groups,
                None,
                &[id],
                resource_type,
            )
            .await?
            {
                if version.is_some_and(|v| v != row.version_id) {
                    continue;
                }
                if best.as_ref().is_none_or(|b| row.version_id > b.version_id) {
                    best = Some(row);
                }
            }
        }
        Ok(best)
    }

    /// The newest versions of several ids of one type, each with the place of its
    /// newest version where the id index knows it. Each data file is read once, for just
    /// the rows placed in it (the pages that hold them, through the page index), so a
    /// page of search results costs what it returns, however large the table.
    pub(crate) async fn read_many(
        &self,
        table: &DeltaTable,
        resource_type: &str,
        wanted: &[(&str, Option<Place>)],
    ) -> Result<HashMap<String, ResourceVersion>> {
        let store = table.object_store();
        let (table_key, listing) = self.snapshot_files(table, resource_type)?;
        let started = std::time::Instant::now();
        let mut best: HashMap<String, ResourceVersion> = HashMap::new();
        // By file: the rows wanted of each row group, and the ids.
        let mut placed: Vec<(usize, BTreeMap<usize, Vec<usize>>, Vec<&str>)> = Vec::new();
        let mut unplaced: Vec<&str> = Vec::new();
        for (id, place) in wanted {
            // A place in a file that is no longer in the table (compacted) is no help.
            let live = place
                .as_ref()
                .and_then(|p| Some((*listing.by_path.get(p.file.as_ref())?, p)));
            let Some((file, place)) = live else {
                unplaced.push(id);
                continue;
            };
            let (rg, row) = (place.row_group as usize, place.row as usize);
            match placed.iter_mut().find(|f| f.0 == file) {
                Some(f) => {
                    f.1.entry(rg).or_default().push(row);
                    f.2.push(id);
                }
                None => placed.push((file, BTreeMap::from([(rg, vec![row])]), vec![id])),
            }
        }
        let mut groups_read = 0;
        for (file, rows, ids) in placed {
            let (path, size) = &listing.files[file];
            let (path, size) = (path.clone(), *size);
            let index = self.index(&table_key, &store, &path, size).await?;
            let (row_groups, selection) = select_rows(&index, rows);
            groups_read += row_groups.len();
            for row in read_rows(
                ObjectFile::new(&store, &path, size),
                &index,
                row_groups,
                Some(selection),
                &ids,
                resource_type,
            )
            .await?
            {
                keep_newest(&mut best, row);
            }
            // A place that did not hold its id (it should not happen): look everywhere.
            unplaced.extend(ids.iter().filter(|id| !best.contains_key(**id)));
        }
        if !unplaced.is_empty() {
            self.unplaced
                .fetch_add(unplaced.len() as u64, std::sync::atomic::Ordering::Relaxed);
            groups_read += self
                .read_by_bloom(
                    &table_key,
                    &store,
                    &listing,
                    resource_type,
                    &unplaced,
                    &mut best,
                )
                .await?;
        }
        tracing::debug!(
            "{resource_type}: {} ids ({} without a place) in {groups_read} row groups, {} found, {:?}",
            wanted.len(),
            unplaced.len(),
            best.len(),
            started.elapsed()
        );
        Ok(best)
    }

    /// Read `ids` from every data file whose bloom filters may hold them, each file once
    /// for the union of those row groups. Returns the number of row groups read.
    async fn read_by_bloom(
        &self,
        table_key: &str,
        store: &Arc<dyn ObjectStore>,
        listing: &Listing,
        resource_type: &str,
        ids: &[&str],
        best: &mut HashMap<String, ResourceVersion>,
    ) -> Result<usize> {
        let mut groups_read = 0;
        for (path, size) in listing.files.iter().cloned() {
            let index = self.index(table_key, store, &path, size).await?;
            let mut wanted: Vec<&str> = Vec::new();
            let mut row_groups: Vec<usize> = Vec::new();
            for (rg, bloom) in index.blooms.iter().enumerate() {
                let mut any = false;
                for id in ids {
                    if bloom.as_ref().is_none_or(|b| b.check(*id)) {
                        any = true;
                        if !wanted.contains(id) {
                            wanted.push(id);
                        }
                    }
                }
                if any {
                    row_groups.push(rg);
                }
            }
            if row_groups.is_empty() {
                continue;
            }
            groups_read += row_groups.len();
            for row in read_rows(
                ObjectFile::new(store, &path, size),
                &index,
                row_groups,
                None,
                &wanted,
                resource_type,
            )
            .await?
            {
                keep_newest(best, row);
            }
        }
        Ok(groups_read)
    }

    /// The data files of the table's snapshot, with the key its kept files go by.
    ///
    /// The list is kept per table version: listing a snapshot's files walks its log
    /// state (milliseconds at a hundred files), which would make every read cost more as
    /// the table grows.
    pub(crate) fn snapshot_files(
        &self,
        table: &DeltaTable,
        resource_type: &str,
    ) -> Result<(String, Arc<Listing>)> {
        let table_key = table.table_url().to_string();
        let version = table.version();
        if let Some((v, listing)) = self.listings.lock().get(&table_key) {
            if *v == version {
                return Ok((table_key, listing.clone()));
            }
        }
        let files: Vec<(Path, u64)> = table
            .snapshot()
            .map_err(|e| LakeError::delta(resource_type, e))?
            .log_data()
            .iter()
            .map(|f| (f.object_store_path(), f.size().max(0) as u64))
            .collect();
        self.forget_files_not_in(&table_key, &files);
        let by_path = files
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.as_ref().to_string(), i))
            .collect();
        let listing = Arc::new(Listing { files, by_path });
        self.listings
            .lock()
            .insert(table_key.clone(), (version, listing.clone()));
        Ok((table_key, listing))
    }

    /// The footer and bloom filters of a data file, read once.
    pub(crate) async fn index(
        &self,
        table_key: &str,
        store: &Arc<dyn ObjectStore>,
        path: &Path,
        size: u64,
    ) -> Result<Arc<FileIndex>> {
        if let Some(i) = self
            .files
            .lock()
            .get(table_key)
            .and_then(|t| t.get(path.as_ref()))
        {
            return Ok(i.clone());
        }
        let mut reader = ObjectFile::new(store, path, size);
        let metadata = ArrowReaderMetadata::load_async(
            &mut reader,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .await
        .map_err(|e| parquet_error(path, e))?;
        let id_column = metadata
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "id")
            .ok_or_else(|| LakeError::Io {
                context: format!("{path} has no id column"),
                source: std::io::Error::other("not a resource table file"),
            })?;
        let row_groups = metadata.metadata().num_row_groups();
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone());
        let mut blooms = Vec::with_capacity(row_groups);
        for rg in 0..row_groups {
            blooms.push(
                builder
                    .get_row_group_column_bloom_filter(rg, id_column)
                    .await
                    .map_err(|e| parquet_error(path, e))?,
            );
        }
        let index = Arc::new(FileIndex {
            metadata,
            id_column,
            blooms,
        });
        self.files
            .lock()
            .entry(table_key.to_string())
            .or_default()
            .insert(path.as_ref().to_string(), index.clone());
        Ok(index)
    }

    /// Drop what is kept of a table's files that compaction and vacuum took out of it.
    fn forget_files_not_in(&self, table_key: &str, files: &[(Path, u64)]) {
        let mut tables = self.files.lock();
        let Some(kept) = tables.get_mut(table_key) else {
            return;
        };
        if kept.len() > 2 * files.len() + 16 {
            let live: std::collections::HashSet<&str> =
                files.iter().map(|(p, _)| p.as_ref()).collect();
            kept.retain(|p, _| live.contains(p.as_str()));
        }
    }
}

fn keep_newest(best: &mut HashMap<String, ResourceVersion>, row: ResourceVersion) {
    match best.get(&row.id) {
        Some(b) if b.version_id >= row.version_id => {}
        _ => {
            best.insert(row.id.clone(), row);
        }
    }
}

/// The row groups to read, in order, and the selection of the wanted rows in them.
/// Rows beyond a row group's end (a place that is wrong) are left out.
fn select_rows(index: &FileIndex, rows: BTreeMap<usize, Vec<usize>>) -> (Vec<usize>, RowSelection) {
    let metadata = index.metadata.metadata();
    let mut row_groups = Vec::new();
    let mut selectors = Vec::new();
    for (rg, mut wanted) in rows {
        if rg >= metadata.num_row_groups() {
            continue;
        }
        let len = metadata.row_group(rg).num_rows().max(0) as usize;
        wanted.sort_unstable();
        wanted.dedup();
        let mut at = 0;
        for row in wanted.into_iter().take_while(|r| *r < len) {
            if row > at {
                selectors.push(RowSelector::skip(row - at));
            }
            selectors.push(RowSelector::select(1));
            at = row + 1;
        }
        if len > at {
            selectors.push(RowSelector::skip(len - at));
        }
        row_groups.push(rg);
    }
    (row_groups, RowSelection::from(selectors))
}

/// Read the rows of `ids` from `row_groups` of a file (or only from `selection` in them).
async fn read_rows(
    reader: ObjectFile,
    index: &FileIndex,
    row_groups: Vec<usize>,
    selection: Option<RowSelection>,
    ids: &[&str],
    resource_type: &str,
) -> Result<Vec<ResourceVersion>> {
    let path = reader.path.clone();
    let mask = ProjectionMask::leaves(
        index.metadata.metadata().file_metadata().schema_descr(),
        [index.id_column],
    );
    // One pass over the ids of the row group, whatever the number wanted: an equality
    // kernel per id made a page of 150 ids cost 150 passes.
    let wanted: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
    let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
        let column: &ArrayRef = batch.column(0);
        let hit = |v: Option<&str>| Some(v.is_some_and(|v| wanted.contains(v)));
        Ok(match column.data_type() {
            DataType::Utf8 => column.as_string::<i32>().iter().map(hit).collect(),
            DataType::LargeUtf8 => column.as_string::<i64>().iter().map(hit).collect(),
            DataType::Utf8View => column.as_string_view().iter().map(hit).collect(),
            other => {
                return Err(arrow::error::ArrowError::SchemaError(format!(
                    "the id column is {other}, not a string"
                )));
            }
        })
    });
    // Every column but `search`: a read serves the resource, and the search values
    // (often larger than the resource) would only be decompressed to be dropped.
    let schema = index.metadata.metadata().file_metadata().schema_descr();
    let columns = schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| c.name() != "search")
        .map(|(i, _)| i);
    let projection = ProjectionMask::leaves(schema, columns);
    let mut builder =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, index.metadata.clone())
            .with_row_groups(row_groups)
            .with_projection(projection)
            .with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    let stream = builder.build().map_err(|e| parquet_error(&path, e))?;
    let batches: Vec<RecordBatch> = stream
        .try_collect()
        .await
        .map_err(|e| parquet_error(&path, e))?;
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(crate::record::row_from_batch(&b, resource_type, i)?);
        }
    }
    Ok(rows)
}

/// A Parquet file in the object store, read by byte ranges.
pub(crate) struct ObjectFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl ObjectFile {
    pub(crate) fn new(store: &Arc<dyn ObjectStore>, path: &Path, size: u64) -> ObjectFile {
        ObjectFile {
            store: store.clone(),
            path: path.clone(),
            size,
        }
    }
}

fn external(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::index::Place;
    use crate::{Lake, LakeOptions, WriteOp};

    fn put(resource_type: &str, id: String) -> WriteOp {
        let mut resource = serde_json::Map::new();
        resource.insert("resourceType".into(), resource_type.into());
        WriteOp::Put {
            resource_type: resource_type.into(),
            id: Some(id),
            resource,
            if_match: None,
        }
    }

    /// Reads of a type with one file must not evict what is kept of a type with many:
    /// alternating reads of two types once reloaded every footer on every read.
    #[tokio::test]
    async fn reads_of_one_type_keep_the_files_of_another() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
            .await
            .unwrap();
        for i in 0..20 {
            lake.write(vec![put("Observation", format!("o{i}"))])
                .await
                .unwrap();
            lake.flush().await.unwrap();
        }
        lake.write(vec![put("Patient", "p".into())]).await.unwrap();
        lake.flush().await.unwrap();
        let kept = |lake: &Lake, table: &str| {
            let url = lake.table_url(table).unwrap().to_string();
            let files = lake.points().files.lock();
            files
                .iter()
                .find(|(k, _)| k.trim_end_matches('/') == url.trim_end_matches('/'))
                .map_or(0, |(_, f)| f.len())
        };
        assert!(
            lake.read_latest("Observation", "o3")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(kept(&lake, "Observation"), 20);
        assert!(lake.read_latest("Patient", "p").await.unwrap().is_some());
        assert_eq!(
            kept(&lake, "Observation"),
            20,
            "a Patient read evicted Observation files"
        );
        assert_eq!(kept(&lake, "Patient"), 1);
    }

    /// Rows spread over many pages and read one and two at a time: every id is found.
    #[tokio::test]
    async fn reads_find_every_row_through_the_page_index() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
            .await
            .unwrap();
        let ops: Vec<WriteOp> = (0..3000)
            .map(|i| put("Observation", format!("obs-{:05}", i * 2)))
            .collect();
        lake.write(ops).await.unwrap();
        lake.flush().await.unwrap();
        for i in (0..3000).step_by(97) {
            let id = format!("obs-{:05}", i * 2);
            let row = lake.read_latest("Observation", &id).await.unwrap();
            assert_eq!(row.map(|r| r.id.clone()), Some(id));
            let wanted = [format!("obs-{:05}", i * 2), format!("obs-{:05}", i * 2 + 2)];
            let refs: Vec<&str> = wanted.iter().map(String::as_str).collect();
            let many = lake.read_latest_many("Observation", &refs).await.unwrap();
            assert!(many.iter().all(Option::is_some));
        }
        assert!(
            lake.read_latest("Observation", "obs-00001")
                .await
                .unwrap()
                .is_none()
        );
    }

    /// The id index places every version that is in Delta: after a flush, after the lake
    /// opens again, and after a compaction moved every row; reads through the places
    /// find the newest versions, and a wrong place only costs a search of the table.
    #[tokio::test]
    async fn reads_go_to_the_rows_the_index_places_them_at() {
        let dir = tempfile::tempdir().unwrap();
        let options = LakeOptions::new(dir.path().to_str().unwrap());
        let rows = crate::schema::ROW_GROUP_ROWS * 2 + 100; // three row groups
        let ids: Vec<String> = (0..rows).map(|i| format!("obs-{i:06}")).collect();
        let place_of = |lake: &Lake, id: &str| {
            let (latest, place) =
                lake.with_write_state(|index| index.get_with_place("Observation", id).unwrap());
            (latest.version_id, place)
        };
        // The row groups the sampled ids are placed in.
        let check = |lake: &Lake| {
            let mut row_groups = std::collections::HashSet::new();
            for (i, id) in ids.iter().enumerate().step_by(53) {
                let (version, place) = place_of(lake, id);
                assert_eq!(version, if i < 10 { 2 } else { 1 }, "{id}");
                let place = place.expect("no place after a flush");
                row_groups.insert((place.file, place.row_group));
            }
            row_groups
        };
        // Every id of `ids`, read through the places alone.
        let read_all = |lake: Lake| {
            let ids = ids.clone();
            async move {
                let unplaced = || lake.points().unplaced.load(Ordering::Relaxed);
                let before = unplaced();
                for chunk in ids.chunks(997) {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    let found = lake.read_latest_many("Observation", &refs).await.unwrap();
                    for (id, row) in chunk.iter().zip(found) {
                        let row = row.unwrap_or_else(|| panic!("{id} not found"));
                        assert_eq!(&row.id, id);
                        let newest = if id.as_str() < "obs-000010" { 2 } else { 1 };
                        assert_eq!(row.version_id, newest, "{id}");
                    }
                }
                assert_eq!(unplaced(), before, "ids read by bloom filter, not by place");
            }
        };

        let lake = Lake::open(options.clone()).await.unwrap();
        let ops: Vec<WriteOp> = ids
            .iter()
            .map(|id| put("Observation", id.clone()))
            .collect();
        lake.write(ops).await.unwrap();
        lake.flush().await.unwrap();
        // Ten updates in a second file: their places move to it.
        let before = place_of(&lake, &ids[0]).1.unwrap();
        let ops: Vec<WriteOp> = ids[..10]
            .iter()
            .map(|id| put("Observation", id.clone()))
            .collect();
        lake.write(ops).await.unwrap();
        assert_eq!(
            place_of(&lake, &ids[0]),
            (2, None),
            "a tail version has no place"
        );
        lake.flush().await.unwrap();
        let after = place_of(&lake, &ids[0]).1.unwrap();
        assert_ne!(after.file, before.file);
        assert_eq!(
            check(&lake).len(),
            4,
            "three row groups and the update file"
        );
        // The first file holds the ids in the order written.
        for i in [10, 8191, 8192, 16383, rows - 1] {
            let place = place_of(&lake, &ids[i]).1.unwrap();
            let expected = (
                i / crate::schema::ROW_GROUP_ROWS,
                i % crate::schema::ROW_GROUP_ROWS,
            );
            assert_eq!((place.row_group as usize, place.row as usize), expected);
        }
        read_all(lake.clone()).await;

        // A place that is wrong, or in a file that is gone, is searched for instead.
        let table = lake.table_handle("Observation").await.unwrap();
        let wrong = [
            (
                ids[20].as_str(),
                Some(Place {
                    row_group: 2,
                    ..before.clone()
                }),
            ),
            (
                ids[21].as_str(),
                Some(Place {
                    file: "gone.parquet".into(),
                    row_group: 0,
                    row: 0,
                }),
            ),
            (
                ids[22].as_str(),
                Some(Place {
                    row: 5000,
                    ..place_of(&lake, &ids[22]).1.unwrap()
                }),
            ),
        ];
        let found = lake
            .points()
            .read_many(&table, "Observation", &wrong)
            .await
            .unwrap();
        assert_eq!(found.len(), 3);
        assert!(lake.points().unplaced.load(Ordering::Relaxed) >= 3);

        // Compaction rewrites every row: the places follow.
        lake.optimize(Duration::ZERO).await.unwrap();
        let compacted = check(&lake);
        assert!(
            compacted
                .iter()
                .all(|p| p.0 != before.file && p.0 != after.file)
        );
        read_all(lake.clone()).await;
        drop(lake);

        // Opening again learns them from the files.
        let lake = Lake::open(options).await.unwrap();
        assert_eq!(check(&lake), compacted);
        read_all(lake).await;
    }

    /// Large resources make pages of about `PAGE_BYTES`, not of `PAGE_ROWS` rows: a read
    /// of one row then decompresses tens of KB, not most of a megabyte.
    #[tokio::test]
    async fn pages_of_large_resources_are_cut_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(LakeOptions::new(dir.path().to_str().unwrap()))
            .await
            .unwrap();
        // Text that snappy cannot shrink much: 4 KB of hex per resource.
        let ops: Vec<WriteOp> = (0..256u64)
            .map(|i| {
                let mut op = put("Patient", format!("p{i}"));
                if let WriteOp::Put { resource, .. } = &mut op {
                    let text: String = (0..512u64)
                        .map(|k| format!("{:08x}", (i * 7919 + k).wrapping_mul(0x9e3779b97f4a7c15)))
                        .collect::<String>()[..4096]
                        .to_string();
                    resource.insert("text".into(), serde_json::json!({"div": text}));
                }
                op
            })
            .collect();
        lake.write(ops).await.unwrap();
        lake.flush().await.unwrap();
        let table = lake.table_handle("Patient").await.unwrap();
        let (key, listing) = lake.points().snapshot_files(&table, "Patient").unwrap();
        let (path, size) = listing.files[0].clone();
        let store = table.object_store();
        let index = lake
            .points()
            .index(&key, &store, &path, size)
            .await
            .unwrap();
        let metadata = index.metadata.metadata();
        let column = metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "resource")
            .unwrap();
        let pages = metadata.offset_index().expect("an offset index")[0][column]
            .page_locations()
            .len();
        // 256 rows of 4 KB: a megabyte, so at least 16 pages of 64 KB, not one.
        assert!(pages >= 16, "{pages} pages");
        for i in [0, 100, 255] {
            let id = format!("p{i}");
            let row = lake.read_latest("Patient", &id).await.unwrap().unwrap();
            assert_eq!(row.id, id);
        }
    }
}
