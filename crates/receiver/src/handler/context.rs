//! [`HandlerContext`]: the transaction a handler writes its effect in.

use std::fmt;

use eventyard_core::config::ReceiveConfig;
use eventyard_core::db::{placeholders, Backend, Db};

/// The open transaction of a handler call, on whichever database the
/// receiver runs on. The inbox row turns `done` in this same transaction.
#[non_exhaustive]
pub enum Tx<'c> {
    /// A PostgreSQL transaction.
    #[cfg(feature = "postgres")]
    Postgres(&'c mut sqlx::PgConnection),
    /// A MySQL/MariaDB transaction.
    #[cfg(feature = "mysql")]
    MySql(&'c mut sqlx::MySqlConnection),
    /// A SQLite transaction.
    #[cfg(feature = "sqlite")]
    Sqlite(&'c mut sqlx::SqliteConnection),
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tx").field(&self.backend()).finish()
    }
}

impl Tx<'_> {
    /// The database this transaction is on.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "mysql")]
            Tx::MySql(_) => Backend::MySql,
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The same transaction, borrowed for a shorter while (one handler call).
    pub(crate) fn reborrow(&mut self) -> Tx<'_> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(c) => Tx::Postgres(c),
            #[cfg(feature = "mysql")]
            Tx::MySql(c) => Tx::MySql(c),
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(c) => Tx::Sqlite(c),
        }
    }

    /// Runs `sql` as it is, unprepared (savepoint statements; on
    /// PostgreSQL several may travel together).
    pub(crate) async fn raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "postgres")]
            Tx::Postgres(c) => sqlx::Executor::execute(&mut **c, sql).await.map(drop),
            #[cfg(feature = "mysql")]
            Tx::MySql(c) => sqlx::Executor::execute(&mut **c, sql).await.map(drop),
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(c) => sqlx::Executor::execute(&mut **c, sql).await.map(drop),
        }
    }
}

#[cfg(feature = "postgres")]
impl<'c> From<&'c mut sqlx::PgConnection> for Tx<'c> {
    fn from(c: &'c mut sqlx::PgConnection) -> Self {
        Tx::Postgres(c)
    }
}

#[cfg(feature = "mysql")]
impl<'c> From<&'c mut sqlx::MySqlConnection> for Tx<'c> {
    fn from(c: &'c mut sqlx::MySqlConnection) -> Self {
        Tx::MySql(c)
    }
}

#[cfg(feature = "sqlite")]
impl<'c> From<&'c mut sqlx::SqliteConnection> for Tx<'c> {
    fn from(c: &'c mut sqlx::SqliteConnection) -> Self {
        Tx::Sqlite(c)
    }
}

/// What a handler gets besides the message: the transaction in which the
/// inbox row is marked `done`, the database, and the event type's config.
///
/// Write the handler's effect through [`execute`](Self::execute) or the
/// backend connection ([`postgres`](Self::postgres), [`mysql`](Self::mysql),
/// [`sqlite`](Self::sqlite)); never commit or roll back that connection
/// yourself — eventyard does, according to the [`HandlerOutcome`](crate::HandlerOutcome).
pub struct HandlerContext<'c> {
    tx: Tx<'c>,
    /// Whether the handler reached for the transaction (any accessor).
    touched: bool,
    db: &'c Db,
    config: &'c ReceiveConfig,
    handler_config: Option<&'c str>,
}

impl fmt::Debug for HandlerContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerContext")
            .field("tx", &self.tx)
            .field("event_type", &self.config.event_type)
            .field("handler_config", &self.handler_config)
            .finish()
    }
}

impl<'c> HandlerContext<'c> {
    /// A context over an open transaction. The receiver builds these; tests
    /// of a handler can too (begin a transaction, pass `&mut *tx`).
    pub fn new(
        tx: impl Into<Tx<'c>>,
        db: &'c Db,
        config: &'c ReceiveConfig,
        handler_config: Option<&'c str>,
    ) -> Self {
        HandlerContext {
            tx: tx.into(),
            touched: false,
            db,
            config,
            handler_config,
        }
    }

