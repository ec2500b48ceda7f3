//! The evaluator: collections in, collections out.

use std::cmp::Ordering;
use std::rc::Rc;

use serde_json::Value;

use super::parser::{BinOp, Expr, Lit, TypeSpec};
use super::value::{Decimal, PartialDateTime, Quantity, calendar_unit, ucum_base};
use super::{Environment, EvalError, Item, Node, NodeType};
use crate::validate::{FieldType, ShapeId, Validator};

type Coll<'a> = Vec<Item<'a>>;
type R<T> = Result<T, EvalError>;

mod functions;
mod html;

/// Size limit for the results of `repeat` and `descendants`: the server evaluates
/// untrusted expressions.
const MAX_ITEMS: usize = 1_000_000;

/// Above the parser's token limit, so any accepted expression evaluates.
const MAX_EVAL_DEPTH: usize = 1000;

struct Ev<'a, 'e> {
    env: &'e Environment<'a>,
    context: Item<'a>,
    resource: Item<'a>,
    model: &'static Validator,
    now: chrono::DateTime<chrono::Local>,
    /// [`Environment::with_strict`]: semantic errors instead of empty results.
    strict: bool,
}

#[derive(Clone, Default)]
struct Frame<'a> {
    this: Option<Item<'a>>,
    index: Option<i64>,
    total: Option<Coll<'a>>,
    /// The variables `defineVariable` made for the rest of the path, innermost first.
    vars: Option<Rc<Defined<'a>>>,
}

/// One `defineVariable`: a list shared by every frame below it, since the frames of
/// `where` and `select` are made per item.
struct Defined<'a> {
    name: String,
    value: Coll<'a>,
    outer: Option<Rc<Defined<'a>>>,
}

impl<'a> Frame<'a> {
    fn defined(&self, name: &str) -> Option<&Coll<'a>> {
        let mut at = self.vars.as_deref();
        while let Some(d) = at {
            if d.name == name {
                return Some(&d.value);
            }
            at = d.outer.as_deref();
        }
        None
    }
}

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(EvalError::new(msg))
}

pub(crate) fn evaluate<'a>(expr: &Expr, context: &'a Value, env: &Environment<'a>) -> R<Coll<'a>> {
    evaluate_item(expr, root_node(context), env)
}

/// [`evaluate`] on an item of an earlier result, which keeps the FHIR type that item was
/// found with (a backbone element, a choice type) where its bare JSON would lose it.
pub(crate) fn evaluate_item<'a>(expr: &Expr, ctx: Item<'a>, env: &Environment<'a>) -> R<Coll<'a>> {
    let resource = env.resource.map_or_else(|| ctx.clone(), root_node);
    let ev = Ev {
        env,
        context: ctx.clone(),
        resource,
        model: Validator::r4(),
        now: chrono::Local::now(),
        strict: env.strict,
    };
    if env.strict {
        check_order(expr)?;
    }
    let frame = Frame {
        this: Some(ctx.clone()),
        ..Frame::default()
    };
    ev.eval(expr, &[ctx], &frame, 0)
}

/// Functions whose answer depends on the order of their input.
const ORDERED_FUNCTIONS: [&str; 5] = ["first", "last", "tail", "skip", "take"];

/// The strict-mode check of order: `children()` and `descendants()` answer in no defined
/// order, so taking the first of them, skipping some or indexing them is an error.
/// Returns whether `e` yields an unordered collection. It is done on the expression
/// before evaluating, so it holds whatever the data.
fn check_order(e: &Expr) -> R<bool> {
    Ok(match e {
        Expr::Member(recv, _) => check_order(recv)?,
        Expr::Index(recv, idx) => {
            check_order(idx)?;
            if check_order(recv)? {
                return err(
                    "an indexer needs an ordered collection; children() and descendants() have no order",
                );
            }
            false
        }
        Expr::Call(recv, name, args) => {
            for a in args {
                check_order(a)?;
            }
            let unordered = match recv {
                Some(r) => check_order(r)?,
                None => false,
            };
            if unordered && ORDERED_FUNCTIONS.contains(&name.as_str()) {
                return err(format!(
                    "{name}() needs an ordered collection; children() and descendants() have no order"
                ));
            }
            match name.as_str() {
                "children" | "descendants" => true,
                "where" | "select" | "ofType" | "as" | "distinct" | "trace" | "repeat"
                | "exclude" | "intersect" | "union" | "defineVariable" => unordered,
                _ => false,
            }
        }
        Expr::Neg(x) | Expr::Is(x, _) => {
            check_order(x)?;
            false
        }
        Expr::As(x, _) => check_order(x)?,
        Expr::Binary(op, l, r) => {
            let (a, b) = (check_order(l)?, check_order(r)?);
            *op == BinOp::Union && (a || b)
        }
        Expr::Lit(_)
        | Expr::Empty
        | Expr::Ident(_)
        | Expr::Var(_)
        | Expr::This
        | Expr::IndexVar
        | Expr::Total => false,
    })
}

fn root_node(v: &Value) -> Item<'_> {
    let ty = if v.get("resourceType").is_some() {
        NodeType::Resource
    } else {
        infer_type(v)
    };
    Item::Node(Node {
        value: Some(v),
        companion: None,
        ty,
    })
}

