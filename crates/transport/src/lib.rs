//! # eventyard-transport
//!
//! Moves bytes plus metadata between eventyard's sender and receiver. It knows
//! nothing of envelopes or config rows: the sender hands it an
//! [`OutgoingMessage`] and learns whether the broker took it; the receiver
//! [`subscribe`](Transport::subscribe)s and gets [`Delivery`]s to store and
//! then acknowledge.
//!
//! Two implementations:
//!
//! - [`AmqpTransport`] (cargo feature `amqp`, on by default): RabbitMQ over
//!   AMQP 0-9-1 through lapin, with publisher confirms, mandatory publishing,
//!   persistent messages, dead-letter queues and its own connection recovery.
//! - [`InProcessTransport`]: a broker inside the process, for single-process
//!   use, the quickstart and tests, with the same semantics where they apply
//!   and fault hooks to make publishing fail on demand.
//!
//! # Publishing
//!
//! `Ok` from [`Transport::publish`] is the broker's proof that the message is
//! routed to at least one queue and stored. Anything else is an error and the
//! message counts as *not sent*:
//!
//! ```
//! # async fn demo() -> Result<(), eventyard_transport::TransportError> {
//! use eventyard_transport::{InProcessTransport, OutgoingMessage, Subscription, Transport, TransportError};
//!
//! let transport = InProcessTransport::new();
//! transport.declare_exchange("orders").await?;
//!
//! // Nothing is bound yet: the message comes back, and that is a failure.
//! let msg = OutgoingMessage::new("orders", "ORDER.PLACED", "evt-1", "ORDER.PLACED", b"<e/>".to_vec());
//! let err = transport.publish(msg.clone()).await.unwrap_err();
//! assert!(matches!(err, TransportError::Unroutable { .. }));
//!
//! // With a queue bound, the same message is sent.
//! let mut consumer = transport
//!     .subscribe(Subscription::new("billing.orders", "orders").bind("ORDER.*"))
//!     .await?;
//! transport.publish(msg).await?;
//! # drop(consumer); Ok(()) }
//! ```
//!
//! [`Transport::publish_many`] publishes a batch with the confirms pipelined
//! (publish all, then collect the confirms), which is how the batch scheduler
//! reaches the broker's ceiling; it returns one result per message.
//!
//! # Consuming: store, then acknowledge
//!
//! A [`Consumer`] yields deliveries; each carries an [`Acker`]. Acknowledge
//! only once the message is durably stored — the broker redelivers anything
//! unacknowledged when the consumer or its connection goes away:
//!
//! ```
//! # async fn store(_: &[u8]) {}
//! # async fn demo(transport: &dyn eventyard_transport::Transport) -> Result<(), eventyard_transport::TransportError> {
//! use eventyard_transport::Subscription;
//!
//! let mut consumer = transport
//!     .subscribe(Subscription::new("billing.orders", "orders").bind("ORDER.#").prefetch(200))
//!     .await?;
//! while let Some(delivery) = consumer.next().await {
//!     store(&delivery.payload).await;
//!     delivery.acker.ack().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! To acknowledge a micro-batch in one round trip, store the batch and call
//! [`Acker::ack_multiple`] on its *last* delivery.
//!
//! ## Pitfall: acking before storing
//!
//! ```text
//! delivery.acker.ack().await?;          // wrong: a crash now loses the message
//! store(&delivery.payload).await;
//! ```
//!
//! Store first; a crash between the store and the ack only causes a
//! redelivery, which the receiver recognises by the message id.
//!
//! ## Pitfall: treating an ack error as success
//!
//! If the connection dropped between delivery and ack, `ack()` returns
//! [`TransportError::ChannelClosed`]: the broker will deliver the message again.
//! That is expected; the consumer itself keeps going (it reconnects and resumes).

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
mod memory;
mod message;
mod partition;

#[cfg(feature = "amqp")]
mod amqp;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpOptions, AmqpTransport};
pub use error::{BoxError, Result, TransportError};
pub use memory::{InProcessTransport, PublishFault, QueueDepth};
pub use message::{
    dead_letter_exchange, dead_letter_queue, Acker, Delivery, OutgoingMessage, PublishOrder,
    Subscription,
};
pub use partition::{Partitions, PRODUCER_HEADER};

