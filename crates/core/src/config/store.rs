//! Loading config rows from the database.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::model::Config;
use super::validate::{validate_receive_row, validate_send_row};
use super::{Catalog, RowError};
use crate::db::{Backend, Db};
use crate::{with_pool, Result};

/// An `ey_send_config` row as stored, before validation.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct RawSendRow {
    /// `event_type` (key).
    pub event_type: String,
    /// `enabled`.
    pub enabled: bool,
    /// `send_mode`: `realtime`, `batch` or `realtime_batch`.
    pub send_mode: String,
    /// `converter_id`.
    pub converter_id: String,
    /// `converter_rules` (for delimited / fixed-width send converters).
    #[serde(default)]
    pub converter_rules: Option<String>,
    /// `persist`.
    pub persist: bool,
    /// `retry_count`.
    pub retry_count: i32,
    /// `batch_cron`.
    pub batch_cron: Option<String>,
    /// `batch_size`.
    pub batch_size: i32,
    /// `compression`: `gzip`, `deflate` or `none`.
    pub compression: String,
    /// `exchange`.
    pub exchange: String,
    /// `routing_key` (empty or NULL: the event type).
    pub routing_key: Option<String>,
    /// `sequenced`.
    pub sequenced: bool,
    /// `updated_at` (set by the database).
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl RawSendRow {
    /// A row with the schema's defaults: enabled, `realtime`, converter `xml`,
    /// persisted, 3 retries, batches of 500, gzip, exchange `eventyard`.
    pub fn new(event_type: impl Into<String>) -> Self {
        RawSendRow {
            event_type: event_type.into(),
            enabled: true,
            send_mode: "realtime".into(),
            converter_id: "xml".into(),
            converter_rules: None,
            persist: true,
            retry_count: 3,
            batch_cron: None,
            batch_size: 500,
            compression: "gzip".into(),
            exchange: "eventyard".into(),
            routing_key: None,
            sequenced: false,
            updated_at: None,
        }
    }
}

/// An `ey_receive_config` row as stored, before validation.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct RawReceiveRow {
    /// `event_type` (key, with `subscriber`).
    pub event_type: String,
    /// `subscriber` (key, with `event_type`).
    pub subscriber: String,
    /// `enabled`.
    pub enabled: bool,
    /// `exchange`.
    pub exchange: String,
    /// `binding_key` (empty or NULL: the event type).
    pub binding_key: Option<String>,
    /// `process_mode`: `realtime`, `batch` or `none`.
    pub process_mode: String,
    /// `handler_id`.
    pub handler_id: Option<String>,
    /// `converter_id`.
    pub converter_id: String,
    /// `converter_rules`.
    pub converter_rules: Option<String>,
    /// `workers`.
    pub workers: i32,
    /// `batch_cron`.
    pub batch_cron: Option<String>,
    /// `max_attempts`.
    pub max_attempts: i32,
    /// `backoff_ms`.
    pub backoff_ms: i64,
    /// `queue` (empty or NULL: `ey.<subscriber>.<event_type>`).
    pub queue: Option<String>,
    /// `sequenced`.
    pub sequenced: bool,
    /// `partitions` (sequenced rows: queues the producers are spread over).
    #[serde(default = "one_partition")]
    pub partitions: i32,
    /// `updated_at` (set by the database).
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

fn one_partition() -> i32 {
    1
}

impl RawReceiveRow {
    /// A row with the schema's defaults: enabled, `realtime`, converter `xml`,
    /// 4 workers, 5 attempts, 1 s backoff, exchange `eventyard`.
    pub fn new(event_type: impl Into<String>, subscriber: impl Into<String>) -> Self {
        RawReceiveRow {
            event_type: event_type.into(),
            subscriber: subscriber.into(),
            enabled: true,
            exchange: "eventyard".into(),
            binding_key: None,
            process_mode: "realtime".into(),
            handler_id: None,
            converter_id: "xml".into(),
            converter_rules: None,
            workers: 4,
            batch_cron: None,
            max_attempts: 5,
            backoff_ms: 1000,
            queue: None,
            sequenced: false,
            partitions: 1,
            updated_at: None,
        }
    }
}

/// The outcome of a load: the config to serve and the rows that were rejected.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The valid rows (plus, for rows that turned invalid since the last
    /// load, their last valid version).
    pub config: Config,
    /// Every problem found, one per row and column.
    pub problems: Vec<RowError>,
    /// The config version the rows were read at (bumped by triggers on every change).
    pub version: i64,
}

