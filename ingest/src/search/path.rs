//! [`SimplePath`]: the search parameter expressions that are plain paths
//! (`Observation.code`, `Patient.name.family`, `Observation.value.ofType(Quantity)`),
//! walked directly over the JSON with the R4 element tables.
//!
//! Most R4 search expressions are such paths, and every write evaluates all of its
//! type's (about 45 for an Observation). The general FHIRPath evaluator handles them
//! too, but its generality (system types, collections of items, function dispatch)
//! costs several times more per step; indexing at ingest speed needs the short way.
//! Anything else (`where`, `exists`, `as`, unions) goes to the evaluator.
//!
//! The element of each step is looked up once, when the path is compiled, for the type
//! the step starts from when that type is known there (all but steps after a choice
//! element or into a nested resource); the walk then only looks up the JSON keys.

use serde_json::{Map, Value};

use crate::fhirpath::{Item, Node, NodeType};
use crate::validate::Validator;
use crate::validate::{FieldType, ShapeId};

#[derive(Debug, Clone)]
enum Step {
    /// A child element, with its type as looked up for the shape the step starts from
    /// when that shape is known at compile time.
    Child {
        name: String,
        known: Option<(ShapeId, FieldType)>,
    },
    OfType(String),
}

/// A path of child steps and `ofType()` filters, from the resource.
#[derive(Debug, Clone)]
pub(super) struct SimplePath {
    steps: Vec<Step>,
}

fn is_identifier(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SimplePath {
    /// The path of `text` on `resource_type`, if it is one: `Type.a.b` or, relative to
    /// the resource, `a.b`, with optional `.ofType(T)` steps. `None` sends the
    /// expression to the FHIRPath evaluator.
    pub(super) fn compile(text: &str, resource_type: &str) -> Option<SimplePath> {
        let model = Validator::r4();
        let mut parts = text.split('.').peekable();
        let mut steps = Vec::new();
        let head = *parts.peek()?;
        if head == resource_type {
            parts.next();
        } else if !head.starts_with(|c: char| c.is_ascii_lowercase()) {
            return None;
        }
        // The shape the next step starts from, where it is known now.
        let mut shape = model.shape_of_type(resource_type);
        for part in parts {
            if let Some(t) = part
                .strip_prefix("ofType(")
                .and_then(|r| r.strip_suffix(')'))
            {
                if !is_identifier(t) {
                    return None;
                }
                steps.push(Step::OfType(t.to_string()));
                shape = model.shape_of_type(t);
            } else if is_identifier(part) {
                let known = shape.and_then(|s| Some((s, model.field(s, part)?.ty)));
                shape = match known {
                    Some((_, FieldType::Complex(s))) => Some(s),
                    _ => None,
                };
                steps.push(Step::Child {
                    name: part.to_string(),
                    known,
                });
            } else {
                return None;
            }
        }
        Some(SimplePath { steps })
    }

    /// What the path selects in `resource`, as the evaluator would give it.
    #[cfg(test)]
    pub(super) fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Item<'a>> {
        let shape = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| Validator::r4().shape_of_type(t));
        self.evaluate_in(resource, shape)
    }

    /// [`SimplePath::evaluate`] for a resource whose shape the caller looked up.
    pub(super) fn evaluate_in<'a>(
        &self,
        resource: &'a Value,
        shape: Option<ShapeId>,
    ) -> Vec<Item<'a>> {
        match shape {
            Some(shape) => self.walk(resource, NodeType::Resource, shape),
            None => Vec::new(),
        }
    }

    /// What the path selects from an element (a composite's components); `None` when
    /// the element's shape is not known, for the evaluator to handle.
    pub(super) fn evaluate_at<'a>(&self, node: &Node<'a>) -> Option<Vec<Item<'a>>> {
        let value = node.value?;
        let shape = match node.ty {
            NodeType::Complex(Some(s)) => s,
            NodeType::Resource => {
                Validator::r4().shape_of_type(value.get("resourceType")?.as_str()?)?
            }
            _ => return None,
        };
        Some(self.walk(value, node.ty, shape))
    }

    fn walk<'a>(&self, start: &'a Value, ty: NodeType, shape: ShapeId) -> Vec<Item<'a>> {
        let model = Validator::r4();
        // (value, FHIR type, shape to walk into)
        let mut current: Vec<(&'a Value, NodeType, Option<ShapeId>)> =
            vec![(start, ty, Some(shape))];
        for step in &self.steps {
            let mut next = Vec::new();
            match step {
                Step::Child { name, known } => {
                    for (v, _, shape) in &current {
                        let (Some(shape), Some(obj)) = (shape, v.as_object()) else {
                            continue;
                        };
                        if let Some(child) = get(obj, name) {
                            let ty = match known {
                                Some((s, ty)) if s == shape => Some(*ty),
                                _ => model.field(*shape, name).map(|f| f.ty),
                            };
                            if let Some(ty) = ty {
                                push_values(child, ty, &mut next);
                            }
                            continue;
                        }
                        // A choice element: `value` is `valueQuantity`, `valueString`...
                        // (the object's few keys are cheaper to look at than the shape's
                        // element list, and most paths name an element that is absent).
                        for (key, child) in obj {
                            let Some(rest) = key.strip_prefix(name.as_str()) else {
                                continue;
                            };
                            if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
                                continue;
                            }
                            if let Some(f) = model.field(*shape, key)
                                && f.choice
                                && !f.companion
                            {
                                push_values(child, f.ty, &mut next);
                            }
                        }
                    }
                }
                Step::OfType(t) => {
                    for (v, ty, shape) in current.drain(..) {
                        let name = match ty {
                            NodeType::Primitive(p) => p,
                            NodeType::Complex(Some(s)) => model.shape_name(s),
                            _ => "",
                        };
                        if name == t {
                            next.push((v, ty, shape));
                        }
                    }
                }
            }
            current = next;
            if current.is_empty() {
                break;
            }
        }
        current
            .into_iter()
            .map(|(value, ty, _)| {
                Item::Node(Node {
                    value: Some(value),
                    companion: None,
                    ty,
                })
            })
            .collect()
    }
}