/// A message broker connection: declares topology, publishes with confirms,
/// and subscribes to queues.
///
/// Implementations are cheap to share (`Arc<dyn Transport>`); every method
/// takes `&self` and may be called from many tasks at once.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + std::fmt::Debug + 'static {
    /// Declares the exchange (topic, durable) if needed. Idempotent and cached:
    /// the second call for the same name does no round trip. [`publish`](Self::publish)
    /// declares an exchange it has not seen, so calling this first is optional.
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError>;

    /// Publishes one message: persistent, mandatory, and waits for the broker's
    /// confirm (with the configured confirm timeout). `Ok` only on an ack for a
    /// routed message; an unroutable (returned) message, a nack, a timeout or a
    /// lost connection is an `Err`, and the message counts as not sent.
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError>;

    /// Publishes many with the confirms pipelined; one result per message, in
    /// the same order. Much faster than calling [`publish`](Self::publish) in
    /// a loop. Each message's [`PublishOrder`] says which others it stays in
    /// order with: by default all of the call's messages go out on one
    /// publishing channel in order; messages marked [`PublishOrder::Any`] or
    /// [`PublishOrder::Key`] are spread over all of them (see
    /// `AmqpOptions::publish_channels`). There is no ordering guarantee
    /// between different calls that go out on different channels.
    async fn publish_many(&self, msgs: Vec<OutgoingMessage>) -> Vec<Result<(), TransportError>>;

    /// Declares the queue (durable; with a dead-letter exchange and queue
    /// `<queue>.dlq` unless disabled; optionally single-active-consumer), binds
    /// it to the exchange with each binding key, and starts consuming with the
    /// given prefetch.
    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Consumer>, TransportError>;

    /// Declares a partitioned queue set ([`Partitions`]) without consuming
    /// it: the hash exchange `<queue>.hash` bound from `base.exchange` with
    /// each binding key, and every partition queue `<queue>.p<i>` (declared
    /// like [`subscribe`](Self::subscribe) would, durable, with its
    /// dead-letter queue and single-active-consumer as `base` says) bound to
    /// it with equal weights. The unpartitioned queue `base.queue`, if it
    /// exists, is unbound from `base.exchange`, and partition queues from
    /// `count` to `previous` are unbound from the hash exchange (their
    /// messages stay there). With `count` 1 it undoes the partitioning: the
    /// hash exchange is unbound from `base.exchange` (then subscribe `base`).
    /// Idempotent. Consume partition `i` with [`Partitions::subscription`].
    ///
    /// The default implementation fails: a wrapping transport must forward it.
    async fn declare_partitions(&self, spec: &Partitions) -> Result<(), TransportError> {
        Err(TransportError::Topology {
            what: format!("partitioned queues `{}.p*`", spec.base.queue),
            source: "this transport does not support partitioned queues".into(),
        })
    }

    /// Shuts the transport down: consumers end (their [`next`](Consumer::next)
    /// returns `None`, unacknowledged deliveries return to their queues),
    /// later calls fail with [`TransportError::Closed`].
    async fn close(&self) -> Result<(), TransportError>;
}

/// A running subscription: an endless stream of deliveries.
#[async_trait::async_trait]
pub trait Consumer: Send + std::fmt::Debug {
    /// The next delivery; `None` once the consumer is closed for good (the
    /// transport was closed or [`cancel`](Self::cancel) was called). Across a
    /// broker restart or a dropped connection it does *not* end: it reconnects
    /// and resumes, and the broker redelivers what was unacknowledged.
    async fn next(&mut self) -> Option<Delivery>;

    /// Stops consuming. Unacknowledged deliveries go back to the queue (and can
    /// no longer be acknowledged through this consumer's ackers).
    async fn cancel(&mut self) -> Result<(), TransportError>;
}

#[async_trait::async_trait]
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        (**self).declare_exchange(exchange).await
    }
    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        (**self).publish(msg).await
    }
    async fn publish_many(&self, msgs: Vec<OutgoingMessage>) -> Vec<Result<(), TransportError>> {
        (**self).publish_many(msgs).await
    }
    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Consumer>, TransportError> {
        (**self).subscribe(sub).await
    }
    async fn declare_partitions(&self, spec: &Partitions) -> Result<(), TransportError> {
        (**self).declare_partitions(spec).await
    }
    async fn close(&self) -> Result<(), TransportError> {
        (**self).close().await
    }
}
