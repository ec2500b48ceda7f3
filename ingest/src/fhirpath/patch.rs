//! FHIRPath Patch (FHIR R4, <http://hl7.org/fhir/R4/fhirpatch.html>): a `Parameters`
//! resource of `operation`s (add, insert, delete, replace, move) applied to a resource.
//!
//! FHIRPath results borrow from the resource, so they cannot be mutated directly. Each
//! result node is mapped back to a JSON location by pointer identity against a walk of
//! the resource, and the mutation then goes through that location.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Expression, Item, NodeType};
use crate::validate::{FieldType, ShapeId, Validator};

/// Why a patch was not applied. `InvalidDocument` and `Invalid` mean a malformed
/// Parameters document (HTTP 400); `Failed` is a well-formed operation that cannot apply
/// to this resource (HTTP 422). `index` is the 0-based position of the operation in
/// `Parameters.parameter`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("invalid FHIRPath Patch: {reason}")]
    InvalidDocument { reason: String },
    #[error("invalid FHIRPath Patch operation {index}: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("FHIRPath Patch operation {index} ({kind}) failed: {reason}")]
    Failed {
        index: usize,
        kind: &'static str,
        reason: String,
    },
}

impl PatchError {
    /// The document itself is malformed (as opposed to not applicable).
    pub fn is_invalid(&self) -> bool {
        !matches!(self, PatchError::Failed { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Insert => "insert",
            Kind::Delete => "delete",
            Kind::Replace => "replace",
            Kind::Move => "move",
        }
    }
}

/// A value to write: the JSON value, the `_x` companion of a primitive, and the type
/// suffix of the `value[x]` it came from (needed to name a choice element's key).
#[derive(Debug, Clone)]
struct NewValue {
    value: Option<Value>,
    companion: Option<Value>,
    type_suffix: Option<String>,
}

#[derive(Debug)]
struct Operation {
    kind: Kind,
    path: Expression,
    name: Option<String>,
    value: Option<NewValue>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

/// Applies a FHIRPath Patch `Parameters` document to `resource`. All or nothing: on any
/// error `resource` is unchanged.
pub fn apply(resource: &mut Value, parameters: &Value) -> Result<(), PatchError> {
    let ops = parse_parameters(parameters)?;
    let mut work = resource.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_one(&mut work, op).map_err(|reason| PatchError::Failed {
            index: i,
            kind: op.kind.name(),
            reason,
        })?;
    }
    // FHIR JSON forbids empty objects and arrays, so deleting the last child of an
    // element removes the element too.
    prune_empty(&mut work);
    *resource = work;
    Ok(())
}

fn parse_parameters(parameters: &Value) -> Result<Vec<Operation>, PatchError> {
    let doc = |reason: &str| PatchError::InvalidDocument {
        reason: reason.to_string(),
    };
    let obj = parameters
        .as_object()
        .ok_or_else(|| doc("the patch is not a JSON object"))?;
    match obj.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => {}
        _ => return Err(doc("the patch is not a Parameters resource")),
    }
    let params = match obj.get("parameter") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(doc("Parameters.parameter is not an array")),
    };
    params
        .iter()
        .enumerate()
        .map(|(i, p)| parse_operation(p).map_err(|reason| PatchError::Invalid { index: i, reason }))
        .collect()
}

