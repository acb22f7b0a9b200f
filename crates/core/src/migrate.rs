//! Schema migrations, embedded in the binary.
//!
//! The SQL lives in `schema/<backend>/NNNN_name.sql` at the repository root,
//! one folder per database; each file is embedded at compile time and
//! applied by [`Db::migrate`](crate::db::Db::migrate) (or
//! `eventyard migrate`) through sqlx's migrator, which records applied
//! versions and checksums in `_sqlx_migrations`. Never edit an applied
//! migration: add a new numbered file to all three folders.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::db::Backend;
use crate::Result;

/// One migration, in the three dialects.
struct Embedded {
    version: i64,
    description: &'static str,
    postgres: &'static str,
    mysql: &'static str,
    sqlite: &'static str,
}

macro_rules! embedded {
    ($version:expr, $name:literal) => {
        Embedded {
            version: $version,
            description: $name,
            postgres: include_str!(concat!("../../../schema/postgres/", $name, ".sql")),
            mysql: include_str!(concat!("../../../schema/mysql/", $name, ".sql")),
            sqlite: include_str!(concat!("../../../schema/sqlite/", $name, ".sql")),
        }
    };
}

const MIGRATIONS: &[Embedded] = &[
    embedded!(1, "0001_init"),
    embedded!(2, "0002_outbox_claims_send_rules"),
    embedded!(3, "0003_inbox_claims_handler_config"),
    embedded!(4, "0004_sequenced_streams"),
    embedded!(5, "0005_seq_partitions"),
    embedded!(6, "0006_outbox_write_cost"),
    embedded!(7, "0007_inbox_write_cost"),
];

/// The embedded migrations of one backend, as a sqlx [`MigrationSource`].
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedMigrations(pub Backend);

impl EmbeddedMigrations {
    /// The migrations for this backend, in version order.
    pub fn migrations(self) -> Vec<Migration> {
        MIGRATIONS
            .iter()
            .map(|m| {
                let sql = match self.0 {
                    Backend::Postgres => m.postgres,
                    Backend::MySql => m.mysql,
                    Backend::Sqlite => m.sqlite,
                };
                Migration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect()
    }
}

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move { Ok(self.migrations()) })
    }
}

/// A migrator over the embedded migrations of `backend`.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator> {
    Ok(Migrator::new(EmbeddedMigrations(backend)).await?)
}

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
