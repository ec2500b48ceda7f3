//! Where the lake lives: a local folder or an object store URL.
//!
//! medlake takes one data URL (`--data` or `MEDLAKE_DATA`) and keeps every table under
//! `<data>/<workspace>/`. Local paths become `file://` URLs. For `s3://`, `az://`,
//! `abfss://` and `gs://` the stores are built by `object_store` from the usual
//! environment variables (`AWS_*`, `AZURE_*`, `GOOGLE_*`), and registered with deltalake
//! so that its table builder, its DataFusion scans and our own code all share them.
//!
//! We register the cloud schemes ourselves rather than enable deltalake's `s3`, `azure`
//! and `gcs` features: those pull in the AWS SDK (for DynamoDB locking) and add minutes
//! to a 2-core build, while object_store 0.13 already does conditional PUTs, which is all
//! the default log store needs for safe commits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Once};

use deltalake::DeltaResult;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as StorePath;
use url::Url;

use crate::error::LakeError;

/// URL schemes served by the cloud object stores.
const CLOUD_SCHEMES: &[&str] = &["s3", "s3a", "az", "abfs", "abfss", "azure", "gs"];

/// Turn what the user typed (`./medlake-data`, `/srv/lake`, `file:///srv/lake`,
/// `s3://bucket/prefix`, ...) into the URL of the lake's root, creating a local folder if
/// needed. The URL always ends with `/` so that joins append rather than replace.
pub fn resolve_data_url(data: &str) -> Result<Url, LakeError> {
    register_cloud_stores();
    let mut url = if let Some((scheme, _)) = data.split_once("://") {
        let url = Url::parse(data).map_err(|e| LakeError::BadDataUrl {
            url: data.to_string(),
            reason: e.to_string(),
        })?;
        if scheme != "file" && !CLOUD_SCHEMES.contains(&scheme) {
            return Err(LakeError::BadDataUrl {
                url: data.to_string(),
                reason: format!(
                    "scheme '{scheme}' is not supported; use a local path, file://, s3://, az://, abfss:// or gs://"
                ),
            });
        }
        if scheme == "file" {
            let path = url.to_file_path().map_err(|_| LakeError::BadDataUrl {
                url: data.to_string(),
                reason: "not a local file path".into(),
            })?;
            local_url(&path, data)?
        } else {
            url
        }
    } else {
        local_url(Path::new(data), data)?
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn local_url(path: &Path, original: &str) -> Result<Url, LakeError> {
    std::fs::create_dir_all(path).map_err(|source| LakeError::Io {
        context: format!("could not create the data folder {}", path.display()),
        source,
    })?;
    let abs = std::fs::canonicalize(path).map_err(|source| LakeError::Io {
        context: format!("could not resolve the data folder {}", path.display()),
        source,
    })?;
    Url::from_directory_path(&abs).map_err(|_| LakeError::BadDataUrl {
        url: original.to_string(),
        reason: "not an absolute local path".into(),
    })
}

/// Register object store and log store factories for the cloud schemes, once per process.
pub fn register_cloud_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let stores = object_store_factories();
        let logs = logstore_factories();
        for scheme in CLOUD_SCHEMES {
            let Ok(url) = Url::parse(&format!("{scheme}://")) else {
                continue;
            };
            stores.insert(url.clone(), Arc::new(CloudStoreFactory));
            logs.insert(url, Arc::new(PlainLogStoreFactory));
        }
    });
}

/// Builds S3, Azure and GCS stores from the environment plus any explicit options.
struct CloudStoreFactory;

impl ObjectStoreFactory for CloudStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        let options: &HashMap<String, String> = &config.raw;
        let store: ObjectStoreRef = match url.scheme() {
            "s3" | "s3a" => {
                let mut b = AmazonS3Builder::from_env().with_url(url.as_str());
                for (k, v) in options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, v);
                    }
                }
                Arc::new(b.build()?)
            }
            "az" | "abfs" | "abfss" | "azure" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (k, v) in options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, v);
                    }
                }
                Arc::new(b.build()?)
            }
            "gs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
                for (k, v) in options {
                    if let Ok(key) = k.to_ascii_lowercase().parse() {
                        b = b.with_config(key, v);
                    }
                }
                Arc::new(b.build()?)
            }
            other => {
                return Err(deltalake::DeltaTableError::InvalidTableLocation(format!(
                    "unsupported scheme {other}"
                )));
            }
        };
        let path = StorePath::from_url_path(url.path())?;
        Ok((store, path))
    }
}

/// Delta's default log store: commits by conditional PUT, which all three clouds support.
struct PlainLogStoreFactory;

impl LogStoreFactory for PlainLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Is this URL on the local file system?
pub fn is_local(url: &Url) -> bool {
    url.scheme() == "file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls_with_a_trailing_slash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lake");
        let url = resolve_data_url(p.to_str().unwrap()).unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/lake/"));
        assert!(p.is_dir());
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_supported_list() {
        let err = resolve_data_url("ftp://example/lake")
            .unwrap_err()
            .to_string();
        assert!(err.contains("s3://"), "{err}");
    }

    #[test]
    fn cloud_urls_are_kept() {
        let url = resolve_data_url("s3://bucket/prefix").unwrap();
        assert_eq!(url.as_str(), "s3://bucket/prefix/");
    }
}
