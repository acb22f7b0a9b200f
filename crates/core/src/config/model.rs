//! Typed, validated config rows.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Schedule;
use crate::Compression;

/// The most handler workers one event type may have (`ey_receive_config.workers`).
pub const MAX_WORKERS: u32 = 256;

/// The most partitions one sequenced receive row may have
/// (`ey_receive_config.partitions`).
pub const MAX_PARTITIONS: u32 = 256;

/// How events of one type are sent (`ey_send_config.send_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Publish at once; retry immediately up to `retry_count`.
    Realtime,
    /// Store as pending; the batch scheduler sends on `batch_cron`.
    Batch,
    /// Store and publish at once; on failure leave the row for the batch scheduler.
    RealtimeBatch,
}

impl SendMode {
    /// The value as stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            SendMode::Realtime => "realtime",
            SendMode::Batch => "batch",
            SendMode::RealtimeBatch => "realtime_batch",
        }
    }

    /// Whether the batch scheduler serves this mode (so `batch_cron` is required).
    pub fn uses_batch(self) -> bool {
        matches!(self, SendMode::Batch | SendMode::RealtimeBatch)
    }
}

impl FromStr for SendMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "realtime" => Ok(SendMode::Realtime),
            "batch" => Ok(SendMode::Batch),
            "realtime_batch" => Ok(SendMode::RealtimeBatch),
            other => Err(format!(
                "unknown send mode `{other}` (expected realtime, batch or realtime_batch)"
            )),
        }
    }
}

impl fmt::Display for SendMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How received events of one type are processed (`ey_receive_config.process_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessMode {
    /// The handler runs at once on the event type's worker pool.
    Realtime,
    /// The batch handler runs over stored events on `batch_cron`.
    Batch,
    /// Store only.
    None,
}

impl ProcessMode {
    /// The value as stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessMode::Realtime => "realtime",
            ProcessMode::Batch => "batch",
            ProcessMode::None => "none",
        }
    }
}

impl FromStr for ProcessMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "realtime" => Ok(ProcessMode::Realtime),
            "batch" => Ok(ProcessMode::Batch),
            "none" => Ok(ProcessMode::None),
            other => Err(format!(
                "unknown process mode `{other}` (expected realtime, batch or none)"
            )),
        }
    }
}

impl fmt::Display for ProcessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated `ey_send_config` row.
#[derive(Debug, Clone, PartialEq)]
pub struct SendConfig {
    /// The event type code, e.g. `ACCT.OPENED`.
    pub event_type: String,
    /// Disabled event types are refused by the publisher.
    pub enabled: bool,
    /// How events are sent.
    pub send_mode: SendMode,
    /// The send converter (value → XML body).
    pub converter_id: String,
    /// Rules for the send converter (delimited / fixed-width layouts).
    pub converter_rules: Option<String>,
    /// Whether events are written to `ey_outbox` (always true unless `realtime`).
    pub persist: bool,
    /// Publish retries after the first attempt.
    pub retry_count: u32,
    /// The batch schedule (required for `batch` and `realtime_batch`).
    pub batch_schedule: Option<Schedule>,
    /// Rows per batch chunk.
    pub batch_size: u32,
    /// Compression of the packed envelope.
    pub compression: Compression,
    /// The AMQP exchange to publish to.
    pub exchange: String,
    /// The routing key (defaults to the event type).
    pub routing_key: String,
    /// Whether events carry per-producer sequence numbers.
    pub sequenced: bool,
    /// When the row last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The key of a receive row: (event type, subscriber system).
pub type ReceiveKey = (String, String);

/// A validated `ey_receive_config` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiveConfig {
    /// The event type code.
    pub event_type: String,
    /// The subscribing system id.
    pub subscriber: String,
    /// Disabled rows have no listener.
    pub enabled: bool,
    /// The exchange the queue is bound to.
    pub exchange: String,
    /// The binding key (defaults to the event type).
    pub binding_key: String,
    /// How received events are processed.
    pub process_mode: ProcessMode,
    /// The handler (required unless `process_mode` is `none`).
    pub handler_id: Option<String>,
    /// The receive converter (XML body → fields).
    pub converter_id: String,
    /// The converter's extraction rules (see `docs/converters.md`).
    pub converter_rules: Option<String>,
    /// Concurrent handler calls for this event type.
    pub workers: u32,
    /// The batch schedule (required for `batch`).
    pub batch_schedule: Option<Schedule>,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
    /// The first retry delay; doubles per attempt.
    pub backoff: Duration,
    /// The durable queue name (defaults to `ey.<subscriber>.<event_type>`).
    pub queue: String,
    /// Whether the stream is sequenced (gap detection on).
    pub sequenced: bool,
    /// How many partitions a sequenced row's messages are spread over, by
    /// producer id (1..=[`MAX_PARTITIONS`]; 1 = one queue). Always 1 for a
    /// row that is not sequenced.
    pub partitions: u32,
    /// When the row last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A consistent set of valid config rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Send rows by event type.
    pub send: BTreeMap<String, SendConfig>,
    /// Receive rows by (event type, subscriber).
    pub receive: BTreeMap<ReceiveKey, ReceiveConfig>,
}

impl Config {
    /// The send row of an event type, if valid and present (enabled or not).
    pub fn send(&self, event_type: &str) -> Option<&SendConfig> {
        self.send.get(event_type)
    }

    /// The receive row of (event type, subscriber).
    pub fn receive(&self, event_type: &str, subscriber: &str) -> Option<&ReceiveConfig> {
        self.receive
            .get(&(event_type.to_string(), subscriber.to_string()))
    }

    /// The receive rows of one subscriber.
    pub fn receive_for<'a>(
        &'a self,
        subscriber: &'a str,
    ) -> impl Iterator<Item = &'a ReceiveConfig> + 'a {
        self.receive
            .values()
            .filter(move |r| r.subscriber == subscriber)
    }
}
