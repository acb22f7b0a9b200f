//! The resync responder: the producer's side of the AMQP request/reply
//! resync source. A consumer whose database is not the producer's asks here
//! for missing events (from this producer's `ey_outbox`) and for snapshots
//! (from `ey_snapshot`, or fresh from the application's
//! [`SnapshotProvider`]). Wire format: [`eventyard_core::resync`] and
//! `docs/sequencing.md`.
//!
//! Each served producer id gets a transient request queue
//! `<exchange>.request.<producer>` bound with `request.<producer>`: it exists
//! while a responder consumes it, so a consumer's request to a producer with
//! no responder running fails at once (unroutable) instead of waiting for a
//! timeout; several instances of the producer's daemon share the queue and
//! each request is answered by one of them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventyard_core::db::Db;
use eventyard_core::resync::{self as wire, Reply, Request, WireEvent};
use eventyard_core::with_pool;
use eventyard_transport::{Consumer, Delivery, OutgoingMessage, Subscription, Transport};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Result, SendError};
use crate::sequence::{write_fresh_snapshot, SnapshotProvider};

/// Settings of a [`ResyncResponder`].
#[derive(Clone)]
pub struct ResponderOptions {
    exchange: String,
    producers: Vec<String>,
    provider: Option<Arc<dyn SnapshotProvider>>,
    max_fetch: u64,
    max_reply_bytes: usize,
    prefetch: u16,
}

impl std::fmt::Debug for ResponderOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponderOptions")
            .field("exchange", &self.exchange)
            .field("producers", &self.producers)
            .field("snapshot_provider", &self.provider.is_some())
            .field("max_fetch", &self.max_fetch)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl ResponderOptions {
    /// Answers requests for `producers` on the exchange
    /// [`eventyard_core::resync::DEFAULT_EXCHANGE`], without a snapshot
    /// provider, fetches of at most 1,000 events, replies of at most
    /// 64 MiB, 16 requests prefetched per producer.
    pub fn new<I, S>(producers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ResponderOptions {
            exchange: wire::DEFAULT_EXCHANGE.to_string(),
            producers: producers.into_iter().map(Into::into).collect(),
            provider: None,
            max_fetch: 1000,
            max_reply_bytes: 64 << 20,
            prefetch: 16,
        }
    }

    /// The exchange requests and replies travel on (the consumers' sources
    /// must use the same).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = exchange.into();
        self
    }

    /// Writes fresh snapshots with `provider` when the stored one is missing
    /// or older than a consumer needs. Without a provider such a request is
    /// answered "no snapshot" and the consumer waits in snapshot mode.
    pub fn snapshot_provider(mut self, provider: Arc<dyn SnapshotProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The largest seq range one fetch may ask for (default 1,000, the
    /// consumers' default `max_fetch`); larger ones are answered with an
    /// error.
    pub fn max_fetch(mut self, n: u64) -> Self {
        self.max_fetch = n.max(1);
        self
    }

    /// The largest reply body (default 64 MiB); a fetch whose events weigh
    /// more is answered with an error (the consumer then falls back to a
    /// snapshot after its fetch tries).
    pub fn max_reply_bytes(mut self, n: usize) -> Self {
        self.max_reply_bytes = n;
        self
    }

    /// Requests prefetched per producer queue (answered one at a time).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// The request queue of `producer_id`.
    pub fn request_queue(&self, producer_id: &str) -> String {
        format!("{}.request.{producer_id}", self.exchange)
    }
}

/// Answers the resync requests of consumers for some producer ids, from this
/// producer's database.
///
/// ```no_run
/// # async fn demo(db: eventyard_core::db::Db,
/// #   transport: std::sync::Arc<dyn eventyard_transport::Transport>)
/// #   -> Result<(), eventyard_sender::SendError> {
/// use eventyard_sender::{ResponderOptions, ResyncResponder};
///
/// let running = ResyncResponder::new(db, transport, ResponderOptions::new(["P1"]))
///     .start()
///     .await?;
/// // … until the application stops:
/// running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ResyncResponder {
    db: Db,
    transport: Arc<dyn Transport>,
    opts: ResponderOptions,
}

