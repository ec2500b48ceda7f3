//! The function library (`where`, `substring`, `toQuantity`, ...), conversions and the
//! FHIR additions (`extension`, `resolve`).

use std::cmp::Ordering;

use serde_json::Value;

use super::*;

fn regex(pattern: &str, whole: bool) -> R<regex::Regex> {
    let p = if whole {
        format!("^(?s:{pattern})$")
    } else {
        format!("(?s){pattern}")
    };
    regex::RegexBuilder::new(&p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| EvalError::new(format!("invalid regular expression: {e}")))
}

fn to_integer(i: &Item<'_>) -> Option<i64> {
    match i.sys() {
        Item::Integer(n) => Some(n),
        Item::Boolean(b) => Some(i64::from(b)),
        Item::String(s) => {
            let t = s.strip_prefix('+').unwrap_or(&s);
            if t.strip_prefix('-')
                .unwrap_or(t)
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                t.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

fn to_decimal(i: &Item<'_>) -> Option<Decimal> {
    match i.sys() {
        Item::Integer(n) => Some(Decimal::from_i64(n)),
        Item::Decimal(d) => Some(d),
        Item::Boolean(b) => Some(Decimal::from_i64(i64::from(b))),
        Item::String(s) => Decimal::parse(&s),
        _ => None,
    }
}

fn to_boolean(i: &Item<'_>) -> Option<bool> {
    match i.sys() {
        Item::Boolean(b) => Some(b),
        Item::Integer(0) => Some(false),
        Item::Integer(1) => Some(true),
        Item::Decimal(d) => {
            if d.cmp_value(Decimal::from_i64(1)) == Ordering::Equal {
                Some(true)
            } else if d.is_zero() {
                Some(false)
            } else {
                None
            }
        }
        Item::String(s) => match s.to_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn to_quantity(i: &Item<'_>, unit: Option<&str>) -> Option<Quantity> {
    let q = match i.sys() {
        Item::Quantity(q) => q,
        Item::Integer(n) => Quantity {
            value: Decimal::from_i64(n),
            unit: "1".into(),
        },
        Item::Decimal(d) => Quantity {
            value: d,
            unit: "1".into(),
        },
        Item::Boolean(b) => Quantity {
            value: Decimal::from_i64(i64::from(b)),
            unit: "1".into(),
        },
        Item::String(s) => parse_quantity(&s)?,
        _ => return None,
    };
    match unit {
        None => Some(q),
        Some(u) if u == q.unit => Some(q),
        Some(u) => {
            let (from_dim, from) = ucum_base(&q.unit)?;
            let (to_dim, to) = ucum_base(u)?;
            if from_dim != to_dim {
                return None;
            }
            Some(Quantity {
                value: q.value.checked_mul(from)?.checked_div(to)?,
                unit: u.to_string(),
            })
        }
    }
}

fn parse_quantity(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (num, rest) = match s.find(' ') {
        Some(p) => (&s[..p], s[p + 1..].trim()),
        None => (s, ""),
    };
    let value = Decimal::parse(num)?;
    let unit = if rest.is_empty() {
        "1".to_string()
    } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        u.to_string()
    } else if calendar_unit(rest).is_some()
        && rest.chars().all(|c| c.is_ascii_lowercase())
        && rest.len() >= 3
    {
        rest.to_string()
    } else {
        return None;
    };
    Some(Quantity { value, unit })
}

fn to_date_time(i: &Item<'_>) -> Option<PartialDateTime> {
    match i.sys() {
        Item::DateTime(d) | Item::Date(d) => Some(d),
        Item::String(s) => PartialDateTime::parse_date_time(&s),
        _ => None,
    }
}

fn to_date(i: &Item<'_>) -> Option<PartialDateTime> {
    let d = to_date_time(i)?;
    Some(PartialDateTime {
        year: d.year,
        month: d.month,
        day: d.day,
        ..PartialDateTime::default()
    })
}

fn to_time(i: &Item<'_>) -> Option<PartialDateTime> {
    match i.sys() {
        Item::Time(t) => Some(t),
        Item::String(s) => PartialDateTime::parse_time(s.strip_prefix('T').unwrap_or(&s)),
        _ => None,
    }
}

impl<'a> Ev<'a, '_> {
    fn arg(
        &self,
        args: &[Expr],
        i: usize,
        focus: &[Item<'a>],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Coll<'a>> {
        match args.get(i) {
            Some(e) => self.eval(e, focus, fr, d),
            None => err("missing argument"),
        }
    }

    /// Evaluates `e` once per item, with that item as `$this` and the focus.
    fn per_item(&self, e: &Expr, items: &[Item<'a>], fr: &Frame<'a>, d: usize) -> R<Vec<Coll<'a>>> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let f = Frame {
                    this: Some(item.clone()),
                    index: Some(i as i64),
                    total: fr.total.clone(),
                    vars: fr.vars.clone(),
                };
                self.eval(e, std::slice::from_ref(item), &f, d)
            })
            .collect()
    }

    fn str_arg(
        &self,
        args: &[Expr],
        i: usize,
        focus: &[Item<'a>],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Option<String>> {
        let v = self.arg(args, i, focus, fr, d)?;
        match singleton(&v, "a string argument")? {
            None => Ok(None),
            Some(Item::String(s)) => Ok(Some(s)),
            Some(_) => err("argument must be a String"),
        }
    }

    fn int_arg(
        &self,
        args: &[Expr],
        i: usize,
        focus: &[Item<'a>],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Option<i64>> {
        let v = self.arg(args, i, focus, fr, d)?;
        match singleton(&v, "an integer argument")? {
            None => Ok(None),
            Some(Item::Integer(n)) => Ok(Some(n)),
            Some(_) => err("argument must be an Integer"),
        }
    }

    fn type_arg(&self, args: &[Expr]) -> R<TypeSpec> {
        let spec = self.type_arg_unchecked(args)?;
        self.check_type_name(&spec)?;
        Ok(spec)
    }

    fn type_arg_unchecked(&self, args: &[Expr]) -> R<TypeSpec> {
        let spec = match args.first() {
            Some(Expr::Ident(n)) => TypeSpec {
                namespace: None,
                name: n.clone(),
            },
            Some(Expr::Member(ns, n)) => match &**ns {
                Expr::Ident(ns) => TypeSpec {
                    namespace: Some(ns.clone()),
                    name: n.clone(),
                },
                _ => return err("expected a type name"),
            },
            _ => return err("expected a type name"),
        };
        Ok(spec)
    }

    pub(super) fn call(
        &self,
        name: &str,
        input: Coll<'a>,
        args: &[Expr],
        focus: &[Item<'a>],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Coll<'a>> {
        let nargs = args.len();
        let want = |n: std::ops::RangeInclusive<usize>| -> R<()> {
            if n.contains(&nargs) {
                Ok(())
            } else {
                err(format!(
                    "{name}() takes {} to {} arguments",
                    n.start(),
                    n.end()
                ))
            }
        };
        let b = |v: bool| Ok(vec![Item::Boolean(v)]);
        // The single input string of a string function.
        let in_str = |what: &str| -> R<Option<String>> {
            match singleton(&input, what)? {
                None => Ok(None),
                Some(Item::String(s)) => Ok(Some(s)),
                Some(_) => err(format!("{what}() needs a String input")),
            }
        };
        match name {
            "empty" => {
                want(0..=0)?;
                b(input.is_empty())
            }
            "exists" => {
                want(0..=1)?;
                if nargs == 0 {
                    return b(!input.is_empty());
                }
                let r = self.per_item(&args[0], &input, fr, d)?;
                for c in &r {
                    if to_bool(c, "exists")? == Some(true) {
                        return b(true);
                    }
                }
                b(false)
            }
            "all" => {
                want(1..=1)?;
                let r = self.per_item(&args[0], &input, fr, d)?;
                for c in &r {
                    if to_bool(c, "all")? != Some(true) {
                        return b(false);
                    }
                }
                b(true)
            }
            "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
                want(0..=0)?;
                let mut vals = Vec::new();
                for i in &input {
                    match i.sys() {
                        Item::Boolean(v) => vals.push(v),
                        _ => return err(format!("{name}() needs Booleans")),
                    }
                }
                b(match name {
                    "allTrue" => vals.iter().all(|v| *v),
                    "anyTrue" => vals.iter().any(|v| *v),
                    "allFalse" => vals.iter().all(|v| !*v),
                    _ => vals.iter().any(|v| !*v),
                })
            }
            "subsetOf" | "supersetOf" => {
                want(1..=1)?;
                let other = self.arg(args, 0, focus, fr, d)?;
                let (small, big) = if name == "subsetOf" {
                    (&input, &other)
                } else {
                    (&other, &input)
                };
                b(small.iter().all(|x| contains_item(big, x)))
            }
            "count" => {
                want(0..=0)?;
                Ok(vec![Item::Integer(input.len() as i64)])
            }
            "distinct" => {
                want(0..=0)?;
                Ok(distinct(input))
            }
            "isDistinct" => {
                want(0..=0)?;
                let n = input.len();
                b(distinct(input).len() == n)
            }
            "where" => {
                want(1..=1)?;
                let r = self.per_item(&args[0], &input, fr, d)?;
                let mut out = Vec::new();
                for (item, c) in input.into_iter().zip(r) {
                    if to_bool(&c, "where")? == Some(true) {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            "select" => {
                want(1..=1)?;
                Ok(self
                    .per_item(&args[0], &input, fr, d)?
                    .into_iter()
                    .flatten()
                    .collect())
            }
            "repeat" => {
                want(1..=1)?;
                let mut out: Coll<'a> = Vec::new();
                // Elements of the input are told apart by address, in constant time;
                // only computed values need the (linear) equality search.
                let mut seen = std::collections::HashSet::new();
                let mut queue = input;
                while !queue.is_empty() {
                    let next: Coll<'a> = self
                        .per_item(&args[0], &queue, fr, d)?
                        .into_iter()
                        .flatten()
                        .collect();
                    queue = Vec::new();
                    for x in next {
                        let fresh = match &x {
                            Item::Node(n) => seen.insert((
                                n.value.map(std::ptr::from_ref),
                                n.companion.map(std::ptr::from_ref),
                            )),
                            _ => !contains_item(&out, &x),
                        };
                        if fresh {
                            out.push(x.clone());
                            queue.push(x);
                        }
                    }
                    if out.len() > MAX_ITEMS {
                        return err("repeat() produced too many items");
                    }
                }
                Ok(out)
            }
            "ofType" => {
                want(1..=1)?;
                let spec = self.type_arg(args)?;
                Ok(input
                    .into_iter()
                    .filter(|i| self.is_type_exact(i, spec.namespace.as_deref(), &spec.name))
                    .collect())
            }
            "is" | "as" => {
                want(1..=1)?;
                let spec = if name == "is" {
                    self.type_arg_unchecked(args)?
                } else {
                    self.type_arg(args)?
                };
                if input.len() > 1 {
                    return err(format!("{name}() needs a single item"));
                }
                let Some(x) = input.first() else {
                    return Ok(Vec::new());
                };
                let ok = if name == "is" {
                    self.is_type(x, spec.namespace.as_deref(), &spec.name)
                } else {
                    self.is_type_exact(x, spec.namespace.as_deref(), &spec.name)
                };
                if name == "is" {
                    b(ok)
                } else {
                    Ok(if ok { input } else { Vec::new() })
                }
            }
            "type" => {
                want(0..=0)?;
                Ok(input
                    .iter()
                    .map(|i| {
                        let (namespace, name) = i.type_info();
                        Item::TypeInfo { namespace, name }
                    })
                    .collect())
            }
            "single" => {
                want(0..=0)?;
                if input.len() > 1 {
                    return err("single() on more than one item");
                }
                Ok(input)
            }
            "first" => Ok(input.into_iter().take(1).collect()),
            "last" => Ok(input.last().cloned().into_iter().collect()),
            "tail" => Ok(input.into_iter().skip(1).collect()),
            "skip" | "take" => {
                want(1..=1)?;
                let n = self.int_arg(args, 0, focus, fr, d)?.unwrap_or(0).max(0) as usize;
                Ok(if name == "skip" {
                    input.into_iter().skip(n).collect()
                } else {
                    input.into_iter().take(n).collect()
                })
            }
            "intersect" => {
                want(1..=1)?;
                let other = self.arg(args, 0, focus, fr, d)?;
                Ok(distinct(
                    input
                        .into_iter()
                        .filter(|x| contains_item(&other, x))
                        .collect(),
                ))
            }
            "exclude" => {
                want(1..=1)?;
                let other = self.arg(args, 0, focus, fr, d)?;
                Ok(input
                    .into_iter()
                    .filter(|x| !contains_item(&other, x))
                    .collect())
            }
            "union" | "combine" => {
                want(1..=1)?;
                let other = self.arg(args, 0, focus, fr, d)?;
                let mut all = input;
                all.extend(other);
                Ok(if name == "union" { distinct(all) } else { all })
            }
            "iif" => {
                want(2..=3)?;
                if input.len() > 1 {
                    return err("iif() needs at most one input item");
                }
                let ctx: Coll<'a> = if input.is_empty() {
                    focus.to_vec()
                } else {
                    input
                };
                let f = Frame {
                    this: ctx.first().cloned().or_else(|| fr.this.clone()),
                    ..fr.clone()
                };
                let c = self.eval(&args[0], &ctx, &f, d)?;
                let cond = match singleton(&c, "iif criterion")? {
                    None => false,
                    Some(Item::Boolean(v)) => v,
                    Some(_) => return err("iif() criterion must be a Boolean"),
                };
                if cond {
                    self.eval(&args[1], &ctx, &f, d)
                } else if nargs == 3 {
                    self.eval(&args[2], &ctx, &f, d)
                } else {
                    Ok(Vec::new())
                }
            }
            "not" => {
                want(0..=0)?;
                Ok(opt_bool(to_bool(&input, "not")?.map(|v| !v)))
            }
            "toBoolean" | "convertsToBoolean" => {
                self.convert(name, &input, to_boolean, Item::Boolean)
            }
            "toInteger" | "convertsToInteger" => {
                self.convert(name, &input, to_integer, Item::Integer)
            }
            "toDecimal" | "convertsToDecimal" => {
                self.convert(name, &input, to_decimal, Item::Decimal)
            }
            "toString" | "convertsToString" => {
                self.convert(name, &input, |i| string_of(i), Item::String)
            }
            "toDate" | "convertsToDate" => self.convert(name, &input, to_date, Item::Date),
            "toDateTime" | "convertsToDateTime" => {
                self.convert(name, &input, to_date_time, Item::DateTime)
            }
            "toTime" | "convertsToTime" => self.convert(name, &input, to_time, Item::Time),
            "toQuantity" | "convertsToQuantity" => {
                want(0..=1)?;
                let unit = if nargs == 1 {
                    self.str_arg(args, 0, focus, fr, d)?
                } else {
                    None
                };
                let Some(x) = singleton(&input, name)? else {
                    return Ok(Vec::new());
                };
                let q = to_quantity(&x, unit.as_deref());
                if name == "toQuantity" {
                    Ok(q.map(Item::Quantity).into_iter().collect())
                } else {
                    b(q.is_some())
                }
            }
            "indexOf" => {
                want(1..=1)?;
                let (Some(s), Some(sub)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                let idx = s.find(&sub).map_or(-1, |p| s[..p].chars().count() as i64);
                Ok(vec![Item::Integer(idx)])
            }
            "lastIndexOf" => {
                want(1..=1)?;
                let (Some(s), Some(sub)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                let idx = s.rfind(&sub).map_or(-1, |p| s[..p].chars().count() as i64);
                Ok(vec![Item::Integer(idx)])
            }
            "coalesce" => {
                // The first argument that is not empty; later ones are not evaluated.
                for i in 0..nargs {
                    let v = self.arg(args, i, focus, fr, d)?;
                    if !v.is_empty() {
                        return Ok(v);
                    }
                }
                Ok(Vec::new())
            }
            "comparable" => {
                want(1..=1)?;
                let other = self.arg(args, 0, focus, fr, d)?;
                let (Some(x), Some(y)) = (
                    singleton(&input, "comparable")?,
                    singleton(&other, "comparable")?,
                ) else {
                    return Ok(Vec::new());
                };
                match (x, y) {
                    (Item::Quantity(p), Item::Quantity(q)) => b(p.comparable(&q)),
                    _ => err("comparable() compares two Quantities"),
                }
            }
            "substring" => {
                want(1..=2)?;
                let Some(s) = in_str(name)? else {
                    return Ok(Vec::new());
                };
                let Some(start) = self.int_arg(args, 0, focus, fr, d)? else {
                    return Ok(Vec::new());
                };
                let chars: Vec<char> = s.chars().collect();
                if start < 0 || start as usize >= chars.len() {
                    return Ok(Vec::new());
                }
                let len = if nargs == 2 {
                    match self.int_arg(args, 1, focus, fr, d)? {
                        Some(l) => l.max(0) as usize,
                        None => chars.len(),
                    }
                } else {
                    chars.len()
                };
                Ok(vec![Item::String(
                    chars.iter().skip(start as usize).take(len).collect(),
                )])
            }
            "startsWith" | "endsWith" | "contains" => {
                want(1..=1)?;
                let (Some(s), Some(sub)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                b(match name {
                    "startsWith" => s.starts_with(&sub),
                    "endsWith" => s.ends_with(&sub),
                    _ => s.contains(&sub),
                })
            }
            "upper" | "lower" | "trim" | "length" | "toChars" => {
                want(0..=0)?;
                let Some(s) = in_str(name)? else {
                    return Ok(Vec::new());
                };
                Ok(match name {
                    "upper" => vec![Item::String(s.to_uppercase())],
                    "lower" => vec![Item::String(s.to_lowercase())],
                    "trim" => vec![Item::String(s.trim().to_string())],
                    "length" => vec![Item::Integer(s.chars().count() as i64)],
                    _ => s.chars().map(|c| Item::String(c.to_string())).collect(),
                })
            }
            "replace" => {
                want(2..=2)?;
                let (Some(s), Some(pat), Some(rep)) = (
                    in_str(name)?,
                    self.str_arg(args, 0, focus, fr, d)?,
                    self.str_arg(args, 1, focus, fr, d)?,
                ) else {
                    return Ok(Vec::new());
                };
                let out = if pat.is_empty() {
                    // Every position between characters, as the spec's example shows.
                    let mut o = rep.clone();
                    for c in s.chars() {
                        o.push(c);
                        o.push_str(&rep);
                    }
                    o
                } else {
                    s.replace(&pat, &rep)
                };
                Ok(vec![Item::String(out)])
            }
            "matches" | "matchesFull" => {
                want(1..=1)?;
                let (Some(s), Some(pat)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                b(regex(&pat, name == "matchesFull")?.is_match(&s))
            }
            "replaceMatches" => {
                want(2..=2)?;
                let (Some(s), Some(pat), Some(rep)) = (
                    in_str(name)?,
                    self.str_arg(args, 0, focus, fr, d)?,
                    self.str_arg(args, 1, focus, fr, d)?,
                ) else {
                    return Ok(Vec::new());
                };
                if pat.is_empty() {
                    return Ok(vec![Item::String(s)]);
                }
                Ok(vec![Item::String(
                    regex(&pat, false)?
                        .replace_all(&s, rep.as_str())
                        .into_owned(),
                )])
            }
            "split" => {
                want(1..=1)?;
                let (Some(s), Some(sep)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                Ok(s.split(sep.as_str())
                    .map(|p| Item::String(p.to_string()))
                    .collect())
            }
            "join" => {
                want(0..=1)?;
                let sep = if nargs == 1 {
                    self.str_arg(args, 0, focus, fr, d)?.unwrap_or_default()
                } else {
                    String::new()
                };
                let mut parts = Vec::new();
                for i in &input {
                    match i.sys() {
                        Item::String(s) => parts.push(s),
                        _ => return err("join() needs strings"),
                    }
                }
                Ok(vec![Item::String(parts.join(&sep))])
            }
            "encode" | "decode" => {
                want(1..=1)?;
                let (Some(s), Some(fmt)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                let r = if name == "encode" {
                    encode(&s, &fmt)
                } else {
                    decode(&s, &fmt)
                };
                Ok(r.map(Item::String).into_iter().collect())
            }
            "escape" | "unescape" => {
                want(1..=1)?;
                let (Some(s), Some(fmt)) = (in_str(name)?, self.str_arg(args, 0, focus, fr, d)?)
                else {
                    return Ok(Vec::new());
                };
                Ok(escape(&s, &fmt, name == "escape")
                    .map(Item::String)
                    .into_iter()
                    .collect())
            }
            "abs" | "ceiling" | "floor" | "truncate" | "exp" | "ln" | "sqrt" | "round" | "log"
            | "power" => self.math(name, &input, args, fr, d),
            "children" => {
                want(0..=0)?;
                let mut out = Vec::new();
                for i in &input {
                    self.children(i, &mut out);
                }
                Ok(out)
            }
            "descendants" => {
                want(0..=0)?;
                let mut out = Vec::new();
                let mut queue = input;
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    for i in &queue {
                        self.children(i, &mut next);
                    }
                    out.extend(next.iter().cloned());
                    if out.len() > MAX_ITEMS {
                        return err("descendants() produced too many items");
                    }
                    queue = next;
                }
                Ok(out)
            }
            "trace" => {
                want(1..=2)?;
                Ok(input)
            }
            "now" => {
                want(0..=0)?;
                let s = self.now.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
                Ok(PartialDateTime::parse_date_time(&s)
                    .map(Item::DateTime)
                    .into_iter()
                    .collect())
            }
            "today" => {
                want(0..=0)?;
                let s = self.now.format("%Y-%m-%d").to_string();
                Ok(PartialDateTime::parse_date_time(&s)
                    .map(Item::Date)
                    .into_iter()
                    .collect())
            }
            "timeOfDay" => {
                want(0..=0)?;
                let s = self.now.format("%H:%M:%S%.3f").to_string();
                Ok(PartialDateTime::parse_time(&s)
                    .map(Item::Time)
                    .into_iter()
                    .collect())
            }
            "aggregate" => {
                want(1..=2)?;
                let mut total = if nargs == 2 {
                    self.eval(&args[1], focus, fr, d)?
                } else {
                    Vec::new()
                };
                for (i, item) in input.iter().enumerate() {
                    let f = Frame {
                        this: Some(item.clone()),
                        index: Some(i as i64),
                        total: Some(total.clone()),
                        vars: fr.vars.clone(),
                    };
                    total = self.eval(&args[0], std::slice::from_ref(item), &f, d)?;
                }
                Ok(total)
            }
            "sort" => {
                let mut keyed = Vec::with_capacity(input.len());
                for item in input {
                    let mut keys = Vec::new();
                    for a in args {
                        let (desc, e) = match a {
                            Expr::Neg(inner) => (true, &**inner),
                            e => (false, e),
                        };
                        let f = Frame {
                            this: Some(item.clone()),
                            ..fr.clone()
                        };
                        let k = self.eval(e, std::slice::from_ref(&item), &f, d)?;
                        keys.push((desc, singleton(&k, "sort key")?));
                    }
                    if args.is_empty() {
                        keys.push((false, Some(item.sys())));
                    }
                    keyed.push((keys, item));
                }
                let mut failed = None;
                keyed.sort_by(|(a, _), (b, _)| {
                    for ((desc, x), (_, y)) in a.iter().zip(b.iter()) {
                        // Empty keys come first in both directions.
                        let o = match (x, y) {
                            (None, None) => Ordering::Equal,
                            (None, _) => Ordering::Less,
                            (_, None) => Ordering::Greater,
                            (Some(x), Some(y)) => {
                                let o = match compare_items(x, y) {
                                    Ok(o) => o.unwrap_or(Ordering::Equal),
                                    Err(e) => {
                                        failed = Some(e);
                                        Ordering::Equal
                                    }
                                };
                                if *desc { o.reverse() } else { o }
                            }
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    Ordering::Equal
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                Ok(keyed.into_iter().map(|(_, i)| i).collect())
            }
            "extension" => {
                want(1..=1)?;
                let url = self.str_arg(args, 0, focus, fr, d)?;
                let exts = self.members(&input, "extension")?;
                Ok(exts
                    .into_iter()
                    .filter(|e| match e {
                        Item::Node(n) => {
                            n.value.and_then(|v| v.get("url")).and_then(Value::as_str)
                                == url.as_deref()
                        }
                        _ => false,
                    })
                    .collect())
            }
            "hasValue" => {
                want(0..=0)?;
                b(
                    matches!(input.as_slice(), [Item::Node(n)] if matches!(n.ty, NodeType::Primitive(_)) && n.value.is_some()),
                )
            }
            "getValue" => {
                want(0..=0)?;
                Ok(match input.as_slice() {
                    [Item::Node(n)]
                        if matches!(n.ty, NodeType::Primitive(_)) && n.value.is_some() =>
                    {
                        vec![input[0].sys()]
                    }
                    _ => Vec::new(),
                })
            }
            "resolve" => {
                want(0..=0)?;
                let mut out = Vec::new();
                for i in &input {
                    let reference = match i {
                        Item::Node(n) => match n.value {
                            Some(Value::String(s)) => Some(s.as_str()),
                            Some(v) => v.get("reference").and_then(Value::as_str),
                            None => None,
                        },
                        Item::String(_) => None,
                        _ => None,
                    };
                    if let Some(r) = reference {
                        out.extend(self.resolve(r));
                    }
                }
                Ok(out)
            }
            "memberOf" => Ok(Vec::new()),
            "conformsTo" => {
                want(1..=1)?;
                let url = self.str_arg(args, 0, focus, fr, d)?.unwrap_or_default();
                // Only the core resource profiles are known; profiles need a registry.
                let Some(ty) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") else {
                    return err(format!("conformsTo(): unknown profile {url}"));
                };
                if !known_fhir_type(self.model, ty) {
                    return err(format!("conformsTo(): unknown profile {url}"));
                }
                Ok(input
                    .iter()
                    .map(|i| Item::Boolean(self.is_type(i, None, ty)))
                    .collect())
            }
            "precision" => {
                want(0..=0)?;
                let Some(x) = singleton(&input, name)? else {
                    return Ok(Vec::new());
                };
                let p = match x {
                    Item::Decimal(v) => v.scale() as i64,
                    Item::Integer(_) => 0,
                    Item::Date(v) | Item::DateTime(v) | Item::Time(v) => {
                        i64::from(v.digits_precision())
                    }
                    _ => return err("precision() needs a decimal, date or time"),
                };
                Ok(vec![Item::Integer(p)])
            }
            "lowBoundary" | "highBoundary" => {
                want(0..=1)?;
                let high = name == "highBoundary";
                let p = if nargs == 1 {
                    match self.int_arg(args, 0, focus, fr, d)? {
                        Some(p) => Some(p),
                        None => return Ok(Vec::new()),
                    }
                } else {
                    None
                };
                let Some(x) = singleton(&input, name)? else {
                    return Ok(Vec::new());
                };
                let r = match x {
                    Item::Integer(i) => Decimal::from_i64(i)
                        .boundary(p.unwrap_or(8), high)
                        .map(Item::Decimal),
                    Item::Decimal(v) => v.boundary(p.unwrap_or(8), high).map(Item::Decimal),
                    Item::Quantity(q) => q.value.boundary(p.unwrap_or(8), high).map(|v| {
                        Item::Quantity(Quantity {
                            value: v,
                            unit: q.unit.clone(),
                        })
                    }),
                    Item::Date(v) => v.boundary(p.unwrap_or(8), high, false).map(Item::Date),
                    Item::DateTime(v) => {
                        v.boundary(p.unwrap_or(17), high, false).map(Item::DateTime)
                    }
                    Item::Time(v) => v.boundary(p.unwrap_or(9), high, true).map(Item::Time),
                    _ => return err(format!("{name}() needs a number, date or time")),
                };
                Ok(r.into_iter().collect())
            }
            "htmlChecks" => {
                want(0..=0)?;
                match singleton(&input, name)? {
                    Some(Item::String(s)) => b(super::html::html_checks(&s)),
                    _ => Ok(Vec::new()),
                }
            }
            _ => match &self.env.functions {
                Some(ext) if ext.provides(name) => {
                    let mut evaluated = Vec::with_capacity(nargs);
                    for a in args {
                        evaluated.push(super::super::FunctionArg {
                            type_name: match a {
                                Expr::Ident(n) => Some(n.clone()),
                                _ => None,
                            },
                            value: self.eval(a, focus, fr, d)?,
                        });
                    }
                    ext.call(name, &input, &evaluated)
                }
                _ => err(format!("unknown function {name}()")),
            },
        }
    }

    fn root_focus(&self) -> Coll<'a> {
        vec![self.context.clone()]
    }

    fn convert<T>(
        &self,
        name: &str,
        input: &[Item<'a>],
        f: impl Fn(&Item<'a>) -> Option<T>,
        wrap: impl Fn(T) -> Item<'a>,
    ) -> R<Coll<'a>> {
        let Some(x) = singleton(input, name)? else {
            return Ok(Vec::new());
        };
        let r = f(&x);
        if name.starts_with("convertsTo") {
            Ok(vec![Item::Boolean(r.is_some())])
        } else {
            Ok(r.map(wrap).into_iter().collect())
        }
    }

    fn math(
        &self,
        name: &str,
        input: &[Item<'a>],
        args: &[Expr],
        fr: &Frame<'a>,
        d: usize,
    ) -> R<Coll<'a>> {
        let Some(x) = singleton(input, name)? else {
            return Ok(Vec::new());
        };
        if let (Item::Quantity(q), "abs") = (&x, name) {
            return Ok(vec![Item::Quantity(Quantity {
                value: q.value.abs(),
                unit: q.unit.clone(),
            })]);
        }
        let Some(n) = num_of(&x) else {
            return err(format!("{name}() needs a number"));
        };
        let is_int = matches!(x, Item::Integer(_));
        let dec =
            |v: Option<Decimal>| -> R<Coll<'a>> { Ok(v.map(Item::Decimal).into_iter().collect()) };
        let int =
            |v: Decimal| -> R<Coll<'a>> { Ok(v.to_i64().map(Item::Integer).into_iter().collect()) };
        let root = self.root_focus();
        let _ = &root;
        match name {
            "abs" => {
                if let Item::Integer(i) = x {
                    Ok(vec![Item::Integer(i.checked_abs().ok_or_else(overflow)?)])
                } else {
                    dec(Some(n.abs()))
                }
            }
            "ceiling" => int(n.ceiling()),
            "floor" => int(n.floor()),
            "truncate" => int(n.truncated()),
            "round" => {
                let p = if args.is_empty() {
                    0
                } else {
                    self.int_arg(args, 0, &root, fr, d)?.unwrap_or(0)
                };
                if p < 0 {
                    return err("round() precision must not be negative");
                }
                dec(Some(n.rounded(p as u32)))
            }
            "exp" => dec(Decimal::from_f64(n.to_f64().exp())),
            "ln" => {
                let f = n.to_f64();
                dec(if f > 0.0 {
                    Decimal::from_f64(f.ln())
                } else {
                    None
                })
            }
            "sqrt" => {
                let f = n.to_f64();
                dec(if f >= 0.0 {
                    Decimal::from_f64(f.sqrt())
                } else {
                    None
                })
            }
            "log" => {
                let base = self.arg(args, 0, &root, fr, d)?;
                let Some(b) = singleton(&base, "log base")?.as_ref().and_then(num_of) else {
                    return Ok(Vec::new());
                };
                let (f, bf) = (n.to_f64(), b.to_f64());
                dec(if f > 0.0 && bf > 0.0 && bf != 1.0 {
                    Decimal::from_f64(f.ln() / bf.ln())
                } else {
                    None
                })
            }
            _ => {
                let e = self.arg(args, 0, &root, fr, d)?;
                let Some(ex) = singleton(&e, "power exponent")? else {
                    return Ok(Vec::new());
                };
                match (is_int, &ex) {
                    (true, Item::Integer(p)) if *p >= 0 => {
                        let base = match x {
                            Item::Integer(i) => i,
                            _ => 0,
                        };
                        let r = u32::try_from(*p).ok().and_then(|p| base.checked_pow(p));
                        Ok(r.map(Item::Integer).into_iter().collect())
                    }
                    _ => {
                        let Some(pe) = num_of(&ex) else {
                            return err("power() needs a number");
                        };
                        let r = n.to_f64().powf(pe.to_f64());
                        dec(if r.is_nan() {
                            None
                        } else {
                            Decimal::from_f64(r)
                        })
                    }
                }
            }
        }
    }

    fn children(&self, item: &Item<'a>, out: &mut Coll<'a>) {
        let Item::Node(n) = item else {
            return;
        };
        let obj = match (n.ty, n.value, n.companion) {
            (NodeType::Primitive(_), _, Some(Value::Object(o))) => o,
            (NodeType::Primitive(_), _, _) => return,
            (_, Some(Value::Object(o)), _) => o,
            _ => return,
        };
        let shape = self.shape_of(n);
        for (key, v) in obj {
            if key == "resourceType" {
                continue;
            }
            if let Some(plain) = key.strip_prefix('_') {
                if !obj.contains_key(plain) {
                    let ty = shape.and_then(|s| self.model.field(s, plain)).map(|f| f.ty);
                    self.push_values(None, Some(v), ty, out);
                }
                continue;
            }
            let ty = shape.and_then(|s| self.model.field(s, key)).map(|f| f.ty);
            self.push_values(Some(v), obj.get(&format!("_{key}")), ty, out);
        }
    }

    fn resolve(&self, reference: &str) -> Vec<Item<'a>> {
        let Item::Node(root) = &self.resource else {
            return Vec::new();
        };
        let Some(res) = root.value else {
            return Vec::new();
        };
        let as_node = |v: &'a Value| {
            Item::Node(Node {
                value: Some(v),
                companion: None,
                ty: NodeType::Resource,
            })
        };
        if let Some(id) = reference.strip_prefix('#') {
            return res
                .get("contained")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| c.get("id").and_then(Value::as_str) == Some(id))
                .map(as_node)
                .collect();
        }
        let entries = res.get("entry").and_then(Value::as_array);
        for e in entries.into_iter().flatten() {
            let Some(r) = e.get("resource") else {
                continue;
            };
            let full = e.get("fullUrl").and_then(Value::as_str);
            let typed = match (
                r.get("resourceType").and_then(Value::as_str),
                r.get("id").and_then(Value::as_str),
            ) {
                (Some(t), Some(id)) => Some(format!("{t}/{id}")),
                _ => None,
            };
            if full == Some(reference)
                || typed
                    .as_deref()
                    .is_some_and(|t| reference == t || reference.ends_with(&format!("/{t}")))
            {
                return vec![as_node(r)];
            }
        }
        Vec::new()
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                let c = B64[((n >> (18 - 6 * i)) & 63) as usize];
                out.push(match (url, c) {
                    (true, b'+') => '-',
                    (true, b'/') => '_',
                    _ => c as char,
                });
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        let v = match c {
            b'-' => 62,
            b'_' => 63,
            _ => B64.iter().position(|&x| x == c)? as u32,
        };
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    Some(out)
}

fn encode(s: &str, fmt: &str) -> Option<String> {
    Some(match fmt {
        "base64" => base64_encode(s.as_bytes(), false),
        "urlbase64" => base64_encode(s.as_bytes(), true),
        "hex" => s.bytes().map(|b| format!("{b:02x}")).collect(),
        _ => return None,
    })
}

fn decode(s: &str, fmt: &str) -> Option<String> {
    let bytes = match fmt {
        "base64" | "urlbase64" => base64_decode(s)?,
        "hex" => (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()?,
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

fn escape(s: &str, fmt: &str, escaping: bool) -> Option<String> {
    match (fmt, escaping) {
        ("html", true) => Some(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;"),
        ),
        ("html", false) => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&"),
        ),
        ("json", true) => Some(s.replace('\\', "\\\\").replace('"', "\\\"")),
        ("json", false) => Some(s.replace("\\\"", "\"").replace("\\\\", "\\")),
        _ => None,
    }
}
