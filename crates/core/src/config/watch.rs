//! Live reload: watch the config version and reload when it moves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::store::{ConfigStore, Loaded};
use super::Catalog;
use crate::Result;

/// How a [`ConfigWatcher`] learns about changes.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    poll_interval: Duration,
    listen: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll_interval: Duration::from_secs(2),
            listen: true,
        }
    }
}

impl WatchOptions {
    /// How often the version row is polled (default 2 s). Polling runs on
    /// every database, also where notifications are used, as the fallback.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d.max(Duration::from_millis(10));
        self
    }

    /// Whether to `LISTEN ey_config` on PostgreSQL for immediate reloads (default on).
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }
}

/// A running config watcher: the latest [`Loaded`] config, refreshed
/// whenever `ey_config_version` moves (a trigger bumps it on every insert,
/// update or delete of a config row, including plain SQL by operators).
///
/// Dropping the watcher stops its task.
#[derive(Debug)]
pub struct ConfigWatcher {
    rx: watch::Receiver<Arc<Loaded>>,
    nudge: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConfigWatcher {
    /// Loads the config once (failing if the database cannot be read) and
    /// starts watching it.
    pub async fn start(
        store: Arc<ConfigStore>,
        catalog: Arc<dyn Catalog>,
        options: WatchOptions,
    ) -> Result<ConfigWatcher> {
        let first = store.load(catalog.as_ref()).await?;
        let (tx, rx) = watch::channel(Arc::new(first));
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(run(store, catalog, options, tx, Arc::clone(&nudge)));
        Ok(ConfigWatcher { rx, nudge, task })
    }

    /// The current config.
    pub fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.rx.borrow())
    }

    /// A receiver that sees every reload.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Loaded>> {
        self.rx.clone()
    }

    /// Asks for a version check now instead of at the next poll.
    pub fn check_now(&self) {
        self.nudge.notify_one();
    }
}

async fn run(
    store: Arc<ConfigStore>,
    catalog: Arc<dyn Catalog>,
    options: WatchOptions,
    tx: watch::Sender<Arc<Loaded>>,
    nudge: Arc<Notify>,
) {
    let mut version = tx.borrow().version;
    #[cfg(feature = "postgres")]
    let mut listener = if options.listen {
        listen(store.db()).await
    } else {
        None
    };
    loop {
        #[cfg(feature = "postgres")]
        {
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = notified => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "config LISTEN connection lost; polling until it is back");
                        listener = None;
                    }
                }
                _ = tokio::time::sleep(options.poll_interval) => {
                    if listener.is_none() && options.listen {
                        listener = listen(store.db()).await;
                    }
                }
                _ = nudge.notified() => {}
            }
        }
        #[cfg(not(feature = "postgres"))]
        {
            tokio::select! {
                _ = tokio::time::sleep(options.poll_interval) => {}
                _ = nudge.notified() => {}
            }
        }
        match store.version().await {
            Ok(v) if v == version => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read ey_config_version; keeping the current config");
                continue;
            }
        }
        match store.load(catalog.as_ref()).await {
            Ok(loaded) => {
                for problem in &loaded.problems {
                    tracing::warn!(table = %problem.table, event_type = %problem.event_type, column = problem.column, "{problem}");
                }
                tracing::info!(
                    version = loaded.version,
                    problems = loaded.problems.len(),
                    "config reloaded"
                );
                version = loaded.version;
                if tx.send(Arc::new(loaded)).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "config reload failed; keeping the current config");
            }
        }
    }
}

#[cfg(feature = "postgres")]
async fn listen(db: &crate::db::Db) -> Option<sqlx::postgres::PgListener> {
    #[allow(irrefutable_let_patterns)]
    let crate::db::Db::Postgres(pool) = db
    else {
        return None;
    };
    let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for config changes; polling only");
            return None;
        }
    };
    match listener.listen("ey_config").await {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for config changes; polling only");
            None
        }
    }
}
