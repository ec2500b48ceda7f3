//! `views.<name>`: the materialized SQL-on-FHIR views ([`medlake_lake::matview`]), with
//! the current rows only.
//!
//! A view's Delta table keeps the rows of every resource version it was given, with the
//! version in its bookkeeping columns, and stands for a version that gives no rows (a
//! delete, a resource its `where` leaves out) by one `_empty` row. What SQL sees is,
//! per `_resource_id`, the rows of the newest `_version_id` in the table, without the
//! `_empty` rows and without the bookkeeping columns.
//!
//! # Cost: one scan, and a look at the resources that changed
//!
//! Only a resource with more than one version in the table can have rows a newer
//! version replaced, and such a resource has a row past its first version: the lake
//! numbers a resource's versions 1, 2, 3, ... So the plan is the view's rows, less those
//! whose resource has a newer version among the rows with `_version_id > 1`: an anti
//! join whose build side is the newest version of just those resources. The filter
//! `_version_id > 1` reaches the Delta scan, which skips every file whose statistics
//! (the `maxValues` of its `add` in the Delta log) say it holds first versions only.
//! Each file holding an update or a delete costs a read of two of its columns and one
//! hash entry per resource it updated.
//!
//! A view of a lake loaded once, or just built or refreshed from resources that were
//! never updated, needs no join at all. The same statistics say so before planning
//! ([`ViewTableStats`]): when no file holds a version past the first, the plan is a
//! scan of the table (less its `_empty` rows, if a file may hold one), and it reads
//! only the columns the query asks for. The choice is made each time the query runs,
//! not when it is planned (a prepared statement runs many times), and the plan reads
//! the very snapshot whose statistics were looked at, so a flush committing an update
//! meanwhile cannot slip past it; the next run sees the update and plans the join.
//!
//! Files that mix first and later versions (what a compaction or a `views refresh`
//! writes once some resources were updated) are read by the build side whole, for their
//! two bookkeeping columns, less the row groups whose statistics rule out a later
//! version; only their rows past the first version enter the hash table. `views
//! refresh` rewrites a view with only the current versions, which drops the rows that
//! updates left behind.
//!
//! # Why not the id index
//!
//! Asking the lake's id index whether each row's version is current would hide a
//! resource from the moment a newer version is acknowledged until the flush that gives
//! the view its rows. The table's own newest version keeps every view consistent as of
//! its last commit (at most one flush behind the resources), in every process that
//! reads it, `medlake sql` and other engines included: the plan is plain SQL over the
//! table (see the README for the query another engine runs).
//!
//! # Time travel
//!
//! `views_as_of(name, time | delta_version)` ([`VIEWS_AS_OF`]) is the same plan over an
//! earlier state of the view's table: a Delta version of it, or its newest commit at or
//! before a time. That is the view as it stood then, which is what Spark's or DuckDB's
//! `TIMESTAMP AS OF` on the same table answer. It is the state of the view's commits,
//! which follow the resources' by at most one flush: for the resources as the server
//! had recorded them at an instant (`meta.lastUpdated`), use `fhir_as_of`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableFunctionImpl;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{Column, JoinType};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::error::Result;
use datafusion::functions_aggregate::expr_fn::max;
use datafusion::logical_expr::{
    Expr, LogicalPlanBuilder, TableProviderFilterPushDown, col, ident, lit, not,
};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use medlake_lake::matview::{
    EMPTY_COLUMN, FIRST_VERSION, MaterializedView, RESOURCE_ID_COLUMN, VERSION_ID_COLUMN,
};
use medlake_lake::{Lake, TableKind, ViewAsOf, ViewTableStats};

use crate::provider::{LakeHandle, external, scan_delta_and_tail, sql_schema};
use crate::time_travel::{AsOf, as_of, constant};

/// The SQL name of the views' time-travel table function.
pub const VIEWS_AS_OF: &str = "views_as_of";

/// A view's table as stored, bookkeeping columns included: as it is now, or as it was.
#[derive(Debug)]
struct StoredView {
    lake: LakeHandle,
    name: String,
    schema: SchemaRef,
    state: StoredState,
}

/// Which state of the view's table a [`StoredView`] reads.
#[derive(Debug)]
enum StoredState {
    /// The snapshot the plan was made for ([`CurrentViewRows::scan`]). Every scan of
    /// the plan reads it, so the statistics that shaped the plan ([`ViewTableStats`])
    /// hold for what is read, and the plan's two scans of the table agree even if a
    /// flush commits between them.
    Pinned(Option<DeltaTable>),
    /// An earlier state, loaded when scanned.
    AsOf(ViewAsOf),
}

