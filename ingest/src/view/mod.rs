//! SQL-on-FHIR v2 ViewDefinitions: the rows a resource gives under a view.
//!
//! A [ViewDefinition](https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html)
//! names a resource type, optional `where` filters and a tree of `select`s whose `column`s
//! are FHIRPath expressions; `forEach`, `forEachOrNull` and `repeat` unnest, `unionAll`
//! concatenates, and sibling selects are cross-joined. This module parses and checks a
//! view once ([`ViewDefinition::from_json`]) and then evaluates it resource by resource
//! ([`ViewDefinition::evaluate`]), with no storage: the CLI runs it over files, and the
//! lake-backed runner, `$run` and materialized views run it over stored resources.
//!
//! # Example
//!
//! ```
//! use medlake_ingest::view::ViewDefinition;
//! use serde_json::json;
//!
//! let view = ViewDefinition::from_json(&json!({
//!     "resourceType": "ViewDefinition",
//!     "name": "patient_names",
//!     "resource": "Patient",
//!     "select": [
//!         {"column": [{"name": "id", "path": "getResourceKey()"}]},
//!         {"forEach": "name", "column": [
//!             {"name": "family", "path": "family", "type": "string"},
//!             {"name": "given", "path": "given", "collection": true}
//!         ]}
//!     ]
//! }))
//! .unwrap();
//! let names: Vec<_> = view.columns().iter().map(|c| c.name.as_str()).collect();
//! assert_eq!(names, ["id", "family", "given"]);
//!
//! let patient = json!({
//!     "resourceType": "Patient", "id": "p1",
//!     "name": [{"family": "Chalmers", "given": ["Peter", "James"]}, {"family": "Windsor"}]
//! });
//! assert_eq!(
//!     view.evaluate(&patient).unwrap(),
//!     vec![
//!         vec![json!("p1"), json!("Chalmers"), json!(["Peter", "James"])],
//!         vec![json!("p1"), json!("Windsor"), json!([])],
//!     ]
//! );
//! ```
//!
//! # Design
//!
//! Parsing checks everything the specification makes an error before any data is seen:
//! unknown keys, the `sql-name` rule (`^[A-Za-z][A-Za-z0-9_]*$`) for view, column and
//! constant names, at most one of `forEach`/`forEachOrNull`/`repeat` per select, column
//! names defined twice, `unionAll` branches whose column names differ (in name or order),
//! constants without exactly one `value[x]` of an allowed type, references to constants
//! that are not defined, and FHIRPath syntax. Every expression is parsed once.
//!
//! The columns of a select come in the specification's order: its own `column`s, then
//! those of its nested `select`s, then those of its `unionAll` (all branches share them).
//! So the columns of any select are one contiguous run of the output row, and a select's
//! partial rows are plain `Vec`s that the cross join of siblings concatenates: no column
//! is looked up by name while evaluating.
//!
//! Evaluation follows the specification's processing algorithm. Expressions are evaluated
//! on the items found by the enclosing `forEach` (not on their bare JSON), so that a
//! backbone element keeps its type and `value.ofType(string)` inside
//! `QuestionnaireResponse.item.answer` finds `valueString`. `%rowIndex` is the 0-based
//! position in the innermost enclosing iteration (`forEach`, `forEachOrNull`, `repeat`),
//! 0 outside any; a `unionAll` branch without an iteration of its own inherits it; the
//! null row of an empty `forEachOrNull` carries 0 in the columns whose path is exactly
//! `%rowIndex`. `repeat` collects depth first, each element before its descendants.
//! A `where` must give a Boolean (or nothing, which excludes the resource); any other
//! result is an error, as is more than one value in a column not declared `collection`.
//! An empty `collection` column is `[]`, as the conformance tests expect.
//!
//! # Resource and reference keys
//!
//! `getResourceKey()` is the resource's `id`, and `getReferenceKey([type])` the id part
//! of a literal reference: `Patient/123`, `Patient/123/_history/2` and an absolute
//! `https://server/fhir/Patient/123` all give `123`, so they join with the `id` of the
//! resource they point to. With a type (`getReferenceKey(Patient)`) a reference to
//! another type gives nothing. Contained (`#x`), `urn:uuid:` and identifier-only
//! references cannot be resolved without other resources and give nothing (the
//! specification's "MUST return the empty collection"). medlake keeps one resource per
//! type and id, which is why the id is a sound key; the functions are supplied to the
//! FHIRPath engine through [`crate::fhirpath::ExternalFunctions`], so a runner that keys
//! rows differently can supply its own.
//!
//! # Why hand-written
//!
//! Two Rust crates implement SQL-on-FHIR v2 (checked on crates.io/docs.rs): `helios-sof`
//! works on its own generated, typed FHIR model (`helios-fhir`) with its own FHIRPath
//! engine, and `octofhir-sof` evaluates through `octofhir-fhirpath`, which passes fewer of
//! the HL7 FHIRPath tests than medlake's engine (see [`crate::fhirpath`]). Either would
//! bring a second FHIRPath engine whose results could differ from those of search
//! indexing and FHIRPath Patch, and a conversion of every stored resource out of the
//! `serde_json::Value` medlake holds. On top of the existing engine, a view is a small
//! tree walk, so medlake keeps one FHIRPath implementation.