/// Reads, validates and serves the config tables.
///
/// Invalid rows never take down the other rows: they are reported in
/// [`Loaded::problems`], and if an earlier load of this store saw a valid
/// version of the same row, that version keeps serving.
#[derive(Debug)]
pub struct ConfigStore {
    db: Db,
    last_valid: Mutex<Config>,
}

const SEND_COLUMNS: &str =
    "event_type, enabled, send_mode, converter_id, converter_rules, persist, retry_count, \
     batch_cron, batch_size, compression, exchange, routing_key, sequenced, updated_at";
const RECEIVE_COLUMNS: &str =
    "event_type, subscriber, enabled, exchange, binding_key, process_mode, \
     handler_id, converter_id, converter_rules, workers, batch_cron, max_attempts, backoff_ms, \
     queue, sequenced, partitions, updated_at";

impl ConfigStore {
    /// A store over `db` (which must be migrated).
    pub fn new(db: Db) -> Self {
        ConfigStore {
            db,
            last_valid: Mutex::new(Config::default()),
        }
    }

    /// The database handle.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The current config version (a counter bumped by triggers whenever a
    /// config row is inserted, updated or deleted, including by plain SQL).
    pub async fn version(&self) -> Result<i64> {
        let sql = "SELECT version FROM ey_config_version WHERE id = 1";
        let v: Option<i64> =
            with_pool!(&self.db, pool => sqlx::query_scalar(sql).fetch_optional(pool).await?);
        Ok(v.unwrap_or(0))
    }

    /// Every `ey_send_config` row as stored, ordered by event type.
    pub async fn send_rows(&self) -> Result<Vec<RawSendRow>> {
        let sql = format!("SELECT {SEND_COLUMNS} FROM ey_send_config ORDER BY event_type");
        Ok(
            with_pool!(&self.db, pool => sqlx::query_as::<_, RawSendRow>(&sql).fetch_all(pool).await?),
        )
    }

    /// Every `ey_receive_config` row as stored, ordered by key.
    pub async fn receive_rows(&self) -> Result<Vec<RawReceiveRow>> {
        let sql = format!(
            "SELECT {RECEIVE_COLUMNS} FROM ey_receive_config ORDER BY event_type, subscriber"
        );
        Ok(
            with_pool!(&self.db, pool => sqlx::query_as::<_, RawReceiveRow>(&sql).fetch_all(pool).await?),
        )
    }

    /// Loads and validates every row.
    pub async fn load(&self, catalog: &dyn Catalog) -> Result<Loaded> {
        // Read the version first: a change racing with the reads bumps it
        // again, so a poller never misses it.
        let version = self.version().await?;
        let send_rows = self.send_rows().await?;
        let receive_rows = self.receive_rows().await?;
        let previous = self
            .last_valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();

        let mut loaded = Loaded {
            version,
            ..Loaded::default()
        };
        for raw in &send_rows {
            match validate_send_row(raw, catalog) {
                Ok(row) => {
                    loaded.config.send.insert(row.event_type.clone(), row);
                }
                Err(problems) => {
                    if let Some(prev) = previous.send.get(&raw.event_type) {
                        tracing::error!(event_type = %raw.event_type, "ey_send_config row is invalid; the last valid version keeps serving");
                        loaded
                            .config
                            .send
                            .insert(raw.event_type.clone(), prev.clone());
                    }
                    loaded.problems.extend(problems);
                }
            }
        }
        for raw in &receive_rows {
            let key = (raw.event_type.clone(), raw.subscriber.clone());
            match validate_receive_row(raw, catalog) {
                Ok(row) => {
                    loaded.config.receive.insert(key, row);
                }
                Err(problems) => {
                    if let Some(prev) = previous.receive.get(&key) {
                        tracing::error!(event_type = %raw.event_type, subscriber = %raw.subscriber, "ey_receive_config row is invalid; the last valid version keeps serving");
                        loaded.config.receive.insert(key, prev.clone());
                    }
                    loaded.problems.extend(problems);
                }
            }
        }
        *self
            .last_valid
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = loaded.config.clone();
        Ok(loaded)
    }

