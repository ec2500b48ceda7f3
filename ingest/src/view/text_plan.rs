//! A view compiled to lookups over a resource's JSON text, for the plain paths that
//! most views are made of.
//!
//! [`super::run`] evaluates a view the general way: the resource is parsed into a
//! `serde_json::Value` tree and every column is a FHIRPath evaluation over it, with the
//! R4 model consulted at each step. That is the specification in full, but a
//! materialized view puts millions of stored resources through it, and for those the
//! tree and the interpreter are nearly all of the cost, while the built-in views only
//! ever ask for a few fields: `status`, `code.coding.first().code`,
//! `value.ofType(Quantity).value`, `subject.getReferenceKey(Patient)`.
//!
//! So [`TextPlan::compile`] turns a view whose every expression is of that kind into a
//! trie of the JSON keys it reads, resolved once against the R4 model (which key a
//! choice such as `value.ofType(Quantity)` is, whether a step leads to a primitive),
//! and [`TextPlan::evaluate`] reads a resource's text once with [`jiter`], keeping the
//! values under those keys and skipping everything else without building it. The
//! columns are then evaluated over that small tree by the same processing algorithm as
//! [`super::run`] (`forEach`, `forEachOrNull`, nested selects, `unionAll`).
//!
//! What compiles: member paths (`a.b.c`), `X.ofType(T)` on a choice element `X[x]`,
//! `first()`, `(p | q | ...).first()`, `exists()` and `count()` at the end of a path,
//! `getResourceKey()` on the resource and `getReferenceKey([type])` on a Reference,
//! and string, integer and boolean literals, in views with no `where`, `repeat` or
//! variables. Any other expression leaves the whole view to the interpreter.
//!
//! The plan gives up on a resource, and the interpreter takes it ([`Fallback`]), where
//! its answer could differ from the interpreter's: a primitive's `_x` companion (a value
//! with only extensions is still an item to FHIRPath), a null in an array, a key given
//! twice, a value whose JSON shape is not the one the model gives, or text that is not
//! valid JSON (so the error is serde_json's). A differential test runs both on every
//! SQL-on-FHIR conformance case and on generated resources of every type the built-in
//! views read, and expects the same rows and the same errors.
//!
//! # Why hand-written
//!
//! The crates that read JSON lazily (`jiter`, already in the tree through
//! `datafusion-functions-json`, `simd-json`, `sonic-rs`) give a way to skip what is not
//! needed, which this uses; none knows FHIR's choice types or FHIRPath's flattening of
//! arrays, which is what deciding what to keep requires.

use std::borrow::Cow;
use std::str::FromStr;

use jiter::{Jiter, Peek};
use serde_json::{Number, Value};
use smallvec::{SmallVec, smallvec};

use super::keys::reference_key;
use super::run::{Row, cross, too_many_values};
use super::{Iteration, Selection, ViewError};
use crate::fhirpath::fhir_parent;
use crate::fhirpath::parser::{BinOp, Expr, Lit};
use crate::validate::{FieldType, ShapeId, Validator};

/// This resource needs the interpreter: see the module documentation for when.
#[derive(Debug)]
pub(super) struct Fallback;

impl From<jiter::JiterError> for Fallback {
    fn from(_: jiter::JiterError) -> Fallback {
        Fallback
    }
}

/// A view compiled to key lookups over JSON text.
#[derive(Debug)]
pub(super) struct TextPlan {
    /// Node 0 is the resource.
    trie: Vec<TrieNode>,
    root: Select,
    resource_type: String,
    resource_type_node: usize,
    id_node: usize,
}

/// The keys read at one place in the resource.
#[derive(Debug, Default)]
struct TrieNode {
    children: Vec<(Box<str>, usize)>,
    /// Keys the model does not allow here but the interpreter would still read: the bare
    /// name of a choice that is read (`value` beside `valueQuantity`).
    fallback_keys: Vec<Box<str>>,
    /// Values here are JSON scalars (or arrays of them); otherwise objects.
    primitive: bool,
}

