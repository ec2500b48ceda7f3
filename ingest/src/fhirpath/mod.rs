//! A FHIRPath (N1, with the FHIR R4 additions) parser and evaluator over FHIR R4 JSON.
//!
//! # Why hand-written
//!
//! No crate fits: octofhir-fhirpath passes only about 83% of the HL7 suite,
//! ferrobridge-fhirpath is BUSL-licensed (not open source), and fhirpathrs and
//! haste-fhirpath are tied to their own object models or are immature. medlake needs one
//! engine that works directly on the `serde_json::Value` it stores, for search indexing,
//! SQL-on-FHIR views and FHIRPath Patch.
//!
//! # Example
//!
//! ```
//! use medlake_ingest::fhirpath::Expression;
//! use serde_json::json;
//!
//! let patient = json!({
//!     "resourceType": "Patient",
//!     "birthDate": "1974-12-25",
//!     "name": [{"use": "official", "given": ["Peter", "James"]}]
//! });
//! let expr = Expression::parse("name.where(use = 'official').given.first()").unwrap();
//! let found: Vec<_> = expr.evaluate(&patient).unwrap().iter().map(|i| i.to_json()).collect();
//! assert_eq!(found, vec![json!("Peter")]);
//!
//! let born = Expression::parse("birthDate < @2000").unwrap();
//! assert_eq!(born.evaluate(&patient).unwrap()[0].to_json(), json!(true));
//! ```
//!
//! # Design
//!
//! [`Expression::parse`] turns the text into a small AST once; [`Expression::evaluate`]
//! walks it over a resource, borrowing from the JSON (results are [`Item`]s that point
//! into the input where they come from it). The FHIR type of every element is taken from
//! the R4 element tables the validator already loads ([`crate::validate::Validator`]), so
//! `value` finds `valueQuantity`, `is`/`ofType` know that a `code` is a `string`, and a
//! `birthDate` string compares as a date. Decimals are exact (`mantissa / 10^scale`) so
//! that precision-sensitive operations (`~`, `toString`, `round`, the boundaries) behave as
//! specified; a boundary that rounds a negative value to zero is the one negative zero
//! (`(-0.0034).lowBoundary(1)` is `-0.0`), and it equals zero.
//!
//! Dates, date-times and times keep the components they were written with
//! ([`PartialDateTime`]). Arithmetic adds calendar durations (`1 month` clamps
//! `@2019-01-31` to `@2019-02-28`) and the definite UCUM durations (`'wk'`, `'d'`, `'h'`,
//! `'min'`, `'s'`, `'ms'`); the UCUM `'mo'` and `'a'` are averages and are refused. The
//! result keeps the precision of the left operand: the amount is converted to its finest
//! unit and truncated (`@2014 + 23 months` is `@2015`; days count 30 to a month and 365 to
//! a year for that), and above seconds the decimal part of the amount is dropped.
//!
//! `defineVariable` makes its variable for the rest of the path it is called on (and the
//! arguments along it), not for the other side of a `|` nor outside the argument it is
//! in: the evaluator carries the definitions in the frame it passes along a path
//! (`eval::Frame`). [`Environment::with_strict`] turns what the specification calls
//! semantic errors (an element the model does not have, a path for another resource type,
//! `first()` on the unordered `children()`) into errors instead of empty results; a
//! typed choice name (`valueQuantity`) is an error in either mode.

mod eval;
pub(crate) mod parser;
pub(crate) use eval::fhir_parent;
pub mod patch;
#[cfg(test)]
mod tests;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use value::{Decimal, PartialDateTime, Quantity};

use crate::validate::{ShapeId, Validator};

/// A syntax error, with the byte offset in the expression where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath syntax error at offset {offset}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl ParseError {
    /// The expression with a caret under the offending position, for messages.
    pub fn pointer(&self, text: &str) -> String {
        let col = text
            .get(..self.offset)
            .map_or(text.chars().count(), |t| t.chars().count());
        format!("{text}\n{}^ {}", " ".repeat(col), self.message)
    }
}

/// An error while evaluating (a type mismatch, a collection where one item is needed, an
/// unknown function).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath evaluation error: {message}")]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> EvalError {
        EvalError {
            message: message.into(),
        }
    }
}

/// A parsed FHIRPath expression: parse once, evaluate many times, from any thread.
#[derive(Debug, Clone)]
pub struct Expression {
    text: String,
    ast: parser::Expr,
}

