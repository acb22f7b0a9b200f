//! The in-process transport: a small broker inside the process.

mod fault;
mod topic;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use fault::Faults;
pub use fault::PublishFault;

use crate::error::TransportError;
use crate::message::{Acker, Delivery, OutgoingMessage, Settle, Settlement, Subscription};
use crate::partition::fnv_partition;
use crate::{dead_letter_queue, Consumer, Partitions, Transport};

/// A broker inside the process, for single-process deployments, the
/// quickstart and tests.
///
/// It follows the AMQP semantics that eventyard relies on:
///
/// - exchanges route by topic patterns (`*` one word, `#` zero or more); the
///   default exchange `""` routes to the queue named by the routing key;
///   publishing to an exchange declares it;
/// - publishing is mandatory: a message no queue is bound for is
///   [`TransportError::Unroutable`], and nothing is enqueued;
/// - queues live as long as the transport (they keep messages while nobody
///   consumes), with `<queue>.dlq` as dead-letter queue unless disabled;
/// - deliveries are held until settled; `nack(true)` requeues at the front with
///   `redelivered = true`; `nack(false)` and `reject_to_dead_letter` move the
///   message to the dead-letter queue (adding `x-first-death-queue`,
///   `x-first-death-reason` and `x-first-death-exchange` headers as RabbitMQ
///   does), or drop it when there is none;
/// - a cancelled or dropped consumer's unacknowledged deliveries return to the
///   front of the queue, marked redelivered, and its ackers then fail with
///   [`TransportError::ChannelClosed`];
/// - prefetch bounds each consumer's unacknowledged deliveries (0 = no limit);
///   with single-active-consumer only the oldest live consumer receives;
/// - partitioned queues ([`Transport::declare_partitions`]): a hash exchange
///   bound from a topic exchange routes each message to the partition
///   queue `FNV-1a(header value) mod count` (a missing header hashes as the
///   empty string), so one header value always reaches one queue.
///
/// Nothing survives the process: it is "durable" for the process only.
///
/// # Failure injection
///
/// Tests of code that publishes need a broker that fails on demand:
/// [`set_publish_failure`](Self::set_publish_failure) (every publish fails
/// while set), [`fail_next_publishes`](Self::fail_next_publishes) (the next
/// `n` fail) and [`fail_every_nth_publish`](Self::fail_every_nth_publish).
/// [`PublishFault`] says how each fails — including
/// [`PublishFault::LostConfirm`], where the message *is* enqueued but the
/// publisher gets an error, the case that produces duplicates on retry.
///
/// Clones share the same broker.
#[derive(Clone, Default)]
pub struct InProcessTransport {
    broker: Arc<Broker>,
}

/// How many messages a queue holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to be delivered.
    pub ready: usize,
    /// Delivered and not yet settled.
    pub unacked: usize,
    /// Live consumers.
    pub consumers: usize,
}

#[derive(Default)]
struct Broker {
    state: Mutex<State>,
    faults: Mutex<Faults>,
}

#[derive(Default)]
struct State {
    closed: bool,
    exchanges: HashMap<String, Vec<Binding>>,
    queues: HashMap<String, Queue>,
    next_consumer_id: u64,
    /// Hash exchanges by name.
    hash_exchanges: HashMap<String, HashExchange>,
    /// Exchange-to-exchange bindings: source exchange → (pattern, hash exchange).
    links: HashMap<String, Vec<(String, String)>>,
}

/// A consistent-hash exchange of the in-process broker.
struct HashExchange {
    header: String,
    count: u32,
    /// Partition index → queue.
    queues: BTreeMap<u32, String>,
}

struct Binding {
    pattern: String,
    queue: String,
}

struct Queue {
    ready: VecDeque<Message>,
    dead_letter: Option<String>,
    single_active: bool,
    /// In registration order: with single-active-consumer the first is the active one.
    consumers: Vec<ConsumerState>,
    notify: Arc<Notify>,
}

