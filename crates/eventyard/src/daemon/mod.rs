//! The eventyard daemon: everything `eventyard run` starts, as a library so
//! applications can embed it with their own converters and handlers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eventyard::daemon::DaemonError> {
//! use eventyard::daemon::{Daemon, Settings};
//!
//! let settings = Settings::from_toml(r#"
//!     database_url = "sqlite://eventyard.db"
//!     system_id = "CRM"
//! "#)?;
//! let running = Daemon::new(settings).start().await?;
//! // … publish with running.publisher(), or wait for a signal …
//! running.shutdown().await;
//! # Ok(()) }
//! ```

mod exposition;
mod http;
mod purge;
mod settings;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eventyard_converter::Registry;
use eventyard_core::config::{ConfigStore, ConfigWatcher, WatchOptions};
use eventyard_core::db::{redact_url, Db};
use eventyard_receiver::sequenced::{AmqpResyncSource, DbResyncSource};
use eventyard_receiver::{HandlerRegistry, Receiver, ReceiverHandle, ReceiverOptions};
use eventyard_sender::{
    BatchScheduler, Outbox, Publisher, PublisherOptions, ResponderOptions, ResyncResponder,
    SnapshotProvider,
};
use eventyard_transport::{InProcessTransport, Transport};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catalog::RuntimeCatalog;

pub use settings::{
    ConfigSettings, HttpSettings, ReceiverSettings, ResyncSettings, ResyncSourceKind,
    RetentionSettings, Role, Settings,
};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The settings file is unreadable or wrong.
    #[error("settings {path}: {message}")]
    Settings {
        /// The file (or setting) at fault.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A required setting is missing.
    #[error("no {what} configured; set `{key}` in the settings file or {env}")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// The settings key.
        key: &'static str,
        /// The environment variable.
        env: &'static str,
    },
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Core(#[from] eventyard_core::Error),
    /// The broker could not be reached.
    #[error("cannot connect to the broker: {0}")]
    Transport(#[from] eventyard_transport::TransportError),
    /// The receiver could not start.
    #[error("the receiver could not start: {0}")]
    Receiver(String),
    /// The metrics endpoint could not listen.
    #[error("cannot listen on {addr} for /metrics and /healthz: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
}

/// A daemon to be started: settings plus the application's converters.
#[derive(Debug)]
pub struct Daemon {
    settings: Settings,
    converters: Registry,
    handlers: HandlerRegistry,
    transport: Option<Arc<dyn Transport>>,
    sequencing: Option<eventyard_receiver::sequenced::SeqOptions>,
    snapshot_provider: Provider,
}

/// The application's snapshot provider, if any (not `Debug` itself).
#[derive(Default, Clone)]
struct Provider(Option<Arc<dyn SnapshotProvider>>);

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// A started daemon.
#[derive(Debug)]
pub struct RunningDaemon {
    db: Db,
    publisher: Publisher,
    transport: Arc<dyn Transport>,
    watcher: ConfigWatcher,
    receiver: Option<ReceiverHandle>,
    http_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed (another one is active)");
                None
            }
        })
        .clone()
}

impl Daemon {
    /// A daemon with the built-in converters.
    pub fn new(settings: Settings) -> Self {
        Daemon {
            settings,
            converters: Registry::with_builtins(),
            handlers: HandlerRegistry::new(),
            transport: None,
            sequencing: None,
            snapshot_provider: Provider::default(),
        }
    }

    /// The producer's current state on demand (publisher role): when a
    /// consumer needs a snapshot newer than the stored one, the resync
    /// responder asks `provider` for it (see
    /// [`SnapshotProvider`]).
    pub fn snapshot_provider(mut self, provider: Arc<dyn SnapshotProvider>) -> Self {
        self.snapshot_provider = Provider(Some(provider));
        self
    }

    /// Settings of sequenced receive rows: tracker parameters, snapshot
    /// handlers, the resync source (default: the database one).
    pub fn sequencing(mut self, seq: eventyard_receiver::sequenced::SeqOptions) -> Self {
        self.sequencing = Some(seq);
        self
    }

    /// Uses these handlers (the built-in `log` and `sql` plus the
    /// application's own) for the subscriber role.
    pub fn handlers(mut self, handlers: HandlerRegistry) -> Self {
        self.handlers = handlers;
        self
    }

    /// Uses this converter registry (built-ins plus the application's own).
    pub fn converters(mut self, converters: Registry) -> Self {
        self.converters = converters;
        self
    }

