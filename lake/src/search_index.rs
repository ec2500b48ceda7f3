//! [`SearchIndex`]: the resident index that FHIR search runs on.
//!
//! Each current (newest, not deleted) resource of a type has a slot, a `u32`. What its
//! search parameters hold ([`medlake_ingest::search`], extracted when the version was
//! written and stored in the `search` column) is kept two ways:
//!
//! - **Postings**: for every exact key a search can ask for (a token's `system|code`, a
//!   reference's `Type/id`, a string's normalised form, ...) the bitmap of slots that
//!   have it. Equality, prefix (`BTreeMap` range) and `:missing` searches are bitmap
//!   operations, so a selective search costs what it finds, not what the table holds.
//! - **Ranges**: dates, numbers and quantities stay as values per slot, because their
//!   comparisons (`ge2024`, `ap100`) are not key lookups. A search tests them only on
//!   the candidates the postings leave, or scans the type when nothing else narrows it.
//!
//! An update removes the slot from the postings of its previous version (each slot
//! remembers its posting ids) and adds the new ones; a delete frees the slot's content.
//! The index is rebuilt from the `search` column when the lake opens, and kept current
//! by every acknowledged write, under the same step that makes the write readable.
//!
//! Why in memory, by hand: Delta files give no ordered access by value (a Parquet scan
//! with statistics still opens every file for a value that is spread over all of them),
//! and a key-value store beside the lake would be a second copy of the data to keep in
//! step. Roaring bitmaps (the `roaring` crate, which delta-rs already uses for deletion
//! vectors) keep postings compact.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use medlake_ingest::search::{IndexEntry, IndexValue, normalize_string};
use roaring::RoaringBitmap;

/// What a posting key stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum KeyKind {
    /// The parameter has a value at all (`:missing`). The key is empty.
    Present,
    /// A token's code, whatever its system.
    Code,
    /// A token's `system|code`.
    SystemCode,
    /// A token's system (`system|` searches).
    System,
    /// A token's code when it has no system (`|code` searches).
    CodeNoSystem,
    /// A token's display or text, normalised (`:text`).
    Text,
    /// An Identifier's `type-system|type-code|value` (`:of-type`).
    OfType,
    /// A string, normalised ([`normalize_string`]).
    Normalized,
    /// A string as written (`:exact`).
    Exact,
    /// A reference as written: `Type/id`, or an absolute or canonical URL.
    Reference,
    /// The id of a relative reference (`subject=123`).
    ReferenceId,
    /// A reference's logical identifier as `system|value`, and `|value` (`:identifier`).
    ReferenceIdentifier,
    /// A uri.
    Uri,
}

type Key = (u16, KeyKind, Box<str>);

/// A date, number or quantity value of a slot, as a search compares it: 40 bytes, with
/// the strings of a quantity as symbols of its [`TypeIndex`] ([`TypeIndex::symbol`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeValue {
    /// The instants covered, in microseconds, both ends inclusive.
    Date {
        lo: i64,
        hi: i64,
    },
    Number(f64),
    /// `value` is NaN for a Range, which has only `lo..=hi`.
    Quantity {
        value: f64,
        lo: f64,
        hi: f64,
        system: u32,
        code: u32,
        unit: u32,
    },
}

/// The current content of one slot.
#[derive(Debug, Default)]
struct Doc {
    version: i64,
    last_updated: i64,
    postings: Box<[u32]>,
    ranges: Box<[(u16, RangeValue)]>,
}

/// The index of one resource type.
#[derive(Debug, Default)]
pub struct TypeIndex {
    ids: Vec<Arc<str>>,
    slots: HashMap<Arc<str>, u32>,
    docs: Vec<Doc>,
    alive: RoaringBitmap,
    params: HashMap<String, u16>,
    keys: BTreeMap<Key, u32>,
    postings: Vec<RoaringBitmap>,
    /// Interned strings of quantities; symbol 0 is "none".
    symbols: Vec<Box<str>>,
    symbol_ids: HashMap<Box<str>, u32>,
}

