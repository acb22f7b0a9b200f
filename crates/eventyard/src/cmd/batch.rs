//! `eventyard batch send-now`: run a batch send on demand.

use std::process::ExitCode;

use clap::Subcommand;
use eventyard_sender::BatchScheduler;

use super::publishing::CliPublisher;
use super::{CliError, Global};

/// Arguments of `eventyard batch`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: BatchCommand,
}

#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Send every pending outbox row of an event type now, as the scheduler would.
    SendNow {
        /// The event type.
        #[arg(long)]
        event_type: String,
        /// The system id recorded as publisher (the envelopes are already packed).
        #[arg(long, env = "EVENTYARD_SYSTEM_ID", default_value = "eventyard-cli")]
        system: String,
    },
}

/// Runs `eventyard batch …`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let BatchCommand::SendNow { event_type, system } = args.command;
    let cli = CliPublisher::connect(global, &system).await?;
    let result = BatchScheduler::new(cli.publisher.clone())
        .send_now(&event_type)
        .await;
    cli.close().await;
    let report = result.map_err(|e| CliError::Failed(e.to_string()))?;
    if global.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        println!(
            "{event_type}: claimed {}, sent {}, retrying {}, failed {}",
            report.claimed, report.sent, report.retrying, report.failed
        );
    }
    Ok(if report.retrying + report.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
