//! Configuration: one typed [`Config`], from flags and `SHL_GATEWAY_*` environment variables,
//! validated once at startup.
//!
//! Every flag `--some-flag` also reads `SHL_GATEWAY_SOME_FLAG`. Secrets are `SecretString`s, so
//! `Debug` (and therefore any log of the config) prints `[REDACTED]`.
//!
//! [`Config`] is a set of groups, one per concern ([`ListenerConfig`], [`UpstreamConfig`],
//! [`EmbeddedConfig`], [`AttestationConfig`], [`GraphqlConfig`], [`QuotaConfig`], [`RedisConfig`], [`AuditConfig`],
//! [`KeyConfig`], [`TelemetryConfig`]), each shown under its own heading by `--help`. A group
//! converts into the settings its module takes (`From` or a method here), so startup hands each
//! module its part without copying fields; the modules never import `config`.
//!
//! Each default is written once, in its flag's attribute: [`Config::default`] is clap's own
//! parse of an empty command line, with the environment switched off. Tests build a `Config`
//! with it and struct updates rather than through the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::http::HeaderValue;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;
use zeroize::Zeroizing;

use crate::crypto::attestation::{
    AppAttestation, new_private_key_pem, parse_private_key, parse_retired_key,
};
use crate::graphql::{OperationLimits, SchemaOptions};
use crate::http::server::ConnectionLimits;
use crate::http::{HttpSettings, WorkSlots};
use crate::issuer::embedded::EmbeddedSettings;
use crate::ratelimit::{QuotaSpec, QuotaSpecs, RedisFailurePolicy};
use crate::telemetry::LogFormat;
use crate::upstream::{CircuitBreaker, UpstreamSettings};

/// The command line of the `shl-gateway` binary.
#[derive(Debug, Parser)]
#[command(
    name = "shl-gateway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `shl-gateway` without a subcommand serves, with these flags.
    #[command(flatten)]
    pub serve: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve(Box<Config>),
    /// Print the GraphQL schema (SDL), the same text as `schema/schema.graphql`.
    Schema,
    /// Load a patient's FHIR Bundle (JSON) into the embedded store, replacing their records.
    /// Prints the patient id, to map a token to it with --patient-token TOKEN=ID.
    ImportBundle {
        /// The Bundle file: exactly one Patient, plus resources of the shareable types.
        file: PathBuf,
        #[arg(long, env = "SHL_GATEWAY_DATABASE_URL", hide_env_values = true)]
        database_url: Option<SecretString>,
        #[arg(long, env = "SHL_GATEWAY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Check or export the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// App attestation keys (Kill the Clipboard): see --attestation-key-file.
    Attestation {
        #[command(subcommand)]
        command: AttestationCommand,
    },
    /// Exit 0 if the gateway at `--listen` answers `/healthz` (for images without curl).
    Healthcheck {
        #[arg(long, env = "SHL_GATEWAY_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Set (as for `serve`): the listener speaks HTTPS, so probe with HTTPS.
        #[arg(long, env = "SHL_GATEWAY_TLS_CERT")]
        tls_cert: Option<PathBuf>,
    },
}

/// Shared by `serve` and the subcommands that take the same flag.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATA_DIR: &str = ".shl-gateway";
/// The shortest `--secret-key` accepted: 32 bytes, as for an HMAC-SHA256 key.
pub(crate) const MIN_SECRET_KEY_BYTES: usize = 32;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit file's HMAC chain (rotated files: oldest first). Prints OK and the head,
    /// or the first broken or missing record, and exits non-zero.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The head exported earlier (`seq:mac`): also detects a truncated tail.
        #[arg(long)]
        head: Option<String>,
        #[command(flatten)]
        key: KeyConfig,
    },
    /// Write the audit records as a FHIR R4 Bundle of AuditEvent resources (IHE BALP shapes).
    Export {
        file: PathBuf,
        /// Where to write the Bundle (JSON); default stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AttestationCommand {
    /// Write a fresh EC P-256 private key (PKCS#8 PEM, mode 0600) for --attestation-key-file and
    /// print its kid (never the key). Refuses to overwrite an existing file.
    NewKey {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMode {
    /// Demo when nothing else is configured and only this machine can connect.
    Auto,
    /// Demo even on a public listener (never in production).
    On,
    Off,
}

/// `TOKEN=PATIENT_ID`. `Debug` hides the token.
#[derive(Clone)]
pub struct PatientToken {
    pub(crate) token: SecretString,
    pub(crate) patient_id: String,
}

impl std::fmt::Debug for PatientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PatientToken([REDACTED] -> {})", self.patient_id)
    }
}

impl std::str::FromStr for PatientToken {
    type Err = &'static str;

    /// The message never repeats the value: it holds a token.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (token, patient_id) = text.split_once('=').ok_or("expected TOKEN=PATIENT_ID")?;
        let token_ok = token.len() >= 16 && token.bytes().all(|b| b.is_ascii_graphic());
        if !token_ok {
            return Err("the token must be at least 16 printable ASCII characters");
        }
        let id_ok = !patient_id.is_empty()
            && patient_id.len() <= 64
            && patient_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !id_ok {
            return Err("the patient id must be a FHIR id ([A-Za-z0-9.-], at most 64)");
        }
        Ok(Self {
            token: SecretString::from(token.to_owned()),
            patient_id: patient_id.to_owned(),
        })
    }
}

/// `--log-format`'s words for [`LogFormat`], with their `--help` (kept here, like the Redis
/// policy's, so that `telemetry` knows nothing of the command line).
const LOG_FORMATS: [(&str, LogFormat, &str); 2] = [
    (
        "text",
        LogFormat::Text,
        "Human-readable lines, for a terminal",
    ),
    (
        "json",
        LogFormat::Json,
        "One JSON object per line, for log shippers",
    ),
];

fn log_format() -> impl TypedValueParser<Value = LogFormat> {
    let names = LOG_FORMATS.map(|(name, _, help)| PossibleValue::new(name).help(help));
    PossibleValuesParser::new(names).try_map(|name| {
        LOG_FORMATS
            .iter()
            .find(|(known, ..)| *known == name)
            .map(|(_, format, _)| *format)
            .ok_or("not a log format")
    })
}

/// `--redis-failure-policy`'s words for [`RedisFailurePolicy`], with their `--help`. They live
/// here, not as a clap derive on the policy, so that `ratelimit` knows nothing of the command line.
const REDIS_FAILURE_POLICIES: [(&str, RedisFailurePolicy, &str); 2] = [
    (
        "fail-closed",
        RedisFailurePolicy::FailClosed,
        "Limited requests fail (OVERLOADED) until Redis is back. For deployments where a limit \
         that holds only per replica is not acceptable",
    ),
    (
        "fall-back-to-in-process",
        RedisFailurePolicy::FallBackToInProcess,
        "Each replica limits from its own memory: every limit still holds, but per replica, so \
         during the outage N replicas allow up to N times a quota between them",
    ),
];