impl TypeIndex {
    /// The slots of current resources.
    pub fn alive(&self) -> &RoaringBitmap {
        &self.alive
    }

    pub fn slot(&self, id: &str) -> Option<u32> {
        self.slots
            .get(id)
            .copied()
            .filter(|s| self.alive.contains(*s))
    }

    pub fn id(&self, slot: u32) -> &str {
        self.ids.get(slot as usize).map_or("", |s| s)
    }

    pub fn version(&self, slot: u32) -> i64 {
        self.docs.get(slot as usize).map_or(0, |d| d.version)
    }

    /// `meta.lastUpdated` of the slot's version, in microseconds since the epoch.
    pub fn last_updated(&self, slot: u32) -> i64 {
        self.docs.get(slot as usize).map_or(0, |d| d.last_updated)
    }

    /// The slots with exactly this key, if any.
    pub fn posting(&self, param: &str, kind: KeyKind, key: &str) -> Option<&RoaringBitmap> {
        let p = *self.params.get(param)?;
        let id = self.keys.get(&(p, kind, Box::from(key)))?;
        self.postings.get(*id as usize)
    }

    /// The slots with any key of this kind that `accept` takes, among keys starting with
    /// `prefix` (all keys of the kind for an empty prefix).
    pub fn union_where(
        &self,
        param: &str,
        kind: KeyKind,
        prefix: &str,
        mut accept: impl FnMut(&str) -> bool,
    ) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let Some(&p) = self.params.get(param) else {
            return out;
        };
        let start: Key = (p, kind, Box::from(prefix));
        for ((kp, kk, key), id) in self.keys.range((Bound::Included(start), Bound::Unbounded)) {
            if *kp != p || *kk != kind || !key.starts_with(prefix) {
                break;
            }
            if accept(key) {
                if let Some(b) = self.postings.get(*id as usize) {
                    out |= b;
                }
            }
        }
        out
    }

    /// Every key of one kind of a parameter, in order, with its slots.
    pub fn keys<'a>(
        &'a self,
        param: &str,
        kind: KeyKind,
    ) -> impl Iterator<Item = (&'a str, &'a RoaringBitmap)> + 'a {
        let p = self.params.get(param).copied();
        let start = p.map(|p| (p, kind, Box::<str>::from("")));
        start
            .into_iter()
            .flat_map(move |start| {
                self.keys
                    .range((Bound::Included(start), Bound::Unbounded))
                    .take_while(move |((kp, kk, _), _)| Some(*kp) == p && *kk == kind)
            })
            .filter_map(|((_, _, key), id)| Some((&**key, self.postings.get(*id as usize)?)))
    }

    /// The slot an id has or had (a deleted resource keeps its slot), for page cursors.
    pub fn slot_any(&self, id: &str) -> Option<u32> {
        self.slots.get(id).copied()
    }

    /// The string of a quantity's symbol; `None` for symbol 0.
    pub fn symbol(&self, symbol: u32) -> Option<&str> {
        match symbol {
            0 => None,
            s => self.symbols.get(s as usize).map(|s| &**s),
        }
    }

    fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(id) = self.symbol_ids.get(s) {
            return *id;
        }
        if self.symbols.is_empty() {
            self.symbols.push(Box::from(""));
        }
        let id = self.symbols.len() as u32;
        self.symbols.push(Box::from(s));
        self.symbol_ids.insert(Box::from(s), id);
        id
    }

    /// The date, number and quantity values of a slot for one parameter.
    pub fn ranges<'a>(&'a self, slot: u32, param: &str) -> impl Iterator<Item = &'a RangeValue> {
        let p = self.params.get(param).copied();
        self.docs
            .get(slot as usize)
            .into_iter()
            .flat_map(|d| d.ranges.iter())
            .filter(move |(q, _)| Some(*q) == p)
            .map(|(_, v)| v)
    }

    fn param_id(&mut self, code: &str) -> u16 {
        if let Some(p) = self.params.get(code) {
            return *p;
        }
        let p = self.params.len() as u16;
        self.params.insert(code.to_string(), p);
        p
    }

    fn posting_id(&mut self, key: Key) -> u32 {
        if let Some(id) = self.keys.get(&key) {
            return *id;
        }
        let id = self.postings.len() as u32;
        self.postings.push(RoaringBitmap::new());
        self.keys.insert(key, id);
        id
    }

    /// Make `id` hold this version (or nothing, for a delete). Older versions than the
    /// one held are ignored, so the order rows arrive in does not matter. Each value is
    /// also indexed under the union parameters its parameter feeds (`unions_fed_by`),
    /// which are not stored ([`SearchParam::union_of`](medlake_ingest::search::SearchParam)).
    fn set(
        &mut self,
        id: &str,
        version: i64,
        last_updated: i64,
        entries: Option<&[IndexEntry]>,
        unions_fed_by: impl Fn(&str) -> &'static [String],
    ) {
        let slot = match self.slots.get(id) {
            Some(s) => *s,
            None => {
                let s = self.ids.len() as u32;
                let id: Arc<str> = Arc::from(id);
                self.ids.push(id.clone());
                self.slots.insert(id, s);
                self.docs.push(Doc::default());
                s
            }
        };
        if self.docs[slot as usize].version > version {
            return;
        }
        let old = std::mem::take(&mut self.docs[slot as usize]);
        for p in old.postings.iter() {
            if let Some(b) = self.postings.get_mut(*p as usize) {
                b.remove(slot);
            }
        }
        let Some(entries) = entries else {
            self.alive.remove(slot);
            self.docs[slot as usize].version = version;
            return;
        };
        let mut postings = Vec::new();
        let mut ranges = Vec::new();
        for e in entries {
            let keys = keys(&e.value);
            let codes = std::iter::once(e.param.as_ref())
                .chain(unions_fed_by(&e.param).iter().map(String::as_str));
            for code in codes {
                let p = self.param_id(code);
                postings.push(self.posting_id((p, KeyKind::Present, Box::from(""))));
                for (kind, key) in &keys {
                    postings.push(self.posting_id((p, *kind, Box::from(key.as_str()))));
                }
                self.add_range(p, &e.value, &mut ranges);
            }
        }
        postings.sort_unstable();
        postings.dedup();
        for p in &postings {
            self.postings[*p as usize].insert(slot);
        }
        self.docs[slot as usize] = Doc {
            version,
            last_updated,
            postings: postings.into_boxed_slice(),
            ranges: ranges.into_boxed_slice(),
        };
        self.alive.insert(slot);
    }

    /// Keep a date, number or quantity value of parameter `p` for range comparisons.
    fn add_range(&mut self, p: u16, value: &IndexValue, ranges: &mut Vec<(u16, RangeValue)>) {
        let range = match value {
            IndexValue::Date(lo, hi) => Some(RangeValue::Date { lo: *lo, hi: *hi }),
            IndexValue::Number(x, _, _) => Some(RangeValue::Number(*x)),
            IndexValue::Quantity {
                value,
                lo,
                hi,
                system,
                code,
                unit,
            } => Some(RangeValue::Quantity {
                value: value.unwrap_or(f64::NAN),
                lo: *lo,
                hi: *hi,
                system: self.intern(system.as_deref()),
                code: self.intern(code.as_deref()),
                unit: self.intern(unit.as_deref()),
            }),
            _ => None,
        };
        if let Some(r) = range {
            if !ranges.iter().any(|(q, v)| *q == p && *v == r) {
                ranges.push((p, r));
            }
        }
    }
}

