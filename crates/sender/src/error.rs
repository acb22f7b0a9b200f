//! The sender's error type.

use eventyard_converter::ConvertError;
use eventyard_core::envelope::EnvelopeError;
use eventyard_transport::TransportError;

/// Everything that can go wrong when sending.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No valid `ey_send_config` row exists for the event type.
    #[error("unknown event type `{event_type}`: no valid ey_send_config row (check `eventyard config check`)")]
    UnknownEventType {
        /// The event type asked for.
        event_type: String,
    },
    /// The event type's row has `enabled = false`.
    #[error("event type `{event_type}` is disabled in ey_send_config; nothing was published")]
    Disabled {
        /// The event type asked for.
        event_type: String,
    },
    /// The row names a converter this process does not have.
    #[error("event type `{event_type}`: send converter `{converter_id}` is not registered in this process")]
    ConverterMissing {
        /// The event type.
        event_type: String,
        /// The converter id from the row.
        converter_id: String,
    },
    /// The value could not be turned into JSON for the converter.
    #[error("event type `{event_type}`: the value cannot be serialized: {source}")]
    Serialize {
        /// The event type.
        event_type: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The converter rejected the value.
    #[error("event type `{event_type}`: conversion failed: {source}")]
    Convert {
        /// The event type.
        event_type: String,
        /// The converter error.
        #[source]
        source: Box<ConvertError>,
    },
    /// The envelope could not be packed.
    #[error("event type `{event_type}`: {source}")]
    Envelope {
        /// The event type.
        event_type: String,
        /// The codec error.
        #[source]
        source: EnvelopeError,
    },
    /// Publishing failed after every allowed attempt; the outbox row (if
    /// persisted) is `failed` with this error in `last_error`.
    #[error("event {event_id} of type `{event_type}` was not published after {attempts} attempt(s): {source}")]
    PublishFailed {
        /// The event id.
        event_id: String,
        /// The event type.
        event_type: String,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: Box<TransportError>,
    },
    /// A staged event could not be flushed because it is no longer pending
    /// or another instance holds it.
    #[error("event {event_id} is not pending or is claimed by another instance")]
    NotClaimable {
        /// The event id.
        event_id: String,
    },
    /// A coalesced outbox write failed (the message is the database error).
    #[error("outbox write failed: {0}")]
    OutboxWrite(std::sync::Arc<str>),
    /// Numbering a sequenced event failed.
    #[error("event type `{event_type}`, producer `{producer_id}`, stream `{stream}`: {reason}")]
    Sequence {
        /// The event type (empty for an epoch reset).
        event_type: String,
        /// The producer id.
        producer_id: String,
        /// The stream.
        stream: String,
        /// What went wrong.
        reason: String,
    },
    /// A sequenced-only operation was asked of a type that is not sequenced.
    #[error("event type `{event_type}` is not sequenced (ey_send_config.sequenced = false)")]
    NotSequenced {
        /// The event type.
        event_type: String,
    },
    /// The application's snapshot provider could not give the state of a
    /// key (nothing was written).
    #[error("snapshot provider for producer `{producer_id}`, stream `{stream}`: {source}")]
    SnapshotProvider {
        /// The producer id.
        producer_id: String,
        /// The stream.
        stream: String,
        /// The provider's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The resync responder could not serve a producer's requests.
    #[error("resync responder for producer `{producer_id}`: {reason}")]
    Responder {
        /// The producer id.
        producer_id: String,
        /// What went wrong.
        reason: String,
    },
    /// The database failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A core operation failed.
    #[error(transparent)]
    Core(#[from] eventyard_core::Error),
}

/// `Result` with [`SendError`].
pub type Result<T, E = SendError> = std::result::Result<T, E>;

/// A deadlock or serialization failure: the transaction may be retried.
fn retryable(e: &SendError) -> bool {
    match e {
        SendError::Database(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}

/// Runs `attempt` until it does not fail with a deadlock or serialization
/// failure, at most five times, pausing a little longer before each retry.
/// `what` and `event_type` name the work in the debug log of a retry.
pub(crate) async fn retry_deadlocks<T, F, Fut>(
    what: &str,
    event_type: &str,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries: u64 = 0;
    loop {
        match attempt().await {
            Err(e) if tries < 4 && retryable(&e) => {
                tries += 1;
                tracing::debug!(what, event_type, error = %e, tries, "retrying after a deadlock");
                tokio::time::sleep(std::time::Duration::from_millis(10 * tries)).await;
            }
            done => return done,
        }
    }
}
