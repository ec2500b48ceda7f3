//! System values: decimals with their written precision, partial dates and times, and
//! quantities with UCUM units.

use std::cmp::Ordering;

/// Above this many digits after the point, results of division and math functions are
/// rounded: FHIRPath asks for at least 8, and i128 has room for 28 with a useful integer
/// part.
const MAX_SCALE: u32 = 16;

/// A decimal number kept exactly as `mantissa / 10^scale`, so that `1.0` and `1.00`
/// keep their precision and `0.1 + 0.2 = 0.3` holds.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
    /// A zero that stands for a negative value too small for its precision: the low
    /// boundary of `-0.0034` at one digit is `-0.0`. Arithmetic never sets it, so
    /// `-0 = 0` and `-(0.0)` is plain zero.
    neg_zero: bool,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    pub fn from_i64(i: i64) -> Decimal {
        Decimal {
            mantissa: i128::from(i),
            scale: 0,
            neg_zero: false,
        }
    }

    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (body.contains('.') && frac.is_empty())
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        Some(Decimal {
            mantissa: if neg { -mantissa } else { mantissa },
            scale: frac.len() as u32,
            neg_zero: false,
        })
    }

    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        let d = Decimal::parse(&format!("{f}"))?;
        Some(d.rounded(MAX_SCALE).trimmed())
    }

    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }

    /// The number of digits after the point, as written.
    pub fn scale(self) -> u32 {
        self.scale
    }

    pub fn is_integer(self) -> bool {
        pow10(self.scale).is_some_and(|p| self.mantissa % p == 0)
    }

    pub fn to_i64(self) -> Option<i64> {
        let p = pow10(self.scale)?;
        i64::try_from(self.mantissa / p).ok()
    }

    fn with_scale(self, scale: u32) -> Option<Decimal> {
        if scale >= self.scale {
            Some(Decimal {
                mantissa: self.mantissa.checked_mul(pow10(scale - self.scale)?)?,
                scale,
                neg_zero: false,
            })
        } else {
            Some(self.rounded(scale))
        }
    }

    /// Drops trailing zeros after the point.
    pub fn trimmed(mut self) -> Decimal {
        while self.scale > 0 && self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale -= 1;
        }
        self
    }

    /// Rounds half away from zero to `digits` after the point.
    pub fn rounded(self, digits: u32) -> Decimal {
        if digits >= self.scale {
            return self;
        }
        let Some(p) = pow10(self.scale - digits) else {
            return Decimal {
                mantissa: 0,
                scale: digits,
                neg_zero: false,
            };
        };
        let q = self.mantissa / p;
        let r = self.mantissa % p;
        let adj = if r.abs() * 2 >= p { r.signum() } else { 0 };
        Decimal {
            mantissa: q + adj,
            scale: digits,
            neg_zero: false,
        }
    }

    pub fn truncated(self) -> Decimal {
        match pow10(self.scale) {
            Some(p) => Decimal {
                mantissa: self.mantissa / p,
                scale: 0,
                neg_zero: false,
            },
            None => Decimal {
                mantissa: 0,
                scale: 0,
                neg_zero: false,
            },
        }
    }

    pub fn floor(self) -> Decimal {
        let t = self.truncated();
        if self.mantissa < 0 && !self.is_integer() {
            Decimal {
                mantissa: t.mantissa - 1,
                scale: 0,
                neg_zero: false,
            }
        } else {
            t
        }
    }

    pub fn ceiling(self) -> Decimal {
        let t = self.truncated();
        if self.mantissa > 0 && !self.is_integer() {
            Decimal {
                mantissa: t.mantissa + 1,
                scale: 0,
                neg_zero: false,
            }
        } else {
            t
        }
    }

    fn aligned(self, other: Decimal) -> Option<(i128, i128, u32)> {
        let s = self.scale.max(other.scale);
        Some((
            self.with_scale(s)?.mantissa,
            other.with_scale(s)?.mantissa,
            s,
        ))
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let (a, b, s) = self.aligned(other)?;
        Some(Decimal {
            mantissa: a.checked_add(b)?,
            scale: s,
            neg_zero: false,
        })
    }

    pub fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        self.checked_add(other.negated())
    }

    pub fn negated(self) -> Decimal {
        Decimal {
            mantissa: -self.mantissa,
            scale: self.scale,
            neg_zero: false,
        }
    }

    pub fn abs(self) -> Decimal {
        Decimal {
            mantissa: self.mantissa.abs(),
            scale: self.scale,
            neg_zero: false,
        }
    }

    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        let d = Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale: self.scale + other.scale,
            neg_zero: false,
        };
        Some(if d.scale > MAX_SCALE {
            d.rounded(MAX_SCALE)
        } else {
            d
        })
    }

    pub fn checked_div(self, other: Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (a, b, _) = self.aligned(other)?;
        let mut extra = MAX_SCALE + 1;
        let num = loop {
            if let Some(n) = pow10(extra).and_then(|p| a.checked_mul(p)) {
                break n;
            }
            if extra == 0 {
                return None;
            }
            extra -= 1;
        };
        let d = Decimal {
            mantissa: num / b,
            scale: extra,
            neg_zero: false,
        };
        Some(
            d.rounded(extra.min(MAX_SCALE).saturating_sub(1).max(8))
                .trimmed(),
        )
    }

    pub fn checked_rem(self, other: Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        let (a, b, s) = self.aligned(other)?;
        Some(Decimal {
            mantissa: a % b,
            scale: s,
            neg_zero: false,
        })
    }

    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    pub fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    pub fn cmp_value(self, other: Decimal) -> Ordering {
        match self.aligned(other) {
            Some((a, b, _)) => a.cmp(&b),
            None => self.to_f64().total_cmp(&other.to_f64()),
        }
    }

    /// The least (or greatest) value this decimal may stand for given its precision,
    /// at `digits` digits after the point; `None` for a precision out of range.
    pub fn boundary(self, digits: i64, high: bool) -> Option<Decimal> {
        let digits = u32::try_from(digits).ok().filter(|d| *d <= 28)?;
        let half = Decimal {
            mantissa: 5,
            scale: self.scale + 1,
            neg_zero: false,
        };
        let x = if high {
            self.checked_add(half)?
        } else {
            self.checked_sub(half)?
        };
        // Within one unit of the last digit of zero, the boundary is zero.
        let unit = Decimal {
            mantissa: 1,
            scale: digits,
            neg_zero: false,
        };
        if x.abs().cmp_value(unit) == Ordering::Less && digits < x.scale {
            return Some(Decimal {
                mantissa: 0,
                scale: digits,
                neg_zero: x.mantissa < 0,
            });
        }
        let y = x.with_scale(x.scale.max(digits))?;
        let shift = pow10(y.scale - digits)?;
        let q = y.mantissa.div_euclid(shift);
        let r = y.mantissa.rem_euclid(shift);
        let m = if high && r != 0 { q + 1 } else { q };
        Some(Decimal {
            mantissa: m,
            scale: digits,
            neg_zero: m == 0 && x.mantissa < 0,
        })
    }

    /// Equivalence: equal when rounded to the precision of the less precise operand.
    pub fn equivalent(self, other: Decimal) -> bool {
        let s = self.scale.min(other.scale);
        self.rounded(s).cmp_value(other.rounded(s)) == Ordering::Equal
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let neg = self.mantissa < 0 || (self.mantissa == 0 && self.neg_zero);
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        let digits = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (int, frac) = digits.split_at(digits.len() - scale);
        if neg {
            f.write_str("-")?;
        }
        f.write_str(int)?;
        if !frac.is_empty() {
            write!(f, ".{frac}")?;
        }
        Ok(())
    }
}

