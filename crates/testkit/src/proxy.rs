//! A TCP proxy a test controls, to cut connections to a real service without
//! disturbing other tests (used for broker and database fault tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Forwards `127.0.0.1:<random port>` to an upstream service.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    connections: Mutex<Vec<AbortHandle>>,
    refuse_until: Mutex<Option<Instant>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (e.g. "127.0.0.1:5672").
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let upstream = upstream.to_owned();
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let refusing = accept_state
                    .refuse_until
                    .lock()
                    .unwrap()
                    .is_some_and(|until| Instant::now() < until);
                if refusing {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut connections = accept_state.connections.lock().unwrap();
                connections.retain(|c| !c.is_finished());
                connections.push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts new connections again after a [`cut`](Self::cut).
    pub fn allow(&self) {
        *self.state.refuse_until.lock().unwrap() = None;
    }

    /// The AMQP URL that goes through this proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Kills every current connection, and refuses new ones for `refuse_for`.
    pub fn cut(&self, refuse_for: Duration) {
        *self.state.refuse_until.lock().unwrap() = Some(Instant::now() + refuse_for);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// How many proxied connections are open.
    pub fn open_connections(&self) -> usize {
        let connections = self.state.connections.lock().unwrap();
        connections.iter().filter(|c| !c.is_finished()).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}