mod keys;
mod run;
mod text_plan;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::fhirpath::{Expression, Item, PartialDateTime};
use crate::validate::Validator;

pub use keys::ResourceKeys;

/// Why a view cannot be parsed, or a resource cannot be put through it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The ViewDefinition itself is wrong; `at` is where in it (`select[0].column[1]`).
    #[error("invalid ViewDefinition at {at}: {message}")]
    Invalid { at: String, message: String },
    /// Evaluating the view on a resource failed: a FHIRPath error, several values in a
    /// column not declared `collection`, a `where` that is not Boolean.
    #[error("ViewDefinition {at} ({expression}) on {resource}: {message}")]
    Evaluation {
        at: String,
        expression: String,
        /// `Patient/123` (or just the type when the resource has no id).
        resource: String,
        message: String,
    },
    /// The resource given as text ([`ViewDefinition::evaluate_text`]) is not JSON.
    #[error("the resource is not valid JSON: {0}")]
    NotJson(String),
}

impl ViewError {
    fn invalid(at: &str, message: impl Into<String>) -> ViewError {
        ViewError::Invalid {
            at: at.to_string(),
            message: message.into(),
        }
    }
}

/// One output column, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub name: String,
    /// The declared `type`, as written (`string`, `dateTime`,
    /// `http://hl7.org/fhir/StructureDefinition/Quantity`); `None` when not declared.
    pub fhir_type: Option<String>,
    /// Declared `collection: true`: every value is a JSON array.
    pub collection: bool,
    pub description: Option<String>,
    /// The column's `tag`s (`ansi/type` and others), as (name, value).
    pub tags: Vec<(String, String)>,
}

impl ViewColumn {
    /// The declared type without the `http://hl7.org/fhir/StructureDefinition/` prefix
    /// that relative type URIs imply.
    pub fn fhir_type_code(&self) -> Option<&str> {
        self.fhir_type.as_deref().map(|t| {
            t.strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                .unwrap_or(t)
        })
    }
}

/// A parsed and checked ViewDefinition, ready to evaluate on any number of resources from
/// any thread.
#[derive(Debug, Clone)]
pub struct ViewDefinition {
    name: Option<String>,
    resource_type: String,
    status: Option<String>,
    columns: Vec<ViewColumn>,
    constants: Vec<(String, Item<'static>)>,
    filters: Vec<Compiled>,
    root: Selection,
    functions: Arc<ResourceKeys>,
    /// The view as lookups over JSON text, when all of it is plain paths.
    text_plan: Option<Arc<text_plan::TextPlan>>,
}

/// A FHIRPath expression with where it was written, for messages.
#[derive(Debug, Clone)]
struct Compiled {
    at: String,
    expr: Expression,
}

/// How a select chooses the items its columns are evaluated on.
#[derive(Debug, Clone)]
enum Iteration {
    /// The parent's item.
    Parent,
    ForEach(Compiled),
    ForEachOrNull(Compiled),
    Repeat(Vec<Compiled>),
}

#[derive(Debug, Clone)]
struct SelectColumn {
    expr: Compiled,
    collection: bool,
}

/// One `select` (the view's top-level list is a select with only nested ones).
#[derive(Debug, Clone)]
struct Selection {
    iteration: Iteration,
    columns: Vec<SelectColumn>,
    select: Vec<Selection>,
    union_all: Vec<Selection>,
    /// How many output columns this select produces, nested ones included.
    width: usize,
    /// Positions (within this select's run) of the columns whose path is `%rowIndex`,
    /// which are 0 rather than null in the null row of an empty `forEachOrNull`.
    row_index_columns: Vec<usize>,
}

/// The keys of a `CanonicalResource` (and `DomainResource`) that a ViewDefinition may
/// carry beside its own.
const RESOURCE_KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "url",
    "identifier",
    "version",
    "versionAlgorithmString",
    "versionAlgorithmCoding",
    "name",
    "title",
    "status",
    "experimental",
    "date",
    "publisher",
    "contact",
    "description",
    "useContext",
    "jurisdiction",
    "purpose",
    "copyright",
    "copyrightLabel",
    "resource",
    "profile",
    "fhirVersion",
    "constant",
    "select",
    "where",
];

