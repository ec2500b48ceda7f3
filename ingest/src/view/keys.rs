//! `getResourceKey()` and `getReferenceKey([type])`, the functions SQL-on-FHIR adds to
//! FHIRPath; the module documentation of [`crate::view`] says why the key is the id.

use crate::fhirpath::{EvalError, ExternalFunctions, FunctionArg, Item, NodeType};
use crate::validate::Validator;

/// The SQL-on-FHIR key functions, keyed by resource id.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceKeys;

impl ExternalFunctions for ResourceKeys {
    fn provides(&self, name: &str) -> bool {
        matches!(name, "getResourceKey" | "getReferenceKey")
    }

    fn call<'a>(
        &self,
        name: &str,
        input: &[Item<'a>],
        args: &[FunctionArg<'a>],
    ) -> Result<Vec<Item<'a>>, EvalError> {
        match name {
            "getResourceKey" => {
                if !args.is_empty() {
                    return Err(error("getResourceKey() takes no arguments"));
                }
                Ok(input
                    .iter()
                    .filter_map(|i| match i {
                        Item::Node(n) if n.ty == NodeType::Resource => n.value?.get("id")?.as_str(),
                        _ => None,
                    })
                    .map(|id| Item::String(id.to_string()))
                    .collect())
            }
            "getReferenceKey" => {
                let wanted = match args {
                    [] => None,
                    [arg] => match &arg.type_name {
                        Some(t) if Validator::r4().is_resource_type(t) => Some(t.as_str()),
                        Some(t) => {
                            return Err(error(format!(
                                "getReferenceKey({t}): {t} is not a FHIR R4 resource type"
                            )));
                        }
                        None => {
                            return Err(error(
                                "getReferenceKey() takes a resource type name, as in getReferenceKey(Patient)",
                            ));
                        }
                    },
                    _ => return Err(error("getReferenceKey() takes at most one argument")),
                };
                Ok(input
                    .iter()
                    .filter_map(|i| match i {
                        Item::Node(n) => n.value?.get("reference")?.as_str(),
                        _ => None,
                    })
                    .filter_map(reference_key)
                    .filter(|(ty, _)| wanted.is_none_or(|w| w == *ty))
                    .map(|(_, id)| Item::String(id.to_string()))
                    .collect())
            }
            _ => Err(error(format!("unknown function {name}()"))),
        }
    }
}

fn error(message: impl Into<String>) -> EvalError {
    EvalError {
        message: message.into(),
    }
}

/// The type and id a literal reference points to: `Patient/123`,
/// `Patient/123/_history/2`, or an absolute URL ending so. Contained (`#x`) and
/// `urn:` references have none.
pub(super) fn reference_key(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let path = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut parts = path.rsplit('/');
    let id = parts.next().filter(|s| !s.is_empty())?;
    let ty = parts.next()?;
    Validator::r4().is_resource_type(ty).then_some((ty, id))
}

#[cfg(test)]
mod tests {
    use super::reference_key;

    #[test]
    fn reference_forms() {
        assert_eq!(reference_key("Patient/123"), Some(("Patient", "123")));
        assert_eq!(
            reference_key("Patient/123/_history/4"),
            Some(("Patient", "123"))
        );
        assert_eq!(
            reference_key("https://example.org/fhir/Observation/o-1"),
            Some(("Observation", "o-1"))
        );
        assert_eq!(reference_key("#contained"), None);
        assert_eq!(reference_key("urn:uuid:2f4c"), None);
        assert_eq!(reference_key("Patient/"), None);
        assert_eq!(reference_key("NotAType/1"), None);
        assert_eq!(reference_key("123"), None);
    }
}
