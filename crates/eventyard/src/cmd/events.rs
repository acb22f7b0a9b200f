//! `eventyard events list|show|replay`: look at stored events and replay failures.

use std::process::ExitCode;

use clap::Subcommand;
use eventyard_core::db::Db;
use eventyard_core::envelope::{self, Limits};
use eventyard_sender::{Outbox, OutboxFilter, OutboxRow, OutboxStatus};

use super::{table, CliError, Global};

/// Arguments of `eventyard events`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List outbox events, newest first.
    List {
        /// List the outbox (sent events); the default.
        #[arg(long)]
        outbox: bool,
        /// Only this status (pending, sent, failed).
        #[arg(long)]
        status: Option<String>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one event, with its unpacked envelope.
    Show {
        /// The event id.
        id: String,
    },
    /// Put `failed` outbox events back to `pending` so they are sent again.
    Replay {
        /// Event ids to replay (all failed events of --event-type if none given).
        ids: Vec<String>,
        /// Replay every failed event of this type.
        #[arg(long)]
        event_type: Option<String>,
    },
}

/// Runs `eventyard events …`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let db = Db::connect(global.require_database_url()?).await?;
    let outbox = Outbox::new(db.clone());
    let result = match args.command {
        EventsCommand::List {
            outbox: _,
            status,
            event_type,
            limit,
        } => {
            let status = status
                .map(|s| s.parse::<OutboxStatus>().map_err(CliError::Usage))
                .transpose()?;
            let rows = outbox
                .list(&OutboxFilter {
                    status,
                    event_type,
                    limit: Some(limit),
                })
                .await
                .map_err(send_err)?;
            list(global, &rows);
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Show { id } => match outbox.get(&id).await.map_err(send_err)? {
            Some(row) => {
                show(global, &row);
                Ok(ExitCode::SUCCESS)
            }
            None => Err(CliError::Failed(format!("no outbox event with id `{id}`"))),
        },
        EventsCommand::Replay { ids, event_type } => {
            if ids.is_empty() && event_type.is_none() {
                return Err(CliError::Usage(
                    "name event ids to replay, or --event-type T to replay every failed event of a type".into(),
                ));
            }
            let n = outbox
                .replay_failed(&ids, event_type.as_deref())
                .await
                .map_err(send_err)?;
            if global.json {
                println!("{}", serde_json::json!({ "replayed": n }));
            } else {
                println!("{n} failed event(s) put back to pending");
            }
            if !ids.is_empty() && n < ids.len() as u64 {
                eprintln!(
                    "{} of the given ids were not failed outbox events",
                    ids.len() as u64 - n
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    db.close().await;
    result
}

fn send_err(e: eventyard_sender::SendError) -> CliError {
    CliError::Failed(e.to_string())
}

fn list(global: &Global, rows: &[OutboxRow]) {
    if global.json {
        println!("{}", serde_json::to_string(rows).unwrap_or_default());
        return;
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.event_id.clone(),
                r.event_type.clone(),
                r.status.clone(),
                r.attempts.to_string(),
                r.created_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                r.sent_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
                    .unwrap_or_else(|| "-".into()),
                r.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!("no events");
        return;
    }
    table::print(
        &[
            "EVENT_ID",
            "EVENT_TYPE",
            "STATUS",
            "ATTEMPTS",
            "CREATED_AT",
            "SENT_AT",
            "LAST_ERROR",
        ],
        &rows,
    );
}

fn show(global: &Global, row: &OutboxRow) {
    let unpacked = envelope::unpack(&row.payload, &Limits::default());
    if global.json {
        let envelope = match &unpacked {
            Ok(e) => serde_json::to_value(e).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let mut v = serde_json::to_value(row).unwrap_or_default();
        v["envelope"] = envelope;
        println!("{v}");
        return;
    }
    println!("event_id:    {}", row.event_id);
    println!("event_type:  {}", row.event_type);
    println!("status:      {}", row.status);
    println!("attempts:    {}", row.attempts);
    println!("created_at:  {}", row.created_at.to_rfc3339());
    println!(
        "sent_at:     {}",
        row.sent_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "-".into())
    );
    println!("last_error:  {}", row.last_error.as_deref().unwrap_or("-"));
    println!("payload:     {} bytes", row.payload.len());
    match unpacked {
        Ok(e) => {
            println!("body ({}):", e.body.format());
            println!("{}", e.body.as_str());
        }
        Err(e) => println!("envelope:    cannot be read: {e}"),
    }
}