const ELEMENT_KEYS: &[&str] = &["id", "extension", "modifierExtension"];

/// The `value[x]` types a constant may have.
const CONSTANT_TYPES: &[&str] = &[
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Integer64",
    "Oid",
    "String",
    "PositiveInt",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
];

/// Variables the FHIRPath engine defines itself, and `%rowIndex`.
fn builtin_variable(name: &str) -> bool {
    matches!(
        name,
        "rowIndex" | "resource" | "rootResource" | "context" | "ucum" | "sct" | "loinc"
    ) || name.starts_with("vs-")
        || name.starts_with("ext-")
}

/// The specification's `sql-name` rule.
fn is_sql_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ViewDefinition {
    /// Parses and checks a ViewDefinition (see the module documentation for what is
    /// checked) and compiles its FHIRPath expressions.
    pub fn from_json(json: &Value) -> Result<ViewDefinition, ViewError> {
        let obj = json
            .as_object()
            .ok_or_else(|| ViewError::invalid("(root)", "a ViewDefinition is a JSON object"))?;
        check_keys(obj, RESOURCE_KEYS, "(root)")?;
        if let Some(rt) = obj.get("resourceType")
            && rt.as_str() != Some("ViewDefinition")
        {
            return Err(ViewError::invalid(
                "resourceType",
                format!("expected \"ViewDefinition\", found {rt}"),
            ));
        }
        let name = opt_str(obj, "name", "name")?;
        if let Some(n) = &name
            && !is_sql_name(n)
        {
            return Err(ViewError::invalid(
                "name",
                format!(
                    "{n:?} is not a valid name: use letters, digits and _, starting with a letter"
                ),
            ));
        }
        let status = opt_str(obj, "status", "status")?;
        let resource_type = opt_str(obj, "resource", "resource")?.ok_or_else(|| {
            ViewError::invalid(
                "resource",
                "missing: name the resource type the view reads, such as \"Patient\"",
            )
        })?;
        if !Validator::r4().is_resource_type(&resource_type) {
            return Err(ViewError::invalid(
                "resource",
                format!("{resource_type:?} is not a FHIR R4 resource type"),
            ));
        }

        let constants = parse_constants(obj)?;
        let mut compiler = Compiler {
            constants: constants.iter().map(|(n, _)| n.clone()).collect(),
            columns: Vec::new(),
        };

        let mut filters = Vec::new();
        if let Some(w) = obj.get("where") {
            let list = w
                .as_array()
                .ok_or_else(|| ViewError::invalid("where", "must be an array"))?;
            for (i, item) in list.iter().enumerate() {
                let at = format!("where[{i}]");
                let o = item
                    .as_object()
                    .ok_or_else(|| ViewError::invalid(&at, "must be an object with a path"))?;
                check_keys(o, &["path", "description", "id", "extension"], &at)?;
                opt_str(o, "description", &format!("{at}.description"))?;
                let path = opt_str(o, "path", &format!("{at}.path"))?
                    .ok_or_else(|| ViewError::invalid(&at, "missing path"))?;
                filters.push(compiler.expression(&path, format!("{at}.path"))?);
            }
        }

        let selects = obj.get("select").ok_or_else(|| {
            ViewError::invalid("select", "missing: a view needs at least one select")
        })?;
        let selects = compiler.select_list(selects, "select")?;
        if selects.is_empty() {
            return Err(ViewError::invalid(
                "select",
                "a view needs at least one select",
            ));
        }
        let width = selects.iter().map(|s| s.width).sum();
        let root = Selection {
            iteration: Iteration::Parent,
            columns: Vec::new(),
            select: selects,
            union_all: Vec::new(),
            width,
            row_index_columns: Vec::new(),
        };
        let text_plan =
            text_plan::TextPlan::compile(&resource_type, !filters.is_empty(), &root).map(Arc::new);
        Ok(ViewDefinition {
            name,
            resource_type,
            status,
            columns: compiler.columns,
            constants,
            filters,
            root,
            functions: Arc::new(ResourceKeys),
            text_plan,
        })
    }

    /// The view's `name`, when it has one (a table name by the `sql-name` rule).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The resource type the view reads (`Patient`).
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The view's `status` (`draft`, `active`, `retired`, `unknown`), when given.
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// The output columns in output order; every row of [`ViewDefinition::evaluate`]
    /// has one value per column, in this order.
    pub fn columns(&self) -> &[ViewColumn] {
        &self.columns
    }

    /// The rows `resource` gives, each with one value per column of
    /// [`ViewDefinition::columns`]: JSON null, a string, number or boolean, an object for
    /// a complex type, or an array for a `collection` column. A resource of another type,
    /// or one the `where` filters exclude, gives no rows.
    pub fn evaluate(&self, resource: &Value) -> Result<Vec<Vec<Value>>, ViewError> {
        run::evaluate(self, resource)
    }

    /// The rows of a resource given as JSON text: the same as [`ViewDefinition::evaluate`]
    /// on its parsed value, but, for a view of plain paths
    /// ([`ViewDefinition::reads_text_directly`]), without building the resource's tree.
    pub fn evaluate_text(&self, resource: &str) -> Result<Vec<Vec<Value>>, ViewError> {
        if let Some(plan) = &self.text_plan
            && let Ok(rows) = plan.evaluate(resource)
        {
            return rows;
        }
        let value: Value =
            serde_json::from_str(resource).map_err(|e| ViewError::NotJson(e.to_string()))?;
        self.evaluate(&value)
    }

    /// Whether [`ViewDefinition::evaluate_text`] reads the text directly: every
    /// expression of the view is in the compiled subset (member paths, `ofType` on a
    /// choice, `first()`, `exists()`, `count()`, unions under `first()`, the key
    /// functions, literals).
    pub fn reads_text_directly(&self) -> bool {
        self.text_plan.is_some()
    }
}

