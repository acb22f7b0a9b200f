//! A queue consumer that survives connection loss.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use tracing::{info, warn};

use super::convert::{self, short};
use super::{AmqpTransport, NoSession, Session};
use crate::error::TransportError;
use crate::message::{
    dead_letter_exchange, dead_letter_queue, Acker, Delivery, Settle, Settlement, Subscription,
};
use crate::Consumer;

/// A subscription on the current connection, replaced after a reconnect.
///
/// [`Consumer::next`] is cancellation-safe: callers race it against timers
/// (the receiver lingers for a micro-batch with a timeout). Resubscribing
/// takes several round trips (channel, declarations, `basic.consume`); if it
/// were dropped half-way, a channel with a live broker-side consumer would be
/// orphaned and the broker would keep up to `prefetch` messages on it, never
/// delivered to anyone, until the connection closed. So the resubscription
/// runs as a future owned by the consumer ([`Pending`]) and the next call
/// picks it up where the cancelled one left it.
pub(super) struct AmqpConsumer {
    transport: AmqpTransport,
    sub: Subscription,
    active: Option<Active>,
    pending: Option<Pending>,
    /// After a failed resubscription: not before this instant.
    retry_at: Option<tokio::time::Instant>,
    attempt: u32,
    done: bool,
}

/// A resubscription in progress on `session`.
struct Pending {
    session: Arc<Session>,
    opening: Pin<Box<dyn Future<Output = Result<Active, TransportError>> + Send>>,
}

struct Active {
    generation: u64,
    channel: Channel,
    stream: lapin::Consumer,
    book: Arc<AckBook>,
}

/// Per consumer channel: how far an `ack_multiple` has acknowledged.
#[derive(Debug, Default)]
struct AckBook {
    acked_upto: AtomicU64,
}

impl AmqpConsumer {
    /// Declares the topology and starts consuming; the first attempt's error is returned.
    pub(super) async fn start(
        transport: AmqpTransport,
        sub: Subscription,
    ) -> Result<Self, TransportError> {
        let wait = transport.inner.options.connect_wait;
        let session = transport
            .inner
            .session(wait)
            .await
            .map_err(|e| e.into_error(format!("subscribing to queue `{}`", sub.queue)))?;
        let active = open(transport.clone(), sub.clone(), session).await?;
        Ok(Self {
            transport,
            sub,
            active: Some(active),
            pending: None,
            retry_at: None,
            attempt: 0,
            done: false,
        })
    }
    /// Drops the current subscription (after its channel or connection died).
    fn drop_active(&mut self) {
        if let Some(active) = self.active.take() {
            close_in_background(active.channel);
        }
        if let Some(session) = &self.transport.inner.link.borrow().session {
            if !session.connection.status().connected() {
                self.transport.inner.failure.notify_one();
            }
        }
    }

    fn delivery(&self, d: lapin::message::Delivery, book: &Arc<AckBook>) -> Delivery {
        let lapin::message::Delivery {
            delivery_tag,
            exchange,
            routing_key,
            redelivered,
            properties,
            data,
            acker,
        } = d;
        let text =
            |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
        let message_id = text(properties.message_id());
        let ack = AmqpAck {
            acker,
            tag: delivery_tag,
            queue: self.sub.queue.clone(),
            message_id: message_id.clone().unwrap_or_else(|| "-".to_owned()),
            book: Arc::clone(book),
            timeout: self.transport.inner.options.confirm_timeout,
        };
        Delivery {
            payload: data,
            message_id,
            event_type: text(properties.kind()),
            content_encoding: text(properties.content_encoding()),
            headers: convert::headers(properties.headers().as_ref()),
            redelivered,
            exchange: exchange.as_str().to_owned(),
            routing_key: routing_key.as_str().to_owned(),
            acker: Acker::new(Arc::new(ack)),
        }
    }
}

