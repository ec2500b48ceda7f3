//! Running a [`Search`] on the lake's [`SearchIndex`], then reading the page.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use medlake_ingest::search::{IndexValue, ParamKind, SearchParams, normalize_string};
use medlake_lake::search_index::{KeyKind, RangeValue, SearchIndex, TypeIndex};
use medlake_lake::{Lake, ResourceVersion};
use roaring::RoaringBitmap;
use serde_json::Value;

use super::SearchError;
use super::compare::{DateQuery, NumberQuery, QuantityQuery, TokenQuery, value_matches};
use super::parse::{Filter, Include, Modifier, Search, Total, split_escaped};

/// The most resources `_include` and `_revinclude` add to one page.
pub const MAX_INCLUDED: usize = 1000;

/// One page of a search.
#[derive(Debug, Default)]
pub struct SearchPage {
    pub matches: Vec<Arc<ResourceVersion>>,
    pub included: Vec<Arc<ResourceVersion>>,
    /// The number of matches, unless `_total=none`.
    pub total: Option<u64>,
    /// Cursors for the next and previous pages, if there are any.
    pub next: Option<String>,
    pub prev: Option<String>,
    /// What the search ignored or cut short, for the warning OperationOutcome.
    pub warnings: Vec<String>,
}

/// A sort value of one match.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum SortValue {
    Int(i64),
    Float(f64),
    Text(String),
    Missing(Option<()>),
}

impl SortValue {
    fn cmp_with(&self, other: &SortValue, descending: bool) -> Ordering {
        use SortValue::*;
        let o = match (self, other) {
            // A match without a value comes last, whichever the direction.
            (Missing(_), Missing(_)) => return Ordering::Equal,
            (Missing(_), _) => return Ordering::Greater,
            (_, Missing(_)) => return Ordering::Less,
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Int(a), Float(b)) => (*a as f64).total_cmp(b),
            (Float(a), Int(b)) => a.total_cmp(&(*b as f64)),
            (Text(a), Text(b)) => a.cmp(b),
            (Text(_), _) => Ordering::Greater,
            (_, Text(_)) => Ordering::Less,
        };
        if descending { o.reverse() } else { o }
    }
}

/// One match, with what orders it: the sort values, then its type and slot.
struct Hit {
    keys: Vec<SortValue>,
    type_pos: usize,
    slot: u32,
}

/// Run a search and read its page.
pub async fn run(lake: &Lake, search: &Search, base: &str) -> Result<SearchPage, SearchError> {
    // The index is read under its lock, which writers wait for: collect the hits with
    // their sort values, then let go before reading any resource.
    let (mut hits, composite_checks) = {
        let guard = lake.search_index().ok_or_else(|| {
            SearchError::NotSupported("this server was started without a search index".into())
        })?;
        let index = &*guard;
        let mut hits: Vec<Hit> = Vec::new();
        let mut composite_checks = Vec::new();
        for (pos, ty) in search.types.iter().enumerate() {
            let Some(t) = index.of_type(ty) else {
                continue;
            };
            let (slots, composites) = matching_slots(index, ty, t, &search.filters, base)?;
            if !composites.is_empty() {
                composite_checks.push((pos, composites));
            }
            let columns = sort_columns(t, &slots, search);
            for slot in &slots {
                hits.push(Hit {
                    keys: columns.iter().map(|c| c(slot)).collect(),
                    type_pos: pos,
                    slot,
                });
            }
        }
        (hits, composite_checks)
    };
    let mut warnings = Vec::new();
    if !composite_checks.is_empty() {
        hits = check_composites(lake, search, hits, &composite_checks).await?;
    }
    let descending: Vec<bool> = search.sort.iter().map(|k| k.descending).collect();
    hits.sort_by(|a, b| compare_hits(a, b, &descending));

    let total = hits.len();
    let (start, end) = page_bounds(lake, search, &hits, &descending)?;
    let page: Vec<(String, String)> = {
        let guard = lake.search_index();
        let Some(index) = guard.as_deref() else {
            return Ok(SearchPage::default());
        };
        hits[start..end]
            .iter()
            .map(|h| {
                let ty = &search.types[h.type_pos];
                let id = index.of_type(ty).map_or("", |t| t.id(h.slot)).to_string();
                (ty.clone(), id)
            })
            .collect()
    };
    // A page edge as the client gets it back: its sort values, type and id (not its
    // slot, which a restart renumbers).
    let cursor = |h: &Hit| -> String {
        let guard = lake.search_index();
        let ty = &search.types[h.type_pos];
        let id = guard
            .as_deref()
            .and_then(|i| i.of_type(ty))
            .map_or(String::new(), |t| t.id(h.slot).to_string());
        let mut parts: Vec<Value> = h
            .keys
            .iter()
            .map(|k| serde_json::to_value(k).unwrap_or(Value::Null))
            .collect();
        parts.push(Value::String(ty.clone()));
        parts.push(Value::String(id));
        Value::Array(parts).to_string()
    };
    let next = (end < hits.len() && end > start).then(|| cursor(&hits[end - 1]));
    let prev = (start > 0 && start < hits.len()).then(|| cursor(&hits[start]));

    let matches = read_many(lake, &page).await?;
    let included = includes(lake, search, &matches, base, &mut warnings).await?;
    Ok(SearchPage {
        matches,
        included,
        total: (search.total != Total::None).then_some(total as u64),
        next,
        prev,
        warnings,
    })
}

