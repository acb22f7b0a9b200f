//! The daemon's settings file (`eventyard.toml`) and its environment overrides.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::DaemonError;

/// What this daemon instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the batch scheduler and the relay for the send side.
    Publisher,
    /// Runs the receiver: listeners, inbox, handler pools, batch processing.
    Subscriber,
}

/// The settings of `eventyard run`, read from TOML.
///
/// ```toml
/// database_url = "postgres://eventyard@127.0.0.1/app"   # or EVENTYARD_DATABASE_URL
/// amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"    # or EVENTYARD_AMQP_URL; absent: in-process
/// system_id = "CRM"                                     # or EVENTYARD_SYSTEM_ID
/// roles = ["publisher", "subscriber"]
///
/// [http]
/// listen = "127.0.0.1:9464"        # /metrics and /healthz
///
/// [config]
/// poll_interval = "2s"
///
/// [retention]
/// keep = "7d"                      # done inbox and sent outbox rows older than this are purged
/// every = "1h"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Database URL (postgres://, mysql://, sqlite://).
    #[serde(default)]
    pub database_url: Option<String>,
    /// Broker URL; without one the daemon uses the in-process transport
    /// (publisher and subscriber in this one process).
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// This system's id: the publisher id in envelopes, the subscriber whose
    /// `ey_receive_config` rows this daemon serves.
    #[serde(default)]
    pub system_id: Option<String>,
    /// This instance's id in claim leases and `ey_component` (default: random).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Roles (default both).
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// The metrics and health endpoint.
    #[serde(default)]
    pub http: HttpSettings,
    /// Config reload.
    #[serde(default)]
    pub config: ConfigSettings,
    /// Purging of finished rows.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Receiver limits.
    #[serde(default)]
    pub receiver: ReceiverSettings,
    /// Where sequenced streams resync from, and answering other systems'
    /// resync requests.
    #[serde(default)]
    pub resync: ResyncSettings,
}

fn default_roles() -> Vec<Role> {
    vec![Role::Publisher, Role::Subscriber]
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Where `/metrics` and `/healthz` listen; `""` turns them off.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: default_listen(),
        }
    }
}

/// `[config]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSettings {
    /// How often the config version is polled (PostgreSQL also gets NOTIFY).
    #[serde(default = "default_poll", with = "humantime")]
    pub poll_interval: Duration,
}

fn default_poll() -> Duration {
    Duration::from_secs(2)
}

impl Default for ConfigSettings {
    fn default() -> Self {
        ConfigSettings {
            poll_interval: default_poll(),
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Finished rows (`done` inbox, `sent` outbox) older than this are deleted; `0s` keeps them.
    #[serde(default = "default_keep", with = "humantime")]
    pub keep: Duration,
    /// How often the purge runs.
    #[serde(default = "default_every", with = "humantime")]
    pub every: Duration,
}

fn default_keep() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_every() -> Duration {
    Duration::from_secs(3600)
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            keep: default_keep(),
            every: default_every(),
        }
    }
}

/// `[receiver]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverSettings {
    /// Default handler timeout.
    #[serde(default = "default_handler_timeout", with = "humantime")]
    pub handler_timeout: Duration,
    /// Stored-but-unprocessed events per type above which consumption pauses.
    #[serde(default = "default_backlog")]
    pub max_backlog: u64,
    /// AMQP prefetch per queue.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Append the sequence trackers' inputs to this file as a
    /// `seq simulate` trace (JSON lines).
    #[serde(default)]
    pub seq_trace: Option<std::path::PathBuf>,
    /// Only these keys in the trace, each `producer/stream` (default: all).
    #[serde(default)]
    pub seq_trace_keys: Vec<String>,
    /// How long a partition lease of a partitioned sequenced row lasts
    /// without renewal (renewed every third of it); a dead instance's
    /// partitions are taken over after at most this long.
    #[serde(default = "default_partition_lease", with = "humantime")]
    pub seq_partition_lease: Duration,
}

fn default_partition_lease() -> Duration {
    Duration::from_secs(10)
}

fn default_handler_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_backlog() -> u64 {
    10_000
}
fn default_prefetch() -> u16 {
    1000
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        ReceiverSettings {
            handler_timeout: default_handler_timeout(),
            max_backlog: default_backlog(),
            prefetch: default_prefetch(),
            seq_trace: None,
            seq_trace_keys: Vec::new(),
            seq_partition_lease: default_partition_lease(),
        }
    }
}

/// Where a sequenced key's missing events and snapshots come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResyncSourceKind {
    /// The producer's `ey_outbox` and `ey_snapshot` in this daemon's own
    /// database (producer and consumer share it). With a broker, a missing
    /// or stale snapshot is asked fresh from the producer's daemon.
    #[default]
    Db,
    /// Ask the producer's daemon over AMQP (request/reply): producer and
    /// consumer have separate databases.
    Amqp,
}

/// `[resync]`.
///
/// ```toml
/// [resync]
/// source = "amqp"          # "db" (default): shared database; "amqp": ask the producer's daemon
/// timeout = "5s"           # how long one request waits for its answer
/// exchange = "eventyard.resync"
/// responder = true         # publisher role: answer requests for `producers`
/// producers = ["CRM"]      # default: [system_id]
/// max_fetch = 1000         # the largest seq range one fetch request may ask for
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResyncSettings {
    /// Where missing events and snapshots come from (subscriber role).
    #[serde(default)]
    pub source: ResyncSourceKind,
    /// How long one request over AMQP waits for its answer.
    #[serde(default = "default_resync_timeout", with = "humantime")]
    pub timeout: Duration,
    /// The exchange resync requests and replies travel on (the same on the
    /// producer's and the consumer's daemons).
    #[serde(default = "default_resync_exchange")]
    pub exchange: String,
    /// Publisher role with a broker: answer consumers' resync requests for
    /// `producers` from this database.
    #[serde(default = "default_true")]
    pub responder: bool,
    /// The producer ids answered for (default: this daemon's `system_id`).
    #[serde(default)]
    pub producers: Vec<String>,
    /// The largest seq range one fetch request may ask for.
    #[serde(default = "default_resync_max_fetch")]
    pub max_fetch: u64,
}

