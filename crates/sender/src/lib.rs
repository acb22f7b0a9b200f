//! # eventyard-sender
//!
//! The send side of eventyard: the [`Publisher`] API, the transactional
//! outbox, the [`BatchScheduler`] and the relay. What happens to an event is
//! decided by its `ey_send_config` row (SPEC §3):
//!
//! | `send_mode` | on publish | on failure |
//! |---|---|---|
//! | `realtime` | stored (if `persist`), published at once with a confirm | retried at once up to `retry_count`, then `failed` |
//! | `batch` | stored `pending` | — the scheduler sends on `batch_cron`, retrying up to `retry_count` runs |
//! | `realtime_batch` | stored, published at once | no immediate retry: left `pending` for the scheduler |
//!
//! A row is `sent` only on the broker's confirm of a routed message. Rows
//! that stay `pending` (a process died between commit and publish) are
//! resent by the relay after a grace period.
//!
//! ```no_run
//! # async fn demo(db: eventyard_core::db::Db,
//! #   config: tokio::sync::watch::Receiver<std::sync::Arc<eventyard_core::config::Loaded>>,
//! #   transport: std::sync::Arc<dyn eventyard_transport::Transport>)
//! #   -> Result<(), eventyard_sender::SendError> {
//! use std::sync::Arc;
//! use eventyard_sender::{Outbox, Publisher, PublisherOptions};
//!
//! let converters = Arc::new(eventyard_converter::Registry::with_builtins());
//! let publisher = Publisher::new(Outbox::new(db), config, converters, transport,
//!                                PublisherOptions::new("CORE"));
//! #[derive(serde::Serialize)]
//! struct Opened { account: String }
//! let published = publisher.publish("ACCT.OPENED", &Opened { account: "1001".into() }).await?;
//! println!("{} {:?}", published.event_id, published.outcome);
//! # Ok(()) }
//! ```

mod coalesce;
mod error;
mod outbox;
mod publisher;
mod resync;
mod scheduler;
mod sequence;

pub use error::{Result, SendError};
pub use outbox::{
    ClaimRequest, NewOutboxRow, Outbox, OutboxConn, OutboxFilter, OutboxRow, OutboxStatus,
};
pub use publisher::{EventMeta, Outcome, Published, Publisher, PublisherOptions, Staged};
pub use resync::{ResponderOptions, ResyncResponder, RunningResponder};
pub use scheduler::{BatchPlan, BatchReport, BatchScheduler, Clock, SystemClock};
pub use sequence::{FreshSnapshot, SeqStamp, SnapshotConn, SnapshotProvider};