/// A date, date-time or time with as many components as were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartialDateTime {
    pub year: Option<i32>,
    pub month: Option<u32>,
    pub day: Option<u32>,
    pub hour: Option<u32>,
    pub minute: Option<u32>,
    pub second: Option<u32>,
    pub millis: Option<u32>,
    /// Offset from UTC in minutes.
    pub tz: Option<i32>,
}

fn num(s: &str, len: usize) -> Option<u32> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl PartialDateTime {
    pub fn has_time(&self) -> bool {
        self.hour.is_some()
    }

    /// Parses `YYYY[-MM[-DD]][Thh[:mm[:ss[.fff]]][tz]]`, optionally ending in `T`.
    pub fn parse_date_time(s: &str) -> Option<PartialDateTime> {
        let (date, time) = match s.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut v = PartialDateTime::default();
        let mut parts = date.split('-');
        v.year = Some(num(parts.next()?, 4)? as i32);
        if let Some(m) = parts.next() {
            let m = num(m, 2)?;
            if !(1..=12).contains(&m) {
                return None;
            }
            v.month = Some(m);
            if let Some(d) = parts.next() {
                let d = num(d, 2)?;
                if d < 1 || d > days_in_month(v.year?, m) {
                    return None;
                }
                v.day = Some(d);
            }
        }
        if parts.next().is_some() {
            return None;
        }
        match time {
            Some("") => {}
            Some(t) => {
                v.day?;
                let t = v.parse_time_into(t, true)?;
                return Some(t);
            }
            None => {}
        }
        Some(v)
    }

    /// Parses `hh[:mm[:ss[.fff]]]`.
    pub fn parse_time(s: &str) -> Option<PartialDateTime> {
        PartialDateTime::default().parse_time_into(s, false)
    }

    fn parse_time_into(mut self, s: &str, allow_tz: bool) -> Option<PartialDateTime> {
        let (clock, tz) = if let Some(c) = s.strip_suffix('Z') {
            (c, Some(0))
        } else if let Some(pos) = s.rfind(['+', '-']) {
            let (c, z) = s.split_at(pos);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            (c, Some(sign * (num(h, 2)? as i32 * 60 + num(m, 2)? as i32)))
        } else {
            (s, None)
        };
        if tz.is_some() && !allow_tz {
            return None;
        }
        self.tz = tz;
        let mut parts = clock.split(':');
        let h = num(parts.next()?, 2)?;
        if h > 23 {
            return None;
        }
        self.hour = Some(h);
        if let Some(m) = parts.next() {
            let m = num(m, 2)?;
            if m > 59 {
                return None;
            }
            self.minute = Some(m);
            if let Some(sec) = parts.next() {
                let (sec, frac) = match sec.split_once('.') {
                    Some((s, f)) => (s, Some(f)),
                    None => (sec, None),
                };
                let sec = num(sec, 2)?;
                if sec > 59 {
                    return None;
                }
                self.second = Some(sec);
                if let Some(f) = frac {
                    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let ms: String = f.chars().chain("000".chars()).take(3).collect();
                    self.millis = ms.parse().ok();
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(self)
    }

    /// Components given, from year (1) to millisecond (7); for a time, from hour (4).
    pub fn precision(&self) -> u8 {
        [
            self.year.is_some(),
            self.month.is_some(),
            self.day.is_some(),
            self.hour.is_some(),
            self.minute.is_some(),
            self.second.is_some(),
            self.millis.is_some(),
        ]
        .iter()
        .rposition(|&b| b)
        .map_or(0, |p| p as u8 + 1)
    }

    /// Precision in digits, as `precision()` reports it: 4 (year) to 17 (milliseconds)
    /// for dates and date-times, 2 (hour) to 9 for times.
    pub fn digits_precision(&self) -> u8 {
        let is_time = self.year.is_none();
        let p = self.precision();
        let table: [u8; 8] = if is_time {
            [0, 0, 0, 0, 2, 4, 6, 9]
        } else {
            [0, 4, 6, 8, 10, 12, 14, 17]
        };
        table[usize::from(p.min(7))]
    }

    /// The earliest (or latest) moment this value may stand for, at `digits` digits of
    /// precision (see [`PartialDateTime::digits_precision`]).
    pub fn boundary(&self, digits: i64, high: bool, is_time: bool) -> Option<PartialDateTime> {
        let mut v = *self;
        if v.hour.is_some() && v.minute.is_none() {
            v.minute = Some(0);
        }
        let keep = |n: u8| i64::from(n) <= digits;
        if is_time {
            if !matches!(digits, 2 | 4 | 6 | 9) {
                return None;
            }
            v.minute = keep(4).then(|| v.minute.unwrap_or(if high { 59 } else { 0 }));
            v.second = keep(6).then(|| v.second.unwrap_or(if high { 59 } else { 0 }));
            v.millis = keep(9).then(|| v.millis.unwrap_or(if high { 999 } else { 0 }));
            return Some(v);
        }
        if !matches!(digits, 4 | 6 | 8 | 10 | 12 | 14 | 17) {
            return None;
        }
        let year = v.year?;
        v.month = keep(6).then(|| v.month.unwrap_or(if high { 12 } else { 1 }));
        let month = v.month.unwrap_or(1);
        v.day = keep(8).then(|| {
            v.day
                .unwrap_or(if high { days_in_month(year, month) } else { 1 })
        });
        v.hour = keep(10).then(|| v.hour.unwrap_or(if high { 23 } else { 0 }));
        v.minute = keep(12).then(|| v.minute.unwrap_or(if high { 59 } else { 0 }));
        v.second = keep(14).then(|| v.second.unwrap_or(if high { 59 } else { 0 }));
        v.millis = keep(17).then(|| v.millis.unwrap_or(if high { 999 } else { 0 }));
        if v.hour.is_some() && v.tz.is_none() {
            v.tz = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        if v.hour.is_none() {
            v.tz = None;
        }
        Some(v)
    }

    fn to_utc(self) -> PartialDateTime {
        let (Some(tz), Some(y), Some(mo), Some(d), Some(h)) =
            (self.tz, self.year, self.month, self.day, self.hour)
        else {
            return self;
        };
        let Some(date) = chrono::NaiveDate::from_ymd_opt(y, mo, d) else {
            return self;
        };
        let Some(dt) = date.and_hms_opt(h, self.minute.unwrap_or(0), 0) else {
            return self;
        };
        let dt = dt - chrono::Duration::minutes(i64::from(tz));
        use chrono::{Datelike, Timelike};
        PartialDateTime {
            year: Some(dt.year()),
            month: Some(dt.month()),
            day: Some(dt.day()),
            hour: Some(dt.hour()),
            minute: self.minute.map(|_| dt.minute()),
            tz: Some(0),
            ..self
        }
    }

    /// Compares component by component; `None` when the values differ only in how
    /// precise they are (the result is then unknown).
    pub fn compare(&self, other: &PartialDateTime) -> Option<Ordering> {
        let (a, b) = if self.tz.is_some() && other.tz.is_some() {
            (self.to_utc(), other.to_utc())
        } else if self.tz.is_some() != other.tz.is_some()
            && self.hour.is_some()
            && other.hour.is_some()
        {
            // Against a local time of unknown offset only different days are certain.
            match self.compare_date(other) {
                Some(Ordering::Equal) | None => return None,
                o => return o,
            }
        } else {
            (*self, *other)
        };
        let ca = [
            a.year.map(i64::from),
            a.month.map(i64::from),
            a.day.map(i64::from),
            a.hour.map(i64::from),
            a.minute.map(i64::from),
            a.second
                .map(|s| i64::from(s) * 1000 + i64::from(a.millis.unwrap_or(0))),
        ];
        let cb = [
            b.year.map(i64::from),
            b.month.map(i64::from),
            b.day.map(i64::from),
            b.hour.map(i64::from),
            b.minute.map(i64::from),
            b.second
                .map(|s| i64::from(s) * 1000 + i64::from(b.millis.unwrap_or(0))),
        ];
        let mut started = false;
        for (x, y) in ca.iter().zip(cb.iter()) {
            match (x, y) {
                (Some(x), Some(y)) => {
                    started = true;
                    if x != y {
                        return Some(x.cmp(y));
                    }
                }
                (None, None) if !started => {}
                (None, None) => return Some(Ordering::Equal),
                _ => return None,
            }
        }
        Some(Ordering::Equal)
    }

    fn compare_date(&self, other: &PartialDateTime) -> Option<Ordering> {
        let strip = |v: &PartialDateTime| PartialDateTime {
            year: v.year,
            month: v.month,
            day: v.day,
            ..PartialDateTime::default()
        };
        let o = strip(self).compare(&strip(other))?;
        // Offsets shift a time by at most 14 hours, less than a day either way... unless
        // the days are adjacent.
        match (
            self.year,
            other.year,
            self.month,
            other.month,
            self.day,
            other.day,
        ) {
            (Some(_), Some(_), Some(_), Some(_), Some(d1), Some(d2))
                if o != Ordering::Equal && d1.abs_diff(d2) <= 1 =>
            {
                None
            }
            _ => Some(o),
        }
    }

    pub fn format_date(&self) -> String {
        let mut s = format!("{:04}", self.year.unwrap_or(0));
        if let Some(m) = self.month {
            s += &format!("-{m:02}");
        }
        if let Some(d) = self.day {
            s += &format!("-{d:02}");
        }
        s
    }

    pub fn format_time(&self) -> String {
        let mut s = format!("{:02}", self.hour.unwrap_or(0));
        if let Some(m) = self.minute {
            s += &format!(":{m:02}");
        }
        if let Some(sec) = self.second {
            s += &format!(":{sec:02}");
        }
        if let Some(ms) = self.millis {
            s += &format!(".{ms:03}");
        }
        s
    }

    pub fn format_tz(&self) -> String {
        match self.tz {
            None => String::new(),
            Some(0) => "Z".into(),
            Some(m) => format!(
                "{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.abs() / 60,
                m.abs() % 60
            ),
        }
    }

    pub fn format_date_time(&self) -> String {
        if self.hour.is_some() {
            format!(
                "{}T{}{}",
                self.format_date(),
                self.format_time(),
                self.format_tz()
            )
        } else {
            self.format_date()
        }
    }

    /// Adds a calendar or UCUM time quantity; `None` if the unit is not a duration.
    pub fn add_duration(
        &self,
        amount: Decimal,
        unit: &str,
        is_time: bool,
    ) -> Option<PartialDateTime> {
        let unit = calendar_unit(unit)?;
        let n = amount.truncated().to_i64()?;
        let mut v = *self;
        match unit {
            "year" => {
                if is_time {
                    return None;
                }
                v.year = Some(v.year?.checked_add(i32::try_from(n).ok()?)?);
                v.clamp_day();
            }
            "month" => {
                if is_time {
                    return None;
                }
                if v.month.is_none() {
                    v.year = Some(v.year? + i32::try_from(n / 12).ok()?);
                } else {
                    let total = i64::from(v.year?) * 12 + i64::from(v.month? - 1) + n;
                    v.year = Some(i32::try_from(total.div_euclid(12)).ok()?);
                    v.month = Some(total.rem_euclid(12) as u32 + 1);
                    v.clamp_day();
                }
            }
            "week" => return v.add_seconds(n.checked_mul(7 * 86400)?, is_time, 3),
            "day" => return v.add_seconds(n.checked_mul(86400)?, is_time, 3),
            "hour" => return v.add_seconds(n.checked_mul(3600)?, is_time, 4),
            "minute" => return v.add_seconds(n.checked_mul(60)?, is_time, 5),
            // Seconds keep their decimal part (N1 truncates only above seconds).
            "second" | "millisecond" => {
                let per = if unit == "second" { 1000 } else { 1 };
                let ms = amount
                    .checked_mul(Decimal::from_i64(per))?
                    .truncated()
                    .to_i64()?;
                if !is_time && v.precision() < 6 {
                    return v.add_seconds(ms / 1000, is_time, 6);
                }
                return v.add_millis(ms, is_time);
            }
            _ => return None,
        }
        Some(v)
    }

    fn clamp_day(&mut self) {
        if let (Some(y), Some(m), Some(d)) = (self.year, self.month, self.day) {
            self.day = Some(d.min(days_in_month(y, m)));
        }
    }

    fn add_seconds(self, secs: i64, is_time: bool, unit_precision: u8) -> Option<PartialDateTime> {
        // A value less precise than the unit keeps its precision: the amount is
        // converted to the value's finest unit and truncated (`@2016 + 366 days` is
        // @2017, `@2016 + 364 days` stays @2016). Days go to years at 365 and to months
        // at 30, as a calendar duration cannot be converted exactly.
        let p = self.precision();
        let mut v = self;
        let secs = match p {
            _ if is_time => secs,
            1 if unit_precision >= 3 => {
                let years = i32::try_from(secs / (365 * 86400)).ok()?;
                v.year = Some(v.year?.checked_add(years)?);
                return Some(v);
            }
            2 if unit_precision >= 3 => {
                let months =
                    i64::from(v.year?) * 12 + i64::from(v.month? - 1) + secs / (30 * 86400);
                v.year = Some(i32::try_from(months.div_euclid(12)).ok()?);
                v.month = Some(months.rem_euclid(12) as u32 + 1);
                return Some(v);
            }
            3 => (secs / 86400) * 86400,
            4 => (secs / 3600) * 3600,
            5 => (secs / 60) * 60,
            _ => secs,
        };
        self.add_millis(secs.checked_mul(1000)?, is_time)
    }

    fn add_millis(self, ms: i64, is_time: bool) -> Option<PartialDateTime> {
        use chrono::{Datelike, Timelike};
        let base_date = if is_time {
            chrono::NaiveDate::from_ymd_opt(2000, 1, 1)?
        } else {
            chrono::NaiveDate::from_ymd_opt(
                self.year?,
                self.month.unwrap_or(1),
                self.day.unwrap_or(1),
            )?
        };
        let dt = base_date.and_hms_milli_opt(
            self.hour.unwrap_or(0),
            self.minute.unwrap_or(0),
            self.second.unwrap_or(0),
            self.millis.unwrap_or(0),
        )?;
        let dt = dt.checked_add_signed(chrono::Duration::milliseconds(ms))?;
        let mut v = self;
        if !is_time {
            v.year = Some(dt.year());
            v.month = self.month.map(|_| dt.month());
            v.day = self.day.map(|_| dt.day());
        }
        v.hour = self.hour.map(|_| dt.hour());
        v.minute = self.minute.map(|_| dt.minute());
        v.second = self.second.map(|_| dt.second());
        v.millis = self.millis.map(|_| dt.nanosecond() / 1_000_000);
        Some(v)
    }
}

/// The calendar duration a unit stands for (`years`, `'a'`, `'mo'` ... all map to one
/// name), or `None`.
pub fn calendar_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "year" | "years" | "a" => "year",
        "month" | "months" | "mo" => "month",
        "week" | "weeks" | "wk" => "week",
        "day" | "days" | "d" => "day",
        "hour" | "hours" | "h" => "hour",
        "minute" | "minutes" | "min" => "minute",
        "second" | "seconds" | "s" => "second",
        "millisecond" | "milliseconds" | "ms" => "millisecond",
        _ => return None,
    })
}

/// A quantity: a decimal and a UCUM (or calendar) unit.
#[derive(Debug, Clone)]
pub struct Quantity {
    pub value: Decimal,
    pub unit: String,
}

/// A UCUM unit as a factor of a base unit of its dimension, for the simple units that
/// FHIR data and the test suite use.
pub(crate) fn ucum_base(unit: &str) -> Option<(&'static str, Decimal)> {
    let d = |s: &str| Decimal::parse(s);
    Some(match unit {
        "1" | "" => ("1", d("1")?),
        "%" => ("1", d("0.01")?),
        "g" => ("g", d("1")?),
        "mg" => ("g", d("0.001")?),
        "ug" => ("g", d("0.000001")?),
        "kg" => ("g", d("1000")?),
        "[lb_av]" | "lbs" => ("g", d("453.59237")?),
        "m" => ("m", d("1")?),
        "cm" => ("m", d("0.01")?),
        "mm" => ("m", d("0.001")?),
        "km" => ("m", d("1000")?),
        "[in_i]" => ("m", d("0.0254")?),
        "L" | "l" => ("L", d("1")?),
        "mL" | "ml" => ("L", d("0.001")?),
        "dL" => ("L", d("0.1")?),
        "s" | "second" | "seconds" => ("s", d("1")?),
        "ms" | "millisecond" | "milliseconds" => ("s", d("0.001")?),
        "min" | "minute" | "minutes" => ("s", d("60")?),
        "h" | "hour" | "hours" => ("s", d("3600")?),
        "d" | "day" | "days" => ("s", d("86400")?),
        "wk" | "week" | "weeks" => ("s", d("604800")?),
        "mo" => ("s", d("2629800")?),
        "a" => ("s", d("31557600")?),
        _ => return None,
    })
}

fn is_calendar_year_month(unit: &str) -> bool {
    matches!(unit, "year" | "years" | "month" | "months")
}

impl Quantity {
    /// The value in the base unit of its dimension, for comparing.
    fn base(&self) -> Option<(&'static str, Decimal)> {
        let (dim, f) = ucum_base(&self.unit)?;
        Some((dim, self.value.checked_mul(f)?))
    }

    /// Orders two quantities; `None` if they are not comparable.
    pub fn compare(&self, other: &Quantity) -> Option<Ordering> {
        if self.unit == other.unit {
            return Some(self.value.cmp_value(other.value));
        }
        if is_calendar_year_month(&self.unit) || is_calendar_year_month(&other.unit) {
            if calendar_unit(&self.unit) == calendar_unit(&other.unit) {
                return Some(self.value.cmp_value(other.value));
            }
            return None;
        }
        let (da, a) = self.base()?;
        let (db, b) = other.base()?;
        (da == db).then(|| a.cmp_value(b))
    }

    /// Whether the two can be compared or added: the same unit, or units of one dimension
    /// (`cm` and `[in_i]`), as far as the known UCUM units go.
    pub fn comparable(&self, other: &Quantity) -> bool {
        self.compare(other).is_some()
    }

    /// `=`: `Some(false)` for different dimensions, `None` when not comparable.
    pub fn equals(&self, other: &Quantity) -> Option<bool> {
        if self.unit != other.unit
            && (is_calendar_year_month(&self.unit) != is_calendar_year_month(&other.unit))
        {
            return None;
        }
        self.compare(other).map(|o| o == Ordering::Equal)
    }

    /// `~`: like `=`, but calendar and UCUM durations match and the less precise value
    /// decides the precision.
    pub fn equivalent(&self, other: &Quantity) -> bool {
        if calendar_unit(&self.unit).is_some()
            && calendar_unit(&self.unit) == calendar_unit(&other.unit)
        {
            return self.value.equivalent(other.value);
        }
        match (self.base(), other.base()) {
            (Some((da, a)), Some((db, b))) if da == db => {
                let s = self.value.scale().min(other.value.scale());
                a.rounded(s).cmp_value(b.rounded(s)) == Ordering::Equal
            }
            _ => self.unit == other.unit && self.value.equivalent(other.value),
        }
    }

    pub fn format(&self) -> String {
        if calendar_unit(&self.unit).is_some()
            && self.unit.chars().all(|c| c.is_ascii_alphabetic())
            && self.unit.len() > 3
        {
            format!("{} {}", self.value, self.unit)
        } else {
            format!("{} '{}'", self.value, self.unit)
        }
    }
}
