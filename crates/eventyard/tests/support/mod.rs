//! What the daemon tests share: running `eventyard run` as a subprocess.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventyard_core::db::Db;
use eventyard_core::with_pool;

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

/// Starts `eventyard run --config settings` and waits until `/healthz` on
/// `port` answers.
pub fn start_daemon(settings: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .env_remove("EVENTYARD_DATABASE_URL")
        .env_remove("EVENTYARD_AMQP_URL")
        .env("EVENTYARD_LOG", "error")
        .args(["run", "--config"])
        .arg(settings)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(addr) {
        assert!(Instant::now() < deadline, "the daemon did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// One `i64` from a query.
pub async fn scalar(db: &Db, sql: &str) -> i64 {
    with_pool!(db, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap())
}
