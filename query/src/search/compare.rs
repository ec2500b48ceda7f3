//! Search values against index values: prefixes (`ge2024`), token forms (`system|code`)
//! and the precision rules of the R4 search specification.

use medlake_ingest::search::{IndexValue, ParamKind, date_range, normalize_string};

use super::SearchError;
use super::parse::split_escaped;

/// A comparison prefix of a number, date or quantity search value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

pub fn split_prefix(v: &str) -> (Prefix, &str) {
    let p = match v.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, v),
    };
    (p, &v[2..])
}

/// A date search value: its prefix and the instants it covers.
#[derive(Debug, Clone, Copy)]
pub struct DateQuery {
    pub prefix: Prefix,
    pub lo: i64,
    pub hi: i64,
}

impl DateQuery {
    pub fn parse(v: &str) -> Result<DateQuery, SearchError> {
        let (prefix, rest) = split_prefix(v);
        let (lo, hi) = date_range(rest).ok_or_else(|| {
            SearchError::Invalid(format!(
                "{v:?} is not a date search value (like 2024, ge2024-03-05 or lt2024-03-05T10:00:00Z)"
            ))
        })?;
        Ok(DateQuery { prefix, lo, hi })
    }

    /// Whether a value covering `[lo, hi]` matches.
    pub fn matches(&self, lo: i64, hi: i64) -> bool {
        let contained = lo >= self.lo && hi <= self.hi;
        match self.prefix {
            Prefix::Eq => contained,
            Prefix::Ne => !contained,
            Prefix::Gt => hi > self.hi,
            Prefix::Lt => lo < self.lo,
            Prefix::Ge => hi > self.hi || contained,
            Prefix::Le => lo < self.lo || contained,
            Prefix::Sa => lo > self.hi,
            Prefix::Eb => hi < self.lo,
            Prefix::Ap => {
                // Within 10% of the distance between the value and now, at least a day.
                let now = chrono::Utc::now().timestamp_micros();
                let gap = ((now - self.lo).abs() / 10).max(86_400_000_000);
                lo <= self.hi.saturating_add(gap) && hi >= self.lo.saturating_sub(gap)
            }
        }
    }
}

/// A number (or the number of a quantity) with the range its precision implies.
#[derive(Debug, Clone, Copy)]
pub struct NumberQuery {
    pub prefix: Prefix,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl NumberQuery {
    pub fn parse(v: &str) -> Result<NumberQuery, SearchError> {
        let (prefix, rest) = split_prefix(v);
        let value: f64 = rest
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .ok_or_else(|| {
                SearchError::Invalid(format!(
                    "{v:?} is not a number search value (like 100, gt5.4 or ap1e2)"
                ))
            })?;
        let mantissa = rest.split(['e', 'E']).next().unwrap_or(rest);
        let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len()) as i32;
        let exponent: i32 = rest
            .split_once(['e', 'E'])
            .and_then(|(_, e)| e.parse().ok())
            .unwrap_or(0);
        let half = 0.5 * 10f64.powi(exponent - decimals);
        Ok(NumberQuery {
            prefix,
            value,
            lo: value - half,
            hi: value + half,
        })
    }

    /// Whether a value `x` (or, for a Range, the values `lo..=hi`) matches.
    pub fn matches(&self, x: Option<f64>, lo: f64, hi: f64) -> bool {
        let Some(x) = x else {
            let contained = lo >= self.lo && hi <= self.hi;
            return match self.prefix {
                Prefix::Eq => contained,
                Prefix::Ne => !contained,
                Prefix::Gt | Prefix::Sa => hi > self.value,
                Prefix::Lt | Prefix::Eb => lo < self.value,
                Prefix::Ge => hi >= self.value,
                Prefix::Le => lo <= self.value,
                Prefix::Ap => lo <= self.value * 1.1 && hi >= self.value * 0.9,
            };
        };
        match self.prefix {
            Prefix::Eq => x >= self.lo && x < self.hi,
            Prefix::Ne => !(x >= self.lo && x < self.hi),
            Prefix::Gt | Prefix::Sa => x > self.value,
            Prefix::Lt | Prefix::Eb => x < self.value,
            Prefix::Ge => x >= self.value,
            Prefix::Le => x <= self.value,
            Prefix::Ap => (x - self.value).abs() <= (self.value * 0.1).abs(),
        }
    }
}

