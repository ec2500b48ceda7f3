//! Dates (VR DA) and times (VR TM) of the header, as chrono values.
//!
//! Hand-written rather than dicom-core's partial-precision types: the index wants one
//! chrono value per attribute, and the same leniency as the readers people check against
//! (pydicom): a DA is `YYYYMMDD`, or the ACR-NEMA `YYYY.MM.DD` that old files still carry;
//! a TM is `HH[MM[SS[.F{1,6}]]]`, or the ACR-NEMA `HH:MM[:SS[.F]]`. A partial time stands
//! for its earliest instant (`10` is 10:00:00), and the original text is kept beside it,
//! so a range query can still tell `10` from `100000`.

use chrono::{NaiveDate, NaiveTime};

/// A time of day as stored (TM), with the chrono time it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeOfDay {
    /// The stored text, padding removed (e.g. `1015`, `101500.25`).
    pub text: String,
    /// The earliest instant the text denotes (`1015` is 10:15:00).
    pub time: NaiveTime,
}

/// Parses a DA value. `None` when it is not a valid date.
pub fn parse_date(value: &str) -> Option<NaiveDate> {
    let v = value.trim_matches([' ', '\0']);
    let digits: String = match v.len() {
        8 => v.to_string(),
        10 if v.as_bytes()[4] == b'.' && v.as_bytes()[7] == b'.' => v.replace('.', ""),
        _ => return None,
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits[0..4].parse().ok()?;
    let month = digits[4..6].parse().ok()?;
    let day = digits[6..8].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// Parses a TM value. `None` when it is not a valid time.
pub fn parse_time(value: &str) -> Option<TimeOfDay> {
    let text = value.trim_matches([' ', '\0']);
    let (clock, fraction) = match text.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (text, None),
    };
    let clock: String = if clock.contains(':') {
        // ACR-NEMA: HH:MM or HH:MM:SS, each part two digits.
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.concat()
    } else {
        clock.to_string()
    };
    if !matches!(clock.len(), 2 | 4 | 6) || !clock.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.is_some() && clock.len() != 6 {
        return None;
    }
    let hour: u32 = clock[0..2].parse().ok()?;
    let minute: u32 = clock.get(2..4).map_or(Some(0), |m| m.parse().ok())?;
    // A leap second (60) is allowed by PS3.5; it is read as :59 like pydicom does.
    let second: u32 = clock.get(4..6).map_or(Some(0), |s| s.parse().ok())?.min(59);
    let micros = match fraction {
        None => 0,
        Some(f) if (1..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<6}").parse().ok()?
        }
        Some(_) => return None,
    };
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
    Some(TimeOfDay {
        text: text.to_string(),
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_both_forms_and_invalid_ones() {
        let d = NaiveDate::from_ymd_opt(2004, 1, 19);
        assert_eq!(parse_date("20040119"), d);
        assert_eq!(parse_date("2004.01.19"), d);
        assert_eq!(parse_date("20041319"), None);
        assert_eq!(parse_date("2004"), None);
        assert_eq!(parse_date(""), None);
    }

    #[test]
    fn times_keep_their_precision_as_text() {
        let t = parse_time("1015").unwrap();
        assert_eq!(
            (t.text.as_str(), t.time),
            ("1015", NaiveTime::from_hms_opt(10, 15, 0).unwrap())
        );
        let t = parse_time("101530.25 ").unwrap();
        assert_eq!(
            t.time,
            NaiveTime::from_hms_micro_opt(10, 15, 30, 250_000).unwrap()
        );
        assert_eq!(
            parse_time("10:15:30").unwrap().time,
            NaiveTime::from_hms_opt(10, 15, 30).unwrap()
        );
        assert_eq!(parse_time("2500"), None);
        assert_eq!(parse_time("10.5"), None);
    }
}
