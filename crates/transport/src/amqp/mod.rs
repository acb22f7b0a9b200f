//! The AMQP 0-9-1 transport (RabbitMQ) through lapin.
//!
//! Three kinds of task cooperate around one shared `Inner`:
//!
//! - the **supervisor** owns the connection: it connects (with jittered
//!   exponential backoff), re-declares the known exchanges, publishes the live
//!   [`Session`] on a `watch` channel, watches it die, and starts over. lapin's
//!   own auto-recovery is not used.
//! - one **publish pump** per publishing channel writes queued publishes
//!   while at most `max_in_flight` are unconfirmed and collects the confirms
//!   in publish order at the same time (a continuous pipeline, no
//!   stop-and-wait per batch). Because a pump is the only user of its
//!   channel, a returned (unroutable) message is matched to its publish by
//!   message id, whatever confirm lapin attached it to (see `lane.rs`).
//! - each **consumer** opens its own channel on the current session and, when
//!   the session dies, waits for the next one and subscribes again.

mod consumer;
mod convert;
mod lane;
mod options;
mod partition;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Event, ExchangeKind};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use options::AmqpOptions;

use crate::error::{redact_url, TransportError};
use crate::message::{
    dead_letter_exchange, dead_letter_queue, OutgoingMessage, PublishOrder, Subscription,
};
use crate::{Consumer, Transport};
use convert::short;
use lane::Lane;

/// RabbitMQ over AMQP 0-9-1: publisher confirms, mandatory persistent
/// publishing, durable topology with dead-letter queues, and connection
/// recovery of its own.
///
/// ```no_run
/// # async fn demo() -> Result<(), eventyard_transport::TransportError> {
/// use eventyard_transport::{AmqpOptions, AmqpTransport, OutgoingMessage, Transport};
///
/// let transport = AmqpTransport::connect("amqp://guest:guest@127.0.0.1:5672/%2f", AmqpOptions::new()).await?;
/// transport
///     .publish(OutgoingMessage::new("orders", "ORDER.PLACED", "evt-1", "ORDER.PLACED", b"<e/>".to_vec()))
///     .await?;
/// # Ok(()) }
/// ```
///
/// # Recovery
///
/// When the broker restarts or the connection drops, a background task
/// reconnects (first at once, then with jittered exponential backoff between
/// [`AmqpOptions::reconnect_backoff`]'s bounds) and re-declares the exchanges
/// it knew. Publishes whose confirm had not come are errors (not sent);
/// publishes made while disconnected wait up to [`AmqpOptions::connect_wait`]
/// for the reconnect, then fail with [`TransportError::Disconnected`].
/// Consumers re-declare their queue and subscribe again; the broker
/// redelivers what was not acknowledged.
///
/// # TLS
///
/// `amqps://` URLs use rustls with the ring provider and the system's root
/// certificates; add a private CA with [`AmqpOptions::tls_ca_pem`] and a
/// client certificate with [`AmqpOptions::tls_client_pkcs12`].
///
/// Clones share the connection. The connection closes when the last clone and
/// the last consumer are dropped, or at [`close`](Transport::close).
#[derive(Clone)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    shown_url: String,
    options: AmqpOptions,
    link: watch::Sender<Link>,
    shutdown: watch::Sender<bool>,
    failure: Arc<Notify>,
    /// Every exchange declared so far, re-declared after a reconnect.
    exchanges: Mutex<BTreeSet<String>>,
    pumps: Vec<mpsc::Sender<Job>>,
    next_pump: AtomicUsize,
}

/// The connection state everyone watches.
#[derive(Clone, Default)]
struct Link {
    /// How many connections have been made so far (the current one's number).
    generation: u64,
    session: Option<Arc<Session>>,
    last_error: Option<String>,
    closed: bool,
}

/// One live connection.
struct Session {
    generation: u64,
    connection: Connection,
    /// Exchanges declared on this connection.
    declared: Mutex<HashSet<String>>,
}

