//! Building and running the application: the one path shared by `main` and the tests.
//!
//! [`Application::build`] binds the listener (port 0 allowed, the tests' way to run in
//! parallel) and assembles the router; [`Application::run_until_stopped`] serves until SIGTERM
//! or SIGINT, or until the [`ShutdownHandle`] fires. Shutdown fails readiness first, then stops
//! accepting and lets in-flight requests finish, bounded by `--shutdown-timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use secrecy::{ExposeSecret, SecretString};

use crate::audit::{AuditError, AuditSink, AuditTrail, FileAuditSink, PostgresAuditSink};
use crate::bridge::{BridgeIssuer, LinkResolver};
use crate::clock::now_ms;
use crate::config::{AuditConfig, Config, DemoMode, EmbeddedConfig, RedisConfig};
use crate::crypto::attestation::AppAttestation;
use crate::crypto::{AuditKey, Keys};
use crate::database::DatabaseKind;
use crate::graphql::{SchemaOptions, build_executor};
use crate::http::server::ConnectionLimits;
use crate::http::{AppState, Readiness, WorkSlots, router};
use crate::idempotency::{Idempotency, IdempotencyStore, InProcessStore, RedisStore};
use crate::issuer::embedded::{EmbeddedIssuer, EmbeddedSettings, MAX_SHL_URL_LEN};
use crate::issuer::fhir::PatientRecord;
use crate::issuer::store::{LinkStore, SqlStore};
use crate::issuer::{Issuer, IssuerMode};
use crate::links::{LinkAccesses, LinkService};
use crate::passcode::PasscodeHasher;
use crate::ratelimit::{
    InProcessQuotas, QuotaSpecs, QuotaStore, RatePolicy, RedisQuotas, SharedQuotas,
};
use crate::upstream::{UpstreamClient, UpstreamIssuer, UpstreamSettings};

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    readiness: Readiness,
    shutdown_delay: Duration,
    shutdown_timeout: Duration,
    shutdown: watch::Sender<bool>,
    /// Demo mode's bearer token, for `main` to print once.
    development_token: Option<SecretString>,
    /// Embedded mode's background purge of expired files.
    purge: Option<PurgeTask>,
    /// Set: the listener serves HTTPS.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// What one connection may cost: timeouts, connection caps, HTTP/2 bounds.
    connection_limits: ConnectionLimits,
    /// Request work at once, detached work included: shutdown waits for all of it.
    work_slots: WorkSlots,
    /// Set: `/metrics` is served here rather than on the main listener.
    metrics_listener: Option<TcpListener>,
    /// The in-process quotas (or the Redis fallback's), whose old keys need dropping.
    quota_housekeeping: InProcessQuotas,
    /// Closed last at shutdown: draining requests still record.
    audit: AuditTrail,
}

#[derive(Debug)]
struct PurgeTask {
    issuer: Arc<EmbeddedIssuer>,
    interval: Duration,
    retention: Duration,
}

