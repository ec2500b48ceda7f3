//! Blob names: a SHA-256 for content-addressed blobs, or a key the caller chose.

use std::fmt;
use std::str::FromStr;

use object_store::path::Path;

use super::BlobError;

/// The folder of content-addressed blobs: `sha256/<first two hex digits>/<hash>`.
pub(crate) const SHA256_DIR: &str = "sha256";
/// The folder of blobs stored by key: `keys/<key>`.
pub(crate) const KEYS_DIR: &str = "keys";
/// The prefix of a content-addressed id in its text form.
const SHA256_PREFIX: &str = "sha256:";
/// Keys longer than this are refused: object stores limit names to about 1 KiB, and the
/// store's own folder comes in front.
const MAX_KEY_BYTES: usize = 512;

/// The name of one blob: `sha256:<64 hex digits>` for a content-addressed blob, or a key
/// such as `exports/2024-05-01/patients.ndjson`. Its text form ([`fmt::Display`],
/// [`FromStr`]) tells the two apart, since keys may not contain `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(Name);

/// Private so that every [`BlobId`] holds a validated hash or key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Name {
    /// Lowercase hex.
    Sha256(String),
    Key(String),
}

impl BlobId {
    /// The id of the blob whose content has this SHA-256 (64 hex digits, any case).
    pub fn from_sha256(hex: &str) -> Result<BlobId, BlobError> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::BadKey {
                key: format!("{SHA256_PREFIX}{hex}"),
                reason: "a SHA-256 is 64 hex digits".into(),
            });
        }
        Ok(BlobId(Name::Sha256(hex.to_ascii_lowercase())))
    }

    /// The id of the blob stored under this key.
    pub fn from_key(key: &str) -> Result<BlobId, BlobError> {
        check_key(key, false).map_err(|reason| BlobError::BadKey {
            key: key.to_string(),
            reason,
        })?;
        Ok(BlobId(Name::Key(key.to_string())))
    }

    /// The SHA-256 (lowercase hex) of a content-addressed blob.
    pub fn sha256(&self) -> Option<&str> {
        match &self.0 {
            Name::Sha256(h) => Some(h),
            Name::Key(_) => None,
        }
    }

    /// The key of a blob stored by key.
    pub fn key(&self) -> Option<&str> {
        match &self.0 {
            Name::Sha256(_) => None,
            Name::Key(k) => Some(k),
        }
    }

    /// Where the blob lives in the blob store.
    pub(crate) fn path(&self) -> Path {
        // Hashes and checked keys hold only characters object_store takes as they are, so
        // the path is the text itself (no percent-encoding that would hide the name).
        match &self.0 {
            Name::Sha256(h) => Path::from(format!("{SHA256_DIR}/{}/{h}", &h[..2])),
            Name::Key(k) => Path::from(format!("{KEYS_DIR}/{k}")),
        }
    }

    /// The blob at this path of the blob store, if the path is one a blob can have.
    pub(crate) fn from_path(path: &Path) -> Option<BlobId> {
        let text = path.as_ref();
        let id = if let Some(rest) = text.strip_prefix(SHA256_DIR) {
            let (_, hash) = rest.rsplit_once('/')?;
            BlobId::from_sha256(hash).ok()?
        } else {
            BlobId::from_key(text.strip_prefix(KEYS_DIR)?.strip_prefix('/')?).ok()?
        };
        // Only the one path a blob is written at names it (no upper-case hash, no hash in
        // the wrong fan-out folder).
        (id.path() == *path).then_some(id)
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Name::Sha256(h) => write!(f, "{SHA256_PREFIX}{h}"),
            Name::Key(k) => f.write_str(k),
        }
    }
}

impl FromStr for BlobId {
    type Err = BlobError;

    /// `sha256:<hex>` is a content-addressed id; anything else must be a valid key.
    fn from_str(s: &str) -> Result<BlobId, BlobError> {
        match s.strip_prefix(SHA256_PREFIX) {
            Some(hex) => BlobId::from_sha256(hex),
            None => BlobId::from_key(s),
        }
    }
}

/// What [`crate::blob::BlobStore::list`] lists: the folder to walk and the text every
/// listed id starts with.
pub(crate) struct ListPrefix {
    pub folders: Vec<Path>,
    pub id_prefix: String,
}

impl ListPrefix {
    pub(crate) fn parse(prefix: &str) -> Result<ListPrefix, BlobError> {
        if prefix.is_empty() {
            return Ok(ListPrefix {
                folders: vec![Path::from(SHA256_DIR), Path::from(KEYS_DIR)],
                id_prefix: String::new(),
            });
        }
        if let Some(hex) = prefix.strip_prefix(SHA256_PREFIX) {
            if hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(BlobError::BadKey {
                    key: prefix.to_string(),
                    reason: "after sha256: a prefix has at most 64 hex digits".into(),
                });
            }
            let hex = hex.to_ascii_lowercase();
            // Only the fan-out folder of the hash's first two digits can hold matches.
            let folder = match hex.get(..2) {
                Some(fan_out) => Path::from(format!("{SHA256_DIR}/{fan_out}")),
                None => Path::from(SHA256_DIR),
            };
            return Ok(ListPrefix {
                folders: vec![folder],
                id_prefix: format!("{SHA256_PREFIX}{hex}"),
            });
        }
        check_key(prefix, true).map_err(|reason| BlobError::BadKey {
            key: prefix.to_string(),
            reason,
        })?;
        // Object stores list whole folders: walk the deepest folder the prefix names, and
        // keep the keys that start with the prefix.
        let folder = match prefix.rsplit_once('/') {
            Some((dir, _)) => format!("{KEYS_DIR}/{dir}"),
            None => KEYS_DIR.to_string(),
        };
        Ok(ListPrefix {
            folders: vec![Path::from(folder)],
            id_prefix: prefix.to_string(),
        })
    }
}

/// Why `key` is not a key (or, with `partial`, not the start of one).
fn check_key(key: &str, partial: bool) -> Result<(), String> {
    if key.is_empty() {
        return Err("it is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("it is longer than {MAX_KEY_BYTES} bytes"));
    }
    if let Some(c) = key.chars().find(|c| !allowed_in_key(*c)) {
        return Err(format!("the character {c:?} is not allowed"));
    }
    if key.starts_with('/') {
        return Err("it starts with '/'; keys are relative to the blob store".into());
    }
    let segments: Vec<&str> = key.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        // A prefix may end with '/' (all keys in a folder) or inside a name.
        let last = i + 1 == segments.len();
        if segment.is_empty() && !(partial && last) {
            return Err(if last {
                "it ends with '/'".into()
            } else {
                "it has an empty name between two '/'".into()
            });
        }
        if (*segment == "." || *segment == "..") && !(partial && last) {
            return Err(format!("'{segment}' is not allowed as a name"));
        }
    }
    Ok(())
}

/// Characters that mean the same on every object store and file system and need no
/// percent-encoding in object_store paths (which is also why `~` is out).
fn allowed_in_key(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '=' | '+' | '@' | ',')
}