/// The ids of every resource a search matches, in slot order, without reading a page:
/// for a caller that needs the whole set (the cohort of a feature extraction). Sorting,
/// paging and `_include` do not apply; composite conditions are checked as in [`run`].
pub async fn matching_ids(
    lake: &Lake,
    search: &Search,
    base: &str,
) -> Result<Vec<(String, String)>, SearchError> {
    let (mut hits, composite_checks) = {
        let guard = lake.search_index().ok_or_else(|| {
            SearchError::NotSupported("this lake was opened without a search index".into())
        })?;
        let index = &*guard;
        let mut hits: Vec<Hit> = Vec::new();
        let mut composite_checks = Vec::new();
        for (pos, ty) in search.types.iter().enumerate() {
            let Some(t) = index.of_type(ty) else {
                continue;
            };
            let (slots, composites) = matching_slots(index, ty, t, &search.filters, base)?;
            if !composites.is_empty() {
                composite_checks.push((pos, composites));
            }
            hits.extend(slots.iter().map(|slot| Hit {
                keys: Vec::new(),
                type_pos: pos,
                slot,
            }));
        }
        (hits, composite_checks)
    };
    if !composite_checks.is_empty() {
        hits = check_composites(lake, search, hits, &composite_checks).await?;
    }
    let guard = lake.search_index();
    let Some(index) = guard.as_deref() else {
        return Ok(Vec::new());
    };
    Ok(hits
        .iter()
        .filter_map(|h| {
            let ty = &search.types[h.type_pos];
            let t = index.of_type(ty)?;
            Some((ty.clone(), t.id(h.slot).to_string()))
        })
        .collect())
}

/// Read resources by `(type, id)`, each type's together, in the order given; what is
/// gone (deleted since the index was read) is left out.
async fn read_many(
    lake: &Lake,
    wanted: &[(String, String)],
) -> Result<Vec<Arc<ResourceVersion>>, SearchError> {
    let mut by_type: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, (ty, _)) in wanted.iter().enumerate() {
        match by_type.iter_mut().find(|(t, _)| t == ty) {
            Some((_, v)) => v.push(i),
            None => by_type.push((ty, vec![i])),
        }
    }
    let mut found: Vec<Option<Arc<ResourceVersion>>> = vec![None; wanted.len()];
    for (ty, positions) in by_type {
        let ids: Vec<&str> = positions.iter().map(|i| wanted[*i].1.as_str()).collect();
        let rows = lake.read_latest_many(ty, &ids).await?;
        for (i, row) in positions.into_iter().zip(rows) {
            found[i] = row;
        }
    }
    Ok(found.into_iter().flatten().filter(|r| !r.deleted).collect())
}

