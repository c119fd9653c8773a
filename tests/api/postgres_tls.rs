//! PostgreSQL over TLS, as managed databases require it: a PostgreSQL of the test's own, started on
//! loopback with a certificate from a CA the test generates, accepting TLS connections only.
//!
//! Needs PostgreSQL's server programs (`initdb`, `postgres`): set `SHL_GATEWAY_TEST_POSTGRES_BIN`
//! to the folder holding them (`.ci/run` sets it); the test is ignored by a plain `cargo test` and
//! fails when run without them. As root (CI), the server runs as the `postgres` user, which
//! `initdb` requires.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection as _;

use crate::embedded::create_link;
use crate::helpers::*;

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost.
struct Certificates {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

fn certificates(ca_name: &str) -> Certificates {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
    Certificates {
        ca_pem: ca.pem(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// The PostgreSQL server this test started; stopped (and its folder removed) when dropped.
struct TlsPostgres {
    server: Child,
    port: u16,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it ends its backends and reaps them itself (a
        // killed postmaster would leave them to whoever adopts orphans). SIGKILL if it hangs.
        let _ = Command::new("kill")
            .args(["-INT", &self.server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.server.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Runs `program` from `bin` as the `postgres` user when this process is root (initdb refuses
/// root), as this user otherwise. `setpriv` execs the program itself, so killing the child kills
/// the server.
fn as_server_user(bin: &Path, program: &str) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    if is_root {
        let mut command = Command::new("setpriv");
        command
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

fn start_tls_postgres() -> TlsPostgres {
    let bin = PathBuf::from(std::env::var("SHL_GATEWAY_TEST_POSTGRES_BIN").expect(
        "this test needs SHL_GATEWAY_TEST_POSTGRES_BIN: the folder holding initdb and postgres",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let certificates = certificates("shl-gateway test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &certificates.ca_pem).expect("write CA");
    // The folder must belong to the server's user; chown is a no-op for a non-root owner.
    let chown = |path: &Path| {
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status();
    };
    chown(dir.path());

    let initdb = as_server_user(&bin, "initdb")
        .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("initdb runs");
    assert!(
        initdb.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    std::fs::write(data.join("server.crt"), &certificates.server_pem).expect("cert");
    std::fs::write(data.join("server.key"), &certificates.server_key_pem).expect("key");
    // TLS connections only: a plain one meets no matching line and is refused.
    std::fs::write(
        data.join("pg_hba.conf"),
        "hostssl all all 127.0.0.1/32 trust\n",
    )
    .expect("pg_hba.conf");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("key mode");
    }
    chown(&data);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let server = as_server_user(&bin, "postgres")
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.path().display()))
        .args(["-c", "ssl=on", "-c", "fsync=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts");
    let postgres = TlsPostgres {
        server,
        port,
        ca_file,
        _dir: dir,
    };
    // Ready when it accepts TCP; bounded, so a server that never comes up fails the test.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "postgres did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    postgres
}

impl TlsPostgres {
    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            self.port
        )
    }
}

/// Connects and asks the server whether this connection is encrypted.
async fn connection_uses_tls(url: &str) -> Result<bool, sqlx::Error> {
    // The server may still be finishing its start-up after it began to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut connection = loop {
        match sqlx::PgConnection::connect(url).await {
            Err(sqlx::Error::Database(error))
                if error.message().contains("starting up") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut connection)
        .await
}

#[tokio::test]
#[ignore = "needs PostgreSQL's server programs: set SHL_GATEWAY_TEST_POSTGRES_BIN and run with `cargo test -- --include-ignored` (CI does)"]
async fn the_gateway_keeps_its_links_in_a_postgresql_that_requires_verified_tls() {
    let postgres = tokio::task::spawn_blocking(start_tls_postgres)
        .await
        .expect("task");
    let ca = postgres.ca_file.display().to_string();

    // Every mode that encrypts connects, and the server says the connection is TLS.
    for mode in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        format!("sslmode=verify-full&sslrootcert={ca}"),
    ] {
        assert!(
            connection_uses_tls(&postgres.url(&mode))
                .await
                .unwrap_or_else(|error| panic!("{mode}: {error}")),
            "{mode}"
        );
    }
    // Plain connections are refused by the server; a certificate from another CA by the client.
    assert!(
        connection_uses_tls(&postgres.url("sslmode=disable"))
            .await
            .is_err()
    );
    let stranger = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(stranger.path(), certificates("another CA").ca_pem).expect("write");
    let wrong_root = format!(
        "sslmode=verify-full&sslrootcert={}",
        stranger.path().display()
    );
    assert!(
        connection_uses_tls(&postgres.url(&wrong_root))
            .await
            .is_err()
    );

    // The gateway itself, on verify-full: a link created, listed and read back.
    let database =
        TestDatabase::Postgres(postgres.url(&format!("sslmode=verify-full&sslrootcert={ca}")));
    let app = spawn_embedded(&database, |config| config).await;
    let (link, _) = create_link(&app, json!({"label": "over TLS"})).await;
    let (_, body) = app
        .graphql(
            "{ healthLinks { id label } }",
            json!({}),
            Some(&format!("Bearer {PATIENT_TOKEN}")),
        )
        .await;
    assert_eq!(
        body["data"]["healthLinks"],
        json!([{"id": link["id"], "label": "over TLS"}])
    );
}
