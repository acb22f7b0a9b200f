//! What goes in (an [`OutgoingMessage`]), what is listened to (a
//! [`Subscription`]) and what comes out (a [`Delivery`] with its [`Acker`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::TransportError;

/// One message to publish: bytes plus the metadata the receiver needs before
/// it opens the payload.
///
/// On AMQP the fields map to: `message_id` → the `message-id` property,
/// `event_type` → the `type` property, `content_encoding` → the
/// `content-encoding` property (left out when `None`, empty, `none` or
/// `identity`), `headers` → string headers (no table when empty). The
/// transport adds delivery mode 2 (persistent). Keep the optional ones to
/// what receivers need: see `docs/transport.md` on the cost of properties
/// over 64 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The exchange to publish to (declared as a durable topic exchange on first use).
    pub exchange: String,
    /// The routing key (usually the event type).
    pub routing_key: String,
    /// The message id: the event id, which receivers deduplicate by.
    pub message_id: String,
    /// The event type, sent as the AMQP `type` property.
    pub event_type: String,
    /// The payload's content encoding (`gzip`, `deflate`), if any.
    pub content_encoding: Option<String>,
    /// Free string headers.
    pub headers: BTreeMap<String, String>,
    /// The payload (the packed envelope).
    pub payload: Vec<u8>,
    /// Which other messages of one [`publish_many`](crate::Transport::publish_many)
    /// call this one must stay in order with ([`PublishOrder::Call`] unless set).
    pub order: PublishOrder,
}

/// The order a message must keep among the other messages of one
/// [`publish_many`](crate::Transport::publish_many) call.
///
/// The AMQP transport publishes on several channels at once, and the broker
/// keeps the order of messages only within one channel. A call whose
/// messages need not all stay in order can use every channel instead of one:
///
/// | order | goes out |
/// |---|---|
/// | `Call` (the default) | on one channel with the call's other `Call` messages, in the call's order |
/// | `Key(k)` | on the channel chosen by `k`, in the call's order with every message of the same key |
/// | `Any` | on any channel, spread evenly |
///
/// Messages of different kinds (or different keys) in one call have no
/// order between them. The in-process transport keeps every message in the
/// call's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum PublishOrder {
    /// In order with the call's other `Call` messages.
    #[default]
    Call,
    /// In order with the call's messages of the same key (for example a
    /// producer and stream of sequenced events).
    Key(String),
    /// No order with any other message.
    Any,
}

impl OutgoingMessage {
    /// A message with no content encoding and no headers.
    pub fn new(
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        message_id: impl Into<String>,
        event_type: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            message_id: message_id.into(),
            event_type: event_type.into(),
            content_encoding: None,
            headers: BTreeMap::new(),
            payload: payload.into(),
            order: PublishOrder::Call,
        }
    }

    /// Sets the order the message keeps within a `publish_many` call.
    pub fn order(mut self, order: PublishOrder) -> Self {
        self.order = order;
        self
    }

    /// Sets the content encoding.
    pub fn content_encoding(mut self, encoding: impl Into<String>) -> Self {
        self.content_encoding = Some(encoding.into());
        self
    }

    /// Adds one header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

impl fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload can be megabytes; its size is what a log needs.
        f.debug_struct("OutgoingMessage")
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("message_id", &self.message_id)
            .field("event_type", &self.event_type)
            .field("content_encoding", &self.content_encoding)
            .field("headers", &self.headers)
            .field("payload_len", &self.payload.len())
            .field("order", &self.order)
            .finish()
    }
}

/// A queue to consume from, and how it is declared and bound.
///
/// The queue is durable. With `dead_letter` on (the default through
/// [`Subscription::new`]) it gets a dead-letter queue `<queue>.dlq`; see the
/// crate docs for the exact topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The queue name.
    pub queue: String,
    /// The (topic) exchange the queue is bound to.
    pub exchange: String,
    /// Binding keys; topic patterns with `*` (one word) and `#` (zero or more words).
    pub binding_keys: Vec<String>,
    /// How many unacknowledged deliveries the consumer may hold; 0 means no limit.
    pub prefetch: u16,
    /// Declare a dead-letter queue `<queue>.dlq` that rejected messages go to.
    pub dead_letter: bool,
    /// Only one consumer of the queue receives messages at a time; the others
    /// take over, in order, when it goes away.
    pub single_active_consumer: bool,
    /// A queue for this process only (e.g. a reply queue): not durable,
    /// deleted by the broker when its last consumer goes away, never a
    /// dead-letter queue. Nothing accumulates on the broker across runs.
    pub transient: bool,
}

