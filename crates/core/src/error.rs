//! The core error type.

use crate::config::ConfigError;
use crate::envelope::EnvelopeError;

/// Everything that can go wrong in `eventyard-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database rejected a statement or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL names a database this build does not support.
    #[error("unsupported database URL `{url}`: expected postgres://, mysql:// (or mariadb://) or sqlite:// with the matching cargo feature enabled")]
    UnsupportedDatabase {
        /// The URL as given, with any password removed.
        url: String,
    },
    /// A config row is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An envelope could not be packed or unpacked.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
