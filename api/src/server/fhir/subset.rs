//! `_summary` and `_elements`: answer with part of a resource.
//!
//! Both work on the top-level elements of the resource, which is what clients use them
//! for (a list view, a few fields). `resourceType`, `id` and `meta` are always kept, and
//! so are required elements, so the answer stays a valid resource; it is tagged
//! `SUBSETTED` as the specification asks. Which elements are in the summary and which are
//! required comes from the R4 definitions (`isSummary`, `min`).
//!
//! | parameter | keeps |
//! |---|---|
//! | `_summary=true` | the summary elements |
//! | `_summary=text` | `text` and the required elements |
//! | `_summary=data` | everything but `text` |
//! | `_summary=false` | everything |
//! | `_elements=a,b` | `a`, `b` (a choice by its name: `value` keeps `valueQuantity`) and the required elements |
//!
//! `_summary=count` only means something for a search, so a read refuses it.

use std::collections::HashMap;

use medlake_ingest::validate::Validator;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// How to cut a resource down, from the request's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subset {
    Full,
    Summary,
    Text,
    Data,
    Elements(Vec<String>),
}

impl Subset {
    pub fn from_params(params: &HashMap<String, String>) -> Result<Subset, ApiError> {
        let summary = params.get("_summary").map(String::as_str);
        let elements = params.get("_elements");
        let bad = |message: String| ApiError::bad_request("invalid", message);
        match (summary, elements) {
            (None | Some("false"), Some(list)) => Ok(Subset::Elements(
                list.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
            (None | Some("false"), None) => Ok(Subset::Full),
            (Some("true"), None) => Ok(Subset::Summary),
            (Some("text"), None) => Ok(Subset::Text),
            (Some("data"), None) => Ok(Subset::Data),
            (Some("count"), None) => Err(bad(
                "_summary=count applies to searches, not to reading one resource".to_string(),
            )),
            (Some(_), Some(_)) => Err(bad(
                "_summary and _elements cannot be used together".to_string()
            )),
            (Some(other), None) => Err(bad(format!(
                "_summary={other} is not one of true, text, data, count or false"
            ))),
        }
    }

    /// Cut `resource` down in place. Returns whether anything was left out.
    pub fn apply(&self, resource: &mut Map<String, Value>) -> bool {
        if *self == Subset::Full {
            return false;
        }
        let validator = Validator::r4();
        let shape = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| validator.shape_of_type(t));
        let Some(shape) = shape else {
            return false;
        };
        let before = resource.len();
        resource.retain(|key, _| {
            if matches!(key.as_str(), "resourceType" | "id" | "meta") {
                return true;
            }
            let Some(field) = validator.field(shape, key) else {
                // Not an R4 element (stored resources are validated, so this is rare):
                // keep it rather than guess.
                return true;
            };
            match self {
                Subset::Full => true,
                Subset::Summary => field.summary || field.required,
                Subset::Text => key == "text" || field.required,
                Subset::Data => key != "text",
                Subset::Elements(names) => {
                    let element = field.element.strip_suffix("[x]").unwrap_or(field.element);
                    field.required || names.iter().any(|n| n == element)
                }
            }
        });
        let cut = resource.len() < before;
        if cut {
            let meta = resource
                .entry("meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                let tag = json!({
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "SUBSETTED",
                    "display": "subsetted"
                });
                match meta.get_mut("tag") {
                    Some(Value::Array(tags)) => tags.push(tag),
                    _ => {
                        meta.insert("tag".into(), Value::Array(vec![tag]));
                    }
                }
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn observation() -> Map<String, Value> {
        serde_json::from_value(json!({
            "resourceType": "Observation",
            "id": "o1",
            "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 60, "unit": "kg"},
            "note": [{"text": "after lunch"}]
        }))
        .unwrap()
    }

    #[test]
    fn summary_keeps_summary_elements_and_tags_the_cut() {
        let mut o = observation();
        let s = Subset::from_params(&params(&[("_summary", "true")])).unwrap();
        assert!(s.apply(&mut o));
        // Observation.note and text are not in the summary; status, code, subject, value are.
        assert!(o.get("note").is_none());
        assert!(o.get("text").is_none());
        for k in ["status", "code", "subject", "valueQuantity", "id", "meta"] {
            assert!(o.contains_key(k), "{k}");
        }
        assert_eq!(o["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn elements_keep_what_is_named_and_what_is_required() {
        let mut o = observation();
        let s = Subset::from_params(&params(&[("_elements", "value,note")])).unwrap();
        assert!(s.apply(&mut o));
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec![
                "resourceType",
                "id",
                "meta",
                "status",
                "code",
                "valueQuantity",
                "note"
            ]
        );
    }

    #[test]
    fn text_data_false_and_bad_values() {
        let mut o = observation();
        Subset::from_params(&params(&[("_summary", "data")]))
            .unwrap()
            .apply(&mut o);
        assert!(o.get("text").is_none() && o.contains_key("note"));

        let mut o = observation();
        Subset::from_params(&params(&[("_summary", "text")]))
            .unwrap()
            .apply(&mut o);
        let keys: Vec<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            vec!["resourceType", "id", "meta", "text", "status", "code"]
        );

        let mut o = observation();
        assert!(
            !Subset::from_params(&params(&[("_summary", "false")]))
                .unwrap()
                .apply(&mut o)
        );
        assert!(o["meta"].get("tag").is_none());

        for bad in [
            vec![("_summary", "count")],
            vec![("_summary", "maybe")],
            vec![("_summary", "true"), ("_elements", "id")],
        ] {
            assert!(Subset::from_params(&params(&bad)).is_err(), "{bad:?}");
        }
    }
}