fn redis_failure_policy() -> impl TypedValueParser<Value = RedisFailurePolicy> {
    let names = REDIS_FAILURE_POLICIES.map(|(name, _, help)| PossibleValue::new(name).help(help));
    PossibleValuesParser::new(names).try_map(|name| {
        REDIS_FAILURE_POLICIES
            .iter()
            .find(|(known, ..)| *known == name)
            .map(|(_, policy, _)| *policy)
            .ok_or("not a Redis failure policy")
    })
}

/// How `shl-gateway serve` runs: one group of flags per concern, each under its own heading in
/// `--help`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub listener: ListenerConfig,
    #[command(flatten)]
    pub upstream: UpstreamConfig,
    #[command(flatten)]
    pub embedded: EmbeddedConfig,
    #[command(flatten)]
    pub attestation: AttestationConfig,
    #[command(flatten)]
    pub graphql: GraphqlConfig,
    #[command(flatten)]
    pub quotas: QuotaConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub audit: AuditConfig,
    #[command(flatten)]
    pub key: KeyConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
}

/// Where and how the gateway listens: address, TLS, what one connection and one request may
/// cost, browser origins, proxies, shutdown. Becomes [`ConnectionLimits`] and [`HttpSettings`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listener")]
pub struct ListenerConfig {
    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, env = "SHL_GATEWAY_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// PEM certificate chain: with --tls-key, --listen serves HTTPS (the viewer's WebCrypto
    /// needs a secure context, e.g. to open links from a phone on the LAN).
    #[arg(long, env = "SHL_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SHL_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve /metrics on this separate address (e.g. 0.0.0.0:9090, reachable by Prometheus
    /// only) instead of on --listen.
    #[arg(long, env = "SHL_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Proxies whose X-Forwarded-For is believed (comma-separated CIDRs, e.g. the load
    /// balancer's). From any other peer the header is ignored.
    #[arg(long, env = "SHL_GATEWAY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Browser origins allowed to call /graphql (comma-separated, e.g. https://app.example.org).
    #[arg(long, env = "SHL_GATEWAY_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Largest accepted request body on /graphql, in bytes (larger: 413).
    #[arg(long, env = "SHL_GATEWAY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Requests served at once (GraphQL, SHL endpoints, playground); beyond it: 503 OVERLOADED
    /// with Retry-After, at once. Health probes and metrics are not counted.
    #[arg(
        long,
        env = "SHL_GATEWAY_MAX_CONCURRENT_REQUESTS",
        default_value_t = 512
    )]
    pub max_concurrent_requests: usize,

    /// Longest wait for a request's headers (on a new connection: TLS handshake included; on a
    /// kept-alive HTTP/1.1 connection: from the previous answer). Slower clients are closed.
    #[arg(long, env = "SHL_GATEWAY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// The whole request body must arrive within this after the headers, or the answer is
    /// 408 REQUEST_TIMEOUT. Until it has, the request takes no concurrency slot.
    #[arg(long, env = "SHL_GATEWAY_REQUEST_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_body_timeout: Duration,

    /// A connection without a request in flight for this long is closed.
    #[arg(long, env = "SHL_GATEWAY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Client connections open at once; more are closed on arrival.
    #[arg(long, env = "SHL_GATEWAY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Connections open at once from one client address (IPv6 by /64; 0: no limit). Peers in
    /// --trusted-proxies are exempt.
    #[arg(long, env = "SHL_GATEWAY_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: usize,

    /// HTTP/2 streams (requests) open at once on one connection.
    #[arg(
        long,
        env = "SHL_GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS",
        default_value_t = 32
    )]
    pub http2_max_concurrent_streams: u32,

    /// HTTP/2 streams a client may open and reset before the server has seen them (the "rapid
    /// reset" attack); beyond it the connection is closed.
    #[arg(
        long,
        env = "SHL_GATEWAY_HTTP2_MAX_PENDING_RESET_STREAMS",
        default_value_t = 20
    )]
    pub http2_max_pending_reset_streams: usize,

    /// HTTP/2 keep-alive ping interval; a ping unanswered for as long closes the connection.
    #[arg(long, env = "SHL_GATEWAY_HTTP2_KEEP_ALIVE_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub http2_keep_alive_interval: Duration,

    /// After SIGTERM/SIGINT, how long to keep accepting requests while /readyz already answers
    /// 503, so load balancers stop routing here before the listener closes.
    #[arg(long, env = "SHL_GATEWAY_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Longest wait for in-flight requests after SIGTERM/SIGINT before exiting anyway.
    #[arg(long, env = "SHL_GATEWAY_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Upstream mode: where b.well is and how long to wait for it. Becomes [`UpstreamSettings`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Upstream mode (b.well)")]
pub struct UpstreamConfig {
    /// b.well's GraphQL endpoint, e.g. https://api.client-sandbox.icanbwell.com/v1/graphql.
    /// Set: upstream mode.
    #[arg(long, env = "SHL_GATEWAY_UPSTREAM_URL")]
    pub upstream_url: Option<Url>,

    /// Longest wait for the whole upstream exchange, from sending to the last byte of the answer.
    #[arg(long, env = "SHL_GATEWAY_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Longest wait for the upstream's TCP (and TLS) connection.
    #[arg(long, env = "SHL_GATEWAY_UPSTREAM_CONNECT_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub upstream_connect_timeout: Duration,

    /// Consecutive upstream failures (5xx, garbage, timeouts, refused) that open the circuit
    /// breaker: calls then fail fast with UPSTREAM_UNAVAILABLE.
    #[arg(
        long,
        env = "SHL_GATEWAY_UPSTREAM_BREAKER_FAILURES",
        default_value_t = 5
    )]
    pub upstream_breaker_failures: u32,

    /// How long the open breaker fails fast before letting one probe through.
    #[arg(long, env = "SHL_GATEWAY_UPSTREAM_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration)]
    pub upstream_breaker_cooldown: Duration,

    /// Largest upstream answer read, in bytes; larger answers are UPSTREAM_ERROR.
    #[arg(long, env = "SHL_GATEWAY_UPSTREAM_MAX_RESPONSE_BYTES", default_value_t = 1024 * 1024)]
    pub upstream_max_response_bytes: usize,
}

/// Embedded mode: the gateway's own issuer, its store, its callers and its links' lifetimes.
/// Becomes [`EmbeddedSettings`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Embedded issuer")]
pub struct EmbeddedConfig {
    /// Embedded mode: base URL of manifest and viewer URLs, as receivers reach it (e.g.
    /// https://shl.example.org). Default http://<listen>; required on a wildcard listener.
    #[arg(long, env = "SHL_GATEWAY_PUBLIC_URL")]
    pub public_url: Option<Url>,

