//! From the query string of a FHIR search to a [`Search`].

use medlake_ingest::search::{ParamKind, SearchParams};

use super::SearchError;

/// A parameter modifier (`name:modifier=value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    Identifier,
    OfType,
    /// `subject:Patient=123`: a reference to this type.
    Type(String),
}

/// One condition on the searched type. The values of one condition are ORed; the
/// conditions of a search are ANDed.
#[derive(Debug, Clone)]
pub enum Filter {
    Param {
        code: String,
        kind: ParamKind,
        modifier: Modifier,
        values: Vec<String>,
    },
    /// `subject:Patient.name=x`: a reference parameter whose target matches `inner`.
    Chain {
        code: String,
        target: Option<String>,
        inner: Box<Filter>,
    },
    /// `_has:Observation:patient:code=x`: resources that a `source_type` resource whose
    /// `source_param` points to them, and that matches `inner`, refers to.
    Has {
        source_type: String,
        source_param: String,
        inner: Box<Filter>,
    },
    /// Membership of a compartment (`Patient/123`): a reference to it through one of
    /// the parameters its CompartmentDefinition names for the type, or being it.
    Compartment { compartment: String, id: String },
}

/// One `_sort` key.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub code: String,
    pub descending: bool,
}

/// `_include` and `_revinclude`: `source_type:param[:target_type]`.
#[derive(Debug, Clone)]
pub struct Include {
    pub source_type: String,
    /// `None` for `*`: every reference parameter.
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

/// A parsed search of one type, or of several (`_type`, system-level search).
#[derive(Debug, Clone)]
pub struct Search {
    pub types: Vec<String>,
    pub filters: Vec<Filter>,
    pub sort: Vec<SortKey>,
    pub count: usize,
    pub total: Total,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    /// The page cursor (`_page_after` / `_page_before`), as the server wrote it.
    pub after: Option<String>,
    pub before: Option<String>,
    /// Parameters that were ignored, for the warning in the Bundle.
    pub ignored: Vec<String>,
}

pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 1000;

/// Parameters that shape the result rather than select resources, handled elsewhere
/// (formats, subsets) or here.
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_format",
    "_pretty",
    "_type",
    "_page_after",
    "_page_before",
];