fn compare_hits(a: &Hit, b: &Hit, descending: &[bool]) -> Ordering {
    for (i, d) in descending.iter().enumerate() {
        let o = a.keys[i].cmp_with(&b.keys[i], *d);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.type_pos.cmp(&b.type_pos).then(a.slot.cmp(&b.slot))
}

/// The page `[start, end)` of the sorted hits that the cursor asks for.
fn page_bounds(
    lake: &Lake,
    search: &Search,
    hits: &[Hit],
    descending: &[bool],
) -> Result<(usize, usize), SearchError> {
    let bad = || SearchError::Invalid("the page link is not valid: search again".into());
    let decode = |cursor: &str| -> Result<Hit, SearchError> {
        let parts: Vec<Value> = serde_json::from_str(cursor).map_err(|_| bad())?;
        if parts.len() != search.sort.len() + 2 {
            return Err(bad());
        }
        let keys = parts[..search.sort.len()]
            .iter()
            .map(|v| serde_json::from_value::<SortValue>(v.clone()).map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        let ty = parts[search.sort.len()].as_str().ok_or_else(bad)?;
        let id = parts[search.sort.len() + 1].as_str().ok_or_else(bad)?;
        let type_pos = search.types.iter().position(|t| t == ty).ok_or_else(bad)?;
        let guard = lake.search_index();
        let slot = guard
            .as_deref()
            .and_then(|i| i.of_type(ty))
            .and_then(|t| t.slot_any(id))
            .ok_or_else(bad)?;
        Ok(Hit {
            keys,
            type_pos,
            slot,
        })
    };
    let count = search.count;
    if let Some(after) = &search.after {
        let mark = decode(after)?;
        let start =
            hits.partition_point(|h| compare_hits(h, &mark, descending) != Ordering::Greater);
        return Ok((start, (start + count).min(hits.len())));
    }
    if let Some(before) = &search.before {
        let mark = decode(before)?;
        let end = hits.partition_point(|h| compare_hits(h, &mark, descending) == Ordering::Less);
        return Ok((end.saturating_sub(count), end));
    }
    Ok((0, count.min(hits.len())))
}

type SortColumn<'a> = Box<dyn Fn(u32) -> SortValue + 'a>;

/// For each `_sort` key, the value each slot sorts by: the smallest of its values
/// ascending, the largest descending, and [`SortValue::Missing`] without one.
fn sort_columns<'a>(
    t: &'a TypeIndex,
    slots: &RoaringBitmap,
    search: &'a Search,
) -> Vec<SortColumn<'a>> {
    let better = |v: &SortValue, best: Option<&SortValue>, descending: bool| {
        best.is_none_or(|b| v.cmp_with(b, descending) == Ordering::Less)
    };
    let mut out: Vec<SortColumn<'a>> = Vec::with_capacity(search.sort.len());
    for key in &search.sort {
        let descending = key.descending;
        let code = key.code.as_str();
        match code {
            "_id" => out.push(Box::new(move |s| SortValue::Text(t.id(s).to_string()))),
            "_lastUpdated" => out.push(Box::new(move |s| SortValue::Int(t.last_updated(s)))),
            _ => {
                // Keyed values (strings, tokens, references, uris): one pass over the
                // parameter's keys, in order, for all the slots at once.
                let mut keyed: std::collections::HashMap<u32, SortValue> = Default::default();
                for kind in [
                    KeyKind::Normalized,
                    KeyKind::Code,
                    KeyKind::Reference,
                    KeyKind::Uri,
                ] {
                    for (k, with) in t.keys(code, kind) {
                        for s in with & slots {
                            let v = SortValue::Text(k.to_string());
                            if better(&v, keyed.get(&s), descending) {
                                keyed.insert(s, v);
                            }
                        }
                    }
                }
                out.push(Box::new(move |s| {
                    let mut best: Option<SortValue> = keyed.get(&s).cloned();
                    for v in t.ranges(s, code) {
                        let v = match *v {
                            RangeValue::Date { lo, hi } => {
                                SortValue::Int(if descending { hi } else { lo })
                            }
                            RangeValue::Number(x) => SortValue::Float(x),
                            RangeValue::Quantity { value, lo, hi, .. } => {
                                SortValue::Float(if !value.is_nan() {
                                    value
                                } else if descending {
                                    hi
                                } else {
                                    lo
                                })
                            }
                        };
                        if better(&v, best.as_ref(), descending) {
                            best = Some(v);
                        }
                    }
                    best.unwrap_or(SortValue::Missing(None))
                }));
            }
        }
    }
    out
}

