//! Read-only access to the R4 element tables for other consumers of the type model (the
//! FHIRPath engine needs to know which JSON key holds which FHIR type). Validation does
//! not use this.

use super::Validator;
use super::defs::Ty;

/// One object shape of the R4 model: a resource, data type or backbone element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShapeId(u32);

/// The type of the value of one JSON key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A FHIR primitive, by its type code (`string`, `date`, `positiveInt`).
    Primitive(&'static str),
    /// An object of a data type or backbone element.
    Complex(ShapeId),
    /// A nested resource, typed by its own `resourceType`.
    Resource,
}

/// One JSON key allowed on an object of some shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'d> {
    pub ty: FieldType,
    /// The element name as defined (`value[x]`, `status`).
    pub element: &'d str,
    /// The key is one typed variant of a choice element (`valueQuantity`).
    pub choice: bool,
    /// The key is the `_x` companion of a primitive.
    pub companion: bool,
    /// The element repeats (max `*`).
    pub many: bool,
    /// The element is required (min 1 or more).
    pub required: bool,
    /// The element is part of the summary view (`isSummary`, for `_summary=true`).
    pub summary: bool,
}

impl Validator {
    /// The shape of a concrete resource type, or of a data type (`Quantity`, `HumanName`).
    pub fn shape_of_type(&self, name: &str) -> Option<ShapeId> {
        if let Some(&idx) = self.defs.resources.get(name) {
            return Some(ShapeId(idx));
        }
        self.defs
            .shapes
            .iter()
            .position(|s| &*s.name == name)
            .map(|i| ShapeId(i as u32))
    }

    /// The name of a shape: `Patient`, `HumanName`, or `Patient.contact` for a backbone
    /// element.
    pub fn shape_name(&self, shape: ShapeId) -> &str {
        self.defs
            .shapes
            .get(shape.0 as usize)
            .map_or("", |s| &*s.name)
    }

    /// The shape of `_x` companions of primitives (`Element`).
    pub fn element_shape(&self) -> ShapeId {
        ShapeId(self.defs.element_shape)
    }

    /// Does the shape define the element `name` (plain, or a choice `name[x]`)?
    pub fn has_element(&self, shape: ShapeId, name: &str) -> bool {
        self.defs.shapes.get(shape.0 as usize).is_some_and(|s| {
            s.elems
                .iter()
                .any(|e| &*e.name == name || e.name.strip_suffix("[x]") == Some(name))
        })
    }

    /// The JSON keys allowed on an object of shape `shape` (`valueQuantity`, `_status`), in
    /// no particular order.
    pub fn keys(&self, shape: ShapeId) -> impl Iterator<Item = &str> {
        self.defs
            .shapes
            .get(shape.0 as usize)
            .into_iter()
            .flat_map(|s| s.keys.keys().map(|k| &**k))
    }

    /// The definition of the JSON key `key` on an object of shape `shape`.
    pub fn field(&self, shape: ShapeId, key: &str) -> Option<Field<'_>> {
        let s = self.defs.shapes.get(shape.0 as usize)?;
        let k = s.keys.get(key)?;
        let elem = s.elems.get(k.elem as usize)?;
        let ty = match k.ty {
            Ty::Prim(p) => FieldType::Primitive(p.name()),
            Ty::Complex(c) => FieldType::Complex(ShapeId(c)),
            Ty::Resource => FieldType::Resource,
        };
        Some(Field {
            ty,
            element: &elem.name,
            choice: elem.choice,
            companion: k.companion,
            many: elem.many,
            required: elem.min > 0,
            summary: elem.summary,
        })
    }
}
