//! [`HandlerRegistry`]: handlers by the `handler_id` config rows name.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use super::builtin::{LogHandler, SqlHandler};
use super::{BatchHandler, Handler, HandlerContext, HandlerOutcome, Message};

/// What a plain async function may return: a [`HandlerOutcome`], `()` or a
/// `String` (done), or a `Result` whose `Err` means "retry with backoff".
pub trait IntoOutcome {
    /// The outcome.
    fn into_outcome(self) -> HandlerOutcome;
}

impl IntoOutcome for HandlerOutcome {
    fn into_outcome(self) -> HandlerOutcome {
        self
    }
}

impl IntoOutcome for () {
    fn into_outcome(self) -> HandlerOutcome {
        HandlerOutcome::done("")
    }
}

impl IntoOutcome for String {
    fn into_outcome(self) -> HandlerOutcome {
        HandlerOutcome::done(self)
    }
}

impl IntoOutcome for &'static str {
    fn into_outcome(self) -> HandlerOutcome {
        HandlerOutcome::done(self)
    }
}

impl<T: IntoOutcome, E: fmt::Display> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> HandlerOutcome {
        match self {
            Ok(v) => v.into_outcome(),
            Err(e) => HandlerOutcome::retry(e.to_string()),
        }
    }
}

/// A registered handler: one event at a time, or a batch form.
#[derive(Clone)]
pub enum HandlerKind {
    /// Called once per event.
    Single(Arc<dyn Handler>),
    /// Called with chunks of events (`batch` mode); in `realtime` mode with
    /// one event at a time.
    Batch(Arc<dyn BatchHandler>),
}

impl HandlerKind {
    /// Whether calls may write through the handler transaction (see
    /// [`Handler::uses_transaction`]; a batch handler always may).
    pub fn uses_transaction(&self) -> bool {
        match self {
            HandlerKind::Single(h) => h.uses_transaction(),
            HandlerKind::Batch(_) => true,
        }
    }
}

impl fmt::Debug for HandlerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandlerKind::Single(_) => "HandlerKind::Single",
            HandlerKind::Batch(_) => "HandlerKind::Batch",
        })
    }
}

/// Handlers by id. `log` and `sql` are always present (registering the same
/// id again replaces them).
#[derive(Clone, Debug)]
pub struct HandlerRegistry {
    handlers: BTreeMap<String, HandlerKind>,
}

impl Default for HandlerRegistry {
    fn default() -> Self {
        Self::new()
    }
}

struct FnHandler<F>(F);

#[async_trait]
impl<F, Fut, O> Handler for FnHandler<F>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send + 'static,
    O: IntoOutcome + 'static,
{
    async fn handle(&self, msg: &Message, _ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        (self.0)(msg.clone()).await.into_outcome()
    }

    /// A plain function never sees the context.
    fn uses_transaction(&self) -> bool {
        false
    }
}

/// The boxed future a [`HandlerRegistry::register_fn_tx`] closure returns.
pub type BoxHandlerFuture<'a> = Pin<Box<dyn Future<Output = HandlerOutcome> + Send + 'a>>;

struct TxFnHandler<F>(F);

#[async_trait]
impl<F> Handler for TxFnHandler<F>
where
    F: for<'a, 'c> Fn(&'a Message, &'a mut HandlerContext<'c>) -> BoxHandlerFuture<'a>
        + Send
        + Sync
        + 'static,
{
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        (self.0)(msg, ctx).await
    }
}

impl HandlerRegistry {
    /// A registry with the built-in handlers `log` and `sql`.
    pub fn new() -> Self {
        let mut r = HandlerRegistry {
            handlers: BTreeMap::new(),
        };
        r.register("log", Arc::new(LogHandler));
        r.register("sql", Arc::new(SqlHandler::new()));
        r
    }

    /// Registers a handler under `id`, replacing any handler of that id.
    pub fn register(&mut self, id: impl Into<String>, handler: Arc<dyn Handler>) -> &mut Self {
        self.handlers
            .insert(id.into(), HandlerKind::Single(handler));
        self
    }

    /// Registers a plain async function or closure that takes the message
    /// by value and returns anything [`IntoOutcome`]:
    ///
    /// ```
    /// # use eventyard_receiver::{HandlerRegistry, Message};
    /// async fn greet(msg: Message) -> Result<String, std::io::Error> {
    ///     Ok(format!("hello {}", msg.fields.get_str("name").unwrap_or("?")))
    /// }
    /// let mut handlers = HandlerRegistry::new();
    /// handlers.register_fn("greet", greet);
    /// handlers.register_fn("noop", |_msg: Message| async {});
    /// ```
    ///
    /// Such a handler has no transaction; use [`register_fn_tx`](Self::register_fn_tx)
    /// or implement [`Handler`] to write in it.
    pub fn register_fn<F, Fut, O>(&mut self, id: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: IntoOutcome + 'static,
    {
        self.register(id, Arc::new(FnHandler(f)))
    }

    /// Registers a closure that borrows the message and the context and
    /// returns a boxed future, so it can write in the handler transaction:
    ///
    /// ```
    /// # use eventyard_receiver::{HandlerRegistry, HandlerOutcome};
    /// let mut handlers = HandlerRegistry::new();
    /// handlers.register_fn_tx("count", |msg, ctx| {
    ///     Box::pin(async move {
    ///         match ctx.execute("INSERT INTO seen (event_id) VALUES ($1)", &[&msg.event_id]).await {
    ///             Ok(_) => HandlerOutcome::done("counted"),
    ///             Err(e) => HandlerOutcome::retry(e.to_string()),
    ///         }
    ///     })
    /// });
    /// ```
    pub fn register_fn_tx<F>(&mut self, id: impl Into<String>, f: F) -> &mut Self
    where
        F: for<'a, 'c> Fn(&'a Message, &'a mut HandlerContext<'c>) -> BoxHandlerFuture<'a>
            + Send
            + Sync
            + 'static,
    {
        self.register(id, Arc::new(TxFnHandler(f)))
    }

    /// Registers a batch handler under `id`.
    pub fn register_batch(
        &mut self,
        id: impl Into<String>,
        handler: Arc<dyn BatchHandler>,
    ) -> &mut Self {
        self.handlers.insert(id.into(), HandlerKind::Batch(handler));
        self
    }

    /// The handler of `id`.
    pub fn get(&self, id: &str) -> Option<&HandlerKind> {
        self.handlers.get(id)
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.handlers.contains_key(id)
    }

    /// Every registered id, sorted (for `ey_component` and config checks).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}
