//! [`ReceiverOptions`]: who the receiver is and its limits.

use std::time::Duration;

use eventyard_core::envelope::{Codec, Limits};

/// Settings of a [`Receiver`](crate::Receiver), built with `self`-taking setters.
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    pub(crate) subscriber: String,
    pub(crate) instance_id: String,
    pub(crate) backlog: usize,
    pub(crate) handler_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) retry_poll_interval: Duration,
    pub(crate) prefetch: u16,
    pub(crate) ack_batch: usize,
    pub(crate) ack_linger: Duration,
    pub(crate) batch_size: u32,
    pub(crate) realtime_group: usize,
    pub(crate) inline_handling: bool,
    pub(crate) shutdown_grace: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) codec: Codec,
    pub(crate) sequencing: crate::sequenced::SeqOptions,
}

impl ReceiverOptions {
    /// Options for the subscriber system `subscriber`: the receiver serves
    /// the `ey_receive_config` rows whose `subscriber` column is this id.
    ///
    /// Defaults: a random instance id, a backlog bound of 10,000 events per
    /// event type, a 30 s handler timeout, 60 s claim leases, retries polled
    /// every second, prefetch 1,000, stores of up to 256 deliveries acked
    /// together after at most 1 ms of waiting for more, batches of 500,
    /// realtime groups of up to 256 queued events per transaction, a
    /// backlog of quick handlers handled in the storing transaction,
    /// 30 s to drain handlers on shutdown, backoff capped at one hour, and
    /// the default envelope [`Limits`].
    pub fn new(subscriber: impl Into<String>) -> Self {
        ReceiverOptions {
            subscriber: subscriber.into(),
            instance_id: format!("receiver-{}", uuid::Uuid::new_v4().simple()),
            backlog: 10_000,
            handler_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            retry_poll_interval: Duration::from_secs(1),
            prefetch: 1000,
            ack_batch: 256,
            ack_linger: Duration::from_millis(1),
            batch_size: 500,
            realtime_group: 256,
            inline_handling: true,
            shutdown_grace: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
            codec: Codec::new(Limits::default()),
            sequencing: crate::sequenced::SeqOptions::default(),
        }
    }

    /// This instance's id in claims (`ey_inbox.claimed_by`). Must be unique
    /// among running instances; keeping it stable across restarts of one
    /// instance lets a restart take its claims back at once instead of
    /// waiting for their leases to expire.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Settings of sequenced receive rows: tracker parameters, the resync
    /// source, snapshot handlers ([`SeqOptions`](crate::sequenced::SeqOptions)).
    pub fn sequencing(mut self, seq: crate::sequenced::SeqOptions) -> Self {
        self.sequencing = seq;
        self
    }

    /// How many stored-but-unprocessed events of one type this instance
    /// holds before it stops consuming that type's queue (default 10,000).
    /// For `batch` types the bound applies to the type's `received` rows.
    pub fn backlog(mut self, events: usize) -> Self {
        self.backlog = events.max(1);
        self
    }

    /// The handler timeout for rows without `handler_timeout_ms` (default 30 s).
    pub fn handler_timeout(mut self, d: Duration) -> Self {
        self.handler_timeout = d.max(Duration::from_millis(1));
        self
    }

    /// How long a claim on an inbox row lasts beyond the handler timeout
    /// (default 60 s); rows of a vanished instance are taken over after it.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d.max(Duration::from_millis(10));
        self
    }

    /// How often due retries (and rows left by a vanished instance, and
    /// replayed rows) are looked for (default 1 s).
    pub fn retry_poll_interval(mut self, d: Duration) -> Self {
        self.retry_poll_interval = d.max(Duration::from_millis(5));
        self
    }

    /// The broker prefetch per queue: how many deliveries the broker sends
    /// beyond those acked (default 1,000). They wait in this process, so a
    /// queue holds up to this many messages in memory; lower it where
    /// messages are large.
    ///
    /// It should stay well above [`ack_batch`](Self::ack_batch): while a
    /// listener stores one micro-batch the broker can only send what the
    /// prefetch leaves, and the next micro-batch fills from that. At 500 (a
    /// micro-batch of 256 then leaves 244) a listener waited for deliveries
    /// after each ack; 1,000 stored about a tenth more events per second
    /// (`docs/performance.md`).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.prefetch = n.max(1);
        self
    }

    /// At most this many deliveries are stored in one statement and acked
    /// together (default 256).
    pub fn ack_batch(mut self, n: usize) -> Self {
        self.ack_batch = n.max(1);
        self
    }

    /// How long a listener waits, from the first delivery of a store, for more
    /// deliveries to join it (default 1 ms; what is already buffered always joins).
    pub fn ack_linger(mut self, d: Duration) -> Self {
        self.ack_linger = d;
        self
    }

    /// Events per batch-handler call and per claim of a batch run (default 500).
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// At most this many events of one `realtime` type, already queued in
    /// this instance, that one worker processes in one database transaction
    /// (default 256): one claim check, each handler call in its own
    /// savepoint, one `done` update, one commit. A worker never waits for a
    /// group to fill; the handlers of a group run one after another, so
    /// `workers` still bounds the concurrent handler calls. `1` gives one
    /// transaction per event; at most 1,000.
    pub fn realtime_group(mut self, n: usize) -> Self {
        self.realtime_group = n.clamp(1, 1000);
        self
    }

    /// Whether a `realtime` type's handlers may be called in the
    /// transaction that stores its micro-batch, before the ack (default
    /// `true`; PostgreSQL and SQLite). This happens only for a backlog (a
    /// micro-batch holding at least a quarter of [`ack_batch`](Self::ack_batch)
    /// events of the type), while the type's handler calls take under a
    /// millisecond on average, and when one of its `workers` is free
    /// (the store takes that worker); otherwise, or when the transaction
    /// cannot be completed, the micro-batch is stored, acked and handed to
    /// the pool as usual. Each event's row is then written once, already
    /// `done`, instead of twice. `false` always uses the pool.
    pub fn inline_handling(mut self, on: bool) -> Self {
        self.inline_handling = on;
        self
    }

    /// How long shutdown waits for running handlers (default 30 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.shutdown_grace = d;
        self
    }

    /// The longest retry delay the exponential backoff reaches (default 1 h).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// The envelope codec (and so the size and depth limits) for unpacking.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The subscriber system id.
    pub fn get_subscriber(&self) -> &str {
        &self.subscriber
    }

    /// The instance id.
    pub fn get_instance_id(&self) -> &str {
        &self.instance_id
    }
}
