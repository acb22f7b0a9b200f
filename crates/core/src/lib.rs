//! # eventyard-core
//!
//! The stable heart of eventyard: the config-table model and its validation,
//! the envelope codec, database access and the schema migrations for
//! PostgreSQL, MySQL/MariaDB and SQLite.
//!
//! Most applications use the `eventyard` facade crate; this crate is what the
//! sender, the receiver and the CLI share.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eventyard_core::Error> {
//! use eventyard_core::{config::{ConfigStore, StaticCatalog}, db::Db};
//!
//! let db = Db::connect("sqlite://eventyard.db?mode=rwc").await?;
//! db.migrate().await?;
//! let store = ConfigStore::new(db);
//! let catalog = StaticCatalog::new().send_converters(["xml"]).receive_converters(["xml"]);
//! let loaded = store.load(&catalog).await?;
//! for problem in &loaded.problems {
//!     eprintln!("{problem}");
//! }
//! println!("{} send rows are valid", loaded.config.send.len());
//! # Ok(()) }
//! ```

#[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
compile_error!("eventyard-core needs at least one database feature: postgres, mysql or sqlite");

pub mod compression;
pub mod config;
pub mod db;
pub mod envelope;
mod error;
pub mod migrate;
pub mod resync;

pub use compression::Compression;
pub use error::{Error, Result};