#[async_trait]
impl TableProvider for StoredView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let delta = match &self.state {
            StoredState::Pinned(delta) => delta.clone(),
            StoredState::AsOf(as_of) => self
                .lake
                .0
                .view_table_as_of(&self.name, *as_of)
                .await
                .map_err(external)?,
        };
        scan_delta_and_tail(
            state,
            delta.as_ref(),
            &[],
            &self.schema,
            projection,
            filters,
            limit,
        )
        .await
    }
}

/// `views.<name>`: the current rows of a view, planned anew over its table's snapshot of
/// the moment each time the query runs (see [`CurrentViewRows`]).
pub fn current_view(lake: Lake, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
    let Some(snapshot) = lake.view_snapshot(name) else {
        return Ok(None);
    };
    let view = snapshot.view;
    // Both plans give the view's own columns; the shape of the schema is that of either.
    let schema = first_version_rows(
        &view,
        stored_view(&lake, &view, StoredState::Pinned(None)),
        false,
    )?
    .schema();
    Ok(Some(Arc::new(CurrentViewRows {
        lake: LakeHandle(lake),
        view,
        schema,
    })))
}

fn stored_view(lake: &Lake, view: &MaterializedView, state: StoredState) -> Arc<StoredView> {
    Arc::new(StoredView {
        lake: LakeHandle(lake.clone()),
        name: view.name().to_string(),
        schema: sql_schema(&view.schema()),
        state,
    })
}

/// The current rows of a view, whose plan is chosen when the query is executed, not when
/// it is planned: a statement prepared once (Postgres wire, Flight SQL) and run for
/// hours must see each run's snapshot, and whether that snapshot needs the anti join
/// ([`ViewTableStats`]) can change with every flush. So [`TableProvider::scan`] takes
/// the snapshot of the moment, reads its statistics, and plans the right one of the two
/// plans over it, with the query's projection, filters and limit on top.
#[derive(Debug)]
struct CurrentViewRows {
    lake: LakeHandle,
    view: Arc<MaterializedView>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for CurrentViewRows {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Applied again inside the plan of `scan`, where they reach the Delta scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let delta = self
            .lake
            .0
            .view_snapshot(self.view.name())
            .and_then(|s| s.delta);
        let stats = delta.as_ref().map_or(NOTHING_STORED, ViewTableStats::of);
        let stored = stored_view(&self.lake.0, &self.view, StoredState::Pinned(delta));
        let rows = if stats.later_versions {
            current_rows(&self.view, stored)?
        } else {
            first_version_rows(&self.view, stored, stats.empty_rows)?
        };
        let name = format!("views.{}", self.view.name());
        let mut plan = LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(rows)), None)?;
        if let Some(filter) = datafusion::logical_expr::utils::conjunction(filters.to_vec()) {
            plan = plan.filter(filter)?;
        }
        if let Some(projection) = projection {
            let fields = self.schema.fields();
            plan = plan.project(projection.iter().map(|&i| ident(fields[i].name())))?;
        }
        if limit.is_some() {
            plan = plan.limit(0, limit)?;
        }
        state.create_physical_plan(&plan.build()?).await
    }
}

/// The current rows of a view as they were in an earlier state of its table.
fn view_rows_as_of(lake: Lake, name: &str, as_of: ViewAsOf) -> Result<Option<ViewTable>> {
    let Some(snapshot) = lake.view_snapshot(name) else {
        return Ok(None);
    };
    let view = snapshot.view;
    current_rows(&view, stored_view(&lake, &view, StoredState::AsOf(as_of))).map(Some)
}

/// The statistics of a view with no table yet: it holds nothing.
const NOTHING_STORED: ViewTableStats = ViewTableStats {
    later_versions: false,
    empty_rows: false,
};

/// The rows of a view whose table holds first versions only ([`ViewTableStats`]): no
/// row can have been replaced, so the plan is a scan, less the `_empty` rows if there
/// may be any. This spares the anti join its probe, which reads every row's
/// `_resource_id`; most views of a lake loaded once, or just refreshed, are like this.
fn first_version_rows(
    view: &MaterializedView,
    stored: Arc<dyn TableProvider>,
    empty_rows: bool,
) -> Result<ViewTable> {
    let table = format!("views.{}", view.name());
    let mut rows = LogicalPlanBuilder::scan(table.as_str(), provider_as_source(stored), None)?;
    if empty_rows {
        rows = rows.filter(not(col(EMPTY_COLUMN)))?;
    }
    let plan = rows.project(view_columns(view))?.build()?;
    Ok(ViewTable::new(plan, None))
}

