//! The feature spec: what a client writes (TOML or JSON), and its checks.
//!
//! Every field is named in the spec's own vocabulary and unknown fields are refused, so a
//! typo fails with the key it names instead of silently giving fewer features. The
//! checks after parsing ([`FeatureSpec::check`]) say what to change.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::FeatureError;
use super::udf::parse_fhir_instant;

/// A feature extraction: who, when, which features, which label, which split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub cohort: Cohort,
    /// Which facts count as known at the index time (see the module doc).
    #[serde(default)]
    pub point_in_time: PointInTime,
    /// Demographics at the index time: `age` (whole years), `gender`.
    #[serde(default)]
    pub demographics: Vec<Demographic>,
    /// Statistics of numeric Observations, per LOINC code.
    #[serde(default, rename = "observation")]
    pub observations: Vec<ObservationFeature>,
    /// Flags: a Condition of a code set known at the index time.
    #[serde(default, rename = "condition")]
    pub conditions: Vec<ConditionFeature>,
    /// Counts of MedicationRequests authored in each lookback.
    #[serde(default)]
    pub medications: Option<Counts>,
    /// Counts of Encounters started in each lookback, in all and per class.
    #[serde(default)]
    pub encounters: Option<EncounterCounts>,
    /// Where the descendants of SNOMED codes come from, for `descendants = true`.
    #[serde(default)]
    pub code_sets: Option<CodeSets>,
    pub label: Option<Label>,
    #[serde(default)]
    pub split: Split,
}

/// The patients and their index times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cohort {
    /// A read-only query returning a column `patient_id` (and the index time column, if
    /// `index_time_column` names one).
    pub sql: Option<String>,
    /// A FHIR search of Patients, e.g. `Patient?gender=female&birthdate=lt1980`.
    pub search: Option<String>,
    /// One index time for every patient (a FHIR dateTime, e.g. `2024-01-01T00:00:00Z`).
    pub index_time: Option<String>,
    /// The column of the cohort query holding each row's index time.
    pub index_time_column: Option<String>,
}

/// Which versions of the facts a feature sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointInTime {
    /// Only what the lake had recorded by the index time (`last_updated`), and only
    /// facts whose clinical time is not after it.
    #[default]
    Recorded,
    /// The current versions, filtered by clinical time only: for a lake whose history
    /// was loaded in one go, where `last_updated` is the load time of everything.
    Clinical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Demographic {
    Age,
    Gender,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationFeature {
    pub loinc: String,
    /// The column name stem; `loinc_<code>` by default.
    pub name: Option<String>,
    pub lookbacks: Vec<String>,
    /// Which of `last`, `min`, `max`, `mean`, `count`; all by default.
    pub stats: Option<Vec<Stat>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    Last,
    Min,
    Max,
    Mean,
    Count,
}

impl Stat {
    pub const ALL: [Stat; 5] = [Stat::Last, Stat::Min, Stat::Max, Stat::Mean, Stat::Count];
    pub fn name(self) -> &'static str {
        match self {
            Stat::Last => "last",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Mean => "mean",
            Stat::Count => "count",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionFeature {
    pub name: String,
    pub snomed: Vec<String>,
    /// Include the descendants of the codes, from `[code_sets]`.
    #[serde(default)]
    pub descendants: bool,
    /// Only onsets within this lookback; any time before the index by default.
    pub lookback: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub lookbacks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncounterCounts {
    pub lookbacks: Vec<String>,
    /// `Encounter.class` codes (v3 ActCode: `AMB`, `EMER`, `IMP`, ...) counted apart.
    #[serde(default)]
    pub classes: Vec<String>,
}

/// `ancestor, descendant` pairs of a code system's hierarchy (a transitive closure:
/// every descendant, not only children, though children are followed transitively).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSets {
    /// A CSV file with a header and the columns `ancestor,descendant` (the CLI only;
    /// relative to the spec file).
    pub csv: Option<String>,
    /// A read-only query returning the columns `ancestor` and `descendant`.
    pub sql: Option<String>,
    /// The pairs inline.
    pub pairs: Option<Vec<(String, String)>>,
}

/// What is predicted: whether something happens in `(index, index + within]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub within: String,
    /// A Condition with an onset in the window, of this code set.
    pub condition: Option<LabelCondition>,
    /// An Encounter of this class (`EMER`, `IMP`, ...) starting in the window.
    pub encounter_class: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelCondition {
    pub snomed: Vec<String>,
    #[serde(default)]
    pub descendants: bool,
}

/// The train/test split, by patient.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

fn default_test_fraction() -> f64 {
    0.2
}

impl Default for Split {
    fn default() -> Self {
        Split {
            test_fraction: default_test_fraction(),
            seed: 0,
        }
    }
}

/// A lookback or label window in days, from `30d`, `12h` or `52w`.
pub fn parse_window(text: &str, what: &str) -> Result<Window, FeatureError> {
    let bad = || {
        FeatureError::Spec(format!(
            "{what}: {text:?} is not a duration: write a whole number followed by d (days), \
             h (hours) or w (weeks), e.g. \"365d\""
        ))
    };
    let t = text.trim();
    let unit_at = t.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = t.split_at(unit_at);
    let n: u32 = number.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(FeatureError::Spec(format!(
            "{what}: {text:?} is empty: a window needs at least 1 unit"
        )));
    }
    let hours = match unit {
        "h" => n as u64,
        "d" => n as u64 * 24,
        "w" => n as u64 * 24 * 7,
        _ => return Err(bad()),
    };
    Ok(Window {
        label: format!("{n}{unit}"),
        hours,
    })
}

/// A window: how it is named in columns and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub label: String,
    pub hours: u64,
}

impl Window {
    /// The SQL interval.
    pub fn interval(&self) -> String {
        format!("INTERVAL '{} hours'", self.hours)
    }
}

/// A name fit for a column: lower case letters, digits and `_`.
pub fn column_stem(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    out.trim_matches('_').to_string()
}

fn check_code(code: &str, what: &str) -> Result<(), FeatureError> {
    if code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(FeatureError::Spec(format!(
            "{what}: {code:?} is not a code (letters, digits, '-', '.', '_')"
        )));
    }
    Ok(())
}

