//! The R4 element tables, turned into per-object lookup tables ("shapes") at load time.
//!
//! The vendored file (`ingest/r4/definitions.json.gz`, written by `tools/vendor-r4.py`)
//! lists, per resource and complex data type, every element path with its cardinality and
//! type codes. Here each resource, each data type and each inline backbone element (such
//! as `Patient.contact`) becomes one [`Shape`]: a hash map from every JSON key that may
//! appear on such an object (`status`, `_status`, `valueQuantity`, `valueString`,
//! `_valueString`, ...) to a small [`Key`] record that says which element it belongs to
//! and which type its value has. Types are resolved to indexes once, so validating never
//! looks up a type by name.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;

use serde_json::Value;

/// The gzip'd compact definitions, embedded in the binary.
static DEFINITIONS_GZ: &[u8] = include_bytes!("../../r4/definitions.json.gz");

/// A fast non-cryptographic hasher (the "Fx" hash of rustc) for the fixed key tables.
/// The tables are built once from trusted data and only looked up with input keys, so
/// hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub(super) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            let (head, rest) = bytes.split_at(8);
            let mut word = [0u8; 8];
            word.copy_from_slice(head);
            self.add(u64::from_le_bytes(word));
            bytes = rest;
        }
        if !bytes.is_empty() {
            let mut word = [0u8; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            self.add(u64::from_le_bytes(word) ^ ((bytes.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(super) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The FHIR primitive types, each with its own format check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prim {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
    /// `Resource.id`: an `id`, but a bad one makes the whole resource `invalid`.
    ResourceId,
}

impl Prim {
    pub(super) fn from_code(code: &str) -> Option<Prim> {
        Some(match code {
            "base64Binary" => Prim::Base64Binary,
            "boolean" => Prim::Boolean,
            "canonical" => Prim::Canonical,
            "code" => Prim::Code,
            "date" => Prim::Date,
            "dateTime" => Prim::DateTime,
            "decimal" => Prim::Decimal,
            "id" => Prim::Id,
            "instant" => Prim::Instant,
            "integer" => Prim::Integer,
            "markdown" => Prim::Markdown,
            "oid" => Prim::Oid,
            "positiveInt" => Prim::PositiveInt,
            "string" => Prim::String,
            "time" => Prim::Time,
            "unsignedInt" => Prim::UnsignedInt,
            "uri" => Prim::Uri,
            "url" => Prim::Url,
            "uuid" => Prim::Uuid,
            "xhtml" => Prim::Xhtml,
            _ => return None,
        })
    }

    /// The FHIR type code.
    pub(super) fn name(self) -> &'static str {
        match self {
            Prim::Base64Binary => "base64Binary",
            Prim::Boolean => "boolean",
            Prim::Canonical => "canonical",
            Prim::Code => "code",
            Prim::Date => "date",
            Prim::DateTime => "dateTime",
            Prim::Decimal => "decimal",
            Prim::Id | Prim::ResourceId => "id",
            Prim::Instant => "instant",
            Prim::Integer => "integer",
            Prim::Markdown => "markdown",
            Prim::Oid => "oid",
            Prim::PositiveInt => "positiveInt",
            Prim::String => "string",
            Prim::Time => "time",
            Prim::UnsignedInt => "unsignedInt",
            Prim::Uri => "uri",
            Prim::Url => "url",
            Prim::Uuid => "uuid",
            Prim::Xhtml => "xhtml",
        }
    }
}

/// What the value of a JSON key must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// A primitive: a JSON scalar with a format.
    Prim(Prim),
    /// A JSON object of the given shape (data type, backbone element).
    Complex(u32),
    /// A nested resource, typed by its own `resourceType`.
    Resource,
}

/// One JSON key allowed on an object.
#[derive(Debug)]
pub(super) struct Key {
    /// Index of the element in [`Shape::elems`].
    pub elem: u16,
    /// The type of the value (for a companion `_x`: the type of `x`).
    pub ty: Ty,
    /// A `_x` key carrying the id and extensions of the primitive `x`.
    pub companion: bool,
    /// For a primitive key `x`: `_x`; for a companion `_x`: `x`; otherwise empty.
    pub pair: Box<str>,
}

/// One element of an object, as defined (`status`, `value[x]`).
#[derive(Debug)]
pub(super) struct Elem {
    /// The element name as defined: `status`, `value[x]`.
    pub name: Box<str>,
    pub min: u32,
    /// max is `*` (must be a JSON array) rather than `1`.
    pub many: bool,
    /// A choice element (`value[x]`): one of several typed keys.
    pub choice: bool,
    /// For a choice, the JSON keys it allows (`valueQuantity`, ...), for messages.
    pub variants: Vec<Box<str>>,
    /// Part of the summary view (`isSummary`, for `_summary=true`).
    pub summary: bool,
}

/// The allowed content of one kind of JSON object.
#[derive(Debug)]
pub(super) struct Shape {
    /// `Patient`, `HumanName`, `Patient.contact`.
    pub name: Box<str>,
    /// A resource (where `resourceType` is allowed and `id` is the logical id).
    pub is_resource: bool,
    pub keys: FxMap<Box<str>, Key>,
    pub elems: Vec<Elem>,
    /// Indexes of the elements with min >= 1.
    pub required: Vec<u16>,
    /// The same as a bit set.
    pub required_mask: u128,
}

/// All shapes, and the resource types.
#[derive(Debug)]
pub(super) struct Defs {
    pub fhir_version: String,
    pub shapes: Vec<Shape>,
    /// Concrete resource type name -> its shape.
    pub resources: FxMap<Box<str>, u32>,
    /// Concrete resource type names, sorted.
    pub resource_names: Vec<Box<str>>,
    /// The shape of a `_x` companion (`Element`: `id`, `extension`).
    pub element_shape: u32,
}

/// Elements per object are tracked in a `u128` bit set while validating.
pub(super) const MAX_ELEMS: usize = 128;

fn capitalise(code: &str) -> String {
    let mut c = code.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

impl Defs {
    /// Decompress and index the embedded definitions. Panics if the embedded data is
    /// broken: that is a build defect, caught by the unit tests.
    pub(super) fn load() -> Defs {
        let mut json = Vec::with_capacity(DEFINITIONS_GZ.len() * 10);
        flate2::read::GzDecoder::new(DEFINITIONS_GZ)
            .read_to_end(&mut json)
            .expect("embedded ingest/r4/definitions.json.gz is not valid gzip");
        let doc: Value =
            serde_json::from_slice(&json).expect("embedded R4 definitions are not valid JSON");
        Defs::from_json(&doc)
    }

    fn from_json(doc: &Value) -> Defs {
        let fhir_version = doc["fhirVersion"]
            .as_str()
            .expect("R4 definitions: fhirVersion")
            .to_string();
        let primitives: Vec<&str> = doc["primitives"]
            .as_array()
            .expect("R4 definitions: primitives")
            .iter()
            .map(|p| p.as_str().expect("R4 definitions: primitive name"))
            .collect();
        for p in &primitives {
            assert!(
                Prim::from_code(p).is_some(),
                "R4 definitions: unknown primitive {p}"
            );
        }
        let resource_list: Vec<&str> = doc["resources"]
            .as_array()
            .expect("R4 definitions: resources")
            .iter()
            .map(|p| p.as_str().expect("R4 definitions: resource name"))
            .collect();
        let types = doc["types"].as_object().expect("R4 definitions: types");

        // Pass 1: a shape for every type and every element with inline children.
        let mut shapes: Vec<Shape> = Vec::new();
        let mut shape_of: FxMap<String, u32> = FxMap::default();
        let new_shape = |shapes: &mut Vec<Shape>, name: String, is_resource: bool| {
            shapes.push(Shape {
                name: name.into_boxed_str(),
                is_resource,
                keys: FxMap::default(),
                elems: Vec::new(),
                required: Vec::new(),
                required_mask: 0,
            });
            (shapes.len() - 1) as u32
        };
        for (type_name, table) in types {
            let is_resource = resource_list.contains(&type_name.as_str());
            let idx = new_shape(&mut shapes, type_name.clone(), is_resource);
            shape_of.insert(type_name.clone(), idx);
            let table = table.as_object().expect("R4 definitions: element table");
            for path in table.keys() {
                if let Some(dot) = path.rfind('.') {
                    let parent = format!("{type_name}.{}", &path[..dot]);
                    if let std::collections::hash_map::Entry::Vacant(slot) = shape_of.entry(parent)
                    {
                        let idx = new_shape(&mut shapes, slot.key().clone(), false);
                        slot.insert(idx);
                    }
                }
            }
        }

        // Pass 2: the elements and keys of every shape.
        for (type_name, table) in types {
            let is_resource = resource_list.contains(&type_name.as_str());
            let table = table.as_object().expect("R4 definitions: element table");
            for (path, spec) in table {
                let spec = spec.as_array().expect("R4 definitions: element spec");
                let min = spec[0].as_u64().expect("R4 definitions: min") as u32;
                let many = spec[1].as_str().expect("R4 definitions: max") == "*";
                let types_str = spec[2].as_str().expect("R4 definitions: types");
                let summary = spec.get(3).and_then(Value::as_u64) == Some(1);
                let (owner, name) = match path.rfind('.') {
                    Some(dot) => (format!("{type_name}.{}", &path[..dot]), &path[dot + 1..]),
                    None => (type_name.clone(), path.as_str()),
                };
                let full = format!("{type_name}.{path}");
                let resolve = |code: &str| -> Ty {
                    if let Some(target) = code.strip_prefix('#') {
                        let target = format!("{type_name}.{target}");
                        return Ty::Complex(*shape_of.get(&target).unwrap_or_else(|| {
                            panic!("R4 definitions: {full}: no element {target} to reference")
                        }));
                    }
                    if let Some(&inline) = shape_of.get(&full) {
                        return Ty::Complex(inline);
                    }
                    if is_resource && path == "id" {
                        return Ty::Prim(Prim::ResourceId);
                    }
                    if let Some(p) = Prim::from_code(code) {
                        return Ty::Prim(p);
                    }
                    if code == "Resource" {
                        return Ty::Resource;
                    }
                    match shape_of.get(code) {
                        Some(&s) => Ty::Complex(s),
                        None => panic!("R4 definitions: {full}: unknown type {code}"),
                    }
                };
                let owner_idx = *shape_of.get(&owner).expect("R4 definitions: owner shape");
                let shape = &mut shapes[owner_idx as usize];
                let elem_idx = shape.elems.len();
                assert!(
                    elem_idx < MAX_ELEMS,
                    "R4 definitions: {owner} has more than {MAX_ELEMS} elements"
                );
                let elem_idx = elem_idx as u16;
                let mut add_key = |key: String, ty: Ty, companion: bool, pair: String| {
                    let old = shape.keys.insert(
                        key.clone().into_boxed_str(),
                        Key {
                            elem: elem_idx,
                            ty,
                            companion,
                            pair: pair.into_boxed_str(),
                        },
                    );
                    assert!(
                        old.is_none(),
                        "R4 definitions: duplicate key {key} on {owner}"
                    );
                };
                let mut variants = Vec::new();
                let choice = name.ends_with("[x]");
                if let Some(base) = name.strip_suffix("[x]") {
                    for code in types_str.split('|') {
                        let key = format!("{base}{}", capitalise(code));
                        let ty = resolve(code);
                        if matches!(ty, Ty::Prim(_)) {
                            add_key(key.clone(), ty, false, format!("_{key}"));
                            add_key(format!("_{key}"), ty, true, key.clone());
                        } else {
                            add_key(key.clone(), ty, false, String::new());
                        }
                        variants.push(key.into_boxed_str());
                    }
                } else {
                    assert!(
                        !types_str.contains('|'),
                        "R4 definitions: {full}: several types but not a choice"
                    );
                    let ty = resolve(types_str);
                    if matches!(ty, Ty::Prim(_)) {
                        add_key(name.to_string(), ty, false, format!("_{name}"));
                        add_key(format!("_{name}"), ty, true, name.to_string());
                    } else {
                        add_key(name.to_string(), ty, false, String::new());
                    }
                }
                if min >= 1 {
                    shape.required.push(elem_idx);
                    shape.required_mask |= 1u128 << elem_idx;
                }
                shape.elems.push(Elem {
                    name: name.into(),
                    min,
                    many,
                    choice,
                    variants,
                    summary,
                });
            }
        }

        let mut resources = FxMap::default();
        let mut resource_names: Vec<Box<str>> = Vec::new();
        for name in resource_list {
            let idx = *shape_of
                .get(name)
                .unwrap_or_else(|| panic!("R4 definitions: no element table for {name}"));
            resources.insert(name.into(), idx);
            resource_names.push(name.into());
        }
        resource_names.sort();
        let element_shape = *shape_of.get("Element").expect("R4 definitions: Element");
        Defs {
            fhir_version,
            shapes,
            resources,
            resource_names,
            element_shape,
        }
    }
}
