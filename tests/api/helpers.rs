//! Spawning the application and talking to it.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use shl_gateway::config::{
    Config, DemoMode, EmbeddedConfig, GraphqlConfig, KeyConfig, ListenerConfig, QuotaConfig,
    UpstreamConfig,
};
use shl_gateway::ratelimit::QuotaSpec;
use shl_gateway::startup::{Application, ShutdownHandle};
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const TOKEN: &str = "Bearer test-token-0123456789";
pub(crate) const SEED_MUTATION: &str = include_str!("../fixtures/seed-mutation.graphql");
pub(crate) const SEED_VARIABLES: &str = include_str!("../fixtures/seed-variables.json");
pub(crate) const SEED_RESPONSE: &str = include_str!("../fixtures/seed-response.json");
pub(crate) const UPSTREAM_PATH: &str = "/v1/graphql";

pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) upstream: MockServer,
    pub(crate) http: reqwest::Client,
    pub(crate) development_token: Option<String>,
    shutdown: ShutdownHandle,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// Temporary directories the app uses, kept alive as long as it runs (dropping one deletes it).
    _data_dirs: Vec<tempfile::TempDir>,
    /// The app's audit trail (a JSON-lines file).
    pub(crate) audit_path: std::path::PathBuf,
    /// (server URL, schema) of a PostgreSQL test schema, dropped by [`TestApp::stop`].
    postgres_schema: Option<(String, String)>,
}

pub(crate) const GENEROUS: QuotaSpec = QuotaSpec {
    burst: 100_000,
    period: Duration::from_secs(60),
};

/// A configuration for tests: port 0, a fixed secret, and the given upstream.
pub(crate) fn test_config(upstream: &MockServer) -> Config {
    let defaults = Config::default();
    Config {
        listener: ListenerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            // Storm tests open hundreds of connections from 127.0.0.1 at once; slow_clients.rs
            // tests the per-address cap itself.
            max_connections_per_ip: 0,
            ..defaults.listener
        },
        upstream: UpstreamConfig {
            upstream_url: Some(
                format!("{}{UPSTREAM_PATH}", upstream.uri())
                    .parse()
                    .expect("url"),
            ),
            upstream_timeout: Duration::from_secs(2),
            upstream_connect_timeout: Duration::from_secs(1),
            ..defaults.upstream
        },
        key: KeyConfig {
            secret_key: Some(SecretString::from(
                "test-secret-key-test-secret-key-0123456789",
            )),
            ..defaults.key
        },
        graphql: GraphqlConfig {
            graphiql: false,
            ..defaults.graphql
        },
        quotas: QuotaConfig {
            // Each test asserts one thing; the quota tests (ratelimit.rs) set tight quotas
            // themselves.
            link_quota_per_caller: GENEROUS,
            link_quota_per_ip: GENEROUS,
            http_quota_per_ip: GENEROUS,
            shl_quota_per_ip: GENEROUS,
            shl_quota_per_link: GENEROUS,
            ..defaults.quotas
        },
        ..defaults
    }
}

/// The bearer token embedded-mode tests act with, mapped to the demo patient.
pub(crate) const PATIENT_TOKEN: &str = "embedded-test-token-0123456789";

/// Where an embedded-mode test keeps its links: a fresh SQLite file, or a fresh schema in the
/// PostgreSQL database named by `SHL_GATEWAY_TEST_DATABASE_URL`.
#[derive(Debug, Clone)]
pub(crate) enum TestDatabase {
    Sqlite,
    Postgres(String),
}

/// Declares the embedded-mode test `async fn $test(database: TestDatabase)` as two tests:
/// `$test::sqlite`, and `$test::postgres`, ignored by a plain `cargo test` so that a run without
/// PostgreSQL reports it as not run instead of passing on SQLite alone.
macro_rules! on_each_database {
    ($test:ident) => {
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test(crate::helpers::TestDatabase::Sqlite).await;
            }

            #[tokio::test]
            #[ignore = "needs PostgreSQL: set SHL_GATEWAY_TEST_DATABASE_URL and run with `cargo test -- --include-ignored` (CI does)"]
            async fn postgres() {
                super::$test(crate::helpers::TestDatabase::postgres()).await;
            }
        }
    };
}
pub(crate) use on_each_database;

impl TestDatabase {
    /// The PostgreSQL database named by `SHL_GATEWAY_TEST_DATABASE_URL`; a test that asks for it
    /// without the variable fails (it must be reachable too: see [`TestDatabase::fresh_url`]).
    pub(crate) fn postgres() -> Self {
        TestDatabase::Postgres(
            std::env::var("SHL_GATEWAY_TEST_DATABASE_URL").expect(
                "this test needs SHL_GATEWAY_TEST_DATABASE_URL (a PostgreSQL database URL)",
            ),
        )
    }