impl FeatureSpec {
    /// Parse a spec from TOML or JSON text (JSON if it starts with `{`).
    pub fn parse(text: &str) -> Result<FeatureSpec, FeatureError> {
        let spec: FeatureSpec = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| FeatureError::Spec(format!("the spec is not valid: {e}")))?
        } else {
            toml::from_str(text)
                .map_err(|e| FeatureError::Spec(format!("the spec is not valid: {e}")))?
        };
        spec.check()?;
        Ok(spec)
    }

    /// Check what serde cannot: one cohort source, one index time, windows, codes and
    /// column names that do not clash.
    pub fn check(&self) -> Result<(), FeatureError> {
        let c = &self.cohort;
        match (&c.sql, &c.search) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(FeatureError::Spec(
                    "cohort: give exactly one of `sql` (a query returning patient_id) or \
                     `search` (e.g. \"Patient?gender=female\")"
                        .into(),
                ));
            }
            _ => {}
        }
        if let Some(s) = &c.search {
            let ty = s.split('?').next().unwrap_or("");
            if ty != "Patient" {
                return Err(FeatureError::Spec(format!(
                    "cohort.search: {s:?} must search Patients: start it with \"Patient?\""
                )));
            }
        }
        match (&c.index_time, &c.index_time_column) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(FeatureError::Spec(
                    "cohort: give exactly one of `index_time` (one time for everyone, e.g. \
                     \"2024-01-01T00:00:00Z\") or `index_time_column` (a column of the cohort \
                     query)"
                        .into(),
                ));
            }
            (Some(t), None) => {
                if parse_fhir_instant(t).is_none() {
                    return Err(FeatureError::Spec(format!(
                        "cohort.index_time: {t:?} is not a FHIR dateTime such as \
                         \"2024-01-01T00:00:00Z\""
                    )));
                }
            }
            (None, Some(col)) => {
                if c.sql.is_none() {
                    return Err(FeatureError::Spec(
                        "cohort.index_time_column needs a cohort `sql` query to take the \
                         column from; a search cohort takes a fixed `index_time`"
                            .into(),
                    ));
                }
                if col.is_empty() || col.contains('"') {
                    return Err(FeatureError::Spec(format!(
                        "cohort.index_time_column: {col:?} is not a column name"
                    )));
                }
            }
        }
        let mut names = BTreeSet::new();
        let mut add = |n: String| -> Result<(), FeatureError> {
            if !names.insert(n.clone()) {
                return Err(FeatureError::Spec(format!(
                    "two features would both be named {n:?}: give them different names"
                )));
            }
            Ok(())
        };
        for fixed in ["patient_id", "index_time", "label", "split"] {
            add(fixed.to_string())?;
        }
        for d in &self.demographics {
            add(match d {
                Demographic::Age => "age".into(),
                Demographic::Gender => "gender".into(),
            })?;
        }
        for (i, o) in self.observations.iter().enumerate() {
            let what = format!("observation[{i}]");
            check_code(&o.loinc, &format!("{what}.loinc"))?;
            if o.lookbacks.is_empty() {
                return Err(FeatureError::Spec(format!(
                    "{what}: give at least one lookback, e.g. lookbacks = [\"365d\"]"
                )));
            }
            if o.stats.as_ref().is_some_and(|s| s.is_empty()) {
                return Err(FeatureError::Spec(format!(
                    "{what}.stats is empty: leave it out for all of last, min, max, mean, count"
                )));
            }
            for w in &o.lookbacks {
                let w = parse_window(w, &format!("{what}.lookbacks"))?;
                for s in self.observation_stats(o) {
                    add(observation_column(o, s, &w))?;
                }
            }
        }
        for (i, cf) in self.conditions.iter().enumerate() {
            let what = format!("condition[{i}]");
            if cf.snomed.is_empty() {
                return Err(FeatureError::Spec(format!(
                    "{what}.snomed: give at least one SNOMED CT code"
                )));
            }
            for code in &cf.snomed {
                check_code(code, &format!("{what}.snomed"))?;
            }
            if let Some(l) = &cf.lookback {
                parse_window(l, &format!("{what}.lookback"))?;
            }
            if column_stem(&cf.name).is_empty() {
                return Err(FeatureError::Spec(format!(
                    "{what}.name: {:?} has no letters or digits",
                    cf.name
                )));
            }
            add(format!("cond_{}", column_stem(&cf.name)))?;
            if cf.descendants && self.code_sets.is_none() {
                return Err(FeatureError::Spec(format!(
                    "{what}: descendants = true needs a [code_sets] table (csv, sql or pairs \
                     of ancestor, descendant)"
                )));
            }
        }
        if let Some(m) = &self.medications {
            for w in &m.lookbacks {
                let w = parse_window(w, "medications.lookbacks")?;
                add(format!("med_count_{}", w.label))?;
            }
        }
        if let Some(e) = &self.encounters {
            for class in &e.classes {
                check_code(class, "encounters.classes")?;
            }
            for w in &e.lookbacks {
                let w = parse_window(w, "encounters.lookbacks")?;
                add(format!("enc_count_{}", w.label))?;
                for class in &e.classes {
                    add(format!("enc_{}_count_{}", column_stem(class), w.label))?;
                }
            }
        }
        if let Some(cs) = &self.code_sets {
            let given = [cs.csv.is_some(), cs.sql.is_some(), cs.pairs.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                return Err(FeatureError::Spec(
                    "code_sets: give exactly one of csv (a file of ancestor,descendant), sql \
                     (a query returning ancestor, descendant) or pairs"
                        .into(),
                ));
            }
        }
        if let Some(l) = &self.label {
            parse_window(&l.within, "label.within")?;
            match (&l.condition, &l.encounter_class) {
                (Some(c), None) => {
                    if c.snomed.is_empty() {
                        return Err(FeatureError::Spec(
                            "label.condition.snomed: give at least one SNOMED CT code".into(),
                        ));
                    }
                    for code in &c.snomed {
                        check_code(code, "label.condition.snomed")?;
                    }
                    if c.descendants && self.code_sets.is_none() {
                        return Err(FeatureError::Spec(
                            "label.condition: descendants = true needs a [code_sets] table".into(),
                        ));
                    }
                }
                (None, Some(class)) => check_code(class, "label.encounter_class")?,
                _ => {
                    return Err(FeatureError::Spec(
                        "label: give exactly one of `condition` ({ snomed = [...] }) or \
                         `encounter_class` (e.g. \"EMER\")"
                            .into(),
                    ));
                }
            }
        }
        let f = self.split.test_fraction;
        if !(0.0..=1.0).contains(&f) {
            return Err(FeatureError::Spec(format!(
                "split.test_fraction: {f} is not between 0 and 1"
            )));
        }
        Ok(())
    }

    pub(crate) fn observation_stats(&self, o: &ObservationFeature) -> Vec<Stat> {
        o.stats.clone().unwrap_or_else(|| Stat::ALL.to_vec())
    }
}

/// The column stem of an Observation feature.
pub(crate) fn observation_stem(o: &ObservationFeature) -> String {
    match &o.name {
        Some(n) => column_stem(n),
        None => format!("loinc_{}", column_stem(&o.loinc)),
    }
}

/// `obs_<stem>_<stat>_<window>`, e.g. `obs_hba1c_last_365d`.
pub(crate) fn observation_column(o: &ObservationFeature, s: Stat, w: &Window) -> String {
    format!("obs_{}_{}_{}", observation_stem(o), s.name(), w.label)
}
