//! The eventyard quickstart: one process that publishes and receives three
//! event types, one per send mode, and prints what happened.
//!
//! ```sh
//! cargo run -p eventyard-quickstart                       # SQLite in a temp file, in-process transport
//! cargo run -p eventyard-quickstart -- --services        # the local PostgreSQL and RabbitMQ
//! cargo run -p eventyard-quickstart -- --database-url … --amqp-url …   # any others
//! ```
//!
//! What it sets up (all as config rows, the way an operator would):
//!
//! | event type | send mode | converter | receive mode | handler |
//! |---|---|---|---|---|
//! | `ORDER.PLACED` | `realtime` | `delimited` (`order|customer|amount`) | `realtime`, 4 workers | `orders`: every 4th order fails once and is retried; a negative amount is refused (dead) |
//! | `STOCK.MOVED` | `batch`, every 3 s | `xml` | `realtime` | `log` (built in) |
//! | `PAYMENT.CAPTURED` | `realtime_batch` | `multi_delimited` | `batch`, every 2 s | `payments` (a batch handler) |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use eventyard::daemon::{Daemon, Settings};
use eventyard_core::config::{ConfigStore, RawReceiveRow, RawSendRow};
use eventyard_core::db::Db;
use eventyard_receiver::{
    BatchHandler, HandlerContext, HandlerOutcome, HandlerRegistry, Inbox, InboxStatus, Message,
};
use eventyard_sender::{OutboxStatus, Outcome};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "eventyard quickstart: publish and receive events in one process")]
struct Args {
    /// Database URL; default: SQLite in a temporary file.
    #[arg(long, env = "EVENTYARD_DATABASE_URL")]
    database_url: Option<String>,
    /// RabbitMQ URL; default: the in-process transport.
    #[arg(long, env = "EVENTYARD_AMQP_URL")]
    amqp_url: Option<String>,
    /// Events per type.
    #[arg(long, default_value_t = 20)]
    events: u32,
    /// Use the local PostgreSQL and RabbitMQ
    /// (`postgres://postgres@127.0.0.1:5432/test`, `amqp://guest:guest@127.0.0.1:5672/%2f`)
    /// unless --database-url / --amqp-url say otherwise.
    #[arg(long)]
    services: bool,
}

const ORDER: &str = "ORDER.PLACED";
const STOCK: &str = "STOCK.MOVED";
const PAYMENT: &str = "PAYMENT.CAPTURED";
const SYSTEM: &str = "SHOP";

const ORDER_RULES: &str = r#"
kind = "delimited"
delimiter = "|"
fields = ["order", "customer", "amount"]
"#;
const PAYMENT_RULES: &str = r#"
kind = "multi_delimited"
delimiter = "|"
record_delimiter = "@@"
records = "lines"
fields = ["payment", "method", "amount"]
"#;

/// Calls of the batch handler, to show batching in the table.
static PAYMENT_BATCHES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct Payments;

#[async_trait::async_trait]
impl BatchHandler for Payments {
    async fn handle_batch(
        &self,
        msgs: &[Message],
        _ctx: &mut HandlerContext<'_>,
    ) -> Vec<HandlerOutcome> {
        PAYMENT_BATCHES.fetch_add(1, Ordering::Relaxed);
        msgs.iter()
            .map(|m| {
                let lines = m.fields.records("lines").count();
                HandlerOutcome::done(format!("booked {lines} payment line(s)"))
            })
            .collect()
    }
}

