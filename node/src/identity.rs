//! The node's identity: an ed25519 key pair kept in the data dir.
//!
//! The key is created on first use and stored as `<data-dir>/identity.key`
//! (libp2p's protobuf encoding, file mode 0600). It is the node's PeerId and
//! the key that signs its receipts, so it is never replaced silently: a key
//! file that cannot be read or decoded is an error, not a reason to make a
//! new one.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// File name of the key inside the data dir.
pub const KEY_FILE: &str = "identity.key";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but cannot be read.
    #[error("cannot read the identity key {path}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold an ed25519 key.
    #[error(
        "identity key {path} is malformed or not ed25519; move it away to create a new identity"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is readable by others.
    #[error(
        "identity key {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A new key could not be written.
    #[error("cannot write a new identity key to {path}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Loads the key from `data_dir`, creating it on first use.
///
/// # Errors
/// See [`IdentityError`]: never a silent new key over an unreadable one.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    match load(data_dir)? {
        Some(key) => Ok(key),
        None => create(&data_dir.join(KEY_FILE)),
    }
}

/// Loads the key from `data_dir`, or `None` when no node has made one
/// there: for commands that read and must not write.
///
/// # Errors
/// See [`IdentityError`].
pub fn load(data_dir: &Path) -> Result<Option<Keypair>, IdentityError> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(&path)
                .map_err(|source| IdentityError::Read {
                    path: path.clone(),
                    source,
                })?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Permissions { path, mode });
            }
            match Keypair::from_protobuf_encoding(&bytes) {
                Ok(key) if key.key_type() == libp2p::identity::KeyType::Ed25519 => Ok(Some(key)),
                _ => Err(IdentityError::Malformed { path }),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(IdentityError::Read { path, source }),
    }
}

fn create(path: &Path) -> Result<Keypair, IdentityError> {
    create_with(path, |file, bytes| file.write_all(bytes))
}

/// Writes a new key to a temp file beside `path` with `write`, fsyncs it
/// and links it into place: a failed write (a full disk) leaves no key
/// file, never a torn one that would block every later start.
fn create_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
) -> Result<Keypair, IdentityError> {
    let failed = |source| IdentityError::Write {
        path: path.to_owned(),
        source,
    };
    let key = Keypair::generate_ed25519();
    let bytes = key
        .to_protobuf_encoding()
        .expect("an ed25519 key always encodes");
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(failed)?;
    // Made with mode 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
    write(tmp.as_file_mut(), &bytes).map_err(failed)?;
    tmp.as_file().sync_all().map_err(failed)?;
    // No clobbering: two nodes starting at once on one data dir cannot both
    // win.
    tmp.persist_noclobber(path).map_err(|e| failed(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none(), "reading makes no key");
        assert!(!dir.path().join(KEY_FILE).exists());
        let first = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_failed_write_leaves_no_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let full = |file: &mut std::fs::File, bytes: &[u8]| {
            file.write_all(&bytes[..bytes.len() / 2])?;
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        };
        assert!(matches!(
            create_with(&path, full),
            Err(IdentityError::Write { .. })
        ));
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temp file left"
        );
        // The next start makes a good one.
        let key = load_or_create(dir.path()).unwrap();
        assert_eq!(
            load_or_create(dir.path()).unwrap().public().to_peer_id(),
            key.public().to_peer_id()
        );
    }

    #[test]
    fn a_bad_key_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, b"garbage").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"garbage");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(IdentityError::Permissions { .. })
        ));
    }
}
