//! Failure injection for the in-process transport.

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::TransportError;
use crate::message::OutgoingMessage;

/// How an injected publish failure looks to the publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishFault {
    /// The broker nacks: [`TransportError::Nacked`]; nothing is enqueued.
    Nack,
    /// The connection drops before the confirm: [`TransportError::Connection`];
    /// nothing is enqueued.
    ConnectionLost,
    /// The broker stores the message but the confirm never arrives:
    /// [`TransportError::ConfirmTimeout`] *and* the message is on the queue —
    /// a retry then makes a duplicate, as with a real broker.
    LostConfirm,
    /// The message is reported unroutable: [`TransportError::Unroutable`];
    /// nothing is enqueued.
    Unroutable,
}

impl PublishFault {
    pub(crate) fn error(self, msg: &OutgoingMessage) -> TransportError {
        let (exchange, routing_key, message_id) = (
            msg.exchange.clone(),
            msg.routing_key.clone(),
            msg.message_id.clone(),
        );
        match self {
            Self::Nack => TransportError::Nacked {
                exchange,
                routing_key,
                message_id,
            },
            Self::ConnectionLost => TransportError::Connection {
                context: format!(
                    "publishing message {message_id} to exchange `{exchange}` with routing key `{routing_key}`"
                ),
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected fault: connection lost",
                )),
            },
            Self::LostConfirm => TransportError::ConfirmTimeout {
                exchange,
                routing_key,
                message_id,
                timeout: Duration::ZERO,
            },
            Self::Unroutable => TransportError::Unroutable {
                exchange,
                routing_key,
                message_id,
            },
        }
    }
}

/// The faults armed on one broker.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) always: Option<PublishFault>,
    pub(crate) next: VecDeque<PublishFault>,
    pub(crate) every_nth: Option<(u64, PublishFault)>,
    pub(crate) counter: u64,
}

impl Faults {
    /// The fault for the publish about to happen, if any.
    pub(crate) fn next_fault(&mut self) -> Option<PublishFault> {
        self.counter += 1;
        if let Some(fault) = self.always {
            return Some(fault);
        }
        if let Some(fault) = self.next.pop_front() {
            return Some(fault);
        }
        match self.every_nth {
            Some((n, fault)) if self.counter.is_multiple_of(n) => Some(fault),
            _ => None,
        }
    }
}