fn parse_operation(param: &Value) -> Result<Operation, String> {
    if param.get("name").and_then(Value::as_str) != Some("operation") {
        return Err("parameter name is not 'operation'".to_string());
    }
    let parts = match param.get("part") {
        Some(Value::Array(a)) => a.as_slice(),
        _ => return Err("the operation has no parts".to_string()),
    };
    let mut by_name: HashMap<&str, &Value> = HashMap::new();
    for part in parts {
        let name = part
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a part has no name")?;
        if by_name.insert(name, part).is_some() {
            return Err(format!("part '{name}' is repeated"));
        }
    }
    let string = |name: &str| -> Result<Option<String>, String> {
        let Some(part) = by_name.get(name) else {
            return Ok(None);
        };
        let (_, v) = value_x(part).ok_or_else(|| format!("part '{name}' has no value"))?;
        v.as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("part '{name}' is not a string"))
    };
    let integer = |name: &str| -> Result<Option<usize>, String> {
        let Some(part) = by_name.get(name) else {
            return Ok(None);
        };
        let (_, v) = value_x(part).ok_or_else(|| format!("part '{name}' has no value"))?;
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("part '{name}' is not a non-negative integer"))
    };
    let kind = match string("type")?.as_deref() {
        Some("add") => Kind::Add,
        Some("insert") => Kind::Insert,
        Some("delete") => Kind::Delete,
        Some("replace") => Kind::Replace,
        Some("move") => Kind::Move,
        Some(other) => return Err(format!("unknown operation type '{other}'")),
        None => return Err("the operation has no type".to_string()),
    };
    let path_text = string("path")?.ok_or("the operation has no path")?;
    let path = Expression::parse(&path_text).map_err(|e| format!("path: {e}"))?;
    let op = Operation {
        kind,
        path,
        name: string("name")?,
        value: by_name.get("value").map(|p| part_value(p)).transpose()?,
        index: integer("index")?,
        source: integer("source")?,
        destination: integer("destination")?,
    };
    let need = |present: bool, what: &str| {
        if present {
            Ok(())
        } else {
            Err(format!("{} needs a '{what}' part", kind.name()))
        }
    };
    match kind {
        Kind::Add => {
            need(op.name.is_some(), "name")?;
            need(op.value.is_some(), "value")?;
        }
        Kind::Insert => {
            need(op.index.is_some(), "index")?;
            need(op.value.is_some(), "value")?;
        }
        Kind::Replace => need(op.value.is_some(), "value")?,
        Kind::Move => {
            need(op.source.is_some(), "source")?;
            need(op.destination.is_some(), "destination")?;
        }
        Kind::Delete => {}
    }
    Ok(op)
}

/// The `value[x]` (or `resource`) of a part: (type suffix, value).
fn value_x(part: &Value) -> Option<(&str, &Value)> {
    let obj = part.as_object()?;
    obj.iter().find_map(|(k, v)| {
        if k == "resource" {
            return Some(("", v));
        }
        k.strip_prefix("value")
            .filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|s| (s, v))
    })
}

/// The value of a part: a `value[x]`, a resource, or an anonymous complex value from
/// nested parts.
fn part_value(part: &Value) -> Result<NewValue, String> {
    if let Some((suffix, v)) = value_x(part) {
        let companion = part.get(format!("_value{suffix}")).cloned();
        return Ok(NewValue {
            value: Some(v.clone()),
            companion,
            type_suffix: (!suffix.is_empty()).then(|| suffix.to_string()),
        });
    }
    if let Some(obj) = part.as_object() {
        // A primitive with only extensions has `_valueX` but no `valueX`.
        if let Some((k, c)) = obj.iter().find(|(k, _)| k.starts_with("_value")) {
            return Ok(NewValue {
                value: None,
                companion: Some(c.clone()),
                type_suffix: Some(k["_value".len()..].to_string()),
            });
        }
    }
    match part.get("part") {
        Some(Value::Array(parts)) => {
            let mut out = Map::new();
            for sub in parts {
                let name = sub
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("a value part has no name")?;
                let v = part_value(sub)?;
                push_field(&mut out, name, v.value, false);
                if v.companion.is_some() {
                    push_field(&mut out, &format!("_{name}"), v.companion, false);
                }
            }
            Ok(NewValue {
                value: Some(Value::Object(out)),
                companion: None,
                type_suffix: None,
            })
        }
        _ => Err("the value part has no value".to_string()),
    }
}

/// Sets `key` on `obj`, turning it into an array if it repeats.
fn push_field(obj: &mut Map<String, Value>, key: &str, value: Option<Value>, many: bool) {
    let value = value.unwrap_or(Value::Null);
    match obj.get_mut(key) {
        Some(Value::Array(a)) => a.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None if many => {
            obj.insert(key.to_string(), Value::Array(vec![value]));
        }
        None => {
            obj.insert(key.to_string(), value);
        }
    }
}