/// The posting keys of one value.
fn keys(value: &IndexValue) -> Vec<(KeyKind, String)> {
    let mut out = Vec::new();
    match value {
        IndexValue::Token {
            system,
            code,
            text,
            of_type,
        } => {
            if let Some(c) = code {
                out.push((KeyKind::Code, c.clone()));
                match system {
                    Some(s) => out.push((KeyKind::SystemCode, format!("{s}|{c}"))),
                    None => out.push((KeyKind::CodeNoSystem, c.clone())),
                }
                if let Some(t) = of_type {
                    out.push((KeyKind::OfType, format!("{t}|{c}")));
                }
            }
            if let Some(s) = system {
                out.push((KeyKind::System, s.clone()));
            }
            if let Some(t) = text {
                out.push((KeyKind::Text, normalize_string(t)));
            }
        }
        IndexValue::String(s) => {
            out.push((KeyKind::Normalized, normalize_string(s)));
            out.push((KeyKind::Exact, s.clone()));
        }
        IndexValue::Reference {
            reference,
            identifier,
        } => {
            if let Some(r) = reference {
                out.push((KeyKind::Reference, r.clone()));
                if let Some((_, id)) = r.rsplit_once('/')
                    && !r.contains("://")
                {
                    out.push((KeyKind::ReferenceId, id.to_string()));
                }
            }
            if let Some((system, value)) = identifier {
                out.push((KeyKind::ReferenceIdentifier, format!("|{value}")));
                if let Some(s) = system {
                    out.push((KeyKind::ReferenceIdentifier, format!("{s}|{value}")));
                }
            }
        }
        IndexValue::Uri(u) => out.push((KeyKind::Uri, u.clone())),
        IndexValue::Date(..)
        | IndexValue::Number(..)
        | IndexValue::Quantity { .. }
        | IndexValue::Composite(_) => {}
    }
    out
}