/// A key of a JSON object. FHIR objects have few keys, and comparing them costs less
/// than hashing the name (`serde_json` keeps objects in an `IndexMap` with SipHash).
fn get<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if obj.len() <= 16 {
        obj.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
    } else {
        obj.get(name)
    }
}

fn push_values<'a>(
    v: &'a Value,
    ty: FieldType,
    out: &mut Vec<(&'a Value, NodeType, Option<ShapeId>)>,
) {
    let (node, shape) = match ty {
        FieldType::Primitive(p) => (NodeType::Primitive(p), None),
        FieldType::Complex(s) => (NodeType::Complex(Some(s)), Some(s)),
        FieldType::Resource => {
            let shape = v
                .get("resourceType")
                .and_then(Value::as_str)
                .and_then(|t| Validator::r4().shape_of_type(t));
            (NodeType::Resource, shape)
        }
    };
    match v {
        Value::Array(items) => out.extend(items.iter().map(|i| (i, node, shape))),
        Value::Null => {}
        _ => out.push((v, node, shape)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fhirpath::Expression;

    /// The short way gives what the evaluator gives, item for item.
    #[test]
    fn paths_select_what_the_evaluator_selects() {
        let obs = json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1"}, {"code": "2"}]},
            "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1}},
                          {"code": {"text": "b"}, "valueString": "x"}],
            "valueQuantity": {"value": 72, "unit": "/min"},
            "effectiveDateTime": "2024-01-01"
        });
        for text in [
            "Observation.code",
            "Observation.code.coding",
            "Observation.status",
            "Observation.component.code",
            "Observation.component.value.ofType(Quantity)",
            "Observation.component.value.ofType(string)",
            "Observation.value.ofType(Quantity)",
            "Observation.value.ofType(CodeableConcept)",
            "Observation.effective",
            "Observation.subject",
            "Observation",
        ] {
            let fast = SimplePath::compile(text, "Observation").unwrap();
            let slow = Expression::parse(text).unwrap();
            let a: Vec<(Value, String)> = fast
                .evaluate(&obs)
                .iter()
                .map(|i| match i {
                    Item::Node(n) => (i.to_json(), n.type_name()),
                    _ => (i.to_json(), String::new()),
                })
                .collect();
            let b: Vec<(Value, String)> = slow
                .evaluate(&obs)
                .unwrap()
                .iter()
                .map(|i| match i {
                    Item::Node(n) => (i.to_json(), n.type_name()),
                    _ => (i.to_json(), String::new()),
                })
                .collect();
            assert_eq!(a, b, "{text}");
        }
        for text in [
            "Patient.telecom.where(system='email')",
            "Patient.deceased.exists() and Patient.deceased != false",
            "Observation.code",
        ] {
            assert!(SimplePath::compile(text, "Patient").is_none(), "{text}");
        }
        let tagged =
            json!({"resourceType": "Patient", "meta": {"tag": [{"code": "a"}, {"code": "b"}]}});
        let tags = SimplePath::compile("meta.tag", "Resource")
            .unwrap()
            .evaluate(&tagged);
        assert_eq!(tags.len(), 2);
    }
}
