//! The receiver's error type.

use eventyard_transport::TransportError;

/// Everything that can go wrong on the receive side outside a handler
/// (a handler reports its own failures as a [`HandlerOutcome`](crate::HandlerOutcome)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The database rejected a statement or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An eventyard-core operation failed (config loading, migrations).
    #[error(transparent)]
    Core(#[from] eventyard_core::Error),
    /// The broker could not be reached or refused a subscription.
    #[error("transport error: {0}")]
    Transport(#[from] TransportError),
    /// A filter or replay request named a status that does not exist.
    #[error("unknown inbox status `{0}` (expected received, done, retrying, dead or stored)")]
    UnknownStatus(String),
    /// A replay request named neither event ids nor an event type.
    #[error("a replay needs event ids or an event type; refusing to replay every dead event of every type")]
    ReplayNeedsSelection,
    /// A partition lease statement failed (tables `ey_seq_member`,
    /// `ey_seq_partition_lease`).
    #[error("partition leases of event type `{event_type}` (subscriber `{subscriber}`): {what}: {source}")]
    PartitionLease {
        /// The subscriber.
        subscriber: String,
        /// The event type.
        event_type: String,
        /// What was being done, naming the table and partition.
        what: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The receiver options are unusable.
    #[error("invalid receiver options: {0}")]
    Options(String),
}

impl ReceiveError {
    /// Whether the database refused a statement for the data in it — a
    /// value too long or invalid for its column, a packet above MySQL's
    /// `max_allowed_packet`, a row above a size limit — as opposed to being
    /// unreachable, full, read-only or busy, which holding and retrying
    /// waits out.
    pub(crate) fn refuses_the_data(&self) -> bool {
        let ReceiveError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        #[cfg(feature = "postgres")]
        if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            // Class 22: data exception; class 54: program limit exceeded.
            return pg.code().starts_with("22") || pg.code().starts_with("54");
        }
        #[cfg(feature = "mysql")]
        if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            // Packet too large, data too long, incorrect string value, row
            // size too large, out of range, incorrect value, packet overflow.
            return matches!(my.number(), 1153 | 1406 | 1366 | 1118 | 1264 | 1292 | 1301);
        }
        #[cfg(feature = "sqlite")]
        if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
            // SQLITE_TOOBIG.
            return sqlx::error::DatabaseError::code(lite).as_deref() == Some("18");
        }
        false
    }
}

/// `Result` with [`ReceiveError`] as the default error.
pub type Result<T, E = ReceiveError> = std::result::Result<T, E>;