/// One queued publish.
struct Job {
    msg: OutgoingMessage,
    reply: oneshot::Sender<Result<(), TransportError>>,
    enqueued: Instant,
}

/// Why no session could be had.
enum NoSession {
    Closed,
    Timeout {
        waited: Duration,
        last_error: String,
    },
}

impl NoSession {
    fn into_error(self, context: String) -> TransportError {
        match self {
            Self::Closed => TransportError::Closed,
            Self::Timeout { waited, last_error } => TransportError::Disconnected {
                context,
                waited,
                last_error,
            },
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn describe(msg: &OutgoingMessage) -> String {
    format!(
        "publishing message {} to exchange `{}` with routing key `{}`",
        msg.message_id, msg.exchange, msg.routing_key
    )
}

impl AmqpTransport {
    /// Connects to the broker at `url` (`amqp://` or `amqps://`) and starts the
    /// recovery task. Fails if this first connection fails.
    pub async fn connect(url: &str, options: AmqpOptions) -> Result<Self, TransportError> {
        let (inner, receivers) = Inner::new(url, options)?;
        let session = Arc::new(inner.open_session(1).await?);
        inner.link.send_modify(|link| {
            link.generation = 1;
            link.session = Some(Arc::clone(&session));
        });
        info!(url = %inner.shown_url, "connected to the AMQP broker");
        Ok(Self::start(inner, receivers, Some(session)))
    }

    /// Like [`connect`](Self::connect), but returns at once and connects in
    /// the background (retrying with backoff) — for a daemon that must start
    /// while the broker is down. Only the URL is checked here. Must be called
    /// inside a tokio runtime.
    pub fn connect_lazy(url: &str, options: AmqpOptions) -> Result<Self, TransportError> {
        let (inner, receivers) = Inner::new(url, options)?;
        Ok(Self::start(inner, receivers, None))
    }

    fn start(
        inner: Arc<Inner>,
        receivers: Vec<mpsc::Receiver<Job>>,
        session: Option<Arc<Session>>,
    ) -> Self {
        for rx in receivers {
            tokio::spawn(pump(
                Arc::downgrade(&inner),
                rx,
                inner.options.max_in_flight,
            ));
        }
        tokio::spawn(supervise(
            Arc::downgrade(&inner),
            inner.options.clone(),
            Arc::clone(&inner.failure),
            inner.shutdown.subscribe(),
            session,
        ));
        Self { inner }
    }

    /// True while a connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner
            .link
            .borrow()
            .session
            .as_ref()
            .is_some_and(|s| s.connection.status().connected())
    }

    /// How many connections have been made so far: 1 after the first connect,
    /// +1 for every reconnect.
    pub fn connection_generation(&self) -> u64 {
        self.inner.link.borrow().generation
    }

    /// Waits up to `wait` for a connection; true when connected.
    pub async fn wait_connected(&self, wait: Duration) -> bool {
        self.inner.session(wait).await.is_ok()
    }

    /// The number of ready messages in `queue` (a passive declare).
    pub async fn queue_message_count(&self, queue: &str) -> Result<u32, TransportError> {
        let what = format!("queue `{queue}`");
        self.inner
            .with_channel(&what, |ch| async move {
                ch.queue_declare(
                    short(queue, "the queue name", "-")?,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|q| q.message_count())
                .map_err(|e| TransportError::Topology {
                    what: format!("queue `{queue}`"),
                    source: Box::new(e),
                })
            })
            .await
    }

    /// Deletes `queue` and its dead-letter queue `<queue>.dlq` (for tests and
    /// operators' tooling); returns how many messages `queue` held.
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, TransportError> {
        let what = format!("queue `{queue}`");
        self.inner
            .with_channel(&what, |ch| async move {
                let err = |e: lapin::Error| TransportError::Topology {
                    what: format!("deleting queue `{queue}`"),
                    source: Box::new(e),
                };
                let n = ch
                    .queue_delete(
                        short(queue, "the queue name", "-")?,
                        QueueDeleteOptions::default(),
                    )
                    .await
                    .map_err(err)?;
                let dlq = dead_letter_queue(queue);
                ch.queue_delete(
                    short(&dlq, "the queue name", "-")?,
                    QueueDeleteOptions::default(),
                )
                .await
                .map_err(err)?;
                Ok(n)
            })
            .await
    }

    /// Deletes `exchange` and its dead-letter exchange `<exchange>.dlx`.
    pub async fn delete_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        lock(&self.inner.exchanges).remove(exchange);
        if let Some(session) = &self.inner.link.borrow().session {
            lock(&session.declared).remove(exchange);
        }
        let what = format!("exchange `{exchange}`");
        self.inner
            .with_channel(&what, |ch| async move {
                for name in [exchange.to_owned(), dead_letter_exchange(exchange)] {
                    ch.exchange_delete(
                        short(&name, "the exchange name", "-")?,
                        ExchangeDeleteOptions::default(),
                    )
                    .await
                    .map_err(|e| TransportError::Topology {
                        what: format!("deleting exchange `{name}`"),
                        source: Box::new(e),
                    })?;
                }
                Ok(())
            })
            .await
    }
}

impl fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let link = self.inner.link.borrow();
        f.debug_struct("AmqpTransport")
            .field("url", &self.inner.shown_url)
            .field("generation", &link.generation)
            .field("connected", &link.session.is_some())
            .field("closed", &link.closed)
            .finish()
    }
}

