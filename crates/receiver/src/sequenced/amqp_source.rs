//! [`AmqpResyncSource`]: resync requests answered by the producer's daemon
//! over the transport (request/reply), for a producer whose database the
//! consumer cannot read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventyard_core::resync::{self as wire, Reply, Request};
use eventyard_transport::{Consumer, OutgoingMessage, Subscription, Transport, TransportError};
use tokio::sync::oneshot;

use super::source::{FetchedEvent, ResyncError, ResyncSource, SnapshotNeed, StoredSnapshot};

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// Asks the producer's daemon (its `ResyncResponder`, in `eventyard-sender`)
/// for missing events and snapshots over the transport.
///
/// Each request is published on the resync exchange with the routing key
/// `request.<producer>`, a correlation id, the routing key of this source's
/// reply queue and a deadline; the answer comes back on the reply queue, a
/// transient queue of this process (`<exchange>.reply.<uuid>`, not durable,
/// deleted by the broker when this source goes away). Wire format:
/// [`eventyard_core::resync`] and `docs/sequencing.md`.
///
/// A request that nobody can take (no responder consumes the producer's
/// request queue: the publish is unroutable), that is not answered within
/// the timeout, or that is answered with an error fails with a
/// [`ResyncError`] naming the producer, the stream and what was asked; the
/// engine keeps the key in its resync mode and asks again with jittered
/// backoff.
///
/// ```no_run
/// # fn demo(transport: std::sync::Arc<dyn eventyard_transport::Transport>) {
/// use std::{sync::Arc, time::Duration};
/// use eventyard_receiver::sequenced::{AmqpResyncSource, SeqOptions};
///
/// let source = AmqpResyncSource::new(transport).timeout(Duration::from_secs(5));
/// let seq = SeqOptions::default().source(Arc::new(source));
/// # }
/// ```
pub struct AmqpResyncSource {
    transport: Arc<dyn Transport>,
    exchange: String,
    instance: String,
    timeout: Duration,
    waiters: Waiters,
    listener: tokio::sync::Mutex<Option<Listener>>,
}

struct Listener {
    task: tokio::task::JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for AmqpResyncSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpResyncSource")
            .field("exchange", &self.exchange)
            .field("reply_queue", &self.reply_queue())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AmqpResyncSource {
    /// A source on `transport`, on the exchange
    /// [`eventyard_core::resync::DEFAULT_EXCHANGE`], waiting 5 s per answer.
    /// Its reply queue is declared on the first request.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        AmqpResyncSource {
            transport,
            exchange: wire::DEFAULT_EXCHANGE.to_string(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            timeout: Duration::from_secs(5),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            listener: tokio::sync::Mutex::new(None),
        }
    }

    /// The exchange requests and replies travel on (the producer's
    /// responder must use the same).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// How long one request waits for its answer (default 5 s). The
    /// request carries this deadline: a responder that gets it later drops
    /// it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The name of this source's reply queue.
    pub fn reply_queue(&self) -> String {
        format!("{}.reply.{}", self.exchange, self.instance)
    }

    fn reply_key(&self) -> String {
        wire::reply_routing_key(&self.instance)
    }

    /// Declares the reply queue and starts reading it, unless that runs.
    async fn listen(&self) -> Result<(), TransportError> {
        let mut listener = self.listener.lock().await;
        if listener.as_ref().is_some_and(|l| !l.task.is_finished()) {
            return Ok(());
        }
        let consumer = self
            .transport
            .subscribe(
                Subscription::new(self.reply_queue(), &self.exchange)
                    .bind(self.reply_key())
                    .prefetch(64)
                    .transient(true),
            )
            .await?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(read_replies(
            consumer,
            Arc::clone(&self.waiters),
            stopped,
            self.reply_queue(),
        ));
        *listener = Some(Listener {
            task,
            stop: Some(stop),
        });
        Ok(())
    }

    /// Publishes `request` and waits for its reply.
    async fn ask(&self, request: &Request, what: &str) -> Result<Reply, ResyncError> {
        let producer = request.producer();
        let stream = request.stream();
        let err = |reason: String| ResyncError {
            producer_id: producer.to_string(),
            stream: stream.to_string(),
            reason: format!("{what} over AMQP: {reason}"),
        };
        self.listen()
            .await
            .map_err(|e| err(format!("cannot open the reply queue: {e}")))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        let _waiting = Waiting::new(&self.waiters, id.clone(), tx);
        let deadline = chrono::Utc::now()
            + chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::MAX);
        let msg = OutgoingMessage::new(
            &self.exchange,
            wire::request_routing_key(producer),
            &id,
            wire::REQUEST_TYPE,
            wire::encode_request(request),
        )
        .header(wire::HEADER_CORRELATION, &id)
        .header(wire::HEADER_REPLY_TO, self.reply_key())
        .header(
            wire::HEADER_DEADLINE,
            deadline.timestamp_millis().to_string(),
        );
        let answer = tokio::time::timeout(self.timeout, async {
            match self.transport.publish(msg).await {
                Ok(()) => {}
                Err(TransportError::Unroutable { .. }) => {
                    return Err(err(format!(
                        "no responder consumes the requests of producer `{producer}` \
                         (routing key `{}` on exchange `{}` is unroutable)",
                        wire::request_routing_key(producer),
                        self.exchange
                    )))
                }
                Err(e) => return Err(err(format!("cannot publish the request: {e}"))),
            }
            rx.await
                .map_err(|_| err("the reply queue closed before the answer came".into()))
        })
        .await
        .map_err(|_| {
            err(format!(
                "no answer from producer `{producer}` within {:?}",
                self.timeout
            ))
        })??;
        match wire::decode_reply(&answer) {
            Ok(Reply::Error { message }) => Err(err(format!("the producer answered: {message}"))),
            Ok(reply) => Ok(reply),
            Err(e) => Err(err(e.to_string())),
        }
    }
}

