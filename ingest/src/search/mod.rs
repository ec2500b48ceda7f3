//! FHIR R4 search parameters, and the values a resource is found by.
//!
//! The parameters come from the R4 SearchParameter definitions, vendored in
//! `ingest/r4/search-parameters.json.gz` by `tools/vendor-search-params.py` (one list per
//! resource type, the published expressions split per type). [`SearchParams::r4`] parses
//! each expression once with the FHIRPath engine; [`SearchParams::extract`] evaluates them
//! over a resource when it is written and turns what they select into [`IndexValue`]s,
//! the normalised values that a search matches against (a date becomes the instant range
//! it covers, a CodeableConcept its codings, a HumanName its parts).
//!
//! The entries are stored with each version in the resource table's `search` column
//! ([`encode`]), so a restart rebuilds the in-memory search index from one column, without
//! evaluating FHIRPath again, and so other engines can use them too.
//!
//! ```
//! use medlake_ingest::search::{IndexValue, SearchParams};
//! use serde_json::json;
//!
//! let observation = json!({
//!     "resourceType": "Observation", "status": "final",
//!     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
//!     "subject": {"reference": "Patient/p1"},
//!     "effectiveDateTime": "2024-03-05"
//! });
//! let entries = SearchParams::r4().extract("Observation", &observation);
//! assert!(entries.iter().any(|e| e.param == "patient"
//!     && e.value == IndexValue::Reference { reference: Some("Patient/p1".into()), identifier: None }));
//! assert!(entries.iter().any(|e| e.param == "code"
//!     && matches!(&e.value, IndexValue::Token { code: Some(c), .. } if c == "8867-4")));
//! ```

mod extract;
mod path;
mod value;

use std::collections::HashMap;
use std::io::Read;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

use crate::fhirpath::Expression;
use crate::validate::{ShapeId, Validator};

pub use value::{IndexEntry, IndexValue, date_range, decode, encode, normalize_string};

static SEARCH_PARAMETERS_GZ: &[u8] = include_bytes!("../../r4/search-parameters.json.gz");

/// The type of a search parameter, as the SearchParameter resource names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
}

impl ParamKind {
    pub fn parse(s: &str) -> Option<ParamKind> {
        Some(match s {
            "number" => ParamKind::Number,
            "date" => ParamKind::Date,
            "string" => ParamKind::String,
            "token" => ParamKind::Token,
            "reference" => ParamKind::Reference,
            "composite" => ParamKind::Composite,
            "quantity" => ParamKind::Quantity,
            "uri" => ParamKind::Uri,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Number => "number",
            ParamKind::Date => "date",
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::Composite => "composite",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
        }
    }
}

/// One part of a parameter's expression: what it selects, and for references found
/// through `where(resolve() is T)`, the type `T` they must point to.
#[derive(Debug, Clone)]
pub struct Term {
    /// The expression as written (after `Resource.` is dropped).
    pub text: String,
    pub expression: Expression,
    pub resolve_is: Option<String>,
    /// The same expression as a plain path, when it is one: walked without the
    /// evaluator ([`path`]).
    fast: Option<path::SimplePath>,
}

impl Term {
    /// What the expression selects in a resource of the shape given.
    fn evaluate<'a>(
        &self,
        resource: &'a Value,
        shape: Option<ShapeId>,
    ) -> Option<Vec<crate::fhirpath::Item<'a>>> {
        match &self.fast {
            Some(p) => Some(p.evaluate_in(resource, shape)),
            None => self.expression.evaluate(resource).ok(),
        }
    }
}

/// One component of a composite parameter, evaluated on each element the composite's
/// expression selects.
#[derive(Debug, Clone)]
pub struct Component {
    pub code: String,
    pub kind: ParamKind,
    pub expression: Expression,
    /// The expression as a plain path relative to the element, when it is one.
    fast: Option<path::SimplePath>,
}

/// A search parameter of one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    pub code: String,
    pub kind: ParamKind,
    /// For references: the resource types they may point to.
    pub targets: Vec<String>,
    pub terms: Vec<Term>,
    pub components: Vec<Component>,
    /// When the parameter's expression is exactly the union of other parameters' of
    /// its type (Observation's `combo-code` is `code` and `component-code`), their
    /// codes. Its values are then not extracted again: an index takes them from those
    /// parameters ([`SearchParams::unions_fed_by`]).
    pub union_of: Vec<String>,
}