fn handlers() -> HandlerRegistry {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("orders", |msg: Message| async move {
        let order: u32 = msg
            .fields
            .get_str("order")
            .and_then(|o| o.trim_start_matches("O-").parse().ok())
            .unwrap_or(0);
        let amount: i64 = msg
            .fields
            .get_str("amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        if amount < 0 {
            HandlerOutcome::fail(format!("order O-{order}: negative amount {amount}"))
        } else if order.is_multiple_of(4) && msg.attempt == 1 {
            HandlerOutcome::retry_after(
                Duration::from_millis(300),
                format!("order O-{order}: warehouse busy, try again"),
            )
        } else {
            HandlerOutcome::done(format!(
                "order O-{order} for {} accepted",
                msg.fields.get_str("customer").unwrap_or("?")
            ))
        }
    });
    handlers.register_batch("payments", Arc::new(Payments));
    handlers
}

async fn configure(db: &Db) -> Result<(), Box<dyn std::error::Error>> {
    // Start from a clean slate for the quickstart's own three event types, so
    // a second run on a server database counts only its own events.
    for table in ["ey_outbox", "ey_inbox"] {
        let sql = db
            .sql(&format!(
                "DELETE FROM {table} WHERE event_type IN ($1, $2, $3)"
            ))
            .into_owned();
        eventyard_core::with_pool!(db, pool => {
            sqlx::query(&sql).bind(ORDER).bind(STOCK).bind(PAYMENT).execute(pool).await?;
        });
    }
    let store = ConfigStore::new(db.clone());
    let mut order = RawSendRow::new(ORDER);
    order.converter_id = "delimited".into();
    order.converter_rules = Some(ORDER_RULES.into());
    order.retry_count = 3;
    store.upsert_send(&order).await?;

    let mut stock = RawSendRow::new(STOCK);
    stock.send_mode = "batch".into();
    stock.batch_cron = Some("@every 3s".into());
    stock.batch_size = 100;
    store.upsert_send(&stock).await?;

    let mut payment = RawSendRow::new(PAYMENT);
    payment.send_mode = "realtime_batch".into();
    payment.batch_cron = Some("@every 3s".into());
    payment.converter_id = "multi_delimited".into();
    payment.converter_rules = Some(PAYMENT_RULES.into());
    store.upsert_send(&payment).await?;

    let mut r = RawReceiveRow::new(ORDER, SYSTEM);
    r.handler_id = Some("orders".into());
    r.converter_id = "delimited".into();
    r.converter_rules = Some(ORDER_RULES.into());
    r.workers = 4;
    r.max_attempts = 3;
    r.backoff_ms = 200;
    store.upsert_receive(&r).await?;

    let mut r = RawReceiveRow::new(STOCK, SYSTEM);
    r.handler_id = Some("log".into());
    store.upsert_receive(&r).await?;

    let mut r = RawReceiveRow::new(PAYMENT, SYSTEM);
    r.process_mode = "batch".into();
    r.batch_cron = Some("@every 2s".into());
    r.handler_id = Some("payments".into());
    r.converter_id = "multi_delimited".into();
    r.converter_rules = Some(PAYMENT_RULES.into());
    store.upsert_receive(&r).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVENTYARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let mut args = Args::parse();
    if args.services {
        args.database_url
            .get_or_insert_with(|| "postgres://postgres@127.0.0.1:5432/test".into());
        args.amqp_url
            .get_or_insert_with(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    }
    let temp = tempfile::tempdir()?;
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", temp.path().join("quickstart.db").display()));
    let db = Db::connect(&database_url).await?;
    db.migrate().await?;
    configure(&db).await?;

    let mut settings = Settings::from_toml(
        r#"
        system_id = "SHOP"
        [http]
        listen = ""
        [config]
        poll_interval = "500ms"
        [retention]
        keep = "0s"
        "#,
    )?;
    settings.database_url = Some(database_url.clone());
    settings.amqp_url = args.amqp_url.clone();
    let running = Daemon::new(settings).handlers(handlers()).start().await?;
    println!(
        "eventyard quickstart on {} with the {} transport",
        db.backend().as_str(),
        if args.amqp_url.is_some() {
            "RabbitMQ"
        } else {
            "in-process"
        }
    );

    let publisher = running.publisher().clone();
    let started = Instant::now();
    let mut outcomes: BTreeMap<&str, BTreeMap<&'static str, u32>> = BTreeMap::new();
    for i in 1..=args.events {
        let amount = if i == 7 { -5 } else { i64::from(i) * 10 };
        let o = publisher
            .publish(ORDER, &serde_json::json!({"order": format!("O-{i}"), "customer": format!("C-{}", i % 5), "amount": amount}))
            .await?;
        let s = publisher
            .publish(
                STOCK,
                &serde_json::json!({"sku": format!("SKU-{i}"), "delta": -1}),
            )
            .await?;
        let p = publisher
            .publish(
                PAYMENT,
                &serde_json::json!({"lines": [
                    {"payment": format!("P-{i}"), "method": "card", "amount": i * 10},
                    {"payment": format!("P-{i}-fee"), "method": "fee", "amount": 1}
                ]}),
            )
            .await?;
        for (et, outcome) in [(ORDER, o.outcome), (STOCK, s.outcome), (PAYMENT, p.outcome)] {
            let name = match outcome {
                Outcome::Sent => "sent",
                Outcome::Queued => "queued",
                Outcome::Deferred { .. } => "deferred",
            };
            *outcomes.entry(et).or_default().entry(name).or_default() += 1;
        }
    }
    println!(
        "published {} events of each type; waiting for the batch schedules…",
        args.events
    );

    let inbox = Inbox::new(db.clone());
    let outbox = running.publisher().outbox().clone();
    let total = i64::from(args.events) * 3;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut finished = 0;
        for status in [InboxStatus::Done, InboxStatus::Dead] {
            finished += inbox.count(status, Some(SYSTEM), None).await?;
        }
        if finished >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    println!();
    println!(
        "{:<18} {:>6} {:>6} {:>9} {:>10} {:>8} {:>5}",
        "EVENT_TYPE", "SENT", "PENDING", "RECEIVED", "PROCESSED", "RETRIED", "DEAD"
    );
    for et in [ORDER, STOCK, PAYMENT] {
        let sent = outbox.count(OutboxStatus::Sent, Some(et)).await?;
        let pending = outbox.count(OutboxStatus::Pending, Some(et)).await?;
        let done = inbox
            .count(InboxStatus::Done, Some(SYSTEM), Some(et))
            .await?;
        let dead = inbox
            .count(InboxStatus::Dead, Some(SYSTEM), Some(et))
            .await?;
        let received = done
            + dead
            + inbox
                .count(InboxStatus::Received, Some(SYSTEM), Some(et))
                .await?
            + inbox
                .count(InboxStatus::Retrying, Some(SYSTEM), Some(et))
                .await?;
        let retried = inbox
            .list(&eventyard_receiver::InboxFilter {
                subscriber: Some(SYSTEM.into()),
                event_type: Some(et.into()),
                limit: Some(10_000),
                ..Default::default()
            })
            .await?
            .iter()
            .filter(|r| r.attempts > 1)
            .count();
        println!("{et:<18} {sent:>6} {pending:>6} {received:>9} {done:>10} {retried:>8} {dead:>5}");
    }
    println!();
    println!(
        "publish outcomes: {}",
        outcomes
            .iter()
            .map(|(et, o)| format!("{et} {o:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "payment batches handled: {}; took {:.1} s",
        PAYMENT_BATCHES.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    if let Some(dead) = inbox
        .list(&eventyard_receiver::InboxFilter {
            subscriber: Some(SYSTEM.into()),
            status: Some(InboxStatus::Dead),
            ..Default::default()
        })
        .await?
        .first()
    {
        println!(
            "dead event {} ({}): {}",
            dead.event_id,
            dead.event_type,
            dead.result.as_deref().unwrap_or("-")
        );
        println!(
            "replay it with: eventyard --database-url <url> events replay --inbox {}",
            dead.event_id
        );
    }
    running.shutdown().await;
    db.close().await;
    Ok(())
}