impl Search {
    /// Parse the parameters of a search of `types` (one type for a type-level search;
    /// for a system-level one, the `_type` types or every type with data).
    ///
    /// `strict` (`Prefer: handling=strict`) turns an unknown parameter into an error.
    pub fn parse(
        types: Vec<String>,
        params: &[(String, String)],
        strict: bool,
    ) -> Result<Search, SearchError> {
        let mut s = Search {
            types,
            filters: Vec::new(),
            sort: Vec::new(),
            count: DEFAULT_COUNT,
            total: Total::Accurate,
            include: Vec::new(),
            revinclude: Vec::new(),
            after: None,
            before: None,
            ignored: Vec::new(),
        };
        for (name, value) in params {
            let base = name.split([':', '.']).next().unwrap_or(name);
            match base {
                "_count" => {
                    let n: usize = value.parse().map_err(|_| {
                        SearchError::Invalid(format!(
                            "_count must be a non-negative whole number, not {value:?}"
                        ))
                    })?;
                    s.count = n.min(MAX_COUNT);
                }
                "_sort" => {
                    for key in value.split(',').filter(|k| !k.is_empty()) {
                        let (code, descending) = match key.strip_prefix('-') {
                            Some(k) => (k, true),
                            None => (key, false),
                        };
                        s.check_sort(code)?;
                        s.sort.push(SortKey {
                            code: code.to_string(),
                            descending,
                        });
                    }
                }
                "_total" => {
                    s.total = match value.as_str() {
                        "none" => Total::None,
                        "estimate" => Total::Estimate,
                        "accurate" => Total::Accurate,
                        _ => {
                            return Err(SearchError::Invalid(format!(
                                "_total must be none, estimate or accurate, not {value:?}"
                            )));
                        }
                    }
                }
                "_include" | "_revinclude" => {
                    let iterate = match name.split_once(':') {
                        None => false,
                        Some((_, "iterate" | "recurse")) => true,
                        Some((_, m)) => {
                            return Err(SearchError::Invalid(format!(
                                "{base} takes only the :iterate modifier, not :{m}"
                            )));
                        }
                    };
                    let inc = parse_include(value, iterate)?;
                    if base == "_include" {
                        s.include.push(inc);
                    } else {
                        s.revinclude.push(inc);
                    }
                }
                "_page_after" => s.after = Some(value.clone()),
                "_page_before" => s.before = Some(value.clone()),
                _ if RESULT_PARAMS.contains(&base) => {}
                _ => match s.parse_filter(name, value) {
                    Ok(f) => s.filters.push(f),
                    Err(SearchError::UnknownParameter(p)) if !strict => s.ignored.push(p),
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(s)
    }

    fn check_sort(&self, code: &str) -> Result<(), SearchError> {
        if code == "_id" || code == "_lastUpdated" {
            return Ok(());
        }
        let registry = SearchParams::r4();
        let found = self.types.iter().any(|t| {
            registry
                .get(t, code)
                .is_some_and(|p| p.kind != ParamKind::Composite)
        });
        if found {
            Ok(())
        } else {
            Err(SearchError::Invalid(format!(
                "cannot sort by {code:?}: it is not a search parameter of {}",
                self.types.join(", ")
            )))
        }
    }

    fn parse_filter(&self, name: &str, value: &str) -> Result<Filter, SearchError> {
        if let Some(rest) = name.strip_prefix("_has:") {
            return parse_has(rest, value);
        }
        let mut types = self.types.iter();
        let ty = match (types.next(), types.next()) {
            (Some(t), None) => t.as_str(),
            // Several types: only the parameters every resource has apply.
            _ => "Resource",
        };
        parse_on_type(ty, name, value)
    }
}

fn parse_include(value: &str, iterate: bool) -> Result<Include, SearchError> {
    let mut parts = value.split(':');
    let source_type = parts.next().unwrap_or("").to_string();
    let param = parts.next().map(str::to_string);
    let target_type = parts.next().map(str::to_string);
    if source_type.is_empty() || param.is_none() {
        return Err(SearchError::Invalid(format!(
            "an include is Type:parameter[:TargetType] or Type:*, not {value:?}"
        )));
    }
    let param = param.filter(|p| p != "*");
    if let Some(p) = &param {
        match SearchParams::r4().get(&source_type, p) {
            Some(d) if d.kind == ParamKind::Reference => {}
            _ => {
                return Err(SearchError::Invalid(format!(
                    "{source_type}:{p} is not a reference search parameter"
                )));
            }
        }
    }
    Ok(Include {
        source_type,
        param,
        target_type,
        iterate,
    })
}

fn parse_has(rest: &str, value: &str) -> Result<Filter, SearchError> {
    // Type:param:rest-of-name
    let mut parts = rest.splitn(3, ':');
    let (Some(source_type), Some(source_param), Some(inner)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(SearchError::Invalid(format!(
            "_has is _has:Type:parameter:criterion, not _has:{rest}"
        )));
    };
    match SearchParams::r4().get(source_type, source_param) {
        Some(p) if p.kind == ParamKind::Reference => {}
        _ => {
            return Err(SearchError::Invalid(format!(
                "_has: {source_type}:{source_param} is not a reference search parameter"
            )));
        }
    }
    let inner = if let Some(r) = inner.strip_prefix("_has:") {
        parse_has(r, value)?
    } else {
        parse_on_type(source_type, inner, value)?
    };
    Ok(Filter::Has {
        source_type: source_type.to_string(),
        source_param: source_param.to_string(),
        inner: Box::new(inner),
    })
}

/// One parameter (maybe chained) of `ty`.
fn parse_on_type(ty: &str, name: &str, value: &str) -> Result<Filter, SearchError> {
    // A chain: the part before the first '.' is a reference parameter (with an optional
    // :Type), the rest a parameter of the target.
    if let Some((head, rest)) = name.split_once('.') {
        let (code, target) = match head.split_once(':') {
            Some((c, t)) => (c, Some(t.to_string())),
            None => (head, None),
        };
        let p = param_of(ty, code)?;
        if p.0 != ParamKind::Reference {
            return Err(SearchError::Invalid(format!(
                "{code} is a {} parameter: only reference parameters can be chained",
                p.0.as_str()
            )));
        }
        let targets: Vec<String> = match &target {
            Some(t) => vec![t.clone()],
            None => p.1.clone(),
        };
        let mut inner = None;
        let mut last_err = None;
        for t in &targets {
            match parse_on_type(t, rest, value) {
                Ok(f) => {
                    inner = Some(f);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some(inner) = inner else {
            return Err(last_err.unwrap_or_else(|| {
                SearchError::Invalid(format!("{name}: {code} has no target types"))
            }));
        };
        return Ok(Filter::Chain {
            code: code.to_string(),
            target,
            inner: Box::new(inner),
        });
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let (kind, _) = param_of(ty, code)?;
    let modifier = match modifier {
        None => Modifier::None,
        Some(m) => parse_modifier(kind, code, m)?,
    };
    if modifier == Modifier::Missing && value != "true" && value != "false" {
        return Err(SearchError::Invalid(format!(
            "{name} takes true or false, not {value:?}"
        )));
    }
    let values = split_or(value);
    if values.iter().all(String::is_empty) {
        return Err(SearchError::Invalid(format!("{name} has no value")));
    }
    Ok(Filter::Param {
        code: code.to_string(),
        kind,
        modifier,
        values,
    })
}

fn param_of(ty: &str, code: &str) -> Result<(ParamKind, Vec<String>), SearchError> {
    match code {
        "_id" => return Ok((ParamKind::Token, Vec::new())),
        "_lastUpdated" => return Ok((ParamKind::Date, Vec::new())),
        _ => {}
    }
    match SearchParams::r4().get(ty, code) {
        Some(p) => Ok((p.kind, p.targets.clone())),
        None => Err(SearchError::UnknownParameter(if ty == "Resource" {
            code.to_string()
        } else {
            format!("{ty}?{code}")
        })),
    }
}

fn parse_modifier(kind: ParamKind, code: &str, m: &str) -> Result<Modifier, SearchError> {
    use ParamKind as K;
    let modifier = match (m, kind) {
        ("missing", K::Composite) => {
            return Err(SearchError::NotSupported(format!(
                "{code}:missing: composite parameters are not indexed on their own; use :missing on one of their components"
            )));
        }
        ("missing", _) => Modifier::Missing,
        ("exact" | "contains", K::String) => {
            if m == "exact" {
                Modifier::Exact
            } else {
                Modifier::Contains
            }
        }
        ("text", K::Token) => Modifier::Text,
        ("not", K::Token) => Modifier::Not,
        ("of-type", K::Token) if code == "identifier" => Modifier::OfType,
        ("above", K::Uri) => Modifier::Above,
        ("below", K::Uri) => Modifier::Below,
        ("identifier", K::Reference) => Modifier::Identifier,
        (t, K::Reference) if t.starts_with(|c: char| c.is_ascii_uppercase()) => {
            Modifier::Type(t.to_string())
        }
        ("in" | "not-in" | "above" | "below", K::Token) => {
            return Err(SearchError::NotSupported(format!(
                "{code}:{m}: terminology modifiers need a terminology service, which medlake does not have"
            )));
        }
        _ => {
            return Err(SearchError::Invalid(format!(
                "the modifier :{m} does not apply to {code}, a {} parameter",
                kind.as_str()
            )));
        }
    };
    Ok(modifier)
}

/// Split at commas that are not escaped (`\,`), unescaping `\,`. Other escapes (`\|`,
/// `\$`, `\\`) stay for the value parsers, which split at `|` and `$`.
pub(crate) fn split_or(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => cur.push(','),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Split at an unescaped `sep`, unescaping the parts.
pub(crate) fn split_escaped(value: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) if n == sep || n == '\\' || n == '|' || n == '$' => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}