/// Starts a graceful shutdown, like SIGTERM does.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        // Stored even with nobody listening yet: `send` would drop it, and a server whose task
        // had not yet started (stopped right after spawning it) would then never stop.
        self.0.send_replace(true);
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        // First every step that can fail for a reason other than the disk, writing nothing: a
        // start refused here (a port taken, a certificate, a key file, a database or Redis URL,
        // an unreachable PostgreSQL) leaves no data directory, secret key, audit file or store.
        let secret_key = config.key.key_for_start()?;
        let keys = Keys::derive(secret_key.key());
        let listen = config.listener.listen;
        // Bound first: with port 0, the public URL of embedded links needs the real port.
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!(
                "--listen (SHL_GATEWAY_LISTEN): cannot bind {listen} (is another program, \
                     another shl-gateway perhaps, using it?)"
            )
        })?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match config.listener.metrics_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                format!("--metrics-listen (SHL_GATEWAY_METRICS_LISTEN): cannot bind {address}")
            })?),
            None => None,
        };

        let tls = match (&config.listener.tls_cert, &config.listener.tls_key) {
            (Some(cert), Some(key)) => {
                let loaded = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .context("--tls-cert / --tls-key: cannot load the certificate and key")?;
                Some(loaded.get_inner())
            }
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };

        let default_public_url = format!("{scheme}://{local_addr}");
        let mode = match config.upstream.settings() {
            Some(settings) => {
                let bridge = match config.bridge.settings(&config.upstream)? {
                    Some(bridge) => Some(Box::new(BridgeStart {
                        resolver: LinkResolver::new(&bridge)
                            .context("cannot build the Kill the Clipboard bridge's HTTP client")?,
                        embedded: Box::new(
                            EmbeddedStart::check(&config, &default_public_url).await?,
                        ),
                    })),
                    None => {
                        if config.attestation.attestation_key_file.is_some() {
                            tracing::warn!(
                                "--attestation-key-file is ignored in upstream mode without \
                                 --ktc-bridge: b.well makes no DIRECT links here"
                            );
                        }
                        None
                    }
                };
                ModeStart::Upstream {
                    issuer: build_upstream_issuer(&config, settings)?,
                    bridge,
                }
            }
            None => ModeStart::Embedded(Box::new(
                EmbeddedStart::check(&config, &default_public_url).await?,
            )),
        };
        let audit_database = open_audit_database(&config.audit, &keys).await?;
        let quotas = build_quota_store(&config.redis, config.quotas.rate_limit_max_keys).await?;
        let idempotency = Arc::new(build_idempotency(&config, &keys)?);

        // Then the state kept on disk, the generated key first: the audit chain and the store's
        // token HMACs depend on it.
        if uses_data_dir(&config) {
            crate::files::secure_data_dir(&config.key.data_dir).with_context(|| {
                format!(
                    "--data-dir (SHL_GATEWAY_DATA_DIR): cannot prepare {}",
                    config.key.data_dir.display()
                )
            })?;
        }
        secret_key.keep()?;
        let audit_sink = match audit_database {
            Some(sink) => sink,
            None => open_audit_file(&config.audit, &config.key.data_dir, &keys)?,
        };
        let audit = AuditTrail::new(audit_sink, keys.audit_actor.clone());
        let audit_at_shutdown = audit.clone();
        let rate_policy = RatePolicy::new(
            quotas.store.clone(),
            keys.rate_limit.clone(),
            QuotaSpecs::from(&config.quotas),
        );

        let mut development_token = None;
        let mut purge = None;
        let mut embedded_routes = None;
        // The embedded issuer's data plane (manifests, files, viewer, JWKS) and its purge.
        let mut serve_embedded = |embedded: &Arc<EmbeddedIssuer>| {
            purge = Some(PurgeTask {
                issuer: Arc::clone(embedded),
                interval: config.embedded.purge_interval,
                retention: config.embedded.link_retention,
            });
            embedded_routes = Some(crate::http::embedded_routes(
                LinkAccesses::new(Arc::clone(embedded), audit.clone()),
                rate_policy.clone(),
                embedded.attestation_jwks().map(str::to_owned),
            ));
        };
        let issuer: Arc<dyn Issuer> = match mode {
            ModeStart::Upstream {
                issuer: upstream,
                bridge: None,
            } => upstream,
            ModeStart::Upstream {
                issuer: upstream,
                bridge: Some(bridge),
            } => {
                // No identities to set up: bridged links belong to b.well's callers.
                let embedded = Arc::new(bridge.embedded.open(&config, &keys).await?);
                serve_embedded(&embedded);
                Arc::new(BridgeIssuer::new(
                    upstream,
                    embedded,
                    bridge.resolver,
                    keys.clone(),
                ))
            }
            ModeStart::Embedded(embedded_start) => {
                let embedded = Arc::new(embedded_start.open(&config, &keys).await?);
                development_token = set_up_identities(
                    &config.embedded,
                    &keys,
                    local_addr,
                    &config.key.data_dir,
                    embedded.store(),
                )
                .await?;
                serve_embedded(&embedded);
                embedded
            }
        };
        log_configuration(&config, issuer.mode());

        let schema_options = SchemaOptions::from(&config.graphql);
        let readiness = Readiness::default();
        let state = AppState {
            graphql: build_executor(
                LinkService::new(
                    Arc::clone(&issuer),
                    rate_policy.clone(),
                    audit.clone(),
                    idempotency,
                ),
                &schema_options,
            ),
            issuer,
            readiness: readiness.clone(),
            max_body_bytes: config.listener.max_body_bytes,
            rate_policy,
            shared_quotas: quotas.shared.clone(),
            audit,
        };
        let work_slots = WorkSlots::new(config.listener.max_concurrent_requests);
        let mut http_settings = config
            .listener
            .http_settings(config.graphql.graphiql_assets_dir(), work_slots.clone())?;
        http_settings.graphiql_demo_token = development_token.clone().filter(|_| {
            crate::demo::playground_may_show_token(config.embedded.patient_tokens.len(), local_addr)
        });
        let connection_limits = ConnectionLimits::from(&config.listener);
        // Installs the recorder before the first request, so early counts are not lost.
        let _ = crate::metrics::handle();
        let app_router = router(state, &http_settings, embedded_routes);

        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            listener,
            local_addr,
            router: app_router,
            readiness,
            shutdown_delay: config.listener.shutdown_delay,
            shutdown_timeout: config.listener.shutdown_timeout,
            shutdown,
            development_token,
            purge,
            tls,
            connection_limits,
            work_slots,
            metrics_listener,
            quota_housekeeping: quotas.in_process,
            audit: audit_at_shutdown,
        })
    }

    /// Where `/metrics` is served when `--metrics-listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Demo mode's bearer token (`Bearer <token>`), printed once by `main`.
    pub fn development_token(&self) -> Option<&SecretString> {
        self.development_token.as_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Serves until a signal or the shutdown handle, then drains.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            listener,
            local_addr,
            router,
            readiness,
            shutdown_delay,
            shutdown_timeout,
            shutdown,
            development_token: _,
            purge,
            tls,
            connection_limits,
            work_slots,
            metrics_listener,
            quota_housekeeping,
            audit,
        } = self;
        let housekeeping = quota_housekeeping.spawn_housekeeping(Duration::from_secs(30));
        // The Prometheus recorder keeps histogram samples until upkeep folds them in: without it
        // an unscraped gateway grows by every observation (measured: ~33 bytes per request).
        let metrics_upkeep = tokio::spawn(async {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                ticks.tick().await;
                crate::metrics::handle().run_upkeep();
            }
        });
        // Background tasks that stop with the shutdown signal, joined before the store closes.
        let mut background = Vec::new();
        if let Some(metrics_listener) = metrics_listener {
            let mut stop = shutdown.subscribe();
            // The same connection limits as the main listener: a scrape port is a port too.
            let limits = connection_limits.clone();
            background.push(tokio::spawn(async move {
                let serving = crate::http::server::serve(
                    metrics_listener,
                    crate::http::metrics_router(),
                    None,
                    limits,
                    async move {
                        let _ = stop.wait_for(|stop| *stop).await;
                    },
                );
                if let Err(error) = serving.await {
                    tracing::warn!(error = %error, "metrics listener failed");
                }
            }));
        }
        let store = purge.as_ref().map(|purge| Arc::clone(purge.issuer.store()));
        if let Some(purge) = purge {
            background.push(tokio::spawn(run_purge(purge, shutdown.subscribe())));
        }
        let mut requested = shutdown.subscribe();
        let (drain_started, mut drain_started_rx) = watch::channel(false);
        let stop_signal = async move {
            tokio::select! {
                () = termination_signal() => {},
                _ = requested.wait_for(|stop| *stop) => {},
            }
            // A signal stops the background tasks (purge, metrics listener) too.
            let _ = shutdown.send(true);
            readiness.mark_shutting_down();
            tracing::info!(
                delay_ms = shutdown_delay.as_millis() as u64,
                "shutdown started: readiness failing"
            );
            tokio::time::sleep(shutdown_delay).await;
            tracing::info!("draining in-flight requests");
            let _ = drain_started.send(true);
        };
        tracing::info!(address = %local_addr, tls = tls.is_some(), "listening");
        let server = async {
            let served = crate::http::server::serve(
                listener,
                router,
                tls.map(tokio_rustls::TlsAcceptor::from),
                connection_limits,
                stop_signal,
            )
            .await;
            // Work whose client hung up runs on after its connection closed: wait for it too,
            // within the same deadline, rather than cut it half way.
            work_slots.all_returned().await;
            served
        };
        // Once draining starts, it may take at most `shutdown_timeout`.
        let deadline = async {
            let _ = drain_started_rx.wait_for(|started| *started).await;
            tokio::time::sleep(shutdown_timeout).await;
        };
        let outcome = tokio::select! {
            result = server => {
                tracing::info!("shutdown complete");
                result
            }
            () = deadline => {
                tracing::warn!(timeout_s = shutdown_timeout.as_secs(), "shutdown timed out with requests in flight");
                Ok(())
            }
        };
        housekeeping.abort();
        metrics_upkeep.abort();
        // Aborted at an await point; joined so neither outlives the application.
        let _ = housekeeping.await;
        let _ = metrics_upkeep.await;
        // The shutdown signal has stopped them; a purge in the middle of a query gets a moment
        // to end it before the store closes under it.
        for task in background {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Some(store) = store {
            store.close().await;
        }
        audit.close().await;
        outcome
    }
}