fn infer_type(v: &Value) -> NodeType {
    match v {
        Value::Bool(_) => NodeType::Primitive("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => NodeType::Primitive("integer"),
        Value::Number(_) => NodeType::Primitive("decimal"),
        Value::String(_) => NodeType::Primitive("string"),
        Value::Object(o) if o.contains_key("resourceType") => NodeType::Resource,
        _ => NodeType::Complex(None),
    }
}

const FHIR_PRIMITIVES: [&str; 20] = [
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

const SYSTEM_TYPES: [&str; 8] = [
    "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity",
];

/// The FHIR parent of a type, for `is`/`as`/`ofType`.
pub(crate) fn fhir_parent(model: &Validator, name: &str) -> Option<&'static str> {
    Some(match name {
        "code" | "id" | "markdown" => "string",
        "url" | "canonical" | "uuid" | "oid" => "uri",
        "positiveInt" | "unsignedInt" => "integer",
        "Age" | "Distance" | "Duration" | "Count" | "SimpleQuantity" | "MoneyQuantity" => {
            "Quantity"
        }
        "Bundle" | "Binary" | "Parameters" | "DomainResource" => "Resource",
        "Resource" | "Element" => return None,
        _ if FHIR_PRIMITIVES.contains(&name) => "Element",
        _ if model.is_resource_type(name) => "DomainResource",
        "BackboneElement" => "Element",
        _ => "Element",
    })
}

fn known_fhir_type(model: &Validator, name: &str) -> bool {
    FHIR_PRIMITIVES.contains(&name)
        || matches!(
            name,
            "Resource" | "DomainResource" | "Element" | "BackboneElement"
        )
        || model.shape_of_type(name).is_some()
}

impl<'a> Item<'a> {
    /// A primitive element as its system value; other items unchanged.
    pub(crate) fn sys(&self) -> Item<'a> {
        match self {
            Item::Node(n) => node_system_value(n).unwrap_or_else(|| self.clone()),
            _ => self.clone(),
        }
    }

    fn type_info(&self) -> (&'static str, String) {
        match self {
            Item::Boolean(_) => ("System", "Boolean".into()),
            Item::String(_) => ("System", "String".into()),
            Item::Integer(_) => ("System", "Integer".into()),
            Item::Decimal(_) => ("System", "Decimal".into()),
            Item::Date(_) => ("System", "Date".into()),
            Item::DateTime(_) => ("System", "DateTime".into()),
            Item::Time(_) => ("System", "Time".into()),
            Item::Quantity(_) => ("System", "Quantity".into()),
            Item::TypeInfo { .. } => ("System", "TypeInfo".into()),
            Item::Node(n) => ("FHIR", n.type_name()),
        }
    }
}

fn node_system_value<'a>(n: &Node<'a>) -> Option<Item<'a>> {
    match n.ty {
        NodeType::Primitive(p) => {
            let v = n.value?;
            Some(match (p, v) {
                (_, Value::Bool(b)) => Item::Boolean(*b),
                ("integer" | "positiveInt" | "unsignedInt", Value::Number(x)) => {
                    Item::Integer(x.as_i64()?)
                }
                (_, Value::Number(x)) => Item::Decimal(Decimal::parse(&x.to_string())?),
                ("date", Value::String(s)) => Item::Date(PartialDateTime::parse_date_time(s)?),
                ("dateTime" | "instant", Value::String(s)) => {
                    Item::DateTime(PartialDateTime::parse_date_time(s)?)
                }
                ("time", Value::String(s)) => Item::Time(PartialDateTime::parse_time(s)?),
                (_, Value::String(s)) => Item::String(s.clone()),
                _ => return None,
            })
        }
        NodeType::Complex(_) => {
            let name = n.type_name();
            if !matches!(
                name.as_str(),
                "Quantity" | "Age" | "Distance" | "Duration" | "Count" | "SimpleQuantity"
            ) {
                return None;
            }
            let v = n.value?;
            let value = Decimal::parse(&v.get("value")?.as_number()?.to_string())?;
            let unit = v
                .get("code")
                .or_else(|| v.get("unit"))
                .and_then(Value::as_str)
                .unwrap_or("1");
            Some(Item::Quantity(Quantity {
                value,
                unit: unit.to_string(),
            }))
        }
        NodeType::Resource => None,
    }
}

fn lit<'a>(l: &Lit) -> Item<'a> {
    match l {
        Lit::Boolean(b) => Item::Boolean(*b),
        Lit::String(s) => Item::String(s.clone()),
        Lit::Integer(i) => Item::Integer(*i),
        Lit::Decimal(d) => Item::Decimal(*d),
        Lit::Date(d) => Item::Date(*d),
        Lit::DateTime(d) => Item::DateTime(*d),
        Lit::Time(t) => Item::Time(*t),
        Lit::Quantity(q) => Item::Quantity(q.clone()),
    }
}

fn singleton<'a>(c: &[Item<'a>], what: &str) -> R<Option<Item<'a>>> {
    match c {
        [] => Ok(None),
        [x] => Ok(Some(x.sys())),
        _ => err(format!("{what} needs a single item, got {}", c.len())),
    }
}

