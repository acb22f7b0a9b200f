//! The handler API: what application code implements to process received events.
//!
//! # Writing a handler
//!
//! A [`Handler`] gets every received event of the event types whose
//! `ey_receive_config.handler_id` names it, already unpacked and converted
//! into [`Message::fields`], and answers with a [`HandlerOutcome`]:
//!
//! ```
//! use async_trait::async_trait;
//! use eventyard_receiver::{Handler, HandlerContext, HandlerOutcome, Message};
//!
//! #[derive(Debug)]
//! struct OpenAccount;
//!
//! #[async_trait]
//! impl Handler for OpenAccount {
//!     async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
//!         let Some(account) = msg.fields.get_str("account") else {
//!             // Retrying will not make the field appear: dead-letter it at once.
//!             return HandlerOutcome::fail("the body has no `account` field");
//!         };
//!         // Write in the context's transaction: it commits together with the
//!         // inbox row turning `done`, or not at all.
//!         let written = ctx
//!             .execute("INSERT INTO accounts (id) VALUES ($1)", &[account])
//!             .await;
//!         match written {
//!             Ok(_) => HandlerOutcome::done(format!("account {account} opened")),
//!             // A transient problem: try again later, with the event type's backoff.
//!             Err(e) => HandlerOutcome::retry(e.to_string()),
//!         }
//!     }
//! }
//! ```
//!
//! Register it under the id the config rows use, then start the
//! [`Receiver`](crate::Receiver) with the registry:
//!
//! ```
//! # use std::sync::Arc;
//! # use eventyard_receiver::{HandlerRegistry, HandlerOutcome, Message};
//! # #[derive(Debug)] struct OpenAccount;
//! # #[async_trait::async_trait] impl eventyard_receiver::Handler for OpenAccount {
//! #   async fn handle(&self, _: &Message, _: &mut eventyard_receiver::HandlerContext<'_>) -> HandlerOutcome { HandlerOutcome::done("") } }
//! let mut handlers = HandlerRegistry::new(); // `log` and `sql` are built in
//! handlers.register("open_account", Arc::new(OpenAccount));
//! // A plain async closure works too; it gets the message by value.
//! handlers.register_fn("audit", |msg: Message| async move {
//!     println!("{} {}", msg.event_type, msg.event_id);
//!     HandlerOutcome::done("audited")
//! });
//! assert!(handlers.contains("open_account") && handlers.contains("log"));
//! ```
//!
//! # Exactly-once effect
//!
//! Delivery is at least once: the broker may hand the same event over twice,
//! and a crash can interrupt a handler half-way. eventyard makes the *effect*
//! exactly once per event id when the handler writes its effect through
//! [`HandlerContext`]: the context holds the open database transaction in
//! which the inbox row is marked `done`. The handler's writes and `done`
//! commit together; if the handler returns [`HandlerOutcome::Retry`] or
//! [`HandlerOutcome::Fail`], panics or times out, the transaction rolls back
//! and none of its writes remain. A duplicate delivery finds the row already
//! stored and is not handed to the handler again.
//!
//! # Pitfalls
//!
//! Writing through another connection loses the guarantee:
//!
//! ```text
//! // wrong: commits on its own, even if the event is later retried
//! sqlx::query("INSERT …").execute(&my_pool).await?;
//! ```
//!
//! Use `ctx.execute(…)`, or the backend connection (`ctx.postgres()`,
//! `ctx.mysql()`, `ctx.sqlite()`) for anything sqlx can do. Side effects
//! outside the database (an HTTP call, an email) cannot be rolled back: make
//! them idempotent by the event id.
//!
//! Sleeping in a handler to "retry later" holds a worker and the transaction:
//!
//! ```text
//! tokio::time::sleep(Duration::from_secs(30)).await;   // wrong
//! ```
//!
//! Return [`HandlerOutcome::retry_after`] instead: the row is parked as
//! `retrying` with `next_attempt_at`, the worker moves on to the next event.
//!
//! A handler that takes longer than its timeout (`handler_timeout_ms` of the
//! row, else the receiver's default) is abandoned, its transaction rolled
//! back, and the attempt counts as failed; a panic is caught and counted the
//! same way.
//!
//! A handler that never writes in the transaction (it calls a service,
//! logs, updates memory) can say so by returning `false` from
//! [`Handler::uses_transaction`]: the realtime pool then skips the savepoint
//! it would otherwise set around each call of a group, one database round
//! trip per event. Plain functions registered with
//! [`HandlerRegistry::register_fn`] do this already. Do not answer `false`
//! and write anyway: should such a call fail, its whole group is run again.
//!
//! # Batch handlers
//!
//! Event types with `process_mode = 'batch'` are processed on their
//! `batch_cron`. A [`BatchHandler`] gets the stored events of a run in
//! chunks and answers with one outcome per event, in order. A plain
//! [`Handler`] named by a batch row is called once per event instead.

mod builtin;
mod context;
mod registry;
mod sql;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use eventyard_converter::Fields;
use eventyard_core::envelope::{Body, Common, Header};

pub use builtin::{LogHandler, SqlHandler};
pub use context::{HandlerContext, Tx};
pub use registry::{BoxHandlerFuture, HandlerKind, HandlerRegistry, IntoOutcome};
pub use sql::{NamedStatement, SqlTemplate, SqlTemplateError};

