//! One module per subcommand, dispatched from [`Command`].

pub(crate) mod batch;
pub(crate) mod config;
pub(crate) mod convert;
pub(crate) mod envelope;
pub(crate) mod events;
pub(crate) mod migrate;
pub(crate) mod publishing;
pub(crate) mod run;
pub(crate) mod send;
pub(crate) mod seq;
mod table;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Database URL (postgres://, mysql://, sqlite://).
    #[arg(long, env = "EVENTYARD_DATABASE_URL", global = true)]
    pub(crate) database_url: Option<String>,
    /// AMQP broker URL (amqp:// or amqps://).
    #[arg(long, env = "EVENTYARD_AMQP_URL", global = true)]
    pub(crate) amqp_url: Option<String>,
    /// Print machine-readable JSON instead of human tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl Global {
    /// The database URL, or a usage error telling how to give one.
    pub(crate) fn require_database_url(&self) -> Result<&str, CliError> {
        self.database_url.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no database given; pass --database-url or set EVENTYARD_DATABASE_URL".into(),
            )
        })
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply the schema migrations to the database.
    Migrate(migrate::Args),
    /// Inspect and validate the config tables.
    Config(config::Args),
    /// Pack and unpack wire envelopes.
    Envelope(envelope::Args),
    /// Apply receive-converter rules to a body read from stdin.
    Convert(convert::Args),
    /// Sequence tracking tools.
    Seq(seq::Args),
    /// List, show and replay stored events.
    Events(events::Args),
    /// Publish one event as its config row says.
    Send(send::Args),
    /// Batch sends on demand.
    Batch(batch::Args),
    /// Run the daemon (batch scheduler, relay, receiver, metrics).
    Run(run::Args),
}

/// Runs one subcommand.
pub(crate) async fn run(command: Command, global: Global) -> Result<ExitCode, CliError> {
    match command {
        Command::Migrate(args) => migrate::run(args, &global).await,
        Command::Config(args) => config::run(args, &global).await,
        Command::Envelope(args) => envelope::run(args, &global).await,
        Command::Convert(args) => convert::run(args, &global).await,
        Command::Seq(args) => seq::run(args, &global).await,
        Command::Events(args) => events::run(args, &global).await,
        Command::Send(args) => send::run(args, &global).await,
        Command::Batch(args) => batch::run(args, &global).await,
        Command::Run(args) => run::run(args, &global).await,
    }
}

/// What a subcommand can fail with; maps to the process exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The command line was wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A failure the command reports (exit code 1).
    #[error("{0}")]
    Failed(String),
    /// An error from the core library (exit code 1).
    #[error(transparent)]
    Core(#[from] eventyard_core::Error),
    /// Reading input or writing output failed (exit code 1).
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}