/// The audit sink in PostgreSQL (`--audit-database-url`, one chain per replica), or `None` for
/// a file. Opening verifies the chain's tail.
async fn open_audit_database(
    config: &AuditConfig,
    keys: &Keys,
) -> anyhow::Result<Option<Arc<dyn AuditSink>>> {
    let Some(url) = &config.audit_database_url else {
        return Ok(None);
    };
    let key = AuditKey::from(&keys.audit_chain);
    let sink = PostgresAuditSink::connect(url.expose_secret(), key, config.audit_chain.clone())
        .await
        .map_err(|error| {
            anyhow::anyhow!("--audit-database-url (SHL_GATEWAY_AUDIT_DATABASE_URL): {error}")
        })?;
    Ok(Some(Arc::new(sink)))
}

/// The audit sink as a JSON-lines file (`--audit-log`, default in `--data-dir`). Opening creates
/// the file, or verifies its chain's tail.
fn open_audit_file(
    config: &AuditConfig,
    data_dir: &std::path::Path,
    keys: &Keys,
) -> anyhow::Result<Arc<dyn AuditSink>> {
    let key = AuditKey::from(&keys.audit_chain);
    let path = audit_file_path(config, data_dir);
    match &config.audit_log {
        // Outside the data directory too, the trail names recipients and addresses.
        Some(_) => crate::files::tighten(&path)
            .with_context(|| format!("--audit-log (SHL_GATEWAY_AUDIT_LOG): {}", path.display()))?,
        None => crate::files::create_private_dir(data_dir).with_context(|| {
            format!(
                "--data-dir (SHL_GATEWAY_DATA_DIR): cannot create {}",
                data_dir.display()
            )
        })?,
    }
    let sink = FileAuditSink::open(&path, key, config.audit_chain.clone()).map_err(|error| {
        // Locked: the usual cause is a second gateway started on the same directory.
        match (&error, &config.audit_log) {
            (AuditError::Locked(_), None) => anyhow::anyhow!(
                "--data-dir (SHL_GATEWAY_DATA_DIR) {}: another shl-gateway uses this --data-dir \
                 (its audit file {} is locked); stop it, or give each gateway its own --data-dir",
                data_dir.display(),
                path.display()
            ),
            (AuditError::Locked(_), Some(_)) => anyhow::anyhow!(
                "--audit-log (SHL_GATEWAY_AUDIT_LOG) {}: another shl-gateway writes this audit \
                 file; stop it, or give each gateway its own --audit-log",
                path.display()
            ),
            _ => anyhow::anyhow!(
                "--audit-log (SHL_GATEWAY_AUDIT_LOG) {}: {error}",
                path.display()
            ),
        }
    })?;
    Ok(Arc::new(sink))
}