    /// Uses this transport instead of the one the settings name (e.g. one
    /// in-process broker shared by several daemons in a test).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Connects, migrates, and starts every part its roles need.
    pub async fn start(self) -> Result<RunningDaemon, DaemonError> {
        let s = &self.settings;
        let url = s.database_url.as_deref().ok_or(DaemonError::Missing {
            what: "database",
            key: "database_url",
            env: "EVENTYARD_DATABASE_URL",
        })?;
        let system_id = s.system_id.clone().ok_or(DaemonError::Missing {
            what: "system id",
            key: "system_id",
            env: "EVENTYARD_SYSTEM_ID",
        })?;
        let instance_id = s
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("{system_id}-{}", uuid::Uuid::new_v4().simple()));
        let db = Db::connect(url).await?;
        db.migrate().await?;
        tracing::info!(database = %redact_url(url), backend = db.backend().as_str(), %instance_id, "database ready");

        let transport: Arc<dyn Transport> = match (&self.transport, &s.amqp_url) {
            (Some(t), _) => Arc::clone(t),
            (None, Some(amqp)) => connect_amqp(amqp, &instance_id).await?,
            (None, None) => {
                tracing::info!("no amqp_url: using the in-process transport");
                Arc::new(InProcessTransport::new())
            }
        };

        let converters = Arc::new(self.converters);
        let store = Arc::new(ConfigStore::new(db.clone()));
        let handlers = Arc::new(self.handlers);
        record_components(&store, &instance_id, &converters, &handlers).await?;
        let catalog = RuntimeCatalog::new(Arc::clone(&converters))
            .with_handlers(handlers.ids().map(str::to_string))
            .with_recorded(&store)
            .await?;
        let watcher = ConfigWatcher::start(
            Arc::clone(&store),
            Arc::new(catalog),
            WatchOptions::default().poll_interval(s.config.poll_interval),
        )
        .await?;
        for problem in &watcher.current().problems {
            tracing::error!("{problem}");
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let publisher = Publisher::new(
            Outbox::new(db.clone()),
            watcher.subscribe(),
            Arc::clone(&converters),
            Arc::clone(&transport),
            PublisherOptions::new(system_id.clone()).instance_id(instance_id.clone()),
        );
        // Request/reply resync needs a broker between daemons.
        let broker = self.transport.is_some() || s.amqp_url.is_some();
        if s.roles.contains(&Role::Publisher) {
            let scheduler = BatchScheduler::new(publisher.clone());
            tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));
            if broker && s.resync.responder {
                let producers = if s.resync.producers.is_empty() {
                    vec![system_id.clone()]
                } else {
                    s.resync.producers.clone()
                };
                let mut opts = ResponderOptions::new(producers)
                    .exchange(s.resync.exchange.clone())
                    .max_fetch(s.resync.max_fetch);
                if let Some(provider) = &self.snapshot_provider.0 {
                    opts = opts.snapshot_provider(Arc::clone(provider));
                }
                let responder = ResyncResponder::new(db.clone(), Arc::clone(&transport), opts);
                tasks.push(tokio::spawn(responder.run(shutdown_rx.clone())));
            }
        }

        let receiver = if s.roles.contains(&Role::Subscriber) {
            let options = ReceiverOptions::new(system_id.clone())
                .instance_id(instance_id.clone())
                .handler_timeout(s.receiver.handler_timeout)
                .backlog(usize::try_from(s.receiver.max_backlog).unwrap_or(usize::MAX))
                .prefetch(s.receiver.prefetch);
            let mut seq = self
                .sequencing
                .unwrap_or_default()
                .partition_lease(s.receiver.seq_partition_lease);
            if !seq.has_source() {
                let remote = || {
                    Arc::new(
                        AmqpResyncSource::new(Arc::clone(&transport))
                            .exchange(s.resync.exchange.clone())
                            .timeout(s.resync.timeout),
                    )
                };
                match s.resync.source {
                    ResyncSourceKind::Amqp => seq = seq.source(remote()),
                    ResyncSourceKind::Db if broker => {
                        seq = seq.source(Arc::new(
                            DbResyncSource::new(db.clone()).fresh_snapshots(remote()),
                        ));
                    }
                    ResyncSourceKind::Db => {}
                }
            }
            if let Some(path) = &s.receiver.seq_trace {
                let mut keys = Vec::new();
                for k in &s.receiver.seq_trace_keys {
                    let (p, st) = k.split_once('/').ok_or_else(|| {
                        DaemonError::Receiver(format!(
                            "seq_trace_keys: `{k}` is not `producer/stream`"
                        ))
                    })?;
                    keys.push((p.to_string(), st.to_string()));
                }
                let sink =
                    eventyard_receiver::sequenced::TraceSink::open(path, keys).map_err(|e| {
                        DaemonError::Receiver(format!("seq_trace {}: {e}", path.display()))
                    })?;
                seq = seq.trace(Arc::new(sink));
            }
            let options = options.sequencing(seq);
            let receiver = Receiver::new(
                db.clone(),
                Arc::clone(&transport),
                watcher.subscribe(),
                Arc::clone(&converters),
                Arc::clone(&handlers),
                options,
            );
            Some(
                receiver
                    .start()
                    .await
                    .map_err(|e| DaemonError::Receiver(e.to_string()))?,
            )
        } else {
            None
        };

        if !s.retention.keep.is_zero() {
            tasks.push(tokio::spawn(retention(
                db.clone(),
                s.retention.keep,
                s.retention.every,
                shutdown_rx.clone(),
            )));
        }

        let http_addr = match (s.http_addr()?, prometheus()) {
            (Some(addr), Some(handle)) => {
                let listener = http::bind(addr)
                    .await
                    .map_err(|source| DaemonError::Http { addr, source })?;
                let bound = listener.local_addr().ok();
                let stats = receiver.as_ref().map(ReceiverHandle::stats);
                tasks.push(tokio::spawn(http::serve(
                    listener,
                    handle,
                    stats,
                    db.clone(),
                    shutdown_rx.clone(),
                )));
                bound
            }
            _ => None,
        };
        tracing::info!(system_id, roles = ?s.roles, http = ?http_addr, "eventyard daemon started");
        Ok(RunningDaemon {
            db,
            publisher,
            transport,
            watcher,
            receiver,
            http_addr,
            shutdown,
            tasks,
        })
    }
}