/// Opens a channel on `session`, declares and binds the queue, and starts
/// consuming. Owns its inputs so that it can be held across cancelled
/// [`Consumer::next`] calls.
async fn open(
    transport: AmqpTransport,
    sub: Subscription,
    session: Arc<Session>,
) -> Result<Active, TransportError> {
    let sub = &sub;
    let inner = &transport.inner;
    let queue = short(&sub.queue, "the queue name", "-")?;
    let what = format!("queue `{}`", sub.queue);
    let topology = |what: String| {
        move |e: lapin::Error| TransportError::Topology {
            what,
            source: Box::new(e),
        }
    };
    if !sub.exchange.is_empty() {
        inner.declare_exchange(&sub.exchange).await?;
    }
    let channel = session
        .connection
        .create_channel()
        .await
        .map_err(|e| session.error(format!("opening a channel for {what}"), e))?;

    let mut args: Vec<(&str, AMQPValue)> = Vec::new();
    if sub.dead_letter && !sub.transient {
        let dlx = dead_letter_exchange(&sub.exchange);
        let dlq = dead_letter_queue(&sub.queue);
        channel
            .exchange_declare(
                short(&dlx, "the dead-letter exchange name", "-")?,
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!("dead-letter exchange `{dlx}`")))?;
        let dlq_name = short(&dlq, "the dead-letter queue name", "-")?;
        channel
            .queue_declare(dlq_name.clone(), durable(), FieldTable::default())
            .await
            .map_err(topology(format!("dead-letter queue `{dlq}`")))?;
        channel
            .queue_bind(
                dlq_name,
                short(&dlx, "the dead-letter exchange name", "-")?,
                queue.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!("binding `{dlq}` to `{dlx}`")))?;
        args.push(("x-dead-letter-exchange", convert::text(&dlx)));
        args.push(("x-dead-letter-routing-key", convert::text(&sub.queue)));
    }
    if sub.single_active_consumer {
        args.push(("x-single-active-consumer", AMQPValue::Boolean(true)));
    }
    // A durable queue keeps the arguments it was first declared with;
    // RabbitMQ answers PRECONDITION_FAILED to a declaration with others.
    let declared = format!(
        "{what} (with dead-letter = {}, x-single-active-consumer = {}; if it exists with \
         other arguments (PRECONDITION_FAILED), use a new queue name or delete the queue)",
        sub.dead_letter, sub.single_active_consumer
    );
    // A transient queue (a reply queue) goes with its last consumer.
    let options = if sub.transient {
        QueueDeclareOptions {
            auto_delete: true,
            ..QueueDeclareOptions::default()
        }
    } else {
        durable()
    };
    channel
        .queue_declare(queue.clone(), options, convert::table(args))
        .await
        .map_err(topology(declared))?;
    if !sub.exchange.is_empty() {
        let exchange = short(&sub.exchange, "the exchange name", "-")?;
        for key in &sub.binding_keys {
            channel
                .queue_bind(
                    queue.clone(),
                    exchange.clone(),
                    short(key, "the binding key", "-")?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(topology(format!(
                    "binding {what} to exchange `{}` with key `{key}`",
                    sub.exchange
                )))?;
        }
    }
    channel
        .basic_qos(sub.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| session.error(format!("setting the prefetch of {what}"), e))?;
    let stream = channel
        .basic_consume(
            queue,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| session.error(format!("consuming from {what}"), e))?;
    Ok(Active {
        generation: session.generation,
        channel,
        stream,
        book: Arc::new(AckBook::default()),
    })
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn close_in_background(channel: Channel) {
    if !channel.status().connected() {
        return;
    }
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let closing = channel.close(200, "consumer gone".into());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), closing).await;
        });
    }
}

impl fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConsumer")
            .field("queue", &self.sub.queue)
            .field("generation", &self.active.as_ref().map(|a| a.generation))
            .field("done", &self.done)
            .finish()
    }
}

