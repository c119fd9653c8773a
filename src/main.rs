//! The `shl-gateway` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use clap::Parser as _;
use secrecy::ExposeSecret as _;
use shl_gateway::config::{Cli, Command, Config};
use shl_gateway::startup::Application;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Schema) => print_schema(),
        Some(Command::ImportBundle {
            file,
            database_url,
            data_dir,
        }) => import_bundle(&file, database_url.as_ref(), &data_dir).await,
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

/// Demo mode's one exception to "no secret on any output": the development token, once, on
/// stdout (never in the logs), so a newcomer can create a link straight away.
#[expect(
    clippy::print_stdout,
    reason = "the token is for the person who started the gateway"
)]
fn print_development_token(token: &str, address: std::net::SocketAddr) {
    println!();
    println!("  shl-gateway demo mode: a synthetic patient and a development token.");
    println!("  GraphiQL:  http://{address}/graphiql");
    println!("  Header:    Authorization: {token}");
    println!();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    shl_gateway::telemetry::init(config.log_format, &config.log_filter)?;
    let application = Application::build(config).await?;
    if let Some(token) = application.development_token() {
        print_development_token(token.expose_secret(), application.local_addr());
    }
    application.run_until_stopped().await?;
    Ok(())
}

#[expect(
    clippy::print_stdout,
    reason = "the patient id is the command's output"
)]
async fn import_bundle(
    file: &std::path::Path,
    database_url: Option<&secrecy::SecretString>,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    use shl_gateway::issuer::store::LinkStore as _;
    let text = std::fs::read_to_string(file)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))?;
    let bundle: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("{} is not JSON", file.display()))?;
    let record = shl_gateway::issuer::fhir::PatientRecord::from_bundle(&bundle)?;
    let store = shl_gateway::startup::open_store(database_url, data_dir).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    store.put_patient(&record, i64::try_from(now)?).await?;
    store.close().await;
    println!("{}", record.patient_id());
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
