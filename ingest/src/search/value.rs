//! [`IndexValue`]: one value a resource is found by, and its stored form.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::fhirpath::PartialDateTime;

/// A value of one search parameter, normalised for matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IndexValue {
    /// A code, from a Coding, CodeableConcept, Identifier, ContactPoint, code, boolean...
    /// `text` is the display or CodeableConcept text (for `:text`); `of_type` is an
    /// Identifier's type coding as `system|code` (for `:of-type`).
    #[serde(rename = "t")]
    Token {
        #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
        of_type: Option<String>,
    },
    /// A string as written; matching normalises it ([`normalize_string`]).
    #[serde(rename = "s")]
    String(String),
    /// `Type/id`, an absolute URL, or a canonical URL (without `|version`); and the
    /// logical identifier of the Reference as `(system, value)`, for `:identifier`.
    #[serde(rename = "r")]
    Reference {
        #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
        identifier: Option<(Option<String>, String)>,
    },
    /// The instants covered, in microseconds since the epoch, both ends inclusive.
    /// An open Period end is `i64::MIN` or `i64::MAX`.
    #[serde(rename = "d")]
    Date(i64, i64),
    /// A number, and the range its precision implies (`1.5` covers 1.45 to 1.55).
    #[serde(rename = "n")]
    Number(f64, f64, f64),
    /// A quantity: value, precision range, system, code and unit. A Range gives
    /// `value = None` and its low and high.
    #[serde(rename = "q")]
    Quantity {
        #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(rename = "l")]
        lo: f64,
        #[serde(rename = "h")]
        hi: f64,
        #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
    },
    #[serde(rename = "u")]
    Uri(String),
    /// One element selected by a composite parameter: for each component, its values.
    #[serde(rename = "c")]
    Composite(Vec<Vec<IndexValue>>),
}

/// One value of one parameter of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The parameter's code: borrowed from the static definitions when extracted, so
    /// that the 20 to 40 entries of a resource allocate no copy of it.
    #[serde(rename = "p")]
    pub param: Cow<'static, str>,
    #[serde(rename = "v")]
    pub value: IndexValue,
}

/// The stored form of a resource's entries (the `search` column): a JSON array.
pub fn encode(entries: &[IndexEntry]) -> String {
    serde_json::to_string(entries).unwrap_or_else(|_| "[]".to_string())
}

/// Read what [`encode`] wrote; `None` if it is not that.
pub fn decode(text: &str) -> Option<Vec<IndexEntry>> {
    serde_json::from_str(text).ok()
}

/// A string as string search compares it: lower case, accents removed, and runs of
/// white space made one space, as FHIR asks of string search. Accents go by Unicode
/// canonical decomposition (NFD) with the combining marks dropped; the few Latin
/// letters that do not decompose (`ß`, `æ`, `ø`, `đ`, `ł`, ...) are spelled out.
pub fn normalize_string(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.trim().nfd() {
        if ch.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        if is_combining_mark(ch) {
            continue;
        }
        match ch {
            'ß' => out.push_str("ss"),
            'æ' | 'Æ' => out.push_str("ae"),
            'œ' | 'Œ' => out.push_str("oe"),
            'ø' | 'Ø' => out.push('o'),
            'đ' | 'Đ' | 'ð' | 'Ð' => out.push('d'),
            'ł' | 'Ł' => out.push('l'),
            'þ' | 'Þ' => out.push_str("th"),
            'ı' => out.push('i'),
            _ => out.extend(ch.to_lowercase()),
        }
    }
    out
}

/// The instants a FHIR date, dateTime or instant covers, as microseconds since the
/// epoch, both ends inclusive: `2024` covers the whole year, `2024-03-05T10:00` a minute.
/// Without a time zone, a time is taken as UTC.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    let d = PartialDateTime::parse_date_time(text)?;
    use chrono::{Duration, Months, NaiveDate};
    let year = d.year?;
    let start = NaiveDate::from_ymd_opt(year, d.month.unwrap_or(1), d.day.unwrap_or(1))?;
    let start = start.and_hms_milli_opt(
        d.hour.unwrap_or(0),
        d.minute.unwrap_or(0),
        d.second.unwrap_or(0),
        d.millis.unwrap_or(0),
    )?;
    let end = if d.day.is_none() {
        start.checked_add_months(Months::new(if d.month.is_none() { 12 } else { 1 }))?
    } else if d.hour.is_none() {
        start + Duration::days(1)
    } else if d.minute.is_none() {
        start + Duration::hours(1)
    } else if d.second.is_none() {
        start + Duration::minutes(1)
    } else if d.millis.is_none() {
        start + Duration::seconds(1)
    } else {
        start + Duration::milliseconds(1)
    };
    let offset = i64::from(d.tz.unwrap_or(0)) * 60_000_000;
    let lo = start.and_utc().timestamp_micros() - offset;
    let hi = end.and_utc().timestamp_micros() - offset - 1;
    Some((lo, hi))
}
