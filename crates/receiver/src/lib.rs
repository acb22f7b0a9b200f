//! # eventyard-receiver
//!
//! The receive side of eventyard (SPEC §4): listeners, the inbox, handler
//! pools, batch processing, retries and dead letters. What happens to a
//! received event is decided by its `ey_receive_config` row:
//!
//! | `process_mode` | after the event is stored (`received`) and acked |
//! |---|---|
//! | `realtime` | its handler runs at once on the type's pool of `workers` |
//! | `batch` | the batch handler runs over stored events on `batch_cron` |
//! | `none` | nothing: the row is `stored` |
//!
//! - **Handlers** implement [`Handler`] (or [`BatchHandler`]) and are
//!   registered by id in a [`HandlerRegistry`]; see [`handler`] for the
//!   tutorial, the exactly-once contract and the pitfalls. `log` and `sql`
//!   are built in.
//! - **[`Receiver`]** runs everything and follows config changes live;
//!   [`ReceiverHandle::shutdown`] stops it gracefully.
//! - **[`Inbox`]** lists, shows and replays inbox rows (`eventyard events`).
//!
//! Deliveries are stored in micro-batches and acknowledged with one
//! `ack_multiple` after the insert commits — never before. A duplicate event
//! id is acknowledged and not processed again; a message whose envelope
//! cannot be read is stored as a `dead` row with the error, keyed by its
//! message id or the SHA-256 of its bytes, and never blocks the queue.
//! Handler failures retry with exponential backoff (`backoff_ms`, doubled
//! per attempt) up to `max_attempts`, then the row is `dead` and replayable.
//!
//! The operator's guide is `docs/receiving.md`.

#![forbid(unsafe_code)]

#[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
compile_error!("eventyard-receiver needs at least one database feature: postgres, mysql or sqlite");

mod error;
pub mod handler;
mod inbox;
pub mod partition;
mod runtime;
pub mod sequenced;
mod stats;

pub use error::{ReceiveError, Result};
pub use handler::{
    BatchHandler, Handler, HandlerContext, HandlerKind, HandlerOutcome, HandlerRegistry,
    IntoOutcome, LogHandler, Message, SqlHandler, Tx,
};
pub use inbox::{Inbox, InboxFilter, InboxRow, InboxStatus, ReplayRequest};
pub use runtime::{Receiver, ReceiverHandle, ReceiverOptions};
pub use stats::{Stats, TypeStats, LATENCY_BUCKETS};
