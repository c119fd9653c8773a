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
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;
use zeroize::Zeroizing;

use crate::bridge::{BridgeSettings, HostPatterns};
use crate::crypto::attestation::{
    AppAttestation, new_private_key_pem, parse_private_key, parse_retired_key,
};
use crate::database::DatabaseKind;
use crate::graphql::{OperationLimits, SchemaOptions};
use crate::http::server::ConnectionLimits;
use crate::http::{HttpSettings, WorkSlots};
use crate::inspect::{InspectInput, InspectOptions, ProfileChoice};
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
    /// Prints the patient id, to map a token to it with --patient-token TOKEN=ID, and on stderr
    /// what was imported and what was skipped.
    ImportBundle {
        /// The Bundle file (collection, document, transaction or searchset): exactly one
        /// Patient; resources of the shareable types are imported, the rest is skipped.
        file: PathBuf,
        /// The embedded store, as `serve` takes it: sqlite://PATH?mode=rwc or
        /// postgres://USER:PASSWORD@HOST:5432/DATABASE. Default: the SQLite file in --data-dir.
        #[arg(long, env = "SHL_GATEWAY_DATABASE_URL", hide_env_values = true)]
        database_url: Option<SecretString>,
        /// The gateway's data directory, as `serve` takes it (for its SQLite store).
        #[arg(long, env = "SHL_GATEWAY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Refuse the Bundle, naming what would be skipped, instead of skipping it (a document's
        /// Composition excepted: the shared Bundles are built without it).
        // The variable is off when unset, empty, `0`, `false`, `no` or `off`, and on otherwise: a
        // mistyped value refuses more, never less.
        #[arg(long, env = "SHL_GATEWAY_STRICT", value_parser = clap::builder::FalseyValueParser::new())]
        strict: bool,
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
        /// The gateway's address, as `serve` takes it (a wildcard address is probed on loopback).
        #[arg(long, env = "SHL_GATEWAY_LISTEN", default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Set (as for `serve`): the listener speaks HTTPS, so probe with HTTPS.
        #[arg(long, env = "SHL_GATEWAY_TLS_CERT")]
        tls_cert: Option<PathBuf>,
    },
    /// Receive any SMART Health Link as an EHR would and report each stage (decode, payload,
    /// retrieve, decrypt, bundle, attestation). Exits 0 only when every required check passes.
    Inspect(Box<InspectArgs>),
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

/// Parses `--patient-token` without the echo clap's own errors make (`invalid value '...'`):
/// the value holds a token, so the message says what is wrong and never repeats it.
#[derive(Debug, Clone, Copy)]
struct PatientTokenParser;

impl TypedValueParser for PatientTokenParser {
    type Value = PatientToken;

    fn parse_ref(
        &self,
        command: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PatientToken, clap::Error> {
        let reason = match value.to_str().map(str::parse::<PatientToken>) {
            Some(Ok(token)) => return Ok(token),
            Some(Err(reason)) => reason,
            None => "the value is not UTF-8",
        };
        let message = format!(
            "invalid value for --patient-token (SHL_GATEWAY_PATIENT_TOKEN): {reason} (the value \
             is not repeated: it holds a token)\n"
        );
        Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(command))
    }
}

/// Variables renamed, each as `(former name, current name)`. The former name is still read, with
/// a warning at startup, when the current one is not set.
const RENAMED_VARIABLES: [(&str, &str); 1] =
    [("SHL_GATEWAY_PATIENT_TOKENS", "SHL_GATEWAY_PATIENT_TOKEN")];

/// A variable set under its former name: read (the current name is not set), or ignored (it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenamedVariable {
    pub former: &'static str,
    pub current: &'static str,
    pub ignored: bool,
}

impl RenamedVariable {
    /// Logs the rename: both names, never the value (`SHL_GATEWAY_PATIENT_TOKENS` holds tokens).
    pub fn warn(&self) {
        if self.ignored {
            tracing::warn!(
                variable = self.former,
                replaced_by = self.current,
                "environment variable ignored: it was renamed, and the new name is set too; \
                 remove the old one"
            );
        } else {
            tracing::warn!(
                variable = self.former,
                replaced_by = self.current,
                "environment variable renamed: the old name still works for now; rename it"
            );
        }
    }
}