    /// A database URL no other test (or test run) shares.
    /// Returns the URL and, for PostgreSQL, the schema to drop afterwards.
    pub(crate) async fn fresh_url(
        &self,
        data_dir: &std::path::Path,
    ) -> (String, Option<(String, String)>) {
        match self {
            TestDatabase::Sqlite => (
                format!("sqlite://{}?mode=rwc", data_dir.join("test.db").display()),
                None,
            ),
            TestDatabase::Postgres(base) => {
                use sqlx::Connection as _;
                let schema = format!("shl_test_{}", uuid::Uuid::new_v4().simple());
                let mut connection =
                    sqlx::PgConnection::connect(base)
                        .await
                        .unwrap_or_else(|error| {
                            panic!("SHL_GATEWAY_TEST_DATABASE_URL is set but unreachable: {error}")
                        });
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut connection)
                    .await
                    .expect("create a test schema");
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
                (url, Some((base.clone(), schema)))
            }
        }
    }
}

/// An embedded-mode gateway (no upstream) with the demo patient and [`PATIENT_TOKEN`].
pub(crate) async fn spawn_embedded(
    database: &TestDatabase,
    customize: impl FnOnce(Config) -> Config,
) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let (database_url, postgres_schema) = database.fresh_url(data_dir.path()).await;
    let demo_patient = shl_gateway::issuer::fhir::PatientRecord::demo();
    let token = format!("{PATIENT_TOKEN}={}", demo_patient.patient_id());
    let mut app = spawn_app_with(|config| {
        customize(Config {
            upstream: UpstreamConfig {
                upstream_url: None,
                ..config.upstream
            },
            embedded: EmbeddedConfig {
                database_url: Some(SecretString::from(database_url)),
                demo: DemoMode::On,
                patient_tokens: vec![token.parse().expect("token")],
                ..config.embedded
            },
            key: KeyConfig {
                data_dir: data_dir.path().to_path_buf(),
                ..config.key
            },
            ..config
        })
    })
    .await;
    app.owns_store(data_dir, postgres_schema);
    app
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|config| config).await
}

pub(crate) async fn spawn_app_with(customize: impl FnOnce(Config) -> Config) -> TestApp {
    let upstream = MockServer::start().await;
    // Every app gets its own data directory: its audit file, store and key stay its own.
    let data_dir = tempfile::tempdir().expect("tempdir");
    let base = test_config(&upstream);
    let config = customize(Config {
        key: KeyConfig {
            data_dir: data_dir.path().to_path_buf(),
            ..base.key
        },
        ..base
    });
    let audit_path = config
        .audit
        .audit_log
        .clone()
        .unwrap_or_else(|| config.key.data_dir.join("audit.jsonl"));
    let application = Application::build(config)
        .await
        .expect("application builds");
    let address = format!("http://{}", application.local_addr());
    let shutdown = application.shutdown_handle();
    let development_token = application
        .development_token()
        .map(|token| token.expose_secret().to_owned());
    let server = tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        upstream,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        development_token,
        shutdown,
        server: Some(server),
        _data_dirs: vec![data_dir],
        postgres_schema: None,
        audit_path,
    }
}

impl TestApp {
    /// Ties a store made by [`TestDatabase::fresh_url`] to this app: its folder lives as long as
    /// the app, and its PostgreSQL schema is dropped by [`TestApp::stop`].
    pub(crate) fn owns_store(
        &mut self,
        data_dir: tempfile::TempDir,
        postgres_schema: Option<(String, String)>,
    ) {
        self._data_dirs.push(data_dir);
        self.postgres_schema = postgres_schema;
    }

    /// POSTs a GraphQL request with `application/json`, with or without a bearer token.
    pub(crate) async fn graphql(
        &self,
        query: &str,
        variables: Value,
        authorization: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }

    /// The seed's mutation with the seed's variables, as a b.well client sends it.
    pub(crate) async fn create_seed_link(&self) -> (StatusCode, Value) {
        self.graphql(SEED_MUTATION, seed_variables(), Some(TOKEN))
            .await
    }