/// `[prefix]number|system|code`.
#[derive(Debug, Clone)]
pub struct QuantityQuery {
    pub number: NumberQuery,
    pub system: Option<String>,
    pub code: Option<String>,
}

impl QuantityQuery {
    pub fn parse(v: &str) -> Result<QuantityQuery, SearchError> {
        let parts = split_escaped(v, '|');
        let number = NumberQuery::parse(&parts[0])?;
        let nonempty = |i: usize| parts.get(i).filter(|s| !s.is_empty()).cloned();
        Ok(QuantityQuery {
            number,
            system: nonempty(1),
            code: nonempty(2),
        })
    }

    pub fn matches(&self, v: &IndexValue) -> bool {
        let IndexValue::Quantity {
            value,
            lo,
            hi,
            system,
            code,
            unit,
        } = v
        else {
            return false;
        };
        self.matches_parts(
            *value,
            *lo,
            *hi,
            system.as_deref(),
            code.as_deref(),
            unit.as_deref(),
        )
    }

    pub fn matches_parts(
        &self,
        value: Option<f64>,
        lo: f64,
        hi: f64,
        system: Option<&str>,
        code: Option<&str>,
        unit: Option<&str>,
    ) -> bool {
        if let Some(s) = &self.system
            && system != Some(s.as_str())
        {
            return false;
        }
        if let Some(c) = &self.code {
            // Without a system, the code may be the unit as written.
            let unit_ok = self.system.is_none() && unit == Some(c.as_str());
            if code != Some(c.as_str()) && !unit_ok {
                return false;
            }
        }
        self.number.matches(value, lo, hi)
    }
}

/// A token search value: `code`, `system|code`, `|code` or `system|`.
#[derive(Debug, Clone)]
pub enum TokenQuery {
    Code(String),
    SystemCode(String, String),
    NoSystem(String),
    System(String),
}

impl TokenQuery {
    pub fn parse(v: &str) -> TokenQuery {
        let parts = split_escaped(v, '|');
        match parts.as_slice() {
            [code] => TokenQuery::Code(code.clone()),
            [s, c] if s.is_empty() => TokenQuery::NoSystem(c.clone()),
            [s, c] if c.is_empty() => TokenQuery::System(s.clone()),
            [s, c, ..] => TokenQuery::SystemCode(s.clone(), c.clone()),
            [] => TokenQuery::Code(String::new()),
        }
    }

    pub fn matches(&self, v: &IndexValue) -> bool {
        let IndexValue::Token { system, code, .. } = v else {
            return false;
        };
        match self {
            TokenQuery::Code(c) => code.as_ref() == Some(c),
            TokenQuery::SystemCode(s, c) => system.as_ref() == Some(s) && code.as_ref() == Some(c),
            TokenQuery::NoSystem(c) => system.is_none() && code.as_ref() == Some(c),
            TokenQuery::System(s) => system.as_ref() == Some(s),
        }
    }
}