/// Parameters every resource type has and that the server fills from the version itself
/// rather than from an expression.
pub const SERVER_PARAMS: &[&str] = &["_id", "_lastUpdated"];

/// The R4 search parameters of every resource type.
pub struct SearchParams {
    by_type: HashMap<String, Vec<SearchParam>>,
    common: Vec<SearchParam>,
    /// Type -> parameter code -> the union parameters it feeds.
    unions: HashMap<String, HashMap<String, Vec<String>>>,
    /// Compartment type -> member type -> the parameters that link a member to it.
    compartments: HashMap<String, HashMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
struct RawFile {
    types: HashMap<String, Vec<RawParam>>,
    #[serde(default)]
    compartments: HashMap<String, HashMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
struct RawParam {
    code: String,
    #[serde(rename = "type")]
    kind: String,
    terms: Vec<(String, Option<String>)>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    components: Vec<(String, String, String)>,
}

impl SearchParams {
    /// The vendored R4 definitions, parsed once.
    pub fn r4() -> &'static SearchParams {
        static PARAMS: LazyLock<SearchParams> = LazyLock::new(|| {
            SearchParams::load().unwrap_or_else(|e| {
                // The file is embedded and checked by tests: failing here is a build defect.
                panic!("the vendored search parameters are unreadable: {e}")
            })
        });
        &PARAMS
    }

