//! [`IndexValue`]: one value a resource is found by, and its stored form.

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
    #[serde(rename = "p")]
    pub param: String,
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
/// white space made one space. FHIR asks servers to ignore case and accents; a full
/// Unicode decomposition would need a normalisation crate, so the Latin letters with
/// diacritics (U+00C0 to U+017F, which covers the Western European names in health
/// data) are folded by a table.
pub fn normalize_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.trim().chars() {
        if ch.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
            continue;
        }
        space = false;
        match fold(ch) {
            Some(f) => out.push_str(f),
            None => out.extend(ch.to_lowercase()),
        }
    }
    out
}

fn fold(ch: char) -> Option<&'static str> {
    const LATIN1: [&str; 64] = [
        "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", // C0
        "d", "n", "o", "o", "o", "o", "o", "×", "o", "u", "u", "u", "u", "y", "th", "ss", // D0
        "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", // E0
        "d", "n", "o", "o", "o", "o", "o", "÷", "o", "u", "u", "u", "u", "y", "th", "y", // F0
    ];
    let c = ch as u32;
    let base = match c {
        0xC0..=0xFF => return Some(LATIN1[(c - 0xC0) as usize]).filter(|s| s.is_ascii()),
        0x100..=0x105 => "a",
        0x106..=0x10D => "c",
        0x10E..=0x111 => "d",
        0x112..=0x11B => "e",
        0x11C..=0x123 => "g",
        0x124..=0x127 => "h",
        0x128..=0x131 => "i",
        0x132..=0x133 => "ij",
        0x134..=0x135 => "j",
        0x136..=0x138 => "k",
        0x139..=0x142 => "l",
        0x143..=0x14B => "n",
        0x14C..=0x151 => "o",
        0x152..=0x153 => "oe",
        0x154..=0x159 => "r",
        0x15A..=0x161 | 0x17F => "s",
        0x162..=0x167 => "t",
        0x168..=0x173 => "u",
        0x174..=0x175 => "w",
        0x176..=0x178 => "y",
        0x179..=0x17E => "z",
        _ => return None,
    };
    Some(base)
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
