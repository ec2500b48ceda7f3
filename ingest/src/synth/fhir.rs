//! Small builders for the FHIR data types the generator repeats: dates, codings,
//! references, quantities.

use chrono::{DateTime, Datelike, Timelike};
use serde_json::{Map, Value, json};

use super::codes::{Code, Measure, UCUM};

pub const DAY: i64 = 86_400;
pub const YEAR: i64 = 31_557_600; // 365.25 days
/// The fixed "now" of every data set: 2026-01-01T00:00:00+00:00. Using the clock would
/// make output depend on the day it was generated.
pub const NOW: i64 = 1_767_225_600;

fn parts(t: i64) -> (i32, u32, u32, u32, u32, u32) {
    let d = DateTime::from_timestamp(t, 0).expect("generated times are within chrono's range");
    (
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
    )
}

/// A FHIR dateTime (also a valid instant) in UTC: `2019-04-02T10:15:00+00:00`.
pub fn dt(t: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00")
}

/// A FHIR date: `2019-04-02`.
pub fn date(t: i64) -> String {
    let (y, mo, d, ..) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}")
}

pub fn year_of(t: i64) -> i32 {
    parts(t).0
}

pub fn month_of(t: i64) -> u32 {
    parts(t).1
}

pub fn coding(c: &Code) -> Value {
    json!({"system": c.system, "code": c.code, "display": c.display})
}

/// A CodeableConcept with one coding and the display as its text.
pub fn cc(c: &Code) -> Value {
    json!({"coding": [coding(c)], "text": c.display})
}

/// A CodeableConcept from a system, code and display given separately.
pub fn cc3(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

pub fn reference(r: impl Into<String>) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert("reference".into(), Value::String(r.into()));
    Value::Object(m)
}

pub fn reference_display(r: impl Into<String>, display: impl Into<String>) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("reference".into(), Value::String(r.into()));
    m.insert("display".into(), Value::String(display.into()));
    Value::Object(m)
}

/// Like `json!({...})` for a flat list of `"key" => value` pairs, but allocates the map at
/// its final size: growing maps past 1 KiB made glibc consolidate its free lists on
/// nearly every resource, which cost more than building the JSON.
macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = serde_json::Map::with_capacity(<[&str]>::len(&[$($k),*]));
        $( m.insert($k.to_string(), serde_json::Value::from($v)); )*
        serde_json::Value::Object(m)
    }};
}
pub(crate) use obj;

/// A decimal with `decimals` digits after the point; whole numbers are written as JSON
/// integers (`72`, not `72.0`), as clinical systems do.
pub fn num(v: f64, decimals: u8) -> Value {
    if decimals == 0 {
        Value::from(v.round() as i64)
    } else {
        let p = 10f64.powi(decimals as i32);
        Value::from((v * p).round() / p)
    }
}

pub fn quantity(v: f64, m: &Measure) -> Value {
    json!({"value": num(v, m.decimals), "unit": m.unit, "system": UCUM, "code": m.unit})
}

pub fn ucum(v: Value, unit: &str, code: &str) -> Value {
    json!({"value": v, "unit": unit, "system": UCUM, "code": code})
}

/// `Observation.referenceRange` of a measure (absent when it has no range).
pub fn reference_range(m: &Measure) -> Option<Value> {
    if m.low.is_none() && m.high.is_none() {
        return None;
    }
    let mut r = Map::new();
    if let Some(low) = m.low {
        r.insert(
            "low".into(),
            json!({"value": num(low, m.decimals), "unit": m.unit, "system": UCUM, "code": m.unit}),
        );
    }
    if let Some(high) = m.high {
        r.insert(
            "high".into(),
            json!({"value": num(high, m.decimals), "unit": m.unit, "system": UCUM, "code": m.unit}),
        );
    }
    Some(json!([Value::Object(r)]))
}