fn default_resync_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_resync_exchange() -> String {
    eventyard_core::resync::DEFAULT_EXCHANGE.to_string()
}
fn default_true() -> bool {
    true
}
fn default_resync_max_fetch() -> u64 {
    1000
}

impl Default for ResyncSettings {
    fn default() -> Self {
        ResyncSettings {
            source: ResyncSourceKind::default(),
            timeout: default_resync_timeout(),
            exchange: default_resync_exchange(),
            responder: true,
            producers: Vec::new(),
            max_fetch: default_resync_max_fetch(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: None,
            amqp_url: None,
            system_id: None,
            instance_id: None,
            roles: default_roles(),
            http: HttpSettings::default(),
            config: ConfigSettings::default(),
            retention: RetentionSettings::default(),
            receiver: ReceiverSettings::default(),
            resync: ResyncSettings::default(),
        }
    }
}

impl Settings {
    /// Reads a settings file.
    pub fn from_file(path: &Path) -> Result<Settings, DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Settings {
            path: path.display().to_string(),
            message: source.to_string(),
        })?;
        Settings::from_toml(&text).map_err(|e| match e {
            DaemonError::Settings { message, .. } => DaemonError::Settings {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses settings from TOML text.
    pub fn from_toml(text: &str) -> Result<Settings, DaemonError> {
        toml::from_str(text).map_err(|e| DaemonError::Settings {
            path: "<text>".into(),
            message: e.to_string(),
        })
    }

    /// Applies `EVENTYARD_DATABASE_URL`, `EVENTYARD_AMQP_URL`,
    /// `EVENTYARD_SYSTEM_ID` and `EVENTYARD_INSTANCE_ID` over the file.
    pub fn with_env(mut self) -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("EVENTYARD_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = var("EVENTYARD_AMQP_URL") {
            self.amqp_url = Some(v);
        }
        if let Some(v) = var("EVENTYARD_SYSTEM_ID") {
            self.system_id = Some(v);
        }
        if let Some(v) = var("EVENTYARD_INSTANCE_ID") {
            self.instance_id = Some(v);
        }
        self
    }

    /// The metrics/health address, if enabled.
    pub fn http_addr(&self) -> Result<Option<SocketAddr>, DaemonError> {
        if self.http.listen.trim().is_empty() {
            return Ok(None);
        }
        self.http
            .listen
            .parse()
            .map(Some)
            .map_err(|_| DaemonError::Settings {
                path: "[http] listen".into(),
                message: format!(
                    "`{}` is not an address like 127.0.0.1:9464",
                    self.http.listen
                ),
            })
    }
}

/// Durations written as `30s`, `5m`, `1h30m`, `7d`, `250ms`.
mod humantime {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration; write e.g. 30s, 5m, 1h30m, 7d or 250ms"
            ))
        })
    }

    pub(super) fn parse(text: &str) -> Option<Duration> {
        let mut total = Duration::ZERO;
        let mut rest = text.trim();
        if rest.is_empty() {
            return None;
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit())?;
            if digits == 0 {
                return None;
            }
            let n: u64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(1),
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                "d" => Duration::from_secs(86_400),
                _ => return None,
            };
            rest = &rest[unit_len..];
            total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let s = Settings::from_toml(
            r#"
            database_url = "sqlite://x.db"
            system_id = "CRM"
            roles = ["subscriber"]
            [http]
            listen = "127.0.0.1:0"
            [config]
            poll_interval = "500ms"
            [retention]
            keep = "1d"
            every = "10m"
            [receiver]
            handler_timeout = "5s"
            max_backlog = 100
            prefetch = 16
            "#,
        )
        .unwrap();
        assert_eq!(s.roles, vec![Role::Subscriber]);
        assert_eq!(s.config.poll_interval, Duration::from_millis(500));
        assert_eq!(s.retention.keep, Duration::from_secs(86_400));
        assert_eq!(s.receiver.prefetch, 16);
    }

    #[test]
    fn mistakes_are_named() {
        let err = Settings::from_toml("databse_url = \"x\"").unwrap_err();
        assert!(err.to_string().contains("databse_url"), "{err}");
        let err = Settings::from_toml("[retention]\nkeep = \"a week\"").unwrap_err();
        assert!(err.to_string().contains("a week"), "{err}");
        let s = Settings::from_toml("[http]\nlisten = \"nowhere\"").unwrap();
        assert!(s.http_addr().is_err());
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.roles.len(), 2);
    }

    #[test]
    fn resync_settings_parse() {
        let s = Settings::from_toml("").unwrap();
        assert_eq!(s.resync.source, ResyncSourceKind::Db);
        assert!(s.resync.responder);
        let s = Settings::from_toml(
            "[resync]\nsource = \"amqp\"\ntimeout = \"2s\"\nproducers = [\"P1\"]\nresponder = false",
        )
        .unwrap();
        assert_eq!(s.resync.source, ResyncSourceKind::Amqp);
        assert_eq!(s.resync.timeout, Duration::from_secs(2));
        assert_eq!(s.resync.producers, vec!["P1".to_string()]);
        assert!(!s.resync.responder);
        let err = Settings::from_toml("[resync]\nsource = \"carrier-pigeon\"").unwrap_err();
        assert!(err.to_string().contains("carrier-pigeon"), "{err}");
    }
}
