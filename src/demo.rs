//! Demo mode's development token: made once, kept in the data directory, shown to the playground
//! only where nobody but this machine's user can read it.
//!
//! A newcomer's first hour restarts the gateway many times. A token made anew at each start
//! broke every open GraphiQL tab, curl script and app under test at each restart, so the token
//! is kept in `<data-dir>/dev-token` (`0600`, like the secret key beside it) and read back on the
//! next start in demo mode. Deleting the file and restarting makes a new one. Only demo mode
//! reads or writes it: a start without demo mode leaves the file alone, and the store's demo
//! tokens are cleared at such a start (`startup`), so the old token stops working there.

use std::fs;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use secrecy::SecretString;

/// The token's file in the data directory.
pub(crate) const TOKEN_FILE: &str = "dev-token";

/// What every generated token starts with, so a person reading a header knows what it is.
const PREFIX: &str = "dev-";

/// 32 random bytes in base64url without padding.
const ENCODED_LEN: usize = 43;

/// The development token (without `Bearer `): the one kept in `data_dir`, or a new one written
/// there. A file that does not hold a token of the generated form (cut short by a crash, or
/// edited) is replaced, with a warning that names the file but never its content.
pub(crate) fn load_or_create_token(data_dir: &Path) -> anyhow::Result<SecretString> {
    let path = data_dir.join(TOKEN_FILE);
    match fs::read_to_string(&path) {
        Ok(content) => {
            let token = content.trim_end_matches(['\n', '\r']);
            if is_generated_form(token) {
                // An operator's copy or an old umask may have widened it.
                crate::files::tighten(&path)
                    .with_context(|| format!("cannot narrow {} to 0600", path.display()))?;
                return Ok(SecretString::from(token.to_owned()));
            }
            tracing::warn!(
                path = %path.display(),
                "demo mode: the development token file does not hold a token; replacing it"
            );
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "demo mode: cannot read the development token from {}",
                    path.display()
                )
            });
        }
    }
    let token = new_token()?;
    crate::files::create_private_dir(data_dir).with_context(|| {
        format!(
            "--data-dir (SHL_GATEWAY_DATA_DIR): cannot create {}",
            data_dir.display()
        )
    })?;
    write_atomically(&path, token.as_bytes()).with_context(|| {
        format!(
            "demo mode: cannot write the development token to {}",
            path.display()
        )
    })?;
    Ok(SecretString::from(token))
}

/// Whether GraphiQL may fill its Headers tab with the development token.
///
/// The token is handed to any browser that loads the playground, so only where the only
/// browsers that can load it are this machine's: a loopback listener. Demo mode's `auto` rule
/// requires one, but `--demo on` forces demo mode on any listener. Configured `--patient-token`s
/// mark a real deployment (the tests force demo mode beside them), where the playground never
/// offers a credential.
pub(crate) fn playground_may_show_token(configured_tokens: usize, listener: SocketAddr) -> bool {
    configured_tokens == 0 && listener.ip().is_loopback()
}

fn is_generated_form(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|encoded| {
        encoded.len() == ENCODED_LEN
            && encoded
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    })
}

fn new_token() -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    ))
}

/// Writes a `0600` file next to `path`, then renames it over `path`: a crash leaves the old
/// file or the whole new one, never a token cut short, and the file is never readable by others,
/// not even for a moment.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path)?;
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(contents)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// `dev-token.<random>.tmp` beside `path`: unique, so two gateways starting on one data
/// directory never write into the same temporary file.
fn temporary_path(path: &Path) -> io::Result<PathBuf> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw)
        .map_err(|_| io::Error::other("the OS random number generator failed"))?;
    let suffix: String = raw.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{suffix}.tmp"));
    Ok(PathBuf::from(name))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn a_token_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_token(dir.path()).expect("created");
        let second = load_or_create_token(dir.path()).expect("read back");

        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(is_generated_form(first.expose_secret()));
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, [TOKEN_FILE], "no temporary file is left behind");
    }

    #[test]
    fn the_data_directory_is_created_when_missing() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("fresh").join("data");
        load_or_create_token(&dir).expect("created");
        assert!(dir.join(TOKEN_FILE).is_file());
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_a_widened_one_is_narrowed() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKEN_FILE);

        load_or_create_token(dir.path()).expect("created");
        assert_eq!(mode(&path), 0o600);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        load_or_create_token(dir.path()).expect("read back");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_file_without_a_token_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKEN_FILE);
        for damaged in ["", "dev-", "dev-short", "not a token at all\n"] {
            fs::write(&path, damaged).expect("write");
            let token = load_or_create_token(dir.path()).expect("replaced");
            assert!(is_generated_form(token.expose_secret()), "{damaged:?}");
            assert_eq!(
                fs::read_to_string(&path).expect("read"),
                format!("{}\n", token.expose_secret())
            );
        }
    }

    #[test]
    fn the_playground_gets_the_token_only_on_loopback_without_configured_tokens() {
        let loopback = "127.0.0.1:8080".parse().expect("address");
        let loopback_v6 = "[::1]:8080".parse().expect("address");
        let public = "0.0.0.0:8080".parse().expect("address");

        assert!(playground_may_show_token(0, loopback));
        assert!(playground_may_show_token(0, loopback_v6));
        assert!(!playground_may_show_token(0, public), "--demo on, public");
        assert!(!playground_may_show_token(1, loopback), "tokens configured");
    }
}
