//! The publisher: the public send API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use eventyard_converter::{BodyFormat, Registry, SendContext, SendConverter};
use eventyard_core::config::{Loaded, SendConfig, SendMode};
use eventyard_core::envelope::{self, Body, Codec, Envelope};
use eventyard_transport::{
    OutgoingMessage, PublishOrder, Transport, TransportError, PRODUCER_HEADER,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::coalesce::Coalescer;
use crate::error::{Result, SendError};
use crate::outbox::{NewOutboxRow, Outbox, OutboxConn};

/// Settings of a [`Publisher`] (and the batch scheduler sharing it).
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    pub(crate) system_id: String,
    pub(crate) instance_id: String,
    pub(crate) lease: Duration,
    pub(crate) relay_grace: Duration,
    pub(crate) coalesce_batch: usize,
    pub(crate) coalesce_writers: usize,
    pub(crate) batch_chunks_in_flight: usize,
    pub(crate) codec: Codec,
}

impl PublisherOptions {
    /// Options for the publishing system `system_id` (written into every
    /// envelope header as the publisher).
    pub fn new(system_id: impl Into<String>) -> Self {
        PublisherOptions {
            system_id: system_id.into(),
            instance_id: format!("ey-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(60),
            relay_grace: Duration::from_secs(10),
            coalesce_batch: 256,
            coalesce_writers: 2,
            batch_chunks_in_flight: 3,
            codec: Codec::default(),
        }
    }

    /// This process's id in claim leases (default: random per process).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// How long a claim on outbox rows lasts before another instance may
    /// take them over (default 60 s). Must exceed a batch's send time.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d;
        self
    }

    /// How old a `pending` row of a real-time mode must be before the relay
    /// resends it (default 10 s).
    pub fn relay_grace(mut self, d: Duration) -> Self {
        self.relay_grace = d;
        self
    }

    /// The most outbox writes coalesced into one statement (default 256).
    pub fn coalesce_batch(mut self, n: usize) -> Self {
        self.coalesce_batch = n.max(1);
        self
    }

    /// How many coalesced outbox writes (inserts, and `sent` updates) may
    /// be in flight at once (default 2): an event arriving while one batch
    /// commits starts the next at once instead of waiting behind it. On
    /// SQLite, which has one writer at a time, it is always 1.
    pub fn coalesce_writers(mut self, n: usize) -> Self {
        self.coalesce_writers = n.max(1);
        self
    }

    /// How many chunks (of `batch_size` rows) of an unsequenced event type
    /// a batch run publishes at once (default 3, at least 1): the next chunk
    /// is claimed and starts publishing while the confirms of the ones
    /// before it are still coming, so the broker's pipeline stays full
    /// across chunk boundaries. Sequenced types publish one chunk at a
    /// time, so that a stream keeps its order across chunks.
    pub fn batch_chunks_in_flight(mut self, n: usize) -> Self {
        self.batch_chunks_in_flight = n.max(1);
        self
    }

    /// The envelope codec (limits) to use.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }
}

/// Optional envelope fields for one event.
#[derive(Debug, Clone, Default)]
pub struct EventMeta {
    /// Correlates the event across systems.
    pub trace_id: Option<String>,
    /// The business key (account number, order id, …).
    pub business_key: Option<String>,
    /// The producer id (defaults to the system id).
    pub producer_id: Option<String>,
    /// The stream of a `sequenced` event type (defaults to the event type);
    /// events are numbered per (producer id, stream).
    pub stream: Option<String>,
    /// Free key/values for the common section.
    pub entries: Vec<(String, String)>,
}

/// What happened to a published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Confirmed by the broker.
    Sent,
    /// Stored as pending for the batch scheduler (`batch` mode, or a staged event before flush).
    Queued,
    /// `realtime_batch`: publishing failed; the row stays pending for the
    /// batch scheduler, which resends it.
    Deferred {
        /// The publish error.
        error: String,
    },
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event id (also the AMQP message id and `ey_outbox.event_id`).
    pub event_id: String,
    /// What happened.
    pub outcome: Outcome,
}