/// A started responder; [`shutdown`](Self::shutdown) stops it.
#[derive(Debug)]
pub struct RunningResponder {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningResponder {
    /// Stops consuming requests (the one being answered is finished first);
    /// the request queues go away with their last consumer.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl ResyncResponder {
    /// A responder reading `db` (the producer's outbox database) and
    /// answering over `transport`.
    pub fn new(db: Db, transport: Arc<dyn Transport>, options: ResponderOptions) -> Self {
        ResyncResponder {
            db,
            transport,
            opts: options,
        }
    }

    /// Declares and consumes the request queue of every producer id, then
    /// answers in the background. Fails if a producer id cannot be a routing
    /// key (empty, `*` or `#` in it) or a queue cannot be subscribed (no
    /// queue is left consumed then).
    pub async fn start(self) -> Result<RunningResponder> {
        let mut consumers = Vec::new();
        for producer in &self.opts.producers {
            if producer.is_empty() || producer.contains(['*', '#']) {
                return Err(SendError::Responder {
                    producer_id: producer.clone(),
                    reason:
                        "a producer id served over AMQP must be non-empty and hold no `*` or `#`"
                            .into(),
                });
            }
            let sub = Subscription::new(self.opts.request_queue(producer), &self.opts.exchange)
                .bind(wire::request_routing_key(producer))
                .prefetch(self.opts.prefetch)
                .transient(true);
            match self.transport.subscribe(sub).await {
                Ok(c) => consumers.push((producer.clone(), c)),
                Err(e) => {
                    for (_, mut c) in consumers {
                        let _ = c.cancel().await;
                    }
                    return Err(SendError::Responder {
                        producer_id: producer.clone(),
                        reason: format!(
                            "cannot consume request queue `{}`: {e}",
                            self.opts.request_queue(producer)
                        ),
                    });
                }
            }
        }
        let (stop, stopped) = watch::channel(false);
        let this = Arc::new(self);
        let tasks = consumers
            .into_iter()
            .map(|(producer, consumer)| {
                tracing::info!(producer = %producer, queue = %this.opts.request_queue(&producer),
                    "resync responder: answering requests");
                tokio::spawn(serve(
                    Arc::clone(&this),
                    producer,
                    consumer,
                    stopped.clone(),
                ))
            })
            .collect();
        Ok(RunningResponder { stop, tasks })
    }

    /// Runs until `shutdown` turns true: starts (retrying with backoff from
    /// 1 s to 30 s while the broker refuses), answers, stops. For a
    /// supervisor task such as the daemon's.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut delay = Duration::from_secs(1);
        let running = loop {
            match self.clone().start().await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "resync responder cannot start; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_true(&mut shutdown) => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        };
        wait_true(&mut shutdown).await;
        running.shutdown().await;
    }

