//! Coalescing of concurrent small writes into one statement.
//!
//! Many publishing tasks each want one outbox row inserted (or marked sent)
//! before they go on. Instead of one autocommit statement each, they queue
//! the item and wait; a single writer task takes everything queued so far
//! and writes it in one statement, then answers all waiters. Under load the
//! batches grow by themselves; alone, an item is written at once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(), Arc<str>>>;

/// A handle to a coalescing writer task.
#[derive(Debug)]
pub(crate) struct Coalescer<T> {
    tx: mpsc::Sender<(T, Reply)>,
}

impl<T> Clone for Coalescer<T> {
    fn clone(&self) -> Self {
        Coalescer {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static> Coalescer<T> {
    /// Spawns `writers` writer tasks; `write` gets every batch, at most
    /// `max_batch` items. A writer takes what is queued when it is free, so
    /// with more than one, a batch starts while another is being written.
    pub(crate) fn spawn<F, Fut>(max_batch: usize, writers: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let (tx, rx) = mpsc::channel::<(T, Reply)>(max_batch.max(1) * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let write = Arc::new(write);
        for _ in 0..writers.max(1) {
            let (rx, write) = (Arc::clone(&rx), Arc::clone(&write));
            tokio::spawn(async move {
                let mut items = Vec::with_capacity(max_batch);
                let mut replies = Vec::with_capacity(max_batch);
                loop {
                    {
                        // Hold the queue only while taking a batch from it.
                        let mut rx = rx.lock().await;
                        let Some((item, reply)) = rx.recv().await else {
                            return;
                        };
                        items.push(item);
                        replies.push(reply);
                        while items.len() < max_batch {
                            match rx.try_recv() {
                                Ok((item, reply)) => {
                                    items.push(item);
                                    replies.push(reply);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    let result = write(std::mem::take(&mut items))
                        .await
                        .map_err(Arc::<str>::from);
                    for reply in replies.drain(..) {
                        let _ = reply.send(result.clone());
                    }
                }
            });
        }
        Coalescer { tx }
    }

    /// Queues one item and waits until the batch holding it is written.
    pub(crate) async fn write(&self, item: T) -> Result<(), Arc<str>> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((item, reply))
            .await
            .map_err(|_| Arc::<str>::from("the outbox writer has stopped"))?;
        wait.await
            .map_err(|_| Arc::<str>::from("the outbox writer has stopped"))?
    }
}