/// An event written to the outbox inside the caller's transaction, not yet
/// published. Call [`Publisher::flush`] after the transaction commits; if
/// the process dies first, the relay sends it after the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "flush the staged event after the transaction commits"]
pub struct Staged {
    /// The event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
}

/// Send converters compiled with their rules, by (converter id, rules).
type CompiledCache = HashMap<(String, Option<String>), Arc<dyn SendConverter>>;

pub(crate) struct Inner {
    pub(crate) outbox: Outbox,
    pub(crate) config: watch::Receiver<Arc<Loaded>>,
    pub(crate) converters: Arc<Registry>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) options: PublisherOptions,
    inserts: Coalescer<NewOutboxRow>,
    sent: Coalescer<(String, i32)>,
    compiled: Mutex<CompiledCache>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("system_id", &self.options.system_id)
            .field("instance_id", &self.options.instance_id)
            .finish_non_exhaustive()
    }
}

/// Publishes events as their `ey_send_config` rows say.
///
/// Cheap to clone; all clones share the coalescing outbox writers.
/// Must be created inside a tokio runtime.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub(crate) inner: Arc<Inner>,
}

impl Publisher {
    /// A publisher over the outbox database, a live config (see
    /// [`ConfigWatcher`](eventyard_core::config::ConfigWatcher)), the
    /// converters and a transport.
    pub fn new(
        outbox: Outbox,
        config: watch::Receiver<Arc<Loaded>>,
        converters: Arc<Registry>,
        transport: Arc<dyn Transport>,
        options: PublisherOptions,
    ) -> Self {
        let insert_outbox = outbox.clone();
        let writers = if outbox.db().backend() == eventyard_core::db::Backend::Sqlite {
            1
        } else {
            options.coalesce_writers
        };
        let inserts = Coalescer::spawn(
            options.coalesce_batch,
            writers,
            move |rows: Vec<NewOutboxRow>| {
                let outbox = insert_outbox.clone();
                async move { outbox.insert(&rows).await.map_err(|e| e.to_string()) }
            },
        );
        let sent_outbox = outbox.clone();
        let sent = Coalescer::spawn(
            options.coalesce_batch,
            writers,
            move |ids: Vec<(String, i32)>| {
                let outbox = sent_outbox.clone();
                async move {
                    outbox
                        .mark_sent(&ids, Utc::now())
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        );
        Publisher {
            inner: Arc::new(Inner {
                outbox,
                config,
                converters,
                transport,
                options,
                inserts,
                sent,
                compiled: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The outbox this publisher writes.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    pub(crate) fn system_id(&self) -> &str {
        &self.inner.options.system_id
    }

    pub(crate) fn codec(&self) -> &Codec {
        &self.inner.options.codec
    }

    /// Publishes `value` as an event of `event_type`.
    ///
    /// The config row picks converter, compression, persistence and mode;
    /// see [`Outcome`] for what the result means per mode. An unknown or
    /// disabled event type is an error and nothing is published.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        value: &T,
    ) -> Result<Published> {
        self.publish_with(event_type, value, EventMeta::default())
            .await
    }

    /// [`publish`](Self::publish) with envelope metadata.
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        event_type: &str,
        value: &T,
        meta: EventMeta,
    ) -> Result<Published> {
        let cfg = self.send_config(event_type)?;
        let body = self.render(&cfg, value)?;
        self.publish_prepared(cfg, body, meta).await
    }

    /// Publishes an already rendered body (no converter runs), e.g. an XML
    /// document an operator has in hand.
    pub async fn publish_body(
        &self,
        event_type: &str,
        body: Body,
        meta: EventMeta,
    ) -> Result<Published> {
        let cfg = self.send_config(event_type)?;
        self.publish_prepared(cfg, body, meta).await
    }

    async fn publish_prepared(
        &self,
        cfg: SendConfig,
        body: Body,
        meta: EventMeta,
    ) -> Result<Published> {
        let event_type = cfg.event_type.clone();
        let result = if cfg.sequenced {
            // Numbered in its own transaction (crate::sequence), not coalesced.
            self.publish_sequenced(cfg, body, meta, None)
                .await
                .map(|(p, _)| p)
        } else {
            let (event_id, payload) = self.pack_body(&cfg, body, meta)?;
            let message = self.message(&cfg, &event_id, payload.clone());
            self.deliver(cfg, event_id, payload, message).await
        };
        let outcome = match &result {
            Ok(p) => match p.outcome {
                Outcome::Sent => "sent",
                Outcome::Queued => "queued",
                Outcome::Deferred { .. } => "deferred",
            },
            Err(_) => "failed",
        };
        metrics::counter!("eventyard_events_published_total", "event_type" => event_type, "outcome" => outcome)
            .increment(1);
        result
    }

    async fn deliver(
        &self,
        cfg: SendConfig,
        event_id: String,
        payload: Vec<u8>,
        message: OutgoingMessage,
    ) -> Result<Published> {
        let inner = &self.inner;
        match (cfg.send_mode, cfg.persist) {
            (SendMode::Realtime, false) => {
                self.publish_with_retries(&cfg, &event_id, message, false)
                    .await?;
                Ok(Published {
                    event_id,
                    outcome: Outcome::Sent,
                })
            }
            (SendMode::Batch, _) => {
                inner
                    .inserts
                    .write(self.row(&cfg, &event_id, payload, false))
                    .await
                    .map_err(SendError::OutboxWrite)?;
                Ok(Published {
                    event_id,
                    outcome: Outcome::Queued,
                })
            }
            (SendMode::Realtime, true) | (SendMode::RealtimeBatch, _) => {
                inner
                    .inserts
                    .write(self.row(&cfg, &event_id, payload, true))
                    .await
                    .map_err(SendError::OutboxWrite)?;
                self.send_persisted(&cfg, event_id, message).await
            }
        }
    }

    /// Writes the event's outbox row on the caller's connection — normally
    /// inside the caller's open transaction (`&mut *tx`), so the business
    /// write and the event commit or roll back together. Nothing is
    /// published until [`flush`](Self::flush) after the commit (or, if the
    /// process dies first, until the relay finds the row).
    pub async fn stage<C, T>(
        &self,
        conn: &mut C,
        event_type: &str,
        value: &T,
        meta: EventMeta,
    ) -> Result<Staged>
    where
        C: OutboxConn + ?Sized,
        T: Serialize + ?Sized,
    {
        let cfg = self.send_config(event_type)?;
        if cfg.sequenced {
            // Numbered on the caller's transaction (crate::sequence).
            let body = self.render(&cfg, value)?;
            let (event_id, _) = self.stage_sequenced(conn, &cfg, body, meta).await?;
            return Ok(Staged {
                event_id,
                event_type: event_type.to_string(),
            });
        }
        let (event_id, payload) = self.pack(&cfg, value, meta)?;
        conn.insert_outbox_row(&self.row(&cfg, &event_id, payload, false))
            .await?;
        Ok(Staged {
            event_id,
            event_type: event_type.to_string(),
        })
    }

    /// Publishes a staged event once its transaction has committed.
    ///
    /// `batch` events stay queued for the scheduler; the others are sent as
    /// their mode says. A staged event whose transaction rolled back no
    /// longer exists and yields [`SendError::NotClaimable`].
    pub async fn flush(&self, staged: Staged) -> Result<Published> {
        let cfg = self.send_config(&staged.event_type)?;
        if cfg.send_mode == SendMode::Batch {
            return Ok(Published {
                event_id: staged.event_id,
                outcome: Outcome::Queued,
            });
        }
        let inner = &self.inner;
        let row = inner
            .outbox
            .claim_one(
                &staged.event_id,
                &inner.options.instance_id,
                inner.options.lease,
                Utc::now(),
            )
            .await?
            .ok_or_else(|| SendError::NotClaimable {
                event_id: staged.event_id.clone(),
            })?;
        let message = self.message(&cfg, &row.event_id, row.payload);
        self.send_persisted(&cfg, row.event_id, message).await
    }

    /// Publishes a message whose outbox row this instance has claimed.
    pub(crate) async fn send_persisted(
        &self,
        cfg: &SendConfig,
        event_id: String,
        message: OutgoingMessage,
    ) -> Result<Published> {
        let inner = &self.inner;
        let realtime_batch = cfg.send_mode == SendMode::RealtimeBatch;
        match self
            .publish_with_retries(cfg, &event_id, message, realtime_batch)
            .await
        {
            Ok(attempts) => {
                inner
                    .sent
                    .write((
                        event_id.clone(),
                        i32::try_from(attempts).unwrap_or(i32::MAX),
                    ))
                    .await
                    .map_err(SendError::OutboxWrite)?;
                Ok(Published {
                    event_id,
                    outcome: Outcome::Sent,
                })
            }
            Err(SendError::PublishFailed {
                event_id,
                event_type,
                attempts,
                source,
            }) => {
                let error = source.to_string();
                // realtime_batch: no immediate retry; the row stays pending
                // (claim released) for the batch scheduler.
                let give_up = !realtime_batch;
                inner
                    .outbox
                    .mark_attempt_failed(
                        &event_id,
                        &error,
                        give_up,
                        i32::try_from(attempts).unwrap_or(i32::MAX),
                    )
                    .await?;
                if realtime_batch {
                    tracing::warn!(%event_id, %event_type, error = %error, "publish failed; left pending for the batch scheduler");
                    Ok(Published {
                        event_id,
                        outcome: Outcome::Deferred { error },
                    })
                } else {
                    tracing::error!(%event_id, %event_type, attempts, error = %error, "publish failed; outbox row marked failed");
                    Err(SendError::PublishFailed {
                        event_id,
                        event_type,
                        attempts,
                        source,
                    })
                }
            }
            Err(other) => Err(other),
        }
    }

    /// Publishes with immediate retries (`retry_count` of them, none if `once`).
    async fn publish_with_retries(
        &self,
        cfg: &SendConfig,
        event_id: &str,
        message: OutgoingMessage,
        once: bool,
    ) -> Result<u32> {
        let transport = &self.inner.transport;
        let tries = if once { 1 } else { cfg.retry_count + 1 };
        let mut last: Option<TransportError> = None;
        for attempt in 1..=tries {
            let result = match transport.declare_exchange(&cfg.exchange).await {
                Ok(()) => transport.publish(message.clone()).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(attempt),
                Err(e) => {
                    tracing::debug!(%event_id, event_type = %cfg.event_type, attempt, error = %e, "publish attempt failed");
                    last = Some(e);
                }
            }
        }
        Err(SendError::PublishFailed {
            event_id: event_id.to_string(),
            event_type: cfg.event_type.clone(),
            attempts: tries,
            source: Box::new(last.unwrap_or(TransportError::Closed)),
        })
    }

    pub(crate) fn send_config(&self, event_type: &str) -> Result<SendConfig> {
        let loaded = Arc::clone(&self.inner.config.borrow());
        let cfg = loaded
            .config
            .send(event_type)
            .ok_or_else(|| SendError::UnknownEventType {
                event_type: event_type.to_string(),
            })?;
        if !cfg.enabled {
            return Err(SendError::Disabled {
                event_type: event_type.to_string(),
            });
        }
        Ok(cfg.clone())
    }

    fn pack<T: Serialize + ?Sized>(
        &self,
        cfg: &SendConfig,
        value: &T,
        meta: EventMeta,
    ) -> Result<(String, Vec<u8>)> {
        let body = self.render(cfg, value)?;
        self.pack_body(cfg, body, meta)
    }

    pub(crate) fn render<T: Serialize + ?Sized>(
        &self,
        cfg: &SendConfig,
        value: &T,
    ) -> Result<Body> {
        let event_type = cfg.event_type.as_str();
        let converter = self.converter_for(cfg)?;
        let json = serde_json::to_value(value).map_err(|source| SendError::Serialize {
            event_type: event_type.to_string(),
            source,
        })?;
        let body = converter
            .to_body(&SendContext::new(event_type, &cfg.converter_id), &json)
            .map_err(|source| SendError::Convert {
                event_type: event_type.to_string(),
                source: Box::new(source),
            })?;
        Ok(match body.format {
            BodyFormat::Xml => Body::Xml(body.content),
            BodyFormat::Text => Body::Text(body.content),
        })
    }

    fn pack_body(
        &self,
        cfg: &SendConfig,
        body: Body,
        meta: EventMeta,
    ) -> Result<(String, Vec<u8>)> {
        let inner = &self.inner;
        let event_type = cfg.event_type.as_str();
        let mut builder = Envelope::builder(event_type, inner.options.system_id.clone())
            .compression(cfg.compression)
            .producer_id(
                meta.producer_id
                    .unwrap_or_else(|| inner.options.system_id.clone()),
            );
        if let Some(t) = meta.trace_id {
            builder = builder.trace_id(t);
        }
        if let Some(k) = meta.business_key {
            builder = builder.business_key(k);
        }
        for (k, v) in meta.entries {
            builder = builder.entry(k, v);
        }
        let env = builder.build(body);
        let payload = inner
            .options
            .codec
            .pack(&env)
            .map_err(|source| SendError::Envelope {
                event_type: event_type.to_string(),
                source,
            })?;
        Ok((env.header.event_id.to_string(), payload))
    }

    /// The send converter of a config row, compiled with its rules once and cached.
    fn converter_for(&self, cfg: &SendConfig) -> Result<Arc<dyn SendConverter>> {
        let inner = &self.inner;
        let key = (cfg.converter_id.clone(), cfg.converter_rules.clone());
        if let Some(c) = inner
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Arc::clone(c));
        }
        if inner.converters.send(&cfg.converter_id).is_none()
            && inner.converters.receive(&cfg.converter_id).is_none()
        {
            return Err(SendError::ConverterMissing {
                event_type: cfg.event_type.clone(),
                converter_id: cfg.converter_id.clone(),
            });
        }
        let converter = inner
            .converters
            .send_for(&cfg.converter_id, cfg.converter_rules.as_deref())
            .map_err(|source| SendError::Convert {
                event_type: cfg.event_type.clone(),
                source: Box::new(source),
            })?;
        inner
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&converter));
        Ok(converter)
    }