/// The search index of a workspace: one [`TypeIndex`] per resource type.
#[derive(Debug, Default)]
pub struct SearchIndex {
    types: HashMap<String, TypeIndex>,
}

impl SearchIndex {
    /// (current resources, distinct posting keys, date/number/quantity values), all types.
    pub fn stats(&self) -> (u64, usize, usize) {
        self.types.values().fold((0, 0, 0), |(r, k, v), t| {
            (
                r + t.alive.len(),
                k + t.keys.len(),
                v + t.docs.iter().map(|d| d.ranges.len()).sum::<usize>(),
            )
        })
    }

    pub fn of_type(&self, resource_type: &str) -> Option<&TypeIndex> {
        self.types.get(resource_type)
    }

    /// Record a version: its entries as stored (`search` column), or none for a delete.
    pub fn apply(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        last_updated: i64,
        deleted: bool,
        search: &str,
    ) {
        let entries = if deleted {
            None
        } else {
            Some(medlake_ingest::search::decode(search).unwrap_or_default())
        };
        let t = match self.types.get_mut(resource_type) {
            Some(t) => t,
            None => self.types.entry(resource_type.to_string()).or_default(),
        };
        let params = medlake_ingest::search::SearchParams::r4();
        t.set(id, version, last_updated, entries.as_deref(), |code| {
            params.unions_fed_by(resource_type, code)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medlake_ingest::search::{SearchParams, encode};
    use serde_json::json;

    fn put(index: &mut SearchIndex, id: &str, version: i64, resource: serde_json::Value) {
        let entries = SearchParams::r4().extract("Patient", &resource);
        index.apply("Patient", id, version, version, false, &encode(&entries));
    }

    #[test]
    fn an_update_moves_a_resource_between_postings_and_a_delete_removes_it() {
        let mut index = SearchIndex::default();
        put(
            &mut index,
            "a",
            1,
            json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}),
        );
        put(
            &mut index,
            "b",
            1,
            json!({"resourceType": "Patient", "name": [{"family": "Smythe"}]}),
        );
        let t = index.of_type("Patient").unwrap();
        let smith = t.posting("family", KeyKind::Normalized, "smith").unwrap();
        assert_eq!(smith.len(), 1);
        let sm = t.union_where("family", KeyKind::Normalized, "sm", |_| true);
        assert_eq!(sm.len(), 2);

        put(
            &mut index,
            "a",
            2,
            json!({"resourceType": "Patient", "name": [{"family": "Jones"}]}),
        );
        // a late row of an older version changes nothing
        put(
            &mut index,
            "a",
            1,
            json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}),
        );
        let t = index.of_type("Patient").unwrap();
        assert!(
            t.posting("family", KeyKind::Normalized, "smith")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            t.posting("family", KeyKind::Exact, "Jones").unwrap().len(),
            1
        );

