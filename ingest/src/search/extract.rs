//! From what a parameter's expression selects to [`IndexValue`]s, by the FHIR type of
//! each element (R4 "Search: Search Parameter Types", the table of which elements each
//! parameter type indexes).

use std::borrow::Cow;

use serde_json::Value;

use super::value::{IndexEntry, IndexValue, date_range};
use super::{ParamKind, SearchParam};
use crate::fhirpath::{Environment, Item};
use crate::validate::ShapeId;

/// The values of one parameter in a resource of the shape given.
pub(super) fn param(
    p: &'static SearchParam,
    resource: &Value,
    shape: Option<ShapeId>,
    out: &mut Vec<IndexEntry>,
) {
    // Duplicates are only possible within one parameter: compare with its own values.
    let first = out.len();
    for term in &p.terms {
        let Some(items) = term.evaluate(resource, shape) else {
            continue;
        };
        for item in &items {
            if p.kind == ParamKind::Composite {
                if let Some(v) = composite(p, item, resource) {
                    out.push(IndexEntry {
                        param: Cow::Borrowed(&p.code),
                        value: v,
                    });
                }
                continue;
            }
            let mut values = Vec::new();
            item_values(p.kind, item, &mut values);
            for value in values {
                if let (Some(want), IndexValue::Reference { reference, .. }) =
                    (&term.resolve_is, &value)
                    && reference.as_deref().and_then(reference_type) != Some(want.as_str())
                {
                    continue;
                }
                if !out[first..].iter().any(|e| e.value == value) {
                    out.push(IndexEntry {
                        param: Cow::Borrowed(&p.code),
                        value,
                    });
                }
            }
        }
    }
}

fn composite(p: &SearchParam, item: &Item<'_>, resource: &Value) -> Option<IndexValue> {
    let Item::Node(n) = item else {
        return None;
    };
    let context = n.value?;
    let env = Environment::new().with_resource(resource);
    let mut parts = Vec::with_capacity(p.components.len());
    for c in &p.components {
        let fast = c.fast.as_ref().and_then(|f| f.evaluate_at(n));
        let items = match fast {
            Some(items) => items,
            None => c.expression.evaluate_with(context, &env).ok()?,
        };
        let mut values = Vec::new();
        for i in &items {
            item_values(c.kind, i, &mut values);
        }
        if values.is_empty() {
            return None;
        }
        parts.push(values);
    }
    Some(IndexValue::Composite(parts))
}

/// The type of a `Type/id` or `http://.../Type/id` reference.
pub(super) fn reference_type(reference: &str) -> Option<&str> {
    let mut parts = reference.rsplit('/');
    parts.next()?;
    let ty = parts.next()?;
    let ty = if ty == "_history" {
        parts.next()?;
        parts.next()?
    } else {
        ty
    };
    ty.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some(ty)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn owned(v: Option<&str>) -> Option<String> {
    v.map(str::to_string)
}

fn item_values(kind: ParamKind, item: &Item<'_>, out: &mut Vec<IndexValue>) {
    let node = match item {
        Item::Node(n) => n,
        Item::Boolean(b) if kind == ParamKind::Token => {
            out.push(token(None, Some(b.to_string()), None));
            return;
        }
        Item::String(s) => {
            match kind {
                ParamKind::String => out.push(IndexValue::String(s.clone())),
                ParamKind::Token => out.push(token(None, Some(s.clone()), None)),
                ParamKind::Uri => out.push(IndexValue::Uri(s.clone())),
                _ => {}
            }
            return;
        }
        _ => return,
    };
    let Some(v) = node.value else {
        return;
    };
    let ty = node.type_str();
    match kind {
        ParamKind::Token => token_values(ty, v, out),
        ParamKind::String => string_values(ty, v, out),
        ParamKind::Reference => reference_values(ty, v, out),
        ParamKind::Date => date_values(ty, v, out),
        ParamKind::Number => {
            if let Some((x, lo, hi)) = number(v) {
                out.push(IndexValue::Number(x, lo, hi));
            }
        }
        ParamKind::Quantity => quantity_values(ty, v, out),
        ParamKind::Uri => {
            if let Some(s) = v.as_str() {
                out.push(IndexValue::Uri(s.to_string()));
            }
        }
        ParamKind::Composite => {}
    }
}

fn token(system: Option<String>, code: Option<String>, text: Option<String>) -> IndexValue {
    IndexValue::Token {
        system,
        code,
        text,
        of_type: None,
    }
}

fn coding_value(c: &Value, text: Option<&str>) -> IndexValue {
    token(
        owned(str_field(c, "system")),
        owned(str_field(c, "code")),
        owned(str_field(c, "display").or(text)),
    )
}

fn token_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    match ty {
        "Coding" => out.push(coding_value(v, None)),
        "CodeableConcept" => {
            let text = str_field(v, "text");
            let codings = v.get("coding").and_then(Value::as_array);
            for c in codings.into_iter().flatten() {
                out.push(coding_value(c, text));
            }
            // `:text` searches the concept's text as well as each coding's display
            // (R4 3.1.1.5.7): a text that no display repeats is a value of its own.
            if let Some(t) = text {
                let repeated = codings
                    .into_iter()
                    .flatten()
                    .any(|c| str_field(c, "display") == Some(t));
                if !repeated {
                    out.push(token(None, None, Some(t.to_string())));
                }
            }
        }
        "Identifier" => {
            // `:of-type` matches any coding of the identifier's type: one value per
            // coding (or one without a type).
            let types: Vec<String> = v
                .get("type")
                .and_then(|t| t.get("coding"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}|{}",
                        str_field(c, "system").unwrap_or(""),
                        str_field(c, "code").unwrap_or("")
                    )
                })
                .collect();
            let of_types: Vec<Option<String>> = if types.is_empty() {
                vec![None]
            } else {
                types.into_iter().map(Some).collect()
            };
            for of_type in of_types {
                out.push(IndexValue::Token {
                    system: owned(str_field(v, "system")),
                    code: owned(str_field(v, "value")),
                    text: owned(v.get("type").and_then(|t| str_field(t, "text"))),
                    of_type,
                });
            }
        }
        "ContactPoint" => out.push(token(
            owned(str_field(v, "system")),
            owned(str_field(v, "value")),
            None,
        )),
        _ => match v {
            Value::String(s) => out.push(token(None, Some(s.clone()), None)),
            Value::Bool(b) => out.push(token(None, Some(b.to_string()), None)),
            Value::Number(n) => out.push(token(None, Some(n.to_string()), None)),
            _ => {}
        },
    }
}