struct ConsumerState {
    id: u64,
    prefetch: u16,
    next_tag: u64,
    unacked: BTreeMap<u64, Message>,
    /// Every tag up to this one was settled by an `ack_multiple`.
    acked_upto: u64,
}

#[derive(Clone)]
struct Message {
    exchange: String,
    routing_key: String,
    message_id: String,
    event_type: String,
    content_encoding: Option<String>,
    headers: BTreeMap<String, String>,
    payload: Vec<u8>,
    redelivered: bool,
}

impl InProcessTransport {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `Some`, every publish fails with that fault; `None` turns it off.
    pub fn set_publish_failure(&self, fault: Option<PublishFault>) {
        self.broker.faults().always = fault;
    }

    /// The next `count` publishes fail with `fault` (added to any already queued).
    pub fn fail_next_publishes(&self, count: usize, fault: PublishFault) {
        let mut faults = self.broker.faults();
        faults.next.extend(std::iter::repeat_n(fault, count));
    }

    /// Every `n`th publish (counted from now) fails with `fault`; `n = 0` turns it off.
    pub fn fail_every_nth_publish(&self, n: u64, fault: PublishFault) {
        let mut faults = self.broker.faults();
        faults.every_nth = (n > 0).then_some((n, fault));
        faults.counter = 0;
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        *self.broker.faults() = Faults::default();
    }

    /// How many messages the queue holds, or `None` if it was never declared.
    pub fn queue_depth(&self, queue: &str) -> Option<QueueDepth> {
        let state = self.broker.state();
        state.queues.get(queue).map(|q| QueueDepth {
            ready: q.ready.len(),
            unacked: q.consumers.iter().map(|c| c.unacked.len()).sum(),
            consumers: q.consumers.len(),
        })
    }

    /// Removes the ready messages of a queue; returns how many.
    pub fn purge_queue(&self, queue: &str) -> usize {
        let mut state = self.broker.state();
        state.queues.get_mut(queue).map_or(0, |q| {
            let n = q.ready.len();
            q.ready.clear();
            n
        })
    }

    fn declare_queue(state: &mut State, sub: &Subscription) -> Result<(), TransportError> {
        let dead_letter = sub.dead_letter.then(|| dead_letter_queue(&sub.queue));
        if let Some(existing) = state.queues.get(&sub.queue) {
            if existing.dead_letter != dead_letter
                || existing.single_active != sub.single_active_consumer
            {
                return Err(TransportError::Topology {
                    what: format!("queue `{}`", sub.queue),
                    source:
                        "it exists with other arguments (dead letter or single active consumer)"
                            .into(),
                });
            }
        } else {
            state.queues.insert(
                sub.queue.clone(),
                Queue::new(dead_letter.clone(), sub.single_active_consumer),
            );
        }
        if let Some(dlq) = dead_letter {
            state
                .queues
                .entry(dlq)
                .or_insert_with(|| Queue::new(None, false));
        }
        let bindings = state.exchanges.entry(sub.exchange.clone()).or_default();
        for key in &sub.binding_keys {
            if !bindings
                .iter()
                .any(|b| b.pattern == *key && b.queue == sub.queue)
            {
                bindings.push(Binding {
                    pattern: key.clone(),
                    queue: sub.queue.clone(),
                });
            }
        }
        Ok(())
    }