/// What was kept of a resource `'t`: only the keys of the trie.
#[derive(Debug)]
enum Parsed<'t> {
    /// Each kept key as its trie node and value, in the text's order.
    Object(Vec<(usize, Parsed<'t>)>),
    Array(Vec<Parsed<'t>>),
    /// A string, borrowed from the text unless it had escapes.
    Str(Cow<'t, str>),
    /// A number or a boolean.
    Scalar(Value),
}

/// The items a path gives: most give one or none, so they stay off the heap.
type Items<'p> = SmallVec<[Item<'p>; 2]>;

#[derive(Debug)]
struct Select {
    iteration: Iter,
    columns: Vec<Column>,
    select: Vec<Select>,
    union_all: Vec<Select>,
    width: usize,
}

#[derive(Debug)]
enum Iter {
    Parent,
    ForEach(Chain),
    ForEachOrNull(Chain),
}

#[derive(Debug)]
struct Column {
    path: Path,
    collection: bool,
    /// Where the column is and its expression, for errors.
    at: String,
    text: String,
}

#[derive(Debug)]
enum Path {
    Literal(Value),
    /// `getResourceKey()` on the resource: its `id`.
    ResourceKey,
    Chain(Chain),
    /// `(p | q | ...).first()`: the first item of the first path that has one.
    FirstOf(Vec<Path>),
}

#[derive(Debug)]
struct Chain {
    steps: Vec<Step>,
    end: End,
}

#[derive(Debug)]
enum Step {
    /// The values under these trie nodes (one key, or the typed keys of a choice),
    /// arrays flattened.
    Member(Vec<usize>),
    First,
}

#[derive(Debug)]
enum End {
    Items,
    Exists,
    Count,
    /// `getReferenceKey([type])`: the trie nodes of `reference` under the items' nodes.
    ReferenceKey {
        reference_nodes: Vec<usize>,
        of_type: Option<String>,
    },
}

/// One value during evaluation: a kept element, or one a function made.
#[derive(Debug, Clone)]
enum Item<'p> {
    Element(&'p Parsed<'p>),
    Made(Value),
}

impl Item<'_> {
    fn to_json(&self) -> Value {
        match self {
            Item::Element(Parsed::Str(s)) => Value::String(s.to_string()),
            Item::Element(Parsed::Scalar(v)) => v.clone(),
            // Compilation only lets a column end on primitives.
            Item::Element(_) => Value::Null,
            Item::Made(v) => v.clone(),
        }
    }
}

/// Where a compiled path stands: trie nodes with the shape of their objects (`None`
/// for primitives).
#[derive(Debug, Clone)]
struct At {
    nodes: Vec<(usize, Option<ShapeId>)>,
    resource: bool,
}

impl TextPlan {
    /// The plan of a view, or `None` when some part of it is beyond the compiled subset.
    pub(super) fn compile(
        resource_type: &str,
        filters: bool,
        root: &Selection,
    ) -> Option<TextPlan> {
        if filters {
            return None;
        }
        let model = Validator::r4();
        let shape = model.shape_of_type(resource_type)?;
        let mut c = Compiler {
            model,
            trie: vec![TrieNode::default()],
        };
        let resource_type_node = c.child(0, "resourceType", true);
        let id_node = c.child(0, "id", true);
        let at = At {
            nodes: vec![(0, Some(shape))],
            resource: true,
        };
        let root = c.select(root, &at)?;
        Some(TextPlan {
            trie: c.trie,
            root,
            resource_type: resource_type.to_string(),
            resource_type_node,
            id_node,
        })
    }

    /// The rows of the resource `text`, as [`super::run::evaluate`] gives them for its
    /// parsed value; `Err(Fallback)` where the interpreter must answer.
    pub(super) fn evaluate(&self, text: &str) -> Result<Result<Vec<Row>, ViewError>, Fallback> {
        let mut j = Jiter::new(text.as_bytes());
        let peek = j.peek()?;
        if peek != Peek::Object {
            return Err(Fallback);
        }
        let root = self.parse(text, &mut j, peek, 0)?;
        j.finish()?;
        let Parsed::Object(fields) = &root else {
            return Err(Fallback);
        };
        let string = |node: usize| {
            fields.iter().find_map(|(n, p)| match p {
                Parsed::Str(s) if *n == node => Some(&**s),
                _ => None,
            })
        };
        if string(self.resource_type_node) != Some(&self.resource_type) {
            return Ok(Ok(Vec::new()));
        }
        let id = string(self.id_node);
        let run = Run { plan: self, id };
        Ok(run.process(&self.root, &Item::Element(&root)))
    }