impl Drop for AmqpResyncSource {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.get_mut().as_mut() {
            if let Some(stop) = listener.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

/// A registered waiter, removed when the request ends whichever way.
struct Waiting<'a> {
    waiters: &'a Waiters,
    id: String,
}

impl<'a> Waiting<'a> {
    fn new(waiters: &'a Waiters, id: String, tx: oneshot::Sender<Vec<u8>>) -> Self {
        if let Ok(mut map) = waiters.lock() {
            map.insert(id.clone(), tx);
        }
        Waiting { waiters, id }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.waiters.lock() {
            map.remove(&self.id);
        }
    }
}

/// Hands every reply to the request waiting for its correlation id; a reply
/// nobody waits for (timed out, or meant for an earlier run) is dropped.
async fn read_replies(
    mut consumer: Box<dyn Consumer>,
    waiters: Waiters,
    mut stop: oneshot::Receiver<()>,
    queue: String,
) {
    loop {
        let delivery = tokio::select! {
            _ = &mut stop => {
                let _ = consumer.cancel().await;
                return;
            }
            d = consumer.next() => match d {
                Some(d) => d,
                None => return,
            },
        };
        let _ = delivery.acker.ack().await;
        let id = delivery.headers.get(wire::HEADER_CORRELATION).cloned();
        let waiter = id
            .as_ref()
            .and_then(|id| waiters.lock().ok().and_then(|mut map| map.remove(id)));
        match waiter {
            Some(tx) => {
                let _ = tx.send(delivery.payload);
            }
            None => tracing::debug!(queue = %queue, correlation_id = ?id,
                "resync: a reply nobody waits for (timed out or unknown); dropped"),
        }
    }
}

fn check_range(
    producer_id: &str,
    stream: &str,
    epoch: u64,
    from: u64,
    to: u64,
    events: &[wire::WireEvent],
) -> Result<(), ResyncError> {
    match events.iter().find(|e| e.seq < from || e.seq > to) {
        Some(e) => Err(ResyncError {
            producer_id: producer_id.to_string(),
            stream: stream.to_string(),
            reason: format!(
                "fetch of seqs {from}..={to} of epoch {epoch} over AMQP: the reply carries \
                 seq {} (event `{}`), outside the range",
                e.seq, e.event_id
            ),
        }),
        None => Ok(()),
    }
}

#[async_trait]
impl ResyncSource for AmqpResyncSource {
    async fn fetch(
        &self,
        producer_id: &str,
        stream: &str,
        epoch: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<FetchedEvent>, ResyncError> {
        let request = Request::Fetch {
            producer: producer_id.to_string(),
            stream: stream.to_string(),
            epoch,
            from,
            to,
        };
        let what = format!("fetch of seqs {from}..={to} of epoch {epoch}");
        match self.ask(&request, &what).await? {
            Reply::Events { events } => {
                check_range(producer_id, stream, epoch, from, to, &events)?;
                Ok(events
                    .into_iter()
                    .map(|e| FetchedEvent {
                        event_id: e.event_id,
                        seq: e.seq,
                        payload: e.payload,
                    })
                    .collect())
            }
            other => Err(ResyncError {
                producer_id: producer_id.to_string(),
                stream: stream.to_string(),
                reason: format!(
                    "{what} over AMQP: the producer answered {} instead of events",
                    kind(&other)
                ),
            }),
        }
    }

    async fn snapshot(
        &self,
        producer_id: &str,
        stream: &str,
        need: SnapshotNeed,
    ) -> Result<Option<StoredSnapshot>, ResyncError> {
        let request = Request::Snapshot {
            producer: producer_id.to_string(),
            stream: stream.to_string(),
            min_epoch: need.epoch,
            min_seq: need.seq,
        };
        let what = format!("snapshot as of at least {need}");
        match self.ask(&request, &what).await? {
            Reply::Snapshot { epoch, seq, state } => Ok(Some(StoredSnapshot { epoch, seq, state })),
            Reply::NoSnapshot { reason } => {
                tracing::warn!(target: "eventyard::seq", producer = %producer_id, stream = %stream,
                    need = %need, reason = %reason, "resync: the producer has no snapshot new enough");
                Ok(None)
            }
            other => Err(ResyncError {
                producer_id: producer_id.to_string(),
                stream: stream.to_string(),
                reason: format!(
                    "{what} over AMQP: the producer answered {} instead of a snapshot",
                    kind(&other)
                ),
            }),
        }
    }
}

fn kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Events { .. } => "events",
        Reply::Snapshot { .. } => "a snapshot",
        Reply::NoSnapshot { .. } => "no snapshot",
        Reply::Error { .. } => "an error",
    }
}