    fn declare_partitioned(state: &mut State, spec: &Partitions) -> Result<(), TransportError> {
        let hash = spec.hash_exchange();
        if spec.count <= 1 {
            if let Some(links) = state.links.get_mut(&spec.base.exchange) {
                links.retain(|(_, h)| *h != hash);
            }
            return Ok(());
        }
        for i in 0..spec.count {
            Self::declare_queue(state, &spec.subscription(i))?;
        }
        let hx = state
            .hash_exchanges
            .entry(hash.clone())
            .or_insert_with(|| HashExchange {
                header: spec.hash_header.clone(),
                count: spec.count,
                queues: BTreeMap::new(),
            });
        hx.header = spec.hash_header.clone();
        hx.count = spec.count;
        hx.queues = (0..spec.count).map(|i| (i, spec.queue(i))).collect();
        let links = state.links.entry(spec.base.exchange.clone()).or_default();
        for key in &spec.base.binding_keys {
            if !links.iter().any(|(p, h)| p == key && *h == hash) {
                links.push((key.clone(), hash.clone()));
            }
        }
        // The unpartitioned queue no longer gets the messages.
        if let Some(bindings) = state.exchanges.get_mut(&spec.base.exchange) {
            bindings.retain(|b| {
                !(b.queue == spec.base.queue && spec.base.binding_keys.contains(&b.pattern))
            });
        }
        Ok(())
    }