impl Inner {
    fn new(
        url: &str,
        options: AmqpOptions,
    ) -> Result<(Arc<Self>, Vec<mpsc::Receiver<Job>>), TransportError> {
        let shown_url = redact_url(url);
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|reason| TransportError::InvalidUrl {
                url: shown_url.clone(),
                reason,
            })?;
        let mut pumps = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..options.publish_channels {
            let (tx, rx) = mpsc::channel(options.max_in_flight.max(16) * 4);
            pumps.push(tx);
            receivers.push(rx);
        }
        let inner = Arc::new(Self {
            url: url.to_owned(),
            shown_url,
            options,
            link: watch::Sender::new(Link::default()),
            shutdown: watch::Sender::new(false),
            failure: Arc::new(Notify::new()),
            exchanges: Mutex::new(BTreeSet::new()),
            pumps,
            next_pump: AtomicUsize::new(0),
        });
        Ok((inner, receivers))
    }

    /// Opens a connection and re-declares the known exchanges on it.
    async fn open_session(&self, generation: u64) -> Result<Session, TransportError> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.options.connection_name.clone().into());
        let tls = OwnedTLSConfig {
            identity: self
                .options
                .tls_client_pkcs12
                .clone()
                .map(|(der, password)| OwnedIdentity::PKCS12 { der, password }),
            cert_chain: self.options.tls_ca_pem.clone(),
        };
        let context = || format!("connecting to {}", self.shown_url);
        let runtime =
            lapin::runtime::default_runtime().map_err(|e| TransportError::Connection {
                context: context(),
                source: Box::new(e),
            })?;
        let connecting = Connection::connect_with_config(&self.url, props, tls, runtime);
        let connection = match tokio::time::timeout(self.options.connect_timeout, connecting).await
        {
            Err(_) => {
                return Err(TransportError::Connection {
                    context: context(),
                    source: Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {:?}", self.options.connect_timeout),
                    )),
                })
            }
            Ok(Err(e)) => return Err(self.connect_error(e)),
            Ok(Ok(connection)) => connection,
        };
        let session = Session {
            generation,
            connection,
            declared: Mutex::new(HashSet::new()),
        };
        let known: Vec<String> = lock(&self.exchanges).iter().cloned().collect();
        for exchange in known {
            if let Err(e) = session.declare_exchange(&exchange).await {
                if !session.connection.status().connected() {
                    return Err(e);
                }
                // A conflicting exchange must not stop the reconnect; publishing
                // to it reports the error.
                warn!(%exchange, error = %e, "re-declaring an exchange after reconnect failed");
            }
        }
        Ok(session)
    }

    fn connect_error(&self, e: lapin::Error) -> TransportError {
        let text = e.to_string().to_ascii_lowercase();
        let tls_like = ["certificate", "tls", "handshake", "unknownissuer", "x509"]
            .iter()
            .any(|w| text.contains(w));
        if self.url.starts_with("amqps") && tls_like {
            TransportError::Tls {
                url: self.shown_url.clone(),
                source: Box::new(e),
            }
        } else {
            TransportError::Connection {
                context: format!("connecting to {}", self.shown_url),
                source: Box::new(e),
            }
        }
    }

    /// The live session, waiting up to `wait` for one.
    async fn session(&self, wait: Duration) -> Result<Arc<Session>, NoSession> {
        let mut rx = self.link.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            {
                let link = rx.borrow_and_update();
                if link.closed {
                    return Err(NoSession::Closed);
                }
                if let Some(session) = &link.session {
                    if session.connection.status().connected() {
                        return Ok(Arc::clone(session));
                    }
                    // Dead but not yet noticed: tell the supervisor.
                    self.failure.notify_one();
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(NoSession::Closed),
                Err(_) => {
                    return Err(NoSession::Timeout {
                        waited: wait,
                        last_error: self
                            .link
                            .borrow()
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "none".to_owned()),
                    })
                }
            }
        }
    }

    /// Runs `f` on a short-lived channel of the live session.
    async fn with_channel<T, F, Fut>(&self, what: &str, f: F) -> Result<T, TransportError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let session = self
            .session(self.options.connect_wait)
            .await
            .map_err(|e| e.into_error(format!("working on {what}")))?;
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(|e| session.error(format!("opening a channel for {what}"), e))?;
        let result = f(channel.clone()).await;
        if channel.status().connected() {
            let _ = channel.close(200, "done".into()).await;
        }
        if !session.connection.status().connected() {
            self.failure.notify_one();
        }
        result
    }

    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        let session = self
            .session(self.options.connect_wait)
            .await
            .map_err(|e| e.into_error(format!("declaring exchange `{exchange}`")))?;
        let result = session.declare_exchange(exchange).await;
        if result.is_ok() {
            lock(&self.exchanges).insert(exchange.to_owned());
        } else if !session.connection.status().connected() {
            self.failure.notify_one();
        }
        result
    }

    fn pump(&self) -> &mpsc::Sender<Job> {
        &self.pumps[self.pump_index()]
    }

    /// The next pump, round robin.
    fn pump_index(&self) -> usize {
        self.next_pump.fetch_add(1, Ordering::Relaxed) % self.pumps.len()
    }

    /// Writes a batch of publishes on the pump's lane (opening a fresh
    /// channel when the lane's is gone or tainted); their confirms are
    /// collected by the pump while it writes more.
    async fn write_batch(&self, lane: &mut Option<Lane>, jobs: Vec<Job>) {
        // A caller that gave up (dropped its future) no longer wants the message sent.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        let Some(oldest) = jobs.iter().map(|j| j.enqueued).min() else {
            return;
        };
        let wait = (oldest + self.options.connect_wait).saturating_duration_since(Instant::now());
        let session = match self.session(wait).await {
            Ok(session) => session,
            Err(NoSession::Closed) => {
                return answer_all(jobs, |_| TransportError::Closed);
            }
            Err(NoSession::Timeout { last_error, .. }) => {
                let waited = self.options.connect_wait;
                return answer_all(jobs, |msg| TransportError::Disconnected {
                    context: describe(msg),
                    waited,
                    last_error: last_error.clone(),
                });
            }
        };

        // Exchanges first: publishing to a missing exchange would close the channel.
        let mut failed_exchanges: HashMap<String, String> = HashMap::new();
        let exchanges: BTreeSet<&str> = jobs.iter().map(|j| j.msg.exchange.as_str()).collect();
        // Every wait on the connection is bounded: a connection that died
        // unnoticed may never answer, and a pump must not hang on it.
        let bound = self.options.confirm_timeout;
        for exchange in exchanges {
            match tokio::time::timeout(bound, session.declare_exchange(exchange)).await {
                Ok(Ok(())) => {
                    lock(&self.exchanges).insert(exchange.to_owned());
                }
                Ok(Err(e)) => {
                    failed_exchanges.insert(exchange.to_owned(), e.to_string());
                }
                Err(_) => {
                    failed_exchanges.insert(
                        exchange.to_owned(),
                        format!("no answer from the broker within {bound:?}"),
                    );
                    self.failure.notify_one();
                }
            }
        }
        if !session.connection.status().connected() {
            self.failure.notify_one();
        }

        if !lane.as_ref().is_some_and(|l| l.usable(session.generation)) {
            // The old channel's publishes are answered by their own confirms
            // (or time out) in the background; nothing new goes on it.
            if let Some(old) = lane.take() {
                tokio::spawn(old.drain());
            }
            let opened = tokio::time::timeout(bound, session.publish_channel())
                .await
                .unwrap_or_else(|_| {
                    Err(TransportError::Connection {
                        context: "opening a publishing channel".into(),
                        source: format!("no answer from the broker within {bound:?}").into(),
                    })
                });
            match opened {
                Ok(channel) => {
                    *lane = Some(Lane::new(
                        Arc::clone(&session),
                        channel,
                        self.options.confirm_timeout,
                    ));
                }
                Err(e) => {
                    let text = e.to_string();
                    self.failure.notify_one();
                    return answer_all(jobs, |msg| TransportError::Connection {
                        context: describe(msg),
                        source: text.clone().into(),
                    });
                }
            }
        }
        let Some(lane) = lane.as_mut() else {
            return answer_all(jobs, |_| TransportError::Closed);
        };
        let channel = lane.channel().clone();

        let mut broken: Option<String> = None;
        for job in jobs {
            if let Some(reason) = failed_exchanges.get(&job.msg.exchange) {
                let e = TransportError::Topology {
                    what: format!("exchange `{}`", job.msg.exchange),
                    source: reason.clone().into(),
                };
                let _ = job.reply.send(Err(e));
                continue;
            }
            if let Some(reason) = &broken {
                let e = session.error(describe(&job.msg), reason.clone());
                let _ = job.reply.send(Err(e));
                continue;
            }
            let prepared = convert::properties(&job.msg).and_then(|props| {
                let id = &job.msg.message_id;
                Ok((
                    short(&job.msg.exchange, "the exchange name", id)?,
                    short(&job.msg.routing_key, "the routing key", id)?,
                    props,
                ))
            });
            let (exchange, routing_key, props) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            };
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let written = tokio::time::timeout(
                bound,
                channel.basic_publish(exchange, routing_key, options, &job.msg.payload, props),
            )
            .await
            .unwrap_or_else(|_| {
                self.failure.notify_one();
                Err(lapin::Error::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the message was not written within {bound:?}"),
                )))
            });
            match written {
                Ok(confirm) => lane.push(job, confirm),
                Err(e) => {
                    broken = Some(e.to_string());
                    lane.taint();
                    let e = session.error(describe(&job.msg), e);
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if broken.is_some() && !session.connection.status().connected() {
            self.failure.notify_one();
        }
    }
}

