//! Structural validation of FHIR R4 (4.0.1) resources in their JSON form.
//!
//! # What is checked
//!
//! Against the element tables of the R4 StructureDefinitions, vendored in
//! `ingest/r4/definitions.json.gz` (see `ingest/r4/SOURCE.md`; regenerate with
//! `python3 tools/vendor-r4.py`):
//!
//! - the top level is a JSON object whose `resourceType` is a concrete R4 resource type,
//!   and its `id`, if any, is a valid id (`[A-Za-z0-9\-\.]{1,64}`);
//! - every key is an element of its object's type: plain elements, choice elements by
//!   their typed names (`valueQuantity`, `deceasedBoolean`; at most one per choice), the
//!   `_x` companions of primitives (`_birthDate`: `id` and `extension`), `resourceType`
//!   on resources only;
//! - cardinality: max `*` must be a JSON array, max `1` must not be; an element with
//!   min >= 1 must be present (checked in every object that is present);
//! - the FHIR JSON rules: no empty objects, arrays or strings, no `null` except in
//!   primitive arrays whose `_x` companion has an entry at that index (and vice versa);
//! - the formats of the primitive types (boolean, integer, unsignedInt, positiveInt,
//!   decimal, string, markdown, uri, url, canonical, id, oid, uuid, code, date,
//!   dateTime, instant, time, base64Binary, xhtml), including real calendar dates;
//! - nested data types (HumanName, Quantity, Reference, Extension, ...), inline backbone
//!   elements (`Patient.contact`), `contentReference`s (`Questionnaire.item.item`) and
//!   nested resources (`contained`, `Bundle.entry.resource`, `Parameters.parameter.resource`)
//!   by the type of each, recursively.
//!
//! One type beyond R4 is accepted: the SQL-on-FHIR v2 `ViewDefinition` ([`VIEW_DEFINITION`]),
//! so that views can be stored in the FHIR API. It has no R4 element table; the view
//! parser ([`crate::view::ViewDefinition::from_json`]) checks it instead, with its `id`
//! and `meta` checked as any resource's. [`Validator::is_resource_type`] stays R4 only
//! (FHIRPath types and view targets are R4); [`Validator::is_stored_type`] says what the
//! lake may hold.
//!
//! Not checked: invariants (FHIRPath constraints such as `dom-2` or `ele-1`), terminology
//! bindings, profiles (`meta.profile`, SimpleQuantity), reference targets, and the content
//! of `Narrative.div` beyond being a string.
//!
//! # Design
//!
//! The validator is hand-written because no maintained Rust crate validates FHIR R4 JSON
//! structurally, and a generic engine (JSON Schema, a FHIRPath/StructureDefinition
//! interpreter) is an order of magnitude slower than bulk ingest can afford (tens of
//! thousands of resources per second on one core).
//!
//! At first use ([`Validator::r4`]) the embedded definitions are decompressed and turned
//! into one [`defs::Shape`] per resource, data type and backbone element: a hash map (Fx
//! hash) from every JSON key allowed on that object to the element it belongs to and the
//! type of its value, already resolved to a shape index or a primitive kind. Validation
//! is then one walk over the JSON value with one table lookup per key; the elements seen
//! in an object are kept in a `u128` bit set for the required-element and choice checks;
//! primitive formats are checked by hand-written code ([`primitive`]) instead of regexes.
//! The path of the current element is a linked list of `&str` segments on the stack, and
//! is rendered into an expression string (`Patient.name[0].given[1]`) only when an issue
//! is reported, so a valid resource is validated without allocating.

mod defs;
mod model;
mod primitive;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::issue::Issue;
use defs::{Defs, Elem, Key, Prim, Shape, Ty};
pub use model::{Field, FieldType, ShapeId};
use primitive::PrimError;

/// At most this many issues are reported for one resource.
const MAX_ISSUES: usize = 20;