/// One received event as a handler sees it.
#[derive(Debug, Clone)]
pub struct Message {
    /// The event id (unique per subscriber; the inbox key).
    pub event_id: String,
    /// The event type code.
    pub event_type: String,
    /// The subscriber system this receiver runs as.
    pub subscriber: String,
    /// The id of the event's `ey_inbox` row. When the handler is called in
    /// the transaction that stores the event
    /// ([`ReceiverOptions::inline_handling`](crate::ReceiverOptions::inline_handling)),
    /// the row is written with this id after the handler returns, in that
    /// same transaction: the id is final, but the row cannot be read yet.
    pub inbox_id: i64,
    /// The envelope header (publisher, producer, sequence, created time, …).
    pub header: Header,
    /// The envelope's common section (trace id, business key, free entries).
    pub common: Common,
    /// The body converted by the event type's receive converter.
    pub fields: Fields,
    /// The raw body, as it came in the envelope.
    pub body: Body,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

/// What a handler decided about one event.
///
/// | outcome | inbox row | the handler's writes in the context |
/// |---|---|---|
/// | `Done` | `done`, `result` = the text | committed with `done` |
/// | `Retry` | `retrying` with `next_attempt_at`, or `dead` after `max_attempts` | rolled back |
/// | `Fail` | `dead` at once | rolled back |
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum HandlerOutcome {
    /// Processed; the text is stored in `ey_inbox.result`.
    Done {
        /// A short result for operators (may be empty).
        result: String,
    },
    /// Failed for now; try again later.
    Retry {
        /// The delay before the next attempt; `None` uses the event type's
        /// exponential backoff (`backoff_ms`, doubled per attempt).
        after: Option<Duration>,
        /// Why, stored in `ey_inbox.result`.
        reason: String,
    },
    /// Failed for good: the event is dead-lettered (`dead`) without further
    /// attempts. It stays visible and can be replayed.
    Fail {
        /// Why, stored in `ey_inbox.result`.
        reason: String,
    },
}

impl HandlerOutcome {
    /// [`HandlerOutcome::Done`] with a result text.
    pub fn done(result: impl Into<String>) -> Self {
        HandlerOutcome::Done {
            result: result.into(),
        }
    }

    /// [`HandlerOutcome::Retry`] after the event type's backoff.
    pub fn retry(reason: impl Into<String>) -> Self {
        HandlerOutcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    /// [`HandlerOutcome::Retry`] after a chosen delay.
    pub fn retry_after(after: Duration, reason: impl Into<String>) -> Self {
        HandlerOutcome::Retry {
            after: Some(after),
            reason: reason.into(),
        }
    }

    /// [`HandlerOutcome::Fail`]: dead-letter the event now.
    pub fn fail(reason: impl Into<String>) -> Self {
        HandlerOutcome::Fail {
            reason: reason.into(),
        }
    }

    /// Whether this is `Done`.
    pub fn is_done(&self) -> bool {
        matches!(self, HandlerOutcome::Done { .. })
    }

    /// The result or reason text.
    pub fn text(&self) -> &str {
        match self {
            HandlerOutcome::Done { result } => result,
            HandlerOutcome::Retry { reason, .. } | HandlerOutcome::Fail { reason } => reason,
        }
    }
}

impl fmt::Display for HandlerOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandlerOutcome::Done { result } => write!(f, "done: {result}"),
            HandlerOutcome::Retry { after, reason } => match after {
                Some(d) => write!(f, "retry after {d:?}: {reason}"),
                None => write!(f, "retry: {reason}"),
            },
            HandlerOutcome::Fail { reason } => write!(f, "fail: {reason}"),
        }
    }
}

/// Application code invoked for received events (see the [module docs](self)).
///
/// Object safe: handlers live in a [`HandlerRegistry`] as `Arc<dyn Handler>`
/// and may be called from many workers at once.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes one event. Write the effect through `ctx` so it commits
    /// atomically with the inbox row's `done`.
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome;

    /// Whether this handler writes through the context's transaction
    /// (default `true`). Answer `false` for a handler that never touches
    /// it (it calls a service, logs, updates memory): the realtime pool then
    /// runs a group of such calls without a savepoint around each, which
    /// saves a database round trip per event. If a handler that answered
    /// `false` touches the transaction anyway and then fails, the pool
    /// abandons the group's transaction and runs the group's other events
    /// again, so nothing it wrote survives; their handlers are called twice.
    fn uses_transaction(&self) -> bool {
        true
    }
}

/// Processes the stored events of a `batch` event type on its schedule.
///
/// Called with up to the receiver's batch size of events at a time, in
/// inbox order. Returns one outcome per event, in the same order (a missing
/// outcome counts as a retry). All writes made through `ctx` commit in one
/// transaction together with the `done` rows; they are rolled back only if
/// the whole call panics or times out. So a batch handler must not write
/// anything for an event it answers with `Retry` or `Fail`.
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Processes a chunk of events.
    async fn handle_batch(
        &self,
        msgs: &[Message],
        ctx: &mut HandlerContext<'_>,
    ) -> Vec<HandlerOutcome>;
}