fn answer_all(jobs: Vec<Job>, error: impl Fn(&OutgoingMessage) -> TransportError) {
    for job in jobs {
        let e = error(&job.msg);
        let _ = job.reply.send(Err(e));
    }
}

impl Session {
    /// An error from lapin, as a connection error when the connection is gone
    /// and a broker error otherwise.
    fn error(&self, context: String, e: impl Into<crate::BoxError>) -> TransportError {
        if self.connection.status().connected() {
            TransportError::Broker {
                context,
                source: e.into(),
            }
        } else {
            TransportError::Connection {
                context,
                source: e.into(),
            }
        }
    }

    async fn publish_channel(&self) -> Result<Channel, TransportError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| self.error("opening a publishing channel".into(), e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.error("enabling publisher confirms".into(), e))?;
        Ok(channel)
    }

    /// Declares a durable topic exchange once per connection.
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        if exchange.is_empty() || lock(&self.declared).contains(exchange) {
            return Ok(());
        }
        let name = short(exchange, "the exchange name", "-")?;
        let what = format!("exchange `{exchange}`");
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| self.error(format!("opening a channel to declare {what}"), e))?;
        let result = declare_topic_exchange(&channel, name).await;
        if channel.status().connected() {
            let _ = channel.close(200, "done".into()).await;
        }
        result.map_err(|e| TransportError::Topology {
            what,
            source: Box::new(e),
        })?;
        lock(&self.declared).insert(exchange.to_owned());
        Ok(())
    }
}

