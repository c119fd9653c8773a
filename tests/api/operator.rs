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
        .find(|event| event["message"] == "gateway configured")
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

/// The JSON event with this message, or a panic that shows every line.
fn event<'a>(events: &'a [Value], message: &str, lines: &[String]) -> &'a Value {
    events
        .iter()
        .find(|event| event["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line: {lines:?}"))
}

#[test]
fn the_startup_line_names_mode_store_and_audit_sink() {
    let gateway = GatewayChild::spawn("info", &[]);
    let audit_file = gateway.data_dir.join("audit.jsonl");

    let lines = gateway.into_lines();

    let events = events(&lines);
    let started = event(&events, "gateway configured", &lines);
    assert_eq!(started["mode"], "embedded");
    assert_eq!(started["store"], "sqlite");
    assert_eq!(started["audit"], "file");
    assert_eq!(started["audit.file"], audit_file.display().to_string());
    assert!(started["upstream.host"].is_null());
}

#[test]
fn the_startup_line_names_the_upstreams_host_and_nothing_else_of_its_url() {
    let upstream = "https://client:hunter2@api.example.org:8443/v1/graphql?key=path-secret";
    let gateway = GatewayChild::spawn("debug", &["--upstream-url", upstream]);

    let lines = gateway.into_lines();

    let events = events(&lines);
    let started = event(&events, "gateway configured", &lines);
    assert_eq!(started["mode"], "upstream");
    assert_eq!(started["upstream.host"], "api.example.org");
    assert!(started["store"].is_null(), "upstream mode has no store");
    for secret in ["hunter2", "path-secret", "/v1/graphql"] {
        assert!(
            lines.iter().all(|line| !line.contains(secret)),
            "{secret}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn probes_are_logged_at_debug_and_a_shutdowns_503_is_no_error() {
    let mut gateway = GatewayChild::spawn("debug", &["--shutdown-delay", "2s"]);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", gateway.address)).send();
    for path in ["/healthz", "/readyz", "/metrics", "/graphql"] {
        get(path).await.expect("answered");
    }

    gateway.terminate();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let status = get("/readyz").await.expect("still serving").status();
        if status == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never said 503"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        gateway
            .wait_for_exit(std::time::Duration::from_secs(10))
            .is_some()
    );

    let lines = gateway.into_lines();
    let events = events(&lines);
    let route = |event: &Value| event["span"]["route"].as_str().map(str::to_owned);
    let answers: Vec<(String, String, u64)> = events
        .iter()
        .filter(|event| event["message"] == "finished processing request")
        .map(|event| {
            (
                route(event).unwrap_or_default(),
                event["level"].as_str().unwrap_or_default().to_owned(),
                event["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let levels: Vec<&str> = answers
            .iter()
            .filter(|(route, ..)| route == probe)
            .map(|(_, level, _)| level.as_str())
            .collect();
        assert!(!levels.is_empty(), "{probe}: {answers:?}");
        assert!(
            levels.iter().all(|level| *level == "DEBUG"),
            "{probe}: {answers:?}"
        );
    }
    assert!(
        answers.contains(&("/readyz".to_owned(), "DEBUG".to_owned(), 503)),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .any(|(route, level, _)| route == "/graphql" && level == "INFO"),
        "other requests stay at INFO: {answers:?}"
    );
    let errors: Vec<&Value> = events
        .iter()
        .filter(|event| event["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn logs_and_the_dev_token_banner_written_to_a_pipe_carry_no_colour() {
    use std::io::{BufRead as _, BufReader, Read};
    let data_dir = tempfile::tempdir().expect("tempdir");
    // Text logs (the format with colours at a terminal), demo mode (the banner), both streams
    // piped, as a container runtime or `2>file` takes them.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--demo",
            "on",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gateway starts");
    let (sender, lines) = std::sync::mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(seen.iter().any(|line: &String| line.contains("listening"))
        && seen
            .iter()
            .any(|line| line.contains("Authorization: Bearer")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no banner and listening line: {seen:?}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();

    assert!(seen.iter().all(|line| !line.contains("\x1b[")), "{seen:?}");
}

/// A command whose output cannot be written (a full disk here; a closed pipe alike) says so on
/// one line and fails, instead of panicking with a backtrace.
#[cfg(target_os = "linux")]
#[test]
fn output_that_cannot_be_written_is_an_error_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .arg("schema")
        .stdout(full)
        .output()
        .expect("the binary runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "shl-gateway: cannot write to standard output: No space left on device (os error 28)"
    );
}

/// `--public-url` may have 59 characters: its manifest URLs (the URL, the manifest path and a
/// 43-character id) then have exactly the 128 the SHL specification allows. One more is refused
/// at start, with the room there is.
#[tokio::test]
async fn a_public_url_of_59_characters_serves_and_one_of_60_is_refused_with_the_limit() {
    let fits = format!("https://{}.example.org", "a".repeat(39));
    let too_long = format!("https://{}.example.org", "a".repeat(40));
    assert_eq!((fits.len(), too_long.len()), (59, 60));

    let app =
        crate::helpers::spawn_embedded(&crate::helpers::TestDatabase::Sqlite, |mut config| {
            config.embedded.public_url = Some(fits.parse().expect("url"));
            config
        })
        .await;
    let (link, payload) = crate::embedded::create_link(&app, json!({})).await;
    assert_eq!(payload["url"].as_str().expect("url").len(), 128, "{link}");

    let data_dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            &too_long,
            "--data-dir",
        ])
        .arg(data_dir.path().join("data"))
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("manifest URLs would have 129 characters, the SHL limit is 128, so the URL may have at most 59 characters"),
        "{stderr}"
    );
}
