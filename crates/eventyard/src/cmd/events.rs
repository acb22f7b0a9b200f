//! `eventyard events list|show|replay`: look at stored events and replay failures.

use std::process::ExitCode;

use clap::Subcommand;
use eventyard_core::db::Db;
use eventyard_core::envelope::{self, Limits};
use eventyard_receiver::{Inbox, InboxFilter, InboxRow, InboxStatus, ReplayRequest};
use eventyard_sender::{Outbox, OutboxFilter, OutboxRow, OutboxStatus};

use super::{table, CliError, Global};

/// Arguments of `eventyard events`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: EventsCommand,
}

/// Which table a command looks at.
#[derive(Debug, Clone, Copy, clap::Args)]
struct Side {
    /// The outbox (sent events); the default.
    #[arg(long, conflicts_with = "inbox")]
    outbox: bool,
    /// The inbox (received events).
    #[arg(long)]
    inbox: bool,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List events, newest first.
    List {
        #[command(flatten)]
        side: Side,
        /// Only this status (outbox: pending, sent, failed; inbox: received, done, retrying, dead, stored).
        #[arg(long)]
        status: Option<String>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only this subscriber (inbox).
        #[arg(long)]
        subscriber: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one event (outbox or inbox), with its unpacked envelope.
    Show {
        /// The event id.
        id: String,
    },
    /// Send `failed` outbox events again, or process `dead` inbox events again.
    Replay {
        #[command(flatten)]
        side: Side,
        /// Event ids to replay.
        ids: Vec<String>,
        /// Replay every failed (outbox) or dead (inbox) event of this type.
        #[arg(long)]
        event_type: Option<String>,
        /// Inbox: replay events in this status instead of `dead`.
        #[arg(long)]
        status: Option<String>,
        /// Inbox: only this subscriber's rows.
        #[arg(long)]
        subscriber: Option<String>,
    },
}

/// Runs `eventyard events …`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let db = Db::connect(global.require_database_url()?).await?;
    let result = dispatch(args.command, global, &db).await;
    db.close().await;
    result
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

async fn dispatch(command: EventsCommand, global: &Global, db: &Db) -> Result<ExitCode, CliError> {
    let outbox = Outbox::new(db.clone());
    let inbox = Inbox::new(db.clone());
    match command {
        EventsCommand::List {
            side,
            status,
            event_type,
            subscriber,
            limit,
        } => {
            if side.inbox {
                let status = status
                    .map(|s| {
                        s.parse::<InboxStatus>()
                            .map_err(|e| CliError::Usage(e.to_string()))
                    })
                    .transpose()?;
                let rows = inbox
                    .list(&InboxFilter {
                        subscriber,
                        status,
                        event_type,
                        limit: Some(limit),
                    })
                    .await
                    .map_err(failed)?;
                list_inbox(global, &rows);
            } else {
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
                    .map_err(failed)?;
                list_outbox(global, &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Show { id } => {
            if let Some(row) = outbox.get(&id).await.map_err(failed)? {
                show_outbox(global, &row);
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(row) = inbox.get(None, &id).await.map_err(failed)? {
                show_inbox(global, &row);
                return Ok(ExitCode::SUCCESS);
            }
            Err(CliError::Failed(format!(
                "no event with id `{id}` in ey_outbox or ey_inbox"
            )))
        }
        EventsCommand::Replay {
            side,
            ids,
            event_type,
            status,
            subscriber,
        } => {
            if ids.is_empty() && event_type.is_none() {
                return Err(CliError::Usage(
                    "name event ids to replay, or --event-type T to replay every failed/dead event of a type".into(),
                ));
            }
            let n = if side.inbox {
                let mut req = ReplayRequest {
                    subscriber,
                    event_ids: ids.clone(),
                    event_type,
                    ..ReplayRequest::default()
                };
                if let Some(s) = status {
                    req.status = s.parse().map_err(|e: eventyard_receiver::ReceiveError| {
                        CliError::Usage(e.to_string())
                    })?;
                }
                inbox.replay(&req).await.map_err(failed)?
            } else {
                outbox
                    .replay_failed(&ids, event_type.as_deref())
                    .await
                    .map_err(failed)?
            };
            let what = if side.inbox { "inbox" } else { "outbox" };
            if global.json {
                println!("{}", serde_json::json!({ "table": what, "replayed": n }));
            } else {
                println!("{n} {what} event(s) replayed");
            }
            if !ids.is_empty() && n < ids.len() as u64 {
                eprintln!(
                    "{} of the given ids were not replayable {what} events (wrong id or status)",
                    ids.len() as u64 - n
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Prints rows as JSON, or as a table of `cells` under `header`.
fn print_rows<T: serde::Serialize>(
    global: &Global,
    rows: &[T],
    header: &[&str],
    cells: impl Fn(&T) -> Vec<String>,
) {
    if global.json {
        println!("{}", serde_json::to_string(rows).unwrap_or_default());
    } else if rows.is_empty() {
        println!("no events");
    } else {
        table::print(header, &rows.iter().map(cells).collect::<Vec<_>>());
    }
}

fn list_outbox(global: &Global, rows: &[OutboxRow]) {
    print_rows(
        global,
        rows,
        &[
            "EVENT_ID",
            "EVENT_TYPE",
            "STATUS",
            "ATTEMPTS",
            "CREATED_AT",
            "SENT_AT",
            "LAST_ERROR",
        ],
        |r| {
            vec![
                r.event_id.clone(),
                r.event_type.clone(),
                r.status.clone(),
                r.attempts.to_string(),
                time(&r.created_at),
                r.sent_at.as_ref().map_or_else(|| "-".into(), time),
                r.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        },
    );
}

fn list_inbox(global: &Global, rows: &[InboxRow]) {
    print_rows(
        global,
        rows,
        &[
            "EVENT_ID",
            "EVENT_TYPE",
            "SUBSCRIBER",
            "STATUS",
            "ATTEMPTS",
            "RECEIVED_AT",
            "RESULT",
        ],
        |r| {
            vec![
                r.event_id.clone(),
                r.event_type.clone(),
                r.subscriber.clone(),
                r.status.clone(),
                r.attempts.to_string(),
                time(&r.received_at),
                r.result.clone().unwrap_or_else(|| "-".into()),
            ]
        },
    );
}

fn envelope_json(payload: &[u8]) -> serde_json::Value {
    match envelope::unpack(payload, &Limits::default()) {
        Ok(e) => serde_json::to_value(e).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

fn print_body(payload: &[u8]) {
    println!("payload:     {} bytes", payload.len());
    match envelope::unpack(payload, &Limits::default()) {
        Ok(e) => {
            println!("body ({}):", e.body.format());
            println!("{}", e.body.as_str());
        }
        Err(e) => println!("envelope:    cannot be read: {e}"),
    }
}

/// One row as JSON, with its table and unpacked envelope.
fn print_json<T: serde::Serialize>(row: &T, table: &str, payload: &[u8]) {
    let mut v = serde_json::to_value(row).unwrap_or_default();
    v["table"] = table.into();
    v["envelope"] = envelope_json(payload);
    println!("{v}");
}

fn show_outbox(global: &Global, row: &OutboxRow) {
    if global.json {
        print_json(row, "ey_outbox", &row.payload);
        return;
    }
    println!("table:       ey_outbox");
    println!("event_id:    {}", row.event_id);
    println!("event_type:  {}", row.event_type);
    println!("status:      {}", row.status);
    println!("attempts:    {}", row.attempts);
    println!("created_at:  {}", row.created_at.to_rfc3339());
    println!(
        "sent_at:     {}",
        row.sent_at.map_or_else(|| "-".into(), |t| t.to_rfc3339())
    );
    println!("last_error:  {}", row.last_error.as_deref().unwrap_or("-"));
    print_body(&row.payload);
}

fn show_inbox(global: &Global, row: &InboxRow) {
    if global.json {
        print_json(row, "ey_inbox", &row.payload);
        return;
    }
    println!("table:        ey_inbox");
    println!("event_id:     {}", row.event_id);
    println!("event_type:   {}", row.event_type);
    println!("subscriber:   {}", row.subscriber);
    println!("status:       {}", row.status);
    println!("attempts:     {}", row.attempts);
    println!("received_at:  {}", row.received_at.to_rfc3339());
    println!(
        "processed_at: {}",
        row.processed_at
            .map_or_else(|| "-".into(), |t| t.to_rfc3339())
    );
    println!("result:       {}", row.result.as_deref().unwrap_or("-"));
    print_body(&row.payload);
}