    /// The reply to one request body.
    async fn reply(&self, served: &str, body: &[u8]) -> (&'static str, Reply) {
        let request = match wire::decode_request(body) {
            Ok(r) => r,
            Err(e) => {
                return (
                    "malformed",
                    Reply::Error {
                        message: e.to_string(),
                    },
                )
            }
        };
        let (producer, stream) = (request.producer(), request.stream());
        if producer != served && !self.opts.producers.iter().any(|p| p == producer) {
            return (
                "unknown_producer",
                Reply::Error {
                    message: format!(
                        "producer `{producer}` (stream `{stream}`) is not served by this responder \
                         (it serves {})",
                        self.opts.producers.join(", ")
                    ),
                },
            );
        }
        let failed = |message: String| ("error", Reply::Error { message });
        match &request {
            Request::Fetch {
                epoch, from, to, ..
            } => {
                let (epoch, from, to) = (*epoch, *from, *to);
                if from > to || to - from >= self.opts.max_fetch {
                    return failed(format!(
                        "producer `{producer}`, stream `{stream}`: fetch of seqs {from}..={to} \
                         of epoch {epoch} refused: at most {} seqs per request",
                        self.opts.max_fetch
                    ));
                }
                match self.fetch(producer, stream, epoch, from, to).await {
                    Ok(events) => ("events", Reply::Events { events }),
                    Err(e) => failed(format!(
                        "producer `{producer}`, stream `{stream}`: reading ey_outbox seqs \
                         {from}..={to} of epoch {epoch}: {e}"
                    )),
                }
            }
            Request::Snapshot {
                min_epoch, min_seq, ..
            } => {
                let need = (*min_epoch, *min_seq);
                let stored = match self.stored_snapshot(producer, stream).await {
                    Ok(s) => s,
                    Err(e) => {
                        return failed(format!(
                            "producer `{producer}`, stream `{stream}`: reading ey_snapshot: {e}"
                        ))
                    }
                };
                if let Some((epoch, seq, state)) = stored.as_ref() {
                    if (*epoch, *seq) >= need {
                        return (
                            "stored_snapshot",
                            Reply::Snapshot {
                                epoch: *epoch,
                                seq: *seq,
                                state: state.clone(),
                            },
                        );
                    }
                }
                let Some(provider) = &self.opts.provider else {
                    let reason = match stored {
                        Some((e, s, _)) => format!(
                            "producer `{producer}`, stream `{stream}`: the stored snapshot \
                             ({e}, {s}) is older than the ({}, {}) needed and no snapshot \
                             provider is registered",
                            need.0, need.1
                        ),
                        None => format!(
                            "producer `{producer}`, stream `{stream}`: no stored snapshot and no \
                             snapshot provider is registered"
                        ),
                    };
                    return ("no_snapshot", Reply::NoSnapshot { reason });
                };
                match write_fresh_snapshot(&self.db, producer, stream, provider.as_ref()).await {
                    Ok(fresh) => {
                        tracing::info!(producer = %producer, stream = %stream, epoch = fresh.at.epoch,
                            seq = fresh.at.seq, "resync responder: wrote a fresh snapshot for a consumer");
                        (
                            "fresh_snapshot",
                            Reply::Snapshot {
                                epoch: fresh.at.epoch,
                                seq: fresh.at.seq,
                                state: fresh.state,
                            },
                        )
                    }
                    Err(e) => failed(format!("writing a fresh snapshot: {e}")),
                }
            }
        }
    }

    async fn fetch(
        &self,
        producer: &str,
        stream: &str,
        epoch: u64,
        from: u64,
        to: u64,
    ) -> std::result::Result<Vec<WireEvent>, sqlx::Error> {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let sql = self.db.sql(
            "SELECT event_id, seq, payload FROM ey_outbox WHERE producer_id = $1 AND stream = $2 \
             AND epoch = $3 AND seq >= $4 AND seq <= $5 ORDER BY seq",
        );
        let rows: Vec<(String, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(producer).bind(stream).bind(i(epoch)).bind(i(from)).bind(i(to))
                .fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(event_id, seq, payload)| {
                Some(WireEvent {
                    event_id,
                    seq: u64::try_from(seq).ok()?,
                    payload,
                })
            })
            .collect())
    }