/// A collection as a Boolean: empty is unknown, one Boolean is itself, one other item is
/// true.
fn to_bool(c: &[Item<'_>], what: &str) -> R<Option<bool>> {
    Ok(match singleton(c, what)? {
        None => None,
        Some(Item::Boolean(b)) => Some(b),
        Some(_) => Some(true),
    })
}

fn opt_bool<'a>(b: Option<bool>) -> Coll<'a> {
    b.map(|b| vec![Item::Boolean(b)]).unwrap_or_default()
}

fn string_of(item: &Item<'_>) -> Option<String> {
    Some(match item.sys() {
        Item::String(s) => s,
        Item::Boolean(b) => b.to_string(),
        Item::Integer(i) => i.to_string(),
        Item::Decimal(d) => d.to_string(),
        Item::Date(d) => d.format_date(),
        Item::DateTime(d) => d.format_date_time(),
        Item::Time(t) => t.format_time(),
        Item::Quantity(q) => q.format(),
        _ => return None,
    })
}

/// `=` on two single items; `None` when the answer is unknown (dates of different
/// precision).
fn item_equals(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    let (a, b) = (a.sys(), b.sys());
    match (&a, &b) {
        (Item::Boolean(x), Item::Boolean(y)) => Some(x == y),
        (Item::String(x), Item::String(y)) => Some(x == y),
        (Item::Integer(x), Item::Integer(y)) => Some(x == y),
        (Item::Integer(x), Item::Decimal(y)) | (Item::Decimal(y), Item::Integer(x)) => {
            Some(Decimal::from_i64(*x).cmp_value(*y) == Ordering::Equal)
        }
        (Item::Decimal(x), Item::Decimal(y)) => Some(x.cmp_value(*y) == Ordering::Equal),
        (Item::Date(x) | Item::DateTime(x), Item::Date(y) | Item::DateTime(y))
        | (Item::Time(x), Item::Time(y)) => x.compare(y).map(|o| o == Ordering::Equal),
        (Item::Quantity(x), Item::Quantity(y)) => x.equals(y),
        (Item::Node(x), Item::Node(y)) => {
            let same = |p: Option<&Value>, q: Option<&Value>| match (p, q) {
                (Some(p), Some(q)) => std::ptr::eq(p, q) || p == q,
                (None, None) => true,
                _ => false,
            };
            Some(same(x.value, y.value) && same(x.companion, y.companion))
        }
        (
            Item::TypeInfo {
                namespace: n1,
                name: a,
            },
            Item::TypeInfo {
                namespace: n2,
                name: b,
            },
        ) => Some(n1 == n2 && a == b),
        _ => Some(false),
    }
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn item_equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    let (a, b) = (a.sys(), b.sys());
    match (&a, &b) {
        (Item::String(x), Item::String(y)) => normalize_ws(x) == normalize_ws(y),
        (Item::Integer(x), Item::Decimal(y)) | (Item::Decimal(y), Item::Integer(x)) => {
            Decimal::from_i64(*x).equivalent(*y)
        }
        (Item::Decimal(x), Item::Decimal(y)) => x.equivalent(*y),
        (Item::Date(x) | Item::DateTime(x), Item::Date(y) | Item::DateTime(y))
        | (Item::Time(x), Item::Time(y)) => {
            // Seconds and milliseconds are one precision.
            x.precision().min(6) == y.precision().min(6) && x.compare(y) == Some(Ordering::Equal)
        }
        (Item::Quantity(x), Item::Quantity(y)) => x.equivalent(y),
        (Item::Node(x), Item::Node(y)) => match (x.value, y.value) {
            (Some(Value::Object(p)), Some(Value::Object(q))) => {
                json_equivalent(&Value::Object(p.clone()), &Value::Object(q.clone()))
            }
            _ => x.value == y.value,
        },
        _ => item_equals(&a, &b).unwrap_or(false),
    }
}

fn json_equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(p), Value::Object(q)) => {
            let keys = |m: &serde_json::Map<String, Value>| {
                m.keys()
                    .filter(|k| *k != "id" && *k != "extension")
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
            };
            keys(p) == keys(q)
                && keys(p)
                    .iter()
                    .all(|k| json_equivalent(&p[k.as_str()], &q[k.as_str()]))
        }
        (Value::String(x), Value::String(y)) => normalize_ws(x) == normalize_ws(y),
        _ => a == b,
    }
}

fn compare_items(a: &Item<'_>, b: &Item<'_>) -> R<Option<Ordering>> {
    let (a, b) = (a.sys(), b.sys());
    Ok(match (&a, &b) {
        (Item::String(x), Item::String(y)) => Some(x.cmp(y)),
        (Item::Integer(x), Item::Integer(y)) => Some(x.cmp(y)),
        (Item::Integer(x), Item::Decimal(y)) => Some(Decimal::from_i64(*x).cmp_value(*y)),
        (Item::Decimal(x), Item::Integer(y)) => Some(x.cmp_value(Decimal::from_i64(*y))),
        (Item::Decimal(x), Item::Decimal(y)) => Some(x.cmp_value(*y)),
        (Item::Date(x) | Item::DateTime(x), Item::Date(y) | Item::DateTime(y))
        | (Item::Time(x), Item::Time(y)) => x.compare(y),
        (Item::Quantity(x), Item::Quantity(y)) => match x.compare(y) {
            Some(o) => Some(o),
            None => return err("quantities with incompatible units cannot be compared"),
        },
        _ => return err("operands of a comparison must be of the same type"),
    })
}