/// Objects nested deeper than this are reported instead of followed.
const MAX_DEPTH: usize = 128;

/// Abstract resource types: known, but not valid as a `resourceType`.
const ABSTRACT_RESOURCES: [&str; 3] = ["Resource", "DomainResource", "MetadataResource"];

/// The one resource type beyond R4 that medlake stores and validates: the SQL-on-FHIR
/// v2 ViewDefinition (<https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html>),
/// so that views live in the FHIR API beside the data they read. It is checked by
/// [`crate::view::ViewDefinition::from_json`] rather than by R4 element tables.
pub const VIEW_DEFINITION: &str = "ViewDefinition";

/// The FHIR R4 structural validator. Get it with [`Validator::r4`].
pub struct Validator {
    defs: Defs,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("fhir_version", &self.defs.fhir_version)
            .field("resource_types", &self.defs.resource_names.len())
            .field("shapes", &self.defs.shapes.len())
            .finish()
    }
}

impl Validator {
    /// The validator for FHIR R4 4.0.1, built once from the embedded definitions.
    pub fn r4() -> &'static Validator {
        static R4: OnceLock<Validator> = OnceLock::new();
        R4.get_or_init(|| Validator { defs: Defs::load() })
    }

    /// Is this a resource type defined in R4 (e.g. "Patient"; abstract "Resource" and
    /// "DomainResource" are not)?
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.defs.resources.contains_key(name)
    }

    /// All concrete R4 resource type names, sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        self.defs.resource_names.iter().map(|n| &**n).collect()
    }

    /// Is this a `resourceType` that [`Validator::validate`] accepts at the top level,
    /// and so one the lake stores: an R4 type or [`VIEW_DEFINITION`]?
    pub fn is_stored_type(&self, name: &str) -> bool {
        name == VIEW_DEFINITION || self.is_resource_type(name)
    }

    /// Every type of [`Validator::is_stored_type`], sorted.
    pub fn stored_types(&self) -> Vec<&str> {
        let mut types = self.resource_types();
        types.push(VIEW_DEFINITION);
        types.sort_unstable();
        types
    }

    /// Check one resource. `Ok(())`, or every problem found (at most 20).
    pub fn validate(&self, resource: &Value) -> Result<(), Vec<Issue>> {
        let mut walk = Walk {
            defs: &self.defs,
            issues: Vec::new(),
        };
        walk.resource(resource, None, 0);
        if walk.issues.is_empty() {
            Ok(())
        } else {
            Err(walk.issues)
        }
    }
}