    fn find(&self, node: usize, key: &str) -> Option<usize> {
        self.trie[node]
            .children
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, n)| *n)
    }

    /// The value at the reader's position, which is `peek`, kept as trie node `node`.
    fn parse<'t>(
        &self,
        text: &'t str,
        j: &mut Jiter<'t>,
        peek: Peek,
        node: usize,
    ) -> Result<Parsed<'t>, Fallback> {
        let primitive = self.trie[node].primitive;
        match peek {
            Peek::Array => {
                let mut items = Vec::new();
                let mut next = j.known_array()?;
                while let Some(p) = next {
                    // FHIR JSON has neither: the interpreter decides what they mean.
                    if p == Peek::Null || p == Peek::Array {
                        return Err(Fallback);
                    }
                    items.push(self.parse(text, j, p, node)?);
                    next = j.array_step()?;
                }
                Ok(Parsed::Array(items))
            }
            Peek::Object if !primitive => {
                let mut fields: Vec<(usize, Parsed<'t>)> = Vec::new();
                let mut key = j.known_object()?;
                while let Some(k) = key {
                    let wanted = self.find(node, k);
                    if wanted.is_none()
                        && (k
                            .strip_prefix('_')
                            .is_some_and(|p| self.find(node, p).is_some())
                            || self.trie[node].fallback_keys.iter().any(|f| &**f == k))
                    {
                        return Err(Fallback);
                    }
                    match wanted {
                        Some(child) => {
                            if fields.iter().any(|(n, _)| *n == child) {
                                return Err(Fallback);
                            }
                            let p = j.peek()?;
                            fields.push((child, self.parse(text, j, p, child)?));
                        }
                        None => j.next_skip()?,
                    }
                    key = j.next_key()?;
                }
                Ok(Parsed::Object(fields))
            }
            Peek::String if primitive => {
                let start = j.current_index();
                let decoded = j.known_str()?;
                // An escape makes the decoded string shorter than the literal between its
                // quotes; without one, the string is that part of the text.
                let unescaped = text
                    .get(start + 1..start + 1 + decoded.len())
                    .filter(|raw| text.as_bytes().get(start + 1 + raw.len()) == Some(&b'"'))
                    .filter(|raw| !raw.contains('\\'));
                Ok(Parsed::Str(match unescaped {
                    Some(raw) => Cow::Borrowed(raw),
                    None => Cow::Owned(decoded.to_string()),
                }))
            }
            Peek::True | Peek::False if primitive => {
                Ok(Parsed::Scalar(Value::Bool(j.known_bool(peek)?)))
            }
            p if primitive && p.is_num() => {
                let raw = j.known_number_bytes(peek)?;
                let text = std::str::from_utf8(raw).map_err(|_| Fallback)?;
                // The same number serde_json would have read from the same text.
                let n = Number::from_str(text).map_err(|_| Fallback)?;
                Ok(Parsed::Scalar(Value::Number(n)))
            }
            _ => Err(Fallback),
        }
    }
}

struct Compiler {
    model: &'static Validator,
    trie: Vec<TrieNode>,
}

impl Compiler {
    fn child(&mut self, parent: usize, key: &str, primitive: bool) -> usize {
        if let Some((_, n)) = self.trie[parent].children.iter().find(|(k, _)| &**k == key) {
            return *n;
        }
        let n = self.trie.len();
        self.trie.push(TrieNode {
            primitive,
            ..TrieNode::default()
        });
        self.trie[parent].children.push((key.into(), n));
        n
    }