/// The slots of `t` that pass every filter, and the composite filters left to check on
/// the resources themselves.
fn matching_slots<'f>(
    index: &SearchIndex,
    ty: &str,
    t: &TypeIndex,
    filters: &'f [Filter],
    base: &str,
) -> Result<(RoaringBitmap, Vec<&'f Filter>), SearchError> {
    let mut slots = t.alive().clone();
    let mut ranged = Vec::new();
    let mut composites = Vec::new();
    // Postings first: they narrow cheaply; value comparisons then test what is left.
    for f in filters {
        match f {
            Filter::Param {
                kind: ParamKind::Date | ParamKind::Number | ParamKind::Quantity,
                modifier,
                ..
            } if *modifier != Modifier::Missing => ranged.push(f),
            Filter::Param {
                kind: ParamKind::Composite,
                code,
                values,
                ..
            } => {
                slots &= composite_candidates(t, ty, code, values)?;
                composites.push(f);
            }
            _ => slots &= filter_slots(index, ty, t, f, base)?,
        }
        if slots.is_empty() {
            return Ok((slots, Vec::new()));
        }
    }
    for f in ranged {
        slots = range_filter(t, f, slots)?;
    }
    Ok((slots, composites))
}

/// The slots of `t` that one filter selects.
fn filter_slots(
    index: &SearchIndex,
    ty: &str,
    t: &TypeIndex,
    f: &Filter,
    base: &str,
) -> Result<RoaringBitmap, SearchError> {
    match f {
        Filter::Param {
            code,
            kind,
            modifier,
            values,
        } => {
            if *modifier == Modifier::Missing {
                let present = t
                    .posting(code, KeyKind::Present, "")
                    .cloned()
                    .unwrap_or_default();
                let missing = values.iter().any(|v| v == "true");
                return Ok(if missing {
                    t.alive() - &present
                } else {
                    present & t.alive()
                });
            }
            if matches!(
                kind,
                ParamKind::Date | ParamKind::Number | ParamKind::Quantity
            ) {
                return range_filter(t, f, t.alive().clone());
            }
            if *modifier == Modifier::Not {
                let mut hit = RoaringBitmap::new();
                for v in values {
                    hit |= token_slots(t, code, &Modifier::None, v);
                }
                return Ok(t.alive() - hit);
            }
            let mut out = RoaringBitmap::new();
            for v in values {
                out |= match kind {
                    ParamKind::Token => token_slots(t, code, modifier, v),
                    ParamKind::String => string_slots(t, code, modifier, v),
                    ParamKind::Reference => reference_slots(t, code, modifier, v, base),
                    ParamKind::Uri => uri_slots(t, code, modifier, v),
                    _ => RoaringBitmap::new(),
                };
            }
            Ok(out)
        }
        Filter::Chain {
            code,
            target,
            inner,
        } => {
            let registry = SearchParams::r4();
            let targets: Vec<String> = match target {
                Some(t) => vec![t.clone()],
                None => registry
                    .get(ty, code)
                    .map(|p| p.targets.clone())
                    .unwrap_or_default(),
            };
            let mut out = RoaringBitmap::new();
            for target_type in &targets {
                let Some(tt) = index.of_type(target_type) else {
                    continue;
                };
                let (found, _) =
                    match matching_slots(index, target_type, tt, std::slice::from_ref(inner), base)
                    {
                        Ok(r) => r,
                        // The inner parameter may exist on some target types only.
                        Err(SearchError::UnknownParameter(_)) => continue,
                        Err(e) => return Err(e),
                    };
                for slot in &found {
                    let key = format!("{target_type}/{}", tt.id(slot));
                    if let Some(b) = t.posting(code, KeyKind::Reference, &key) {
                        out |= b;
                    }
                }
            }
            Ok(out)
        }
        Filter::Has {
            source_type,
            source_param,
            inner,
        } => {
            let mut out = RoaringBitmap::new();
            let Some(st) = index.of_type(source_type) else {
                return Ok(out);
            };
            let (sources, _) =
                matching_slots(index, source_type, st, std::slice::from_ref(inner), base)?;
            let prefix = format!("{ty}/");
            for (key, slots) in st.keys(source_param, KeyKind::Reference) {
                let Some(id) = key.strip_prefix(&prefix) else {
                    continue;
                };
                if !slots.is_disjoint(&sources) {
                    if let Some(s) = t.slot(id) {
                        out.insert(s);
                    }
                }
            }
            Ok(out)
        }
        Filter::Compartment { compartment, id } => {
            let mut out = RoaringBitmap::new();
            let reference = format!("{compartment}/{id}");
            let params = SearchParams::r4()
                .compartment(compartment)
                .and_then(|members| members.get(ty));
            for p in params.into_iter().flatten() {
                if let Some(b) = t.posting(p, KeyKind::Reference, &reference) {
                    out |= b;
                }
            }
            if ty == compartment {
                out.extend(t.slot(id));
            }
            Ok(out)
        }
    }
}