impl Cli {
    /// The process's command line and `SHL_GATEWAY_*` variables, plus the variables found under
    /// a former name (for `serve` to log once logging is set up).
    ///
    /// An empty variable counts as unset: `SHL_GATEWAY_UPSTREAM_URL=` in a compose file or a
    /// Kubernetes manifest means "no upstream", not "an empty URL" that fails to parse.
    pub fn from_env() -> (Self, Vec<RenamedVariable>) {
        let (command, renamed) = Self::command_for_environment(&|name| std::env::var_os(name));
        let mut matches = command.get_matches();
        match Self::from_arg_matches_mut(&mut matches) {
            Ok(cli) => (cli, renamed),
            Err(error) => error.format(&mut Self::command()).exit(),
        }
    }

    /// The command whose flags read the environment as [`Cli::from_env`] says, `lookup` giving
    /// a variable's value. Clap reads a variable when `Arg::env` is called: pointing a flag at no
    /// variable (an empty one: `--help` then shows none for it), or at its former name, is how
    /// both rules apply without changing the process's environment.
    fn command_for_environment(
        lookup: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    ) -> (clap::Command, Vec<RenamedVariable>) {
        let is_set = |name: &str| lookup(name).is_some_and(|value| !value.is_empty());
        let renamed = RENAMED_VARIABLES
            .iter()
            .filter(|(former, _)| is_set(former))
            .map(|&(former, current)| RenamedVariable {
                former,
                current,
                ignored: is_set(current),
            })
            .collect();
        let read = |arg: clap::Arg| {
            let Some(name) = arg
                .get_env()
                .and_then(|name| name.to_str())
                .map(str::to_owned)
            else {
                return arg;
            };
            if is_set(&name) {
                return arg;
            }
            let former = RENAMED_VARIABLES
                .iter()
                .find(|(former, current)| *current == name && is_set(former));
            match (former, lookup(&name)) {
                (Some((former, _)), _) => arg.env(former),
                (None, Some(_empty)) => arg.env(None),
                (None, None) => arg,
            }
        };
        (map_args(Self::command(), &read), renamed)
    }
}

/// `command` with `f` applied to every argument, subcommands' included.
fn map_args(command: clap::Command, f: &dyn Fn(clap::Arg) -> clap::Arg) -> clap::Command {
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|subcommand| subcommand.get_name().to_owned())
        .collect();
    let mut command = command.mut_args(f);
    for name in subcommands {
        command = command.mut_subcommand(name, |subcommand| map_args(subcommand, f));
    }
    command
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
    pub bridge: BridgeConfig,
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

/// Upstream mode's Kill the Clipboard bridge (opt-in): DIRECT links made from b.well's passcode
/// links, which the gateway resolves, converts and reissues. Becomes [`BridgeSettings`].
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kill the Clipboard bridge (upstream mode)")]
pub struct BridgeConfig {
    /// Upstream mode: answer `createHealthLink(input: {mode: DIRECT})` by fetching b.well's
    /// link with a generated passcode, decrypting its IPS document once in memory, and issuing a
    /// Kill the Clipboard `U` link on --public-url from the gateway's own store.
    #[arg(long, env = "SHL_GATEWAY_KTC_BRIDGE")]
    pub ktc_bridge: bool,

    /// Hosts the bridge fetches b.well's manifests from, comma-separated: exact names or
    /// `*.domain` (any name below the domain). The passcode goes to no other host.
    #[arg(
        long,
        env = "SHL_GATEWAY_KTC_BRIDGE_HOSTS",
        value_delimiter = ',',
        default_value = crate::bridge::DEFAULT_HOSTS
    )]
    pub ktc_bridge_hosts: Vec<String>,

    /// Let the bridge fetch over plain http and from loopback and private addresses (tests and
    /// local use only: b.well serves https).
    #[arg(long, env = "SHL_GATEWAY_KTC_BRIDGE_ALLOW_HTTP")]
    pub ktc_bridge_allow_http: bool,
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

    /// Embedded mode's store: sqlite://PATH?mode=rwc (a file) or
    /// postgres://USER:PASSWORD@HOST:5432/DATABASE (shared by replicas). Default: a SQLite file in
    /// --data-dir.
    #[arg(long, env = "SHL_GATEWAY_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Embedded mode: a bearer token and the patient it acts for, TOKEN=PATIENT_ID; repeat the
    /// flag (or comma-separate in the variable) for several. Stored only as an HMAC.
    #[arg(
        long = "patient-token",
        env = "SHL_GATEWAY_PATIENT_TOKEN",
        value_name = "TOKEN=PATIENT_ID",
        value_delimiter = ',',
        value_parser = PatientTokenParser,
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

    /// Directory for the state a single instance keeps, created 0700 and each file in it 0600:
    /// the generated secret key (secret-key) unless --secret-key or --secret-key-file; the SQLite
    /// store (shl-gateway.db, with its -wal and -shm files) unless --database-url; the audit
    /// trail (audit.jsonl) unless --audit-log or --audit-database-url; in demo mode, the
    /// development token (dev-token).
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