fn string_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    let fields: &[&str] = match ty {
        "HumanName" => &["text", "family", "given", "prefix", "suffix"],
        "Address" => &[
            "text",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ],
        _ => {
            if let Some(s) = v.as_str() {
                out.push(IndexValue::String(s.to_string()));
            }
            return;
        }
    };
    for f in fields {
        match v.get(*f) {
            Some(Value::String(s)) => out.push(IndexValue::String(s.clone())),
            Some(Value::Array(a)) => out.extend(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| IndexValue::String(s.to_string())),
            ),
            _ => {}
        }
    }
}

fn reference_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    match v {
        // canonical and uri elements
        Value::String(s) => out.push(IndexValue::Reference {
            reference: Some(s.split('|').next().unwrap_or(s).to_string()),
            identifier: None,
        }),
        Value::Object(_) if ty == "Reference" => {
            let reference = str_field(v, "reference").filter(|r| !r.starts_with('#'));
            let identifier = v.get("identifier").and_then(|i| {
                Some((
                    owned(str_field(i, "system")),
                    str_field(i, "value")?.to_string(),
                ))
            });
            if reference.is_some() || identifier.is_some() {
                out.push(IndexValue::Reference {
                    reference: owned(reference),
                    identifier,
                });
            }
        }
        _ => {}
    }
}

fn date_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    match ty {
        "Period" => {
            let lo = str_field(v, "start").and_then(date_range).map(|r| r.0);
            let hi = str_field(v, "end").and_then(date_range).map(|r| r.1);
            if lo.is_some() || hi.is_some() {
                out.push(IndexValue::Date(
                    lo.unwrap_or(i64::MIN),
                    hi.unwrap_or(i64::MAX),
                ));
            }
        }
        "Timing" => {
            for e in v
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some((lo, hi)) = e.as_str().and_then(date_range) {
                    out.push(IndexValue::Date(lo, hi));
                }
            }
            if let Some(p) = v.get("repeat").and_then(|r| r.get("boundsPeriod")) {
                date_values("Period", p, out);
            }
        }
        _ => {
            if let Some((lo, hi)) = v.as_str().and_then(date_range) {
                out.push(IndexValue::Date(lo, hi));
            }
        }
    }
}

/// A JSON number with the range its written precision implies.
fn number(v: &Value) -> Option<(f64, f64, f64)> {
    let n = v.as_number()?;
    let x = n.as_f64()?;
    let text = n.to_string();
    let decimals = text
        .split_once('.')
        .map_or(0, |(_, f)| f.split(['e', 'E']).next().unwrap_or(f).len());
    let half = 0.5 * 10f64.powi(-(decimals as i32));
    Some((x, x - half, x + half))
}

fn quantity_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    match ty {
        "Range" => {
            let lo = v.get("low").and_then(|l| l.get("value")).and_then(number);
            let hi = v.get("high").and_then(|h| h.get("value")).and_then(number);
            let unit = v.get("low").or_else(|| v.get("high"));
            if lo.is_some() || hi.is_some() {
                out.push(IndexValue::Quantity {
                    value: None,
                    lo: lo.map_or(f64::NEG_INFINITY, |l| l.0),
                    hi: hi.map_or(f64::INFINITY, |h| h.0),
                    system: unit.and_then(|u| owned(str_field(u, "system"))),
                    code: unit.and_then(|u| owned(str_field(u, "code"))),
                    unit: unit.and_then(|u| owned(str_field(u, "unit"))),
                });
            }
        }
        "Money" => {
            if let Some((x, lo, hi)) = v.get("value").and_then(number) {
                out.push(IndexValue::Quantity {
                    value: Some(x),
                    lo,
                    hi,
                    system: Some("urn:iso:std:iso:4217".to_string()),
                    code: owned(str_field(v, "currency")),
                    unit: None,
                });
            }
        }
        _ => {
            if let Some((x, lo, hi)) = v.get("value").and_then(number) {
                out.push(IndexValue::Quantity {
                    value: Some(x),
                    lo,
                    hi,
                    system: owned(str_field(v, "system")),
                    code: owned(str_field(v, "code")),
                    unit: owned(str_field(v, "unit")),
                });
            }
        }
    }
}
