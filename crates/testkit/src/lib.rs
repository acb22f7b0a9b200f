//! Test support: a TCP [`proxy`] for fault tests, and a throwaway database per test on the real local services.
//!
//! Each [`TestDb`] is a fresh PostgreSQL database, MariaDB/MySQL database or
//! SQLite file with a unique name, dropped again when the value is dropped,
//! so tests run in parallel and leave nothing behind. Server URLs come from
//! `EVENTYARD_TEST_PG_URL` and `EVENTYARD_TEST_MYSQL_URL` (defaults: the
//! local services, `postgres://postgres@127.0.0.1:5432/test` and
//! `mysql://root@127.0.0.1:3306/test`).
//!
//! ```no_run
//! # async fn demo() {
//! let t = eventyard_testkit::TestDb::sqlite().await;
//! t.db.migrate().await.unwrap();
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use std::str::FromStr;

use eventyard_core::db::{Backend, Db, DbOptions};
use sqlx::{ConnectOptions, Connection, Executor};

/// The AMQP URL of the local RabbitMQ (`EVENTYARD_TEST_AMQP_URL`).
pub fn amqp_url() -> String {
    std::env::var("EVENTYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The admin URL for PostgreSQL tests.
pub fn pg_admin_url() -> String {
    std::env::var("EVENTYARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The admin URL for MariaDB/MySQL tests.
pub fn mysql_admin_url() -> String {
    std::env::var("EVENTYARD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A fresh, empty database that is dropped with this value.
#[derive(Debug)]
pub struct TestDb {
    /// A pool on the database.
    pub db: Db,
    /// The database's URL (for running the CLI against it).
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Server {
        admin_url: String,
        backend: Backend,
        name: String,
    },
    File(#[allow(dead_code)] tempfile::TempDir),
}

fn unique_name() -> String {
    format!("eyt_{}", uuid::Uuid::new_v4().simple())
}

fn replace_db_name(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let cut = base.rfind('/').expect("a server URL has a database path");
    let mut url = format!("{}/{}", &base[..cut], name);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl TestDb {
    /// A fresh database of `backend`.
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => TestDb::postgres().await,
            Backend::MySql => TestDb::mysql().await,
            Backend::Sqlite => TestDb::sqlite().await,
        }
    }

    /// A fresh PostgreSQL database.
    pub async fn postgres() -> TestDb {
        let admin_url = pg_admin_url();
        let name = unique_name();
        let mut admin = sqlx::postgres::PgConnectOptions::from_str(&admin_url)
            .unwrap()
            .connect()
            .await
            .expect("PostgreSQL answers (README.md, 'Run the tests', says how to start it)");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        admin.close().await.ok();
        TestDb::open(
            replace_db_name(&admin_url, &name),
            Backend::Postgres,
            admin_url,
            name,
        )
        .await
    }

    /// A fresh MariaDB/MySQL database.
    pub async fn mysql() -> TestDb {
        let admin_url = mysql_admin_url();
        let name = unique_name();
        let mut admin = sqlx::mysql::MySqlConnectOptions::from_str(&admin_url)
            .unwrap()
            .connect()
            .await
            .expect("MariaDB answers (README.md, 'Run the tests', says how to start it)");
        admin
            .execute(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4").as_str())
            .await
            .unwrap();
        admin.close().await.ok();
        TestDb::open(
            replace_db_name(&admin_url, &name),
            Backend::MySql,
            admin_url,
            name,
        )
        .await
    }

    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/eventyard.db", dir.path().display());
        let db = Db::connect_with(&url, &DbOptions::default().max_connections(4))
            .await
            .unwrap();
        TestDb {
            db,
            url,
            cleanup: Cleanup::File(dir),
        }
    }

    async fn open(url: String, backend: Backend, admin_url: String, name: String) -> TestDb {
        let db = Db::connect_with(&url, &DbOptions::default().max_connections(4))
            .await
            .unwrap();
        TestDb {
            db,
            url,
            cleanup: Cleanup::Server {
                admin_url,
                backend,
                name,
            },
        }
    }

    /// A fresh database of `backend` with the schema applied.
    pub async fn migrated(backend: Backend) -> TestDb {
        let t = TestDb::new(backend).await;
        t.db.migrate().await.expect("migrations apply");
        t
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Server {
            admin_url,
            backend,
            name,
        } = &self.cleanup
        else {
            return;
        };
        let (admin_url, backend, name, db) =
            (admin_url.clone(), *backend, name.clone(), self.db.clone());
        // Dropping runs inside the test's runtime; do the async cleanup on a
        // thread of its own and wait for it.
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                drop(db);
                match backend {
                    Backend::Postgres => {
                        if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&admin_url).await {
                            let _ = c
                                .execute(
                                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                                )
                                .await;
                        }
                    }
                    Backend::MySql => {
                        if let Ok(mut c) = sqlx::mysql::MySqlConnection::connect(&admin_url).await {
                            let _ = c
                                .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
                                .await;
                        }
                    }
                    Backend::Sqlite => {}
                }
            });
        });
        let _ = handle.join();
    }
}
