//! The data directory and every file the gateway keeps in it are private to its user, whatever
//! the umask: the real binary is started under `umask 022` (which alone would give `0755` and
//! `0644`), and the modes are read back from the filesystem.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;

use crate::helpers::GatewayChild;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every entry of `dir` with its mode, sorted by name.
fn modes_in(dir: &Path) -> Vec<(String, u32)> {
    let mut entries: Vec<(String, u32)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            let entry = entry.expect("entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                mode(&entry.path()),
            )
        })
        .collect();
    entries.sort();
    entries
}

/// Embedded mode with everything in the data directory: the generated secret key, the SQLite
/// store (with its WAL and shared memory) and the audit trail.
fn start(data_dir: &Path, args: &[&str]) -> GatewayChild {
    GatewayChild::spawn_in(data_dir.to_path_buf(), Some("022"), "info", args)
}

#[test]
fn a_new_data_dir_is_0700_and_every_file_in_it_0600_under_umask_022() {
    let root = tempfile::tempdir().expect("tempdir");
    let data_dir = root.path().join("state").join("shl");

    let gateway = start(&data_dir, &[]);
    let entries = modes_in(&data_dir);
    drop(gateway.into_lines());

    assert_eq!(mode(&data_dir), 0o700);
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "audit.jsonl",
        "secret-key",
        "shl-gateway.db",
        "shl-gateway.db-shm",
        "shl-gateway.db-wal",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {entries:?}");
    }
    for (name, mode) in &entries {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
    }
}

#[test]
fn wider_files_are_narrowed_at_start_and_a_shared_dir_is_reported_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let data_dir = root.path().join("data");
    // A first start fills the directory; then an operator (or a restore) opens it all up.
    drop(start(&data_dir, &[]).into_lines());
    for (name, _) in modes_in(&data_dir) {
        chmod(&data_dir.join(name), 0o644);
    }
    chmod(&data_dir, 0o755);
    let custom_audit_dir = root.path().join("audit");
    std::fs::create_dir(&custom_audit_dir).expect("mkdir");
    let custom_audit = custom_audit_dir.join("trail.jsonl");

    let gateway = start(
        &data_dir,
        &["--audit-log", custom_audit.to_str().expect("utf-8")],
    );
    let entries = modes_in(&data_dir);
    let custom_mode = mode(&custom_audit);
    let lines = gateway.into_lines();

    for (name, mode) in &entries {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
    }
    assert_eq!(custom_mode, 0o600, "a custom --audit-log is created 0600");
    assert_eq!(
        mode(&data_dir),
        0o755,
        "a shared directory is reported, not changed"
    );
    let warnings: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            event["level"] == "WARN"
                && event["message"]
                    .as_str()
                    .is_some_and(|message| message.starts_with("data directory is open"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    assert_eq!(warnings[0]["mode"], "0755");
    assert_eq!(
        warnings[0]["path"],
        data_dir.to_str().expect("utf-8"),
        "{}",
        warnings[0]
    );
    let narrowed = lines
        .iter()
        .filter(|line| line.contains("narrowed to 0600"))
        .count();
    assert!(narrowed >= 4, "each widened file is reported: {lines:#?}");
}
