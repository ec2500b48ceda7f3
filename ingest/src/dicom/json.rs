//! The instance's DICOM JSON (PS3.18 F.2) without its bulk data.
//!
//! dicom-json encodes each element; four things are ours, because it does not do them:
//! - bulk data: it inlines every binary value as base64. Here a binary value (VR OB, OD,
//!   OF, OL, OV, OW, UN) longer than a threshold, and encapsulated pixel data, become a
//!   `BulkDataURI` (F.2.6) under a prefix the caller gives, so the JSON of a 2 GB file
//!   stays a few kilobytes;
//! - IS and DS: dicom-rs keeps their text, which dicom-json then writes as JSON strings,
//!   where F.2.3 wants JSON numbers;
//! - LT, ST, UT and UR: single-valued, so a backslash in them is text; dicom-json splits
//!   them on it once they have been read back from JSON;
//! - empty values of a multi-valued element (`A\\B` with an empty middle): F.2.5 wants
//!   `null`, dicom-json writes `""`.
//!
//! The URI of a bulk element is `{prefix}/{path}`, where the path is the element's tag
//! (`GGGGEEEE`) preceded, for an element inside a sequence, by the sequence's tag and the
//! item number counted from 1: `00880200/1/7FE00010` is the pixel data of the first icon.

use dicom_core::{DicomValue, Tag, VR, header::Header};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;
use serde_json::{Map, Value};

/// Binary values up to this many bytes stay inline (`InlineBinary`), as pydicom's default.
pub const DEFAULT_BULK_DATA_THRESHOLD: usize = 1024;

/// Where the bulk data of an instance will be served from, and what counts as bulk.
#[derive(Debug, Clone)]
pub struct BulkData {
    uri_prefix: String,
    threshold: usize,
}

impl BulkData {
    /// Bulk elements get URIs under `uri_prefix` (a trailing `/` is ignored), e.g. the
    /// WADO-RS `.../studies/{s}/series/{se}/instances/{i}/bulkdata`.
    pub fn new(uri_prefix: impl Into<String>) -> BulkData {
        let mut uri_prefix = uri_prefix.into();
        while uri_prefix.ends_with('/') {
            uri_prefix.pop();
        }
        BulkData {
            uri_prefix,
            threshold: DEFAULT_BULK_DATA_THRESHOLD,
        }
    }

    /// Binary values longer than `bytes` become bulk data (default
    /// [`DEFAULT_BULK_DATA_THRESHOLD`]).
    pub fn threshold(mut self, bytes: usize) -> BulkData {
        self.threshold = bytes;
        self
    }

    fn uri(&self, path: &[String]) -> String {
        format!("{}/{}", self.uri_prefix, path.join("/"))
    }
}

/// The DICOM JSON object of a data set, bulk data replaced by URIs. [`DicomInstance::to_json`]
/// is this on the instance's header; it is public for data sets read back from JSON.
///
/// [`DicomInstance::to_json`]: super::DicomInstance::to_json
pub fn to_dicom_json(obj: &InMemDicomObject, bulk: &BulkData) -> Value {
    let mut path = Vec::new();
    Value::Object(dataset(obj, bulk, &mut path))
}

fn tag_text(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn dataset(obj: &InMemDicomObject, bulk: &BulkData, path: &mut Vec<String>) -> Map<String, Value> {
    let mut map = Map::new();
    for element in obj {
        let key = tag_text(element.tag());
        path.push(key.clone());
        let value = attribute(element, bulk, path);
        path.pop();
        map.insert(key, value);
    }
    map
}

fn attribute(element: &InMemElement, bulk: &BulkData, path: &mut Vec<String>) -> Value {
    let vr = element.vr();
    let mut out = Map::new();
    out.insert("vr".into(), Value::String(vr.to_string().into()));
    match element.value() {
        DicomValue::Sequence(seq) => {
            let mut items = Vec::with_capacity(seq.items().len());
            for (i, item) in seq.items().iter().enumerate() {
                path.push((i + 1).to_string());
                items.push(Value::Object(dataset(item, bulk, path)));
                path.pop();
            }
            if !items.is_empty() {
                out.insert("Value".into(), Value::Array(items));
            }
        }
        DicomValue::PixelSequence(_) => {
            out.insert("BulkDataURI".into(), Value::String(bulk.uri(path)));
        }
        DicomValue::Primitive(value) => {
            let binary = matches!(
                vr,
                VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
            );
            if binary && value.calculate_byte_len() > bulk.threshold {
                out.insert("BulkDataURI".into(), Value::String(bulk.uri(path)));
            } else if matches!(vr, VR::IS | VR::DS) {
                let values: Vec<Value> = value.to_multi_str().iter().map(|v| number(v)).collect();
                if !values.is_empty() && !values.iter().all(Value::is_null) {
                    out.insert("Value".into(), Value::Array(values));
                }
            } else if matches!(vr, VR::LT | VR::ST | VR::UT | VR::UR) {
                // Single-valued: a backslash is text, not a delimiter. dicom-json splits a
                // value on it when the value came from JSON (dicom-core's `Str`), so a
                // data set read back from DICOM JSON would not encode the same.
                let text = value.to_str();
                if !text.trim_end_matches([' ', '\0']).is_empty() {
                    out.insert(
                        "Value".into(),
                        Value::Array(vec![Value::from(text.as_ref())]),
                    );
                }
            } else {
                // dicom-json refuses only a primitive value with VR SQ, which the parser
                // does not build; such an element would keep just its VR.
                let encoded = match dicom_json::to_value(element) {
                    Ok(Value::Object(encoded)) => encoded,
                    _ => Map::new(),
                };
                for (k, v) in encoded {
                    match (k.as_str(), empty_to_null(v)) {
                        ("vr", _) => {}
                        // A value of padding only is an empty attribute: no "Value" (F.2.5).
                        ("Value", Value::Array(values)) if values.iter().all(is_empty) => {}
                        (_, v) => {
                            out.insert(k, v);
                        }
                    }
                }
            }
        }
    }
    Value::Object(out)
}

/// An IS or DS value as a JSON number; text that is not a number stays text.
fn number(text: &str) -> Value {
    let t = text.trim();
    if t.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    match t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(n) => Value::Number(n),
        None => Value::String(t.to_string()),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// F.2.5: an empty value among several is `null`, not `""` (nor an empty person name).
fn empty_to_null(value: Value) -> Value {
    match value {
        Value::Array(values) if values.len() > 1 => Value::Array(
            values
                .into_iter()
                .map(|v| if is_empty(&v) { Value::Null } else { v })
                .collect(),
        ),
        other => other,
    }
}