/// The one line that says what this start runs with: the mode, the upstream's host (never its
/// path or credentials), the kinds of the store and of the audit trail, and the audit file.
/// Neither database URL is named: they hold passwords.
fn log_configuration(config: &Config, mode: IssuerMode) {
    let upstream_host = match mode {
        IssuerMode::Upstream => config
            .upstream
            .upstream_url
            .as_ref()
            .and_then(Url::host_str),
        IssuerMode::Embedded => None,
    };
    // Upstream mode keeps links only with the bridge.
    let has_store = mode == IssuerMode::Embedded || config.bridge.ktc_bridge;
    let store = match (has_store, &config.embedded.database_url) {
        (false, _) => None,
        (true, Some(url)) => match DatabaseKind::of(url.expose_secret()) {
            Ok(DatabaseKind::Postgres) => Some("postgres"),
            _ => Some("sqlite"),
        },
        (true, None) => Some("sqlite"),
    };
    let (audit, audit_file) = match &config.audit.audit_database_url {
        Some(_) => ("postgres", None),
        None => (
            "file",
            Some(audit_file_path(&config.audit, &config.key.data_dir)),
        ),
    };
    let audit_file = audit_file.as_ref().map(|path| path.display().to_string());
    tracing::info!(
        mode = mode.as_str(),
        upstream.host = upstream_host,
        ktc_bridge = config.bridge.ktc_bridge,
        store,
        audit,
        audit.file = audit_file.as_deref(),
        "gateway configured"
    );
}

