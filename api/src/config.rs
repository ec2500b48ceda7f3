//! Settings: flags first, then `MEDLAKE_*` variables, then a TOML file.
//!
//! clap resolves flags and variables. What neither gives comes from the TOML file named
//! by `--config` / `MEDLAKE_CONFIG`, or `./medlake.toml` if it exists, and then from the
//! defaults below. The file uses the flags' names:
//!
//! ```toml
//! data = "s3://bucket/lake"
//! workspace = "default"
//! listen = "0.0.0.0:8080"
//! flight_listen = "0.0.0.0:50051"   # or "off"
//! pg_listen = "0.0.0.0:5433"      # or "off"
//! wal_dir = "/var/lib/medlake/wal"
//! flush_interval_secs = 5
//! compact_interval_secs = 60
//! refresh_interval_secs = 30
//! max_tail_rows = 2000000
//! max_wal_mib = 4096
//! sql_engine = "ballista://scheduler-host:50050"   # or "local"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

pub const DEFAULT_DATA: &str = "./medlake-data";
pub const DEFAULT_WORKSPACE: &str = "default";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_FLIGHT_LISTEN: &str = "127.0.0.1:50051";

/// What a TOML file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data: Option<String>,
    pub workspace: Option<String>,
    pub listen: Option<String>,
    pub flight_listen: Option<String>,
    pub pg_listen: Option<String>,
    pub wal_dir: Option<PathBuf>,
    pub flush_interval_secs: Option<u64>,
    pub compact_interval_secs: Option<u64>,
    pub refresh_interval_secs: Option<u64>,
    pub max_tail_rows: Option<usize>,
    pub max_wal_mib: Option<u64>,
    pub sql_engine: Option<String>,
}

impl FileConfig {
    /// Load the file named by `explicit`, or `./medlake.toml` if present, or nothing.
    pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from("medlake.toml");
                if !p.exists() {
                    return Ok(FileConfig::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid medlake config; keys are data, workspace, listen, flight_listen, pg_listen, wal_dir, flush_interval_secs, compact_interval_secs, refresh_interval_secs, max_tail_rows, max_wal_mib, sql_engine",
                path.display()
            )
        })
    }
}

/// An address for a listener that may be turned off: `None` for `off`.
pub fn optional_addr(value: &str, flag: &str) -> Result<Option<std::net::SocketAddr>> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).with_context(|| {
        format!("{flag} {value} is not an address like 127.0.0.1:50051, nor `off`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_an_address_or_off() {
        assert_eq!(optional_addr("off", "--flight-listen").unwrap(), None);
        assert_eq!(optional_addr("OFF", "--flight-listen").unwrap(), None);
        assert_eq!(
            optional_addr("127.0.0.1:50051", "--flight-listen").unwrap(),
            Some("127.0.0.1:50051".parse().unwrap())
        );
        let e = optional_addr("localhost", "--flight-listen").unwrap_err();
        assert!(e.to_string().contains("--flight-listen localhost"), "{e}");
    }
}
