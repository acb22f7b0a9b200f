//! `eventyard run`: the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use eventyard::daemon::{shutdown_signal, Daemon, DaemonError, Settings};

use super::{CliError, Global};

/// Arguments of `eventyard run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The settings file (TOML); see docs/operations.md. Without one, the
    /// settings come from flags and EVENTYARD_* variables alone.
    #[arg(long)]
    config: Option<PathBuf>,
    /// This system's id (overrides the file and EVENTYARD_SYSTEM_ID).
    #[arg(long)]
    system: Option<String>,
}

/// Runs the daemon until SIGINT or SIGTERM.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let mut settings = match &args.config {
        Some(path) => Settings::from_file(path).map_err(daemon_err)?,
        None => Settings::default(),
    }
    .with_env();
    if let Some(url) = &global.database_url {
        settings.database_url = Some(url.clone());
    }
    if let Some(url) = &global.amqp_url {
        settings.amqp_url = Some(url.clone());
    }
    if let Some(system) = args.system {
        settings.system_id = Some(system);
    }
    let running = Daemon::new(settings).start().await.map_err(daemon_err)?;
    shutdown_signal().await;
    tracing::info!("shutdown signal received");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn daemon_err(e: DaemonError) -> CliError {
    match e {
        DaemonError::Missing { .. } | DaemonError::Settings { .. } => {
            CliError::Usage(e.to_string())
        }
        other => CliError::Failed(other.to_string()),
    }
}
