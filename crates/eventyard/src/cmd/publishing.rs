//! What `send` and `batch` share: a publisher on the configured database and broker.

use std::sync::Arc;

use eventyard::catalog::RuntimeCatalog;
use eventyard_converter::Registry;
use eventyard_core::config::ConfigStore;
use eventyard_core::db::Db;
use eventyard_sender::{Outbox, Publisher, PublisherOptions};
use eventyard_transport::Transport;

use super::{CliError, Global};

/// A publisher for one CLI command, with the database it writes.
pub(crate) struct CliPublisher {
    pub(crate) db: Db,
    pub(crate) publisher: Publisher,
    pub(crate) transport: Arc<dyn Transport>,
    _config: tokio::sync::watch::Sender<Arc<eventyard_core::config::Loaded>>,
}

impl CliPublisher {
    /// Connects to the database and the broker and loads the send config once.
    pub(crate) async fn connect(global: &Global, system_id: &str) -> Result<Self, CliError> {
        let db = Db::connect(global.require_database_url()?).await?;
        let amqp_url = global.amqp_url.as_deref().ok_or_else(|| {
            CliError::Usage("no broker given; pass --amqp-url or set EVENTYARD_AMQP_URL".into())
        })?;
        let transport = connect(amqp_url).await?;
        let store = ConfigStore::new(db.clone());
        let converters = Arc::new(Registry::with_builtins());
        let catalog = RuntimeCatalog::new(Arc::clone(&converters))
            .with_recorded(&store)
            .await?;
        let loaded = store.load(&catalog).await?;
        for problem in &loaded.problems {
            tracing::warn!("{problem}");
        }
        let (config_tx, config) = tokio::sync::watch::channel(Arc::new(loaded));
        let publisher = Publisher::new(
            Outbox::new(db.clone()),
            config,
            converters,
            Arc::clone(&transport),
            PublisherOptions::new(system_id),
        );
        Ok(CliPublisher {
            db,
            publisher,
            transport,
            _config: config_tx,
        })
    }

    /// Closes the broker connection and the pool.
    pub(crate) async fn close(self) {
        let _ = self.transport.close().await;
        self.db.close().await;
    }
}

#[cfg(feature = "amqp")]
async fn connect(url: &str) -> Result<Arc<dyn Transport>, CliError> {
    use eventyard_transport::{AmqpOptions, AmqpTransport};
    let transport =
        AmqpTransport::connect(url, AmqpOptions::default().connection_name("eventyard-cli"))
            .await
            .map_err(|e| CliError::Failed(format!("cannot connect to the broker: {e}")))?;
    Ok(Arc::new(transport))
}

#[cfg(not(feature = "amqp"))]
async fn connect(_url: &str) -> Result<Arc<dyn Transport>, CliError> {
    Err(CliError::Failed(
        "this build of eventyard has no AMQP support (cargo feature `amqp`)".into(),
    ))
}