    async fn stored_snapshot(
        &self,
        producer: &str,
        stream: &str,
    ) -> std::result::Result<Option<(u64, u64, Vec<u8>)>, sqlx::Error> {
        let sql = self.db.sql(
            "SELECT epoch, seq, state FROM ey_snapshot WHERE producer_id = $1 AND stream = $2",
        );
        let row: Option<(i64, i64, Vec<u8>)> = with_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(producer).bind(stream).fetch_optional(pool).await?
        });
        Ok(row.and_then(|(e, s, state)| {
            Some((u64::try_from(e).ok()?, u64::try_from(s).ok()?, state))
        }))
    }

    /// Answers one delivery (or drops it: stale, or nowhere to answer).
    async fn answer(&self, served: &str, d: &Delivery) {
        let correlation = d
            .headers
            .get(wire::HEADER_CORRELATION)
            .cloned()
            .or_else(|| d.message_id.clone());
        let (Some(correlation), Some(reply_to)) =
            (correlation, d.headers.get(wire::HEADER_REPLY_TO).cloned())
        else {
            tracing::warn!(producer = %served, message_id = ?d.message_id,
                "resync responder: a request without correlation id or reply-to header; dropped");
            count(served, "unanswerable");
            return;
        };
        let deadline = d.headers.get(wire::HEADER_DEADLINE);
        let deadline = match deadline.map(|t| t.parse::<i64>()) {
            None => None,
            Some(Ok(ms)) => Some(ms),
            Some(Err(_)) => {
                let reply = Reply::Error {
                    message: format!(
                        "header `{}` is not a Unix time in ms: {:?}",
                        wire::HEADER_DEADLINE,
                        deadline
                    ),
                };
                self.send(served, &correlation, &reply_to, &reply).await;
                count(served, "malformed");
                return;
            }
        };
        if deadline.is_some_and(|ms| Utc::now().timestamp_millis() > ms) {
            tracing::debug!(producer = %served, correlation_id = %correlation,
                "resync responder: a request past its deadline; dropped");
            count(served, "stale");
            return;
        }
        let (outcome, mut reply) = self.reply(served, &d.payload).await;
        let mut body = wire::encode_reply(&reply);
        if body.len() > self.opts.max_reply_bytes {
            reply = Reply::Error {
                message: format!(
                    "producer `{served}`: the reply would be {} bytes, over the {} byte limit; \
                     ask for a shorter range",
                    body.len(),
                    self.opts.max_reply_bytes
                ),
            };
            body = wire::encode_reply(&reply);
        }
        if let Reply::Error { message } = &reply {
            tracing::warn!(producer = %served, correlation_id = %correlation, error = %message,
                "resync responder: answering an error");
        }
        self.send_body(served, &correlation, &reply_to, body).await;
        count(served, outcome);
    }

    async fn send(&self, served: &str, correlation: &str, reply_to: &str, reply: &Reply) {
        self.send_body(served, correlation, reply_to, wire::encode_reply(reply))
            .await;
    }

    async fn send_body(&self, served: &str, correlation: &str, reply_to: &str, body: Vec<u8>) {
        let msg = OutgoingMessage::new(
            &self.opts.exchange,
            reply_to,
            correlation,
            wire::REPLY_TYPE,
            body,
        )
        .header(wire::HEADER_CORRELATION, correlation);
        if let Err(e) = self.transport.publish(msg).await {
            // Unroutable: the requester is gone (its reply queue with it).
            tracing::debug!(producer = %served, correlation_id = %correlation, reply_to = %reply_to,
                error = %e, "resync responder: the reply could not be published");
        }
    }
}

fn count(producer: &str, outcome: &'static str) {
    metrics::counter!("eventyard_resync_requests_total",
        "producer" => producer.to_string(), "outcome" => outcome)
    .increment(1);
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Answers the requests of one producer queue, one at a time, until stopped.
async fn serve(
    responder: Arc<ResyncResponder>,
    producer: String,
    mut consumer: Box<dyn Consumer>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let delivery = tokio::select! {
            _ = wait_true(&mut stop) => {
                let _ = consumer.cancel().await;
                return;
            }
            d = consumer.next() => match d {
                Some(d) => d,
                None => return,
            },
        };
        responder.answer(&producer, &delivery).await;
        let _ = delivery.acker.ack().await;
    }
}