    /// Makes the fake b.well answer the seed's example response.
    pub(crate) async fn upstream_answers_seed(&self) {
        Mock::given(method("POST"))
            .and(path(UPSTREAM_PATH))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(SEED_RESPONSE, "application/json"),
            )
            .mount(&self.upstream)
            .await;
    }

    /// Makes the fake b.well answer with `response` to every call.
    pub(crate) async fn upstream_responds(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path(UPSTREAM_PATH))
            .respond_with(response)
            .mount(&self.upstream)
            .await;
    }

    /// The audit records written so far, as JSON (checkpoints and recoveries excluded).
    pub(crate) fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("audit lines are JSON"))
            .filter(|record| !matches!(record["action"].as_str(), Some("checkpoint" | "recovered")))
            .collect()
    }

    /// The JSON bodies the fake b.well received.
    pub(crate) async fn upstream_bodies(&self) -> Vec<Value> {
        self.upstream
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|request| serde_json::from_slice(&request.body).expect("JSON body"))
            .collect()
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.shutdown();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

pub(crate) fn seed_variables() -> Value {
    serde_json::from_str(SEED_VARIABLES).expect("seed variables are JSON")
}

pub(crate) fn seed_answer() -> Value {
    serde_json::from_str::<Value>(SEED_RESPONSE).expect("seed answer is JSON")["data"]["createHealthLink"].clone()
}

/// `errors[0].extensions.code`, or a panic that shows the whole answer.
pub(crate) fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// The seed's mutation plus the gateway fields.
pub(crate) const MUTATION_WITH_GATEWAY_FIELDS: &str =
    "mutation CreateHealthLink($input: CreateHealthLinkInput!) {
  createHealthLink(input: $input) {
    id identifier { system value } description resourceType date status
    subject { reference } context { period { start end } }
    content { attachment { contentType url title } }
    category { coding { system code } }
    passcode
    qrCodeSvg
  }
}";

/// The real `shl-gateway` binary run as its own process on loopback, logging JSON, every line
/// it writes (stdout and stderr) kept. Killed when dropped.
pub(crate) struct GatewayChild {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`, as the gateway reported it.
    pub(crate) address: String,
    pub(crate) data_dir: std::path::PathBuf,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl GatewayChild {
    /// Starts the gateway with `args` after `--listen 127.0.0.1:0 --log-format json
    /// --log-filter LOG_FILTER --data-dir <temporary>`, in an empty environment (PATH only),
    /// and waits (at most 60 s) until it reports its address.
    pub(crate) fn spawn(log_filter: &str, args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir").keep();
        Self::spawn_in(data_dir, None, log_filter, args)
    }

    /// Like [`Self::spawn`], with a data directory of the caller's (which may not exist yet) and,
    /// when given, the umask the process starts with (set by `sh` before it execs the gateway).
    pub(crate) fn spawn_in(
        data_dir: std::path::PathBuf,
        umask: Option<&str>,
        log_filter: &str,
        args: &[&str],
    ) -> Self {
        Self::spawn_with_env(data_dir, umask, &[], log_filter, args)
    }

    /// Like [`Self::spawn_in`], with these variables set in the process's otherwise empty
    /// environment.
    pub(crate) fn spawn_with_env(
        data_dir: std::path::PathBuf,
        umask: Option<&str>,
        env: &[(&str, &str)],
        log_filter: &str,
        args: &[&str],
    ) -> Self {
        use std::io::{BufRead as _, BufReader, Read};
        let mut command = match umask {
            Some(umask) => {
                let mut command = std::process::Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_shl-gateway"));
                command
            }
            None => std::process::Command::new(env!("CARGO_BIN_EXE_shl-gateway")),
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--log-filter", log_filter])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("gateway starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = std::sync::Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lock").push(line);
                }
            });
        }
        let mut gateway = Self {
            child,
            address: String::new(),
            data_dir,
            lines,
        };
        gateway.address = gateway.wait_for_address();
        gateway
    }

    fn wait_for_address(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let found = self.lines().iter().find_map(|line| {
                let event: Value = serde_json::from_str(line).ok()?;
                (event["message"] == "listening")
                    .then(|| event["address"].as_str().map(str::to_owned))?
            });
            if let Some(address) = found {
                return format!("http://{address}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the gateway did not start: {:?}", self.lines());
    }

    /// Every line written so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    /// Ends the process (killed if still running) and returns every line it wrote.
    pub(crate) fn into_lines(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader threads drain what the process wrote last.
        std::thread::sleep(Duration::from_millis(100));
        self.lines()
    }

    /// Sends SIGTERM (graceful shutdown).
    pub(crate) fn terminate(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The exit status, if the process ends within `within`.
    pub(crate) fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for GatewayChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
