//! Turning a raw record into a resource ready to store: parse, then check it against R4.

use serde_json::{Map, Value};

use crate::issue::Issue;
use crate::source::Payload;
use crate::validate::Validator;

/// A resource that passed the structural checks.
#[derive(Debug)]
pub struct Prepared {
    pub resource_type: String,
    pub id: Option<String>,
    pub resource: Map<String, Value>,
    /// The record's own text, kept when it can be stored as is with a `meta` appended:
    /// it came as text, has an id and has no `meta` of its own. Bulk loads then skip
    /// re-serialising the resource, which was a fifth of their cost.
    pub text: Option<String>,
}

/// A record that did not pass, with what is known of it.
#[derive(Debug)]
pub struct Rejected {
    pub resource_type: Option<String>,
    pub id: Option<String>,
    pub issues: Vec<Issue>,
}

/// Parse and validate one record.
pub fn prepare(payload: Payload) -> Result<Prepared, Rejected> {
    let (value, text) = match payload {
        Payload::Text(text) => match serde_json::from_str::<Value>(&text) {
            Ok(v) => (v, Some(text)),
            Err(e) => {
                return Err(Rejected {
                    resource_type: None,
                    id: None,
                    issues: vec![Issue::error("structure", format!("not valid JSON: {e}"))],
                });
            }
        },
        Payload::Json(v) => (v, None),
        Payload::Broken(issue) => {
            return Err(Rejected {
                resource_type: None,
                id: None,
                issues: vec![issue],
            });
        }
    };
    let mut prepared = prepare_value(value)?;
    prepared.text =
        text.filter(|_| prepared.id.is_some() && !prepared.resource.contains_key("meta"));
    Ok(prepared)
}

/// Validate an already parsed resource.
pub fn prepare_value(value: Value) -> Result<Prepared, Rejected> {
    let resource_type = value
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = value.get("id").and_then(Value::as_str).map(str::to_string);
    if let Err(issues) = Validator::r4().validate(&value) {
        return Err(Rejected {
            resource_type,
            id,
            issues,
        });
    }
    match (value, resource_type) {
        (Value::Object(resource), Some(resource_type)) => Ok(Prepared {
            resource_type,
            id,
            resource,
            text: None,
        }),
        _ => Err(Rejected {
            resource_type: None,
            id: None,
            issues: vec![Issue::error(
                "structure",
                "a resource must be a JSON object with a resourceType",
            )],
        }),
    }
}
