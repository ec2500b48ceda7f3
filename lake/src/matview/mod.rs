//! Materialized views: SQL-on-FHIR ViewDefinitions kept as Delta tables, `views.<name>`,
//! by the same flush and bulk commits that store the resources.
//!
//! # What a view's table holds
//!
//! A view's table lives at `<workspace>/views/<name>/`. It holds the view's columns, typed
//! by what the view declares ([`crate::view_batch::fixed_schema`]: one schema whatever the
//! values), and three bookkeeping columns:
//!
//! - `_resource_id`, `_version_id`: the resource version the row came from;
//! - `_empty`: true on the one row that stands for a version that gives no rows (a
//!   delete marker, a resource the view's `where` leaves out, or one the view could not
//!   be evaluated on, which is logged). Its view columns are null.
//!
//! Rows are only ever added. A new version of a resource adds its rows (or its `_empty`
//! row) and leaves the older version's rows where they are; what SQL shows as
//! `views.<name>` (the query crate's `views` schema) is, per `_resource_id`, the rows of
//! the newest `_version_id` the table holds, without `_empty` rows. So an update replaces
//! the resource's rows and a delete removes them, as of the commit that stored them,
//! without rewriting a data file. A table never shows half of a resource's rows, since a
//! version's rows are committed together.
//!
//! # When views are maintained
//!
//! Every Delta commit of resources by this process, a flush ([`crate::Lake::flush`]) or
//! a bulk commit ([`crate::bulk`]), is followed, under the same flush lock, by one
//! commit to each view of that type with the rows of exactly the versions committed.
//! So a view is at most one flush behind the resource table, and is never rebuilt from
//! scratch by maintenance. A view commit records, as its Delta transaction (`txn`, app
//! id [`VIEW_SOURCE_APP_ID`]), the Delta version of the resource table it has seen.
//! Recovery compares it with the resource table's version: for a view behind (a crash
//! between the two commits, or commits another process made), the commits it missed
//! are read from the resource table's log (the files they added with `dataChange`; a
//! compaction's rewrites carry none) and their rows evaluated and committed, so the view
//! is exactly consistent with the resource table again. The WAL sequence that the
//! resource tables record would not do: bulk commits have none. When the log of a
//! missed commit is gone (log cleanup) or the gap cannot be read file by file, the view
//! is rebuilt from the resource table instead.
//!
//! A full build (a new view, `medlake views refresh`, or the fallback above) reads the
//! resource table once and evaluates the newest version each resource has in it,
//! committing as a Delta overwrite. A build too large for one commit is written in
//! several, the first an overwrite; all but the last record `txn` -1, so a crash midway
//! leaves a view that the next open rebuilds, never one that looks complete.
//!
//! Only a process that owns the workspace (opened with the WAL: the server, `medlake
//! ingest`, the `medlake views` commands) writes views; `medlake sql` reads them.
//!
//! # Evaluation
//!
//! Resources are independent, so a batch of the resource table is cut into one slice per
//! core and the slices are evaluated at once ([`MaterializedView::evaluate_batch`] on
//! each). Each stored resource goes through
//! [`medlake_ingest::view::ViewDefinition::evaluate_text`]: a view made only of plain
//! paths (every built-in view) reads the keys it needs from the resource's JSON text and
//! skips the rest; any other view parses the resource and runs the FHIRPath interpreter.
//!
//! # Definitions
//!
//! The built-in views ([`builtin`]) are ViewDefinition JSON files shipped in
//! `lake/views/`, present in every lake. Views a user creates are kept as their JSON in
//! `<workspace>/views/_definitions/<name>.json` ([`store`]), so every process that opens
//! the lake maintains the same views. The table of a view is named by the view's `name`
//! in lower case (`views.<name>`).
//!
//! A user creates a view in one of two ways. `medlake views create` (while no server
//! holds the workspace) makes a view that only `medlake views drop` removes. A
//! ViewDefinition resource stored through the FHIR API (or loaded in bulk) with a
//! `meta.tag` whose code is [`MATERIALIZE_TAG`] makes a view that follows the resource:
//! the flush that commits a version of it creates, rebuilds or drops the view, so a
//! server makes views without a restart, and the resource table stays the one record of
//! which views exist. Such a view remembers its resource's id ([`MaterializedView::source_id`]).
//!
//! # Why hand-written
//!
//! Delta Lake has no materialized views of its own (Databricks' are a service over
//! Delta, not part of the protocol or of delta-rs), and incremental view maintenance
//! engines (Materialize, Feldera, DataFusion's proposals) maintain SQL, not SQL-on-FHIR's
//! FHIRPath trees. A SQL-on-FHIR view is evaluated one resource at a time, which makes
//! maintaining it per committed version simple enough to do here, in the lake's own
//! commit path.

pub mod builtin;
pub mod store;

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use medlake_ingest::view::ViewDefinition;
use serde_json::Value;