    fn route(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let mut state = self.broker.state();
        if state.closed {
            return Err(TransportError::Closed);
        }
        let targets: Vec<String> = if msg.exchange.is_empty() {
            state
                .queues
                .contains_key(&msg.routing_key)
                .then(|| msg.routing_key.clone())
                .into_iter()
                .collect()
        } else {
            let bindings = state.exchanges.entry(msg.exchange.clone()).or_default();
            let mut targets: Vec<String> = bindings
                .iter()
                .filter(|b| topic::matches(&b.pattern, &msg.routing_key))
                .map(|b| b.queue.clone())
                .collect();
            if let Some(links) = state.links.get(&msg.exchange) {
                for (pattern, hash) in links {
                    if !topic::matches(pattern, &msg.routing_key) {
                        continue;
                    }
                    let Some(hx) = state.hash_exchanges.get(hash) else {
                        continue;
                    };
                    let value = msg.headers.get(&hx.header).map_or("", String::as_str);
                    if let Some(queue) = hx.queues.get(&fnv_partition(value, hx.count)) {
                        targets.push(queue.clone());
                    }
                }
            }
            targets.sort();
            targets.dedup();
            targets
        };
        if targets.is_empty() {
            return Err(TransportError::Unroutable {
                exchange: msg.exchange,
                routing_key: msg.routing_key,
                message_id: msg.message_id,
            });
        }
        let message = Message {
            exchange: msg.exchange,
            routing_key: msg.routing_key,
            message_id: msg.message_id,
            event_type: msg.event_type,
            content_encoding: msg.content_encoding,
            headers: msg.headers,
            payload: msg.payload,
            redelivered: false,
        };
        for name in targets {
            if let Some(queue) = state.queues.get_mut(&name) {
                queue.ready.push_back(message.clone());
                queue.notify.notify_waiters();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for InProcessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.broker.state();
        f.debug_struct("InProcessTransport")
            .field("exchanges", &state.exchanges.len())
            .field("queues", &state.queues.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl Broker {
    // A panic while holding the lock cannot leave the state half-updated in a
    // way that matters more than losing the whole broker, so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns a cancelled consumer's unacked messages to the front of its queue.
    fn remove_consumer(&self, queue: &str, id: u64) {
        let mut state = self.state();
        let Some(q) = state.queues.get_mut(queue) else {
            return;
        };
        let Some(pos) = q.consumers.iter().position(|c| c.id == id) else {
            return;
        };
        let consumer = q.consumers.remove(pos);
        for (_, mut msg) in consumer.unacked.into_iter().rev() {
            msg.redelivered = true;
            q.ready.push_front(msg);
        }
        q.notify.notify_waiters();
    }
}

impl Queue {
    fn new(dead_letter: Option<String>, single_active: bool) -> Self {
        Self {
            ready: VecDeque::new(),
            dead_letter,
            single_active,
            consumers: Vec::new(),
            notify: Arc::new(Notify::new()),
        }
    }
}

#[async_trait::async_trait]
impl Transport for InProcessTransport {
    async fn declare_exchange(&self, exchange: &str) -> Result<(), TransportError> {
        let mut state = self.broker.state();
        if state.closed {
            return Err(TransportError::Closed);
        }
        state.exchanges.entry(exchange.to_owned()).or_default();
        Ok(())
    }

    async fn publish(&self, msg: OutgoingMessage) -> Result<(), TransportError> {
        let fault = self.broker.faults().next_fault();
        match fault {
            None => self.route(msg),
            Some(fault) => {
                let err = fault.error(&msg);
                if fault == PublishFault::LostConfirm {
                    // The broker got it; only the confirm is lost.
                    self.route(msg)?;
                }
                Err(err)
            }
        }
    }

    async fn publish_many(&self, msgs: Vec<OutgoingMessage>) -> Vec<Result<(), TransportError>> {
        let mut results = Vec::with_capacity(msgs.len());
        for msg in msgs {
            results.push(self.publish(msg).await);
        }
        results
    }

    async fn subscribe(&self, sub: Subscription) -> Result<Box<dyn Consumer>, TransportError> {
        let mut state = self.broker.state();
        if state.closed {
            return Err(TransportError::Closed);
        }
        Self::declare_queue(&mut state, &sub)?;
        state.next_consumer_id += 1;
        let id = state.next_consumer_id;
        if let Some(queue) = state.queues.get_mut(&sub.queue) {
            queue.consumers.push(ConsumerState {
                id,
                prefetch: sub.prefetch,
                next_tag: 0,
                unacked: BTreeMap::new(),
                acked_upto: 0,
            });
        }
        Ok(Box::new(InProcessConsumer {
            broker: Arc::clone(&self.broker),
            queue: sub.queue,
            id,
            done: false,
        }))
    }

    async fn declare_partitions(&self, spec: &Partitions) -> Result<(), TransportError> {
        let mut state = self.broker.state();
        if state.closed {
            return Err(TransportError::Closed);
        }
        state
            .exchanges
            .entry(spec.base.exchange.clone())
            .or_default();
        Self::declare_partitioned(&mut state, spec)
    }

    async fn close(&self) -> Result<(), TransportError> {
        let mut state = self.broker.state();
        state.closed = true;
        for queue in state.queues.values() {
            queue.notify.notify_waiters();
        }
        Ok(())
    }
}

/// A consumer of the in-process broker.
struct InProcessConsumer {
    broker: Arc<Broker>,
    queue: String,
    id: u64,
    done: bool,
}

impl InProcessConsumer {
    /// Takes the next message if this consumer may have one now. `Err(())`
    /// means the consumer is finished for good.
    fn try_take(&self, state: &mut State) -> Result<Option<Delivery>, ()> {
        if state.closed {
            return Err(());
        }
        let Some(queue) = state.queues.get_mut(&self.queue) else {
            return Err(());
        };
        let Some(pos) = queue.consumers.iter().position(|c| c.id == self.id) else {
            return Err(());
        };
        if queue.single_active && pos != 0 {
            return Ok(None);
        }
        let consumer = &queue.consumers[pos];
        if consumer.prefetch != 0 && consumer.unacked.len() >= usize::from(consumer.prefetch) {
            return Ok(None);
        }
        let Some(msg) = queue.ready.pop_front() else {
            return Ok(None);
        };
        let consumer = &mut queue.consumers[pos];
        consumer.next_tag += 1;
        let tag = consumer.next_tag;
        consumer.unacked.insert(tag, msg.clone());
        let acker = Acker::new(Arc::new(InProcessAck {
            broker: Arc::clone(&self.broker),
            queue: self.queue.clone(),
            consumer: self.id,
            tag,
            message_id: msg.message_id.clone(),
        }));
        Ok(Some(Delivery {
            payload: msg.payload,
            message_id: Some(msg.message_id),
            event_type: Some(msg.event_type),
            content_encoding: msg.content_encoding,
            headers: msg.headers,
            redelivered: msg.redelivered,
            exchange: msg.exchange,
            routing_key: msg.routing_key,
            acker,
        }))
    }
}

impl fmt::Debug for InProcessConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessConsumer")
            .field("queue", &self.queue)
            .field("id", &self.id)
            .field("done", &self.done)
            .finish()
    }
}

#[async_trait::async_trait]
impl Consumer for InProcessConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.done {
                return None;
            }
            let notify = {
                let state = self.broker.state();
                match state.queues.get(&self.queue) {
                    Some(queue) => Arc::clone(&queue.notify),
                    None => return None,
                }
            };
            // Register interest before looking, so a publish between the look
            // and the wait is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = {
                let mut state = self.broker.state();
                self.try_take(&mut state)
            };
            match taken {
                Ok(Some(delivery)) => return Some(delivery),
                Ok(None) => notified.await,
                Err(()) => {
                    self.done = true;
                    self.broker.remove_consumer(&self.queue, self.id);
                    return None;
                }
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        self.done = true;
        self.broker.remove_consumer(&self.queue, self.id);
        Ok(())
    }
}

impl Drop for InProcessConsumer {
    fn drop(&mut self) {
        self.broker.remove_consumer(&self.queue, self.id);
    }
}

/// Settles one in-process delivery.
struct InProcessAck {
    broker: Arc<Broker>,
    queue: String,
    consumer: u64,
    tag: u64,
    message_id: String,
}

impl fmt::Debug for InProcessAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acker")
            .field("queue", &self.queue)
            .field("message_id", &self.message_id)
            .field("tag", &self.tag)
            .finish()
    }
}

