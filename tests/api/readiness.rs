//! `/readyz` tells the truth about the dependencies requests need, and recovers by itself.
//!
//! A full disk is a real one: a small tmpfs mounted as the data directory and filled. Mounting
//! needs root, so that test is `#[ignore]`d with its reason: a plain `cargo test` reports it as
//! ignored, and the full run (`cargo test -- --include-ignored`, as CI runs it as root) must
//! mount or fail.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::SecretString;
use shl_gateway::config::{AuditConfig, Config, KeyConfig};

use crate::helpers::*;

/// A tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    mount_point: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes at `mount_point`, or says why it cannot.
    fn mount(mount_point: &Path, size: &str) -> Result<Self, String> {
        let output = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(mount_point)
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            let reason = String::from_utf8_lossy(&output.stderr);
            return Err(reason.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        Ok(Self {
            mount_point: mount_point.to_owned(),
        })
    }

    /// The mount; a test that asked for one fails when it cannot have it.
    fn mount_or_fail(mount_point: &Path, size: &str) -> Self {
        Self::mount(mount_point, size)
            .unwrap_or_else(|reason| panic!("cannot mount a tmpfs (needs root): {reason}"))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the gateway may still hold its files open while the test unwinds.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}

async fn readyz(app: &TestApp) -> StatusCode {
    tokio::time::timeout(
        Duration::from_secs(5),
        app.http.get(format!("{}/readyz", app.address)).send(),
    )
    .await
    .expect("/readyz answers within its bound")
    .expect("/readyz answers")
    .status()
}

/// Polls `/readyz` until it answers `expected` (probe results are reused for a second).
async fn wait_for_readyz(app: &TestApp, expected: StatusCode, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = readyz(app).await;
        if status == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fills the filesystem holding `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        if let Err(error) = file.write_all(&chunk) {
            assert_eq!(error.raw_os_error(), Some(28), "ENOSPC expected: {error}");
            break;
        }
    }
    // Whatever partial page is left, byte by byte.
    while file.write_all(&[0xA5]).is_ok() {}
    filler
}

#[tokio::test]
#[ignore = "mounts a tmpfs, which needs root: run with `cargo test -- --include-ignored` (CI does)"]
async fn a_full_disk_fails_creation_and_readiness_and_both_recover_once_space_is_freed() {
    let root = tempfile::tempdir().expect("tempdir");
    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir).expect("mkdir");
    let _tmpfs = Tmpfs::mount_or_fail(&data_dir, "1m");
    let dir = data_dir.clone();
    let app = spawn_app_with(move |config| Config {
        key: KeyConfig {
            data_dir: dir,
            ..config.key
        },
        ..config
    })
    .await;
    app.upstream_answers_seed().await;
    let (_, body) = app.create_seed_link().await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(readyz(&app).await, StatusCode::OK);

    let filler = fill(&data_dir);
    // The audit file's last page may still hold a record or two; then the disk is full for it.
    let mut refused = false;
    for _ in 0..50 {
        let (_, body) = app.create_seed_link().await;
        if body.get("errors").is_some() {
            assert_eq!(error_code(&body), "AUDIT_UNAVAILABLE", "{body}");
            refused = true;
            break;
        }
    }
    assert!(refused, "creation kept succeeding on a full disk");
    wait_for_readyz(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(3),
    )
    .await;
    // No traffic reaches an unready gateway: readiness must not wait for a request to recover.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(readyz(&app).await, StatusCode::SERVICE_UNAVAILABLE);

    std::fs::remove_file(&filler).expect("free the space");
    wait_for_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;
    let (_, body) = app.create_seed_link().await;
    assert_eq!(
        body["data"]["createHealthLink"]["id"],
        seed_answer()["id"],
        "{body}"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(leftovers, ["audit.jsonl"], "no probe file left behind");

    // The failed batches were cut back: the trail is one valid chain.
    let audit_path = app.audit_path.clone();
    app.stop().await;
    let secret = KeyConfig {
        secret_key: Some(SecretString::from(
            "test-secret-key-test-secret-key-0123456789",
        )),
        ..Config::default().key
    }
    .load_existing()
    .expect("key");
    let keys = shl_gateway::crypto::Keys::derive(&secret);
    let report = shl_gateway::audit::verify_file(&audit_path, keys.audit_chain.as_bytes());
    assert!(report.is_ok(), "{report}");
}

/// Overwrites everything after the first page of a SQLite file (the tables' pages; the header
/// stays, so the file still opens) and returns the original bytes.
fn damage_tables(database: &Path) -> Vec<u8> {
    let original = std::fs::read(database).expect("read the store");
    let page_size = match u16::from_be_bytes([original[16], original[17]]) {
        1 => 65_536,
        size => usize::from(size),
    };
    assert!(
        original.len() > page_size,
        "the store has pages past the first"
    );
    let mut damaged = original.clone();
    for byte in &mut damaged[page_size..] {
        *byte = 0xA5;
    }
    std::fs::write(database, &damaged).expect("damage");
    original
}

#[tokio::test]
async fn a_damaged_store_fails_readiness_until_it_is_restored() {
    let app = spawn_embedded(&TestDatabase::Sqlite, |config| config).await;
    let database = app.audit_path.with_file_name("test.db");
    assert_eq!(readyz(&app).await, StatusCode::OK);

    // Everything into the main file first (the WAL emptied), so that the damage is what any
    // reader of the file sees.
    {
        use sqlx::{ConnectOptions as _, Connection as _};
        let options: sqlx::sqlite::SqliteConnectOptions =
            format!("sqlite://{}", database.display())
                .parse()
                .expect("options");
        let mut connection = options.connect().await.expect("connect");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut connection)
            .await
            .expect("checkpoint");
        connection.close().await.expect("close");
    }
    let original = damage_tables(&database);

    wait_for_readyz(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(3),
    )
    .await;

    std::fs::write(&database, &original).expect("restore");
    wait_for_readyz(&app, StatusCode::OK, Duration::from_secs(5)).await;
    app.stop().await;
}

/// A TCP relay on 127.0.0.1 in front of PostgreSQL that a test can cut (every connection reset,
/// new ones refused) and restore: a lost database connection without touching the server
/// other tests use.
struct CuttableRelay {
    address: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CuttableRelay {
    async fn start(target: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (cut, open) = (cut.clone(), open.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped: refused
                    }
                    let target = target.clone();
                    let relay = tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    open.lock().expect("lock").push(relay);
                }
            })
        };
        Self {
            address,
            cut,
            open,
            accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for relay in self.open.lock().expect("lock").drain(..) {
            relay.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableRelay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
async fn a_lost_postgresql_audit_connection_fails_readiness_until_it_is_back() {
    let base = std::env::var("SHL_GATEWAY_TEST_DATABASE_URL")
        .expect("this test needs SHL_GATEWAY_TEST_DATABASE_URL");
    let mut url = url::Url::parse(&base).expect("database URL");
    let target = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().unwrap_or(5432)
    );
    let relay = CuttableRelay::start(target).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(relay.address.port())).expect("port");
    let chain = format!("readiness-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(|config| Config {
        audit: AuditConfig {
            audit_database_url: Some(SecretString::from(url.to_string())),
            audit_chain: chain,
            ..config.audit
        },
        ..config
    })
    .await;
    app.upstream_answers_seed().await;
    assert_eq!(readyz(&app).await, StatusCode::OK);

    relay.cut();
    wait_for_readyz(
        &app,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let (_, body) = app.create_seed_link().await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "AUDIT_UNAVAILABLE",
        "{body}"
    );

    relay.restore();
    wait_for_readyz(&app, StatusCode::OK, Duration::from_secs(20)).await;
    let (_, body) = app.create_seed_link().await;
    assert!(body.get("errors").is_none(), "{body}");
    app.stop().await;
}
