//! Partitioned queues on RabbitMQ: a consistent-hash exchange (plugin
//! `rabbitmq_consistent_hash_exchange`) hashing one header, bound from the
//! topic exchange, and one durable queue per partition bound with weight 1.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeUnbindOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::convert::{self, short};
use super::AmqpTransport;
use crate::error::TransportError;
use crate::message::{dead_letter_exchange, dead_letter_queue, Subscription};
use crate::Partitions;

/// Each partition queue's weight on the hash ring: equal shares.
const WEIGHT: &str = "1";

fn topology(what: String) -> impl FnOnce(lapin::Error) -> TransportError {
    move |e| TransportError::Topology {
        what,
        source: Box::new(e),
    }
}

impl AmqpTransport {
    /// See [`Transport::declare_partitions`](crate::Transport::declare_partitions).
    pub(super) async fn declare_partitioned(
        &self,
        spec: &Partitions,
    ) -> Result<(), TransportError> {
        let base = &spec.base;
        let hash = spec.hash_exchange();
        if spec.count <= 1 {
            return self
                .unbind_exchange_if_present(&hash, &base.exchange, &base.binding_keys)
                .await;
        }
        self.inner.declare_exchange(&base.exchange).await?;
        let what = format!("partitioned queues `{}.p*`", base.queue);
        let spec_owned = spec.clone();
        let hash_owned = hash.clone();
        self.inner
            .with_channel(&what, |channel| async move {
                let spec = &spec_owned;
                let base = &spec.base;
                let hash = hash_owned;
                let hash_name = short(&hash, "the hash exchange name", "-")?;
                let args = convert::table(vec![("hash-header", convert::text(&spec.hash_header))]);
                channel
                    .exchange_declare(
                        hash_name.clone(),
                        ExchangeKind::Custom("x-consistent-hash".to_owned()),
                        ExchangeDeclareOptions {
                            durable: true,
                            ..ExchangeDeclareOptions::default()
                        },
                        args,
                    )
                    .await
                    .map_err(topology(format!(
                        "consistent-hash exchange `{hash}` (hash-header = {}; is the \
                         rabbitmq_consistent_hash_exchange plugin enabled?)",
                        spec.hash_header
                    )))?;
                let source = short(&base.exchange, "the exchange name", "-")?;
                for key in &base.binding_keys {
                    channel
                        .exchange_bind(
                            hash_name.clone(),
                            source.clone(),
                            short(key, "the binding key", "-")?,
                            ExchangeBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(topology(format!(
                            "binding exchange `{hash}` to exchange `{}` with key `{key}`",
                            base.exchange
                        )))?;
                }
                for index in 0..spec.count {
                    let sub = spec.subscription(index);
                    declare_queue(&channel, &sub).await?;
                    channel
                        .queue_bind(
                            short(&sub.queue, "the queue name", "-")?,
                            hash_name.clone(),
                            WEIGHT.into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(topology(format!(
                            "binding queue `{}` (partition {index}) to `{hash}`",
                            sub.queue
                        )))?;
                }
                Ok(())
            })
            .await?;
        // Partitions dropped by a shrink, and the unpartitioned queue, stop
        // getting messages (what they hold stays for an operator to drain).
        for index in spec.count..spec.previous {
            let queue = spec.queue(index);
            self.unbind_queue_if_present(&queue, &hash, &[WEIGHT.to_owned()])
                .await?;
        }
        self.unbind_queue_if_present(&base.queue, &base.exchange, &base.binding_keys)
            .await
    }

    /// Unbinds `queue` from `exchange` for each key, if the queue exists.
    async fn unbind_queue_if_present(
        &self,
        queue: &str,
        exchange: &str,
        keys: &[String],
    ) -> Result<(), TransportError> {
        let what = format!("unbinding queue `{queue}` from `{exchange}`");
        let (queue, exchange, keys) = (queue.to_owned(), exchange.to_owned(), keys.to_vec());
        self.inner
            .with_channel(&what.clone(), |channel| async move {
                let name = short(&queue, "the queue name", "-")?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                if channel
                    .queue_declare(name.clone(), passive, FieldTable::default())
                    .await
                    .is_err()
                {
                    return Ok(()); // absent: nothing is bound
                }
                for key in &keys {
                    channel
                        .queue_unbind(
                            name.clone(),
                            short(&exchange, "the exchange name", "-")?,
                            short(key, "the binding key", "-")?,
                            FieldTable::default(),
                        )
                        .await
                        .map_err(topology(format!("{what} (key `{key}`)")))?;
                }
                Ok(())
            })
            .await
    }

    /// Unbinds exchange `destination` from `source` for each key, if it exists.
    async fn unbind_exchange_if_present(
        &self,
        destination: &str,
        source: &str,
        keys: &[String],
    ) -> Result<(), TransportError> {
        let what = format!("unbinding exchange `{destination}` from `{source}`");
        let (destination, source, keys) =
            (destination.to_owned(), source.to_owned(), keys.to_vec());
        self.inner
            .with_channel(&what.clone(), |channel| async move {
                let dest = short(&destination, "the exchange name", "-")?;
                let passive = ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                };
                let exists = channel
                    .exchange_declare(
                        dest.clone(),
                        ExchangeKind::Custom("x-consistent-hash".to_owned()),
                        passive,
                        FieldTable::default(),
                    )
                    .await
                    .is_ok();
                if !exists || source.is_empty() {
                    return Ok(());
                }
                for key in &keys {
                    channel
                        .exchange_unbind(
                            dest.clone(),
                            short(&source, "the exchange name", "-")?,
                            short(key, "the binding key", "-")?,
                            ExchangeUnbindOptions::default(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(topology(format!("{what} (key `{key}`)")))?;
                }
                Ok(())
            })
            .await
    }
}

/// Declares a queue exactly as the consumer does (same arguments, so that
/// consuming it later is not refused), with its dead-letter exchange and queue.
async fn declare_queue(channel: &Channel, sub: &Subscription) -> Result<(), TransportError> {
    let queue = short(&sub.queue, "the queue name", "-")?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut args: Vec<(&str, AMQPValue)> = Vec::new();
    if sub.dead_letter {
        let dlx = dead_letter_exchange(&sub.exchange);
        let dlq = dead_letter_queue(&sub.queue);
        let dlx_name = short(&dlx, "the dead-letter exchange name", "-")?;
        channel
            .exchange_declare(
                dlx_name.clone(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!("dead-letter exchange `{dlx}`")))?;
        let dlq_name = short(&dlq, "the dead-letter queue name", "-")?;
        channel
            .queue_declare(dlq_name.clone(), durable, FieldTable::default())
            .await
            .map_err(topology(format!("dead-letter queue `{dlq}`")))?;
        channel
            .queue_bind(
                dlq_name,
                dlx_name,
                queue.clone(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(topology(format!("binding `{dlq}` to `{dlx}`")))?;
        args.push(("x-dead-letter-exchange", convert::text(&dlx)));
        args.push(("x-dead-letter-routing-key", convert::text(&sub.queue)));
    }
    if sub.single_active_consumer {
        args.push(("x-single-active-consumer", AMQPValue::Boolean(true)));
    }
    channel
        .queue_declare(queue, durable, convert::table(args))
        .await
        .map_err(topology(format!(
            "queue `{}` (with dead-letter = {}, x-single-active-consumer = {}; if it exists \
             with other arguments (PRECONDITION_FAILED), use a new queue name or delete the queue)",
            sub.queue, sub.dead_letter, sub.single_active_consumer
        )))?;
    Ok(())
}