/// Anonymous complex values come without types, so repeating elements that appear once
/// are made arrays here, following the model of the element they are added to.
fn fix_cardinality(value: &mut Value, shape: Option<ShapeId>) {
    let (Some(shape), Value::Object(obj)) = (shape, value) else {
        return;
    };
    let v = Validator::r4();
    for (key, child) in obj.iter_mut() {
        let Some(field) = v.field(shape, key) else {
            continue;
        };
        if field.many && !child.is_array() {
            *child = Value::Array(vec![child.take()]);
        }
        if let FieldType::Complex(s) = field.ty {
            match child {
                Value::Array(items) => items.iter_mut().for_each(|c| fix_cardinality(c, Some(s))),
                other => fix_cardinality(other, Some(s)),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where a node lives: the resource itself, or `key` (without `_`) of the object at
/// `parent`, optionally at a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loc {
    Root,
    Elem {
        parent: Vec<Step>,
        key: String,
        index: Option<usize>,
    },
}

fn index_locations(root: &Value) -> HashMap<usize, Loc> {
    fn walk(v: &Value, path: &mut Vec<Step>, out: &mut HashMap<usize, Loc>) {
        let Value::Object(obj) = v else { return };
        for (k, child) in obj {
            let base = k.strip_prefix('_').unwrap_or(k).to_string();
            match child {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        out.insert(
                            addr(item),
                            Loc::Elem {
                                parent: path.clone(),
                                key: base.clone(),
                                index: Some(i),
                            },
                        );
                        path.push(Step::Key(k.clone()));
                        path.push(Step::Index(i));
                        walk(item, path, out);
                        path.pop();
                        path.pop();
                    }
                }
                _ => {
                    out.insert(
                        addr(child),
                        Loc::Elem {
                            parent: path.clone(),
                            key: base,
                            index: None,
                        },
                    );
                    path.push(Step::Key(k.clone()));
                    walk(child, path, out);
                    path.pop();
                }
            }
        }
    }
    let mut out = HashMap::new();
    out.insert(addr(root), Loc::Root);
    walk(root, &mut Vec::new(), &mut out);
    out
}

fn addr(v: &Value) -> usize {
    v as *const Value as usize
}

/// A located result node and the model shape of its value, when known.
struct Found {
    loc: Loc,
    shape: Option<ShapeId>,
    is_object: bool,
}

fn select(resource: &Value, path: &Expression) -> Result<Vec<Found>, String> {
    let items = path
        .evaluate(resource)
        .map_err(|e| format!("evaluating {path}: {e}"))?;
    let locations = index_locations(resource);
    let v = Validator::r4();
    items
        .iter()
        .map(|item| {
            let Item::Node(node) = item else {
                return Err(format!("{path} selects a computed value, not an element"));
            };
            let target = node
                .value
                .or(node.companion)
                .ok_or_else(|| format!("{path} selects an element that is not in the resource"))?;
            let loc = locations
                .get(&addr(target))
                .cloned()
                .ok_or_else(|| format!("{path} selects a value that is not in the resource"))?;
            let shape = match node.ty {
                NodeType::Complex(s) => s,
                NodeType::Resource => node
                    .value
                    .and_then(|r| r.get("resourceType"))
                    .and_then(Value::as_str)
                    .and_then(|t| v.shape_of_type(t)),
                NodeType::Primitive(_) => None,
            };
            Ok(Found {
                loc,
                shape,
                is_object: node.value.is_some_and(Value::is_object),
            })
        })
        .collect()
}

fn object_at<'v>(
    root: &'v mut Value,
    steps: &[Step],
) -> Result<&'v mut Map<String, Value>, String> {
    let mut cur = root;
    for step in steps {
        cur = match step {
            Step::Key(k) => cur.get_mut(k.as_str()),
            Step::Index(i) => cur.get_mut(*i),
        }
        .ok_or("the selected element moved during the patch")?;
    }
    cur.as_object_mut()
        .ok_or_else(|| "the selected element is not an object".to_string())
}

fn exactly_one(mut found: Vec<Found>, path: &Expression) -> Result<Found, String> {
    match found.len() {
        1 => found.pop().ok_or_else(|| "no element".to_string()),
        0 => Err(format!("no content found at {path}")),
        n => Err(format!("{path} selects {n} elements, not one")),
    }
}

