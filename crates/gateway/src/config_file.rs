//! Reading the configuration file from disk (the IO half of config loading).

use std::path::{Path, PathBuf};

use routemesh_common::config::{self, Config, ConfigErrors};

/// Why a configuration file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {errors}")]
    Invalid { path: PathBuf, errors: ConfigErrors },
}

/// Reads and validates a config file; relative paths inside it are resolved
/// against the file's folder.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    config::parse(&text, base).map_err(|errors| LoadError::Invalid {
        path: path.to_owned(),
        errors,
    })
}
