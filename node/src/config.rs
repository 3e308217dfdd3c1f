//! Node configuration: for now, where the node keeps its data.

use std::path::{Path, PathBuf};

/// Errors finding the data directory.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No home directory to put the default data dir in.
    #[error("cannot find a home directory for the default data dir; pass --data-dir")]
    NoHome,
}

/// The folder a node keeps everything in: the module cache now, the block
/// store and its identity key later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `path` if given, else the platform default (`~/.local/share/phase-node`
    /// on Linux).
    ///
    /// # Errors
    /// [`ConfigError::NoHome`] when no path is given and there is no home.
    pub fn resolve(path: Option<&Path>) -> Result<Self, ConfigError> {
        let root = match path {
            Some(p) => p.to_path_buf(),
            None => directories::ProjectDirs::from("org", "phase", "phase-node")
                .ok_or(ConfigError::NoHome)?
                .data_dir()
                .to_path_buf(),
        };
        Ok(Self { root })
    }

    /// The data directory itself.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the block store lives.
    #[must_use]
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Where compiled modules are cached.
    #[must_use]
    pub fn module_cache(&self) -> PathBuf {
        self.root.join("module-cache")
    }
}