fn apply_one(resource: &mut Value, op: &Operation) -> Result<(), String> {
    let found = select(resource, &op.path)?;
    match op.kind {
        Kind::Delete => {
            if found.len() > 1 {
                return Err(format!(
                    "{} selects {} elements; delete removes one",
                    op.path,
                    found.len()
                ));
            }
            let Some(f) = found.into_iter().next() else {
                return Ok(());
            };
            delete(resource, &f.loc)
        }
        Kind::Replace => {
            let f = exactly_one(found, &op.path)?;
            let mut value = op.value.clone().ok_or("replace needs a value")?;
            if let Some(v) = value.value.as_mut() {
                fix_cardinality(v, f.shape);
            }
            replace(resource, &f.loc, value)
        }
        Kind::Add => {
            let f = exactly_one(found, &op.path)?;
            let name = op.name.as_deref().ok_or("add needs a name")?;
            let value = op.value.clone().ok_or("add needs a value")?;
            add(resource, &f, name, value)
        }
        Kind::Insert => {
            let index = op.index.ok_or("insert needs an index")?;
            let mut value = op.value.clone().ok_or("insert needs a value")?;
            if found.is_empty() && index == 0 {
                return insert_into_empty(resource, &op.path, value);
            }
            let (parent, key, len) = list_of(resource, &found, &op.path)?;
            if index > len {
                return Err(format!("index {index} is beyond the list of {len}"));
            }
            if let (Some(f), Some(v)) = (found.first(), value.value.as_mut()) {
                fix_cardinality(v, f.shape);
            }
            let obj = object_at(resource, &parent)?;
            insert_at(obj, &key, index, value)
        }
        Kind::Move => {
            let (parent, key, len) = list_of(resource, &found, &op.path)?;
            let (source, destination) = (
                op.source.ok_or("move needs a source")?,
                op.destination.ok_or("move needs a destination")?,
            );
            if source >= len || destination >= len {
                return Err(format!(
                    "source {source} or destination {destination} is outside the list of {len}"
                ));
            }
            let obj = object_at(resource, &parent)?;
            for k in [key.clone(), format!("_{key}")] {
                if let Some(Value::Array(a)) = obj.get_mut(&k)
                    && source < a.len()
                    && destination < a.len()
                {
                    let v = a.remove(source);
                    a.insert(destination, v);
                }
            }
            Ok(())
        }
    }
}

/// An empty list selects nothing, so there is no node to locate it by. When the path
/// ends in a plain element name (`Patient.contact[0].telecom`), the element that would
/// hold the list is selected instead and the value added to it.
fn insert_into_empty(
    resource: &mut Value,
    path: &Expression,
    value: NewValue,
) -> Result<(), String> {
    let no_content = || format!("no content found at {path}");
    let text = path.text().trim_end();
    let (prefix, name) = text.rsplit_once('.').ok_or_else(no_content)?;
    let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !is_name {
        return Err(no_content());
    }
    let parent = Expression::parse(prefix).map_err(|_| no_content())?;
    let holder = exactly_one(select(resource, &parent)?, &parent)?;
    let v = Validator::r4();
    if let Some(field) = holder.shape.and_then(|s| v.field(s, name))
        && !field.many
    {
        return Err(format!("{path} is not a list"));
    }
    add(resource, &holder, name, value)
}

/// The list that the nodes of an insert or move path belong to: (parent, key, length).
fn list_of(
    resource: &mut Value,
    found: &[Found],
    path: &Expression,
) -> Result<(Vec<Step>, String, usize), String> {
    let first = found
        .first()
        .ok_or_else(|| format!("no content found at {path}"))?;
    let Loc::Elem {
        parent,
        key,
        index: Some(_),
    } = &first.loc
    else {
        return Err(format!("{path} does not select a list"));
    };
    let same_list = found.iter().all(|f| {
        matches!(&f.loc, Loc::Elem { parent: p, key: k, index: Some(_) } if p == parent && k == key)
    });
    if !same_list {
        return Err(format!("{path} selects elements of more than one list"));
    }
    let obj = object_at(resource, parent)?;
    let len = [key.clone(), format!("_{key}")]
        .iter()
        .filter_map(|k| obj.get(k).and_then(Value::as_array).map(Vec::len))
        .max()
        .unwrap_or(0);
    Ok((parent.clone(), key.clone(), len))
}

fn delete(resource: &mut Value, loc: &Loc) -> Result<(), String> {
    let Loc::Elem { parent, key, index } = loc else {
        return Err("cannot delete the resource itself".to_string());
    };
    let obj = object_at(resource, parent)?;
    for k in [key.clone(), format!("_{key}")] {
        match index {
            Some(i) => {
                if let Some(Value::Array(a)) = obj.get_mut(&k)
                    && *i < a.len()
                {
                    a.remove(*i);
                }
            }
            None => {
                obj.remove(&k);
            }
        }
    }
    Ok(())
}

fn replace(resource: &mut Value, loc: &Loc, value: NewValue) -> Result<(), String> {
    let Loc::Elem { parent, key, index } = loc else {
        return Err("cannot replace the resource itself".to_string());
    };
    let obj = object_at(resource, parent)?;
    // The old `_x` (id, extensions) belonged to the old value, so it goes with it.
    set_slot(obj, key, *index, value.value);
    set_slot(obj, &format!("_{key}"), *index, value.companion);
    Ok(())
}

