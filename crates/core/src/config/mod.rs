//! The dispatch config: one row per event type in `ey_send_config`, one per
//! (event type, subscriber) in `ey_receive_config`.
//!
//! Rows are read by [`ConfigStore`], validated against a [`Catalog`] of
//! known converter and handler ids, and served as a [`Config`]. A row that
//! fails validation is reported as a [`RowError`] naming the table, the event
//! type and the column; it never takes the other rows down, and on a reload
//! the last valid version of that row keeps serving.
//!
//! See `docs/config-tables.md` for the operator's reference.

mod catalog;
mod model;
mod schedule;
mod store;
mod validate;
mod watch;

pub use catalog::{Catalog, StaticCatalog};
pub use model::{
    Config, ProcessMode, ReceiveConfig, ReceiveKey, SendConfig, SendMode, MAX_PARTITIONS,
    MAX_WORKERS,
};
pub use schedule::{Schedule, ScheduleError};
pub use store::{ConfigStore, Loaded, RawReceiveRow, RawSendRow};
pub use validate::{validate_receive_row, validate_send_row};
pub use watch::{ConfigWatcher, WatchOptions};

use std::fmt;

/// The config table a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `ey_send_config`.
    Send,
    /// `ey_receive_config`.
    Receive,
}

impl Table {
    /// The SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Send => "ey_send_config",
            Table::Receive => "ey_receive_config",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One invalid config row: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The table of the row.
    pub table: Table,
    /// The row's event type.
    pub event_type: String,
    /// The row's subscriber (receive rows only).
    pub subscriber: Option<String>,
    /// The offending column.
    pub column: &'static str,
    /// What is wrong, in a sentence an operator can act on.
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row event_type={}", self.table, self.event_type)?;
        if let Some(sub) = &self.subscriber {
            write!(f, " subscriber={sub}")?;
        }
        write!(f, ": column `{}`: {}", self.column, self.message)
    }
}

impl std::error::Error for RowError {}

/// Errors about the dispatch config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A row failed validation.
    #[error(transparent)]
    InvalidRow(#[from] RowError),
    /// An event type has no enabled, valid `ey_send_config` row.
    #[error("no valid, enabled ey_send_config row for event type `{event_type}`")]
    UnknownEventType {
        /// The event type asked for.
        event_type: String,
    },
}