    /// Embedded mode's store: `sqlite://file?mode=rwc` or `postgres://...` (for replicas).
    /// Default: a SQLite file in --data-dir.
    #[arg(long, env = "SHL_GATEWAY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Embedded mode: a bearer token and the patient it acts for, `TOKEN=PATIENT_ID`; repeat the
    /// flag (or comma-separate in the variable) for several. Stored only as an HMAC.
    #[arg(
        long = "patient-token",
        env = "SHL_GATEWAY_PATIENT_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub patient_tokens: Vec<PatientToken>,

    /// Embedded mode's demo: seed the synthetic demo patient and print a development token.
    /// `auto`: only with no --patient-token and a loopback listener; `on` forces it.
    #[arg(long, env = "SHL_GATEWAY_DEMO", value_enum, default_value_t = DemoMode::Auto)]
    pub demo: DemoMode,

    /// `DocumentReference.identifier.system` of embedded links.
    #[arg(
        long,
        env = "SHL_GATEWAY_IDENTIFIER_SYSTEM",
        default_value = "urn:shl-gateway:health-link"
    )]
    pub identifier_system: String,

    /// Validity of a PASSCODE link (b.well: 5 minutes).
    #[arg(long, env = "SHL_GATEWAY_LINK_VALIDITY", default_value = "5m", value_parser = parse_duration)]
    pub link_validity: Duration,

    /// Validity of a DIRECT link (the Kill the Clipboard profile suggests 5 to 15 minutes).
    #[arg(long, env = "SHL_GATEWAY_DIRECT_LINK_VALIDITY", default_value = "10m", value_parser = parse_duration)]
    pub direct_link_validity: Duration,

    /// Longest validity a caller may ask for a PASSCODE link (`input.expiresInSeconds`).
    #[arg(long, env = "SHL_GATEWAY_MAX_LINK_VALIDITY", default_value = "48h", value_parser = parse_duration)]
    pub max_link_validity: Duration,

    /// Longest validity a caller may ask for a DIRECT link (`input.expiresInSeconds`; the Kill
    /// the Clipboard profile suggests 24 to 48 hours for a printed QR code).
    #[arg(long, env = "SHL_GATEWAY_MAX_DIRECT_LINK_VALIDITY", default_value = "48h", value_parser = parse_duration)]
    pub max_direct_link_validity: Duration,

    /// Wrong passcodes a link tolerates in its lifetime before it locks.
    #[arg(long, env = "SHL_GATEWAY_PASSCODE_ATTEMPTS", default_value_t = 5)]
    pub passcode_attempts: u32,

    /// Lifetime of the file location URLs a manifest hands out (at most 1h).
    #[arg(long, env = "SHL_GATEWAY_LOCATION_TICKET_LIFETIME", default_value = "300s", value_parser = parse_duration)]
    pub location_ticket_lifetime: Duration,

    /// How often expired and revoked links lose their encrypted file.
    #[arg(long, env = "SHL_GATEWAY_PURGE_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub purge_interval: Duration,

    /// How long link metadata and access history stay after a link ends.
    #[arg(long, env = "SHL_GATEWAY_LINK_RETENTION", default_value = "90days", value_parser = parse_duration)]
    pub link_retention: Duration,

    /// Passcode hashes (argon2id, 19 MiB each) computed at once; more wait.
    #[arg(
        long,
        env = "SHL_GATEWAY_MAX_CONCURRENT_PASSCODE_HASHES",
        default_value_t = 2
    )]
    pub max_concurrent_passcode_hashes: usize,

    /// PDFs (a DIRECT link's rendered summary and story) rendered at once; more wait. Default:
    /// one fewer than the cores, like QR codes.
    #[arg(
        long,
        env = "SHL_GATEWAY_MAX_CONCURRENT_PDF_RENDERS",
        default_value_t = crate::qr::default_concurrent_renders()
    )]
    pub max_concurrent_pdf_renders: usize,
}

/// Embedded mode's app attestation (Kill the Clipboard, optional): the key that signs the JWT
/// every DIRECT link's Bundle carries, the app's URL it names, and the retired keys the JWKS
/// still publishes. Becomes an `AppAttestation` ([`AttestationConfig::load`]).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "App attestation")]
pub struct AttestationConfig {
    /// Embedded mode: EC P-256 private key (PKCS#8 PEM) that signs the app attestation of
    /// every DIRECT link's Bundle; also serves /.well-known/jwks.json. Narrowed to 0600 at
    /// start if wider. Make one with `shl-gateway attestation new-key --out FILE`.
    #[arg(long, env = "SHL_GATEWAY_ATTESTATION_KEY_FILE")]
    pub attestation_key_file: Option<PathBuf>,

    /// The app's canonical https URL, the attestation's `iss`; receivers fetch
    /// `{iss}/.well-known/jwks.json`. Default: --public-url.
    #[arg(
        long,
        env = "SHL_GATEWAY_ATTESTATION_ISSUER",
        requires = "attestation_key_file"
    )]
    pub attestation_issuer: Option<Url>,

    /// A former attestation key (PKCS#8 private or SPKI public PEM), published in the JWKS but
    /// never used to sign; repeat the flag (or comma-separate in the variable) for several.
    #[arg(
        long,
        env = "SHL_GATEWAY_ATTESTATION_RETIRED_KEY_FILE",
        value_delimiter = ',',
        requires = "attestation_key_file"
    )]
    pub attestation_retired_key_file: Vec<PathBuf>,
}

/// The GraphQL API: operation limits, introspection, the playground, QR rendering and
/// idempotent retries. Becomes [`SchemaOptions`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "GraphQL")]
pub struct GraphqlConfig {
    /// Deepest field nesting of an operation (GraphiQL's introspection query needs 13).
    #[arg(long, env = "SHL_GATEWAY_MAX_DEPTH", default_value_t = 15)]
    pub max_depth: usize,

    /// Highest operation complexity: 1 per field, qrCodeSvg 50.
    #[arg(long, env = "SHL_GATEWAY_MAX_COMPLEXITY", default_value_t = 250)]
    pub max_complexity: usize,

    /// Longest GraphQL query text, in bytes.
    #[arg(long, env = "SHL_GATEWAY_MAX_QUERY_BYTES", default_value_t = 16 * 1024)]
    pub max_query_bytes: usize,

    /// Most aliases in one document.
    #[arg(long, env = "SHL_GATEWAY_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: usize,

    /// Most root fields in one operation (fragments expanded).
    #[arg(long, env = "SHL_GATEWAY_MAX_ROOT_FIELDS", default_value_t = 10)]
    pub max_root_fields: usize,

