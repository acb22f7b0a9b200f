//! # eventyard-bench
//!
//! Throughput benchmarks of eventyard against the local RabbitMQ and
//! PostgreSQL, each compared in one run with what the same machine does
//! without eventyard:
//!
//! ```text
//! cargo run --release -p eventyard-bench -- send [--messages N] [--naive-messages N] [--concurrency 32]
//! ```
//!
//! Every run creates its own database (`eyb_<uuid>`) and its own exchanges
//! and queues (`eyb.<uuid>.…`) and removes them at the end. Only loopback
//! services are accepted. Results are printed as Markdown tables (see
//! `docs/performance.md`).
//!
//! Subcommands live in their own modules (`send` now; the receive side and
//! end to end later) and share the setup in `common`.

mod common;
mod send;

use clap::{Parser, Subcommand};

/// eventyard benchmarks against the local RabbitMQ and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "eventyard-bench", version, about)]
struct Cli {
    /// What to measure.
    #[command(subcommand)]
    command: Command,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
enum Command {
    /// The send path: raw lapin, a naive outbox loop, eventyard `realtime`
    /// and eventyard `batch`.
    Send(send::SendArgs),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Send(args) => send::run(args).await,
        }
    });
    outcome.map_err(|e| -> Box<dyn std::error::Error> { e })
}
