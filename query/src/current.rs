//! `fhir.<type>`: the current version of each resource, as a scan that skips the rows
//! that are not current, instead of a window over every version.
//!
//! # Design
//!
//! The lake's id index knows, for every stored row, whether a newer version replaced it
//! or it is a delete marker, and hands that out per data file and row group with a
//! consistent snapshot ([`Lake::current_view`]), much as a Delta deletion vector would.
//! So the scan is the Delta table's Parquet files read by DataFusion's own Parquet scan,
//! with a [`ParquetAccessPlan`] per file that has such rows: row groups of only replaced
//! rows are skipped, others are read with a row selection. Files without any (in a lake
//! of mostly first versions, nearly all) are read whole, and `count(*)` reads no column
//! at all. The in-memory tail is filtered the same way, by the tail's own marks.
//!
//! The delta-rs table provider cannot take an access plan per file, hence this scan of
//! our own; it is sound because medlake writes its resource tables without deletion
//! vectors, column mapping or partitions (the same assumption as
//! `medlake_lake::point_read`). When a file of the snapshot is not located yet (another
//! process's commit the lake has not read back), nothing is known about its rows, and
//! the scan falls back to ranking versions with a window ([`current_by_window`]), which
//! gives the same rows at the cost of a sort.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::view::ViewTable;
use datafusion::error::Result;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, col, lit,
    not,
};
use datafusion::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use medlake_lake::Lake;
use roaring::RoaringBitmap;

use crate::provider::{LakeHandle, ResourceHistoryTable, external, query_resource_schema};

/// The columns of `fhir.<type>`, taken from `fhir_history.<type>`.
const CURRENT_COLUMNS: [&str; 4] = ["id", "version_id", "last_updated", "resource"];

/// The schema of `fhir.<type>`.
pub fn current_schema() -> SchemaRef {
    let history = query_resource_schema();
    let indices: Vec<usize> = CURRENT_COLUMNS
        .iter()
        .filter_map(|c| history.index_of(c).ok())
        .collect();
    Arc::new(
        history
            .project(&indices)
            .expect("the current columns are history columns"),
    )
}

/// `fhir.<type>`.
#[derive(Debug)]
pub struct CurrentTable {
    lake: LakeHandle,
    resource_type: String,
}

impl CurrentTable {
    pub fn new(lake: Lake, resource_type: impl Into<String>) -> Self {
        CurrentTable {
            lake: LakeHandle(lake),
            resource_type: resource_type.into(),
        }
    }
}

#[async_trait]
impl TableProvider for CurrentTable {
    fn schema(&self) -> SchemaRef {
        current_schema()
    }

    fn table_type(&self) -> TableType {
        // What clients listing tables should see: a view of `fhir_history.<type>`.
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Row groups are pruned with them; the rows are filtered again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let lake = &self.lake.0;
        let view = lake.current_view(&self.resource_type).map_err(external)?;
        let Some(hidden) = view.hidden else {
            tracing::debug!(
                "a file of {} is not located yet: current versions by window",
                self.resource_type
            );
            let window = current_by_window(lake.clone(), &self.resource_type)?;
            return window.scan(state, projection, filters, limit).await;
        };
        let history = query_resource_schema();
        let current = current_schema();
        // The projection in history's columns.
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..current.fields().len()).collect(),
        };
        let in_history: Vec<usize> = wanted
            .iter()
            .map(|&i| history.index_of(current.field(i).name()))
            .collect::<std::result::Result<_, _>>()?;
        let target = Arc::new(current.project(&wanted)?);

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if let Some(table) = view.delta.as_ref().filter(|t| t.version().is_some()) {
            // The files are named relative to the table root, as the log lists them: read
            // them through the table's own root-scoped store.
            let store_url = table.log_store().object_store_url();
            if state.runtime_env().object_store(&store_url).is_err() {
                state.runtime_env().register_object_store(
                    store_url.as_ref(),
                    table.log_store().object_store(None),
                );
            }
            let files = lake
                .data_files(&self.resource_type, table)
                .map_err(external)?;
            let mut partitioned = Vec::with_capacity(files.len());
            for (path, size) in files {
                let mut file = PartitionedFile::new(path.clone(), size);
                if let Some(rows) = hidden.get(&path) {
                    let sizes = lake
                        .row_group_rows(&self.resource_type, table, &path)
                        .await
                        .map_err(external)?;
                    match access_plan(&sizes, rows) {
                        Some(plan) => file = file.with_extension(plan),
                        None => continue, // nothing current in it
                    }
                }
                partitioned.push(file);
            }
            if !partitioned.is_empty() {
                let mut source = ParquetSource::new(history.clone())
                    .with_table_parquet_options(state.table_options().parquet.clone());
                if let Some(predicate) = conjunction(filters.iter().cloned()) {
                    let df_schema = DFSchema::try_from(history.as_ref().clone())?;
                    if let Ok(physical) = state.create_physical_expr(predicate, &df_schema) {
                        source = source.with_predicate(physical);
                    }
                }
                let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
                    .with_file_groups(spread(
                        partitioned,
                        state.config().target_partitions().max(1),
                    ))
                    .with_projection_indices(Some(in_history.clone()))?
                    .with_limit(limit)
                    .build();
                inputs.push(DataSourceExec::from_data_source(config));
            }
        }
        let tail: Vec<RecordBatch> = view
            .tail
            .iter()
            .zip(&view.tail_current)
            .map(|(batch, current)| {
                let batch = match current {
                    Some(mask) => filter_record_batch(batch, mask)?,
                    None => batch.clone(),
                };
                let columns = in_history
                    .iter()
                    .zip(target.fields())
                    .map(|(&i, f)| datafusion::arrow::compute::cast(batch.column(i), f.data_type()))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                // A count projects no column: the batch then carries only its length.
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                Ok(RecordBatch::try_new_with_options(
                    target.clone(),
                    columns,
                    &options,
                )?)
            })
            .collect::<Result<_>>()?;
        if tail.iter().any(|b| b.num_rows() > 0) {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[tail],
                target.clone(),
                None,
            )?);
        }
        match inputs.len() {
            0 => Ok(Arc::new(EmptyExec::new(target))),
            1 => Ok(inputs.remove(0)),
            _ => UnionExec::try_new(inputs),
        }
    }
}

