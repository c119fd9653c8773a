//! The first hour of an operator: the real binary started from its variables, its errors when a
//! start fails, and its logs as a terminal, a pipe or a log shipper reads them.

use serde_json::{Value, json};

use crate::helpers::GatewayChild;

/// The JSON log events among `lines` (the dev-token banner and text lines are skipped).
fn events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

async fn health_links(address: &str, token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{address}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": "{ healthLinks { id } }"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_former_patient_tokens_variable_still_works_and_its_warning_holds_no_token() {
    let token = "former-variable-token-7f3a9c2e";
    let mapping = format!("{token}=demo-alex");
    let data_dir = tempfile::tempdir().expect("tempdir").keep();
    let gateway = GatewayChild::spawn_with_env(
        data_dir,
        None,
        &[("SHL_GATEWAY_PATIENT_TOKENS", &mapping)],
        "info",
        &["--demo", "on"],
    );

    let answer = health_links(&gateway.address, token).await;

    assert_eq!(answer["data"]["healthLinks"], json!([]), "{answer}");
    let lines = gateway.into_lines();
    let warning = events(&lines)
        .into_iter()
        .find(|event| event["variable"] == "SHL_GATEWAY_PATIENT_TOKENS")
        .unwrap_or_else(|| panic!("no rename warning: {lines:?}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["replaced_by"], "SHL_GATEWAY_PATIENT_TOKEN");
    assert!(lines.iter().all(|line| !line.contains(token)), "{lines:?}");
}

#[tokio::test]
async fn the_patient_token_variable_is_read_under_its_flags_name() {
    let token = "current-variable-token-0b8e41d6";
    let mapping = format!("{token}=demo-alex");
    let data_dir = tempfile::tempdir().expect("tempdir").keep();
    let gateway = GatewayChild::spawn_with_env(
        data_dir,
        None,
        &[("SHL_GATEWAY_PATIENT_TOKEN", &mapping)],
        "info",
        &["--demo", "on"],
    );

    let answer = health_links(&gateway.address, token).await;

    assert_eq!(answer["data"]["healthLinks"], json!([]), "{answer}");
    let lines = gateway.into_lines();
    assert!(
        events(&lines)
            .iter()
            .all(|event| event["variable"].is_null()),
        "no rename warning: {lines:?}"
    );
}

#[test]
fn empty_variables_count_as_unset() {
    let data_dir = tempfile::tempdir().expect("tempdir").keep();
    // As a compose file writes them: present, and empty. Set, each would fail to parse.
    let gateway = GatewayChild::spawn_with_env(
        data_dir,
        None,
        &[
            ("SHL_GATEWAY_UPSTREAM_URL", ""),
            ("SHL_GATEWAY_UPSTREAM_TIMEOUT", ""),
            ("SHL_GATEWAY_PATIENT_TOKEN", ""),
            ("SHL_GATEWAY_SECRET_KEY", ""),
        ],
        "info",
        &[],
    );

    let lines = gateway.into_lines();
    let started = events(&lines)
        .into_iter()
        .find(|event| event["message"] == "issuer ready")
        .unwrap_or_else(|| panic!("no startup line: {lines:?}"));
    assert_eq!(
        started["mode"], "embedded",
        "no upstream URL: embedded mode"
    );
}

/// Runs the gateway with `args` (and `--listen 127.0.0.1:0 --data-dir DATA_DIR`) in an empty
/// environment, expecting it to stop by itself within 30 s; returns its exit status and stderr.
fn failed_start(data_dir: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gateway starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop: {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stderr)
}

#[test]
fn a_second_gateway_on_the_same_data_dir_says_so() {
    let first = GatewayChild::spawn("info", &[]);

    let (status, stderr) = failed_start(&first.data_dir, &[]);

    assert!(!status.success());
    assert!(
        stderr.contains("another shl-gateway uses this --data-dir"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&first.data_dir.display().to_string()),
        "{stderr}"
    );
    drop(first.into_lines());
}

/// A port nothing listens on: bound, then freed.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn a_refused_database_is_said_at_once_each_cause_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let url = format!("postgres://shl:hunter2@127.0.0.1:{}/shl", closed_port());
    let started = std::time::Instant::now();

    let (status, stderr) = failed_start(&root.path().join("data"), &["--database-url", &url]);

    assert!(!status.success());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "not after the pool's 5 s: {:?}",
        started.elapsed()
    );
    let report: Vec<&str> = stderr
        .lines()
        .skip_while(|line| !line.starts_with("shl-gateway: "))
        .collect();
    assert_eq!(
        report[0], "shl-gateway: --database-url (SHL_GATEWAY_DATABASE_URL): cannot open the store",
        "{stderr}"
    );
    assert!(
        report[1].starts_with("  caused by: cannot connect to PostgreSQL at 127.0.0.1:"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("connection refused").count(), 1, "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_start_that_fails_writes_nothing_to_disk() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken = taken.local_addr().expect("address").to_string();
    let refused = format!("postgres://shl:pw@127.0.0.1:{}/shl", closed_port());
    let failures: [(&[&str], &str); 6] = [
        (
            &["--database-url", "mysql://root:pw@db/shl"],
            "mysql: URLs are not supported",
        ),
        (&["--database-url", "garbage"], "not a database URL"),
        (&["--database-url", &refused], "connection refused"),
        (&["--audit-database-url", &refused], "connection refused"),
        (&["--metrics-listen", &taken], "--metrics-listen"),
        (
            &[
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            "--tls-cert",
        ),
    ];
    for (args, expected) in failures {
        let root = tempfile::tempdir().expect("tempdir");
        let data_dir = root.path().join("data");

        let (status, stderr) = failed_start(&data_dir, args);

        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !data_dir.exists(),
            "{args:?} left {:?}",
            std::fs::read_dir(&data_dir).map(|entries| entries.count())
        );
    }
}
