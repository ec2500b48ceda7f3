//! FHIR-style problems found in an input record.
//!
//! An [`Issue`] carries the same fields as an `OperationOutcome.issue`, so the ingest
//! summary, the `medlake.ingest_errors` table and the REST API's error answers all speak
//! the same language.

use serde::Serialize;
use serde_json::{Value, json};

/// How bad an issue is (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One problem, in the shape of `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub severity: Severity,
    /// A code from the FHIR `IssueType` value set: `structure`, `required`, `value`,
    /// `invalid`, `not-supported`, `processing`, ...
    pub code: &'static str,
    /// A sentence for a person: what is wrong and, where it helps, what to do.
    pub diagnostics: String,
    /// The FHIRPath of the offending element, such as `Patient.birthDate`.
    pub expression: Option<String>,
}

impl Issue {
    /// An error with the given IssueType code.
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// The same issue, pointing at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// This issue as an `OperationOutcome.issue` JSON object.
    pub fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.as_str(),
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expr) = &self.expression {
            issue["expression"] = json!([expr]);
        }
        issue
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.expression {
            Some(e) => write!(
                f,
                "{} ({}) at {}: {}",
                self.severity.as_str(),
                self.code,
                e,
                self.diagnostics
            ),
            None => write!(
                f,
                "{} ({}): {}",
                self.severity.as_str(),
                self.code,
                self.diagnostics
            ),
        }
    }
}

/// An `OperationOutcome` resource holding `issues`.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}