/// `--database-url` and its variable, as messages name them.
pub(crate) const DATABASE_URL: &str = "--database-url (SHL_GATEWAY_DATABASE_URL)";

/// A duration flag's value. humantime's own messages ("expected number at 0") do not say what a
/// duration looks like; this one does, and keeps humantime's detail when it helps (a missing or
/// unknown unit, a number too large).
fn parse_duration(text: &str) -> Result<Duration, String> {
    const FORM: &str = "expected a duration such as 10s, 500ms, 2m or 1h";
    humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::UnknownUnit { .. } | humantime::DurationError::NumberOverflow => {
            format!("{FORM} ({error})")
        }
        _ => FORM.to_owned(),
    })
}

pub(crate) use crate::crypto::SecretKey;

impl Config {
    /// `serve`'s flags with every `env` removed: parsing it reads the defaults and nothing else.
    fn defaults_command() -> clap::Command {
        Self::augment_args(clap::Command::new("shl-gateway")).mut_args(|arg| arg.env(None))
    }

    /// Checks what clap cannot, with messages that name the flag and its variable. Nothing is
    /// read or written here: a start refused at this step leaves no trace.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.upstream.validate()?;
        self.bridge.validate(self.upstream.upstream_url.is_some())?;
        self.embedded.validate()?;
        self.attestation.validate()?;
        self.audit.validate()?;
        let makes_links = self.upstream.upstream_url.is_none() || self.bridge.ktc_bridge;
        if self.embedded.public_url.is_none()
            && makes_links
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

impl BridgeConfig {
    fn validate(&self, upstream_mode: bool) -> anyhow::Result<()> {
        if self.ktc_bridge && !upstream_mode {
            bail!(
                "--ktc-bridge (SHL_GATEWAY_KTC_BRIDGE) needs --upstream-url: embedded mode makes \
                 DIRECT links itself"
            );
        }
        self.hosts()?;
        Ok(())
    }

    fn hosts(&self) -> anyhow::Result<HostPatterns> {
        HostPatterns::parse(self.ktc_bridge_hosts.iter().map(String::as_str)).map_err(|error| {
            anyhow::anyhow!("--ktc-bridge-hosts (SHL_GATEWAY_KTC_BRIDGE_HOSTS): {error}")
        })
    }

    /// The bridge's settings when it is on; the upstream's timeouts bound its fetches too.
    pub(crate) fn settings(
        &self,
        upstream: &UpstreamConfig,
    ) -> anyhow::Result<Option<BridgeSettings>> {
        if !self.ktc_bridge {
            return Ok(None);
        }
        Ok(Some(BridgeSettings {
            hosts: self.hosts()?,
            allow_http: self.ktc_bridge_allow_http,
            connect_timeout: upstream.upstream_connect_timeout,
            timeout: upstream.upstream_timeout,
        }))
    }
}

impl EmbeddedConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.database_url {
            DatabaseKind::of(url.expose_secret())
                .map_err(|error| anyhow::anyhow!("{DATABASE_URL}: {error}"))?;
        }
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

impl AuditConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.audit_database_url {
            let kind = DatabaseKind::of(url.expose_secret()).map_err(|error| {
                anyhow::anyhow!("--audit-database-url (SHL_GATEWAY_AUDIT_DATABASE_URL): {error}")
            })?;
            if kind != DatabaseKind::Postgres {
                bail!(
                    "--audit-database-url (SHL_GATEWAY_AUDIT_DATABASE_URL) takes a PostgreSQL URL \
                     (postgres://USER:PASSWORD@HOST:5432/DATABASE); for a file, use --audit-log"
                );
            }
        }
        Ok(())
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
    /// The secret key `serve` starts with: from --secret-key, --secret-key-file, or (single
    /// instance) the data directory. On a first start there is none in the data directory: one
    /// is generated, and returned unwritten, for [`StartKey::keep`] to write once the start has
    /// passed every step that can fail without the disk (see `Application::build`).
    pub fn key_for_start(&self) -> anyhow::Result<StartKey> {
        if self.secret_key.is_none() && self.secret_key_file.is_none() {
            let path = self.data_dir.join(crate::files::SECRET_KEY_FILE);
            match std::fs::symlink_metadata(&path) {
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(StartKey {
                        key: generate_key()?,
                        unwritten: Some(path),
                    });
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("cannot read {}", path.display()));
                }
                Ok(_) => {}
            }
        }
        Ok(StartKey {
            key: self.load_existing()?,
            unwritten: None,
        })
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
                .unwrap_or_else(|| self.data_dir.join(crate::files::SECRET_KEY_FILE));
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