    /// Most directives in one document.
    #[arg(long, env = "SHL_GATEWAY_MAX_DIRECTIVES", default_value_t = 20)]
    pub max_directives: usize,

    /// Most createHealthLink executions in one request (aliases count): each is a disclosure.
    #[arg(long, env = "SHL_GATEWAY_MAX_LINKS_PER_REQUEST", default_value_t = 1)]
    pub max_links_per_request: usize,

    /// Deepest nesting of `[` and `{` in a document, selection sets included, checked before
    /// parsing (the parser recurses on nested values): at least --max-depth, at most 128.
    #[arg(long, env = "SHL_GATEWAY_MAX_VALUE_DEPTH", default_value_t = 64)]
    pub max_value_depth: usize,

    /// Answer introspection queries and suggest field names in errors.
    #[arg(long, env = "SHL_GATEWAY_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,

    /// Serve the GraphiQL playground at /graphiql.
    #[arg(long, env = "SHL_GATEWAY_GRAPHIQL", default_value_t = true, action = clap::ArgAction::Set)]
    pub graphiql: bool,

    /// Where `npm ci --prefix graphiql` installed the playground's assets.
    #[arg(
        long,
        env = "SHL_GATEWAY_GRAPHIQL_ASSETS_DIR",
        default_value = "graphiql/node_modules"
    )]
    pub graphiql_assets_dir: PathBuf,

    /// QR codes encoded at once (a few milliseconds of CPU each); more wait. The default,
    /// one fewer than the cores (at least 1), keeps a core for requests without a QR code.
    #[arg(
        long,
        env = "SHL_GATEWAY_MAX_CONCURRENT_QR_RENDERS",
        default_value_t = crate::qr::default_concurrent_renders()
    )]
    pub max_concurrent_qr_renders: usize,

    /// How long an Idempotency-Key's first answer is kept for retries (encrypted per caller).
    #[arg(long, env = "SHL_GATEWAY_IDEMPOTENCY_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub idempotency_window: Duration,
}

/// The five quotas (see README, Limits) and the in-process store's size. Becomes [`QuotaSpecs`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate limits")]
pub struct QuotaConfig {
    /// createHealthLink per caller (bearer token): BURST/PERIOD.
    #[arg(
        long,
        env = "SHL_GATEWAY_LINK_QUOTA_PER_CALLER",
        default_value = "5/1m"
    )]
    pub link_quota_per_caller: QuotaSpec,

    /// createHealthLink per client address (IPv6 by /64).
    #[arg(long, env = "SHL_GATEWAY_LINK_QUOTA_PER_IP", default_value = "20/1m")]
    pub link_quota_per_ip: QuotaSpec,

    /// Any request per client address (probes and metrics excepted).
    #[arg(long, env = "SHL_GATEWAY_HTTP_QUOTA_PER_IP", default_value = "600/1m")]
    pub http_quota_per_ip: QuotaSpec,

    /// SHL manifest, file and direct requests per client address.
    #[arg(long, env = "SHL_GATEWAY_SHL_QUOTA_PER_IP", default_value = "30/1m")]
    pub shl_quota_per_ip: QuotaSpec,

    /// SHL manifest, file and direct requests per link.
    #[arg(long, env = "SHL_GATEWAY_SHL_QUOTA_PER_LINK", default_value = "60/1m")]
    pub shl_quota_per_link: QuotaSpec,

    /// Keys each in-process quota holds at most (about 45 bytes each).
    #[arg(
        long,
        env = "SHL_GATEWAY_RATE_LIMIT_MAX_KEYS",
        default_value_t = 100_000
    )]
    pub rate_limit_max_keys: usize,
}

/// Redis, shared by the replicas for quotas and idempotent answers.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisConfig {
    /// Shared rate limits across replicas: `redis://host:6379/`. Default: in process.
    #[arg(long, env = "SHL_GATEWAY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretString>,

    /// Prefix of every Redis key the gateway writes.
    #[arg(
        long,
        env = "SHL_GATEWAY_REDIS_KEY_PREFIX",
        default_value = "shl-gateway:"
    )]
    pub redis_key_prefix: String,

    /// Longest wait for one Redis rate-limit check.
    #[arg(long, env = "SHL_GATEWAY_REDIS_TIMEOUT", default_value = "100ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// When Redis cannot answer: refuse limited requests (OVERLOADED), or limit per replica.
    #[arg(long, env = "SHL_GATEWAY_REDIS_FAILURE_POLICY", value_parser = redis_failure_policy(), default_value = "fall-back-to-in-process")]
    pub redis_failure_policy: RedisFailurePolicy,
}

/// Where the audit trail is written.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Audit trail")]
pub struct AuditConfig {
    /// The audit trail as a JSON-lines file (single instance). Default: `<data-dir>/audit.jsonl`.
    #[arg(long, env = "SHL_GATEWAY_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,

    /// The audit trail in PostgreSQL instead of a file (replicas: one chain each).
    #[arg(long, env = "SHL_GATEWAY_AUDIT_DATABASE_URL", hide_env_values = true)]
    pub audit_database_url: Option<SecretString>,

    /// This writer's chain name (one per replica: e.g. the pod name). Default: `gateway`.
    #[arg(long, env = "SHL_GATEWAY_AUDIT_CHAIN", default_value = "gateway")]
    pub audit_chain: String,
}

/// The secret key, and the directory where a single instance keeps its state. `audit verify`
/// takes the same flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Secret key and data directory")]
pub struct KeyConfig {
    /// Key for every HMAC the gateway makes; at least 32 bytes, the same on every replica.
    /// Prefer --secret-key-file. Neither given: the one kept in --data-dir, which `serve`
    /// generates on first start.
    #[arg(
        long,
        env = "SHL_GATEWAY_SECRET_KEY",
        hide_env_values = true,
        conflicts_with = "secret_key_file"
    )]
    pub secret_key: Option<SecretString>,

    /// File holding the secret key (a trailing newline is ignored).
    #[arg(long, env = "SHL_GATEWAY_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// Directory for state a single instance keeps: the generated secret key, and by default
    /// the SQLite store and the audit file.
    #[arg(long, env = "SHL_GATEWAY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

/// Logs and traces.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging and telemetry")]
pub struct TelemetryConfig {
    /// Log line format.
    #[arg(long, env = "SHL_GATEWAY_LOG_FORMAT", value_parser = log_format(), default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `shl_gateway=debug,info`).
    #[arg(long, env = "SHL_GATEWAY_LOG_FILTER", default_value = "info")]
    pub log_filter: String,

