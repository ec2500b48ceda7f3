//! Format checks of the FHIR R4 primitive types, hand-written after the regexes of the
//! R4 specification (faster than the `regex` crate, and they also check the calendar:
//! `1990-02-30` matches the date regex but is no date).

use serde_json::Value;

use super::defs::Prim;

/// Why a primitive value is wrong.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PrimError {
    /// The JSON kind is wrong (a string where a boolean is expected, ...).
    Kind,
    /// The JSON kind is right but the value does not match the format; with an optional
    /// explanation (`month 13 is not 01-12`).
    Format(Option<String>),
}

type Check = Result<(), PrimError>;

fn bad() -> Check {
    Err(PrimError::Format(None))
}

fn bad_because(why: String) -> Check {
    Err(PrimError::Format(Some(why)))
}

/// Check one JSON value against a primitive type. `null` is handled by the caller.
pub(super) fn check(prim: Prim, v: &Value) -> Check {
    match prim {
        Prim::Boolean => match v {
            Value::Bool(_) => Ok(()),
            _ => Err(PrimError::Kind),
        },
        Prim::Decimal => match v {
            Value::Number(_) => Ok(()),
            _ => Err(PrimError::Kind),
        },
        Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt => {
            let Value::Number(n) = v else {
                return Err(PrimError::Kind);
            };
            let lo = match prim {
                Prim::Integer => i64::from(i32::MIN),
                Prim::UnsignedInt => 0,
                _ => 1,
            };
            match n.as_i64() {
                Some(i) if i >= lo && i <= i64::from(i32::MAX) => Ok(()),
                Some(_) => bad_because(format!("out of range {lo}..{}", i32::MAX)),
                None if n.is_u64() => bad_because(format!("out of range {lo}..{}", i32::MAX)),
                None => {
                    bad_because("a whole number is required, with no fraction or exponent".into())
                }
            }
        }
        _ => {
            let Value::String(s) = v else {
                return Err(PrimError::Kind);
            };
            check_str(prim, s)
        }
    }
}

/// `\s` of the FHIR regexes (Java): space, tab, newline, vertical tab, form feed, return.
#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn check_str(prim: Prim, s: &str) -> Check {
    if s.is_empty() {
        return bad_because("empty strings are not allowed; leave the element out".into());
    }
    let b = s.as_bytes();
    match prim {
        // [ \r\n\t\S]+
        Prim::String | Prim::Markdown => {
            if b.iter().any(|&c| c == 0x0b || c == 0x0c) {
                return bad_because("vertical tab and form feed are not allowed".into());
            }
            Ok(())
        }
        Prim::Xhtml => Ok(()),
        // \S*
        Prim::Uri | Prim::Url | Prim::Canonical => {
            if b.iter().any(|&c| is_ws(c)) {
                return bad_because("whitespace is not allowed".into());
            }
            Ok(())
        }
        // [^\s]+(\s[^\s]+)*
        Prim::Code => {
            if is_ws(b[0])
                || is_ws(b[b.len() - 1])
                || b.windows(2).any(|w| is_ws(w[0]) && is_ws(w[1]))
            {
                return bad();
            }
            Ok(())
        }
        // [A-Za-z0-9\-\.]{1,64}
        Prim::Id | Prim::ResourceId => {
            if b.len() > 64 {
                return bad_because(format!("{} characters, more than 64", s.chars().count()));
            }
            if !b
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
            {
                return bad();
            }
            Ok(())
        }
        // urn:oid:[0-2](\.(0|[1-9][0-9]*))+
        Prim::Oid => {
            let Some(rest) = s.strip_prefix("urn:oid:") else {
                return bad();
            };
            let mut parts = rest.split('.');
            match parts.next() {
                Some("0" | "1" | "2") => {}
                _ => return bad(),
            }
            let mut n = 0;
            for p in parts {
                let pb = p.as_bytes();
                if pb.is_empty()
                    || !pb.iter().all(u8::is_ascii_digit)
                    || (pb.len() > 1 && pb[0] == b'0')
                {
                    return bad();
                }
                n += 1;
            }
            if n == 0 {
                return bad();
            }
            Ok(())
        }
        // urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
        Prim::Uuid => {
            let Some(rest) = s.strip_prefix("urn:uuid:") else {
                return bad();
            };
            let r = rest.as_bytes();
            if r.len() != 36 {
                return bad();
            }
            for (i, &c) in r.iter().enumerate() {
                let ok = if matches!(i, 8 | 13 | 18 | 23) {
                    c == b'-'
                } else {
                    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
                };
                if !ok {
                    return bad();
                }
            }
            Ok(())
        }
        // (\s*([0-9a-zA-Z\+/=]){4}\s*)+  (whitespace is accepted anywhere)
        Prim::Base64Binary => {
            let mut n = 0usize;
            for &c in b {
                if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
                    n += 1;
                } else if !is_ws(c) {
                    return bad_because(format!("'{}' is not a base64 character", c as char));
                }
            }
            if n == 0 || !n.is_multiple_of(4) {
                return bad_because(
                    "the number of base64 characters must be a multiple of 4".into(),
                );
            }
            Ok(())
        }
        Prim::Date => check_date(b),
        Prim::DateTime => check_date_time(b),
        Prim::Instant => {
            if b.len() <= 10 {
                return bad_because("an instant needs a full date, time and time zone".into());
            }
            check_date_time(b)
        }
        Prim::Time => {
            let n = time(b)?;
            if n != b.len() {
                return bad();
            }
            Ok(())
        }
        Prim::Boolean | Prim::Decimal | Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt => {
            // Handled in `check`: never strings.
            Err(PrimError::Kind)
        }
    }
}