/// The secret key of a start, and where to keep it if it was just generated.
#[derive(Debug)]
pub struct StartKey {
    key: SecretKey,
    /// Set: the key was generated for this file of the data directory, which does not hold it yet.
    unwritten: Option<PathBuf>,
}

impl StartKey {
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Writes a generated key to the data directory (`0600`, never over an existing file); a key
    /// read from somewhere is already kept.
    pub fn keep(&self) -> anyhow::Result<()> {
        let Some(path) = &self.unwritten else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir(dir).with_context(|| {
                format!(
                    "--data-dir (SHL_GATEWAY_DATA_DIR): cannot create {}",
                    dir.display()
                )
            })?;
        }
        write_private_file(path, self.key.expose_secret()).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                // Two gateways started at once on a new data directory: one key must win.
                anyhow::anyhow!(
                    "--data-dir (SHL_GATEWAY_DATA_DIR): {} appeared while this gateway started: \
                     another shl-gateway uses this --data-dir",
                    path.display()
                )
            } else {
                anyhow::anyhow!("cannot write {}: {error}", path.display())
            }
        })
    }
}

/// 32 random bytes, base64url: printable, so an operator can copy the key to other replicas'
/// `--secret-key-file`. The text is the key (what the file holds is what is used).
fn generate_key() -> anyhow::Result<SecretKey> {
    use base64::Engine as _;
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut())
        .map_err(|_| anyhow::anyhow!("the OS random number generator failed"))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref());
    Ok(SecretBox::new(Box::new(encoded.into_bytes())))
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

/// `shl-gateway inspect`: what to inspect and how. Becomes an [`InspectInput`] and
/// [`InspectOptions`] ([`InspectArgs::into_inspection`]).
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["link", "file", "jwe"])))]
pub struct InspectArgs {
    /// The link: shlink:/... or a viewer URL ending #shlink:/... `-` reads it from standard
    /// input, which keeps it (and its key) out of the process list and the shell history.
    pub link: Option<SecretString>,

    /// Offline: judge this decrypted Bundle (JSON) instead of a link.
    #[arg(long, env = "SHL_GATEWAY_FILE")]
    pub file: Option<PathBuf>,

    /// Offline: decrypt this compact JWE file with --key, then judge it.
    #[arg(long, env = "SHL_GATEWAY_JWE", requires = "key")]
    pub jwe: Option<PathBuf>,

    /// The link's key for --jwe (43 base64url characters). Prefer the variable: a process
    /// list shows command lines.
    #[arg(
        long,
        env = "SHL_GATEWAY_KEY",
        hide_env_values = true,
        requires = "jwe"
    )]
    pub key: Option<SecretString>,

    /// `recipient` of the manifest request or file fetch: the sharer's access log shows it.
    #[arg(
        long,
        env = "SHL_GATEWAY_RECIPIENT",
        default_value = "shl-gateway inspect"
    )]
    pub recipient: String,

    /// The passcode of a P link. Prefer the variable: a process list shows command lines.
    #[arg(long, env = "SHL_GATEWAY_PASSCODE", hide_env_values = true)]
    pub passcode: Option<SecretString>,

    /// Allow plain http, and loopback, private and link-local addresses (tests and local use:
    /// a stranger's link could otherwise make this machine reach inside its network).
    #[arg(long, env = "SHL_GATEWAY_ALLOW_HTTP")]
    pub allow_http: bool,

    /// The rules to hold the link to.
    #[arg(long, env = "SHL_GATEWAY_PROFILE", value_enum, default_value = "auto")]
    pub profile: InspectProfile,

    /// How to print the report.
    #[arg(long, env = "SHL_GATEWAY_FORMAT", value_enum, default_value = "text")]
    pub format: ReportFormat,
}

