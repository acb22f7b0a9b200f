//! `/metrics` (Prometheus text) and `/healthz` on a local port.
//!
//! A deliberately tiny HTTP/1.1 responder: two GET routes, one response per
//! connection. It keeps hyper out of the build for two endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventyard_core::db::Db;
use eventyard_core::with_pool;
use eventyard_receiver::Stats;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Serves until `shutdown` turns true. Returns the bound address through `bound`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    stats: Option<Arc<Stats>>,
    db: Db,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (metrics, stats, db) = (metrics.clone(), stats.clone(), db.clone());
                tokio::spawn(async move {
                    let _ = respond(stream, &metrics, stats.as_deref(), &db).await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn respond(
    mut stream: TcpStream,
    metrics: &PrometheusHandle,
    stats: Option<&Stats>,
    db: &Db,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    // Read the request head (bounded in size and time).
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut text = metrics.render();
            if let Some(stats) = stats {
                text.push_str(&super::exposition::render(&stats.snapshot()));
            }
            ("200 OK", "text/plain; version=0.0.4", text)
        }
        ("GET", "/healthz") => {
            if database_ok(db).await {
                ("200 OK", "text/plain", "ok\n".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "database unreachable\n".to_string(),
                )
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

async fn database_ok(db: &Db) -> bool {
    let check =
        async { with_pool!(db, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok()) };
    tokio::time::timeout(Duration::from_secs(3), check)
        .await
        .unwrap_or(false)
}

/// Binds the listener (so the caller learns the port before serving).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
