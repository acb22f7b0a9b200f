//! Row validation: raw column values in, a typed row or every problem out.

use std::time::Duration;

use super::model::{ProcessMode, ReceiveConfig, SendConfig, SendMode, MAX_PARTITIONS, MAX_WORKERS};
use super::store::{RawReceiveRow, RawSendRow};
use super::{Catalog, RowError, Schedule, Table};
use crate::Compression;

/// Upper bound for `retry_count`.
const MAX_RETRY_COUNT: i32 = 100;
/// Upper bound for `batch_size`.
const MAX_BATCH_SIZE: i32 = 100_000;
/// Upper bound for `max_attempts`.
const MAX_ATTEMPTS: i32 = 1_000;
/// Upper bound for `backoff_ms` (one day).
const MAX_BACKOFF_MS: i64 = 86_400_000;
/// AMQP short strings (exchange, routing key, queue) are at most 255 bytes.
const AMQP_SHORTSTR: usize = 255;

struct Problems {
    table: Table,
    event_type: String,
    subscriber: Option<String>,
    errors: Vec<RowError>,
}

impl Problems {
    fn new(table: Table, event_type: &str, subscriber: Option<&str>) -> Self {
        Problems {
            table,
            event_type: event_type.to_string(),
            subscriber: subscriber.map(str::to_string),
            errors: Vec::new(),
        }
    }

    fn add(&mut self, column: &'static str, message: impl Into<String>) {
        self.errors.push(RowError {
            table: self.table,
            event_type: self.event_type.clone(),
            subscriber: self.subscriber.clone(),
            column,
            message: message.into(),
        });
    }

    /// Records `Err` as a problem in `column`; `None` if it failed.
    fn check<T>(&mut self, column: &'static str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(column, e);
                None
            }
        }
    }
}

fn non_empty(value: &str, what: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("{what} must not be empty"))
    } else {
        Ok(())
    }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(v: T, lo: T, hi: T) -> Result<T, String> {
    if v < lo || v > hi {
        Err(format!("{v} is out of range; allowed {lo} to {hi}"))
    } else {
        Ok(v)
    }
}

fn shortstr(value: &str) -> Result<(), String> {
    if value.len() > AMQP_SHORTSTR {
        Err(format!(
            "is {} bytes long; AMQP allows at most {AMQP_SHORTSTR}",
            value.len()
        ))
    } else {
        Ok(())
    }
}

fn schedule(p: &mut Problems, text: Option<&str>, required: bool, mode: &str) -> Option<Schedule> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None if required => {
            p.add(
                "batch_cron",
                format!("is required for mode `{mode}` (a cron expression or `@every <interval>`)"),
            );
            None
        }
        None => None,
        Some(t) => p.check("batch_cron", Schedule::parse(t).map_err(|e| e.to_string())),
    }
}

/// Validates one `ey_send_config` row.
///
/// Returns the typed row, or every problem found (each naming its column).
pub fn validate_send_row(
    raw: &RawSendRow,
    catalog: &dyn Catalog,
) -> Result<SendConfig, Vec<RowError>> {
    let mut p = Problems::new(Table::Send, &raw.event_type, None);
    p.check("event_type", non_empty(&raw.event_type, "the event type"));
    let mode = p.check("send_mode", raw.send_mode.parse::<SendMode>());
    if p.check(
        "converter_id",
        non_empty(&raw.converter_id, "the converter id"),
    )
    .is_some()
        && !catalog.has_send_converter(&raw.converter_id)
    {
        p.add(
            "converter_id",
            format!(
                "unknown send converter `{}`: it is not built in and no running daemon has registered it",
                raw.converter_id
            ),
        );
    } else if let Err(e) =
        catalog.check_send_rules(&raw.converter_id, raw.converter_rules.as_deref())
    {
        p.add("converter_rules", e);
    }
    if let Some(m) = mode {
        if !raw.persist && m != SendMode::Realtime {
            p.add(
                "persist",
                format!("may be false only for send_mode `realtime`, not `{m}` (batch modes send from the outbox)"),
            );
        }
    }
    if raw.sequenced && !raw.persist {
        p.add(
            "persist",
            "must be true for a sequenced event type (gap resync reads missing events from the outbox)",
        );
    }
    let retry_count = p.check("retry_count", in_range(raw.retry_count, 0, MAX_RETRY_COUNT));
    let batch_size = p.check("batch_size", in_range(raw.batch_size, 1, MAX_BATCH_SIZE));
    let batch_schedule = schedule(
        &mut p,
        raw.batch_cron.as_deref(),
        mode.is_some_and(SendMode::uses_batch),
        mode.map_or("", SendMode::as_str),
    );
    let compression = p.check(
        "compression",
        raw.compression
            .parse::<Compression>()
            .map_err(|e| e.to_string()),
    );
    p.check("exchange", non_empty(&raw.exchange, "the exchange"));
    p.check("exchange", shortstr(&raw.exchange));
    let routing_key = raw
        .routing_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_else(|| raw.event_type.clone());
    p.check("routing_key", shortstr(&routing_key));

    match (mode, retry_count, batch_size, compression) {
        (Some(send_mode), Some(retry_count), Some(batch_size), Some(compression))
            if p.errors.is_empty() =>
        {
            Ok(SendConfig {
                event_type: raw.event_type.clone(),
                enabled: raw.enabled,
                send_mode,
                converter_id: raw.converter_id.clone(),
                converter_rules: raw.converter_rules.clone().filter(|r| !r.trim().is_empty()),
                // Forced on for the batch modes (and rejected above if off).
                persist: raw.persist || send_mode != SendMode::Realtime,
                retry_count: retry_count.unsigned_abs(),
                batch_schedule,
                batch_size: batch_size.unsigned_abs(),
                compression,
                exchange: raw.exchange.clone(),
                routing_key,
                sequenced: raw.sequenced,
                updated_at: raw.updated_at,
            })
        }
        _ => Err(p.errors),
    }
}