/// Where the audit file is: `--audit-log`, or in the data directory.
fn audit_file_path(config: &AuditConfig, data_dir: &std::path::Path) -> std::path::PathBuf {
    config
        .audit_log
        .clone()
        .unwrap_or_else(|| data_dir.join(crate::files::AUDIT_FILE))
}

/// Idempotent answers: in Redis when configured (a retry may reach any replica), else here.
fn build_idempotency(config: &Config, keys: &Keys) -> anyhow::Result<Idempotency> {
    let redis = &config.redis;
    let store: Box<dyn IdempotencyStore> = match &redis.redis_url {
        Some(url) => Box::new(
            RedisStore::new(
                url.expose_secret(),
                redis.redis_key_prefix.clone(),
                redis.redis_timeout.max(Duration::from_millis(500)),
            )
            .map_err(|_| {
                anyhow::anyhow!("--redis-url (SHL_GATEWAY_REDIS_URL) is not a Redis URL")
            })?,
        ),
        None => Box::new(InProcessStore::default()),
    };
    // A retry waits for a first request still running at most as long as that one can take.
    let wait = config.upstream.upstream_timeout + Duration::from_secs(2);
    Ok(Idempotency::new(
        store,
        keys.idempotency.clone(),
        config.graphql.idempotency_window,
        wait,
    ))
}

/// The quota store: Redis (with its in-process fallback) when `--redis-url` is set, else memory.
struct QuotaStores {
    store: Arc<dyn QuotaStore>,
    shared: Option<Arc<SharedQuotas>>,
    in_process: InProcessQuotas,
}

async fn build_quota_store(config: &RedisConfig, max_keys: usize) -> anyhow::Result<QuotaStores> {
    let in_process = InProcessQuotas::new(max_keys);
    let Some(url) = &config.redis_url else {
        return Ok(QuotaStores {
            store: Arc::new(in_process.clone()),
            shared: None,
            in_process,
        });
    };
    let redis = RedisQuotas::connect(
        url.expose_secret(),
        config.redis_key_prefix.clone(),
        config.redis_timeout,
    )
    .await
    .map_err(|error| anyhow::anyhow!("--redis-url (SHL_GATEWAY_REDIS_URL): {error}"))?;
    let shared = Arc::new(SharedQuotas::new(
        redis,
        in_process.clone(),
        config.redis_failure_policy,
    ));
    Ok(QuotaStores {
        store: shared.clone(),
        shared: Some(shared),
        in_process,
    })
}

fn build_upstream_issuer(
    config: &Config,
    settings: UpstreamSettings,
) -> anyhow::Result<Arc<dyn Issuer>> {
    let client = UpstreamClient::new(settings).context("cannot build the upstream HTTP client")?;
    Ok(Arc::new(UpstreamIssuer::new(
        client,
        config.upstream.breaker(),
    )))
}

