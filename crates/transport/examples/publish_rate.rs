//! Measures `publish_many` against the local RabbitMQ: N persistent ~500-byte
//! messages to a classic durable queue, confirms pipelined.
//!
//! ```text
//! cargo run --release -p eventyard-transport --example publish_rate -- [messages] [batch]
//! ```
//!
//! `EVENTYARD_AMQP_URL` overrides the broker URL, `EVENTYARD_MAX_IN_FLIGHT` the
//! per-channel in-flight bound, `EVENTYARD_PUBLISH_ORDER=any` publishes the
//! messages as [`PublishOrder::Any`] (spread over every publishing channel)
//! instead of the default `call` (one channel per call). The queue and exchange are
//! deleted at the end.

use std::time::Instant;

use eventyard_transport::{
    AmqpOptions, AmqpTransport, OutgoingMessage, PublishOrder, Subscription, Transport,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let url = std::env::var("EVENTYARD_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let mut options = AmqpOptions::new();
    if let Ok(n) = std::env::var("EVENTYARD_MAX_IN_FLIGHT") {
        options = options.max_in_flight(n.parse()?);
    }
    let order = match std::env::var("EVENTYARD_PUBLISH_ORDER").as_deref() {
        Ok("any") => PublishOrder::Any,
        Ok("call") | Err(_) => PublishOrder::Call,
        Ok(other) => {
            return Err(format!("EVENTYARD_PUBLISH_ORDER: `{other}` is not `call` or `any`").into())
        }
    };
    let transport = AmqpTransport::connect(&url, options).await?;
    let tag = std::process::id();
    let (exchange, queue) = (format!("ey-bench.{tag}"), format!("ey-bench.{tag}.q"));
    let mut consumer = transport
        .subscribe(Subscription::new(&queue, &exchange).bind("BENCH"))
        .await?;
    consumer.cancel().await?;

    let body = vec![b'x'; 500];
    let started = Instant::now();
    let mut sent = 0;
    let mut failed = 0;
    while sent + failed < total {
        let n = batch.min(total - sent - failed);
        let msgs = (0..n)
            .map(|i| {
                let id = format!("bench-{}", sent + failed + i);
                OutgoingMessage::new(&exchange, "BENCH", id, "BENCH.EVENT", body.clone())
                    .order(order.clone())
            })
            .collect();
        for result in transport.publish_many(msgs).await {
            match result {
                Ok(()) => sent += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "publish_many: {sent} confirmed, {failed} failed in {:.2} s = {:.0} msg/s (batch {batch}, order {order:?})",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    transport.delete_queue(&queue).await?;
    transport.delete_exchange(&exchange).await?;
    transport.close().await?;
    Ok(())
}
