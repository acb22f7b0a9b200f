//! # eventyard-bench
//!
//! Throughput benchmarks of eventyard against the local RabbitMQ and
//! PostgreSQL, each compared in one run with what the same machine does
//! without eventyard:
//!
//! ```text
//! cargo run --release -p eventyard-bench -- send [--messages N] [--naive-messages N] [--concurrency 32]
//! cargo run --release -p eventyard-bench -- receive [--messages 20000] [--workers 8]
//! cargo run --release -p eventyard-bench -- e2e [--rate 1000] [--seconds 20]
//! cargo run --release -p eventyard-bench -- all      # receive, then e2e
//! ```
//!
//! Every run creates its own database (`eyb_<uuid>`) and its own exchanges
//! and queues (`eyb.<uuid>.…`) and removes them at the end. Only loopback
//! services are accepted. Results are printed as Markdown tables (see
//! `docs/performance.md`).
//!
//! Subcommands live in their own modules (`send`, `receive`, `e2e`) and
//! share the setup in `common`.

mod common;
mod e2e;
mod receive;
mod send;

use clap::{Args, Parser, Subcommand};

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
    /// The receive path on a pre-filled queue: raw lapin acking (a0), naive
    /// store-then-ack (a), eventyard with a no-op realtime handler (b) and
    /// store + ack only (b').
    Receive(receive::ReceiveArgs),
    /// End to end (c): realtime publish → handler at a steady rate, with
    /// latency percentiles.
    E2e(e2e::E2eArgs),
    /// `receive`, then `e2e`.
    All(AllArgs),
}

/// Options of `all`: those of `receive` plus the rate and length of `e2e`.
#[derive(Debug, Clone, Args)]
struct AllArgs {
    /// `receive`'s options (the services, body size and workers are shared with `e2e`).
    #[command(flatten)]
    receive: receive::ReceiveArgs,
    /// `e2e`'s rate and length.
    #[command(flatten)]
    e2e: e2e::E2eParams,
}

/// Runs `receive` and then `e2e`, and prints both tables again at the end.
async fn all(args: AllArgs) -> common::Result<()> {
    let measurements = receive::run_collect(&args.receive).await?;
    let e2e_args = e2e::E2eArgs {
        services: args.receive.services.clone(),
        body_bytes: args.receive.body_bytes,
        workers: args.receive.workers,
        no_inline: args.receive.no_inline,
        params: args.e2e,
    };
    let result = e2e::run_collect(&e2e_args).await?;
    println!();
    print!("{}", result.render());
    if measurements.iter().any(|m| !m.ok) || !result.ok {
        return Err(common::fail("a correctness check failed (see the tables)"));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Send(args) => send::run(args).await,
            Command::Receive(args) => receive::run(args).await,
            Command::E2e(args) => e2e::run(args).await,
            Command::All(args) => all(args).await,
        }
    });
    outcome.map_err(|e| -> Box<dyn std::error::Error> { e })
}