fn token_slots(t: &TypeIndex, code: &str, modifier: &Modifier, v: &str) -> RoaringBitmap {
    if code == "_id" {
        return t.slot(v).into_iter().collect();
    }
    let get = |kind, key: &str| t.posting(code, kind, key).cloned().unwrap_or_default();
    match modifier {
        Modifier::Text => {
            let q = normalize_string(v);
            t.union_where(code, KeyKind::Text, &q, |_| true)
        }
        Modifier::OfType => get(KeyKind::OfType, v),
        _ => match TokenQuery::parse(v) {
            TokenQuery::Code(c) => get(KeyKind::Code, &c),
            TokenQuery::SystemCode(s, c) => get(KeyKind::SystemCode, &format!("{s}|{c}")),
            TokenQuery::NoSystem(c) => get(KeyKind::CodeNoSystem, &c),
            TokenQuery::System(s) => get(KeyKind::System, &s),
        },
    }
}

fn string_slots(t: &TypeIndex, code: &str, modifier: &Modifier, v: &str) -> RoaringBitmap {
    match modifier {
        Modifier::Exact => t
            .posting(code, KeyKind::Exact, v)
            .cloned()
            .unwrap_or_default(),
        Modifier::Contains => {
            let q = normalize_string(v);
            t.union_where(code, KeyKind::Normalized, "", |k| k.contains(&q))
        }
        _ => t.union_where(code, KeyKind::Normalized, &normalize_string(v), |_| true),
    }
}

fn reference_slots(
    t: &TypeIndex,
    code: &str,
    modifier: &Modifier,
    v: &str,
    base: &str,
) -> RoaringBitmap {
    let get = |kind, key: &str| t.posting(code, kind, key).cloned().unwrap_or_default();
    match modifier {
        Modifier::Identifier => reference_identifier_slots(t, code, v),
        Modifier::Type(ty) => get(KeyKind::Reference, &format!("{ty}/{v}")),
        _ => {
            // Our own absolute URLs are stored as relative references.
            let v = v
                .strip_prefix(base)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(v);
            if v.contains('/') {
                get(KeyKind::Reference, v)
            } else {
                get(KeyKind::ReferenceId, v)
            }
        }
    }
}

/// `:identifier`: a token search on `Reference.identifier`, in the four token forms.
///
/// The index keys each reference identifier as `system|value` (when it has a system) and
/// as `|value` (whatever its system), so `|value` alone would also find the identifiers
/// that have a system: those are taken away by their `system|value` keys. This is exact
/// per resource, except for a resource that holds, in the one parameter, the same value
/// both with a system and without one; it is then left out of `|value`. Telling that
/// apart needs an index key of its own for identifiers without a system.
fn reference_identifier_slots(t: &TypeIndex, code: &str, v: &str) -> RoaringBitmap {
    let kind = KeyKind::ReferenceIdentifier;
    let get = |key: &str| t.posting(code, kind, key).cloned().unwrap_or_default();
    match TokenQuery::parse(v) {
        TokenQuery::Code(value) => get(&format!("|{value}")),
        TokenQuery::SystemCode(system, value) => get(&format!("{system}|{value}")),
        TokenQuery::System(system) => t.union_where(code, kind, &format!("{system}|"), |_| true),
        TokenQuery::NoSystem(value) => {
            let any_system = format!("|{value}");
            let with_a_system = t.union_where(code, kind, "", |key| {
                key.strip_suffix(any_system.as_str())
                    .is_some_and(|system| !system.is_empty() && !system.contains('|'))
            });
            get(&any_system) - with_a_system
        }
    }
}

