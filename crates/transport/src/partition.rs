//! Partitioned queues: one logical subscription spread over `count` queues
//! by a hash of one message header (the producer id of sequenced events).
//!
//! ```text
//!  exchange (topic) ──binding keys──► <queue>.hash (x-consistent-hash, hash-header = H)
//!                                          ├── weight 1 ──► <queue>.p0
//!                                          ├── weight 1 ──► <queue>.p1
//!                                          └── …        ──► <queue>.p<count-1>
//! ```
//!
//! Every message with the same value of header `H` lands in the same
//! partition queue, so one consumer of that queue sees them in publish
//! order. [`Transport::declare_partitions`](crate::Transport::declare_partitions)
//! declares the whole set (all `count` queues, whoever consumes them: a
//! queue missing from the ring would move keys between partitions); then
//! each partition is consumed with [`Partitions::subscription`].
//!
//! On RabbitMQ this needs the `rabbitmq_consistent_hash_exchange` plugin
//! (`rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`, no restart).
//! The in-process transport hashes the header itself (FNV-1a, modulo
//! `count`), which is stable but not the broker's ring.

use crate::message::Subscription;

/// The AMQP header that carries the producer id of a sequenced event; the
/// consistent-hash exchange of a partitioned receive row hashes it.
pub const PRODUCER_HEADER: &str = "eventyard-producer";

/// A partitioned subscription: the template (`base`: queue name prefix,
/// exchange, binding keys, dead-letter and single-active-consumer settings,
/// prefetch), how many partitions, and the header hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partitions {
    /// The template. Its `queue` is the prefix of the partition queues and
    /// of the hash exchange; its `exchange` and `binding_keys` are where the
    /// hash exchange is bound from.
    pub base: Subscription,
    /// How many partitions (1 = not partitioned: the hash exchange, if any,
    /// is unbound from `base.exchange` and `base` is used as is).
    pub count: u32,
    /// The partitions that existed before (to unbind those ≥ `count` after a
    /// shrink); 0 if unknown.
    pub previous: u32,
    /// The header whose value decides the partition.
    pub hash_header: String,
}

impl Partitions {
    /// `count` partitions of `base`, hashed on [`PRODUCER_HEADER`].
    pub fn new(base: Subscription, count: u32) -> Self {
        Self {
            base,
            count: count.max(1),
            previous: 0,
            hash_header: PRODUCER_HEADER.to_owned(),
        }
    }

    /// Sets how many partitions existed before (see [`previous`](Self::previous)).
    pub fn previous(mut self, previous: u32) -> Self {
        self.previous = previous;
        self
    }

    /// The consistent-hash exchange: `<queue>.hash`.
    pub fn hash_exchange(&self) -> String {
        format!("{}.hash", self.base.queue)
    }

    /// The queue of partition `index`: `<queue>.p<index>`.
    pub fn queue(&self, index: u32) -> String {
        format!("{}.p{index}", self.base.queue)
    }

    /// The subscription that consumes partition `index`: its queue, the
    /// base's exchange (for the dead-letter exchange's name) and settings,
    /// and no binding keys (the queue is bound to the hash exchange by
    /// [`declare_partitions`](crate::Transport::declare_partitions)).
    pub fn subscription(&self, index: u32) -> Subscription {
        let mut sub = self.base.clone();
        sub.queue = self.queue(index);
        sub.binding_keys.clear();
        sub
    }

    /// The partition a header value falls in, as the in-process transport
    /// routes it (FNV-1a of the bytes, modulo `count`).
    pub fn in_process_partition(&self, value: &str) -> u32 {
        fnv_partition(value, self.count)
    }
}

/// FNV-1a of `value`, modulo `count` (at least 1).
pub(crate) fn fnv_partition(value: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(count.max(1))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subscriptions() {
        let p = Partitions::new(
            Subscription::new("q", "ex")
                .bind("A.*")
                .single_active_consumer(true),
            4,
        );
        assert_eq!(p.hash_exchange(), "q.hash");
        assert_eq!(p.queue(3), "q.p3");
        let s = p.subscription(2);
        assert_eq!(s.queue, "q.p2");
        assert_eq!(s.exchange, "ex");
        assert!(s.binding_keys.is_empty());
        assert!(s.single_active_consumer);
        assert!((0..100).all(|i| p.in_process_partition(&format!("P{i}")) < 4));
        assert_eq!(p.in_process_partition("x"), p.in_process_partition("x"));
    }
}
