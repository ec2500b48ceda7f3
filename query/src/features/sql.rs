//! The SQL of an extraction: one query over `fhir_history.<type>` (or `fhir.<type>`),
//! so that DataFusion plans the whole extraction and runs it on the query runtime.
//!
//! DataFusion inlines common table expressions: a CTE that several others read would be
//! computed once per reader. So each resource type is read once, its rows narrowed to
//! the cohort and to the versions known at each index time, and every feature of the
//! type is one conditional aggregate of a single `GROUP BY patient_id, index_time`.

use std::collections::HashSet;
use std::fmt::Write;

use super::spec::{
    Demographic, FeatureSpec, PointInTime, Stat, Window, column_stem, observation_column,
    parse_window,
};

pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const SNOMED: &str = "http://snomed.info/sct";

/// What the SQL is built from, once the cohort and the code sets are known.
pub(crate) struct Resolved {
    /// A query with the columns `patient_id` (text) and `index_time` (UTC timestamp).
    pub cohort: String,
    /// The codes of each `[[condition]]`, descendants included if asked.
    pub condition_codes: Vec<Vec<String>>,
    /// The codes of a condition label.
    pub label_codes: Option<Vec<String>>,
    /// The resource tables the lake has (lower case): a type without data reads as no
    /// rows rather than an unknown table.
    pub tables: HashSet<String>,
}

/// No rows, with the columns of [`known_versions`].
const NO_ROWS: &str = "(SELECT CAST(NULL AS VARCHAR) AS patient_id, \
     fhir_instant(CAST(NULL AS VARCHAR)) AS index_time, CAST(NULL AS VARCHAR) AS id, \
     CAST(NULL AS VARCHAR) AS resource WHERE false)";

/// A SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn subject_is_patient(resource: &str, patient: &str) -> String {
    format!("json_get_str({resource}, 'subject', 'reference') = concat('Patient/', {patient})")
}

/// The versions of `table` known at each cohort row's index time: per resource, the
/// newest version recorded by then, kept if it is not a delete and its subject is the
/// patient. Candidates are the resources with any such version for the patient; their
/// versions are then ranked whatever their subject, so that a resource moved to another
/// patient, or deleted, before the index time is not counted.
fn known_versions(table: &str, mode: PointInTime, tables: &HashSet<String>) -> String {
    if !tables.contains(table) {
        return NO_ROWS.to_string();
    }
    match mode {
        PointInTime::Recorded => format!(
            "(SELECT patient_id, index_time, id, resource FROM (\
               SELECT k.patient_id, k.index_time, h.id, h.deleted, h.resource, \
                 row_number() OVER (PARTITION BY k.patient_id, k.index_time, h.id \
                   ORDER BY h.version_id DESC) AS rn \
               FROM (SELECT DISTINCT h.id, c.patient_id, c.index_time \
                     FROM fhir_history.{table} h JOIN cohort c \
                       ON {subject} \
                     WHERE h.last_updated <= c.index_time) k \
               JOIN fhir_history.{table} h ON h.id = k.id \
               WHERE h.last_updated <= k.index_time) v \
             WHERE rn = 1 AND NOT deleted AND {subject_v})",
            subject = subject_is_patient("h.resource", "c.patient_id"),
            subject_v = subject_is_patient("resource", "patient_id"),
        ),
        PointInTime::Clinical => current_versions(table, tables),
    }
}

/// The current versions of `table` for the cohort: what labels read (see the module
/// doc of `features`), and every feature under `point_in_time = "clinical"`.
fn current_versions(table: &str, tables: &HashSet<String>) -> String {
    if !tables.contains(table) {
        return NO_ROWS.to_string();
    }
    format!(
        "(SELECT c.patient_id, c.index_time, r.id, r.resource \
          FROM fhir.{table} r JOIN cohort c ON {})",
        subject_is_patient("r.resource", "c.patient_id")
    )
}

fn codes_list(codes: &[String]) -> String {
    literal(&codes.join(","))
}

/// `at` in `(index - window, index]`; the whole past without a window.
fn in_lookback(at: &str, window: Option<&Window>) -> String {
    match window {
        Some(w) => format!(
            "({at} <= index_time AND {at} > index_time - {})",
            w.interval()
        ),
        None => format!("({at} <= index_time)"),
    }
}

/// Statuses that mean a record was a mistake or never happened.
const VOID_STATUS: &str = "('entered-in-error', 'cancelled')";