    fn load() -> Result<SearchParams, String> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(SEARCH_PARAMETERS_GZ)
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        let raw: RawFile = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut by_type = HashMap::new();
        let mut common = Vec::new();
        for (ty, params) in raw.types {
            let mut out = Vec::with_capacity(params.len());
            for p in params {
                let Some(kind) = ParamKind::parse(&p.kind) else {
                    continue;
                };
                let terms = p
                    .terms
                    .iter()
                    .map(|(text, resolve_is)| {
                        // `Resource.meta.tag` applies to every type: evaluate it relative to
                        // the resource, as the FHIRPath type prefix would not match.
                        let text = text
                            .strip_prefix("Resource.")
                            .or_else(|| text.strip_prefix("DomainResource."))
                            .unwrap_or(text);
                        let fast = path::SimplePath::compile(text, &ty);
                        Ok(Term {
                            text: text.to_string(),
                            expression: Expression::parse(text)
                                .map_err(|e| format!("{}: {e}", p.code))?,
                            resolve_is: resolve_is.clone(),
                            fast,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let components = p
                    .components
                    .iter()
                    .filter_map(|(code, kind, text)| {
                        let kind = ParamKind::parse(kind)?;
                        Some(Expression::parse(text).map(|expression| Component {
                            code: code.clone(),
                            kind,
                            expression,
                            fast: path::SimplePath::compile(text, ""),
                        }))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}: {e}", p.code))?;
                out.push(SearchParam {
                    code: p.code,
                    kind,
                    targets: p.targets,
                    terms,
                    components,
                    union_of: Vec::new(),
                });
            }
            if ty == "Resource" || ty == "DomainResource" {
                common.extend(out);
            } else {
                by_type.insert(ty, out);
            }
        }
        common.sort_by(|a, b| a.code.cmp(&b.code));
        by_type.insert(
            crate::validate::VIEW_DEFINITION.to_string(),
            view_definition_params()?,
        );
        for params in by_type.values_mut() {
            find_unions(params);
        }
        let mut unions = HashMap::new();
        for (ty, params) in &by_type {
            let mut fed: HashMap<String, Vec<String>> = HashMap::new();
            for p in params {
                for source in &p.union_of {
                    fed.entry(source.clone()).or_default().push(p.code.clone());
                }
            }
            if !fed.is_empty() {
                unions.insert(ty.clone(), fed);
            }
        }
        Ok(SearchParams {
            by_type,
            common,
            compartments: raw.compartments,
            unions,
        })
    }

    /// The parameters of a type whose values include those of `code`, because they are
    /// unions of it and others ([`SearchParam::union_of`]).
    pub fn unions_fed_by(&self, resource_type: &str, code: &str) -> &[String] {
        self.unions
            .get(resource_type)
            .and_then(|fed| fed.get(code))
            .map_or(&[], Vec::as_slice)
    }

    /// The parameters of a type, its own first, then those every resource has.
    pub fn of_type<'a>(&'a self, resource_type: &str) -> impl Iterator<Item = &'a SearchParam> {
        self.by_type
            .get(resource_type)
            .into_iter()
            .flatten()
            .chain(self.common.iter())
    }

    /// One parameter of a type, by code.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.of_type(resource_type).find(|p| p.code == code)
    }

    /// The resource types that have parameters of their own.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// The members of a compartment (`Patient`): each resource type, with the parameters
    /// whose references to the compartment's resource make a resource a member.
    pub fn compartment(&self, compartment: &str) -> Option<&HashMap<String, Vec<String>>> {
        self.compartments.get(compartment)
    }

    /// The values of one parameter of a resource (for `_include`).
    pub fn extract_param(
        &'static self,
        resource_type: &str,
        code: &str,
        resource: &Value,
    ) -> Vec<IndexValue> {
        let mut out = Vec::new();
        if let Some(p) = self.get(resource_type, code) {
            let shape = Validator::r4().shape_of_type(resource_type);
            extract::param(p, resource, shape, &mut out);
        }
        out.into_iter().map(|e| e.value).collect()
    }

    /// Evaluate every parameter of the type over a resource. Parameters whose expression
    /// fails on this resource (a type error in odd data) are skipped, not fatal: a write
    /// is never refused because it cannot be indexed.
    ///
    /// Composite parameters are left out: a search narrows them by their components'
    /// own parameters and checks the pairing on the resource itself
    /// ([`SearchParams::extract_param`]), and storing them would more than double what
    /// an Observation stores.
    pub fn extract(&'static self, resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
        let mut out = Vec::new();
        let shape = Validator::r4().shape_of_type(resource_type);
        for p in self.of_type(resource_type) {
            if SERVER_PARAMS.contains(&p.code.as_str())
                || p.kind == ParamKind::Composite
                || !p.union_of.is_empty()
            {
                continue;
            }
            extract::param(p, resource, shape, &mut out);
        }
        out
    }
}

/// The parameters of the SQL-on-FHIR ViewDefinition, which R4 does not define and the
/// IG gives none of: `name`, `url` and `status`, as R4 defines them for every canonical
/// resource (`Library.name` is a string, `Library.url` a uri, `Library.status` a token).
/// The type has no R4 shape, so the FHIRPath evaluator reads them (no fast path), and
/// its untyped strings index as the kind says.
fn view_definition_params() -> Result<Vec<SearchParam>, String> {
    [
        ("name", ParamKind::String),
        ("url", ParamKind::Uri),
        ("status", ParamKind::Token),
    ]
    .into_iter()
    .map(|(code, kind)| {
        Ok(SearchParam {
            code: code.to_string(),
            kind,
            targets: Vec::new(),
            terms: vec![Term {
                text: code.to_string(),
                expression: Expression::parse(code).map_err(|e| format!("{code}: {e}"))?,
                resolve_is: None,
                fast: None,
            }],
            components: Vec::new(),
            union_of: Vec::new(),
        })
    })
    .collect()
}

/// Mark the parameters whose terms are exactly the union of the terms of two or more
/// others of the same kind (each a strict part of them).
fn find_unions(params: &mut [SearchParam]) {
    let terms = |p: &SearchParam| -> Vec<(String, Option<String>)> {
        let mut t: Vec<_> = p
            .terms
            .iter()
            .map(|t| (t.text.clone(), t.resolve_is.clone()))
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let all: Vec<Vec<(String, Option<String>)>> = params.iter().map(terms).collect();
    for i in 0..params.len() {
        if params[i].kind == ParamKind::Composite || all[i].len() < 2 {
            continue;
        }
        let parts: Vec<usize> = (0..params.len())
            .filter(|&j| {
                j != i
                    && params[j].kind == params[i].kind
                    && all[j].len() < all[i].len()
                    && all[j].iter().all(|t| all[i].contains(t))
            })
            .collect();
        let covered = all[i]
            .iter()
            .all(|t| parts.iter().any(|&j| all[j].contains(t)));
        if covered && parts.len() >= 2 {
            params[i].union_of = parts.iter().map(|&j| params[j].code.clone()).collect();
        }
    }
    // A part must be extracted itself: a union is never built from another union.
    let unions: Vec<String> = params
        .iter()
        .filter(|p| !p.union_of.is_empty())
        .map(|p| p.code.clone())
        .collect();
    for p in params.iter_mut() {
        if p.union_of.iter().any(|c| unions.contains(c)) {
            p.union_of.clear();
        }
    }
}

#[cfg(test)]
mod tests;