    fn select(&mut self, s: &Selection, at: &At) -> Option<Select> {
        let (iteration, inner) = match &s.iteration {
            Iteration::Parent => (Iter::Parent, at.clone()),
            Iteration::ForEach(e) | Iteration::ForEachOrNull(e) => {
                let (chain, to) = self.chain(e.expr.ast(), at)?;
                // The items must be objects of one shape: they are the columns' focus.
                let [(_, Some(_))] = to.nodes.as_slice() else {
                    return None;
                };
                let iteration = match &s.iteration {
                    Iteration::ForEach(_) => Iter::ForEach(chain),
                    _ => Iter::ForEachOrNull(chain),
                };
                (iteration, to)
            }
            Iteration::Repeat(_) => return None,
        };
        if !s.row_index_columns.is_empty() {
            return None;
        }
        let mut columns = Vec::with_capacity(s.columns.len());
        for c in &s.columns {
            columns.push(Column {
                path: self.column(c.expr.expr.ast(), &inner)?,
                collection: c.collection,
                at: c.expr.at.clone(),
                text: c.expr.expr.text().to_string(),
            });
        }
        let select = s
            .select
            .iter()
            .map(|n| self.select(n, &inner))
            .collect::<Option<Vec<_>>>()?;
        let union_all = s
            .union_all
            .iter()
            .map(|n| self.select(n, &inner))
            .collect::<Option<Vec<_>>>()?;
        Some(Select {
            iteration,
            columns,
            select,
            union_all,
            width: s.width,
        })
    }

    /// A column's expression: it must give JSON scalars.
    fn column(&mut self, e: &Expr, at: &At) -> Option<Path> {
        match e {
            Expr::Lit(Lit::String(s)) => Some(Path::Literal(Value::String(s.clone()))),
            Expr::Lit(Lit::Integer(i)) => Some(Path::Literal(Value::from(*i))),
            Expr::Lit(Lit::Boolean(b)) => Some(Path::Literal(Value::Bool(*b))),
            Expr::Call(None, name, args) if name == "getResourceKey" => {
                (args.is_empty() && at.resource).then_some(Path::ResourceKey)
            }
            Expr::Call(Some(recv), name, args) if name == "first" && args.is_empty() => {
                if let Expr::Binary(BinOp::Union, ..) = &**recv {
                    let mut operands = Vec::new();
                    union_operands(recv, &mut operands);
                    let paths = operands
                        .into_iter()
                        .map(|o| self.column(o, at))
                        .collect::<Option<Vec<_>>>()?;
                    return Some(Path::FirstOf(paths));
                }
                self.column_chain(e, at)
            }
            Expr::Call(Some(recv), name, args)
                if args.is_empty() && matches!(name.as_str(), "exists" | "count") =>
            {
                let (mut chain, _) = self.chain(recv, at)?;
                chain.end = if name == "exists" {
                    End::Exists
                } else {
                    End::Count
                };
                Some(Path::Chain(chain))
            }
            Expr::Call(Some(recv), name, args) if name == "getReferenceKey" => {
                let of_type = match args.as_slice() {
                    [] => None,
                    [Expr::Ident(t)] if self.model.is_resource_type(t) => Some(t.clone()),
                    // The interpreter reports what is wrong with the argument.
                    _ => return None,
                };
                let (mut chain, to) = self.chain(recv, at)?;
                let mut reference_nodes = Vec::new();
                for (node, shape) in to.nodes {
                    let shape = shape?;
                    let field = self.model.field(shape, "reference")?;
                    if field.choice || !matches!(field.ty, FieldType::Primitive(_)) {
                        return None;
                    }
                    reference_nodes.push(self.child(node, "reference", true));
                }
                chain.end = End::ReferenceKey {
                    reference_nodes,
                    of_type,
                };
                Some(Path::Chain(chain))
            }
            _ => self.column_chain(e, at),
        }
    }

    /// A path whose items are the column's values: it must end on primitives.
    fn column_chain(&mut self, e: &Expr, at: &At) -> Option<Path> {
        let (chain, to) = self.chain(e, at)?;
        to.nodes
            .iter()
            .all(|(_, shape)| shape.is_none())
            .then_some(Path::Chain(chain))
    }