    pub(crate) fn row(
        &self,
        cfg: &SendConfig,
        event_id: &str,
        payload: Vec<u8>,
        claimed: bool,
    ) -> NewOutboxRow {
        let opts = &self.inner.options;
        NewOutboxRow {
            event_id: event_id.to_string(),
            event_type: cfg.event_type.clone(),
            producer_id: None,
            stream: None,
            epoch: None,
            seq: None,
            payload,
            claim: claimed.then(|| {
                (
                    opts.instance_id.clone(),
                    Utc::now()
                        + chrono::Duration::from_std(opts.lease)
                            .unwrap_or(chrono::Duration::seconds(60)),
                )
            }),
        }
    }

    pub(crate) fn message(
        &self,
        cfg: &SendConfig,
        event_id: &str,
        payload: Vec<u8>,
    ) -> OutgoingMessage {
        // `content-encoding` names a compression; an uncompressed envelope
        // has none.
        let encoding = envelope::detect_compression(&payload)
            .ok()
            .filter(|c| *c != eventyard_core::Compression::None)
            .map(|c| c.as_str().to_string());
        let mut headers = BTreeMap::new();
        if cfg.sequenced {
            // Partitioned receive rows route by producer id (a consistent
            // hash of this header), so every message of one producer reaches
            // one partition queue. Every caller (first send, scheduler,
            // relay, replay) holds only the packed payload: read it back.
            match self.codec().unpack(&payload) {
                Ok(env) => {
                    if let Some(producer) = env.header.producer_id {
                        headers.insert(PRODUCER_HEADER.to_string(), producer);
                    }
                }
                Err(e) => tracing::warn!(event_type = %cfg.event_type, event_id, error = %e,
                    "sequenced event: cannot read the producer id back from the envelope; sent without the producer header"),
            }
        }
        OutgoingMessage {
            exchange: cfg.exchange.clone(),
            routing_key: cfg.routing_key.clone(),
            message_id: event_id.to_string(),
            event_type: cfg.event_type.clone(),
            content_encoding: encoding,
            headers,
            payload,
            order: PublishOrder::Call,
        }
    }
}