/// The issuer of each mode, as far as it is made before anything is written.
enum ModeStart {
    Upstream {
        issuer: Arc<dyn Issuer>,
        /// `--ktc-bridge`: DIRECT links converted from b.well's, kept in an embedded store.
        bridge: Option<Box<BridgeStart>>,
    },
    Embedded(Box<EmbeddedStart>),
}

/// The bridge's parts made before anything is written: its hardened client, and the embedded
/// issuer that stores and serves the links it converts.
struct BridgeStart {
    resolver: LinkResolver,
    embedded: Box<EmbeddedStart>,
}

/// Embedded mode's issuer, made in two steps so that a failed start writes nothing:
/// [`EmbeddedStart::check`] works out the settings, loads the attestation key and connects a
/// PostgreSQL store; [`EmbeddedStart::open`], once nothing else can fail, opens a SQLite store
/// (creating its file) and makes the issuer.
struct EmbeddedStart {
    settings: EmbeddedSettings,
    attestation: Option<AppAttestation>,
    /// A PostgreSQL store, connected and migrated; `None`: SQLite, opened by `open`.
    remote_store: Option<SqlStore>,
}

impl EmbeddedStart {
    async fn check(config: &Config, default_public_url: &str) -> anyhow::Result<Self> {
        let default_public_url = default_public_url
            .parse()
            .context("cannot form the default --public-url")?;
        let settings = config.embedded.settings(default_public_url);
        let longest = settings.longest_manifest_url();
        // What the base may have: the limit less the path and id every manifest URL adds.
        let base_room = MAX_SHL_URL_LEN.saturating_sub(
            longest.len() - settings.public_url.as_str().trim_end_matches('/').len(),
        );
        anyhow::ensure!(
            longest.len() <= MAX_SHL_URL_LEN,
            "--public-url (SHL_GATEWAY_PUBLIC_URL) is too long: manifest URLs would have {} \
             characters, the SHL limit is {MAX_SHL_URL_LEN}, so the URL may have at most \
             {base_room} characters",
            longest.len()
        );
        let attestation = config.attestation.load(&settings.public_url)?;
        if let Some(attestation) = &attestation {
            tracing::info!(
                kid = attestation.kid(),
                issuer = attestation.issuer(),
                retired_keys = attestation.retired_keys(),
                "app attestation on: DIRECT links are attested, /.well-known/jwks.json served"
            );
        }
        let database_url = config.embedded.database_url.as_ref();
        let remote = database_url
            .is_some_and(|url| DatabaseKind::of(url.expose_secret()) == Ok(DatabaseKind::Postgres));
        let remote_store = match remote {
            true => Some(open_store(database_url, &config.key.data_dir).await?),
            false => None,
        };
        Ok(Self {
            settings,
            attestation,
            remote_store,
        })
    }

    async fn open(self: Box<Self>, config: &Config, keys: &Keys) -> anyhow::Result<EmbeddedIssuer> {
        let store = match self.remote_store {
            Some(store) => store,
            None => open_store(config.embedded.database_url.as_ref(), &config.key.data_dir).await?,
        };
        let hasher = PasscodeHasher::new(
            keys.passcode_pepper.clone(),
            config.embedded.max_concurrent_passcode_hashes,
        );
        Ok(
            EmbeddedIssuer::new(Arc::new(store), keys.clone(), hasher, self.settings)
                .with_attestation(self.attestation),
        )
    }
}

/// Opens (and migrates) the embedded store: `--database-url`, or a SQLite file in `--data-dir`.
pub async fn open_store(
    database_url: Option<&SecretString>,
    data_dir: &std::path::Path,
) -> anyhow::Result<SqlStore> {
    const DATA_DIR: &str = "--data-dir (SHL_GATEWAY_DATA_DIR)";
    let (url, flag) = match database_url {
        Some(url) => (url.expose_secret().to_owned(), crate::config::DATABASE_URL),
        None => {
            crate::files::create_private_dir(data_dir)
                .with_context(|| format!("{DATA_DIR}: cannot create {}", data_dir.display()))?;
            let file = data_dir.join(crate::files::STORE_FILE);
            (format!("sqlite://{}?mode=rwc", file.display()), DATA_DIR)
        }
    };
    if let Some(path) = sqlite_file(&url) {
        prepare_sqlite_file(&path, &url)
            .with_context(|| format!("{flag}: cannot prepare the store file {}", path.display()))?;
    }
    SqlStore::connect(&url)
        .await
        .with_context(|| format!("{flag}: cannot open the store"))
}