async fn declare_topic_exchange(
    channel: &Channel,
    name: lapin::types::ShortString,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// The pump of an ordering key: the same key, the same pump (and channel).
fn key_pump(key: &str, pumps: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % pumps.max(1) as u64) as usize
}

/// One publishing channel's loop: write what is queued while fewer than `max`
/// publishes are unconfirmed, and answer each publish when its confirm comes
/// (in publish order), both at once.
async fn pump(inner: Weak<Inner>, mut rx: mpsc::Receiver<Job>, max: usize) {
    let mut lane: Option<Lane> = None;
    loop {
        let in_flight = lane.as_ref().map_or(0, Lane::in_flight);
        let step = tokio::select! {
            biased;
            confirm = Lane::next_confirm(lane.as_mut()), if in_flight > 0 => Step::Confirm(Box::new(confirm)),
            job = rx.recv(), if in_flight < max => Step::Jobs(job),
        };
        match step {
            Step::Confirm(confirm) => {
                if let Some(lane) = lane.as_mut() {
                    lane.settle(*confirm);
                }
            }
            Step::Jobs(None) => break,
            Step::Jobs(Some(first)) => {
                let mut batch = vec![first];
                while in_flight + batch.len() < max {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let Some(inner) = inner.upgrade() else {
                    answer_all(batch, |_| TransportError::Closed);
                    break;
                };
                inner.write_batch(&mut lane, batch).await;
            }
        }
    }
    if let Some(lane) = lane {
        lane.drain().await;
    }
}

/// What woke a pump. Lives for one turn of the pump's loop, so the job is
/// kept inline rather than boxed (a box per message would cost more).
#[allow(clippy::large_enum_variant)]
enum Step {
    /// The oldest publish in flight was confirmed (or timed out).
    Confirm(Box<lane::ConfirmResult>),
    /// A publish to write (`None`: the transport is gone).
    Jobs(Option<Job>),
}

/// Resolves when the transport is closed or dropped.
async fn shut_down(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Owns the connection: connect, watch, reconnect — until shut down.
async fn supervise(
    inner: Weak<Inner>,
    options: AmqpOptions,
    failure: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    mut session: Option<Arc<Session>>,
) {
    let mut attempt: u32 = 0;
    loop {
        let current = match session.take() {
            Some(current) => current,
            None => {
                let delay = options.backoff(attempt);
                if !delay.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shut_down(&mut shutdown) => return,
                    }
                }
                let Some(strong) = inner.upgrade() else {
                    return;
                };
                let generation = strong.link.borrow().generation + 1;
                let opened = tokio::select! {
                    opened = strong.open_session(generation) => opened,
                    () = shut_down(&mut shutdown) => return,
                };
                match opened {
                    Ok(opened) => {
                        let opened = Arc::new(opened);
                        strong.link.send_modify(|link| {
                            link.generation = generation;
                            link.session = Some(Arc::clone(&opened));
                            link.last_error = None;
                        });
                        info!(url = %strong.shown_url, generation, "connected to the AMQP broker");
                        opened
                    }
                    Err(e) => {
                        attempt = attempt.saturating_add(1);
                        warn!(url = %strong.shown_url, attempt, error = %e, "connecting to the AMQP broker failed; retrying");
                        strong
                            .link
                            .send_modify(|link| link.last_error = Some(e.to_string()));
                        continue;
                    }
                }
            }
        };
        let reason = tokio::select! {
            reason = watch_connection(&current, &failure) => reason,
            () = shut_down(&mut shutdown) => {
                close_connection(&current).await;
                return;
            }
        };
        warn!(generation = current.generation, %reason, "AMQP connection lost; reconnecting");
        let Some(strong) = inner.upgrade() else {
            return;
        };
        strong.link.send_modify(|link| {
            if link
                .session
                .as_ref()
                .is_some_and(|s| s.generation == current.generation)
            {
                link.session = None;
            }
            link.last_error = Some(reason);
        });
        drop(strong);
        tokio::spawn(async move { close_connection(&current).await });
        // The first retry comes at once, later ones back off.
        attempt = 0;
    }
}