        index.apply("Patient", "a", 3, 3, true, "");
        let t = index.of_type("Patient").unwrap();
        assert!(
            t.posting("family", KeyKind::Exact, "Jones")
                .unwrap()
                .is_empty()
        );
        assert_eq!(t.alive().len(), 1);
        assert_eq!(t.slot("a"), None);
        assert_eq!(t.id(t.slot("b").unwrap()), "b");
    }

    /// A lake written before the `search` column existed: its rows are indexed from
    /// their resources, and new writes add the column to the table.
    #[tokio::test]
    async fn a_table_without_the_search_column_is_indexed_and_extended() {
        use crate::record::VersionBatchBuilder;
        use crate::{Lake, LakeOptions, WriteOp};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        {
            let lake = Lake::open(LakeOptions::new(&data)).await.unwrap();
            let mut b = VersionBatchBuilder::new();
            let old = r#"{"resourceType":"Patient","id":"old","name":[{"family":"Vance"}]}"#;
            b.push_parts("old", 1, 1_700_000_000_000_000, false, old, None, "");
            let batch = b.finish().unwrap();
            let without_search = batch.project(&[0, 1, 2, 3, 4, 5]).unwrap();
            let table = lake.table_handle("Patient").await.unwrap();
            table.write(vec![without_search]).await.unwrap();
        }
        let mut options = LakeOptions::new(&data);
        options.search_index = true;
        let lake = Lake::open(options.clone()).await.unwrap();
        let found = |lake: &Lake, family: &str| {
            let index = lake.search_index().unwrap();
            let t = index.of_type("Patient").unwrap();
            t.posting("family", KeyKind::Normalized, family)
                .map_or(0, |b| b.len())
        };
        assert_eq!(found(&lake, "vance"), 1);
        let mut new = serde_json::Map::new();
        new.insert("resourceType".into(), json!("Patient"));
        new.insert("name".into(), json!([{"family": "Okoro"}]));
        lake.write(vec![WriteOp::Put {
            resource_type: "Patient".into(),
            id: Some("new".into()),
            resource: new,
            if_match: None,
        }])
        .await
        .unwrap();
        lake.flush().await.unwrap();
        drop(lake);
        let lake = Lake::open(options).await.unwrap();
        assert_eq!(found(&lake, "vance"), 1);
        assert_eq!(found(&lake, "okoro"), 1);
    }

    /// A union parameter (`combo-code`) is not stored but indexed from its parts, with
    /// their keys and range values.
    #[test]
    fn union_parameters_are_indexed_from_their_parts() {
        let mut index = SearchIndex::default();
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
            "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "2-6"}]},
                           "valueQuantity": {"value": 3, "code": "mg"}}]});
        let entries = SearchParams::r4().extract("Observation", &obs);
        assert!(!entries.iter().any(|e| e.param.starts_with("combo-")));
        index.apply("Observation", "o", 1, 1, false, &encode(&entries));
        let t = index.of_type("Observation").unwrap();
        let slot = t.slot("o").unwrap();
        for code in ["1-8", "2-6"] {
            let hits = t.posting("combo-code", KeyKind::Code, code).unwrap();
            assert!(hits.contains(slot), "combo-code {code}");
        }
        assert!(t.posting("code", KeyKind::Code, "2-6").is_none());
        assert_eq!(t.ranges(slot, "combo-value-quantity").count(), 1);
        assert_eq!(t.ranges(slot, "value-quantity").count(), 0);
    }
}
