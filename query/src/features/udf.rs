//! The four SQL functions the generated plan needs, registered on the extraction's own
//! session only:
//!
//! - `fhir_instant(text | timestamp)`: a FHIR `date`, `dateTime` or `instant` as a UTC
//!   timestamp (µs), a partial date at the start of its period (`2020-03` is
//!   `2020-03-01T00:00:00Z`); anything else is null. DataFusion's own casts refuse
//!   partial dates and are typed without a zone, which does not compare with
//!   `last_updated`.
//! - `fhir_has_code(concept_json, system, 'c1,c2,...')`: whether a CodeableConcept (or
//!   a Coding) has a coding of `system` with one of the codes. The JSON functions reach
//!   one array element by its position, not "any element".
//! - `fhir_value_of(observation_json, system, code)`: the numeric `valueQuantity` of an
//!   Observation coded so, or else of its `component` coded so (a blood pressure panel
//!   carries systolic and diastolic as components); null if neither has one.
//! - `fhir_age_years(birth_date, at)`: whole years from a FHIR birth date to a time.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A FHIR date, dateTime or instant as UTC microseconds; partial dates at the start of
/// their period; a dateTime without a zone (not valid FHIR, but met) as UTC.
pub fn parse_fhir_instant(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc).timestamp_micros());
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(d.and_utc().timestamp_micros());
    }
    let date = parse_fhir_date(t)?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, at the first day of the period.
fn parse_fhir_date(t: &str) -> Option<NaiveDate> {
    let parts: Vec<&str> = t.split('-').collect();
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match parts.as_slice() {
        [y] => NaiveDate::from_ymd_opt(num(y, 4)? as i32, 1, 1),
        [y, m] => NaiveDate::from_ymd_opt(num(y, 4)? as i32, num(m, 2)?, 1),
        [y, m, d] => NaiveDate::from_ymd_opt(num(y, 4)? as i32, num(m, 2)?, num(d, 2)?),
        _ => None,
    }
}

/// Whole years from `birth` to the UTC date of `at` (microseconds).
fn age_years(birth: &str, at: i64) -> Option<i64> {
    let birth = parse_fhir_date(birth.get(..10.min(birth.len()))?)?;
    let at = DateTime::from_timestamp_micros(at)?.date_naive();
    let mut years = at.year() as i64 - birth.year() as i64;
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    (years >= 0).then_some(years)
}

/// The string values of an argument, as an array of `rows`.
fn strings(arg: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let a = arg.to_array(rows)?;
    Ok(match a.data_type() {
        DataType::Utf8 => a,
        _ => cast(&a, &DataType::Utf8)?,
    })
}

