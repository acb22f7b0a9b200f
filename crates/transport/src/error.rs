//! The one error type of this crate.

use std::time::Duration;

/// A boxed error from the layer below (lapin, the socket, TLS), kept as the
/// [`source`](std::error::Error::source) of a [`TransportError`] so that this
/// crate's API does not expose the AMQP client's types.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`TransportError`] as the default error.
pub type Result<T, E = TransportError> = std::result::Result<T, E>;

/// Everything that can go wrong while moving a message through a [`Transport`](crate::Transport).
///
/// A publish is *sent* only when [`publish`](crate::Transport::publish) returns `Ok`:
/// every error below means "not sent", even when the broker may in fact have
/// routed the message (a lost confirm) — the caller retries and the receiver
/// deduplicates by message id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker returned a mandatory message: no queue is bound for its routing key.
    #[error(
        "message {message_id} to exchange `{exchange}` with routing key `{routing_key}` is unroutable: no queue is bound for it"
    )]
    Unroutable {
        /// The exchange the message was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
        /// The message id (the event id).
        message_id: String,
    },

    /// The broker refused the message with a negative confirm (nack).
    #[error(
        "the broker refused (nacked) message {message_id} to exchange `{exchange}` with routing key `{routing_key}`"
    )]
    Nacked {
        /// The exchange the message was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
        /// The message id (the event id).
        message_id: String,
    },

    /// No confirm came within the confirm timeout; the message counts as not sent.
    #[error(
        "no broker confirm within {timeout:?} for message {message_id} to exchange `{exchange}` with routing key `{routing_key}`"
    )]
    ConfirmTimeout {
        /// The exchange the message was published to.
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
        /// The message id (the event id).
        message_id: String,
        /// The confirm timeout that ran out.
        timeout: Duration,
    },

    /// The connection to the broker failed or was lost while doing `context`.
    #[error("connection to the broker lost while {context}: {source}")]
    Connection {
        /// What was being done, naming the message, exchange or queue involved.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The broker was unreachable for longer than the configured wait.
    #[error(
        "not connected to the broker after waiting {waited:?} while {context} (last error: {last_error})"
    )]
    Disconnected {
        /// What was being done, naming the message, exchange or queue involved.
        context: String,
        /// How long the call waited for a connection.
        waited: Duration,
        /// The last connection error seen, or "none".
        last_error: String,
    },

    /// The channel a delivery came on has closed: it can no longer be settled, and
    /// the broker will redeliver it.
    #[error("the channel closed while {context}; the broker will redeliver the message")]
    ChannelClosed {
        /// What was being done, naming the queue and message involved.
        context: String,
    },

    /// The delivery was already acknowledged, nacked or rejected.
    #[error("delivery {message_id} from queue `{queue}` was already settled")]
    AlreadySettled {
        /// The queue the delivery came from.
        queue: String,
        /// The delivery's message id, or "-" when it had none.
        message_id: String,
    },

    /// The transport (or the consumer) was closed by the application.
    #[error("the transport is closed")]
    Closed,

    /// The broker URL could not be parsed.
    #[error("invalid AMQP URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// Why it is invalid.
        reason: String,
    },

    /// The TLS handshake or TLS configuration failed (`amqps://`).
    #[error("TLS failure connecting to `{url}`: {source}")]
    Tls {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// A message or name cannot be sent as given (e.g. a name over 255 bytes).
    #[error("message {message_id} cannot be published: {reason}")]
    InvalidMessage {
        /// The message id (the event id).
        message_id: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Declaring or binding an exchange or queue failed (e.g. it exists with
    /// other arguments).
    #[error("declaring {what} failed: {source}")]
    Topology {
        /// The exchange, queue or binding involved, e.g. "queue `orders`".
        what: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The broker closed the channel or answered with an error while doing `context`.
    #[error("broker error while {context}: {source}")]
    Broker {
        /// What was being done, naming the message, exchange or queue involved.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// A failure injected on purpose through the in-process transport's fault hooks.
    #[error("injected failure while {context}")]
    Injected {
        /// What was being done, naming the message involved.
        context: String,
    },
}

impl TransportError {
    /// True when retrying the same operation later may succeed (the broker was
    /// unreachable, the confirm did not come, the channel died). False for an
    /// unroutable message, an invalid URL or message, a closed transport.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Nacked { .. }
                | Self::ConfirmTimeout { .. }
                | Self::Connection { .. }
                | Self::Disconnected { .. }
                | Self::ChannelClosed { .. }
                | Self::Broker { .. }
                | Self::Injected { .. }
        )
    }
}

/// The URL with its password (if any) replaced by `***`, for error messages and logs.
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("amqps://u@host/v"), "amqps://u@host/v");
    }

    #[test]
    fn messages_name_what_failed() {
        let e = TransportError::Unroutable {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            message_id: "id-1".into(),
        };
        let text = e.to_string();
        assert!(text.contains("ex") && text.contains("rk") && text.contains("id-1"));
        assert!(!e.is_transient());
    }
}