    /// Member steps, `ofType` on a choice, and `first()`, from `at`.
    fn chain(&mut self, e: &Expr, at: &At) -> Option<(Chain, At)> {
        let (mut chain, from, name) = match e {
            Expr::Ident(name) => (Chain::new(), at.clone(), name),
            Expr::Member(recv, name) => {
                let (chain, from) = self.chain(recv, at)?;
                (chain, from, name)
            }
            Expr::Call(Some(recv), f, args) if f == "first" && args.is_empty() => {
                let (mut chain, to) = self.chain(recv, at)?;
                chain.steps.push(Step::First);
                return Some((chain, to));
            }
            Expr::Call(Some(recv), f, args) if f == "ofType" => {
                let [Expr::Ident(ty)] = args.as_slice() else {
                    return None;
                };
                let (mut chain, from, element) = match &**recv {
                    Expr::Ident(element) => (Chain::new(), at.clone(), element),
                    Expr::Member(r, element) => {
                        let (chain, from) = self.chain(r, at)?;
                        (chain, from, element)
                    }
                    _ => return None,
                };
                let to = self.choice(&from, element, ty)?;
                chain
                    .steps
                    .push(Step::Member(to.nodes.iter().map(|(n, _)| *n).collect()));
                return Some((chain, to));
            }
            _ => return None,
        };
        // A capitalised name at the start of a path may be a type name.
        if matches!(e, Expr::Ident(_)) && name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return None;
        }
        let to = self.member(&from, name)?;
        chain
            .steps
            .push(Step::Member(to.nodes.iter().map(|(n, _)| *n).collect()));
        Some((chain, to))
    }

    fn member(&mut self, from: &At, name: &str) -> Option<At> {
        let mut nodes = Vec::new();
        for &(node, shape) in &from.nodes {
            let field = self.model.field(shape?, name)?;
            if field.choice || field.companion {
                return None;
            }
            let next = match field.ty {
                FieldType::Primitive(_) => None,
                FieldType::Complex(s) => Some(s),
                FieldType::Resource => return None,
            };
            nodes.push((self.child(node, name, next.is_none()), next));
        }
        same_kind(nodes)
    }

    /// `element.ofType(ty)`: the keys of the choice `element[x]` whose type is `ty` (a
    /// primitive exactly, a complex type or one derived from it, as the interpreter's
    /// `ofType` decides).
    fn choice(&mut self, from: &At, element: &str, ty: &str) -> Option<At> {
        let choice_name = format!("{element}[x]");
        let mut nodes = Vec::new();
        for &(node, shape) in &from.nodes {
            let shape = shape?;
            if !self.model.has_element(shape, element) {
                return None;
            }
            let mut keys: Vec<&str> = self.model.keys(shape).collect();
            keys.sort_unstable();
            for key in keys {
                let Some(field) = self.model.field(shape, key) else {
                    continue;
                };
                if !field.choice || field.companion || field.element != choice_name {
                    continue;
                }
                let next = match field.ty {
                    FieldType::Primitive(p) if p == ty => None,
                    FieldType::Complex(s) if self.derives_from(self.model.shape_name(s), ty) => {
                        Some(s)
                    }
                    _ => continue,
                };
                nodes.push((self.child(node, key, next.is_none()), next));
            }
        }
        // No key of that type (or no such type, an error): the interpreter answers.
        if nodes.is_empty() {
            return None;
        }
        for &(node, _) in &from.nodes {
            let bare = &mut self.trie[node].fallback_keys;
            if !bare.iter().any(|k| &**k == element) {
                bare.push(element.into());
            }
        }
        same_kind(nodes)
    }

    fn derives_from(&self, mut t: &str, ty: &str) -> bool {
        loop {
            if t == ty {
                return true;
            }
            match fhir_parent(self.model, t) {
                Some(p) => t = p,
                None => return false,
            }
        }
    }
}

/// Nodes that are all primitives or all objects, for the next step to treat alike.
fn same_kind(nodes: Vec<(usize, Option<ShapeId>)>) -> Option<At> {
    let primitives = nodes.iter().filter(|(_, s)| s.is_none()).count();
    (primitives == 0 || primitives == nodes.len()).then_some(At {
        nodes,
        resource: false,
    })
}

fn union_operands<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::Binary(BinOp::Union, l, r) => {
            union_operands(l, out);
            union_operands(r, out);
        }
        other => out.push(other),
    }
}

