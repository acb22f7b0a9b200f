//! `eventyard envelope` (being written).

use std::process::ExitCode;

use super::{CliError, Global};

/// Arguments of `eventyard envelope`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Runs `eventyard envelope`.
pub(crate) async fn run(_args: Args, _global: &Global) -> Result<ExitCode, CliError> {
    Err(CliError::Failed("not built yet".into()))
}