/// `--profile` of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectProfile {
    /// Kill the Clipboard for U links (and collection Bundles), plain SHL otherwise
    Auto,
    /// Kill the Clipboard: flag exactly U, exp required, a PatientSharedBundle
    Ktc,
    /// SMART Health Links STU1: any flags; an IPS document or a PatientSharedBundle
    Shl,
}

/// `--format` of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One line per stage, for a person
    Text,
    /// One JSON document: `ok`, `profile`, `failStage` and `stages`, for a CI job
    Json,
}

/// The largest `--file` or `--jwe` read: what the receiver would accept from a server.
const MAX_INSPECT_FILE_BYTES: u64 = 32 * 1024 * 1024;

impl InspectArgs {
    /// Reads what is to be inspected (standard input for `-`, the files) and the options.
    pub fn into_inspection(self) -> anyhow::Result<(InspectInput, InspectOptions, ReportFormat)> {
        let input = if let Some(path) = &self.file {
            InspectInput::Bundle(read_bounded(path)?)
        } else if let (Some(path), Some(key)) = (&self.jwe, self.key) {
            InspectInput::Jwe {
                jwe: read_bounded(path)?,
                key,
            }
        } else if let Some(link) = self.link {
            if link.expose_secret() == "-" {
                use std::io::Read as _;
                let mut text = String::new();
                std::io::stdin()
                    .take(64 * 1024)
                    .read_to_string(&mut text)
                    .context("cannot read the link from standard input")?;
                InspectInput::Link(SecretString::from(text))
            } else {
                InspectInput::Link(link)
            }
        } else {
            bail!("give a link, --file or --jwe");
        };
        let mut options = InspectOptions::new(self.recipient);
        options.profile = match self.profile {
            InspectProfile::Auto => ProfileChoice::Auto,
            InspectProfile::Ktc => ProfileChoice::Ktc,
            InspectProfile::Shl => ProfileChoice::Shl,
        };
        options.passcode = self.passcode;
        options.receiver.outbound.allow_http = self.allow_http;
        options.receiver.outbound.allow_private_addresses = self.allow_http;
        Ok((input, options, self.format))
    }
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_INSPECT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_INSPECT_FILE_BYTES {
        bail!(
            "{} is larger than {MAX_INSPECT_FILE_BYTES} bytes",
            path.display()
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headings `--help` groups `serve`'s flags under, in order.
    const HEADINGS: [&str; 11] = [
        "Listener",
        "Upstream mode (b.well)",
        "Kill the Clipboard bridge (upstream mode)",
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

    /// `--flag` reads `SHL_GATEWAY_FLAG`, without exception (the README's rule).
    fn variable_of(long: &str) -> String {
        format!("SHL_GATEWAY_{}", long.replace('-', "_").to_uppercase())
    }

    /// Every argument of `command` and of its subcommands, with the subcommands' path.
    fn all_args(command: &clap::Command, path: &str) -> Vec<(String, clap::Arg)> {
        let mut args: Vec<(String, clap::Arg)> = command
            .get_arguments()
            .map(|arg| (path.to_owned(), arg.clone()))
            .collect();
        for subcommand in command.get_subcommands() {
            let path = format!("{path} {}", subcommand.get_name());
            args.extend(all_args(subcommand, &path));
        }
        args
    }

    /// A stand-in for the process environment: `set` holds the variables and their values.
    fn environment(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + use<> {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            set.iter()
                .find(|(known, _)| known == name)
                .map(|(_, value)| value.into())
        }
    }

    fn env_of(command: &clap::Command, long: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
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
    fn every_variable_of_every_command_follows_the_rule() {
        let mut checked = 0;
        for (command, arg) in all_args(&Cli::command(), "shl-gateway") {
            let Some(env) = arg.get_env() else { continue };
            let long = arg.get_long().expect("a flag with a variable is long");
            assert_eq!(
                env.to_string_lossy(),
                variable_of(long),
                "{command} --{long}"
            );
            checked += 1;
        }
        assert!(checked > 60, "{checked}");
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let lookup = environment(&[
            ("SHL_GATEWAY_UPSTREAM_URL", ""),
            ("SHL_GATEWAY_UPSTREAM_TIMEOUT", ""),
        ]);
        let (command, renamed) = Cli::command_for_environment(&lookup);
        assert!(renamed.is_empty());
        assert_eq!(env_of(&command, "upstream-url"), None);
        assert_eq!(env_of(&command, "upstream-timeout"), None);
        assert_eq!(
            env_of(&command, "public-url").as_deref(),
            Some("SHL_GATEWAY_PUBLIC_URL"),
            "an unset variable keeps its flag's variable (and --help shows it)"
        );
        // The flags fall back to their defaults whatever the real environment holds.
        let matches = command
            .try_get_matches_from(["shl-gateway"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("a Cli");
        assert_eq!(cli.serve.upstream.upstream_url, None);
        assert_eq!(cli.serve.upstream.upstream_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_renamed_variable_is_read_until_its_new_name_is_set() {
        let former_only = environment(&[("SHL_GATEWAY_PATIENT_TOKENS", "token=patient")]);
        let (command, renamed) = Cli::command_for_environment(&former_only);
        assert_eq!(
            env_of(&command, "patient-token").as_deref(),
            Some("SHL_GATEWAY_PATIENT_TOKENS")
        );
        assert_eq!(
            renamed,
            [RenamedVariable {
                former: "SHL_GATEWAY_PATIENT_TOKENS",
                current: "SHL_GATEWAY_PATIENT_TOKEN",
                ignored: false,
            }]
        );

        for current in ["", "token=patient"] {
            let both = environment(&[
                ("SHL_GATEWAY_PATIENT_TOKENS", "old=patient"),
                ("SHL_GATEWAY_PATIENT_TOKEN", current),
            ]);
            let (command, renamed) = Cli::command_for_environment(&both);
            let new_name_set = !current.is_empty();
            let expected = if new_name_set {
                "SHL_GATEWAY_PATIENT_TOKEN"
            } else {
                "SHL_GATEWAY_PATIENT_TOKENS"
            };
            assert_eq!(env_of(&command, "patient-token").as_deref(), Some(expected));
            assert_eq!(renamed[0].ignored, new_name_set, "{current:?}");
        }

        let (_, renamed) = Cli::command_for_environment(&environment(&[]));
        assert!(renamed.is_empty());
    }

    #[test]
    fn a_refused_patient_token_is_not_echoed() {
        for bad in [
            "no-equals-sign-secret-value",
            "a-long-enough-secret-value=bad/id",
        ] {
            let error = Cli::try_parse_from(["shl-gateway", "--patient-token", bad])
                .expect_err(bad)
                .to_string();
            assert!(error.contains("--patient-token"), "{error}");
            assert!(!error.contains("secret-value"), "{error}");
        }
    }

    /// Every `--help` text, of the binary and of each subcommand, with the command's path.
    fn every_help(command: &mut clap::Command, path: &str, helps: &mut Vec<(String, String)>) {
        helps.push((path.to_owned(), command.render_long_help().to_string()));
        for subcommand in command.get_subcommands_mut() {
            let path = format!("{path} {}", subcommand.get_name());
            every_help(subcommand, &path, helps);
        }
    }

    #[test]
    fn no_help_text_shows_code() {
        // What a doc comment written for rustdoc leaves in `--help`: paths, intra-doc links,
        // variants and types (`--redis-failure-policy` once said "Answer `Err(QuotaError::...)`").
        const CODE: [&str; 9] = [
            "::", "`]", "Err(", "Ok(", "Some(", "None`", "Self", "Option<", "Vec<",
        ];
        let mut helps = Vec::new();
        every_help(&mut Cli::command(), "shl-gateway", &mut helps);
        assert!(helps.len() >= 9, "{}", helps.len());
        for (path, help) in helps {
            for code in CODE {
                assert!(
                    !help.contains(code),
                    "`{path} --help` shows {code:?}:\n{help}"
                );
            }
            // An intra-doc link, [`Type`]; the text "`[` and `{`" is not one.
            let link = help
                .match_indices("[`")
                .find(|(at, _)| help[at + 2..].starts_with(|c: char| c.is_ascii_uppercase()));
            assert!(link.is_none(), "`{path} --help` shows a doc link:\n{help}");
        }
    }

    #[test]
    fn data_dir_help_names_every_file_kept_there() {
        let help = Cli::command().render_long_help().to_string();
        let data_dir = &help[help.find("--data-dir <DATA_DIR>").expect("--data-dir")..];
        let data_dir = &data_dir[..data_dir.find("[default").expect("its default")];
        for file in [
            crate::files::SECRET_KEY_FILE,
            crate::files::STORE_FILE,
            crate::files::AUDIT_FILE,
            "dev-token",
        ] {
            assert!(data_dir.contains(file), "{file}: {data_dir}");
        }
    }

    #[test]
    fn a_duration_flag_says_what_a_duration_looks_like() {
        for value in ["ten", "", "10", "10 parsecs"] {
            let error = Cli::try_parse_from(["shl-gateway", "--upstream-timeout", value])
                .expect_err(value)
                .to_string();
            assert!(
                error.contains("expected a duration such as 10s, 500ms"),
                "{value:?}: {error}"
            );
            assert!(!error.contains("expected number at"), "{value:?}: {error}");
        }
        let cli = Cli::try_parse_from(["shl-gateway", "--upstream-timeout", "1500ms"])
            .expect("a duration");
        assert_eq!(
            cli.serve.upstream.upstream_timeout,
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn a_database_url_of_another_kind_is_refused_before_anything_runs() {
        for (url, expected) in [
            (
                "mysql://root:hunter2@db/shl",
                "mysql: URLs are not supported",
            ),
            ("garbage", "not a database URL"),
            (
                "/var/lib/shl/shl.db",
                "sqlite:///var/lib/shl/shl.db?mode=rwc",
            ),
        ] {
            let mut config = Config::default();
            config.embedded.database_url = Some(SecretString::from(url));
            let error = config.validate().expect_err(url).to_string();
            assert!(error.starts_with(DATABASE_URL), "{error}");
            assert!(error.contains(expected), "{error}");
            assert!(
                error.contains("postgres://") || error.contains("sqlite://"),
                "{error}"
            );
            assert!(!error.contains("stored data"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        let mut config = Config::default();
        config.audit.audit_database_url = Some(SecretString::from("sqlite://audit.db"));
        let error = config.validate().expect_err("not PostgreSQL").to_string();
        assert!(error.contains("--audit-log"), "{error}");
    }

    #[test]
    fn the_bridge_needs_upstream_mode_and_well_formed_hosts() {
        let mut config = Config::default();
        config.bridge.ktc_bridge = true;
        let error = config.validate().expect_err("embedded mode").to_string();
        assert!(
            error.contains("--ktc-bridge") && error.contains("--upstream-url"),
            "{error}"
        );

        let mut config = with_upstream();
        config.bridge.ktc_bridge = true;
        config.validate().expect("the default hosts are valid");
        config.bridge.ktc_bridge_hosts = vec!["https://evil.example/".to_owned()];
        let error = config.validate().expect_err("not a host").to_string();
        assert!(error.contains("--ktc-bridge-hosts"), "{error}");

        // Bridged links name the public URL, so a wildcard listener needs one, as embedded
        // mode's does.
        config.bridge.ktc_bridge_hosts = vec![crate::bridge::DEFAULT_HOSTS.to_owned()];
        config.listener.listen = "0.0.0.0:8080".parse().expect("address");
        let error = config.validate().expect_err("no public URL").to_string();
        assert!(error.contains("--public-url"), "{error}");

        let cli = Cli::try_parse_from([
            "shl-gateway",
            "--ktc-bridge",
            "--ktc-bridge-hosts",
            "127.0.0.1,*.example.org",
        ])
        .expect("parses");
        assert!(cli.serve.bridge.ktc_bridge);
        assert_eq!(
            cli.serve.bridge.ktc_bridge_hosts,
            ["127.0.0.1", "*.example.org"]
        );
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
        let error = key.key_for_start().expect_err("short");
        assert!(!error.to_string().contains("too short"));
    }

    #[test]
    fn a_generated_key_is_written_only_when_kept_and_then_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyConfig {
            data_dir: dir.path().join("data"),
            ..with_upstream().key
        };

        let generated = key.key_for_start().expect("generated");
        assert!(!key.data_dir.exists(), "nothing written before keep");
        generated.keep().expect("written");
        let again = key.key_for_start().expect("reloaded");
        again.keep().expect("nothing to write");

        let first = generated.key().expose_secret();
        assert_eq!(first, again.key().expose_secret());
        assert!(first.len() >= MIN_SECRET_KEY_BYTES);
        assert_eq!(
            key.load_existing().expect("kept").expose_secret(),
            first,
            "audit verify reads the same key"
        );
    }

    #[test]
    fn a_key_generated_twice_for_one_data_dir_is_kept_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyConfig {
            data_dir: dir.path().join("data"),
            ..with_upstream().key
        };
        let (first, second) = (
            key.key_for_start().expect("generated"),
            key.key_for_start().expect("generated"),
        );
        first.keep().expect("written");
        let error = second.keep().expect_err("the file exists now").to_string();
        assert!(error.contains("another shl-gateway"), "{error}");
        assert_eq!(
            key.load_existing().expect("kept").expose_secret(),
            first.key().expose_secret()
        );
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let mut config = with_upstream();
        config.key.secret_key = Some(SecretString::from("x".repeat(40)));
        assert!(!format!("{config:?}").contains(&"x".repeat(40)));
    }

    fn inspect_args(args: &[&str]) -> Result<InspectArgs, clap::Error> {
        // The variables switched off, as for `Config::default`: the test's environment is not
        // the command line under test.
        let command = Cli::command()
            .mut_subcommand("inspect", |inspect| inspect.mut_args(|arg| arg.env(None)));
        let matches =
            command.try_get_matches_from(["shl-gateway", "inspect"].iter().chain(args))?;
        match Cli::from_arg_matches(&matches)?.command {
            Some(Command::Inspect(args)) => Ok(*args),
            _ => panic!("not inspect"),
        }
    }

    #[test]
    fn inspect_flags_read_their_variables_and_the_readme_names_them() {
        let command = Cli::command();
        let inspect = command.find_subcommand("inspect").expect("inspect");
        let readme = include_str!("../README.md");
        let flags: Vec<&str> = inspect
            .get_arguments()
            .filter_map(clap::Arg::get_long)
            .filter(|long| *long != "help")
            .collect();
        assert_eq!(flags.len(), 8, "{flags:?}");
        for long in flags {
            let arg = inspect
                .get_arguments()
                .find(|arg| arg.get_long() == Some(long))
                .expect("the flag");
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            assert_eq!(env, Some(variable_of(long)), "--{long}");
            assert!(readme.contains(&format!("`--{long}`")), "--{long}");
        }
    }

    #[test]
    fn inspect_takes_exactly_one_input_and_defaults_to_a_strict_receiver() {
        let args = inspect_args(&["shlink:/abc"]).expect("a link");
        assert_eq!(args.recipient, "shl-gateway inspect");
        assert_eq!(args.profile, InspectProfile::Auto);
        assert_eq!(args.format, ReportFormat::Text);
        let (_, options, _) = args.into_inspection().expect("options");
        assert!(!options.receiver.outbound.allow_http);
        assert!(!options.receiver.outbound.allow_private_addresses);
        assert_eq!(options.profile, ProfileChoice::Auto);

        let (_, options, format) = inspect_args(&[
            "--allow-http",
            "--profile",
            "ktc",
            "--format",
            "json",
            "--recipient",
            "Springfield Clinic",
            "shlink:/abc",
        ])
        .expect("flags")
        .into_inspection()
        .expect("options");
        assert!(options.receiver.outbound.allow_http);
        assert!(options.receiver.outbound.allow_private_addresses);
        assert_eq!(options.profile, ProfileChoice::Ktc);
        assert_eq!(options.receiver.recipient, "Springfield Clinic");
        assert_eq!(format, ReportFormat::Json);

        for refused in [
            &[][..],
            &["shlink:/abc", "--file", "bundle.json"],
            &["--jwe", "file.jwe"],
            &["--key", "k"],
            &["--file", "a.json", "--jwe", "b.jwe", "--key", "k"],
        ] {
            assert!(inspect_args(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn inspect_reads_its_files_and_never_shows_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwe = dir.path().join("file.jwe");
        std::fs::write(&jwe, "a.b.c.d.e").expect("write");
        let key = "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q";
        let args = inspect_args(&["--jwe", jwe.to_str().expect("utf-8"), "--key", key])
            .expect("jwe and key");
        assert!(!format!("{args:?}").contains(key));
        let (input, _, _) = args.into_inspection().expect("read");
        assert!(matches!(input, InspectInput::Jwe { ref jwe, .. } if jwe == b"a.b.c.d.e"));
        assert!(!format!("{input:?}").contains(key));

        let missing = inspect_args(&["--file", "/nonexistent/bundle.json"])
            .expect("parses")
            .into_inspection()
            .map(|_| ())
            .expect_err("no such file");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }
}
