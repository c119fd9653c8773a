//! The `shl-gateway` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

use secrecy::ExposeSecret as _;
use shl_gateway::config::{
    AttestationCommand, AuditCommand, Cli, Command, Config, RenamedVariable,
};
use shl_gateway::startup::Application;

/// mimalloc instead of glibc's allocator: a request allocates and frees thousands of small
/// objects (GraphQL values, JSON, headers), and under load glibc's malloc and free took a fifth
/// of the gateway's CPU (BENCHMARKS.md has the profiles before and after).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let (cli, renamed) = Cli::from_env();
    let result = match cli.command {
        None => serve(cli.serve, &renamed).await,
        Some(Command::Serve(config)) => serve(*config, &renamed).await,
        Some(Command::Schema) => print_schema(),
        Some(Command::ImportBundle {
            file,
            database_url,
            data_dir,
            strict,
        }) => import_bundle(&file, database_url.as_ref(), &data_dir, strict).await,
        Some(Command::Audit { command }) => audit(command),
        Some(Command::Attestation { command }) => attestation(command),
        Some(Command::Healthcheck { listen, tls_cert }) => {
            healthcheck(listen, tls_cert.is_some()).await
        }
        // Its exit code says whether the link passed, not only whether the command ran.
        Some(Command::Inspect(args)) => return inspect(*args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shl-gateway: {}", shl_gateway::telemetry::report(&error));
            ExitCode::FAILURE
        }
    }
}

/// Writes a command's output to stdout. A closed pipe (`| head`) or a full disk is an error
/// reported like any other, where `println!` would panic with a backtrace.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|error| anyhow::anyhow!("cannot write to standard output: {error}"))
}

/// The SDL goes to stdout so it can be redirected into `schema/schema.graphql`.
fn print_schema() -> anyhow::Result<()> {
    write_stdout(&shl_gateway::graphql::sdl())
}

/// Demo mode's one exception to "no secret on any output": the development token, once, on
/// stdout (never in the logs), so a newcomer can create a link straight away. A stdout that
/// cannot take it stops nothing: the token is also in `<data-dir>/dev-token`.
fn print_development_token(token: &str, address: std::net::SocketAddr) {
    let _ = write_stdout(&format!(
        "\n  shl-gateway demo mode: a synthetic patient and a development token.\n  \
         GraphiQL:  http://{address}/graphiql\n  Header:    Authorization: {token}\n\n"
    ));
}

async fn serve(config: Config, renamed: &[RenamedVariable]) -> anyhow::Result<()> {
    let telemetry = &config.telemetry;
    shl_gateway::telemetry::init(
        telemetry.log_format,
        &telemetry.log_filter,
        telemetry.otlp_endpoint.as_deref(),
    )?;
    for variable in renamed {
        variable.warn();
    }
    let application = Application::build(config).await?;
    if let Some(token) = application.development_token() {
        print_development_token(token.expose_secret(), application.local_addr());
    }
    application.run_until_stopped().await?;
    Ok(())
}

/// The patient id goes to stdout, for scripts (`ID=$(shl-gateway import-bundle ...)`); the
/// report of what was imported and skipped goes to stderr, for the person running it.
async fn import_bundle(
    file: &std::path::Path,
    database_url: Option<&secrecy::SecretString>,
    data_dir: &std::path::Path,
    strict: bool,
) -> anyhow::Result<()> {
    use shl_gateway::issuer::fhir::{PatientRecord, Unimportable};
    use shl_gateway::issuer::store::LinkStore as _;
    let text = std::fs::read_to_string(file)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))?;
    let bundle: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("{} is not JSON", file.display()))?;
    let unimportable = if strict {
        Unimportable::Refuse
    } else {
        Unimportable::Skip
    };
    let import = PatientRecord::import(&bundle, unimportable)
        .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    let store = shl_gateway::startup::open_store(database_url, data_dir).await?;
    store
        .put_patient(&import.record, shl_gateway::clock::now_ms())
        .await?;
    store.close().await;
    write_stdout(&format!("{}\n", import.record.patient_id()))?;
    eprintln!("{}", import.report);
    Ok(())
}

fn audit(command: AuditCommand) -> anyhow::Result<()> {
    use shl_gateway::audit::{export_fhir, verify_files};
    match command {
        AuditCommand::Verify { files, head, key } => {
            let keys = shl_gateway::crypto::Keys::derive(&key.load_existing()?);
            let report = verify_files(&files, keys.audit_chain.as_bytes(), head.as_deref());
            write_stdout(&format!("{report}\n"))?;
            anyhow::ensure!(report.is_ok(), "the audit trail does not verify");
            Ok(())
        }
        AuditCommand::Export { file, output } => {
            let bundle = serde_json::to_string_pretty(&export_fhir(&file)?)?;
            match output {
                Some(path) => std::fs::write(&path, bundle)
                    .map_err(|error| anyhow::anyhow!("cannot write {}: {error}", path.display())),
                None => write_stdout(&format!("{bundle}\n")),
            }
        }
    }
}

/// `attestation new-key`: the key goes to its file only; the kid is the output.
fn attestation(command: AttestationCommand) -> anyhow::Result<()> {
    match command {
        AttestationCommand::NewKey { out } => {
            let kid = shl_gateway::config::write_new_attestation_key(&out)?;
            write_stdout(&format!("{kid}\n"))
        }
    }
}

/// `inspect`: the report on stdout; exit 0 when every required check passes, 1 when one
/// fails, 2 when the input cannot be read. No logging is set up: nothing but the report is
/// written, and the report holds no key, passcode or link.
async fn inspect(args: shl_gateway::config::InspectArgs) -> ExitCode {
    use shl_gateway::config::ReportFormat;
    let (input, options, format) = match args.into_inspection() {
        Ok(inspection) => inspection,
        Err(error) => {
            eprintln!("shl-gateway inspect: {error:#}");
            return ExitCode::from(2);
        }
    };
    let report = shl_gateway::inspect::inspect(input, &options).await;
    let written = match format {
        ReportFormat::Text => write_stdout(&format!("{report}\n")),
        ReportFormat::Json => write_stdout(&format!("{}\n", report.to_json())),
    };
    if let Err(error) = written {
        eprintln!("shl-gateway inspect: {error}");
        return ExitCode::from(2);
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Probes `/healthz` on the local listener; a wildcard listen address is probed on loopback.
async fn healthcheck(listen: std::net::SocketAddr, tls: bool) -> anyhow::Result<()> {
    let mut target = listen;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    // The probe talks to this host's own listener over loopback, where the certificate's names
    // (the public host) cannot match: liveness, not identity, is what it checks.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .danger_accept_invalid_certs(tls)
        .build()?;
    let scheme = if tls { "https" } else { "http" };
    let response = client
        .get(format!("{scheme}://{target}/healthz"))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "/healthz answered {}",
        response.status()
    );
    Ok(())
}