/// Writes one slot of `key` (the whole key, or one list index), keeping value and
/// companion lists aligned with `null`s and dropping lists that are all `null`.
fn set_slot(obj: &mut Map<String, Value>, key: &str, index: Option<usize>, value: Option<Value>) {
    match index {
        None => match value {
            Some(v) => {
                obj.insert(key.to_string(), v);
            }
            None => {
                obj.remove(key);
            }
        },
        Some(i) => {
            let len = obj
                .get(key)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .max(i + 1);
            if value.is_none() && !obj.contains_key(key) {
                return;
            }
            let entry = obj
                .entry(key.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Value::Array(vec![entry.take()]);
            }
            if let Value::Array(a) = entry {
                a.resize(len, Value::Null);
                a[i] = value.unwrap_or(Value::Null);
                if a.iter().all(Value::is_null) {
                    obj.remove(key);
                }
            }
        }
    }
}

fn insert_at(
    obj: &mut Map<String, Value>,
    key: &str,
    index: usize,
    value: NewValue,
) -> Result<(), String> {
    let companion_key = format!("_{key}");
    let len = [key, companion_key.as_str()]
        .iter()
        .filter_map(|k| obj.get(*k).and_then(Value::as_array).map(Vec::len))
        .max()
        .unwrap_or(0);
    for (k, v) in [
        (key, value.value),
        (companion_key.as_str(), value.companion),
    ] {
        let present = obj.contains_key(k);
        if v.is_none() && !present {
            continue;
        }
        let entry = obj
            .entry(k.to_string())
            .or_insert_with(|| Value::Array(vec![Value::Null; len]));
        let Value::Array(a) = entry else {
            return Err(format!("'{k}' is not a list"));
        };
        a.resize(len, Value::Null);
        a.insert(index, v.unwrap_or(Value::Null));
    }
    Ok(())
}

fn add(
    resource: &mut Value,
    target: &Found,
    name: &str,
    mut value: NewValue,
) -> Result<(), String> {
    if !target.is_object {
        return Err("add needs a path that selects an element with children".to_string());
    }
    let v = Validator::r4();
    // A choice element is named without its type (`value`); the JSON key carries the type
    // of the value (`valueQuantity`).
    let mut key = name.to_string();
    let mut field = target.shape.and_then(|s| v.field(s, name));
    if field.is_none()
        && let (Some(shape), Some(suffix)) = (target.shape, value.type_suffix.as_deref())
    {
        let typed = format!("{name}{suffix}");
        if let Some(f) = v.field(shape, &typed) {
            key = typed;
            field = Some(f);
        }
    }
    if let Some(shape) = target.shape
        && field.is_none()
        && !v.has_element(shape, name)
    {
        return Err(format!("{} has no element '{name}'", v.shape_name(shape)));
    }
    if let (Some(f), Some(val)) = (field, value.value.as_mut())
        && let FieldType::Complex(s) = f.ty
    {
        fix_cardinality(val, Some(s));
    }
    let steps = match &target.loc {
        Loc::Root => Vec::new(),
        Loc::Elem { parent, key, index } => {
            let mut s = parent.clone();
            s.push(Step::Key(key.clone()));
            if let Some(i) = index {
                s.push(Step::Index(*i));
            }
            s
        }
    };
    let obj = object_at(resource, &steps)?;
    let companion_key = format!("_{key}");
    let many = field.map_or_else(|| obj.get(&key).is_some_and(Value::is_array), |f| f.many);
    if many {
        let len = [key.as_str(), companion_key.as_str()]
            .iter()
            .filter_map(|k| obj.get(*k).and_then(Value::as_array).map(Vec::len))
            .max()
            .unwrap_or(0);
        insert_at(obj, &key, len, value)
    } else {
        if obj.contains_key(&key) || obj.contains_key(&companion_key) {
            return Err(format!("'{name}' already has a value; use replace"));
        }
        set_slot(obj, &key, None, value.value);
        set_slot(obj, &companion_key, None, value.companion);
        Ok(())
    }
}

