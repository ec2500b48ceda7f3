//! FHIR search: from a query string to a page of resources.
//!
//! [`Search::parse`] reads the parameters of a search against the R4 SearchParameter
//! definitions ([`medlake_ingest::search`]); [`run`] answers it from the lake's
//! resident [`medlake_lake::search_index::SearchIndex`] and reads the page's resources
//! by id.
//!
//! # How a search runs
//! - Every condition is a set of slots (one slot per current resource). Token,
//!   reference, string and uri conditions are bitmap lookups in the index's postings,
//!   so a selective search costs what it finds. Conditions ANDed intersect; the values
//!   of one condition (commas) are ORed.
//! - Date, number and quantity conditions compare values (with the prefixes and the
//!   precision rules of the specification) on the slots left after the postings.
//! - Chains (`subject:Patient.name=x`) search the target type first and turn its matches
//!   into reference keys; `_has` does the reverse through the source's reference keys.
//! - Composite conditions narrow by their token components and are checked on the
//!   resources themselves, where the components of one element stay together.
//! - The matches are sorted by the `_sort` keys, then by type and slot, and a page is
//!   cut by a cursor holding the sort values of its edge, so `next` and `prev` links
//!   stay stable while resources are written.

mod compare;
mod execute;
mod parse;

pub use execute::{MAX_INCLUDED, SearchPage, matching_ids, run};
pub use parse::{DEFAULT_COUNT, Filter, Include, MAX_COUNT, Modifier, Search, SortKey, Total};

/// Why a search cannot run. All are the client's to fix, except [`SearchError::Lake`].
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Invalid(String),
    /// A parameter the type does not have (an error only under `Prefer: handling=strict`).
    #[error("unknown search parameter {0}")]
    UnknownParameter(String),
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error(transparent)]
    Lake(#[from] medlake_lake::LakeError),
}

#[cfg(test)]
mod tests;