#[async_trait::async_trait]
impl Settle for InProcessAck {
    async fn settle(&self, how: Settlement) -> Result<(), TransportError> {
        let mut state = self.broker.state();
        let closed = || TransportError::ChannelClosed {
            context: format!(
                "settling message {} from queue `{}`",
                self.message_id, self.queue
            ),
        };
        let already = || TransportError::AlreadySettled {
            queue: self.queue.clone(),
            message_id: self.message_id.clone(),
        };
        let state = &mut *state;
        let queue = state.queues.get_mut(&self.queue).ok_or_else(closed)?;
        let consumer = queue
            .consumers
            .iter_mut()
            .find(|c| c.id == self.consumer)
            .ok_or_else(closed)?;
        let Some(mut msg) = consumer.unacked.remove(&self.tag) else {
            let covered = self.tag <= consumer.acked_upto;
            return match how {
                Settlement::Ack | Settlement::AckMultiple if covered => Ok(()),
                _ => Err(already()),
            };
        };
        match how {
            Settlement::Ack => {}
            Settlement::AckMultiple => {
                consumer.unacked.retain(|&tag, _| tag > self.tag);
                consumer.acked_upto = consumer.acked_upto.max(self.tag);
            }
            Settlement::Nack { requeue: true } => {
                msg.redelivered = true;
                queue.ready.push_front(msg);
            }
            Settlement::Nack { requeue: false } | Settlement::Reject => {
                if let Some(dlq) = queue.dead_letter.clone() {
                    msg.headers
                        .entry("x-first-death-queue".into())
                        .or_insert_with(|| self.queue.clone());
                    msg.headers
                        .entry("x-first-death-reason".into())
                        .or_insert_with(|| "rejected".into());
                    msg.headers
                        .entry("x-first-death-exchange".into())
                        .or_insert_with(|| msg.exchange.clone());
                    msg.redelivered = false;
                    if let Some(target) = state.queues.get_mut(&dlq) {
                        target.ready.push_back(msg);
                        target.notify.notify_waiters();
                    }
                }
            }
        }
        // A settled delivery frees a prefetch slot (or requeued a message).
        if let Some(queue) = state.queues.get(&self.queue) {
            queue.notify.notify_waiters();
        }
        Ok(())
    }
}
