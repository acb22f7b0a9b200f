//! `eventyard migrate` (being written).

use std::process::ExitCode;

use super::{CliError, Global};

/// Arguments of `eventyard migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `eventyard migrate`.
pub(crate) async fn run(_args: Args, _global: &Global) -> Result<ExitCode, CliError> {
    Err(CliError::Failed("not built yet".into()))
}