/// Builds the selection tree, assigning output columns in order.
struct Compiler {
    constants: Vec<String>,
    columns: Vec<ViewColumn>,
}

impl Compiler {
    fn expression(&self, text: &str, at: String) -> Result<Compiled, ViewError> {
        let expr = Expression::parse(text).map_err(|e| ViewError::Invalid {
            at: at.clone(),
            message: e.pointer(text),
        })?;
        for var in expr.variables() {
            if !builtin_variable(var) && !self.constants.iter().any(|c| c == var) {
                return Err(ViewError::invalid(
                    &at,
                    format!("%{var} is not defined: add a constant named {var:?}"),
                ));
            }
        }
        Ok(Compiled { at, expr })
    }

    fn select_list(&mut self, v: &Value, at: &str) -> Result<Vec<Selection>, ViewError> {
        let list = v
            .as_array()
            .ok_or_else(|| ViewError::invalid(at, "must be an array of selects"))?;
        list.iter()
            .enumerate()
            .map(|(i, s)| self.selection(s, &format!("{at}[{i}]")))
            .collect()
    }

    fn selection(&mut self, v: &Value, at: &str) -> Result<Selection, ViewError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ViewError::invalid(at, "a select is a JSON object"))?;
        check_keys(
            obj,
            &[
                "column",
                "select",
                "forEach",
                "forEachOrNull",
                "repeat",
                "unionAll",
                "id",
                "extension",
                "modifierExtension",
            ],
            at,
        )?;
        let given = ["forEach", "forEachOrNull", "repeat"]
            .into_iter()
            .filter(|k| obj.contains_key(*k))
            .collect::<Vec<_>>();
        if given.len() > 1 {
            return Err(ViewError::invalid(
                at,
                format!(
                    "has {}: a select takes at most one of forEach, forEachOrNull and repeat",
                    given.join(" and ")
                ),
            ));
        }
        let iteration = if let Some(p) = opt_str(obj, "forEach", &format!("{at}.forEach"))? {
            Iteration::ForEach(self.expression(&p, format!("{at}.forEach"))?)
        } else if let Some(p) = opt_str(obj, "forEachOrNull", &format!("{at}.forEachOrNull"))? {
            Iteration::ForEachOrNull(self.expression(&p, format!("{at}.forEachOrNull"))?)
        } else if let Some(r) = obj.get("repeat") {
            let rat = format!("{at}.repeat");
            let paths = r.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                ViewError::invalid(&rat, "must be a non-empty array of FHIRPath expressions")
            })?;
            let mut compiled = Vec::with_capacity(paths.len());
            for (i, p) in paths.iter().enumerate() {
                let pat = format!("{rat}[{i}]");
                let text = p
                    .as_str()
                    .ok_or_else(|| ViewError::invalid(&pat, "must be a string"))?;
                compiled.push(self.expression(text, pat)?);
            }
            Iteration::Repeat(compiled)
        } else {
            Iteration::Parent
        };

        let start = self.columns.len();
        let mut columns = Vec::new();
        let mut row_index_columns = Vec::new();
        if let Some(c) = obj.get("column") {
            let list = c
                .as_array()
                .ok_or_else(|| ViewError::invalid(&format!("{at}.column"), "must be an array"))?;
            for (i, col) in list.iter().enumerate() {
                let cat = format!("{at}.column[{i}]");
                let (view_col, path) = parse_column(col, &cat)?;
                if path.trim() == "%rowIndex" {
                    row_index_columns.push(self.columns.len() - start);
                }
                let expr = self.expression(&path, format!("{cat}.path"))?;
                columns.push(SelectColumn {
                    expr,
                    collection: view_col.collection,
                });
                self.add_column(view_col, &cat)?;
            }
        }
        let select = match obj.get("select") {
            Some(s) => self.select_list(s, &format!("{at}.select"))?,
            None => Vec::new(),
        };
        let mut union_all = Vec::new();
        if let Some(u) = obj.get("unionAll") {
            let uat = format!("{at}.unionAll");
            let branches = u
                .as_array()
                .ok_or_else(|| ViewError::invalid(&uat, "must be an array of selects"))?;
            let before = self.columns.len();
            let mut first: Option<Vec<ViewColumn>> = None;
            for (i, b) in branches.iter().enumerate() {
                let bat = format!("{uat}[{i}]");
                let branch = self.selection(b, &bat)?;
                // Every branch fills the same output columns: keep the first branch's
                // definitions and check the others against them.
                let cols = self.columns.split_off(before);
                match &first {
                    None => first = Some(cols),
                    Some(f) => {
                        let names = |cs: &[ViewColumn]| {
                            cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
                        };
                        if names(f) != names(&cols) {
                            return Err(ViewError::invalid(
                                &bat,
                                format!(
                                    "unionAll branches must have the same columns in the same order: [{}] here, [{}] in the first branch",
                                    names(&cols).join(", "),
                                    names(f).join(", ")
                                ),
                            ));
                        }
                    }
                }
                union_all.push(branch);
            }
            // Each branch's names were checked against the columns before it.
            self.columns.extend(first.unwrap_or_default());
        }
        let width = self.columns.len() - start;
        // The null row of forEachOrNull covers nested selects too.
        let mut offset = columns.len();
        for s in select.iter() {
            row_index_columns.extend(s.row_index_columns.iter().map(|k| k + offset));
            offset += s.width;
        }
        if let Some(u) = union_all.first() {
            row_index_columns.extend(u.row_index_columns.iter().map(|k| k + offset));
        }
        Ok(Selection {
            iteration,
            columns,
            select,
            union_all,
            width,
            row_index_columns,
        })
    }

    fn add_column(&mut self, col: ViewColumn, at: &str) -> Result<(), ViewError> {
        if self.columns.iter().any(|c| c.name == col.name) {
            return Err(ViewError::invalid(
                at,
                format!(
                    "column {:?} is defined twice: column names must be unique",
                    col.name
                ),
            ));
        }
        self.columns.push(col);
        Ok(())
    }
}