use crate::error::{LakeError, Result};
use crate::file_scan::KeyColumns;
use crate::kind::TableKind;
use crate::view_batch::{FixedBatchBuilder, fixed_schema};

/// The Delta `txn` application id under which a view's commits record the Delta version
/// of the resource table they have seen.
pub const VIEW_SOURCE_APP_ID: &str = "medlake-view-source";

/// The SQL schema, and folder under the workspace, of the views.
pub const VIEWS_NAMESPACE: &str = "views";

/// The bookkeeping columns, after the view's own.
pub const RESOURCE_ID_COLUMN: &str = "_resource_id";
pub const VERSION_ID_COLUMN: &str = "_version_id";
pub const EMPTY_COLUMN: &str = "_empty";

/// The `_version_id` the lake gives a resource's first version; later ones count up.
pub const FIRST_VERSION: i64 = 1;

/// The `meta.tag` code with which a stored ViewDefinition asks to be a materialized
/// view (any code system).
pub const MATERIALIZE_TAG: &str = "medlake";

/// Whether a ViewDefinition resource carries the [`MATERIALIZE_TAG`].
pub fn asks_to_materialize(resource: &Value) -> bool {
    resource
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .is_some_and(|tags| {
            tags.iter()
                .any(|t| t.get("code").and_then(Value::as_str) == Some(MATERIALIZE_TAG))
        })
}

/// A ViewDefinition without the [`MATERIALIZE_TAG`]: what `medlake views create` keeps,
/// so that a view made from the command line never follows a stored resource.
pub fn without_materialize_tag(mut json: Value) -> Value {
    if let Some(tags) = json.pointer_mut("/meta/tag").and_then(Value::as_array_mut) {
        tags.retain(|t| t.get("code").and_then(Value::as_str) != Some(MATERIALIZE_TAG));
    }
    json
}

/// One materialized view: its definition and its table's layout.
#[derive(Debug)]
pub struct MaterializedView {
    /// The table name: the view's `name`, lower case.
    name: String,
    definition: ViewDefinition,
    /// The ViewDefinition as it was given.
    json: Value,
    builtin: bool,
    schema: SchemaRef,
}

impl MaterializedView {
    /// Check a ViewDefinition for use as a materialized view.
    pub fn from_json(json: Value, builtin: bool) -> Result<MaterializedView> {
        let named = json
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(no name)")
            .to_string();
        let bad = |reason: String| LakeError::View {
            view: named.clone(),
            reason,
        };
        let definition = ViewDefinition::from_json(&json).map_err(|e| bad(e.to_string()))?;
        let Some(name) = definition.name() else {
            return Err(bad(
                "a materialized view needs a `name`: its table is views.<name>".into(),
            ));
        };
        let name = name.to_ascii_lowercase();
        if name.starts_with('_') {
            return Err(bad("a view's name cannot start with '_'".into()));
        }
        let mut fields: Vec<Field> = fixed_schema(&definition)
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut seen = std::collections::HashSet::new();
        for f in &fields {
            if !seen.insert(f.name().to_ascii_lowercase()) {
                return Err(bad(format!(
                    "two columns are named {:?} apart from case; SQL cannot tell them apart",
                    f.name()
                )));
            }
        }
        fields.push(Field::new(RESOURCE_ID_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(VERSION_ID_COLUMN, DataType::Int64, false));
        fields.push(Field::new(EMPTY_COLUMN, DataType::Boolean, false));
        let view = MaterializedView {
            name,
            definition,
            json,
            builtin,
            schema: Arc::new(Schema::new(fields)),
        };
        crate::kind::check_layout(&view)?;
        Ok(view)
    }

    /// The table name (`views.<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn resource_type(&self) -> &str {
        self.definition.resource_type()
    }

    pub fn definition(&self) -> &ViewDefinition {
        &self.definition
    }

    /// The ViewDefinition as it was given.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Whether medlake ships this view ([`builtin`]).
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// The id of the ViewDefinition resource this view follows, for a view made by
    /// storing one with the [`MATERIALIZE_TAG`]; `None` for built-in views and those of
    /// `medlake views create`.
    pub fn source_id(&self) -> Option<&str> {
        if self.builtin || !asks_to_materialize(&self.json) {
            return None;
        }
        self.json.get("id").and_then(Value::as_str)
    }

    /// Whether `json` defines this view: the same ViewDefinition apart from its `meta`
    /// (which every stored version changes).
    pub fn same_definition(&self, json: &Value) -> bool {
        let strip = |v: &Value| match v {
            Value::Object(m) => {
                let mut m = m.clone();
                m.remove("meta");
                Value::Object(m)
            }
            other => other.clone(),
        };
        strip(&self.json) == strip(json)
    }

    /// The view's own columns, as SQL shows them: [`TableKind::schema`] without the
    /// bookkeeping columns.
    pub fn columns(&self) -> SchemaRef {
        let n = self.schema.fields().len() - 3;
        Arc::new(
            self.schema
                .project(&(0..n).collect::<Vec<_>>())
                .expect("the view's columns come first"),
        )
    }