fn uri_slots(t: &TypeIndex, code: &str, modifier: &Modifier, v: &str) -> RoaringBitmap {
    match modifier {
        Modifier::Below => t.union_where(code, KeyKind::Uri, v, |_| true),
        Modifier::Above => t.union_where(code, KeyKind::Uri, "", |k| v.starts_with(k)),
        _ => t
            .posting(code, KeyKind::Uri, v)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Keep the slots with a date, number or quantity value that matches.
fn range_filter(
    t: &TypeIndex,
    f: &Filter,
    slots: RoaringBitmap,
) -> Result<RoaringBitmap, SearchError> {
    let Filter::Param {
        code, kind, values, ..
    } = f
    else {
        return Ok(slots);
    };
    if code == "_lastUpdated" {
        let queries = values
            .iter()
            .map(|v| DateQuery::parse(v))
            .collect::<Result<Vec<_>, _>>()?;
        // lastUpdated has millisecond precision.
        return Ok(slots
            .into_iter()
            .filter(|s| {
                let at = t.last_updated(*s);
                queries.iter().any(|q| q.matches(at, at + 999))
            })
            .collect());
    }
    enum Q {
        D(DateQuery),
        N(NumberQuery),
        Q(QuantityQuery),
    }
    let queries = values
        .iter()
        .map(|v| {
            Ok(match kind {
                ParamKind::Date => Q::D(DateQuery::parse(v)?),
                ParamKind::Number => Q::N(NumberQuery::parse(v)?),
                _ => Q::Q(QuantityQuery::parse(v)?),
            })
        })
        .collect::<Result<Vec<_>, SearchError>>()?;
    Ok(slots
        .into_iter()
        .filter(|s| {
            t.ranges(*s, code).any(|v| {
                queries.iter().any(|q| match (q, *v) {
                    (Q::D(q), RangeValue::Date { lo, hi }) => q.matches(lo, hi),
                    (Q::N(q), RangeValue::Number(x)) => q.matches(Some(x), x, x),
                    (
                        Q::Q(q),
                        RangeValue::Quantity {
                            value,
                            lo,
                            hi,
                            system,
                            code,
                            unit,
                        },
                    ) => q.matches_parts(
                        (!value.is_nan()).then_some(value),
                        lo,
                        hi,
                        t.symbol(system),
                        t.symbol(code),
                        t.symbol(unit),
                    ),
                    _ => false,
                })
            })
        })
        .collect())
}

/// Candidates for a composite filter: its token components narrow by postings (the
/// component's own parameter); the exact pairing is checked on the resource.
fn composite_candidates(
    t: &TypeIndex,
    ty: &str,
    code: &str,
    values: &[String],
) -> Result<RoaringBitmap, SearchError> {
    let Some(p) = SearchParams::r4().get(ty, code) else {
        return Ok(RoaringBitmap::new());
    };
    let mut out = RoaringBitmap::new();
    for v in values {
        let parts = split_escaped(v, '$');
        if parts.len() != p.components.len() {
            return Err(SearchError::Invalid(format!(
                "{code} takes {} values joined by $, not {v:?}",
                p.components.len()
            )));
        }
        let mut slots = t.alive().clone();
        for (c, part) in p.components.iter().zip(&parts) {
            if c.kind == ParamKind::Token {
                slots &= token_slots(t, &c.code, &Modifier::None, part);
            }
        }
        out |= slots;
    }
    Ok(out)
}

/// Keep the hits whose resources have a composite value that matches, component by
/// component in the same element.
async fn check_composites(
    lake: &Lake,
    search: &Search,
    hits: Vec<Hit>,
    checks: &[(usize, Vec<&Filter>)],
) -> Result<Vec<Hit>, SearchError> {
    let registry = SearchParams::r4();
    let mut kept = Vec::with_capacity(hits.len());
    for h in hits {
        let Some((_, filters)) = checks.iter().find(|(pos, _)| *pos == h.type_pos) else {
            kept.push(h);
            continue;
        };
        let ty = &search.types[h.type_pos];
        let id = {
            let guard = lake.search_index();
            guard
                .as_deref()
                .and_then(|i| i.of_type(ty))
                .map_or(String::new(), |t| t.id(h.slot).to_string())
        };
        let Some(row) = lake.read_latest(ty, &id).await? else {
            continue;
        };
        let Ok(resource) = serde_json::from_str::<Value>(&row.resource) else {
            continue;
        };
        let mut all = true;
        for f in filters {
            let Filter::Param { code, values, .. } = f else {
                continue;
            };
            let Some(p) = registry.get(ty, code) else {
                all = false;
                break;
            };
            let found = registry.extract_param(ty, code, &resource);
            let mut any = false;
            for v in values {
                let parts = split_escaped(v, '$');
                for value in &found {
                    let IndexValue::Composite(components) = value else {
                        continue;
                    };
                    let mut every = true;
                    for ((c, part), got) in p.components.iter().zip(&parts).zip(components) {
                        let mut one = false;
                        for g in got {
                            if value_matches(c.kind, g, part)? {
                                one = true;
                                break;
                            }
                        }
                        if !one {
                            every = false;
                            break;
                        }
                    }
                    if every {
                        any = true;
                    }
                }
            }
            if !any {
                all = false;
                break;
            }
        }
        if all {
            kept.push(h);
        }
    }
    Ok(kept)
}

/// `_include` and `_revinclude`, with `:iterate` applied to what they add until nothing
/// new comes.
async fn includes(
    lake: &Lake,
    search: &Search,
    matches: &[Arc<ResourceVersion>],
    base: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Arc<ResourceVersion>>, SearchError> {
    if search.include.is_empty() && search.revinclude.is_empty() {
        return Ok(Vec::new());
    }
    let registry = SearchParams::r4();
    let mut seen: HashSet<(String, String)> = matches
        .iter()
        .map(|r| (r.resource_type.clone(), r.id.clone()))
        .collect();
    let mut out: Vec<Arc<ResourceVersion>> = Vec::new();
    let mut frontier: Vec<Arc<ResourceVersion>> = matches.to_vec();
    let mut first = true;
    while !frontier.is_empty() {
        let mut wanted: Vec<(String, String)> = Vec::new();
        for r in &frontier {
            for inc in search.include.iter().filter(|i| first || i.iterate) {
                if inc.source_type != r.resource_type {
                    continue;
                }
                let Ok(resource) = serde_json::from_str::<Value>(&r.resource) else {
                    continue;
                };
                for code in reference_params(registry, inc) {
                    for v in registry.extract_param(&r.resource_type, &code, &resource) {
                        let IndexValue::Reference {
                            reference: Some(reference),
                            ..
                        } = v
                        else {
                            continue;
                        };
                        let reference = reference
                            .strip_prefix(base)
                            .map(|s| s.trim_start_matches('/').to_string())
                            .unwrap_or(reference);
                        let Some((ty, id)) = reference.split_once('/') else {
                            continue;
                        };
                        if inc.target_type.as_deref().is_some_and(|t| t != ty) {
                            continue;
                        }
                        wanted.push((ty.to_string(), id.to_string()));
                    }
                }
            }
            for inc in search.revinclude.iter().filter(|i| first || i.iterate) {
                let key = format!("{}/{}", r.resource_type, r.id);
                let guard = lake.search_index();
                let Some(t) = guard.as_deref().and_then(|i| i.of_type(&inc.source_type)) else {
                    continue;
                };
                for code in reference_params(registry, inc) {
                    if let Some(slots) = t.posting(&code, KeyKind::Reference, &key) {
                        for s in slots {
                            wanted.push((inc.source_type.clone(), t.id(s).to_string()));
                        }
                    }
                }
            }
        }
        first = false;
        let mut fresh: Vec<(String, String)> = Vec::new();
        for key in wanted {
            if seen.insert(key.clone()) {
                fresh.push(key);
            }
        }
        let room = MAX_INCLUDED.saturating_sub(out.len());
        if fresh.len() > room {
            fresh.truncate(room);
            warnings.push(format!(
                "_include and _revinclude stopped at {MAX_INCLUDED} resources"
            ));
        }
        let next = read_many(lake, &fresh).await?;
        out.extend(next.iter().cloned());
        if out.len() >= MAX_INCLUDED {
            return Ok(out);
        }
        if !search
            .include
            .iter()
            .chain(&search.revinclude)
            .any(|i| i.iterate)
        {
            break;
        }
        frontier = next;
    }
    Ok(out)
}

fn reference_params(registry: &SearchParams, inc: &Include) -> Vec<String> {
    match &inc.param {
        Some(p) => vec![p.clone()],
        None => registry
            .of_type(&inc.source_type)
            .filter(|p| p.kind == ParamKind::Reference)
            .map(|p| p.code.clone())
            .collect(),
    }
}