fn parse_column(v: &Value, at: &str) -> Result<(ViewColumn, String), ViewError> {
    let o = v.as_object().ok_or_else(|| {
        ViewError::invalid(at, "a column is a JSON object with a name and a path")
    })?;
    check_keys(
        o,
        &[
            "path",
            "name",
            "description",
            "collection",
            "type",
            "tag",
            "id",
            "extension",
            "modifierExtension",
        ],
        at,
    )?;
    let path = opt_str(o, "path", &format!("{at}.path"))?
        .ok_or_else(|| ViewError::invalid(at, "missing path"))?;
    let name = opt_str(o, "name", &format!("{at}.name"))?
        .ok_or_else(|| ViewError::invalid(at, "missing name"))?;
    if !is_sql_name(&name) {
        return Err(ViewError::invalid(
            &format!("{at}.name"),
            format!(
                "{name:?} is not a valid column name: use letters, digits and _, starting with a letter"
            ),
        ));
    }
    let collection = match o.get("collection") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ViewError::invalid(
                &format!("{at}.collection"),
                "must be true or false",
            ));
        }
    };
    let mut tags = Vec::new();
    if let Some(t) = o.get("tag") {
        let tat = format!("{at}.tag");
        let list = t
            .as_array()
            .ok_or_else(|| ViewError::invalid(&tat, "must be an array"))?;
        for (i, tag) in list.iter().enumerate() {
            let iat = format!("{tat}[{i}]");
            let to = tag.as_object().ok_or_else(|| {
                ViewError::invalid(&iat, "a tag is an object with name and value")
            })?;
            check_keys(to, &["name", "value", "id", "extension"], &iat)?;
            let n = opt_str(to, "name", &iat)?;
            let val = opt_str(to, "value", &iat)?;
            match (n, val) {
                (Some(n), Some(val)) => tags.push((n, val)),
                _ => return Err(ViewError::invalid(&iat, "a tag needs a name and a value")),
            }
        }
    }
    Ok((
        ViewColumn {
            name,
            fhir_type: opt_str(o, "type", &format!("{at}.type"))?,
            collection,
            description: opt_str(o, "description", &format!("{at}.description"))?,
            tags,
        },
        path,
    ))
}