/// Resolves when the session `generation` is no longer the live one.
async fn session_replaced(transport: &AmqpTransport, generation: u64) {
    let mut rx = transport.inner.link.subscribe();
    loop {
        {
            let link = rx.borrow_and_update();
            let live = link
                .session
                .as_ref()
                .is_some_and(|s| s.generation == generation);
            if link.closed || !live {
                return;
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[async_trait::async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.done || self.transport.inner.link.borrow().closed {
                self.done = true;
                if let Some(active) = self.active.take() {
                    close_in_background(active.channel);
                }
                return None;
            }
            let Some(active) = self.active.as_mut() else {
                if let Some(at) = self.retry_at {
                    let mut shutdown = self.transport.inner.shutdown.subscribe();
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = super::shut_down(&mut shutdown) => {}
                    }
                    self.retry_at = None;
                    continue;
                }
                if self.pending.is_none() {
                    // Resubscribe on the next live session; consumers wait as long as it takes.
                    let session = match self
                        .transport
                        .inner
                        .session(std::time::Duration::from_secs(3600))
                        .await
                    {
                        Ok(session) => session,
                        Err(NoSession::Closed) => {
                            self.done = true;
                            return None;
                        }
                        Err(NoSession::Timeout { .. }) => continue,
                    };
                    let opening = Box::pin(open(
                        self.transport.clone(),
                        self.sub.clone(),
                        Arc::clone(&session),
                    ));
                    self.pending = Some(Pending { session, opening });
                }
                let Some(pending) = self.pending.as_mut() else {
                    continue;
                };
                // Cancellation-safe: if this call is dropped here, the next
                // one goes on polling the same resubscription.
                let opened = pending.opening.as_mut().await;
                let session = Arc::clone(&pending.session);
                self.pending = None;
                match opened {
                    Ok(active) => {
                        info!(queue = %self.sub.queue, generation = active.generation, "consumer resumed");
                        self.attempt = 0;
                        self.active = Some(active);
                    }
                    Err(e) => {
                        self.attempt = self.attempt.saturating_add(1);
                        let delay = self.transport.inner.options.backoff(self.attempt);
                        warn!(queue = %self.sub.queue, error = %e, ?delay, "resubscribing failed; retrying");
                        if !session.connection.status().connected() {
                            self.transport.inner.failure.notify_one();
                        }
                        self.retry_at = Some(tokio::time::Instant::now() + delay);
                    }
                }
                continue;
            };
            let generation = active.generation;
            let stream = &mut active.stream;
            let next = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(Pin::new(&mut *stream), cx)
            });
            let item = tokio::select! {
                item = next => Some(item),
                () = session_replaced(&self.transport, generation) => None,
            };
            match item {
                Some(Some(Ok(delivery))) => {
                    if !active.channel.status().connected() || delivery.acker.poisoned() {
                        // Buffered before the channel died: it can no longer be
                        // acknowledged and the broker redelivers it.
                        self.drop_active();
                        continue;
                    }
                    let book = Arc::clone(&active.book);
                    return Some(self.delivery(delivery, &book));
                }
                Some(Some(Err(e))) => {
                    warn!(queue = %self.sub.queue, error = %e, "consumer channel failed; resubscribing");
                    self.drop_active();
                }
                Some(None) => {
                    warn!(queue = %self.sub.queue, "the broker ended the consumer; resubscribing");
                    self.drop_active();
                }
                None => self.drop_active(),
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.done = true;
        if let Some(pending) = self.pending.take() {
            // Let a half-done resubscription finish, so that its channel
            // (and the deliveries the broker put on it) are handed back.
            let wait = self.transport.inner.options.connect_wait;
            if let Ok(Ok(active)) = tokio::time::timeout(wait, pending.opening).await {
                self.active = Some(active);
            }
        }
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        if active.channel.status().connected() {
            let tag = active.stream.tag();
            let _ = active
                .channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await;
            // Closing the channel hands the unacknowledged deliveries back.
            active
                .channel
                .close(200, "consumer cancelled".into())
                .await
                .map_err(|e| TransportError::Broker {
                    context: format!("cancelling the consumer of queue `{}`", self.sub.queue),
                    source: Box::new(e),
                })?;
        }
        Ok(())
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            close_in_background(active.channel);
        }
        if let Some(pending) = self.pending.take() {
            // Finish a half-done resubscription in the background and close
            // its channel, so no broker-side consumer is left orphaned.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let wait = self.transport.inner.options.connect_wait;
                handle.spawn(async move {
                    if let Ok(Ok(active)) = tokio::time::timeout(wait, pending.opening).await {
                        close_in_background(active.channel);
                    }
                });
            }
        }
    }
}

/// Settles one AMQP delivery.
struct AmqpAck {
    acker: lapin::Acker,
    tag: u64,
    queue: String,
    message_id: String,
    book: Arc<AckBook>,
    /// A settle that has not gone out within this is treated as lost (the
    /// connection is dead; the broker will redeliver).
    timeout: std::time::Duration,
}

impl fmt::Debug for AmqpAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acker")
            .field("queue", &self.queue)
            .field("message_id", &self.message_id)
            .field("tag", &self.tag)
            .finish()
    }
}

#[async_trait::async_trait]
impl Settle for AmqpAck {
    async fn settle(&self, how: Settlement) -> Result<(), TransportError> {
        let covered = self.tag <= self.book.acked_upto.load(Ordering::Acquire);
        if covered {
            // An ack_multiple already acknowledged it; sending another ack
            // for it would be a protocol error that closes the channel.
            return match how {
                Settlement::Ack | Settlement::AckMultiple => Ok(()),
                _ => Err(self.already()),
            };
        }
        let settling = async {
            match how {
                Settlement::Ack => self.acker.ack(BasicAckOptions { multiple: false }).await,
                Settlement::AckMultiple => self.acker.ack(BasicAckOptions { multiple: true }).await,
                Settlement::Nack { requeue } => {
                    self.acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue,
                        })
                        .await
                }
                Settlement::Reject => {
                    self.acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await
                }
            }
        };
        let Ok(result) = tokio::time::timeout(self.timeout, settling).await else {
            return Err(TransportError::ChannelClosed {
                context: format!(
                    "settling message {} from queue `{}` (no answer within {:?})",
                    self.message_id, self.queue, self.timeout
                ),
            });
        };
        match result {
            Ok(true) => {
                if how == Settlement::AckMultiple {
                    self.book.acked_upto.fetch_max(self.tag, Ordering::AcqRel);
                }
                Ok(())
            }
            Ok(false) if !self.acker.poisoned() => Err(self.already()),
            Ok(false) | Err(_) => Err(TransportError::ChannelClosed {
                context: format!(
                    "settling message {} from queue `{}`",
                    self.message_id, self.queue
                ),
            }),
        }
    }
}

impl AmqpAck {
    fn already(&self) -> TransportError {
        TransportError::AlreadySettled {
            queue: self.queue.clone(),
            message_id: self.message_id.clone(),
        }
    }
}