fn contains_item(c: &[Item<'_>], x: &Item<'_>) -> bool {
    c.iter().any(|y| item_equals(x, y) == Some(true))
}

fn distinct<'a>(c: Coll<'a>) -> Coll<'a> {
    let mut out: Coll<'a> = Vec::with_capacity(c.len());
    for x in c {
        if !contains_item(&out, &x) {
            out.push(x);
        }
    }
    out
}

fn num_of(item: &Item<'_>) -> Option<Decimal> {
    match item.sys() {
        Item::Integer(i) => Some(Decimal::from_i64(i)),
        Item::Decimal(d) => Some(d),
        _ => None,
    }
}

impl<'a> Ev<'a, '_> {
    fn eval(&self, e: &Expr, focus: &[Item<'a>], fr: &Frame<'a>, depth: usize) -> R<Coll<'a>> {
        if depth > MAX_EVAL_DEPTH {
            return err("expression nested too deeply");
        }
        let d = depth + 1;
        match e {
            Expr::Lit(l) => Ok(vec![lit(l)]),
            Expr::Empty => Ok(Vec::new()),
            Expr::This => Ok(fr.this.iter().cloned().collect()),
            Expr::IndexVar => Ok(fr.index.map(Item::Integer).into_iter().collect()),
            Expr::Total => Ok(fr.total.clone().unwrap_or_default()),
            Expr::Var(name) => self.var(name, fr),
            Expr::Ident(name) => {
                // A leading type name selects the focus if it is of that type.
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    let typed: Coll<'a> = focus
                        .iter()
                        .filter(|i| matches!(i, Item::Node(n) if n.ty == NodeType::Resource && self.is_type(i, None, name)))
                        .cloned()
                        .collect();
                    if !typed.is_empty() {
                        return Ok(typed);
                    }
                    if self.model.is_resource_type(name)
                        && let Some(Item::Node(n)) = focus
                            .iter()
                            .find(|i| matches!(i, Item::Node(n) if n.ty == NodeType::Resource))
                    {
                        if self.strict {
                            return err(format!(
                                "the expression is about {name}, but the context is a {}",
                                n.type_str()
                            ));
                        }
                        return Ok(Vec::new());
                    }
                }
                self.members(focus, name)
            }
            Expr::Member(..) | Expr::Index(..) | Expr::Call(..) => {
                Ok(self.eval_path(e, focus, fr, d)?.0)
            }
            Expr::Neg(inner) => {
                let v = self.eval(inner, focus, fr, d)?;
                match singleton(&v, "unary minus")? {
                    None => Ok(Vec::new()),
                    Some(Item::Integer(i)) => Ok(vec![Item::Integer(
                        i.checked_neg()
                            .ok_or_else(|| EvalError::new("integer overflow"))?,
                    )]),
                    Some(Item::Decimal(x)) => Ok(vec![Item::Decimal(x.negated())]),
                    Some(Item::Quantity(q)) => Ok(vec![Item::Quantity(Quantity {
                        value: q.value.negated(),
                        unit: q.unit,
                    })]),
                    Some(_) => err("unary minus needs a number or quantity"),
                }
            }
            Expr::Is(inner, spec) => {
                let v = self.eval(inner, focus, fr, d)?;
                match singleton(&v, "is")? {
                    None => Ok(Vec::new()),
                    Some(_) => Ok(vec![Item::Boolean(self.is_type(
                        &v[0],
                        spec.namespace.as_deref(),
                        &spec.name,
                    ))]),
                }
            }
            Expr::As(inner, spec) => {
                let v = self.eval(inner, focus, fr, d)?;
                self.check_type_name(spec)?;
                if v.len() > 1 {
                    return err("as needs a single item");
                }
                Ok(v.into_iter()
                    .filter(|i| self.is_type_exact(i, spec.namespace.as_deref(), &spec.name))
                    .collect())
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, focus, fr, d),
        }
    }

    /// A path of members, indexers and calls, left to right. A `defineVariable` along it
    /// makes its variable for the rest of the path only (not for the other side of a
    /// `|`, nor outside the argument it is in), so the frame it makes is passed along the
    /// path and returned with the result; `None` means the frame is `fr`.
    fn eval_path(
        &self,
        e: &Expr,
        focus: &[Item<'a>],
        fr: &Frame<'a>,
        depth: usize,
    ) -> R<(Coll<'a>, Option<Frame<'a>>)> {
        if depth > MAX_EVAL_DEPTH {
            return err("expression nested too deeply");
        }
        let d = depth + 1;
        let receiver = |recv: &Expr| -> R<(Coll<'a>, Option<Frame<'a>>)> {
            match recv {
                Expr::Member(..) | Expr::Index(..) | Expr::Call(..) => {
                    self.eval_path(recv, focus, fr, d)
                }
                _ => Ok((self.eval(recv, focus, fr, d)?, None)),
            }
        };
        match e {
            Expr::Member(recv, name) => {
                self.check_member_of_cast(recv, name)?;
                let (base, f) = receiver(recv)?;
                Ok((self.members(&base, name)?, f))
            }
            Expr::Index(recv, idx) => {
                let (base, f) = receiver(recv)?;
                let i = self.eval(idx, focus, f.as_ref().unwrap_or(fr), d)?;
                let picked = match singleton(&i, "an indexer")? {
                    None => Vec::new(),
                    Some(Item::Integer(i)) => usize::try_from(i)
                        .ok()
                        .and_then(|i| base.get(i).cloned())
                        .into_iter()
                        .collect(),
                    Some(_) => return err("an indexer must be an Integer"),
                };
                Ok((picked, f))
            }
            Expr::Call(recv, name, args) => {
                let (base, f) = match recv {
                    Some(r) => receiver(r)?,
                    None => (focus.to_vec(), None),
                };
                let frame = f.as_ref().unwrap_or(fr);
                if name == "defineVariable" {
                    let defined = self.define_variable(&base, args, frame, d)?;
                    return Ok((base, Some(defined)));
                }
                Ok((self.call(name, base, args, focus, frame, d)?, f))
            }
            _ => Ok((self.eval(e, focus, fr, d)?, None)),
        }
    }

    /// `defineVariable(name [, value])`: the frame for the rest of the path, with `%name`
    /// set to the value (evaluated on the input as a whole) or to the input itself.
    fn define_variable(
        &self,
        input: &[Item<'a>],
        args: &[Expr],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Frame<'a>> {
        if args.is_empty() || args.len() > 2 {
            return err("defineVariable() takes a name and, optionally, a value");
        }
        let name = match singleton(&self.eval(&args[0], input, fr, d)?, "a variable name")? {
            Some(Item::String(s)) => s,
            _ => return err("defineVariable() needs the variable name as a String"),
        };
        let system = matches!(
            name.as_str(),
            "context" | "resource" | "rootResource" | "ucum" | "sct" | "loinc"
        ) || name.starts_with("vs-")
            || name.starts_with("ext-");
        if system || self.env.vars.contains_key(&name) || fr.defined(&name).is_some() {
            return err(format!(
                "%{name} is already defined here; choose another name for defineVariable()"
            ));
        }
        let value = match args.get(1) {
            Some(e) => self.eval(e, input, fr, d)?,
            None => input.to_vec(),
        };
        Ok(Frame {
            vars: Some(Rc::new(Defined {
                name,
                value,
                outer: fr.vars.clone(),
            })),
            ..fr.clone()
        })
    }

    /// `(x as Period).unit`: the type of the receiver is known from the expression alone,
    /// so a member it does not have is an error even when the cast yields nothing.
    fn check_member_of_cast(&self, recv: &Expr, name: &str) -> R<()> {
        let Expr::As(_, spec) = recv else {
            return Ok(());
        };
        if spec.namespace.as_deref() == Some("System") {
            return Ok(());
        }
        let Some(shape) = self.model.shape_of_type(&spec.name) else {
            return Ok(());
        };
        let known = self.model.has_element(shape, name)
            || matches!(name, "id" | "extension" | "modifierExtension");
        if known || self.model.is_resource_type(&spec.name) {
            return Ok(());
        }
        err(format!("{} has no element {name}", spec.name))
    }

    fn var(&self, name: &str, fr: &Frame<'a>) -> R<Coll<'a>> {
        if let Some(v) = fr.defined(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.env.vars.get(name) {
            return Ok(v.clone());
        }
        Ok(match name {
            "context" => vec![self.context.clone()],
            "resource" | "rootResource" => vec![self.resource.clone()],
            "ucum" => vec![Item::String("http://unitsofmeasure.org".into())],
            "sct" => vec![Item::String("http://snomed.info/sct".into())],
            "loinc" => vec![Item::String("http://loinc.org".into())],
            _ => {
                if let Some(vs) = name.strip_prefix("vs-") {
                    vec![Item::String(format!("http://hl7.org/fhir/ValueSet/{vs}"))]
                } else if let Some(ext) = name.strip_prefix("ext-") {
                    vec![Item::String(format!(
                        "http://hl7.org/fhir/StructureDefinition/{ext}"
                    ))]
                } else {
                    return err(format!("undefined variable %{name}"));
                }
            }
        })
    }

    fn shape_of(&self, n: &Node<'a>) -> Option<ShapeId> {
        match n.ty {
            NodeType::Complex(s) => s,
            NodeType::Resource => self
                .model
                .shape_of_type(n.value?.get("resourceType")?.as_str()?),
            NodeType::Primitive(_) => Some(self.model.element_shape()),
        }
    }

    fn members(&self, focus: &[Item<'a>], name: &str) -> R<Coll<'a>> {
        let mut out = Vec::new();
        for item in focus {
            match item {
                Item::Node(n) => self.child(n, name, &mut out)?,
                Item::TypeInfo {
                    namespace,
                    name: tn,
                } => match name {
                    "namespace" => out.push(Item::String((*namespace).to_string())),
                    "name" => out.push(Item::String(tn.clone())),
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(out)
    }

    fn child(&self, n: &Node<'a>, name: &str, out: &mut Coll<'a>) -> R<()> {
        let shape = self.shape_of(n);
        let obj = match (n.ty, n.value, n.companion) {
            (NodeType::Primitive(_), _, Some(Value::Object(o))) => o,
            (NodeType::Primitive(_), _, _) => return Ok(()),
            (_, Some(Value::Object(o)), _) => o,
            _ => return Ok(()),
        };
        let direct = obj.get(name);
        let companion = obj.get(&format!("_{name}"));
        if direct.is_some() || companion.is_some() {
            let field = shape.and_then(|s| self.model.field(s, name));
            if let Some(f) = field
                && f.choice
            {
                return err(format!(
                    "{name} is one type of the choice element {}; use {}",
                    f.element,
                    f.element.trim_end_matches("[x]")
                ));
            }
            let ty = field.map(|f| f.ty);
            self.push_values(direct, companion, ty, out);
            return Ok(());
        }
        // A choice element: `value` finds `valueQuantity`.
        for (key, v) in obj {
            let Some(rest) = key.strip_prefix(name) else {
                continue;
            };
            if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            let field = shape.and_then(|s| self.model.field(s, key));
            let ty = match field {
                Some(f) if f.choice && f.element.strip_suffix("[x]") == Some(name) => Some(f.ty),
                Some(_) => continue,
                None if shape.is_some() => continue,
                None => {
                    let lower = format!("{}{}", rest[..1].to_ascii_lowercase(), &rest[1..]);
                    match FHIR_PRIMITIVES.iter().find(|p| **p == lower) {
                        Some(p) => Some(FieldType::Primitive(p)),
                        None => self.model.shape_of_type(rest).map(FieldType::Complex),
                    }
                }
            };
            let companion = obj.get(&format!("_{key}"));
            self.push_values(Some(v), companion, ty, out);
        }
        if self.strict
            && let Some(s) = shape
            && !self.model.has_element(s, name)
            && !matches!(name, "id" | "extension" | "modifierExtension")
        {
            return err(format!(
                "{} has no element {name}; check the spelling against the FHIR R4 definition",
                n.type_str()
            ));
        }
        Ok(())
    }

    fn push_values(
        &self,
        v: Option<&'a Value>,
        companion: Option<&'a Value>,
        ty: Option<FieldType>,
        out: &mut Coll<'a>,
    ) {
        let node = |v: Option<&'a Value>, c: Option<&'a Value>| {
            let ty = match ty {
                Some(FieldType::Primitive(p)) => NodeType::Primitive(p),
                Some(FieldType::Complex(s)) => NodeType::Complex(Some(s)),
                Some(FieldType::Resource) => NodeType::Resource,
                None => v.map_or(NodeType::Primitive("string"), infer_type),
            };
            Item::Node(Node {
                value: v.filter(|v| !v.is_null()),
                companion: c.filter(|c| !c.is_null()),
                ty,
            })
        };
        match (v, companion) {
            (Some(Value::Array(vs)), c) => {
                let cs = c.and_then(Value::as_array);
                for (i, x) in vs.iter().enumerate() {
                    out.push(node(Some(x), cs.and_then(|cs| cs.get(i))));
                }
            }
            (None, Some(Value::Array(cs))) => {
                for c in cs {
                    out.push(node(None, Some(c)));
                }
            }
            (v, c) => out.push(node(v, c)),
        }
    }

    fn check_type_name(&self, spec: &TypeSpec) -> R<()> {
        let ok = match spec.namespace.as_deref() {
            Some("System") => SYSTEM_TYPES.contains(&spec.name.as_str()),
            Some("FHIR") => known_fhir_type(self.model, &spec.name),
            Some(_) => false,
            None => {
                SYSTEM_TYPES.contains(&spec.name.as_str())
                    || known_fhir_type(self.model, &spec.name)
            }
        };
        if ok {
            Ok(())
        } else {
            err(format!("unknown type {}", spec.name))
        }
    }

    /// `as` and `ofType`: a FHIR primitive matches only its own type (a `code` is not
    /// cast to `string`), while `is` follows the primitive type hierarchy.
    fn is_type_exact(&self, item: &Item<'a>, ns: Option<&str>, name: &str) -> bool {
        match item {
            Item::Node(n) if matches!(n.ty, NodeType::Primitive(_)) && ns != Some("System") => {
                n.type_name() == name
            }
            _ => self.is_type(item, ns, name),
        }
    }

    fn is_type(&self, item: &Item<'a>, ns: Option<&str>, name: &str) -> bool {
        match item {
            Item::Node(n) => {
                if ns == Some("System") {
                    return false;
                }
                let mut t = n.type_name();
                loop {
                    if t == name {
                        return true;
                    }
                    match fhir_parent(self.model, &t) {
                        Some(p) => t = p.to_string(),
                        None => return false,
                    }
                }
            }
            _ => {
                if ns == Some("FHIR") {
                    return false;
                }
                let (_, t) = item.type_info();
                t == name
            }
        }
    }

    fn binary(
        &self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        focus: &[Item<'a>],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Coll<'a>> {
        let a = self.eval(l, focus, fr, d)?;
        // Short-circuit where the right side cannot change the result.
        match op {
            BinOp::And if to_bool(&a, "and")? == Some(false) => {
                return Ok(vec![Item::Boolean(false)]);
            }
            BinOp::Or if to_bool(&a, "or")? == Some(true) => {
                return Ok(vec![Item::Boolean(true)]);
            }
            BinOp::Implies if to_bool(&a, "implies")? == Some(false) => {
                return Ok(vec![Item::Boolean(true)]);
            }
            _ => {}
        }
        let b = self.eval(r, focus, fr, d)?;
        match op {
            BinOp::And => {
                let (x, y) = (to_bool(&a, "and")?, to_bool(&b, "and")?);
                Ok(opt_bool(match (x, y) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }))
            }
            BinOp::Or => {
                let (x, y) = (to_bool(&a, "or")?, to_bool(&b, "or")?);
                Ok(opt_bool(match (x, y) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }))
            }
            BinOp::Xor => {
                let (x, y) = (to_bool(&a, "xor")?, to_bool(&b, "xor")?);
                Ok(opt_bool(match (x, y) {
                    (Some(x), Some(y)) => Some(x != y),
                    _ => None,
                }))
            }
            BinOp::Implies => {
                let (x, y) = (to_bool(&a, "implies")?, to_bool(&b, "implies")?);
                Ok(opt_bool(match (x, y) {
                    (Some(false), _) | (_, Some(true)) => Some(true),
                    (Some(true), Some(false)) => Some(false),
                    _ => None,
                }))
            }
            BinOp::Union => {
                let mut all = a;
                all.extend(b);
                Ok(distinct(all))
            }
            BinOp::Eq | BinOp::Ne => {
                if a.is_empty() || b.is_empty() {
                    return Ok(Vec::new());
                }
                let eq = if a.len() != b.len() {
                    Some(false)
                } else {
                    let mut res = Some(true);
                    for (x, y) in a.iter().zip(b.iter()) {
                        match item_equals(x, y) {
                            Some(true) => {}
                            Some(false) => {
                                res = Some(false);
                                break;
                            }
                            None => res = None,
                        }
                    }
                    res
                };
                Ok(opt_bool(eq.map(|e| if op == BinOp::Eq { e } else { !e })))
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                let eq = if a.is_empty() && b.is_empty() {
                    true
                } else if a.len() != b.len() {
                    false
                } else {
                    a.iter().all(|x| b.iter().any(|y| item_equivalent(x, y)))
                        && b.iter().all(|y| a.iter().any(|x| item_equivalent(x, y)))
                };
                Ok(vec![Item::Boolean(if op == BinOp::Equiv {
                    eq
                } else {
                    !eq
                })])
            }
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let (Some(x), Some(y)) =
                    (singleton(&a, "comparison")?, singleton(&b, "comparison")?)
                else {
                    return Ok(Vec::new());
                };
                let Some(o) = compare_items(&x, &y)? else {
                    return Ok(Vec::new());
                };
                Ok(vec![Item::Boolean(match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Gt => o == Ordering::Greater,
                    BinOp::Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                })])
            }
            BinOp::In | BinOp::Contains => {
                let (needle, hay) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
                match singleton(needle, "in/contains")? {
                    None => Ok(Vec::new()),
                    Some(x) => Ok(vec![Item::Boolean(contains_item(hay, &x))]),
                }
            }
            BinOp::Concat => {
                let s = |c: &[Item<'a>]| -> R<String> {
                    Ok(match singleton(c, "&")? {
                        None => String::new(),
                        Some(Item::String(s)) => s,
                        Some(_) => return err("& needs strings"),
                    })
                };
                Ok(vec![Item::String(s(&a)? + &s(&b)?)])
            }
            _ => {
                let (Some(x), Some(y)) =
                    (singleton(&a, "arithmetic")?, singleton(&b, "arithmetic")?)
                else {
                    return Ok(Vec::new());
                };
                arith(op, x, y)
            }
        }
    }
}

fn overflow() -> EvalError {
    EvalError::new("arithmetic overflow")
}

fn arith<'a>(op: BinOp, x: Item<'a>, y: Item<'a>) -> R<Coll<'a>> {
    let one = |i: Item<'a>| Ok(vec![i]);
    match (op, &x, &y) {
        (BinOp::Add, Item::String(a), Item::String(b)) => one(Item::String(format!("{a}{b}"))),
        (_, Item::Integer(a), Item::Integer(b)) => {
            let (a, b) = (*a, *b);
            match op {
                BinOp::Add => one(Item::Integer(a.checked_add(b).ok_or_else(overflow)?)),
                BinOp::Sub => one(Item::Integer(a.checked_sub(b).ok_or_else(overflow)?)),
                BinOp::Mul => one(Item::Integer(a.checked_mul(b).ok_or_else(overflow)?)),
                BinOp::IntDiv => Ok(if b == 0 {
                    Vec::new()
                } else {
                    vec![Item::Integer(a / b)]
                }),
                BinOp::Mod => Ok(if b == 0 {
                    Vec::new()
                } else {
                    vec![Item::Integer(a % b)]
                }),
                _ => Ok(Decimal::from_i64(a)
                    .checked_div(Decimal::from_i64(b))
                    .map(Item::Decimal)
                    .into_iter()
                    .collect()),
            }
        }
        (_, Item::Integer(_) | Item::Decimal(_), Item::Integer(_) | Item::Decimal(_)) => {
            let (Some(a), Some(b)) = (num_of(&x), num_of(&y)) else {
                return Ok(Vec::new());
            };
            let r = match op {
                BinOp::Add => Some(a.checked_add(b).ok_or_else(overflow)?),
                BinOp::Sub => Some(a.checked_sub(b).ok_or_else(overflow)?),
                BinOp::Mul => Some(a.checked_mul(b).ok_or_else(overflow)?),
                BinOp::Div => a.checked_div(b),
                BinOp::IntDiv => {
                    return Ok(a
                        .checked_div(b)
                        .and_then(|q| q.truncated().to_i64())
                        .map(Item::Integer)
                        .into_iter()
                        .collect());
                }
                BinOp::Mod => a.checked_rem(b),
                _ => return err("bad arithmetic operator"),
            };
            Ok(r.map(Item::Decimal).into_iter().collect())
        }
        (
            BinOp::Add | BinOp::Sub,
            Item::Date(d) | Item::DateTime(d) | Item::Time(d),
            Item::Quantity(q),
        ) => {
            let amount = if op == BinOp::Sub {
                q.value.negated()
            } else {
                q.value
            };
            let is_time = matches!(x, Item::Time(_));
            if let Some(word) = match q.unit.as_str() {
                "a" => Some("year"),
                "mo" => Some("month"),
                _ => None,
            } {
                return err(format!(
                    "'{}' is a UCUM average, not a definite duration, and cannot be added to a \
                     date or time: use the calendar duration {word} (`{} {word}s`)",
                    q.unit, q.value
                ));
            }
            let Some(unit) = calendar_unit(&q.unit) else {
                return err(format!("cannot add '{}' to a date or time", q.unit));
            };
            if is_time && matches!(unit, "year" | "month" | "week" | "day") {
                return err(format!(
                    "a time has no date to add {}s to: use hours, minutes, seconds or \
                     milliseconds",
                    unit
                ));
            }
            let r = d
                .add_duration(amount, &q.unit, is_time)
                .ok_or_else(|| EvalError::new("date arithmetic out of range"))?;
            one(match x {
                Item::Date(_) => Item::Date(r),
                Item::DateTime(_) => Item::DateTime(r),
                _ => Item::Time(r),
            })
        }
        (_, Item::Quantity(a), Item::Quantity(b)) => match op {
            BinOp::Add | BinOp::Sub => {
                if a.unit != b.unit {
                    return Ok(Vec::new());
                }
                let v = if op == BinOp::Add {
                    a.value.checked_add(b.value)
                } else {
                    a.value.checked_sub(b.value)
                };
                one(Item::Quantity(Quantity {
                    value: v.ok_or_else(overflow)?,
                    unit: a.unit.clone(),
                }))
            }
            BinOp::Mul => {
                // Units of one dimension are multiplied in its base unit (cm * m = m2).
                if let (Some((da, fa)), Some((db, fb))) = (ucum_base(&a.unit), ucum_base(&b.unit))
                    && da == db
                    && da != "1"
                {
                    let (x, y) = if a.unit == b.unit {
                        (a.value, b.value)
                    } else {
                        (
                            a.value.checked_mul(fa).ok_or_else(overflow)?,
                            b.value.checked_mul(fb).ok_or_else(overflow)?,
                        )
                    };
                    let unit = if a.unit == b.unit { &a.unit } else { da };
                    return one(Item::Quantity(Quantity {
                        value: x.checked_mul(y).ok_or_else(overflow)?,
                        unit: format!("{unit}2"),
                    }));
                }
                one(Item::Quantity(Quantity {
                    value: a.value.checked_mul(b.value).ok_or_else(overflow)?,
                    unit: mul_unit(&a.unit, &b.unit, '.'),
                }))
            }
            BinOp::Div => Ok(a
                .value
                .checked_div(b.value)
                .map(|v| {
                    Item::Quantity(Quantity {
                        value: v,
                        unit: if a.unit == b.unit {
                            "1".into()
                        } else {
                            mul_unit(&a.unit, &b.unit, '/')
                        },
                    })
                })
                .into_iter()
                .collect()),
            _ => err("bad quantity operator"),
        },
        (BinOp::Mul | BinOp::Div, Item::Quantity(a), Item::Integer(_) | Item::Decimal(_)) => {
            let Some(n) = num_of(&y) else {
                return Ok(Vec::new());
            };
            let v = if op == BinOp::Mul {
                a.value.checked_mul(n)
            } else {
                a.value.checked_div(n)
            };
            Ok(v.map(|v| {
                Item::Quantity(Quantity {
                    value: v,
                    unit: a.unit.clone(),
                })
            })
            .into_iter()
            .collect())
        }
        (BinOp::Mul, Item::Integer(_) | Item::Decimal(_), Item::Quantity(_)) => arith(op, y, x),
        _ => err(format!(
            "operator not defined for {} and {}",
            x.type_info().1,
            y.type_info().1
        )),
    }
}

fn mul_unit(a: &str, b: &str, sep: char) -> String {
    match (a, b) {
        ("1", b) if sep == '.' => b.to_string(),
        (a, "1") => a.to_string(),
        _ => format!("{a}{sep}{b}"),
    }
}