    /// Export spans to this OTLP/HTTP collector (e.g. http://collector:4318/v1/traces). Needs
    /// a build with `--features otel`.
    #[arg(long, env = "SHL_GATEWAY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl Default for Config {
    /// The command line's defaults: what `shl-gateway` runs with given no flag and no
    /// `SHL_GATEWAY_*` variable. The environment is not read, so tests get the same
    /// configuration on every machine whatever is exported in their shell.
    fn default() -> Self {
        let matches = Self::defaults_command()
            .try_get_matches_from(["shl-gateway"])
            .expect("every flag has a default or is optional");
        Self::from_arg_matches(&matches).expect("the defaults parse into a Config")
    }
}

fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

pub(crate) use crate::crypto::SecretKey;

impl Config {
    /// `serve`'s flags with every `env` removed: parsing it reads the defaults and nothing else.
    fn defaults_command() -> clap::Command {
        Self::augment_args(clap::Command::new("shl-gateway")).mut_args(|arg| arg.env(None))
    }

    /// Checks what clap cannot, with messages that name the flag and its variable.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.upstream.validate()?;
        self.embedded.validate()?;
        self.attestation.validate()?;
        if self.embedded.public_url.is_none()
            && self.upstream.upstream_url.is_none()
            && self.listener.listen.ip().is_unspecified()
        {
            bail!(
                "--public-url (SHL_GATEWAY_PUBLIC_URL) is required when listening on {}: links \
                 must name an address receivers can reach",
                self.listener.listen.ip()
            );
        }
        self.listener.validate()?;
        self.graphql.validate()
    }
}

impl ListenerConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!(
                "--tls-cert and --tls-key (SHL_GATEWAY_TLS_CERT, SHL_GATEWAY_TLS_KEY) go together"
            );
        }
        if self.max_body_bytes < 1024 {
            bail!("--max-body-bytes (SHL_GATEWAY_MAX_BODY_BYTES) must be at least 1024");
        }
        if self.header_read_timeout.is_zero()
            || self.request_body_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.http2_keep_alive_interval.is_zero()
        {
            bail!(
                "--header-read-timeout, --request-body-timeout, --idle-timeout and \
                 --http2-keep-alive-interval must be longer than 0"
            );
        }
        if self.max_connections == 0 || self.http2_max_concurrent_streams == 0 {
            bail!("--max-connections and --http2-max-concurrent-streams must be at least 1");
        }
        for origin in &self.cors_allowed_origins {
            let parsed = Url::parse(origin).ok();
            let is_origin = parsed.as_ref().is_some_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.path() == "/"
                    && url.query().is_none()
                    && !origin.ends_with('/')
            });
            if !is_origin {
                bail!(
                    "--cors-allowed-origins (SHL_GATEWAY_CORS_ALLOWED_ORIGINS): {origin:?} is not \
                     an origin like https://app.example.org"
                );
            }
        }
        Ok(())
    }

    /// The HTTP layer's settings. The playground's directory comes from the GraphQL group and
    /// the work slots are made at startup (shutdown waits for them too).
    pub(crate) fn http_settings(
        &self,
        graphiql_assets_dir: Option<PathBuf>,
        work_slots: WorkSlots,
    ) -> anyhow::Result<HttpSettings> {
        Ok(HttpSettings {
            max_body_bytes: self.max_body_bytes,
            cors_allowed_origins: self
                .cors_allowed_origins
                .iter()
                .map(|origin| HeaderValue::from_str(origin))
                .collect::<Result<_, _>>()
                .context("--cors-allowed-origins")?,
            graphiql_assets_dir,
            // Known only once demo mode has its token: set by `startup`.
            graphiql_demo_token: None,
            metrics_route: self.metrics_listen.is_none(),
            work_slots,
            trusted_proxies: self.trusted_proxies.clone(),
            request_body_timeout: self.request_body_timeout,
        })
    }
}

impl From<&ListenerConfig> for ConnectionLimits {
    fn from(listener: &ListenerConfig) -> Self {
        Self {
            max_connections: listener.max_connections,
            max_connections_per_ip: listener.max_connections_per_ip,
            header_read_timeout: listener.header_read_timeout,
            idle_timeout: listener.idle_timeout,
            http2_max_concurrent_streams: listener.http2_max_concurrent_streams,
            http2_max_pending_accept_reset_streams: listener.http2_max_pending_reset_streams,
            http2_keep_alive_interval: listener.http2_keep_alive_interval,
            trusted_proxies: listener.trusted_proxies.clone(),
        }
    }
}

impl UpstreamConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.upstream_url
            && !matches!(url.scheme(), "http" | "https")
        {
            bail!("--upstream-url (SHL_GATEWAY_UPSTREAM_URL) must be an http(s) URL");
        }
        if self.upstream_timeout.is_zero() || self.upstream_connect_timeout.is_zero() {
            bail!("--upstream-timeout and --upstream-connect-timeout must be longer than 0");
        }
        Ok(())
    }

    /// The client's settings in upstream mode; `None` without `--upstream-url` (embedded mode).
    pub(crate) fn settings(&self) -> Option<UpstreamSettings> {
        Some(UpstreamSettings {
            url: self.upstream_url.clone()?,
            connect_timeout: self.upstream_connect_timeout,
            total_timeout: self.upstream_timeout,
            max_response_bytes: self.upstream_max_response_bytes,
        })
    }

    pub(crate) fn breaker(&self) -> CircuitBreaker {
        CircuitBreaker::new(
            self.upstream_breaker_failures,
            self.upstream_breaker_cooldown,
        )
    }
}

impl EmbeddedConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.public_url {
            let plain = matches!(url.scheme(), "http" | "https")
                && url.query().is_none()
                && url.fragment().is_none();
            if !plain {
                bail!(
                    "--public-url (SHL_GATEWAY_PUBLIC_URL) must be an http(s) URL without query or fragment"
                );
            }
        }
        if self.location_ticket_lifetime.is_zero()
            || self.location_ticket_lifetime > Duration::from_secs(3600)
        {
            bail!("--location-ticket-lifetime must be between 1s and 1h (SHL rule)");
        }
        if !(1..=100).contains(&self.passcode_attempts) {
            bail!("--passcode-attempts must be between 1 and 100");
        }
        if self.link_validity.is_zero()
            || self.direct_link_validity.is_zero()
            || self.purge_interval.is_zero()
        {
            bail!(
                "--link-validity, --direct-link-validity and --purge-interval must be longer than 0"
            );
        }
        if self.link_validity > self.max_link_validity {
            bail!("--link-validity must not be longer than --max-link-validity");
        }
        if self.direct_link_validity > self.max_direct_link_validity {
            bail!("--direct-link-validity must not be longer than --max-direct-link-validity");
        }
        Ok(())
    }

    /// The issuer's settings, with `default_public_url` (the bound listener's) when
    /// `--public-url` is not set.
    pub(crate) fn settings(&self, default_public_url: Url) -> EmbeddedSettings {
        EmbeddedSettings {
            public_url: self.public_url.clone().unwrap_or(default_public_url),
            identifier_system: self.identifier_system.clone(),
            passcode_link_validity: self.link_validity,
            direct_link_validity: self.direct_link_validity,
            max_passcode_link_validity: self.max_link_validity,
            max_direct_link_validity: self.max_direct_link_validity,
            max_concurrent_pdf_renders: self.max_concurrent_pdf_renders,
            passcode_attempts: self.passcode_attempts,
            location_ticket_lifetime: self.location_ticket_lifetime,
        }
    }
}

