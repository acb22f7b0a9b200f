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

/// `Result` with [`ReceiveError`] as the default error.
pub type Result<T, E = ReceiveError> = std::result::Result<T, E>;