/// The view's own columns, without the bookkeeping ones.
fn view_columns(view: &MaterializedView) -> Vec<Expr> {
    view.columns()
        .fields()
        .iter()
        .map(|f| ident(f.name()))
        .collect()
}

/// The current rows of `view` over `stored`, any provider of its table as stored
/// (bookkeeping columns included): the lake's own scan here, a plain Parquet listing
/// where another engine runs the plan (`medlake sql --engine ballista://...`).
pub fn current_rows(view: &MaterializedView, stored: Arc<dyn TableProvider>) -> Result<ViewTable> {
    let table = format!("views.{}", view.name());
    // The newest version of the resources that have more than one: only they can have
    // rows a newer version replaced, and each has a row past the first version (the lake
    // numbers a resource's versions 1, 2, ...). The filter goes to the Delta scan, which
    // skips every file whose statistics say it holds first versions only.
    let newest = LogicalPlanBuilder::scan(
        format!("{table}__newest"),
        provider_as_source(stored.clone()),
        None,
    )?
    .filter(col(VERSION_ID_COLUMN).gt(lit(FIRST_VERSION)))?
    .aggregate(
        vec![col(RESOURCE_ID_COLUMN)],
        vec![max(col(VERSION_ID_COLUMN)).alias(NEWEST)],
    )?
    .project(vec![col(RESOURCE_ID_COLUMN).alias(NEWEST_RID), col(NEWEST)])?
    .build()?;
    let rows = LogicalPlanBuilder::scan(table.as_str(), provider_as_source(stored), None)?
        .filter(not(col(EMPTY_COLUMN)))?
        .build()?;
    // The few newest versions are the join's build side, the view's rows stream past
    // them: a row stays unless its resource has a newer version. With nothing to build
    // (a view of first versions), the join passes every row through.
    let plan = LogicalPlanBuilder::from(newest)
        .join(
            rows,
            JoinType::RightAnti,
            (vec![NEWEST_RID], vec![RESOURCE_ID_COLUMN]),
            Some(
                Expr::Column(Column::new(Some(table.as_str()), VERSION_ID_COLUMN)).lt(col(NEWEST)),
            ),
        )?
        .project(view_columns(view))?
        .build()?;
    Ok(ViewTable::new(plan, None))
}

/// The newest-version side's columns, named apart from the view's own.
const NEWEST_RID: &str = "__medlake_rid";
const NEWEST: &str = "__medlake_newest";

/// The `views` schema.
#[derive(Debug)]
pub struct ViewsSchema {
    lake: LakeHandle,
}

impl ViewsSchema {
    pub fn new(lake: Lake) -> Self {
        ViewsSchema {
            lake: LakeHandle(lake),
        }
    }
}

#[async_trait]
impl SchemaProvider for ViewsSchema {
    fn table_names(&self) -> Vec<String> {
        self.lake
            .0
            .views()
            .iter()
            .map(|v| v.name().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        current_view(self.lake.0.clone(), name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.lake.0.view_snapshot(name).is_some()
    }
}

/// `views_as_of(name, time | delta_version)`: see the module doc.
#[derive(Debug)]
pub struct ViewsAsOf {
    lake: LakeHandle,
}

impl ViewsAsOf {
    pub fn new(lake: Lake) -> Self {
        ViewsAsOf {
            lake: LakeHandle(lake),
        }
    }
}

impl TableFunctionImpl for ViewsAsOf {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let [name, when] = args else {
            return plan_err!(
                "{VIEWS_AS_OF} takes two arguments: a view's name and a time or Delta version, \
                 e.g. {VIEWS_AS_OF}('observation', TIMESTAMP '2024-01-01T00:00:00Z')"
            );
        };
        let name = match constant(name)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => s,
            other => {
                return plan_err!(
                    "the first argument of {VIEWS_AS_OF} is a view's name as text, like 'observation'; got {other}"
                );
            }
        };
        let name = name.strip_prefix("views.").unwrap_or(&name).to_string();
        let as_of = match as_of(constant(when)?, VIEWS_AS_OF)? {
            AsOf::DeltaVersion(v) => ViewAsOf::DeltaVersion(v as u64),
            AsOf::Micros(m) => match chrono::DateTime::from_timestamp_micros(m) {
                Some(t) => ViewAsOf::Time(t),
                None => return plan_err!("{m} µs is not a time {VIEWS_AS_OF} can read"),
            },
        };
        match view_rows_as_of(self.lake.0.clone(), &name, as_of)? {
            Some(v) => Ok(Arc::new(v)),
            None => plan_err!(
                "there is no view views.{name}; `SELECT table_name FROM information_schema.tables WHERE table_schema = 'views'` lists them"
            ),
        }
    }
}
