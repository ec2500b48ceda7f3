//! Evaluating a view on one resource: the specification's `Process(S, N)`.

use serde_json::Value;

use super::{Compiled, Iteration, Selection, ViewDefinition, ViewError};
use crate::fhirpath::{Environment, Item, NodeType};

/// More elements than this from one `repeat` is an error: a path that returns its own
/// input (`$this`) would otherwise never end.
const MAX_REPEAT_ITEMS: usize = 1_000_000;

/// A row of one select: its run of the output columns.
pub(super) type Row = Vec<Value>;

struct Run<'a, 'v> {
    view: &'v ViewDefinition,
    resource: &'a Value,
    env: Environment<'a>,
}

pub(super) fn evaluate(view: &ViewDefinition, resource: &Value) -> Result<Vec<Row>, ViewError> {
    if resource.get("resourceType").and_then(Value::as_str) != Some(view.resource_type.as_str()) {
        return Ok(Vec::new());
    }
    let mut env = Environment::new()
        .with_resource(resource)
        .with_functions(view.functions.clone());
    for (name, value) in &view.constants {
        env.set_var(name, vec![value.clone()]);
    }
    let mut run = Run {
        view,
        resource,
        env,
    };
    let root = root_item(resource);
    for filter in &view.filters {
        let result = run.eval(filter, &root, 0)?;
        let keep = match result.as_slice() {
            [] => false,
            [one] => match one.to_system() {
                Item::Boolean(b) => b,
                other => {
                    return Err(run.error(
                        filter,
                        format!(
                            "a where path must give a Boolean, it gave {}",
                            describe(&other)
                        ),
                    ));
                }
            },
            many => {
                return Err(run.error(
                    filter,
                    format!(
                        "a where path must give one Boolean, it gave {} values",
                        many.len()
                    ),
                ));
            }
        };
        if !keep {
            return Ok(Vec::new());
        }
    }
    run.process(&view.root, &root, 0)
}

fn root_item(resource: &Value) -> Item<'_> {
    Item::Node(crate::fhirpath::Node {
        value: Some(resource),
        companion: None,
        ty: NodeType::Resource,
    })
}

impl<'a> Run<'a, '_> {
    fn eval(
        &mut self,
        c: &Compiled,
        focus: &Item<'a>,
        row_index: i64,
    ) -> Result<Vec<Item<'a>>, ViewError> {
        self.env.set_var("rowIndex", vec![Item::Integer(row_index)]);
        c.expr
            .evaluate_on(focus, &self.env)
            .map_err(|e| self.error(c, e.message))
    }

    fn error(&self, c: &Compiled, message: impl Into<String>) -> ViewError {
        let ty = self.view.resource_type.as_str();
        ViewError::Evaluation {
            at: c.at.clone(),
            expression: c.expr.text().to_string(),
            resource: match self.resource.get("id").and_then(Value::as_str) {
                Some(id) => format!("{ty}/{id}"),
                None => ty.to_string(),
            },
            message: message.into(),
        }
    }

    /// The rows of `s` on `node`, where `row_index` is `%rowIndex` of the enclosing
    /// iteration.
    fn process(
        &mut self,
        s: &Selection,
        node: &Item<'a>,
        row_index: i64,
    ) -> Result<Vec<Row>, ViewError> {
        let foci: Vec<(Item<'a>, i64)> = match &s.iteration {
            Iteration::Parent => vec![(node.clone(), row_index)],
            Iteration::ForEach(e) | Iteration::ForEachOrNull(e) => self
                .eval(e, node, row_index)?
                .into_iter()
                .zip(0..)
                .collect(),
            Iteration::Repeat(paths) => self
                .repeat(paths, node, row_index)?
                .into_iter()
                .zip(0..)
                .collect(),
        };
        if foci.is_empty() && matches!(s.iteration, Iteration::ForEachOrNull(_)) {
            let mut row = vec![Value::Null; s.width];
            for &k in &s.row_index_columns {
                row[k] = Value::from(0);
            }
            return Ok(vec![row]);
        }
        let mut out = Vec::new();
        for (focus, index) in foci {
            let mut own = Vec::with_capacity(s.width);
            for col in &s.columns {
                let items = self.eval(&col.expr, &focus, index)?;
                own.push(if col.collection {
                    Value::Array(items.iter().map(cell).collect())
                } else {
                    match items.as_slice() {
                        [] => Value::Null,
                        [one] => cell(one),
                        many => {
                            return Err(self.error(&col.expr, too_many_values(many.len())));
                        }
                    }
                });
            }
            let mut rows = vec![own];
            for nested in &s.select {
                let part = self.process(nested, &focus, index)?;
                rows = cross(rows, &part);
            }
            if !s.union_all.is_empty() {
                let mut union = Vec::new();
                for branch in &s.union_all {
                    union.extend(self.process(branch, &focus, index)?);
                }
                rows = cross(rows, &union);
            }
            out.extend(rows);
        }
        Ok(out)
    }

    /// Every element the `repeat` paths reach from `node` (not `node` itself), each before
    /// its own descendants, in the order the paths find them.
    fn repeat(
        &mut self,
        paths: &[Compiled],
        node: &Item<'a>,
        row_index: i64,
    ) -> Result<Vec<Item<'a>>, ViewError> {
        let mut out = Vec::new();
        // A stack rather than recursion: the depth follows the data.
        let mut stack: Vec<Item<'a>> = Vec::new();
        let mut children = Vec::new();
        for p in paths {
            children.extend(self.eval(p, node, row_index)?);
        }
        stack.extend(children.drain(..).rev());
        while let Some(item) = stack.pop() {
            for p in paths {
                children.extend(self.eval(p, &item, row_index)?);
            }
            stack.extend(children.drain(..).rev());
            out.push(item);
            if out.len() + stack.len() > MAX_REPEAT_ITEMS {
                return Err(self.error(
                    &paths[0],
                    format!("repeat reached more than {MAX_REPEAT_ITEMS} elements; does a path return its own input?"),
                ));
            }
        }
        Ok(out)
    }
}

/// Why a column not declared `collection` cannot hold `n` values.
pub(super) fn too_many_values(n: usize) -> String {
    format!(
        "gave {n} values for a column that is not declared \"collection\": true; add that, or select one value (first(), where(...))"
    )
}

/// Every row of `left` joined with every row of `right`.
pub(super) fn cross(left: Vec<Row>, right: &[Row]) -> Vec<Row> {
    if right.len() == 1 {
        return left
            .into_iter()
            .map(|mut l| {
                l.extend_from_slice(&right[0]);
                l
            })
            .collect();
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for l in &left {
        for r in right {
            let mut row = Vec::with_capacity(l.len() + r.len());
            row.extend_from_slice(l);
            row.extend_from_slice(r);
            out.push(row);
        }
    }
    out
}

/// The JSON of one column value: elements as they are in the resource (a primitive with
/// only extensions has no value, so null), FHIRPath values as JSON scalars.
fn cell(item: &Item<'_>) -> Value {
    match item {
        Item::Node(n) => n.value.cloned().unwrap_or(Value::Null),
        other => other.to_json(),
    }
}

fn describe(item: &Item<'_>) -> String {
    match item {
        Item::Node(n) => format!("a {}", n.type_name()),
        Item::String(s) => format!("the String {s:?}"),
        other => format!("{}", other.to_json()),
    }
}