impl AttestationConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.attestation_issuer {
            let local = url.host().is_some_and(|host| match host {
                url::Host::Domain(name) => name == "localhost",
                url::Host::Ipv4(address) => address.is_loopback(),
                url::Host::Ipv6(address) => address.is_loopback(),
            });
            let secure = url.scheme() == "https" || (url.scheme() == "http" && local);
            if !secure || url.query().is_some() || url.fragment().is_some() {
                bail!(
                    "--attestation-issuer (SHL_GATEWAY_ATTESTATION_ISSUER) must be an https URL \
                     without query or fragment (http only on loopback)"
                );
            }
        }
        Ok(())
    }

    /// The attestation of embedded mode's DIRECT links, or `None` without
    /// `--attestation-key-file`. `public_url` (the embedded issuer's) is the default `iss`.
    /// Errors name the flag and the file, never the key.
    pub(crate) fn load(&self, public_url: &Url) -> anyhow::Result<Option<AppAttestation>> {
        const ACTIVE: &str = "--attestation-key-file (SHL_GATEWAY_ATTESTATION_KEY_FILE)";
        const RETIRED: &str =
            "--attestation-retired-key-file (SHL_GATEWAY_ATTESTATION_RETIRED_KEY_FILE)";
        let Some(path) = &self.attestation_key_file else {
            return Ok(None);
        };
        let pem = read_key_pem(path, ACTIVE)?;
        let key = parse_private_key(&pem)
            .map_err(|error| anyhow::anyhow!("{ACTIVE}: {}: {error}", path.display()))?;
        let mut retired = Vec::with_capacity(self.attestation_retired_key_file.len());
        for path in &self.attestation_retired_key_file {
            let pem = read_key_pem(path, RETIRED)?;
            retired.push(
                parse_retired_key(&pem)
                    .map_err(|error| anyhow::anyhow!("{RETIRED}: {}: {error}", path.display()))?,
            );
        }
        let issuer = self.attestation_issuer.as_ref().unwrap_or(public_url);
        if issuer.scheme() != "https" {
            tracing::warn!(
                issuer = %issuer,
                "the attestation issuer is not https: receivers expect the app's canonical https \
                 URL (--attestation-issuer or --public-url)"
            );
        }
        let attestation = AppAttestation::new(issuer.as_str(), key, &retired)
            .map_err(|error| anyhow::anyhow!("{RETIRED}: {error}"))?;
        Ok(Some(attestation))
    }
}

/// A PEM key file's text, wiped when dropped. A file holding a private key is narrowed to
/// `0600` first if group or others may use it (with a warning), as the data directory's key is.
fn read_key_pem(path: &Path, flag: &str) -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{flag}: {} is not a PEM file", path.display()))?;
    if text.contains("PRIVATE KEY-----") {
        crate::files::tighten(path)
            .with_context(|| format!("{flag}: cannot narrow {} to 0600", path.display()))?;
    }
    Ok(Zeroizing::new(text.to_owned()))
}

/// `attestation new-key --out FILE`: a fresh P-256 key, written `0600` to a file that must not
/// exist yet. Returns the key's `kid`.
pub fn write_new_attestation_key(path: &Path) -> anyhow::Result<String> {
    let (pem, kid) = new_private_key_pem().map_err(|error| anyhow::anyhow!("{error}"))?;
    write_private_file(path, pem.as_bytes()).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: new-key never overwrites a key",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot write {}: {error}", path.display())
        }
    })?;
    Ok(kid)
}

impl GraphqlConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.max_depth == 0 || self.max_complexity == 0 {
            bail!("--max-depth and --max-complexity must be at least 1");
        }
        // Selection sets nest with `{` too, so a bound below --max-depth would refuse documents
        // the depth limit allows; above the ceiling the parser's own recursion is unsafe.
        if !(self.max_depth..=crate::graphql::MAX_VALUE_DEPTH_CEILING)
            .contains(&self.max_value_depth)
        {
            bail!(
                "--max-value-depth (SHL_GATEWAY_MAX_VALUE_DEPTH) must be between --max-depth ({}) and {}",
                self.max_depth,
                crate::graphql::MAX_VALUE_DEPTH_CEILING
            );
        }
        Ok(())
    }

    /// Where the playground's assets are, or `None` when `--graphiql false` turns it off.
    pub(crate) fn graphiql_assets_dir(&self) -> Option<PathBuf> {
        self.graphiql.then(|| self.graphiql_assets_dir.clone())
    }
}

impl From<&GraphqlConfig> for SchemaOptions {
    fn from(graphql: &GraphqlConfig) -> Self {
        Self {
            limits: OperationLimits {
                max_depth: graphql.max_depth,
                max_complexity: graphql.max_complexity,
                max_query_bytes: graphql.max_query_bytes,
                max_aliases: graphql.max_aliases,
                max_root_fields: graphql.max_root_fields,
                max_directives: graphql.max_directives,
                max_link_creations: graphql.max_links_per_request,
                max_value_depth: graphql.max_value_depth,
            },
            introspection: graphql.introspection,
            max_concurrent_qr_renders: graphql.max_concurrent_qr_renders,
        }
    }
}

impl From<&QuotaConfig> for QuotaSpecs {
    fn from(quotas: &QuotaConfig) -> Self {
        Self {
            links_per_caller: quotas.link_quota_per_caller,
            links_per_ip: quotas.link_quota_per_ip,
            http_per_ip: quotas.http_quota_per_ip,
            shl_per_ip: quotas.shl_quota_per_ip,
            shl_per_link: quotas.shl_quota_per_link,
        }
    }
}

impl KeyConfig {
    /// The secret key from --secret-key, --secret-key-file, or (single instance) the data
    /// directory, where one is generated on first start.
    pub fn load_secret_key(&self) -> anyhow::Result<SecretKey> {
        if self.secret_key.is_none() && self.secret_key_file.is_none() {
            // Single instance: make the key on first start; reading it is then the same path.
            load_or_create_key(&self.data_dir)?;
        }
        self.load_existing()
    }

