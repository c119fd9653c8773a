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
use axum::http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::graphql::{OperationLimits, SchemaOptions, build_schema};
use crate::http::{AppState, HttpSettings, Readiness, router};
use crate::issuer::Issuer;
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
}

/// Starts a graceful shutdown, like SIGTERM does.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        // Nobody listening means the server already stopped, which is what was asked.
        let _ = self.0.send(true);
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        // Loaded now so a bad key stops startup; the HMACs that use it arrive with later features.
        let _secret_key = config.load_secret_key()?;

        let issuer = build_issuer(&config)?;
        let schema_options = SchemaOptions {
            limits: OperationLimits {
                max_depth: config.max_depth,
                max_complexity: config.max_complexity,
            },
            introspection: config.introspection,
        };
        let readiness = Readiness::default();
        let state = AppState {
            schema: build_schema(Arc::clone(&issuer), &schema_options),
            issuer,
            readiness: readiness.clone(),
            max_body_bytes: config.max_body_bytes,
        };
        let http_settings = HttpSettings {
            max_body_bytes: config.max_body_bytes,
            cors_allowed_origins: config
                .cors_allowed_origins
                .iter()
                .map(|origin| HeaderValue::from_str(origin))
                .collect::<Result<_, _>>()
                .context("--cors-allowed-origins")?,
            graphiql_assets_dir: config.graphiql.then(|| config.graphiql_assets_dir.clone()),
        };

        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "--listen (SHL_GATEWAY_LISTEN): cannot bind {}",
                config.listen
            )
        })?;
        let local_addr = listener.local_addr()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Self {
            listener,
            local_addr,
            router: router(state, &http_settings),
            readiness,
            shutdown_delay: config.shutdown_delay,
            shutdown_timeout: config.shutdown_timeout,
            shutdown,
        })
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
        } = self;
        let mut requested = shutdown.subscribe();
        let (drain_started, mut drain_started_rx) = watch::channel(false);
        let stop_signal = async move {
            tokio::select! {
                () = termination_signal() => {},
                _ = requested.wait_for(|stop| *stop) => {},
            }
            readiness.mark_shutting_down();
            tracing::info!(
                delay_ms = shutdown_delay.as_millis() as u64,
                "shutdown started: readiness failing"
            );
            tokio::time::sleep(shutdown_delay).await;
            tracing::info!("draining in-flight requests");
            let _ = drain_started.send(true);
        };
        tracing::info!(address = %local_addr, "listening");
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_signal);
        let server = std::pin::pin!(server.into_future());
        // Once draining starts, it may take at most `shutdown_timeout`.
        let deadline = async {
            let _ = drain_started_rx.wait_for(|started| *started).await;
            tokio::time::sleep(shutdown_timeout).await;
        };
        tokio::select! {
            result = server => {
                tracing::info!("shutdown complete");
                result
            }
            () = deadline => {
                tracing::warn!(timeout_s = shutdown_timeout.as_secs(), "shutdown timed out with requests in flight");
                Ok(())
            }
        }
    }
}

fn build_issuer(config: &Config) -> anyhow::Result<Arc<dyn Issuer>> {
    let url = config
        .upstream_url
        .clone()
        .context("--upstream-url (SHL_GATEWAY_UPSTREAM_URL) is required")?;
    let client = UpstreamClient::new(UpstreamSettings {
        url,
        connect_timeout: config.upstream_connect_timeout,
        total_timeout: config.upstream_timeout,
        max_response_bytes: config.upstream_max_response_bytes,
    })
    .context("cannot build the upstream HTTP client")?;
    Ok(Arc::new(UpstreamIssuer::new(client)))
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