/// Whether one index value matches one search value of a parameter of `kind`, without
/// modifiers (for the components of a composite, which are checked value by value).
pub fn value_matches(kind: ParamKind, v: &IndexValue, q: &str) -> Result<bool, SearchError> {
    Ok(match kind {
        ParamKind::Token => TokenQuery::parse(q).matches(v),
        ParamKind::String => match v {
            IndexValue::String(s) => normalize_string(s).starts_with(&normalize_string(q)),
            _ => false,
        },
        ParamKind::Date => match v {
            IndexValue::Date(lo, hi) => DateQuery::parse(q)?.matches(*lo, *hi),
            _ => false,
        },
        ParamKind::Number => match v {
            IndexValue::Number(x, _, _) => NumberQuery::parse(q)?.matches(Some(*x), *x, *x),
            _ => false,
        },
        ParamKind::Quantity => QuantityQuery::parse(q)?.matches(v),
        ParamKind::Reference => match v {
            IndexValue::Reference {
                reference: Some(r), ..
            } => r == q || r.rsplit('/').next() == Some(q),
            _ => false,
        },
        ParamKind::Uri => matches!(v, IndexValue::Uri(u) if u == q),
        ParamKind::Composite => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_prefixes_follow_the_ranges_of_both_sides() {
        let day = |s| date_range(s).unwrap();
        let (lo, hi) = day("2024-03-05");
        assert!(DateQuery::parse("2024").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("2024-03").unwrap().matches(lo, hi));
        assert!(
            !DateQuery::parse("2024-03-05T10:00")
                .unwrap()
                .matches(lo, hi)
        );
        assert!(DateQuery::parse("ge2024-03-05").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("gt2024-03-04").unwrap().matches(lo, hi));
        assert!(!DateQuery::parse("gt2024-03-05").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("lt2024-03-06").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("le2024-03-05").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("sa2024-03-04").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("eb2024-03-06").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("ne2023").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("ap2024-03-06").unwrap().matches(lo, hi));
        assert!(DateQuery::parse("ge2024-13").is_err());
    }

    #[test]
    fn numbers_match_within_their_precision() {
        let q = NumberQuery::parse("100").unwrap();
        assert!(q.matches(Some(100.4), 0.0, 0.0));
        assert!(!q.matches(Some(100.5), 0.0, 0.0));
        let q = NumberQuery::parse("1e2").unwrap();
        assert!(q.matches(Some(140.0), 0.0, 0.0));
        assert!(
            NumberQuery::parse("gt5.4")
                .unwrap()
                .matches(Some(5.5), 0.0, 0.0)
        );
        assert!(
            NumberQuery::parse("ap100")
                .unwrap()
                .matches(Some(109.0), 0.0, 0.0)
        );
        assert!(
            !NumberQuery::parse("ap100")
                .unwrap()
                .matches(Some(111.0), 0.0, 0.0)
        );
        assert!(NumberQuery::parse("ten").is_err());
    }

    #[test]
    fn quantities_match_by_number_system_and_code() {
        let v = IndexValue::Quantity {
            value: Some(72.0),
            lo: 71.5,
            hi: 72.5,
            system: Some("http://unitsofmeasure.org".into()),
            code: Some("/min".into()),
            unit: Some("beats/min".into()),
        };
        assert!(QuantityQuery::parse("72").unwrap().matches(&v));
        assert!(
            QuantityQuery::parse("gt70|http://unitsofmeasure.org|/min")
                .unwrap()
                .matches(&v)
        );
        assert!(QuantityQuery::parse("72||beats/min").unwrap().matches(&v));
        assert!(
            !QuantityQuery::parse("72|http://snomed.info/sct|/min")
                .unwrap()
                .matches(&v)
        );
        assert!(!QuantityQuery::parse("lt70").unwrap().matches(&v));
    }

    #[test]
    fn token_forms() {
        let v = IndexValue::Token {
            system: Some("http://loinc.org".into()),
            code: Some("8867-4".into()),
            text: None,
            of_type: None,
        };
        assert!(TokenQuery::parse("8867-4").matches(&v));
        assert!(TokenQuery::parse("http://loinc.org|8867-4").matches(&v));
        assert!(TokenQuery::parse("http://loinc.org|").matches(&v));
        assert!(!TokenQuery::parse("|8867-4").matches(&v));
        assert!(!TokenQuery::parse("http://snomed.info/sct|8867-4").matches(&v));
    }
}