async fn close_connection(session: &Session) {
    if session.connection.status().connected() {
        let closing = session.connection.close(200, "eventyard closing".into());
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

/// Resolves, with a reason, once the session's connection is gone.
async fn watch_connection(session: &Session, failure: &Notify) -> String {
    let mut events = Box::pin(session.connection.events_listener());
    let mut last_error = String::from("the connection closed");
    loop {
        if !session.connection.status().connected() {
            return last_error;
        }
        tokio::select! {
            event = std::future::poll_fn(|cx| futures_core::Stream::poll_next(events.as_mut(), cx)) => {
                match event {
                    Some(Event::Error(e)) => last_error = e.to_string(),
                    Some(other) => debug!(?other, "AMQP connection event"),
                    None => return "the connection's event stream ended".to_owned(),
                }
            }
            () = failure.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        self.inner.declare_exchange(exchange).await
    }

    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            msg,
            reply,
            enqueued: Instant::now(),
        };
        if let Err(mpsc::error::SendError(job)) = self.inner.pump().send(job).await {
            let _ = job;
            return Err(TransportError::Closed);
        }
        answer.await.unwrap_or(Err(TransportError::Closed))
    }

    async fn publish_many(&self, msgs: Vec<OutgoingMessage>) -> Vec<Result<(), TransportError>> {
        // The call's `Call` messages go to one pump, so they keep their order;
        // `Key` messages go to their key's pump; `Any` messages are spread.
        let call_pump = self.inner.pump_index();
        let pumps = self.inner.pumps.len();
        let mut spread = call_pump;
        let mut answers = Vec::with_capacity(msgs.len());
        let now = Instant::now();
        for msg in msgs {
            let i = match &msg.order {
                PublishOrder::Call => call_pump,
                PublishOrder::Key(key) => key_pump(key, pumps),
                PublishOrder::Any => {
                    spread = (spread + 1) % pumps;
                    spread
                }
            };
            let (reply, answer) = oneshot::channel();
            let job = Job {
                msg,
                reply,
                enqueued: now,
            };
            // A pump that is gone drops the job, and with it the reply: `Closed`.
            let _ = self.inner.pumps[i].send(job).await;
            answers.push(answer);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(answer.await.unwrap_or(Err(TransportError::Closed)));
        }
        results
    }

    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Consumer>, TransportError> {
        let consumer = consumer::AmqpConsumer::start(self.clone(), sub).await?;
        Ok(Box::new(consumer))
    }

    async fn declare_partitions(&self, spec: &crate::Partitions) -> Result<(), TransportError> {
        self.declare_partitioned(spec).await
    }

    async fn close(&self) -> Result<(), TransportError> {
        let session = {
            let mut taken = None;
            self.inner.link.send_modify(|link| {
                link.closed = true;
                taken = link.session.take();
            });
            taken
        };
        self.inner.shutdown.send_replace(true);
        if let Some(session) = session {
            close_connection(&session).await;
        }
        Ok(())
    }
}
