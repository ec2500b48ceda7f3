//! `dicom.series` and `dicom.studies`: SQL views over `dicom.instances`.
//!
//! Views, not maintained tables: a series or study row is an aggregate of its instances
//! (NumberOfSeriesRelatedInstances, ModalitiesInStudy, ...), and a maintained copy would
//! need a second write per instance and a rewrite of the study row on each new instance,
//! which Delta makes costly (a study is one row of a large file) and which could disagree
//! with the instances after a crash between the two. A view is always consistent with
//! `dicom.instances`, including its in-memory tail. Its cost is a group-by over the
//! columns it uses (not `dicom_json`): at 100k instances, a few tens of milliseconds. A
//! query that filters on the study UID (or on PatientID, StudyDate, ...) is filtered
//! before the group-by, where file statistics and bloom filters prune. Should study-level
//! QIDO over millions of instances need it, a materialized table can replace a view
//! under the same name without changing a query.
//!
//! Study-level attributes (PatientName, StudyDescription, ...) should be equal in every
//! instance of a study; where senders disagree, the view shows those of the instance
//! stored last, as a series shows those of its newest instance.

/// The `(name, SELECT)` of each view, as [`crate::TableKind::views`] gives them.
pub(crate) fn views() -> Vec<(&'static str, String)> {
    vec![("series", series_sql()), ("studies", studies_sql())]
}

/// `first_value(column ORDER BY stored_at DESC)`: the attribute of the newest instance.
fn newest(column: &str) -> String {
    format!("first_value({column} ORDER BY stored_at DESC, sop_instance_uid DESC) AS {column}")
}

fn series_sql() -> String {
    let attributes = [
        "patient_id",
        "modality",
        "series_description",
        "series_number",
        "performed_procedure_step_start_date",
        "manufacturer_model_name",
    ]
    .map(newest)
    .join(",\n  ");
    format!(
        "SELECT study_instance_uid, series_instance_uid,\n  {attributes},\n  \
         count(*) AS number_of_series_related_instances,\n  \
         sum(size_bytes) AS size_bytes,\n  \
         max(stored_at) AS last_stored_at\n\
         FROM dicom.instances\n\
         GROUP BY study_instance_uid, series_instance_uid"
    )
}

fn studies_sql() -> String {
    let attributes = [
        "patient_id",
        "patient_name",
        "patient_name_words",
        "patient_birth_date",
        "accession_number",
        "referring_physician_name",
        "referring_physician_name_words",
        "study_date",
        "study_time",
        "study_description",
        "study_id",
    ]
    .map(newest)
    .join(",\n  ");
    format!(
        "SELECT study_instance_uid,\n  {attributes},\n  \
         array_sort(array_agg(DISTINCT modality) FILTER (WHERE modality IS NOT NULL)) \
         AS modalities_in_study,\n  \
         count(DISTINCT series_instance_uid) AS number_of_study_related_series,\n  \
         count(*) AS number_of_study_related_instances,\n  \
         sum(size_bytes) AS size_bytes,\n  \
         max(stored_at) AS last_stored_at\n\
         FROM dicom.instances\n\
         GROUP BY study_instance_uid"
    )
}