#[inline]
fn digits2(b: &[u8], at: usize) -> Option<u32> {
    let (h, l) = (*b.get(at)?, *b.get(at + 1)?);
    if h.is_ascii_digit() && l.is_ascii_digit() {
        Some(u32::from(h - b'0') * 10 + u32::from(l - b'0'))
    } else {
        None
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` at the start of `b`, of exactly `len` bytes (4, 7 or
/// 10), with a real calendar date.
fn date_prefix(b: &[u8], len: usize) -> Check {
    let year = match (digits2(b, 0), digits2(b, 2)) {
        (Some(h), Some(l)) => h * 100 + l,
        _ => return bad(),
    };
    if year == 0 {
        return bad_because("year 0000 does not exist".into());
    }
    if len == 4 {
        return Ok(());
    }
    if b[4] != b'-' {
        return bad();
    }
    let Some(month) = digits2(b, 5) else {
        return bad();
    };
    if !(1..=12).contains(&month) {
        return bad_because(format!("month {month:02} is not 01-12"));
    }
    if len == 7 {
        return Ok(());
    }
    if b[7] != b'-' {
        return bad();
    }
    let Some(day) = digits2(b, 8) else {
        return bad();
    };
    let max = days_in_month(year, month);
    if day == 0 || day > max {
        return bad_because(format!("{year:04}-{month:02} has no day {day:02}"));
    }
    Ok(())
}

/// date: `([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?`
fn check_date(b: &[u8]) -> Check {
    match b.len() {
        4 | 7 | 10 => date_prefix(b, b.len()),
        _ => bad(),
    }
}

/// dateTime: a date, or a full date with `Thh:mm:ss(.s+)` and a time zone.
fn check_date_time(b: &[u8]) -> Check {
    if b.len() <= 10 {
        return check_date(b);
    }
    date_prefix(b, 10)?;
    if b[10] != b'T' {
        return bad();
    }
    let n = time(&b[11..])?;
    let zone = &b[11 + n..];
    match zone {
        [] => bad_because("a time zone (Z or +hh:mm) is required with a time".into()),
        [b'Z'] => Ok(()),
        [sign, _, _, b':', _, _] if *sign == b'+' || *sign == b'-' => {
            match (digits2(zone, 1), digits2(zone, 4)) {
                (Some(h), Some(m)) if (h <= 13 && m <= 59) || (h == 14 && m == 0) => Ok(()),
                _ => bad_because("the time zone offset must be between -14:00 and +14:00".into()),
            }
        }
        _ => bad(),
    }
}

/// `hh:mm:ss(.s+)?` at the start of `b`; the number of bytes it takes.
fn time(b: &[u8]) -> Result<usize, PrimError> {
    let (Some(h), Some(m), Some(s)) = (digits2(b, 0), digits2(b, 3), digits2(b, 6)) else {
        return Err(PrimError::Format(None));
    };
    if b[2] != b':' || b[5] != b':' {
        return Err(PrimError::Format(None));
    }
    if h > 23 || m > 59 || s > 60 {
        return Err(PrimError::Format(Some(format!(
            "{h:02}:{m:02}:{s:02} is not a time of day"
        ))));
    }
    let mut n = 8;
    if b.get(8) == Some(&b'.') {
        let digits = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(PrimError::Format(None));
        }
        n = 9 + digits;
    }
    Ok(n)
}

/// What a valid value of the type looks like, for messages.
pub(super) fn expected(prim: Prim) -> &'static str {
    match prim {
        Prim::Base64Binary => "base64-encoded data",
        Prim::Boolean => "true or false",
        Prim::Canonical | Prim::Uri | Prim::Url => "a URI without whitespace",
        Prim::Code => "a code: no leading, trailing or repeated whitespace",
        Prim::Date => "YYYY, YYYY-MM or YYYY-MM-DD",
        Prim::DateTime => "YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss(.sss) with Z or +hh:mm",
        Prim::Decimal => "a JSON number",
        Prim::Id | Prim::ResourceId => "1-64 characters of A-Z, a-z, 0-9, '-' and '.'",
        Prim::Instant => "YYYY-MM-DDThh:mm:ss(.sss) with Z or +hh:mm",
        Prim::Integer => "a JSON integer in the 32-bit range",
        Prim::Markdown | Prim::String => "a non-empty JSON string",
        Prim::Oid => "urn:oid: followed by a dotted OID such as 1.2.3",
        Prim::PositiveInt => "a JSON integer >= 1",
        Prim::Time => "hh:mm:ss(.sss)",
        Prim::UnsignedInt => "a JSON integer >= 0",
        Prim::Uuid => "urn:uuid: followed by a lowercase UUID",
        Prim::Xhtml => "a non-empty XHTML string",
    }
}

/// The JSON kind a primitive takes, for messages.
pub(super) fn json_kind(prim: Prim) -> &'static str {
    match prim {
        Prim::Boolean => "boolean",
        Prim::Decimal => "number",
        Prim::Integer | Prim::UnsignedInt | Prim::PositiveInt => "integer",
        _ => "string",
    }
}
