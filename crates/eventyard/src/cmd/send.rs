//! `eventyard send`: publish one event as its config row says.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use eventyard_core::envelope::Body;
use eventyard_sender::{EventMeta, Outcome};

use super::publishing::CliPublisher;
use super::{CliError, Global};

/// Arguments of `eventyard send`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The event type (must have a valid, enabled ey_send_config row).
    #[arg(long)]
    event_type: String,
    /// The value: a JSON file (run through the row's converter) or an XML
    /// file (sent as the body as is); `-` reads stdin.
    #[arg(long)]
    payload: PathBuf,
    /// The publishing system id written into the envelope header.
    #[arg(long, env = "EVENTYARD_SYSTEM_ID", default_value = "eventyard-cli")]
    system: String,
    /// A business key for the envelope's common section.
    #[arg(long)]
    business_key: Option<String>,
    /// A trace id for the envelope's common section.
    #[arg(long)]
    trace_id: Option<String>,
}

/// Runs `eventyard send`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let mut text = String::new();
    if args.payload.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("reading the payload from stdin", e))?;
    } else {
        text = std::fs::read_to_string(&args.payload).map_err(|e| {
            CliError::io(format!("reading the payload {}", args.payload.display()), e)
        })?;
    }
    let meta = EventMeta {
        business_key: args.business_key,
        trace_id: args.trace_id,
        ..EventMeta::default()
    };
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    let cli = CliPublisher::connect(global, &args.system).await?;
    let result = if trimmed.starts_with('<') {
        let body = trimmed
            .strip_prefix("<?xml")
            .and_then(|rest| rest.split_once("?>"))
            .map_or(trimmed, |(_, after)| after.trim_start());
        cli.publisher
            .publish_body(&args.event_type, Body::Xml(body.to_string()), meta)
            .await
    } else {
        let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| {
            CliError::Failed(format!("the payload is neither XML nor valid JSON: {e}"))
        })?;
        cli.publisher
            .publish_with(&args.event_type, &value, meta)
            .await
    };
    cli.close().await;
    let published = result.map_err(|e| CliError::Failed(e.to_string()))?;
    let (outcome, note) = match &published.outcome {
        Outcome::Sent => ("sent", String::new()),
        Outcome::Queued => ("queued", " (pending until the batch scheduler runs)".into()),
        Outcome::Deferred { error } => (
            "deferred",
            format!(" (publish failed: {error}; left pending for the batch scheduler)"),
        ),
    };
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "event_id": published.event_id, "outcome": outcome })
        );
    } else {
        println!("{} {outcome}{note}", published.event_id);
    }
    Ok(ExitCode::SUCCESS)
}