/// The file a `sqlite:` URL names, unless it is an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;
    if !url.starts_with("sqlite:") || url.contains("mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    // sqlx names in-memory databases `file:sqlx-in-memory-N`.
    let text = path.to_string_lossy();
    (!text.is_empty() && text != ":memory:" && !text.starts_with("file:")).then(|| path.to_owned())
}

/// SQLite would create the file `0644` (its journals then copy that): create it `0600` first
/// when the URL lets SQLite create it (`mode=rwc`), and narrow existing ones.
fn prepare_sqlite_file(path: &std::path::Path, url: &str) -> std::io::Result<()> {
    if url.contains("mode=rwc") && !path.exists() {
        crate::files::create_private_file(path)?;
    }
    crate::files::tighten_sqlite(path)
}

/// Whether anything of this configuration lives in `--data-dir`: the generated key, the default
/// audit file, or (embedded mode) the default SQLite store.
fn uses_data_dir(config: &Config) -> bool {
    let key_in_dir = config.key.secret_key.is_none() && config.key.secret_key_file.is_none();
    let audit_in_dir =
        config.audit.audit_log.is_none() && config.audit.audit_database_url.is_none();
    let store_in_dir = (config.upstream.upstream_url.is_none() || config.bridge.ktc_bridge)
        && config.embedded.database_url.is_none();
    key_in_dir || audit_in_dir || store_in_dir
}

/// Stores the configured tokens (as HMACs) and, in demo mode, seeds the demo patient and takes
/// the development token kept in `data_dir` (made on first start). Returns that token, for
/// printing once.
async fn set_up_identities(
    config: &EmbeddedConfig,
    keys: &Keys,
    local_addr: SocketAddr,
    data_dir: &std::path::Path,
    store: &Arc<dyn LinkStore>,
) -> anyhow::Result<Option<SecretString>> {
    let now = now_ms();
    let configured: Vec<(String, String)> = config
        .patient_tokens
        .iter()
        .map(|entry| {
            (
                keys.token_hmac(entry.token.expose_secret()),
                entry.patient_id.clone(),
            )
        })
        .collect();
    store.replace_tokens("config", &configured, now).await?;

    let demo = match config.demo {
        DemoMode::On => true,
        DemoMode::Off => false,
        DemoMode::Auto => config.patient_tokens.is_empty() && local_addr.ip().is_loopback(),
    };
    if !demo {
        store.replace_tokens("demo", &[], now).await?;
        return Ok(None);
    }
    let patient = PatientRecord::demo();
    if store.patient(patient.patient_id()).await?.is_none() {
        store.put_patient(&patient, now).await?;
    }
    // Kept across restarts: open playground tabs and scripts keep working.
    let token = crate::demo::load_or_create_token(data_dir)?;
    store
        .replace_tokens(
            "demo",
            &[(
                keys.token_hmac(token.expose_secret()),
                patient.patient_id().to_owned(),
            )],
            now,
        )
        .await?;
    tracing::warn!(
        patient.id = patient.patient_id(),
        "demo mode: synthetic patient and development token"
    );
    Ok(Some(SecretString::from(format!(
        "Bearer {}",
        token.expose_secret()
    ))))
}

/// Drops the files of expired and revoked links every `interval`, until shutdown.
async fn run_purge(task: PurgeTask, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(task.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match task.issuer.purge(task.retention).await {
            Ok((files, links)) if files + links > 0 => {
                tracing::info!(
                    files_purged = files,
                    links_deleted = links,
                    "purged ended links"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "purge failed; will retry"),
        }
    }
}

async fn termination_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
