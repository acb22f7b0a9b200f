//! What the daemon tests share: running `eventyard run` as a subprocess.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventyard_core::config::{ConfigStore, RawReceiveRow, RawSendRow};
use eventyard_core::db::Db;
use eventyard_core::with_pool;
use eventyard_testkit::TestDb;

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET request; returns the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// Whether `/healthz` answers 200.
pub fn healthy(addr: SocketAddr) -> bool {
    get(addr, "/healthz").is_some_and(|(code, _)| code == 200)
}

/// The log files of the daemons started by this test binary, shown when a
/// wait fails.
static DAEMON_LOGS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The last lines of every daemon log of this test binary (a failed wait
/// shows them: a stall is otherwise hard to read after the fact).
pub fn daemon_log_tails(lines: usize) -> String {
    let logs = DAEMON_LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut out = String::new();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        out.push_str(&format!(
            "\n--- {} (last {} lines)\n",
            log.display(),
            tail.len()
        ));
        for l in tail {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Starts `eventyard run --config settings` and waits until `/healthz` on
/// `port` answers. Its warnings and errors go to `settings` with the
/// extension `.log` (appended, across restarts).
pub fn start_daemon(settings: &Path, port: u16) -> Daemon {
    let log_path = settings.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    DAEMON_LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(log_path);
    let child = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .env_remove("EVENTYARD_AMQP_URL")
        .env("EVENTYARD_LOG", "warn")
        .args(["run", "--config"])
        .arg(settings)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let daemon = Daemon(child);
    while !healthy(addr) {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon
}

/// A daemon subprocess, killed (SIGKILL) when dropped still running — so
/// that a failing test leaves no daemon behind to load the machine and
/// the services of the tests after it.
#[derive(Debug)]
pub struct Daemon(Child);

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One `i64` from a query.
pub async fn scalar(db: &Db, sql: &str) -> i64 {
    with_pool!(db, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap())
}

/// Writes the settings of a subscriber daemon (system `CRM`) on the test's
/// database and the local RabbitMQ, with `/healthz` on `port`.
pub fn subscriber_settings(dir: &Path, t: &TestDb, instance: &str, port: u16) -> PathBuf {
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(
        &path,
        format!(
            "database_url = \"{}\"\namqp_url = \"{}\"\nsystem_id = \"CRM\"\ninstance_id = \"{instance}\"\nroles = [\"subscriber\"]\n[http]\nlisten = \"127.0.0.1:{port}\"\n[config]\npoll_interval = \"200ms\"\n",
            t.url,
            eventyard_testkit::amqp_url()
        ),
    )
    .unwrap();
    path
}

/// Polls `sql` (a count) until it reaches `want`, failing after `secs`.
pub async fn wait_count(db: &Db, sql: &str, want: i64, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = scalar(db, sql).await;
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: only {n} of {want}{}",
            daemon_log_tails(40)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops a daemon subprocess gracefully (SIGTERM) and waits for it.
pub fn stop(mut daemon: Daemon) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
}

/// A sequenced event type handled by the built-in `sql` handler, which
/// appends each applied event to an `applied` table (no unique key on
/// purpose: a second application would show). Returns the config store,
/// the event type, its exchange and its queue.
pub async fn sequenced_sql_type(t: &TestDb) -> (Arc<ConfigStore>, String, String, String) {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (event_type, exchange) = (format!("SEQ.{suffix}"), format!("ex.{suffix}"));
    with_pool!(&t.db, pool => {
        sqlx::query("CREATE TABLE applied (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, v BIGINT NOT NULL)")
            .execute(pool).await.unwrap();
    });
    let store = Arc::new(ConfigStore::new(t.db.clone()));
    let mut send = RawSendRow::new(&event_type);
    send.exchange = exchange.clone();
    send.sequenced = true;
    send.retry_count = 0;
    store.upsert_send(&send).await.unwrap();
    let mut recv = RawReceiveRow::new(&event_type, "CRM");
    recv.exchange = exchange.clone();
    let queue = format!("q.{suffix}");
    recv.queue = Some(queue.clone());
    recv.handler_id = Some("sql".into());
    recv.sequenced = true;
    recv.converter_rules = Some(format!(
        "kind = \"xml\"\n[[fields]]\nname = \"v\"\npath = \"{event_type}/v\"\n"
    ));
    store.upsert_receive(&recv).await.unwrap();
    with_pool!(&t.db, pool => {
        sqlx::query("UPDATE ey_receive_config SET handler_config = 'INSERT INTO applied (event_id, v) VALUES (:event_id, :v::bigint)'")
            .execute(pool).await.unwrap();
    });
    (store, event_type, exchange, queue)
}