    /// The transaction, whichever the backend.
    pub fn tx(&mut self) -> &mut Tx<'c> {
        self.touched = true;
        &mut self.tx
    }

    /// Whether the handler reached for the transaction through any of the
    /// accessors (the receiver uses it to know what a failure must undo).
    pub(crate) fn touched_transaction(&self) -> bool {
        self.touched
    }

    /// The database backend of the transaction.
    pub fn backend(&self) -> Backend {
        self.tx.backend()
    }

    /// The PostgreSQL connection of the transaction, when on PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        self.touched = true;
        #[allow(unreachable_patterns)]
        match &mut self.tx {
            Tx::Postgres(c) => Some(&mut **c),
            _ => None,
        }
    }

    /// The MySQL/MariaDB connection of the transaction, when on MySQL.
    #[cfg(feature = "mysql")]
    pub fn mysql(&mut self) -> Option<&mut sqlx::MySqlConnection> {
        self.touched = true;
        #[allow(unreachable_patterns)]
        match &mut self.tx {
            Tx::MySql(c) => Some(&mut **c),
            _ => None,
        }
    }

    /// The SQLite connection of the transaction, when on SQLite.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        self.touched = true;
        #[allow(unreachable_patterns)]
        match &mut self.tx {
            Tx::Sqlite(c) => Some(&mut **c),
            _ => None,
        }
    }

    /// The database pool, for reads that need not be part of the
    /// transaction. Writes made through it commit on their own (see the
    /// pitfalls in the [module docs](crate::handler)).
    pub fn db(&self) -> &Db {
        self.db
    }

    /// The event type's `ey_receive_config` row.
    pub fn config(&self) -> &ReceiveConfig {
        self.config
    }

    /// The row's `handler_config` text (e.g. the `sql` handler's statement).
    pub fn handler_config(&self) -> Option<&str> {
        self.handler_config
    }

    /// Runs one statement in the transaction, with `$1, $2, …` placeholders
    /// (rewritten to `?` on MySQL) bound to `args` as text, and returns the
    /// rows affected. On PostgreSQL, cast parameters meant for non-text
    /// columns (`$2::int`).
    pub async fn execute(&mut self, statement: &str, args: &[&str]) -> Result<u64, sqlx::Error> {
        let sql = placeholders(self.backend(), statement);
        let sql: &str = &sql;
        macro_rules! run {
            ($conn:expr) => {{
                let mut q = sqlx::query(sql);
                for a in args {
                    q = q.bind(*a);
                }
                Ok(q.execute(&mut **$conn).await?.rows_affected())
            }};
        }
        self.touched = true;
        match &mut self.tx {
            #[cfg(feature = "postgres")]
            Tx::Postgres(c) => run!(c),
            #[cfg(feature = "mysql")]
            Tx::MySql(c) => run!(c),
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(c) => run!(c),
        }
    }

    /// Runs one statement with already-ordered optional text arguments
    /// (`None` binds NULL). Used by the `sql` handler.
    pub(crate) async fn execute_opt(
        &mut self,
        statement: &str,
        args: &[Option<String>],
    ) -> Result<u64, sqlx::Error> {
        macro_rules! run {
            ($conn:expr) => {{
                let mut q = sqlx::query(statement);
                for a in args {
                    q = q.bind(a.as_deref());
                }
                Ok(q.execute(&mut **$conn).await?.rows_affected())
            }};
        }
        self.touched = true;
        match &mut self.tx {
            #[cfg(feature = "postgres")]
            Tx::Postgres(c) => run!(c),
            #[cfg(feature = "mysql")]
            Tx::MySql(c) => run!(c),
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(c) => run!(c),
        }
    }
}