#[cfg(feature = "amqp")]
async fn connect_amqp(url: &str, instance_id: &str) -> Result<Arc<dyn Transport>, DaemonError> {
    use eventyard_transport::{AmqpOptions, AmqpTransport};
    Ok(Arc::new(
        AmqpTransport::connect(
            url,
            AmqpOptions::default().connection_name(instance_id.to_string()),
        )
        .await?,
    ))
}

#[cfg(not(feature = "amqp"))]
async fn connect_amqp(_url: &str, _instance_id: &str) -> Result<Arc<dyn Transport>, DaemonError> {
    Err(DaemonError::Settings {
        path: "amqp_url".into(),
        message: "this build has no AMQP support (cargo feature `amqp`)".into(),
    })
}

async fn record_components(
    store: &ConfigStore,
    instance_id: &str,
    converters: &Registry,
    handlers: &HandlerRegistry,
) -> Result<(), DaemonError> {
    let handler_ids: Vec<String> = handlers.ids().map(str::to_string).collect();
    store
        .record_components(instance_id, "handler", &handler_ids)
        .await?;
    let send: Vec<String> = converters.send_ids().map(str::to_string).collect();
    let receive: Vec<String> = converters.receive_ids().map(str::to_string).collect();
    store
        .record_components(instance_id, "send_converter", &send)
        .await?;
    store
        .record_components(instance_id, "receive_converter", &receive)
        .await?;
    Ok(())
}

async fn retention(db: Db, keep: Duration, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        match purge::purge_once(&db, keep).await {
            Ok((0, 0)) => {}
            Ok((outbox, inbox)) => {
                tracing::info!(outbox, inbox, "purged finished rows past retention");
                metrics::counter!("eventyard_purged_rows_total", "table" => "ey_outbox")
                    .increment(outbox);
                metrics::counter!("eventyard_purged_rows_total", "table" => "ey_inbox")
                    .increment(inbox);
            }
            Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_secs(1))) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl RunningDaemon {
    /// The publisher (for applications embedding the daemon).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The transport in use.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The running receiver (subscriber role), e.g. for its counters.
    pub fn receiver(&self) -> Option<&ReceiverHandle> {
        self.receiver.as_ref()
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The live config.
    pub fn config(&self) -> &ConfigWatcher {
        &self.watcher
    }

    /// Where `/metrics` and `/healthz` listen, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops everything gracefully: the scheduler finishes its current
    /// batch, background tasks end, connections close.
    pub async fn shutdown(self) {
        // Stop consuming first and let in-flight handlers finish, so nothing
        // is left acknowledged but unstored.
        if let Some(receiver) = self.receiver {
            receiver.shutdown().await;
        }
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        let _ = self.transport.close().await;
        self.db.close().await;
        tracing::info!("eventyard daemon stopped");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
