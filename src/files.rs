//! The data directory and the files in it are private to the gateway's user.
//!
//! The data directory holds the secret key, the SQLite store (patients' records, link metadata)
//! and the audit trail (who opened which link, from where). Whatever the umask, the directory is
//! created `0700` and each file `0600`; a file found with wider permissions is narrowed at start,
//! and a directory that others may read or write is reported (once, at start): it may be shared
//! on purpose (a volume mounted by the platform), so it is not changed behind the operator's back.
//!
//! SQLite creates its database file `0644` unless told otherwise (it sets the mode itself, past
//! the umask), and creates `-wal` and `-shm` with the database file's mode. So the store's file is
//! created here, empty and `0600`, before SQLite opens it; its journals then follow.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Names the gateway keeps in the data directory by default.
pub(crate) const SECRET_KEY_FILE: &str = "secret-key";
pub(crate) const STORE_FILE: &str = "shl-gateway.db";
pub(crate) const AUDIT_FILE: &str = "audit.jsonl";

/// Bits that let anyone but the owner in.
const OTHERS: u32 = 0o077;

/// Creates `dir` (and missing parents) `0700`, or leaves an existing one as it is.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

/// At start: creates the data directory `0700` if missing, warns once if it exists and group
/// or others may use it, and narrows the gateway's own files in it to `0600`.
pub(crate) fn secure_data_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(metadata) => warn_if_shared(dir, &metadata),
        Err(error) if error.kind() == io::ErrorKind::NotFound => create_private_dir(dir)?,
        Err(error) => return Err(error),
    }
    for name in [SECRET_KEY_FILE, AUDIT_FILE] {
        tighten(&dir.join(name))?;
    }
    tighten_sqlite(&dir.join(STORE_FILE))
}

/// Narrows a SQLite database file and its journals to `0600` if they exist.
pub(crate) fn tighten_sqlite(database: &Path) -> io::Result<()> {
    tighten(database)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        tighten(&with_suffix(database, suffix))?;
    }
    Ok(())
}

/// Creates `path` empty and `0600` unless it exists, so that a program that would create it
/// with wider permissions (SQLite) finds it already there.
pub(crate) fn create_private_file(path: &Path) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Narrows an existing file to `0600` (logged); a missing one is fine.
pub(crate) fn tighten(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = match fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        // A symlink's own mode means nothing, and following it could chmod a file elsewhere.
        if !metadata.is_file() {
            return Ok(());
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & OTHERS != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:04o}"),
                "file readable or writable by others; narrowed to 0600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn warn_if_shared(dir: &Path, metadata: &fs::Metadata) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & OTHERS != 0 {
            tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:04o}"),
                "data directory is open to group or others; it holds the secret key, the store \
                 and the audit trail: chmod 700 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, metadata);
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_dir_is_private_and_existing_files_are_narrowed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("data");
        secure_data_dir(&dir).expect("created");
        assert_eq!(mode(&dir), 0o700);

        for name in [
            SECRET_KEY_FILE,
            AUDIT_FILE,
            STORE_FILE,
            "shl-gateway.db-wal",
        ] {
            let path = dir.join(name);
            fs::write(&path, b"x").expect("write");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let unrelated = dir.join("operator-notes.txt");
        fs::write(&unrelated, b"x").expect("write");
        fs::set_permissions(&unrelated, fs::Permissions::from_mode(0o644)).expect("chmod");

        secure_data_dir(&dir).expect("secured");
        for name in [
            SECRET_KEY_FILE,
            AUDIT_FILE,
            STORE_FILE,
            "shl-gateway.db-wal",
        ] {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        assert_eq!(
            mode(&unrelated),
            0o644,
            "files not the gateway's are left alone"
        );
    }

    #[test]
    fn a_private_file_is_created_0600_and_an_existing_one_is_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("store.db");
        create_private_file(&path).expect("created");
        assert_eq!(mode(&path), 0o600);
        fs::write(&path, b"contents").expect("write");
        create_private_file(&path).expect("exists");
        assert_eq!(fs::read(&path).expect("read"), b"contents", "not truncated");
    }
}
