//! `eventyard config list|check`: inspect and validate the config tables.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use eventyard::catalog::RuntimeCatalog;
use eventyard_converter::Registry;
use eventyard_core::config::{ConfigStore, Loaded, RawReceiveRow, RawSendRow, RowError};
use eventyard_core::db::Db;

use super::{table, CliError, Global};

/// Arguments of `eventyard config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// List the rows of ey_send_config and ey_receive_config, with their validity.
    List {
        /// Only ey_send_config.
        #[arg(long, conflicts_with = "receive")]
        send: bool,
        /// Only ey_receive_config.
        #[arg(long)]
        receive: bool,
    },
    /// Validate every row; exit 1 if any is invalid, one problem per line.
    Check,
}

/// Runs `eventyard config …`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let db = Db::connect(global.require_database_url()?).await?;
    let store = ConfigStore::new(db.clone());
    let catalog = RuntimeCatalog::new(Arc::new(Registry::with_builtins()))
        .with_recorded(&store)
        .await?;
    let loaded = store.load(&catalog).await?;
    let result = match args.command {
        ConfigCommand::List { send, receive } => {
            let send_rows = if receive {
                Vec::new()
            } else {
                store.send_rows().await?
            };
            let receive_rows = if send {
                Vec::new()
            } else {
                store.receive_rows().await?
            };
            list(global, &loaded, &send_rows, &receive_rows);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check => check(global, &loaded, &store).await,
    };
    db.close().await;
    result
}

fn invalid_send(problems: &[RowError]) -> BTreeSet<&str> {
    problems
        .iter()
        .filter(|p| p.subscriber.is_none())
        .map(|p| p.event_type.as_str())
        .collect()
}

fn invalid_receive(problems: &[RowError]) -> BTreeSet<(&str, &str)> {
    problems
        .iter()
        .filter_map(|p| Some((p.event_type.as_str(), p.subscriber.as_deref()?)))
        .collect()
}

fn or_dash(v: &Option<String>) -> String {
    v.clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn list(global: &Global, loaded: &Loaded, send: &[RawSendRow], receive: &[RawReceiveRow]) {
    let bad_send = invalid_send(&loaded.problems);
    let bad_recv = invalid_receive(&loaded.problems);
    if global.json {
        let send: Vec<_> = send
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["valid"] = (!bad_send.contains(r.event_type.as_str())).into();
                v
            })
            .collect();
        let receive: Vec<_> = receive
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["valid"] =
                    (!bad_recv.contains(&(r.event_type.as_str(), r.subscriber.as_str()))).into();
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "version": loaded.version, "send": send, "receive": receive })
        );
        return;
    }
    if !send.is_empty() {
        println!("ey_send_config");
        let rows: Vec<Vec<String>> = send
            .iter()
            .map(|r| {
                vec![
                    r.event_type.clone(),
                    if r.enabled { "yes" } else { "no" }.into(),
                    r.send_mode.clone(),
                    r.converter_id.clone(),
                    if r.persist { "yes" } else { "no" }.into(),
                    r.retry_count.to_string(),
                    or_dash(&r.batch_cron),
                    r.batch_size.to_string(),
                    r.compression.clone(),
                    r.exchange.clone(),
                    or_dash(&r.routing_key),
                    if r.sequenced { "yes" } else { "no" }.into(),
                    if bad_send.contains(r.event_type.as_str()) {
                        "INVALID"
                    } else {
                        "ok"
                    }
                    .into(),
                ]
            })
            .collect();
        table::print(
            &[
                "EVENT_TYPE",
                "ENABLED",
                "MODE",
                "CONVERTER",
                "PERSIST",
                "RETRIES",
                "BATCH_CRON",
                "BATCH_SIZE",
                "COMPRESSION",
                "EXCHANGE",
                "ROUTING_KEY",
                "SEQUENCED",
                "VALID",
            ],
            &rows,
        );
    }
    if !receive.is_empty() {
        if !send.is_empty() {
            println!();
        }
        println!("ey_receive_config");
        let rows: Vec<Vec<String>> = receive
            .iter()
            .map(|r| {
                let bad = bad_recv.contains(&(r.event_type.as_str(), r.subscriber.as_str()));
                vec![
                    r.event_type.clone(),
                    r.subscriber.clone(),
                    if r.enabled { "yes" } else { "no" }.into(),
                    r.process_mode.clone(),
                    or_dash(&r.handler_id),
                    r.converter_id.clone(),
                    r.workers.to_string(),
                    or_dash(&r.batch_cron),
                    r.max_attempts.to_string(),
                    r.backoff_ms.to_string(),
                    or_dash(&r.queue),
                    if bad { "INVALID" } else { "ok" }.into(),
                ]
            })
            .collect();
        table::print(
            &[
                "EVENT_TYPE",
                "SUBSCRIBER",
                "ENABLED",
                "MODE",
                "HANDLER",
                "CONVERTER",
                "WORKERS",
                "BATCH_CRON",
                "MAX_ATTEMPTS",
                "BACKOFF_MS",
                "QUEUE",
                "VALID",
            ],
            &rows,
        );
    }
    if send.is_empty() && receive.is_empty() {
        println!("no config rows");
    }
    if !loaded.problems.is_empty() {
        println!(
            "\n{} problem(s); run `eventyard config check` for details",
            loaded.problems.len()
        );
    }
}

async fn check(
    global: &Global,
    loaded: &Loaded,
    store: &ConfigStore,
) -> Result<ExitCode, CliError> {
    let send_rows = store.send_rows().await?.len();
    let receive_rows = store.receive_rows().await?.len();
    if global.json {
        let problems: Vec<_> = loaded
            .problems
            .iter()
            .map(|p| {
                serde_json::json!({
                    "table": p.table.name(),
                    "event_type": p.event_type,
                    "subscriber": p.subscriber,
                    "column": p.column,
                    "message": p.message,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "send_rows": send_rows,
                "receive_rows": receive_rows,
                "valid": problems.is_empty(),
                "problems": problems,
            })
        );
    } else if loaded.problems.is_empty() {
        println!("{send_rows} send row(s) and {receive_rows} receive row(s): all valid");
    } else {
        for p in &loaded.problems {
            eprintln!("{p}");
        }
    }
    Ok(if loaded.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