fn parse_constants(obj: &Map<String, Value>) -> Result<Vec<(String, Item<'static>)>, ViewError> {
    let Some(c) = obj.get("constant") else {
        return Ok(Vec::new());
    };
    let list = c
        .as_array()
        .ok_or_else(|| ViewError::invalid("constant", "must be an array"))?;
    let mut out: Vec<(String, Item<'static>)> = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let at = format!("constant[{i}]");
        let o = c.as_object().ok_or_else(|| {
            ViewError::invalid(&at, "a constant is an object with a name and a value[x]")
        })?;
        let name = opt_str(o, "name", &format!("{at}.name"))?
            .ok_or_else(|| ViewError::invalid(&at, "missing name"))?;
        if !is_sql_name(&name) {
            return Err(ViewError::invalid(
                &format!("{at}.name"),
                format!(
                    "{name:?} is not a valid constant name: use letters, digits and _, starting with a letter"
                ),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ViewError::invalid(
                &at,
                format!("constant {name:?} is defined twice"),
            ));
        }
        let mut value = None;
        for (k, v) in o {
            if matches!(k.as_str(), "name" | "id" | "extension") {
                continue;
            }
            let ty = k
                .strip_prefix("value")
                .filter(|t| CONSTANT_TYPES.contains(t));
            let Some(ty) = ty else {
                return Err(ViewError::invalid(
                    &format!("{at}.{k}"),
                    "unknown key: a constant has a name and one value[x] of a primitive type",
                ));
            };
            if value.is_some() {
                return Err(ViewError::invalid(
                    &at,
                    "a constant has exactly one value[x]",
                ));
            }
            value = Some(constant_item(ty, v).ok_or_else(|| {
                ViewError::invalid(
                    &format!("{at}.{k}"),
                    format!("{v} is not a valid {ty} value"),
                )
            })?);
        }
        let value = value.ok_or_else(|| {
            ViewError::invalid(
                &at,
                format!("constant {name:?} has no value: give one value[x], such as valueString"),
            )
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// A constant as the FHIRPath value its literal would be.
fn constant_item(ty: &str, v: &Value) -> Option<Item<'static>> {
    Some(match ty {
        "Boolean" => Item::Boolean(v.as_bool()?),
        "Integer" | "PositiveInt" | "UnsignedInt" => Item::Integer(v.as_i64()?),
        // integer64 is a JSON string in the FHIR versions that have it.
        "Integer64" => Item::Integer(match v {
            Value::String(s) => s.parse().ok()?,
            _ => v.as_i64()?,
        }),
        "Decimal" => Item::Decimal(crate::fhirpath::Decimal::parse(
            &v.as_number()?.to_string(),
        )?),
        "Date" => Item::Date(PartialDateTime::parse_date_time(v.as_str()?)?),
        "DateTime" | "Instant" => Item::DateTime(PartialDateTime::parse_date_time(v.as_str()?)?),
        "Time" => Item::Time(PartialDateTime::parse_time(v.as_str()?)?),
        _ => Item::String(v.as_str()?.to_string()),
    })
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ViewError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) && !ELEMENT_KEYS.contains(&k.as_str()) {
            return Err(ViewError::invalid(
                at,
                format!("unknown key {k:?}; allowed here: {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

fn opt_str(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, ViewError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ViewError::invalid(
            at,
            format!("must be a string, found {other}"),
        )),
    }
}

#[cfg(test)]
mod tests;
