//! `eventyard migrate`: apply the schema migrations.

use std::process::ExitCode;

use eventyard_core::db::{redact_url, Db};
use eventyard_core::migrate::latest_version;

use super::{CliError, Global};

/// Arguments of `eventyard migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

/// Applies every pending migration; safe to run again.
pub(crate) async fn run(_args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let url = global.require_database_url()?;
    let db = Db::connect(url).await?;
    db.migrate().await?;
    db.close().await;
    let version = latest_version();
    if global.json {
        println!(
            "{}",
            serde_json::json!({
                "database": redact_url(url),
                "backend": db.backend().as_str(),
                "schema_version": version,
            })
        );
    } else {
        println!(
            "schema is at version {version} on {} ({})",
            redact_url(url),
            db.backend().as_str()
        );
    }
    Ok(ExitCode::SUCCESS)
}