/// One step of an element path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    /// The resource type at the top: `Patient`.
    Root(&'a str),
    /// A JSON key: `.name`; a leading `_` (primitive companion) is dropped.
    Key(&'a str),
    /// An array index: `[0]`.
    Index(usize),
}

/// An element path as a linked list on the stack, rendered only when needed.
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

impl<'a> Path<'a> {
    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    /// `Patient.name[0].given[1]`.
    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut p = Some(self);
        while let Some(node) = p {
            segs.push(node.seg);
            p = node.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match *seg {
                Seg::Root(name) => out.push_str(name),
                Seg::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key.strip_prefix('_').unwrap_or(key));
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// A short description of a JSON value for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string '{}'", snippet(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// At most 60 characters of `s`.
fn snippet(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// The state of one validation.
struct Walk<'d> {
    defs: &'d Defs,
    issues: Vec<Issue>,
}

impl<'d> Walk<'d> {
    #[inline]
    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    fn report(&mut self, code: &'static str, diagnostics: String, at: Option<&Path<'_>>) {
        if self.full() {
            return;
        }
        let issue = Issue::error(code, diagnostics);
        self.issues.push(match at {
            Some(path) => issue.at(path.render()),
            None => issue,
        });
    }

    /// A resource: the top level (`at` is None) or a nested one (`contained[0]`, ...).
    fn resource(&mut self, v: &Value, at: Option<&Path<'_>>, depth: usize) {
        let Value::Object(obj) = v else {
            self.report(
                "structure",
                format!("a resource must be a JSON object, found {}", describe(v)),
                at,
            );
            return;
        };
        let rt = match obj.get("resourceType") {
            Some(Value::String(rt)) => rt.as_str(),
            Some(other) => {
                self.report(
                    "invalid",
                    format!(
                        "resourceType must be a string naming an R4 resource type, found {}",
                        describe(other)
                    ),
                    at,
                );
                return;
            }
            None => {
                self.report(
                    "invalid",
                    "the resource has no resourceType (expected a string such as \"Patient\")"
                        .to_string(),
                    at,
                );
                return;
            }
        };
        if rt == VIEW_DEFINITION {
            self.view_definition(v, obj, at, depth);
            return;
        }
        let Some(&shape) = self.defs.resources.get(rt) else {
            let why = if ABSTRACT_RESOURCES.contains(&rt) {
                format!(
                    "resourceType '{rt}' is abstract; use a concrete R4 resource type such as Patient"
                )
            } else if let Some(proper) = self
                .defs
                .resource_names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(rt))
            {
                format!(
                    "unknown resourceType '{}' (R4 resource types are case-sensitive: did you mean '{proper}'?)",
                    snippet(rt)
                )
            } else {
                format!(
                    "unknown resourceType '{}' (not an R4 {} resource type)",
                    snippet(rt),
                    self.defs.fhir_version
                )
            };
            self.report("not-supported", why, at);
            return;
        };
        let root = Path {
            parent: None,
            seg: Seg::Root(rt),
        };
        let base = at.unwrap_or(&root);
        self.object(shape, obj, base, depth);
    }

    /// A SQL-on-FHIR ViewDefinition, which R4 does not define: checked by the view
    /// parser (every rule it enforces before evaluation), its `id` as any resource id,
    /// and its `meta` as an R4 Meta, because the lake writes `versionId` and
    /// `lastUpdated` into it.
    fn view_definition(
        &mut self,
        v: &Value,
        obj: &Map<String, Value>,
        at: Option<&Path<'_>>,
        depth: usize,
    ) {
        let root = Path {
            parent: None,
            seg: Seg::Root(VIEW_DEFINITION),
        };
        let base = at.unwrap_or(&root);
        if let Some(id) = obj.get("id") {
            self.typed(Ty::Prim(Prim::ResourceId), "id", id, &base.key("id"), depth);
        }
        if let Some(meta) = obj.get("meta")
            && let Some(shape) = self.defs.shapes.iter().position(|s| &*s.name == "Meta")
        {
            self.typed(
                Ty::Complex(shape as u32),
                "meta",
                meta,
                &base.key("meta"),
                depth,
            );
        }
        if let Err(e) = crate::view::ViewDefinition::from_json(v) {
            let issue = match e {
                crate::view::ViewError::Invalid { at: place, message } => {
                    let where_ = if place == "(root)" {
                        base.render()
                    } else {
                        format!("{}.{place}", base.render())
                    };
                    Issue::error("invalid", format!("invalid ViewDefinition: {message}")).at(where_)
                }
                other => Issue::error("invalid", other.to_string()).at(base.render()),
            };
            if !self.full() {
                self.issues.push(issue);
            }
        }
    }

    /// An object of a known shape.
    fn object(&mut self, shape_idx: u32, obj: &Map<String, Value>, path: &Path<'_>, depth: usize) {
        let defs = self.defs;
        let shape = &defs.shapes[shape_idx as usize];
        if depth > MAX_DEPTH {
            self.report(
                "structure",
                format!("elements are nested more than {MAX_DEPTH} levels deep"),
                Some(path),
            );
            return;
        }
        if obj.is_empty() {
            self.report(
                "structure",
                format!("empty object for {} (FHIR JSON does not allow empty objects; leave the element out)", shape.name),
                Some(path),
            );
            return;
        }
        let mut seen: u128 = 0;
        let mut seen_main: u128 = 0;
        for (k, v) in obj {
            if self.full() {
                return;
            }
            let Some(key) = shape.keys.get(k.as_str()) else {
                if !(shape.is_resource && k == "resourceType") {
                    let msg = unknown_element(shape, k);
                    self.report("structure", msg, Some(&path.key(k)));
                }
                continue;
            };
            let elem = &shape.elems[key.elem as usize];
            let bit = 1u128 << key.elem;
            seen |= bit;
            let child = path.key(k);
            if key.companion {
                self.companion(shape, elem, key, k, v, obj, &child, depth);
            } else {
                if elem.choice && seen_main & bit != 0 {
                    let others: Vec<&str> = obj
                        .keys()
                        .filter(|k2| {
                            *k2 != k
                                && shape
                                    .keys
                                    .get(k2.as_str())
                                    .is_some_and(|o| o.elem == key.elem && !o.companion)
                        })
                        .map(String::as_str)
                        .collect();
                    self.report(
                        "structure",
                        format!(
                            "only one of the {} choices may be present on {}, found '{}' and '{}'",
                            elem.name,
                            shape.name,
                            others.join("', '"),
                            k
                        ),
                        Some(&child),
                    );
                    continue;
                }
                seen_main |= bit;
                self.value(elem, key, k, v, obj, &child, depth);
            }
        }
        if seen & shape.required_mask != shape.required_mask {
            for &r in &shape.required {
                if seen & (1u128 << r) == 0 {
                    let elem = &shape.elems[r as usize];
                    let msg = if elem.choice {
                        format!(
                            "element '{}' is required on {} (min {}): give one of {}",
                            elem.name,
                            shape.name,
                            elem.min,
                            elem.variants.join(", ")
                        )
                    } else {
                        format!(
                            "element '{}' is required on {} (min {})",
                            elem.name, shape.name, elem.min
                        )
                    };
                    self.report("required", msg, Some(&path.key(&elem.name)));
                }
            }
        }
    }

    /// The value of a (non-companion) key, with its cardinality.
    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        elem: &Elem,
        key: &Key,
        k: &str,
        v: &Value,
        obj: &Map<String, Value>,
        path: &Path<'_>,
        depth: usize,
    ) {
        if elem.many {
            let Value::Array(items) = v else {
                self.report(
                    "structure",
                    format!("'{k}' must be an array (max *), found {}", describe(v)),
                    Some(path),
                );
                return;
            };
            if items.is_empty() {
                self.report(
                    "structure",
                    format!("'{k}' is an empty array (FHIR JSON does not allow empty arrays; leave the element out)"),
                    Some(path),
                );
                return;
            }
            for (i, item) in items.iter().enumerate() {
                if self.full() {
                    return;
                }
                let ip = path.index(i);
                if item.is_null() {
                    let paired = matches!(key.ty, Ty::Prim(_))
                        && matches!(obj.get(&*key.pair), Some(Value::Array(c)) if c.get(i).is_some_and(|e| !e.is_null()));
                    if !paired {
                        self.report(
                            "structure",
                            format!(
                                "'{k}[{i}]' is null (a null in an array is allowed only when '_{k}[{i}]' carries an id or extensions)"
                            ),
                            Some(&ip),
                        );
                    }
                    continue;
                }
                if matches!(item, Value::Array(_)) {
                    self.report(
                        "structure",
                        format!("'{k}[{i}]' is an array inside an array"),
                        Some(&ip),
                    );
                    continue;
                }
                self.typed(key.ty, k, item, &ip, depth);
            }
        } else {
            match v {
                Value::Array(_) => self.report(
                    "structure",
                    format!(
                        "'{k}' must not be an array (max 1) but a single {}",
                        type_label(self.defs, key.ty)
                    ),
                    Some(path),
                ),
                Value::Null => self.report(
                    "structure",
                    format!("'{k}' is null (FHIR JSON does not allow null; leave the element out)"),
                    Some(path),
                ),
                _ => self.typed(key.ty, k, v, path, depth),
            }
        }
    }

    /// One (non-null, non-array) value of a type.
    fn typed(&mut self, ty: Ty, k: &str, v: &Value, path: &Path<'_>, depth: usize) {
        match ty {
            Ty::Prim(prim) => {
                if let Err(e) = primitive::check(prim, v) {
                    self.primitive_issue(prim, k, v, e, path);
                }
            }
            Ty::Complex(shape) => match v {
                Value::Object(m) => self.object(shape, m, path, depth + 1),
                _ => {
                    let name = &self.defs.shapes[shape as usize].name;
                    self.report(
                        "structure",
                        format!(
                            "'{k}' must be a JSON object ({name}), found {}",
                            describe(v)
                        ),
                        Some(path),
                    );
                }
            },
            Ty::Resource => self.resource(v, Some(path), depth + 1),
        }
    }

    fn primitive_issue(&mut self, prim: Prim, k: &str, v: &Value, e: PrimError, path: &Path<'_>) {
        let name = k.strip_prefix('_').unwrap_or(k);
        match e {
            PrimError::Kind => {
                let code = if matches!(v, Value::Object(_) | Value::Array(_)) {
                    "structure"
                } else {
                    "value"
                };
                let kind = primitive::json_kind(prim);
                self.report(
                    code,
                    format!(
                        "'{name}' must be a JSON {kind} (FHIR {}), found {}",
                        prim.name(),
                        describe(v)
                    ),
                    Some(path),
                );
            }
            PrimError::Format(why) => {
                let shown = match v {
                    Value::String(s) => snippet(s),
                    other => other.to_string(),
                };
                let (code, what) = if prim == Prim::ResourceId {
                    ("invalid", "resource id".to_string())
                } else {
                    ("value", format!("FHIR {}", prim.name()))
                };
                let why = why.map(|w| format!("; {w}")).unwrap_or_default();
                self.report(
                    code,
                    format!(
                        "{name} '{shown}' is not a valid {what} (expected {}{why})",
                        primitive::expected(prim)
                    ),
                    Some(path),
                );
            }
        }
    }

    /// A `_x` companion: the id and extensions of the primitive `x` (or of each entry).
    #[allow(clippy::too_many_arguments)]
    fn companion(
        &mut self,
        shape: &Shape,
        elem: &Elem,
        key: &Key,
        k: &str,
        v: &Value,
        obj: &Map<String, Value>,
        path: &Path<'_>,
        depth: usize,
    ) {
        let main = obj.get(&*key.pair);
        if elem.choice && main.is_none() {
            // `_valueString` next to `valueCode`: two different choices.
            if let Some(other) = obj.keys().find(|k2| {
                shape
                    .keys
                    .get(k2.as_str())
                    .is_some_and(|o| o.elem == key.elem && !o.companion)
            }) {
                self.report(
                    "structure",
                    format!(
                        "'{k}' does not belong to '{other}': only one of the {} choices may be present on {}",
                        elem.name, shape.name
                    ),
                    Some(path),
                );
                return;
            }
        }
        let element_shape = self.defs.element_shape;
        if elem.many {
            let Value::Array(items) = v else {
                self.report(
                    "structure",
                    format!("'{k}' must be an array (max *) of objects or nulls, matching '{}', found {}", key.pair, describe(v)),
                    Some(path),
                );
                return;
            };
            if items.is_empty() {
                self.report(
                    "structure",
                    format!("'{k}' is an empty array (FHIR JSON does not allow empty arrays; leave the element out)"),
                    Some(path),
                );
                return;
            }
            let mains = match main {
                Some(Value::Array(m)) => Some(m),
                _ => None,
            };
            if let Some(m) = mains
                && m.len() != items.len()
            {
                self.report(
                        "structure",
                        format!(
                            "'{k}' has {} entries but '{}' has {}: they must line up one to one (use null for no entry)",
                            items.len(),
                            key.pair,
                            m.len()
                        ),
                        Some(path),
                    );
            }
            for (i, item) in items.iter().enumerate() {
                if self.full() {
                    return;
                }
                let ip = path.index(i);
                match item {
                    Value::Object(m) => self.object(element_shape, m, &ip, depth + 1),
                    Value::Null => {
                        // A null pair is reported on the main array; here only when there is none.
                        if mains.is_none() {
                            self.report(
                                "structure",
                                format!(
                                    "'{k}[{i}]' is null and there is no '{}' value for it",
                                    key.pair
                                ),
                                Some(&ip),
                            );
                        }
                    }
                    other => self.report(
                        "structure",
                        format!(
                            "'{k}[{i}]' must be a JSON object (id, extension) or null, found {}",
                            describe(other)
                        ),
                        Some(&ip),
                    ),
                }
            }
        } else {
            match v {
                Value::Object(m) => self.object(element_shape, m, path, depth + 1),
                Value::Array(_) => self.report(
                    "structure",
                    format!("'{k}' must not be an array (max 1) but a JSON object (id, extension)"),
                    Some(path),
                ),
                Value::Null => self.report(
                    "structure",
                    format!("'{k}' is null (FHIR JSON does not allow null; leave the element out)"),
                    Some(path),
                ),
                other => self.report(
                    "structure",
                    format!(
                        "'{k}' must be a JSON object (id, extension), found {}",
                        describe(other)
                    ),
                    Some(path),
                ),
            }
        }
    }
}

/// "JSON object (HumanName)", "JSON string (FHIR date)", for messages.
fn type_label(defs: &Defs, ty: Ty) -> String {
    match ty {
        Ty::Prim(p) => format!("JSON {} (FHIR {})", primitive::json_kind(p), p.name()),
        Ty::Complex(s) => format!("JSON object ({})", defs.shapes[s as usize].name),
        Ty::Resource => "resource (a JSON object with a resourceType)".into(),
    }
}

/// The message for a key that is not an element of `shape`, with a hint where one helps.
fn unknown_element(shape: &Shape, k: &str) -> String {
    let mut msg = format!("unknown element '{k}' on {}", shape.name);
    if k == "resourceType" {
        msg.push_str(" (resourceType belongs on resources only)");
        return msg;
    }
    if let Some(base) = k.strip_prefix('_')
        && let Some(key) = shape.keys.get(base)
        && !key.companion
        && !matches!(key.ty, Ty::Prim(_))
    {
        msg.push_str(&format!(
            " ('_x' companions exist for primitive elements only; '{base}' is not primitive)"
        ));
        return msg;
    }
    // A choice element named wrongly: `valueFoo`, `value`, `value[x]`.
    let plain = k.strip_prefix('_').unwrap_or(k);
    for elem in &shape.elems {
        if !elem.choice {
            continue;
        }
        let base = elem.name.strip_suffix("[x]").unwrap_or(&elem.name);
        if let Some(rest) = plain.strip_prefix(base)
            && (rest.is_empty()
                || rest == "[x]"
                || rest.starts_with(|c: char| c.is_ascii_uppercase()))
        {
            msg.push_str(&format!(
                " ({} is a choice: use one of {})",
                elem.name,
                elem.variants.join(", ")
            ));
            return msg;
        }
    }
    // A case slip: `birthdate` for `birthDate`.
    if let Some(elem) = shape
        .elems
        .iter()
        .find(|e| !e.choice && e.name.eq_ignore_ascii_case(plain))
    {
        msg.push_str(&format!(" (did you mean '{}'?)", elem.name));
    }
    msg
}
