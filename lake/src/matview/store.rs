//! Where the definitions of the views users create are kept: one JSON file per view in
//! `<workspace>/views/_definitions/<name>.json`, on the lake's own storage, so that
//! every process that opens the lake (the server, the CLI, on any machine) finds and
//! maintains the same views. A view is a handful of bytes written once, hence plain
//! objects rather than a Delta table: a put is atomic on every object store.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use url::Url;

use crate::error::{LakeError, Result};

/// The folder, under the workspace, of the stored definitions.
pub const DEFINITIONS_DIR: &str = "views/_definitions/";

/// The stored definitions of one workspace.
pub struct DefinitionStore {
    url: Url,
    store: Arc<dyn ObjectStore>,
}

/// Whether `url` is a local folder that does not exist (yet): the local object store
/// refuses to open one.
pub(crate) fn missing_local_dir(url: &Url) -> bool {
    crate::storage::is_local(url) && url.to_file_path().map(|p| !p.exists()).unwrap_or(true)
}

impl DefinitionStore {
    /// The stored definitions, or `None` for a local workspace that has none (no folder
    /// is made for them, so a read-only process leaves the workspace as it was).
    pub fn existing(workspace_url: &Url) -> Result<Option<DefinitionStore>> {
        let url = workspace_url
            .join(DEFINITIONS_DIR)
            .map_err(|e| LakeError::BadDataUrl {
                url: workspace_url.to_string(),
                reason: e.to_string(),
            })?;
        if missing_local_dir(&url) {
            return Ok(None);
        }
        DefinitionStore::new(workspace_url).map(Some)
    }

    /// The stored definitions, making their folder if the workspace is local.
    pub fn new(workspace_url: &Url) -> Result<DefinitionStore> {
        let url = workspace_url
            .join(DEFINITIONS_DIR)
            .map_err(|e| LakeError::BadDataUrl {
                url: workspace_url.to_string(),
                reason: e.to_string(),
            })?;
        if missing_local_dir(&url)
            && let Ok(dir) = url.to_file_path()
        {
            std::fs::create_dir_all(&dir)
                .map_err(|e| LakeError::io(format!("creating {}", dir.display()), e))?;
        }
        let store = deltalake::logstore::store_for(&url, std::iter::empty::<(String, String)>())
            .map_err(|e| LakeError::delta(url.as_str(), e))?;
        Ok(DefinitionStore { url, store })
    }

    fn io(&self, e: object_store::Error) -> LakeError {
        LakeError::delta(self.url.as_str(), e.into())
    }

    /// Every stored definition, by file name order.
    pub async fn list(&self) -> Result<Vec<Value>> {
        let mut names: Vec<Path> = self
            .store
            .list(None)
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                e => Err(self.io(e)),
            })?;
        names.retain(|p| p.extension() == Some("json"));
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for p in names {
            let bytes = self
                .store
                .get(&p)
                .await
                .map_err(|e| self.io(e))?
                .bytes()
                .await
                .map_err(|e| self.io(e))?;
            let json = serde_json::from_slice(&bytes).map_err(|e| LakeError::View {
                view: p.to_string(),
                reason: format!(
                    "the stored definition is not JSON ({e}); fix or delete {}{p}",
                    self.url
                ),
            })?;
            out.push(json);
        }
        Ok(out)
    }

    pub async fn put(&self, name: &str, json: &Value) -> Result<()> {
        let text =
            serde_json::to_vec_pretty(json).map_err(|e| LakeError::Internal(e.to_string()))?;
        self.store
            .put(&Path::from(format!("{name}.json")), text.into())
            .await
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    pub async fn remove(&self, name: &str) -> Result<()> {
        match self.store.delete(&Path::from(format!("{name}.json"))).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }
}