impl Chain {
    fn new() -> Chain {
        Chain {
            steps: Vec::new(),
            end: End::Items,
        }
    }
}

/// One resource's evaluation.
struct Run<'p> {
    plan: &'p TextPlan,
    id: Option<&'p str>,
}

impl<'p> Run<'p> {
    fn error(&self, c: &Column, message: String) -> ViewError {
        let ty = self.plan.resource_type.as_str();
        ViewError::Evaluation {
            at: c.at.clone(),
            expression: c.text.clone(),
            resource: match self.id {
                Some(id) => format!("{ty}/{id}"),
                None => ty.to_string(),
            },
            message,
        }
    }

    fn process(&self, s: &Select, focus: &Item<'p>) -> Result<Vec<Row>, ViewError> {
        let foci = match &s.iteration {
            Iter::Parent => smallvec![focus.clone()],
            Iter::ForEach(c) | Iter::ForEachOrNull(c) => self.chain(c, focus),
        };
        if foci.is_empty() && matches!(s.iteration, Iter::ForEachOrNull(_)) {
            return Ok(vec![vec![Value::Null; s.width]]);
        }
        let mut out = Vec::new();
        for focus in &foci {
            let mut own = Vec::with_capacity(s.width);
            for col in &s.columns {
                let items = self.path(&col.path, focus);
                own.push(if col.collection {
                    Value::Array(items.iter().map(Item::to_json).collect())
                } else {
                    match items.as_slice() {
                        [] => Value::Null,
                        [one] => one.to_json(),
                        many => return Err(self.error(col, too_many_values(many.len()))),
                    }
                });
            }
            let mut rows = vec![own];
            for nested in &s.select {
                let part = self.process(nested, focus)?;
                rows = cross(rows, &part);
            }
            if !s.union_all.is_empty() {
                let mut union = Vec::new();
                for branch in &s.union_all {
                    union.extend(self.process(branch, focus)?);
                }
                rows = cross(rows, &union);
            }
            out.extend(rows);
        }
        Ok(out)
    }

    fn path(&self, p: &Path, focus: &Item<'p>) -> Items<'p> {
        match p {
            Path::Literal(v) => smallvec![Item::Made(v.clone())],
            Path::ResourceKey => self
                .id
                .map(|id| Item::Made(Value::String(id.to_string())))
                .into_iter()
                .collect(),
            Path::Chain(c) => self.chain(c, focus),
            Path::FirstOf(paths) => paths
                .iter()
                .find_map(|p| self.path(p, focus).into_iter().next())
                .into_iter()
                .collect(),
        }
    }

    fn chain(&self, c: &Chain, focus: &Item<'p>) -> Items<'p> {
        let mut items: Items<'p> = smallvec![focus.clone()];
        for step in &c.steps {
            match step {
                Step::Member(nodes) => {
                    let mut next = Items::new();
                    for item in &items {
                        let Item::Element(Parsed::Object(fields)) = item else {
                            continue;
                        };
                        for (node, value) in fields {
                            if !nodes.contains(node) {
                                continue;
                            }
                            match value {
                                Parsed::Array(xs) => next.extend(xs.iter().map(Item::Element)),
                                v => next.push(Item::Element(v)),
                            }
                        }
                    }
                    items = next;
                }
                Step::First => items.truncate(1),
            }
        }
        match &c.end {
            End::Items => items,
            End::Exists => smallvec![Item::Made(Value::Bool(!items.is_empty()))],
            End::Count => smallvec![Item::Made(Value::from(items.len()))],
            End::ReferenceKey {
                reference_nodes,
                of_type,
            } => items
                .iter()
                .filter_map(|item| match item {
                    Item::Element(Parsed::Object(fields)) => {
                        fields.iter().find_map(|(n, v)| match v {
                            Parsed::Str(s) if reference_nodes.contains(n) => Some(&**s),
                            _ => None,
                        })
                    }
                    _ => None,
                })
                .filter_map(reference_key)
                .filter(|(ty, _)| of_type.as_deref().is_none_or(|w| w == *ty))
                .map(|(_, id)| Item::Made(Value::String(id.to_string())))
                .collect(),
        }
    }
}
