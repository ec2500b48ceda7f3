//! Time travel: the current versions of a type as they were at an earlier moment.
//!
//! ```sql
//! -- as of a time: what the server had recorded by then (meta.lastUpdated)
//! SELECT count(*) FROM fhir_as_of('observation', TIMESTAMP '2024-01-01T00:00:00Z');
//! SELECT * FROM fhir_as_of('patient', '2024-06-30T12:00:00Z');
//! -- as of a Delta version of the type's table (its commit log)
//! SELECT * FROM fhir_as_of('patient', 3);
//! ```
//!
//! As of a time, a resource's version is the newest one whose `last_updated` is at or
//! before it, and a resource deleted by then is absent. This is the server's record
//! time, not a clinical date: it is what makes point-in-time features honest, since a
//! fact recorded later never shows. Versions written since, also those still in the
//! in-memory tail, are left out.
//!
//! As of a Delta version, the answer is the table's own snapshot at that commit (the
//! flushes and bulk commits of the table's log, which `DESCRIBE HISTORY` in Spark lists);
//! the tail is not in any commit. Versions removed by vacuum are an error that names
//! them.
//!
//! Both rank versions with a window: an earlier state is not what the id index keeps
//! (see [`crate::current`]), and time travel is rare enough to pay for a sort.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{DFSchema, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::provider_as_source;
use datafusion::datasource::view::ViewTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlanBuilder, TableProviderFilterPushDown, col, lit,
};
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::resource_type_for;
use crate::current::newest_versions;
use crate::provider::{
    LakeHandle, ResourceHistoryTable, external, query_resource_schema, scan_delta_and_tail,
};

/// The SQL name of the table function.
pub const FHIR_AS_OF: &str = "fhir_as_of";

/// `fhir_as_of(type, time | delta_version)`.
#[derive(Debug)]
pub struct FhirAsOf {
    lake: LakeHandle,
}

impl FhirAsOf {
    pub fn new(lake: medlake_lake::Lake) -> Self {
        FhirAsOf {
            lake: LakeHandle(lake),
        }
    }
}

/// When to look: a time in microseconds since the epoch, or a Delta version.
pub(crate) enum AsOf {
    Micros(i64),
    DeltaVersion(i64),
}

impl TableFunctionImpl for FhirAsOf {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let [table, when] = args else {
            return plan_err!(
                "{FHIR_AS_OF} takes two arguments: a resource type and a time or Delta version, \
                 e.g. {FHIR_AS_OF}('observation', TIMESTAMP '2024-01-01T00:00:00Z')"
            );
        };
        let name = match constant(table)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => s,
            other => {
                return plan_err!(
                    "the first argument of {FHIR_AS_OF} is a resource type as text, like 'observation'; got {other}"
                );
            }
        };
        let Some(resource_type) = resource_type_for(&name) else {
            return plan_err!("{name} is not an R4 resource type");
        };
        let as_of = as_of(constant(when)?, FHIR_AS_OF)?;
        let history: Arc<dyn TableProvider> = match as_of {
            AsOf::Micros(_) => Arc::new(ResourceHistoryTable::new(
                self.lake.0.clone(),
                resource_type,
            )),
            AsOf::DeltaVersion(v) => Arc::new(HistoryAtVersion {
                lake: self.lake.clone(),
                resource_type: resource_type.to_string(),
                version: v,
            }),
        };
        let table_ref = format!("fhir_history.{}", resource_type.to_ascii_lowercase());
        let mut plan = LogicalPlanBuilder::scan(table_ref, provider_as_source(history), None)?;
        if let AsOf::Micros(micros) = as_of {
            plan = plan.filter(col("last_updated").lt_eq(lit(
                ScalarValue::TimestampMicrosecond(Some(micros), Some("UTC".into())),
            )))?;
        }
        let plan = newest_versions(plan)?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// An argument's value: literals, and constant expressions such as `TIMESTAMP '...'` or
/// `now() - INTERVAL '30 days'`, evaluated once.
pub(crate) fn constant(expr: &Expr) -> Result<ScalarValue> {
    if let Expr::Literal(v, _) = expr {
        return Ok(v.clone());
    }
    let schema = DFSchema::empty();
    let physical = create_physical_expr(
        expr,
        &schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?;
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        vec![],
        &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match physical.evaluate(&one_row)? {
        ColumnarValue::Scalar(v) => Ok(v),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

/// The second argument of a time-travel function `function`.
pub(crate) fn as_of(value: ScalarValue, function: &str) -> Result<AsOf> {
    let micros = |v: &ScalarValue| -> Result<i64> {
        match v.cast_to(&DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("UTC".into()),
        ))? {
            ScalarValue::TimestampMicrosecond(Some(m), _) => Ok(m),
            _ => plan_err!("{v} is not a time"),
        }
    };
    match &value {
        ScalarValue::Int8(Some(_))
        | ScalarValue::Int16(Some(_))
        | ScalarValue::Int32(Some(_))
        | ScalarValue::Int64(Some(_))
        | ScalarValue::UInt8(Some(_))
        | ScalarValue::UInt16(Some(_))
        | ScalarValue::UInt32(Some(_))
        | ScalarValue::UInt64(Some(_)) => match value.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(v)) if v >= 0 => Ok(AsOf::DeltaVersion(v)),
            _ => plan_err!("a Delta version is a number from 0"),
        },
        ScalarValue::TimestampSecond(Some(_), _)
        | ScalarValue::TimestampMillisecond(Some(_), _)
        | ScalarValue::TimestampMicrosecond(Some(_), _)
        | ScalarValue::TimestampNanosecond(Some(_), _)
        | ScalarValue::Date32(Some(_))
        | ScalarValue::Date64(Some(_)) => Ok(AsOf::Micros(micros(&value)?)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            micros(&value).map(AsOf::Micros).map_err(|_| {
                DataFusionError::Plan(format!(
                    "'{s}' is not a time: write it as '2024-01-01T00:00:00Z' (or give a Delta version as a number)"
                ))
            })
        }
        other => plan_err!(
            "the second argument of {function} is a time (TIMESTAMP '2024-01-01T00:00:00Z') or a Delta version (a number); got {other}"
        ),
    }
}

/// Every version of a type in one Delta version of its table.
#[derive(Debug)]
struct HistoryAtVersion {
    lake: LakeHandle,
    resource_type: String,
    version: i64,
}

#[async_trait]
impl TableProvider for HistoryAtVersion {
    fn schema(&self) -> SchemaRef {
        query_resource_schema()
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
        let table = self
            .lake
            .0
            .table_at_version(&self.resource_type, self.version)
            .await
            .map_err(external)?;
        scan_delta_and_tail(
            state,
            table.as_ref(),
            &[],
            &query_resource_schema(),
            projection,
            filters,
            limit,
        )
        .await
    }
}