/// The rows of a file to read, given the rows of each row group that are not current;
/// `None` when no row of the file is.
fn access_plan(sizes: &[usize], hidden: &[Option<RoaringBitmap>]) -> Option<ParquetAccessPlan> {
    let mut plan = ParquetAccessPlan::new_all(sizes.len());
    let mut any = false;
    for (rg, &rows) in sizes.iter().enumerate() {
        let Some(Some(skip)) = hidden.get(rg) else {
            any |= rows > 0;
            continue;
        };
        let skipped = skip.range_cardinality(0..rows as u32) as usize;
        if skipped >= rows {
            plan.skip(rg);
            continue;
        }
        any = true;
        plan.scan_selection(rg, selection(rows, skip));
    }
    any.then_some(plan)
}

/// A row selection of the `rows` rows of a row group that are not in `skip`.
fn selection(rows: usize, skip: &RoaringBitmap) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0usize;
    for hidden in skip.iter().map(|r| r as usize).take_while(|&r| r < rows) {
        if hidden > at {
            selectors.push(RowSelector::select(hidden - at));
        }
        selectors.push(RowSelector::skip(1));
        at = hidden + 1;
    }
    if at < rows {
        selectors.push(RowSelector::select(rows - at));
    }
    RowSelection::from(selectors)
}

/// Spread files over `n` groups, largest first onto the least loaded, so the scan's
/// partitions get about the same bytes.
fn spread(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n.min(files.len()).max(1))
        .map(|_| (0, Vec::new()))
        .collect();
    for f in files {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        lightest.0 += f.object_meta.size;
        lightest.1.push(f);
    }
    groups
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, files)| FileGroup::new(files))
        .collect()
}

/// Rank the versions of `history` (rows of a resource table): the newest `version_id`
/// per `id`, without delete markers, in the columns of `fhir.<type>`. Any provider of a
/// resource table's rows will do: the lake's own, or a plain Parquet listing of its
/// committed files where another engine runs the plan.
pub fn newest_versions(history: LogicalPlanBuilder) -> Result<LogicalPlan> {
    let newest_first = row_number()
        .partition_by(vec![col("id")])
        .order_by(vec![col("version_id").sort(false, false)])
        .build()?
        .alias("__medlake_rank");
    history
        .window(vec![newest_first])?
        .filter(col("__medlake_rank").eq(lit(1u64)).and(not(col("deleted"))))?
        .project(CURRENT_COLUMNS.iter().map(|c| col(*c)).collect::<Vec<_>>())?
        .build()
}

/// The current versions by ranking every version of each id: the newest `version_id`
/// per `id`, without delete markers. Used when the index cannot say which rows are
/// current ([`CurrentTable`]), and as the reference the tests compare with.
pub fn current_by_window(lake: Lake, resource_type: &str) -> Result<ViewTable> {
    let history = Arc::new(ResourceHistoryTable::new(lake, resource_type));
    let table_ref = format!("fhir_history.{}", resource_type.to_ascii_lowercase());
    let plan = newest_versions(LogicalPlanBuilder::scan(
        table_ref,
        provider_as_source(history),
        None,
    )?)?;
    Ok(ViewTable::new(plan, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_skips_exactly_the_hidden_rows() {
        let skip: RoaringBitmap = [0u32, 3, 4, 9].into_iter().collect();
        let s = selection(10, &skip);
        let kept: Vec<usize> = {
            let mut out = Vec::new();
            let mut at = 0;
            for sel in s.iter() {
                if !sel.skip {
                    out.extend(at..at + sel.row_count);
                }
                at += sel.row_count;
            }
            assert_eq!(at, 10, "the selection covers the row group");
            out
        };
        assert_eq!(kept, vec![1, 2, 5, 6, 7, 8]);
    }

    #[test]
    fn a_row_group_of_hidden_rows_only_is_skipped_and_a_file_of_them_dropped() {
        let all: RoaringBitmap = (0u32..5).collect();
        assert!(access_plan(&[5], &[Some(all.clone())]).is_none());
        let plan = access_plan(&[5, 3], &[Some(all), None]).expect("the second group reads");
        assert!(!plan.should_scan(0));
        assert!(plan.should_scan(1));
    }
}