/// The FHIR type of an element in a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// A FHIR primitive by type code (`string`, `date`, `code`).
    Primitive(&'static str),
    /// A data type or backbone element, when the model knows it.
    Complex(Option<ShapeId>),
    /// A resource, typed by its `resourceType`.
    Resource,
}

/// An element of the input: its JSON value, the `_x` companion of a primitive (id and
/// extensions), and its FHIR type.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// `None` for a primitive that has only extensions (`_x` without `x`).
    pub value: Option<&'a Value>,
    pub companion: Option<&'a Value>,
    pub ty: NodeType,
}

impl<'a> Node<'a> {
    /// The FHIR type name: `string`, `HumanName`, `Patient`, `BackboneElement`.
    pub fn type_name(&self) -> String {
        self.type_str().to_string()
    }

    /// [`Node::type_name`], borrowed: search indexing asks it of every value.
    pub fn type_str(&self) -> &'a str {
        match self.ty {
            NodeType::Primitive(p) => p,
            NodeType::Complex(Some(s)) => {
                let name = Validator::r4().shape_name(s);
                if name.contains('.') {
                    "BackboneElement"
                } else {
                    name
                }
            }
            NodeType::Complex(None) => "Element",
            NodeType::Resource => self
                .value
                .and_then(|v| v.get("resourceType"))
                .and_then(Value::as_str)
                .unwrap_or("Resource"),
        }
    }
}

/// One item of a FHIRPath result collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(Decimal),
    Date(PartialDateTime),
    DateTime(PartialDateTime),
    Time(PartialDateTime),
    Quantity(Quantity),
    /// The result of `type()`.
    TypeInfo {
        namespace: &'static str,
        name: String,
    },
    Node(Node<'a>),
}

impl<'a> Item<'a> {
    /// A FHIR primitive element as its FHIRPath system value (a `date` element becomes a
    /// `Date`, a `Quantity` element a `Quantity`); other items unchanged.
    pub fn to_system(&self) -> Item<'a> {
        self.sys()
    }

    /// The item as JSON: elements as they are in the input, system values as JSON
    /// scalars (dates and quantities as their FHIRPath literal text, without `@`).
    pub fn to_json(&self) -> Value {
        match self {
            Item::Boolean(b) => Value::Bool(*b),
            Item::String(s) => Value::String(s.clone()),
            Item::Integer(i) => Value::from(*i),
            Item::Decimal(d) => {
                serde_json::from_str::<Value>(&d.to_string()).unwrap_or(Value::Null)
            }
            Item::Date(d) => Value::String(d.format_date()),
            Item::DateTime(d) => Value::String(d.format_date_time()),
            Item::Time(t) => Value::String(t.format_time()),
            Item::Quantity(q) => serde_json::json!({
                "value": serde_json::from_str::<Value>(&q.value.to_string()).unwrap_or(Value::Null),
                "unit": q.unit,
            }),
            Item::TypeInfo { namespace, name } => {
                serde_json::json!({ "namespace": namespace, "name": name })
            }
            Item::Node(n) => match (n.value, n.companion) {
                (Some(v), _) => v.clone(),
                (None, Some(c)) => c.clone(),
                (None, None) => Value::Null,
            },
        }
    }
}

/// Functions an embedding application adds to FHIRPath, such as SQL-on-FHIR's
/// `getResourceKey()` and `getReferenceKey()`: what they answer depends on the
/// application (how it keys rows), so the engine asks for them rather than defining them.
/// The engine's own functions always take precedence.
pub trait ExternalFunctions: Send + Sync + fmt::Debug {
    /// Whether `name` is one of these functions; asked before any argument is evaluated.
    fn provides(&self, name: &str) -> bool;

    /// Calls `name` (one that [`ExternalFunctions::provides`]) on `input`.
    fn call<'a>(
        &self,
        name: &str,
        input: &[Item<'a>],
        args: &[FunctionArg<'a>],
    ) -> Result<Vec<Item<'a>>, EvalError>;
}

/// An argument of an [`ExternalFunctions`] call.
#[derive(Debug, Clone)]
pub struct FunctionArg<'a> {
    /// The argument as written when it is a bare identifier, so that a function can take a
    /// type specifier (`getReferenceKey(Patient)`) as `ofType` does.
    pub type_name: Option<String>,
    /// The argument evaluated on the focus of the call.
    pub value: Vec<Item<'a>>,
}

