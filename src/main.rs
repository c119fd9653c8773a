//! The `shl-gateway` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser as _;
use shl_gateway::config::{Cli, Command, Config};
use shl_gateway::startup::Application;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Schema) => print_schema(),
        Some(Command::Healthcheck { listen }) => healthcheck(listen).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shl-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The SDL goes to stdout so it can be redirected into `schema/schema.graphql`.
#[expect(
    clippy::print_stdout,
    reason = "printing the schema is this command's purpose"
)]
fn print_schema() -> anyhow::Result<()> {
    print!("{}", shl_gateway::graphql::sdl());
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    shl_gateway::telemetry::init(config.log_format, &config.log_filter)?;
    let application = Application::build(config).await?;
    application.run_until_stopped().await?;
    Ok(())
}

/// Probes `/healthz` on the local listener; a wildcard listen address is probed on loopback.
async fn healthcheck(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    let response = client
        .get(format!("http://{target}/healthz"))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "/healthz answered {}",
        response.status()
    );
    Ok(())
}