impl Subscription {
    /// A subscription with no binding keys yet, prefetch 100, a dead-letter
    /// queue, and competing (not single-active) consumers.
    pub fn new(queue: impl Into<String>, exchange: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            exchange: exchange.into(),
            binding_keys: Vec::new(),
            prefetch: 100,
            dead_letter: true,
            single_active_consumer: false,
            transient: false,
        }
    }

    /// Adds a binding key.
    pub fn bind(mut self, binding_key: impl Into<String>) -> Self {
        self.binding_keys.push(binding_key.into());
        self
    }

    /// Sets the prefetch (0 = no limit).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Turns the dead-letter queue on or off.
    pub fn dead_letter(mut self, on: bool) -> Self {
        self.dead_letter = on;
        self
    }

    /// Turns single-active-consumer on or off.
    pub fn single_active_consumer(mut self, on: bool) -> Self {
        self.single_active_consumer = on;
        self
    }

    /// Makes the queue transient (not durable, auto-deleted when its last
    /// consumer goes away) or durable again. A transient queue has no
    /// dead-letter queue: turning this on turns `dead_letter` off.
    pub fn transient(mut self, on: bool) -> Self {
        self.transient = on;
        if on {
            self.dead_letter = false;
        }
        self
    }

    /// The name of this queue's dead-letter queue: `<queue>.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        dead_letter_queue(&self.queue)
    }
}

/// The dead-letter queue of `queue`: `<queue>.dlq`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The dead-letter exchange used for queues bound to `exchange`: `<exchange>.dlx`
/// (a direct exchange; each dead-letter queue is bound with its source queue's name).
pub fn dead_letter_exchange(exchange: &str) -> String {
    if exchange.is_empty() {
        "eventyard.dlx".to_owned()
    } else {
        format!("{exchange}.dlx")
    }
}

/// One message received from a queue. Settle it through [`acker`](Self::acker)
/// — until then the broker holds it for this consumer.
pub struct Delivery {
    /// The payload.
    pub payload: Vec<u8>,
    /// The message id property (the event id), if the publisher set one.
    pub message_id: Option<String>,
    /// The AMQP `type` property (the event type), if set.
    pub event_type: Option<String>,
    /// The content encoding property, if set.
    pub content_encoding: Option<String>,
    /// The headers, as strings (non-string AMQP header values are rendered as text).
    pub headers: BTreeMap<String, String>,
    /// True when the broker delivered this message before (to this or another consumer).
    pub redelivered: bool,
    /// The exchange the message was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Settles this delivery (ack, nack, reject).
    pub acker: Acker,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message_id", &self.message_id)
            .field("event_type", &self.event_type)
            .field("content_encoding", &self.content_encoding)
            .field("headers", &self.headers)
            .field("redelivered", &self.redelivered)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("payload_len", &self.payload.len())
            .field("acker", &self.acker)
            .finish()
    }
}

/// How a delivery is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Acknowledge this delivery.
    Ack,
    /// Acknowledge this and every earlier unacknowledged delivery of the channel.
    AckMultiple,
    /// Negative acknowledgement.
    Nack { requeue: bool },
    /// Reject without requeue: to the dead-letter queue if there is one.
    Reject,
}

/// The transport-specific part of an [`Acker`].
#[async_trait::async_trait]
pub(crate) trait Settle: Send + Sync + fmt::Debug {
    async fn settle(&self, how: Settlement) -> Result<(), TransportError>;
}

/// Settles one [`Delivery`]. Cheap to clone; send it to whichever task stores
/// the message and acks it afterwards.
///
/// A delivery is settled once: a second settlement is
/// [`TransportError::AlreadySettled`], except an `ack` of a delivery that an
/// [`ack_multiple`](Self::ack_multiple) already covered, which is `Ok`.
/// Settling a delivery whose channel died since fails with
/// [`TransportError::ChannelClosed`]: the broker redelivers it, so the
/// receiver must treat the message as not acknowledged (and deduplicate).
#[derive(Clone)]
pub struct Acker {
    inner: Arc<dyn Settle>,
}

impl Acker {
    pub(crate) fn new(inner: Arc<dyn Settle>) -> Self {
        Self { inner }
    }

    /// Acknowledges the delivery: the broker forgets it.
    pub async fn ack(&self) -> Result<(), TransportError> {
        self.inner.settle(Settlement::Ack).await
    }

    /// Acknowledges this delivery and every earlier unacknowledged delivery of
    /// the same consumer channel — one round trip for a micro-batch that has
    /// been stored. Use it only when *every* earlier delivery of that consumer
    /// is stored, and do not settle one of those concurrently with this call.
    pub async fn ack_multiple(&self) -> Result<(), TransportError> {
        self.inner.settle(Settlement::AckMultiple).await
    }

    /// Negative acknowledgement: with `requeue` the message goes back to the
    /// queue (and comes again with `redelivered = true`); without, it goes to
    /// the dead-letter queue if the subscription has one, else it is dropped.
    pub async fn nack(&self, requeue: bool) -> Result<(), TransportError> {
        self.inner.settle(Settlement::Nack { requeue }).await
    }

    /// Rejects the delivery to the dead-letter queue (dropped when the
    /// subscription has none).
    pub async fn reject_to_dead_letter(&self) -> Result<(), TransportError> {
        self.inner.settle(Settlement::Reject).await
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