/// Variables and context for an evaluation: `%resource`, `%context`, `%rootResource`,
/// and user variables (`%ucum`, `%sct`, `%loinc` are always defined).
#[derive(Debug, Clone, Default)]
pub struct Environment<'a> {
    vars: HashMap<String, Vec<Item<'a>>>,
    resource: Option<&'a Value>,
    functions: Option<Arc<dyn ExternalFunctions>>,
    strict: bool,
}

impl<'a> Environment<'a> {
    pub fn new() -> Environment<'a> {
        Environment::default()
    }

    /// Defines `%name` (without the `%`).
    pub fn with_var(mut self, name: impl Into<String>, value: Vec<Item<'a>>) -> Environment<'a> {
        self.vars.insert(name.into(), value);
        self
    }

    /// Sets `%resource` (and `%rootResource`) when the evaluation context is an element
    /// inside it rather than the resource itself.
    pub fn with_resource(mut self, resource: &'a Value) -> Environment<'a> {
        self.resource = Some(resource);
        self
    }

    /// Adds the functions of `functions` to those of the engine.
    pub fn with_functions(mut self, functions: Arc<dyn ExternalFunctions>) -> Environment<'a> {
        self.functions = Some(functions);
        self
    }

    /// Defines or replaces `%name` in place, for a caller that evaluates many times with
    /// one variable changing (a row index).
    pub fn set_var(&mut self, name: &str, value: Vec<Item<'a>>) {
        match self.vars.get_mut(name) {
            Some(v) => *v = value,
            None => {
                self.vars.insert(name.to_string(), value);
            }
        }
    }
    /// The specification's strict mode: what lenient evaluation answers with an empty
    /// collection becomes an error. A member the R4 definition of its element does not
    /// have (`name.given1`), a path for another resource type than the context
    /// (`Encounter.name` on a Patient), and `first()`, `last()`, `tail()`, `skip()`,
    /// `take()` or an indexer on the unordered output of `children()` and
    /// `descendants()`. Element names are checked where the data has the element, not
    /// ahead of evaluation.
    pub fn with_strict(mut self, strict: bool) -> Environment<'a> {
        self.strict = strict;
        self
    }
}

impl Expression {
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        Ok(Expression {
            text: text.to_string(),
            ast: parser::parse(text)?,
        })
    }

    /// The expression as written.
    /// The syntax tree, for the view compiler that turns plain paths into lookups over
    /// JSON text ([`crate::view`]).
    pub(crate) fn ast(&self) -> &parser::Expr {
        &self.ast
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates with the resource as `%resource`, `%context` and the focus.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Result<Vec<Item<'a>>, EvalError> {
        self.evaluate_with(resource, &Environment::new())
    }

    /// Evaluates with `context` as the focus and `%context`, and the variables of `env`.
    pub fn evaluate_with<'a>(
        &self,
        context: &'a Value,
        env: &Environment<'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        eval::evaluate(&self.ast, context, env)
    }

    /// Evaluates with an item of an earlier result as the focus and `%context`. Unlike
    /// [`Expression::evaluate_with`] on that item's JSON, this keeps the FHIR type the item
    /// was found with, which choice elements (`value.ofType(string)` in a backbone element)
    /// and FHIR-typed comparisons need.
    pub fn evaluate_on<'a>(
        &self,
        context: &Item<'a>,
        env: &Environment<'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        eval::evaluate_item(&self.ast, context.clone(), env)
    }

    /// The names of the variables the expression refers to (`%name`, without the `%`), in
    /// order of appearance, each once: a caller can reject an undefined one before
    /// evaluating anything.
    pub fn variables(&self) -> Vec<&str> {
        let mut out = Vec::new();
        collect_variables(&self.ast, &mut out);
        out
    }
}

fn collect_variables<'e>(e: &'e parser::Expr, out: &mut Vec<&'e str>) {
    use parser::Expr;
    match e {
        Expr::Var(name) => {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        Expr::Lit(_) | Expr::Empty | Expr::Ident(_) | Expr::This | Expr::IndexVar | Expr::Total => {
        }
        Expr::Member(inner, _) | Expr::Neg(inner) | Expr::Is(inner, _) | Expr::As(inner, _) => {
            collect_variables(inner, out)
        }
        Expr::Index(a, b) | Expr::Binary(_, a, b) => {
            collect_variables(a, out);
            collect_variables(b, out);
        }
        Expr::Call(recv, _, args) => {
            if let Some(r) = recv {
                collect_variables(r, out);
            }
            for a in args {
                collect_variables(a, out);
            }
        }
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