fn prune_empty(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            obj.values_mut().for_each(prune_empty);
            obj.retain(|_, c| !is_empty(c));
        }
        Value::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(parts: Value) -> Value {
        json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]})
    }

    #[test]
    fn replace_and_add_primitive() {
        let mut p = json!({"resourceType": "Patient", "birthDate": "1920-01-01"});
        let patch = op(json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "value", "valueDate": "1930-01-01"}
        ]));
        apply(&mut p, &patch).expect("replace applies");
        assert_eq!(p["birthDate"], json!("1930-01-01"));

        let patch = op(json!([
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "identifier"},
            {"name": "value", "valueIdentifier": {"value": "x"}}
        ]));
        apply(&mut p, &patch).expect("add applies");
        assert_eq!(p["identifier"], json!([{"value": "x"}]));
    }

    #[test]
    fn insert_move_delete_in_list() {
        let mut p = json!({"resourceType": "Patient", "name": [{"text": "a"}, {"text": "b"}]});
        let patch = op(json!([
            {"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.name"},
            {"name": "index", "valueInteger": 0},
            {"name": "value", "valueHumanName": {"text": "z"}}
        ]));
        apply(&mut p, &patch).expect("insert applies");
        let patch = op(json!([
            {"name": "type", "valueCode": "move"},
            {"name": "path", "valueString": "Patient.name"},
            {"name": "source", "valueInteger": 0},
            {"name": "destination", "valueInteger": 2}
        ]));
        apply(&mut p, &patch).expect("move applies");
        assert_eq!(
            p["name"],
            json!([{"text": "a"}, {"text": "b"}, {"text": "z"}])
        );
        let patch = op(json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.name[1]"}
        ]));
        apply(&mut p, &patch).expect("delete applies");
        assert_eq!(p["name"], json!([{"text": "a"}, {"text": "z"}]));
    }

    #[test]
    fn primitive_companion_is_kept_aligned() {
        let mut p = json!({
            "resourceType": "Patient",
            "name": [{"given": ["a", "b"], "_given": [null, {"id": "x"}]}]
        });
        let patch = op(json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.name.given[0]"}
        ]));
        apply(&mut p, &patch).expect("delete applies");
        assert_eq!(
            p["name"][0],
            json!({"given": ["b"], "_given": [{"id": "x"}]})
        );
    }

    #[test]
    fn failure_leaves_resource_unchanged() {
        let original = json!({"resourceType": "Patient", "birthDate": "1920-01-01"});
        let mut p = original.clone();
        let patch = json!({"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "delete"},
                {"name": "path", "valueString": "Patient.birthDate"}
            ]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.gender"},
                {"name": "value", "valueCode": "male"}
            ]}
        ]});
        let err = apply(&mut p, &patch).expect_err("replace of nothing fails");
        assert!(matches!(err, PatchError::Failed { index: 1, .. }), "{err}");
        assert_eq!(p, original);
    }

    #[test]
    fn insert_into_missing_list_and_add_choice() {
        let mut p = json!({"resourceType": "Observation", "status": "final"});
        let patch = json!({"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "insert"},
                {"name": "path", "valueString": "Observation.category"},
                {"name": "index", "valueInteger": 0},
                {"name": "value", "part": [{"name": "text", "valueString": "vitals"}]}
            ]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "add"},
                {"name": "path", "valueString": "Observation"},
                {"name": "name", "valueString": "value"},
                {"name": "value", "valueQuantity": {"value": 1.5, "unit": "kg"}}
            ]}
        ]});
        apply(&mut p, &patch).expect("patch applies");
        assert_eq!(p["category"], json!([{"text": "vitals"}]));
        assert_eq!(p["valueQuantity"], json!({"value": 1.5, "unit": "kg"}));
    }

    #[test]
    fn ambiguous_path_fails() {
        let original = json!({"resourceType": "Patient", "name": [{"text": "a"}, {"text": "b"}]});
        let mut p = original.clone();
        let patch = op(json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.name.text"},
            {"name": "value", "valueString": "c"}
        ]));
        let err = apply(&mut p, &patch).expect_err("two matches");
        assert!(err.to_string().contains("operation 0 (replace)"), "{err}");
        assert_eq!(p, original);
    }

    #[test]
    fn malformed_document_is_invalid() {
        let mut p = json!({"resourceType": "Patient"});
        let patch = op(json!([{"name": "type", "valueCode": "frobnicate"},
            {"name": "path", "valueString": "Patient"}]));
        let err = apply(&mut p, &patch).expect_err("unknown type");
        assert!(err.is_invalid());
        assert!(apply(&mut p, &json!({"resourceType": "Patient"})).is_err());
    }
}