    /// Inserts or replaces an `ey_send_config` row (`updated_at` is set by the database).
    pub async fn upsert_send(&self, row: &RawSendRow) -> Result<()> {
        let cols =
            "event_type, enabled, send_mode, converter_id, converter_rules, persist, retry_count, batch_cron, \
                    batch_size, compression, exchange, routing_key, sequenced";
        let sql = upsert_sql(self.db.backend(), "ey_send_config", cols, &["event_type"]);
        let sql = self.db.sql(&sql);
        with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(&row.event_type)
                .bind(row.enabled)
                .bind(&row.send_mode)
                .bind(&row.converter_id)
                .bind(&row.converter_rules)
                .bind(row.persist)
                .bind(row.retry_count)
                .bind(&row.batch_cron)
                .bind(row.batch_size)
                .bind(&row.compression)
                .bind(&row.exchange)
                .bind(&row.routing_key)
                .bind(row.sequenced)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Inserts or replaces an `ey_receive_config` row (`updated_at` is set by the database).
    pub async fn upsert_receive(&self, row: &RawReceiveRow) -> Result<()> {
        let cols =
            "event_type, subscriber, enabled, exchange, binding_key, process_mode, handler_id, \
                    converter_id, converter_rules, workers, batch_cron, max_attempts, backoff_ms, \
                    queue, sequenced, partitions";
        let sql = upsert_sql(
            self.db.backend(),
            "ey_receive_config",
            cols,
            &["event_type", "subscriber"],
        );
        let sql = self.db.sql(&sql);
        with_pool!(&self.db, pool => {
            sqlx::query(&sql)
                .bind(&row.event_type)
                .bind(&row.subscriber)
                .bind(row.enabled)
                .bind(&row.exchange)
                .bind(&row.binding_key)
                .bind(&row.process_mode)
                .bind(&row.handler_id)
                .bind(&row.converter_id)
                .bind(&row.converter_rules)
                .bind(row.workers)
                .bind(&row.batch_cron)
                .bind(row.max_attempts)
                .bind(row.backoff_ms)
                .bind(&row.queue)
                .bind(row.sequenced)
                .bind(row.partitions)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Deletes the `ey_send_config` row of an event type; returns whether it existed.
    pub async fn delete_send(&self, event_type: &str) -> Result<bool> {
        let sql = self
            .db
            .sql("DELETE FROM ey_send_config WHERE event_type = $1");
        let n = with_pool!(&self.db, pool => sqlx::query(&sql).bind(event_type).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// Deletes an `ey_receive_config` row; returns whether it existed.
    pub async fn delete_receive(&self, event_type: &str, subscriber: &str) -> Result<bool> {
        let sql = self
            .db
            .sql("DELETE FROM ey_receive_config WHERE event_type = $1 AND subscriber = $2");
        let n = with_pool!(&self.db, pool => sqlx::query(&sql).bind(event_type).bind(subscriber).execute(pool).await?.rows_affected());
        Ok(n > 0)
    }

    /// Records the converter and handler ids a daemon instance has
    /// registered (`kind` is `send_converter`, `receive_converter` or
    /// `handler`), replacing what that instance recorded before for `kind`.
    pub async fn record_components(
        &self,
        instance_id: &str,
        kind: &str,
        ids: &[String],
    ) -> Result<()> {
        let delete = self
            .db
            .sql("DELETE FROM ey_component WHERE instance_id = $1 AND kind = $2");
        let insert = self
            .db
            .sql("INSERT INTO ey_component (kind, component_id, instance_id) VALUES ($1, $2, $3)");
        with_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(&delete).bind(instance_id).bind(kind).execute(&mut *tx).await?;
            for id in ids {
                sqlx::query(&insert).bind(kind).bind(id).bind(instance_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every (kind, id) that some daemon has recorded, deduplicated and sorted.
    pub async fn recorded_components(&self) -> Result<Vec<(String, String)>> {
        let sql =
            "SELECT DISTINCT kind, component_id FROM ey_component ORDER BY kind, component_id";
        Ok(
            with_pool!(&self.db, pool => sqlx::query_as::<_, (String, String)>(sql).fetch_all(pool).await?),
        )
    }
}

/// `INSERT … ON CONFLICT/DUPLICATE KEY UPDATE` for `cols` with `$N` placeholders.
fn upsert_sql(backend: Backend, table: &str, cols: &str, keys: &[&str]) -> String {
    let names: Vec<&str> = cols.split(',').map(str::trim).collect();
    let params: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let updates: Vec<&str> = names
        .iter()
        .copied()
        .filter(|c| !keys.contains(c))
        .collect();
    let head = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        params.join(", ")
    );
    match backend {
        Backend::MySql => {
            let set: Vec<String> = updates
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect();
            format!("{head} ON DUPLICATE KEY UPDATE {}", set.join(", "))
        }
        Backend::Postgres | Backend::Sqlite => {
            let set: Vec<String> = updates
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect();
            format!(
                "{head} ON CONFLICT ({}) DO UPDATE SET {}",
                keys.join(", "),
                set.join(", ")
            )
        }
    }
}