/// A scalar string argument (the system, the code list).
fn scalar_string(arg: &ColumnarValue, name: &str, what: &str) -> Result<String> {
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => Ok(s.clone()),
        _ => Err(DataFusionError::Plan(format!(
            "{name}: {what} must be a string literal"
        ))),
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FhirInstant {
    signature: Signature,
}

impl ScalarUDFImpl for FhirInstant {
    fn name(&self) -> &str {
        "fhir_instant"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(utc_micros())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let a = args.args[0].to_array(rows)?;
        let out: ArrayRef = match a.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                let a = strings(&args.args[0], rows)?;
                let s = a.as_string::<i32>();
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows);
                for i in 0..rows {
                    b.append_option(if s.is_null(i) {
                        None
                    } else {
                        parse_fhir_instant(s.value(i))
                    });
                }
                Arc::new(b.finish().with_timezone("UTC"))
            }
            // A timestamp without a zone is taken as UTC (arrow's cast keeps its value).
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                cast(&a, &utc_micros())?
            }
            DataType::Null => {
                Arc::new(TimestampMicrosecondArray::from(vec![None; rows]).with_timezone("UTC"))
            }
            other => {
                return Err(DataFusionError::Plan(format!(
                    "fhir_instant takes text, a timestamp or a date, not {other}"
                )));
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FhirHasCode {
    signature: Signature,
}

/// Whether a CodeableConcept or Coding has a coding of `system` (any system when empty)
/// with a code in `codes`.
fn has_code(concept: &Value, system: &str, codes: &HashSet<&str>) -> bool {
    let one = |c: &Value| {
        (system.is_empty() || c.get("system").and_then(Value::as_str) == Some(system))
            && c.get("code")
                .and_then(Value::as_str)
                .is_some_and(|code| codes.contains(code))
    };
    match concept.get("coding").and_then(Value::as_array) {
        Some(codings) => codings.iter().any(one),
        None => one(concept),
    }
}

impl ScalarUDFImpl for FhirHasCode {
    fn name(&self) -> &str {
        "fhir_has_code"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let system = scalar_string(&args.args[1], "fhir_has_code", "the system")?;
        let list = scalar_string(&args.args[2], "fhir_has_code", "the code list")?;
        let codes: HashSet<&str> = list.split(',').map(str::trim).collect();
        let a = strings(&args.args[0], rows)?;
        let s = a.as_string::<i32>();
        let mut b = BooleanBuilder::with_capacity(rows);
        for i in 0..rows {
            if s.is_null(i) {
                b.append_value(false);
                continue;
            }
            let found = serde_json::from_str::<Value>(s.value(i))
                .is_ok_and(|v| has_code(&v, &system, &codes));
            b.append_value(found);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// The numeric value of an Observation, or of its component, coded `system|code`.
fn value_of(observation: &Value, system: &str, code: &HashSet<&str>) -> Option<f64> {
    let quantity = |v: &Value| {
        v.get("valueQuantity")
            .and_then(|q| q.get("value"))
            .and_then(Value::as_f64)
    };
    if observation
        .get("code")
        .is_some_and(|c| has_code(c, system, code))
    {
        if let Some(v) = quantity(observation) {
            return Some(v);
        }
    }
    observation
        .get("component")
        .and_then(Value::as_array)?
        .iter()
        .filter(|c| c.get("code").is_some_and(|cc| has_code(cc, system, code)))
        .find_map(quantity)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FhirValueOf {
    signature: Signature,
}

impl ScalarUDFImpl for FhirValueOf {
    fn name(&self) -> &str {
        "fhir_value_of"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let system = scalar_string(&args.args[1], "fhir_value_of", "the system")?;
        let code = scalar_string(&args.args[2], "fhir_value_of", "the code")?;
        let codes: HashSet<&str> = code.split(',').map(str::trim).collect();
        let a = strings(&args.args[0], rows)?;
        let s = a.as_string::<i32>();
        let mut b = Float64Builder::with_capacity(rows);
        for i in 0..rows {
            let v = if s.is_null(i) {
                None
            } else {
                serde_json::from_str::<Value>(s.value(i))
                    .ok()
                    .and_then(|v| value_of(&v, &system, &codes))
            };
            b.append_option(v);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FhirAgeYears {
    signature: Signature,
}

impl ScalarUDFImpl for FhirAgeYears {
    fn name(&self) -> &str {
        "fhir_age_years"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let birth = strings(&args.args[0], rows)?;
        let birth = birth.as_string::<i32>();
        let at = args.args[1].to_array(rows)?;
        let at = cast(&at, &utc_micros())?;
        let at: &TimestampMicrosecondArray = at.as_primitive();
        let mut b = Int64Builder::with_capacity(rows);
        for i in 0..rows {
            b.append_option(if birth.is_null(i) || at.is_null(i) {
                None
            } else {
                age_years(birth.value(i), at.value(i))
            });
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// The functions, for a session's `register_udf`.
pub fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(FhirInstant {
            signature: Signature::any(1, Volatility::Immutable),
        }),
        ScalarUDF::from(FhirHasCode {
            signature: Signature::any(3, Volatility::Immutable),
        }),
        ScalarUDF::from(FhirAgeYears {
            signature: Signature::any(2, Volatility::Immutable),
        }),
        ScalarUDF::from(FhirValueOf {
            signature: Signature::any(3, Volatility::Immutable),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_partial_dates() {
        let t = |s: &str| {
            parse_fhir_instant(s).map(|m| DateTime::from_timestamp_micros(m).unwrap().to_rfc3339())
        };
        assert_eq!(
            t("2020-03-04T05:06:07+02:00").as_deref(),
            Some("2020-03-04T03:06:07+00:00")
        );
        assert_eq!(t("2020-03").as_deref(), Some("2020-03-01T00:00:00+00:00"));
        assert_eq!(t("2020").as_deref(), Some("2020-01-01T00:00:00+00:00"));
        assert_eq!(t("2020-02-30"), None);
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn ages_count_whole_years() {
        let at = parse_fhir_instant("2020-06-15T00:00:00Z").unwrap();
        assert_eq!(age_years("1980-06-15", at), Some(40));
        assert_eq!(age_years("1980-06-16", at), Some(39));
        assert_eq!(age_years("2021-01-01", at), None);
    }

    #[test]
    fn values_of_the_observation_or_its_component() {
        let panel: Value = serde_json::from_str(
            r#"{"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
                "component":[
                  {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":128}},
                  {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":81.5}}]}"#,
        )
        .unwrap();
        let of = |c: &str| value_of(&panel, "http://loinc.org", &[c].into());
        assert_eq!(of("8480-6"), Some(128.0));
        assert_eq!(of("8462-4"), Some(81.5));
        assert_eq!(of("85354-9"), None);
        let a1c: Value = serde_json::from_str(
            r#"{"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1}}"#,
        )
        .unwrap();
        assert_eq!(
            value_of(&a1c, "http://loinc.org", &["4548-4"].into()),
            Some(6.1)
        );
    }

    #[test]
    fn codes_in_any_coding() {
        let v: Value = serde_json::from_str(
            r#"{"coding":[{"system":"a","code":"1"},{"system":"http://loinc.org","code":"4548-4"}]}"#,
        )
        .unwrap();
        let set: HashSet<&str> = ["4548-4"].into();
        assert!(has_code(&v, "http://loinc.org", &set));
        assert!(!has_code(&v, "a", &set));
        let coding: Value = serde_json::from_str(r#"{"system":"a","code":"4548-4"}"#).unwrap();
        assert!(has_code(&coding, "a", &set));
    }
}