    /// The configured key, or the one kept in the data directory; never a new one (for
    /// commands that need the gateway's key but must never create one).
    pub fn load_existing(&self) -> anyhow::Result<SecretKey> {
        let key = if let Some(key) = &self.secret_key {
            key.expose_secret().as_bytes().to_vec()
        } else {
            let path = self
                .secret_key_file
                .clone()
                .unwrap_or_else(|| self.data_dir.join("secret-key"));
            read_key_file(&path).with_context(|| {
                format!(
                    "cannot read the secret key from {} (--secret-key-file or --data-dir)",
                    path.display()
                )
            })?
        };
        if key.len() < MIN_SECRET_KEY_BYTES {
            bail!("the secret key must be at least {MIN_SECRET_KEY_BYTES} bytes");
        }
        Ok(SecretBox::new(Box::new(key)))
    }
}

fn read_key_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    while bytes
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        bytes.pop();
    }
    Ok(bytes)
}

/// The generated key is 32 random bytes, base64url: printable, so an operator can copy it to
/// other replicas' `--secret-key-file`.
fn load_or_create_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let path = data_dir.join("secret-key");
    match read_key_file(&path) {
        Ok(key) => return Ok(key),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", path.display()));
        }
    }
    crate::files::create_private_dir(data_dir).with_context(|| {
        format!(
            "--data-dir (SHL_GATEWAY_DATA_DIR): cannot create {}",
            data_dir.display()
        )
    })?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    write_private_file(&path, encoded.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(encoded.into_bytes())
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The headings `--help` groups `serve`'s flags under, in order.
    const HEADINGS: [&str; 10] = [
        "Listener",
        "Upstream mode (b.well)",
        "Embedded issuer",
        "App attestation",
        "GraphQL",
        "Rate limits",
        "Redis",
        "Audit trail",
        "Secret key and data directory",
        "Logging and telemetry",
    ];

    fn with_upstream() -> Config {
        let mut config = Config::default();
        config.upstream.upstream_url = Some(Url::parse("http://127.0.0.1:9/graphql").expect("url"));
        config
    }

    /// `--flag` reads `SHL_GATEWAY_FLAG`; `--patient-token`, repeatable, reads the plural.
    fn variable_of(long: &str) -> String {
        let name = if long == "patient-token" {
            "patient-tokens"
        } else {
            long
        };
        format!("SHL_GATEWAY_{}", name.replace('-', "_").to_uppercase())
    }

    fn serve_flags() -> Vec<clap::Arg> {
        Cli::command()
            .get_arguments()
            .filter(|arg| !matches!(arg.get_long(), Some("help" | "version")))
            .cloned()
            .collect()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_command_line() {
        // The real command line, with and without `serve`, its variables switched off as
        // `Config::default` does: all three must agree on every field.
        let command = Cli::command()
            .mut_args(|arg| arg.env(None))
            .mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None)));
        let defaults = format!("{:?}", Config::default());
        let bare = command
            .clone()
            .try_get_matches_from(["shl-gateway"])
            .expect("parses");
        let bare = Cli::from_arg_matches(&bare).expect("a Cli");
        assert_eq!(format!("{:?}", bare.serve), defaults);
        let serve = command
            .try_get_matches_from(["shl-gateway", "serve"])
            .expect("parses");
        let Some(Command::Serve(serve)) = Cli::from_arg_matches(&serve).expect("a Cli").command
        else {
            panic!("serve");
        };
        assert_eq!(format!("{serve:?}"), defaults);

        // And the values the README documents, one or more per group.
        let config = Config::default();
        assert_eq!(
            config.listener.listen,
            "127.0.0.1:8080".parse().expect("address")
        );
        assert_eq!(config.listener.max_body_bytes, 65_536);
        assert_eq!(config.listener.max_connections, 4096);
        assert_eq!(config.listener.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.upstream.upstream_timeout, Duration::from_secs(10));
        assert_eq!(config.upstream.upstream_max_response_bytes, 1_048_576);
        assert_eq!(config.embedded.demo, DemoMode::Auto);
        assert_eq!(
            config.embedded.link_retention,
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(config.graphql.max_complexity, 250);
        assert_eq!(config.graphql.max_value_depth, 64);
        assert!(config.graphql.graphiql);
        assert_eq!(config.graphql.idempotency_window, Duration::from_secs(600));
        assert_eq!(
            config.quotas.link_quota_per_caller,
            "5/1m".parse().expect("spec")
        );
        assert_eq!(config.quotas.rate_limit_max_keys, 100_000);
        assert_eq!(
            config.redis.redis_failure_policy,
            RedisFailurePolicy::FallBackToInProcess
        );
        assert_eq!(config.audit.audit_chain, "gateway");
        assert_eq!(config.key.data_dir, PathBuf::from(".shl-gateway"));
        assert_eq!(config.telemetry.log_format, LogFormat::Text);
    }

    #[test]
    fn defaults_never_read_the_environment() {
        assert!(
            Config::defaults_command()
                .get_arguments()
                .all(|arg| arg.get_env().is_none())
        );
    }

    #[test]
    fn every_flag_reads_its_variable() {
        let flags = serve_flags();
        assert!(flags.len() > 60, "{}", flags.len());
        for arg in flags {
            let long = arg.get_long().expect("every serve flag is long");
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            assert_eq!(env, Some(variable_of(long)), "--{long}");
        }
    }

    #[test]
    fn the_readme_documents_every_flag() {
        let readme = include_str!("../README.md");
        for arg in serve_flags() {
            let long = arg.get_long().expect("every serve flag is long");
            assert!(readme.contains(&format!("`--{long}`")), "--{long}");
        }
    }

    #[test]
    fn help_groups_the_flags_under_their_headings() {
        let help = Cli::command().render_long_help().to_string();
        let mut from = 0;
        for heading in HEADINGS {
            let at = help[from..]
                .find(&format!("\n{heading}:\n"))
                .unwrap_or_else(|| panic!("{heading} missing or out of order"));
            from += at;
        }
        for arg in serve_flags() {
            let heading = arg
                .get_help_heading()
                .expect("every serve flag has a heading");
            assert!(HEADINGS.contains(&heading), "{heading}");
        }
    }

    #[test]
    fn the_redis_failure_policy_reads_its_names() {
        for (name, policy) in [
            ("fail-closed", RedisFailurePolicy::FailClosed),
            (
                "fall-back-to-in-process",
                RedisFailurePolicy::FallBackToInProcess,
            ),
        ] {
            let cli =
                Cli::try_parse_from(["shl-gateway", "--redis-failure-policy", name]).expect(name);
            assert_eq!(cli.serve.redis.redis_failure_policy, policy);
        }
        assert!(Cli::try_parse_from(["shl-gateway", "--redis-failure-policy", "open"]).is_err());
    }

    #[test]
    fn audit_verify_takes_the_key_flags_of_serve() {
        let cli = Cli::try_parse_from([
            "shl-gateway",
            "audit",
            "verify",
            "audit.jsonl",
            "--secret-key-file",
            "key",
            "--data-dir",
            "state",
        ])
        .expect("parses");
        let Some(Command::Audit {
            command: AuditCommand::Verify { key, .. },
        }) = cli.command
        else {
            panic!("audit verify");
        };
        assert_eq!(key.secret_key_file, Some(PathBuf::from("key")));
        assert_eq!(key.data_dir, PathBuf::from("state"));
        let both = Cli::try_parse_from([
            "shl-gateway",
            "audit",
            "verify",
            "audit.jsonl",
            "--secret-key",
            "k",
            "--secret-key-file",
            "key",
        ]);
        assert!(both.is_err(), "--secret-key and --secret-key-file conflict");
    }

    #[test]
    fn the_value_depth_stays_between_the_field_depth_and_the_parsers_ceiling() {
        for (depth, accepted) in [
            (15, true),
            (64, true),
            (128, true),
            (14, false),
            (129, false),
        ] {
            let mut config = Config::default();
            config.graphql.max_value_depth = depth;
            assert_eq!(config.validate().is_ok(), accepted, "{depth}");
        }
    }

    #[test]
    fn a_default_validity_fits_within_its_bound() {
        let mut config = Config::default();
        assert_eq!(
            config.embedded.max_link_validity,
            Duration::from_secs(48 * 3600)
        );
        assert_eq!(
            config.embedded.max_direct_link_validity,
            Duration::from_secs(48 * 3600)
        );
        config.embedded.max_direct_link_validity = Duration::from_secs(60);
        let error = config.validate().expect_err("10m default over a 1m bound");
        assert!(error.to_string().contains("--max-direct-link-validity"));
        let mut config = Config::default();
        config.embedded.link_validity = Duration::from_secs(49 * 3600);
        let error = config.validate().expect_err("over the 48h bound");
        assert!(error.to_string().contains("--max-link-validity"));
    }

    #[test]
    fn a_wildcard_listener_needs_a_public_url_in_embedded_mode() {
        let mut config = Config::default();
        config.listener.listen = "0.0.0.0:8080".parse().expect("address");
        let error = config.validate().expect_err("no public url");
        assert!(error.to_string().contains("SHL_GATEWAY_PUBLIC_URL"));
        config.embedded.public_url = Some(Url::parse("https://shl.example.org").expect("url"));
        assert!(config.validate().is_ok());
        assert!(
            Config::default().validate().is_ok(),
            "loopback default works as is"
        );
    }

    #[test]
    fn the_attestation_issuer_is_an_https_url() {
        for (issuer, accepted) in [
            ("https://app.example.org", true),
            ("https://app.example.org/shl", true),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080", true),
            ("http://app.example.org", false),
            ("https://app.example.org/?a=b", false),
            ("ftp://app.example.org", false),
        ] {
            let mut config = Config::default();
            config.attestation.attestation_key_file = Some(PathBuf::from("key.pem"));
            config.attestation.attestation_issuer = Some(Url::parse(issuer).expect("url"));
            assert_eq!(config.validate().is_ok(), accepted, "{issuer}");
        }
    }

    #[test]
    fn attestation_flags_need_the_key() {
        for flag in ["--attestation-issuer", "--attestation-retired-key-file"] {
            let value = if flag == "--attestation-issuer" {
                "https://app.example.org"
            } else {
                "old.pem"
            };
            assert!(
                Cli::try_parse_from(["shl-gateway", flag, value]).is_err(),
                "{flag}"
            );
            let cli = Cli::try_parse_from([
                "shl-gateway",
                "--attestation-key-file",
                "key.pem",
                flag,
                value,
            ])
            .expect(flag);
            assert!(cli.serve.attestation.attestation_key_file.is_some());
        }
        let cli = Cli::try_parse_from([
            "shl-gateway",
            "--attestation-key-file",
            "key.pem",
            "--attestation-retired-key-file",
            "a.pem",
            "--attestation-retired-key-file",
            "b.pem",
        ])
        .expect("repeatable");
        assert_eq!(cli.serve.attestation.attestation_retired_key_file.len(), 2);
    }

    #[test]
    fn new_key_takes_an_output_file() {
        let cli = Cli::try_parse_from(["shl-gateway", "attestation", "new-key", "--out", "k.pem"])
            .expect("parses");
        let Some(Command::Attestation {
            command: AttestationCommand::NewKey { out },
        }) = cli.command
        else {
            panic!("attestation new-key");
        };
        assert_eq!(out, PathBuf::from("k.pem"));
        assert!(Cli::try_parse_from(["shl-gateway", "attestation", "new-key"]).is_err());
    }

    #[test]
    fn patient_tokens_parse_without_echoing_the_token() {
        let parsed: PatientToken = "a-long-enough-token-1234=patient-1".parse().expect("valid");
        assert_eq!(parsed.patient_id, "patient-1");
        assert!(!format!("{parsed:?}").contains("a-long-enough"));
        for bad in [
            "no-equals-sign-here-at-all",
            "short=patient",
            "a-long-enough-token-1234=",
            "a-long-enough-token-1234=bad id",
        ] {
            let error = bad.parse::<PatientToken>().expect_err(bad);
            assert!(!error.contains("token-1234"), "{error}");
        }
    }

    #[test]
    fn cors_origins_must_be_origins() {
        let mut config = with_upstream();
        config.listener.cors_allowed_origins = vec!["https://app.example.org".into()];
        assert!(config.validate().is_ok());
        for bad in [
            "*",
            "https://app.example.org/",
            "https://app.example.org/path",
            "ftp://x",
        ] {
            config.listener.cors_allowed_origins = vec![bad.into()];
            assert!(config.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn short_secret_keys_are_refused() {
        let key = KeyConfig {
            secret_key: Some(SecretString::from("too short")),
            ..with_upstream().key
        };
        let error = key.load_secret_key().expect_err("short");
        assert!(!error.to_string().contains("too short"));
    }

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyConfig {
            data_dir: dir.path().join("data"),
            ..with_upstream().key
        };
        let first = key.load_secret_key().expect("generated");
        let second = key.load_secret_key().expect("reloaded");
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= MIN_SECRET_KEY_BYTES);
        assert_eq!(
            key.load_existing().expect("kept").expose_secret(),
            first.expose_secret(),
            "audit verify reads the same key"
        );
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let mut config = with_upstream();
        config.key.secret_key = Some(SecretString::from("x".repeat(40)));
        assert!(!format!("{config:?}").contains(&"x".repeat(40)));
    }
}