    /// The rows of every version in `batch` (rows of a resource table: `id`,
    /// `version_id`, `deleted`, `resource`) that `keep` picks (all without it), with their bookkeeping
    /// columns. A version that gives no rows gives its `_empty` row; one the view fails
    /// on (a FHIRPath error, a value that does not fit its column's type) is logged and
    /// counts as giving none, so one bad resource never holds up the flush of the others.
    pub fn evaluate_batch(
        &self,
        batch: &RecordBatch,
        keep: Option<&[bool]>,
    ) -> Result<RecordBatch> {
        let columns = KeyColumns::new(batch)?;
        let mut rows = FixedBatchBuilder::new(&self.definition, batch.num_rows());
        let mut ids = StringBuilder::new();
        let mut versions = Int64Builder::new();
        let mut empty = BooleanBuilder::new();
        for i in 0..batch.num_rows() {
            if keep.is_some_and(|k| !k[i]) {
                continue;
            }
            let row = columns.row(i)?;
            let before = rows.len();
            if !row.deleted {
                let appended = self
                    .definition
                    .evaluate_text(row.resource.unwrap_or(""))
                    .map_err(|e| e.to_string())
                    .and_then(|produced| rows.append_rows(&produced).map_err(|e| e.to_string()));
                if let Err(reason) = appended {
                    tracing::warn!(
                        "view {}: {}/{} version {} gives no rows: {reason}",
                        self.name,
                        self.resource_type(),
                        row.id,
                        row.version_id
                    );
                }
            }
            let produced = rows.len() - before;
            if produced == 0 {
                rows.append_null_row();
                ids.append_value(row.id);
                versions.append_value(row.version_id);
                empty.append_value(true);
            } else {
                for _ in 0..produced {
                    ids.append_value(row.id);
                    versions.append_value(row.version_id);
                    empty.append_value(false);
                }
            }
        }
        let view_rows = rows.finish().map_err(|e| LakeError::View {
            view: self.name.clone(),
            reason: e.to_string(),
        })?;
        let mut arrays: Vec<ArrayRef> = view_rows.columns().to_vec();
        arrays.push(Arc::new(ids.finish()));
        arrays.push(Arc::new(versions.finish()));
        arrays.push(Arc::new(empty.finish()));
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

impl TableKind for MaterializedView {
    fn namespace(&self) -> &str {
        VIEWS_NAMESPACE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn key_columns(&self) -> &[&str] {
        &[RESOURCE_ID_COLUMN, VERSION_ID_COLUMN]
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, BooleanArray};
    use serde_json::json;

    use super::*;
    use crate::record::{ResourceVersion, versions_to_batch};

    fn version(id: &str, v: i64, resource: Option<Value>) -> ResourceVersion {
        ResourceVersion {
            resource_type: "Patient".into(),
            id: id.into(),
            version_id: v,
            last_updated: 0,
            deleted: resource.is_none(),
            resource: resource.map_or_else(|| Arc::from(""), |r| Arc::from(r.to_string())),
            wal_seq: Some(v),
            search: Arc::from(""),
        }
    }

    #[test]
    fn every_version_gives_its_rows_or_one_empty_row() {
        let view = MaterializedView::from_json(
            json!({
                "resourceType": "ViewDefinition", "name": "Names", "resource": "Patient",
                "select": [
                    {"column": [{"name": "id", "path": "getResourceKey()"}]},
                    {"forEach": "name", "column": [{"name": "family", "path": "family", "type": "string"}]}
                ]
            }),
            false,
        )
        .unwrap();
        assert_eq!(view.name(), "names");
        let rows = [
            version(
                "a",
                1,
                Some(
                    json!({"resourceType": "Patient", "id": "a", "name": [{"family": "X"}, {"family": "Y"}]}),
                ),
            ),
            version("b", 1, Some(json!({"resourceType": "Patient", "id": "b"}))),
            version("a", 2, None),
        ];
        let batch = versions_to_batch(rows.iter()).unwrap();
        let out = view.evaluate_batch(&batch, None).unwrap();
        assert_eq!(out.num_rows(), 4);
        let family = out.column_by_name("family").unwrap().as_string::<i32>();
        assert_eq!(family.value(0), "X");
        assert_eq!(family.value(1), "Y");
        let empty = out.column_by_name(EMPTY_COLUMN).unwrap().as_boolean();
        assert_eq!(empty, &BooleanArray::from(vec![false, false, true, true]));
        let kept = view
            .evaluate_batch(&batch, Some(&[false, true, false]))
            .unwrap();
        assert_eq!(kept.num_rows(), 1);
    }

    #[test]
    fn a_view_without_a_name_is_refused() {
        let err = MaterializedView::from_json(
            json!({"resourceType": "ViewDefinition", "resource": "Patient",
                   "select": [{"column": [{"name": "id", "path": "id"}]}]}),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("needs a `name`"), "{err}");
    }
}