/// Validates one `ey_receive_config` row.
///
/// Returns the typed row, or every problem found (each naming its column).
pub fn validate_receive_row(
    raw: &RawReceiveRow,
    catalog: &dyn Catalog,
) -> Result<ReceiveConfig, Vec<RowError>> {
    let mut p = Problems::new(Table::Receive, &raw.event_type, Some(&raw.subscriber));
    p.check("event_type", non_empty(&raw.event_type, "the event type"));
    p.check("subscriber", non_empty(&raw.subscriber, "the subscriber"));
    let mode = p.check("process_mode", raw.process_mode.parse::<ProcessMode>());
    let handler_id = raw.handler_id.clone().filter(|h| !h.trim().is_empty());
    match (&handler_id, mode) {
        (None, Some(m)) if m != ProcessMode::None => {
            p.add("handler_id", format!("is required for process_mode `{m}`"))
        }
        (Some(h), _) if !catalog.has_handler(h) => p.add(
            "handler_id",
            format!(
                "unknown handler `{h}`: it is not built in and no running daemon has registered it"
            ),
        ),
        _ => {}
    }
    if p.check(
        "converter_id",
        non_empty(&raw.converter_id, "the converter id"),
    )
    .is_some()
    {
        if !catalog.has_receive_converter(&raw.converter_id) {
            p.add(
                "converter_id",
                format!(
                    "unknown receive converter `{}`: it is not built in and no running daemon has registered it",
                    raw.converter_id
                ),
            );
        } else if let Err(e) =
            catalog.check_rules(&raw.converter_id, raw.converter_rules.as_deref())
        {
            p.add("converter_rules", e);
        }
    }
    let workers = p.check("workers", in_range(raw.workers, 1, MAX_WORKERS as i32));
    let batch_schedule = schedule(
        &mut p,
        raw.batch_cron.as_deref(),
        mode == Some(ProcessMode::Batch),
        mode.map_or("", ProcessMode::as_str),
    );
    let max_attempts = p.check("max_attempts", in_range(raw.max_attempts, 1, MAX_ATTEMPTS));
    let backoff_ms = p.check("backoff_ms", in_range(raw.backoff_ms, 0, MAX_BACKOFF_MS));
    let partitions = p.check(
        "partitions",
        in_range(raw.partitions, 1, MAX_PARTITIONS as i32),
    );
    if raw.partitions > 1 && !raw.sequenced {
        p.add(
            "partitions",
            "must be 1 unless `sequenced` is true (only sequenced rows are partitioned by producer)",
        );
    }
    if raw.sequenced && mode.is_some_and(|m| m != ProcessMode::Realtime) {
        p.add(
            "process_mode",
            "must be `realtime` for a sequenced event type (the tracker applies events in order as they arrive)",
        );
    }
    p.check("exchange", non_empty(&raw.exchange, "the exchange"));
    p.check("exchange", shortstr(&raw.exchange));
    let binding_key = raw
        .binding_key
        .clone()
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_else(|| raw.event_type.clone());
    p.check("binding_key", shortstr(&binding_key));
    let queue = raw
        .queue
        .clone()
        .filter(|q| !q.trim().is_empty())
        .unwrap_or_else(|| format!("ey.{}.{}", raw.subscriber, raw.event_type));
    p.check("queue", shortstr(&queue));

    match (mode, workers, max_attempts, backoff_ms, partitions) {
        (
            Some(process_mode),
            Some(workers),
            Some(max_attempts),
            Some(backoff_ms),
            Some(partitions),
        ) if p.errors.is_empty() => Ok(ReceiveConfig {
            event_type: raw.event_type.clone(),
            subscriber: raw.subscriber.clone(),
            enabled: raw.enabled,
            exchange: raw.exchange.clone(),
            binding_key,
            process_mode,
            handler_id,
            converter_id: raw.converter_id.clone(),
            converter_rules: raw.converter_rules.clone(),
            workers: workers.unsigned_abs(),
            batch_schedule,
            max_attempts: max_attempts.unsigned_abs(),
            backoff: Duration::from_millis(backoff_ms.unsigned_abs()),
            queue,
            sequenced: raw.sequenced,
            partitions: partitions.unsigned_abs(),
            updated_at: raw.updated_at,
        }),
        _ => Err(p.errors),
    }
}