pub(crate) fn build(spec: &FeatureSpec, r: &Resolved) -> String {
    let mode = spec.point_in_time;
    let mut ctes: Vec<String> = vec![format!(
        "cohort AS (SELECT DISTINCT patient_id, index_time FROM ({}) c \
         WHERE patient_id IS NOT NULL AND index_time IS NOT NULL)",
        r.cohort
    )];
    let mut columns: Vec<String> = vec!["c.patient_id".into(), "c.index_time".into()];
    let mut joins: Vec<String> = Vec::new();
    let mut join = |name: &str, ctes: &mut Vec<String>, body: String| {
        ctes.push(format!("{name} AS ({body})"));
        joins.push(format!(
            "LEFT JOIN {name} ON {name}.patient_id = c.patient_id \
             AND {name}.index_time = c.index_time"
        ));
    };

    if !spec.demographics.is_empty() {
        let patient = match mode {
            _ if !r.tables.contains("patient") => NO_ROWS.to_string(),
            PointInTime::Recorded => "(SELECT patient_id, index_time, resource FROM (\
                 SELECT c.patient_id, c.index_time, h.deleted, h.resource, \
                   row_number() OVER (PARTITION BY c.patient_id, c.index_time \
                     ORDER BY h.version_id DESC) AS rn \
                 FROM fhir_history.patient h JOIN cohort c ON h.id = c.patient_id \
                 WHERE h.last_updated <= c.index_time) v WHERE rn = 1 AND NOT deleted)"
                .to_string(),
            PointInTime::Clinical => "(SELECT c.patient_id, c.index_time, r.resource \
                 FROM fhir.patient r JOIN cohort c ON r.id = c.patient_id)"
                .to_string(),
        };
        let mut select = vec!["patient_id".to_string(), "index_time".to_string()];
        for d in &spec.demographics {
            match d {
                Demographic::Age => {
                    select.push(
                        "fhir_age_years(json_get_str(resource, 'birthDate'), index_time) AS age"
                            .into(),
                    );
                    columns.push("demo.age".into());
                }
                Demographic::Gender => {
                    select.push("json_get_str(resource, 'gender') AS gender".into());
                    columns.push("demo.gender".into());
                }
            }
        }
        join(
            "demo",
            &mut ctes,
            format!("SELECT {} FROM {patient} p", select.join(", ")),
        );
    }

    if !spec.observations.is_empty() {
        // One pass: each feature's value (of the Observation or of its component) as a
        // column, then conditional aggregates.
        let mut values = Vec::new();
        let mut any = Vec::new();
        for (i, o) in spec.observations.iter().enumerate() {
            values.push(format!(
                "fhir_value_of(resource, {}, {}) AS v{i}",
                literal(LOINC),
                literal(&o.loinc)
            ));
            any.push(format!("v{i} IS NOT NULL"));
        }
        let facts = format!(
            "SELECT patient_id, index_time, id, {values}, \
               fhir_instant(coalesce(json_get_str(resource, 'effectiveDateTime'), \
                 json_get_str(resource, 'effectiveInstant'), \
                 json_get_str(resource, 'effectivePeriod', 'start'), \
                 json_get_str(resource, 'issued'))) AS clinical_at \
             FROM {known} o \
             WHERE coalesce(json_get_str(resource, 'status'), '') NOT IN {VOID_STATUS}",
            values = values.join(", "),
            known = known_versions("observation", mode, &r.tables),
        );
        let mut aggs = Vec::new();
        for (i, o) in spec.observations.iter().enumerate() {
            for w in &o.lookbacks {
                let Ok(w) = parse_window(w, "") else { continue };
                let cond = format!(
                    "v{i} IS NOT NULL AND {}",
                    in_lookback("clinical_at", Some(&w))
                );
                for s in spec.observation_stats(o) {
                    let col = observation_column(o, s, &w);
                    let agg = match s {
                        Stat::Count => format!("count(CASE WHEN {cond} THEN 1 END)"),
                        Stat::Min => format!("min(CASE WHEN {cond} THEN v{i} END)"),
                        Stat::Max => format!("max(CASE WHEN {cond} THEN v{i} END)"),
                        Stat::Mean => format!("avg(CASE WHEN {cond} THEN v{i} END)"),
                        // Rows outside the feature sort first (a null key), so the last
                        // row is the newest match when there is one; ties by id.
                        Stat::Last => format!(
                            "last_value(CASE WHEN {cond} THEN v{i} END \
                             ORDER BY CASE WHEN {cond} THEN clinical_at END ASC NULLS FIRST, \
                             CASE WHEN {cond} THEN id END ASC NULLS FIRST)"
                        ),
                    };
                    aggs.push(format!("{agg} AS {col}"));
                    columns.push(match s {
                        Stat::Count => format!("coalesce(obs.{col}, 0) AS {col}"),
                        _ => format!("obs.{col}"),
                    });
                }
            }
        }
        join(
            "obs",
            &mut ctes,
            format!(
                "SELECT patient_id, index_time, {} FROM ({facts}) f \
                 WHERE ({}) GROUP BY patient_id, index_time",
                aggs.join(", "),
                any.join(" OR ")
            ),
        );
    }

    let condition_facts = |known: String| {
        format!(
            "SELECT patient_id, index_time, json_get_json(resource, 'code') AS code, \
               fhir_instant(coalesce(json_get_str(resource, 'onsetDateTime'), \
                 json_get_str(resource, 'onsetPeriod', 'start'), \
                 json_get_str(resource, 'recordedDate'))) AS clinical_at \
             FROM {known} k \
             WHERE coalesce(json_get_str(resource, 'verificationStatus', 'coding', 0, 'code'), '') \
               NOT IN ('entered-in-error', 'refuted')"
        )
    };

    if !spec.conditions.is_empty() {
        let mut aggs = Vec::new();
        for (i, cf) in spec.conditions.iter().enumerate() {
            let col = format!("cond_{}", column_stem(&cf.name));
            let window = cf
                .lookback
                .as_deref()
                .and_then(|l| parse_window(l, "").ok());
            let codes = r.condition_codes.get(i).cloned().unwrap_or_default();
            aggs.push(format!(
                "max(CASE WHEN fhir_has_code(code, {}, {}) AND {} THEN 1 ELSE 0 END) AS {col}",
                literal(SNOMED),
                codes_list(&codes),
                in_lookback("clinical_at", window.as_ref())
            ));
            columns.push(format!("coalesce(cond.{col}, 0) AS {col}"));
        }
        join(
            "cond",
            &mut ctes,
            format!(
                "SELECT patient_id, index_time, {} FROM ({}) f GROUP BY patient_id, index_time",
                aggs.join(", "),
                condition_facts(known_versions("condition", mode, &r.tables))
            ),
        );
    }

    if let Some(m) = &spec.medications {
        let mut aggs = Vec::new();
        for w in &m.lookbacks {
            let Ok(w) = parse_window(w, "") else { continue };
            let col = format!("med_count_{}", w.label);
            aggs.push(format!(
                "count(CASE WHEN {} THEN 1 END) AS {col}",
                in_lookback("clinical_at", Some(&w))
            ));
            columns.push(format!("coalesce(med.{col}, 0) AS {col}"));
        }
        join(
            "med",
            &mut ctes,
            format!(
                "SELECT patient_id, index_time, {} FROM (\
                   SELECT patient_id, index_time, \
                     fhir_instant(json_get_str(resource, 'authoredOn')) AS clinical_at \
                   FROM {} k \
                   WHERE coalesce(json_get_str(resource, 'status'), '') NOT IN {VOID_STATUS}) f \
                 GROUP BY patient_id, index_time",
                aggs.join(", "),
                known_versions("medicationrequest", mode, &r.tables)
            ),
        );
    }

    if let Some(e) = &spec.encounters {
        let mut aggs = Vec::new();
        for w in &e.lookbacks {
            let Ok(w) = parse_window(w, "") else { continue };
            let col = format!("enc_count_{}", w.label);
            aggs.push(format!(
                "count(CASE WHEN {} THEN 1 END) AS {col}",
                in_lookback("clinical_at", Some(&w))
            ));
            columns.push(format!("coalesce(enc.{col}, 0) AS {col}"));
            for class in &e.classes {
                let col = format!("enc_{}_count_{}", column_stem(class), w.label);
                aggs.push(format!(
                    "count(CASE WHEN enc_class = {} AND {} THEN 1 END) AS {col}",
                    literal(class),
                    in_lookback("clinical_at", Some(&w))
                ));
                columns.push(format!("coalesce(enc.{col}, 0) AS {col}"));
            }
        }
        join(
            "enc",
            &mut ctes,
            format!(
                "SELECT patient_id, index_time, {} FROM ({}) f GROUP BY patient_id, index_time",
                aggs.join(", "),
                encounter_facts(known_versions("encounter", mode, &r.tables))
            ),
        );
    }

    if let Some(l) = &spec.label {
        let Ok(w) = parse_window(&l.within, "") else {
            return String::new();
        };
        let ahead = |at: &str| {
            format!(
                "({at} > index_time AND {at} <= index_time + {})",
                w.interval()
            )
        };
        let body = match (&l.condition, &l.encounter_class, &r.label_codes) {
            (Some(_), _, Some(codes)) => format!(
                "SELECT patient_id, index_time, max(CASE WHEN fhir_has_code(code, {}, {}) \
                   AND {} THEN 1 ELSE 0 END) AS y FROM ({}) f GROUP BY patient_id, index_time",
                literal(SNOMED),
                codes_list(codes),
                ahead("clinical_at"),
                condition_facts(current_versions("condition", &r.tables))
            ),
            (_, Some(class), _) => format!(
                "SELECT patient_id, index_time, max(CASE WHEN enc_class = {} AND {} THEN 1 ELSE 0 END) \
                 AS y FROM ({}) f GROUP BY patient_id, index_time",
                literal(class),
                ahead("clinical_at"),
                encounter_facts(current_versions("encounter", &r.tables))
            ),
            _ => String::new(),
        };
        if !body.is_empty() {
            join("lab", &mut ctes, body);
            columns.push("coalesce(lab.y, 0) AS label".into());
        }
    }

    let mut sql = String::from("WITH ");
    sql.push_str(&ctes.join(",\n"));
    let _ = write!(
        sql,
        "\nSELECT {} FROM cohort c {} ORDER BY c.patient_id, c.index_time",
        columns.join(", "),
        joins.join(" ")
    );
    sql
}

fn encounter_facts(known: String) -> String {
    format!(
        "SELECT patient_id, index_time, json_get_str(resource, 'class', 'code') AS enc_class, \
           fhir_instant(json_get_str(resource, 'period', 'start')) AS clinical_at \
         FROM {known} k \
         WHERE coalesce(json_get_str(resource, 'status'), '') NOT IN {VOID_STATUS}"
    )
}
