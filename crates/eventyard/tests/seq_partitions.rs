//! A partitioned sequenced event type (`partitions = 4`) over RabbitMQ's
//! consistent-hash exchange, consumed by two daemon subprocesses of one
//! subscriber: both hold partitions (database leases), several producers
//! publish, one daemon is killed (SIGKILL) mid-stream, the other takes over
//! every partition once the dead one's leases expire, and every producer's
//! events end applied exactly once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventyard_core::config::{ConfigWatcher, StaticCatalog, WatchOptions};
use eventyard_core::db::{Backend, Db};
use eventyard_core::with_pool;
use eventyard_sender::{EventMeta, Outbox, Publisher, PublisherOptions};
use eventyard_testkit::TestDb;
use eventyard_transport::{AmqpOptions, AmqpTransport, Transport};
use support::{free_port, scalar, start_daemon};

const PRODUCERS: u64 = 6;
const PER_PRODUCER: u64 = 250;
const PARTITIONS: i64 = 4;

/// The owner of each partition (>= 0) whose lease is live.
async fn holders(db: &Db) -> BTreeMap<i32, String> {
    let now = chrono::Utc::now();
    eventyard_receiver::partition::leases(db, Some("CRM"))
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.partition_no >= 0 && l.expires_at.is_some_and(|t| t >= now))
        .filter_map(|l| Some((l.partition_no, l.owner?)))
        .collect()
}

async fn wait_holders(db: &Db, secs: u64, what: &str, ok: impl Fn(&BTreeMap<i32, String>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = holders(db).await;
        if ok(&h) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {h:?}{}",
            support::daemon_log_tails(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_partitions_and_one_takes_over_after_a_kill() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let (store, event_type, _exchange, _queue) = support::sequenced_sql_type(&t).await;
    with_pool!(&t.db, pool => {
        sqlx::query(&format!("UPDATE ey_receive_config SET partitions = {PARTITIONS}"))
            .execute(pool).await.unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let with_lease = |path: std::path::PathBuf| {
        let mut s = std::fs::read_to_string(&path).unwrap();
        s.push_str("[receiver]\nseq_partition_lease = \"2s\"\n");
        std::fs::write(&path, s).unwrap();
        path
    };
    let settings_a = with_lease(support::subscriber_settings(
        dir.path(),
        &t,
        "crm-a",
        port_a,
    ));
    let settings_b = with_lease(support::subscriber_settings(
        dir.path(),
        &t,
        "crm-b",
        port_b,
    ));
    let daemon_a = start_daemon(&settings_a, port_a);
    let daemon_b = start_daemon(&settings_b, port_b);

    // Both hold partitions: 2 each.
    wait_holders(&t.db, 60, "both daemons hold partitions", |h| {
        h.len() == PARTITIONS as usize
            && h.values().filter(|o| *o == "crm-a").count() == 2
            && h.values().filter(|o| *o == "crm-b").count() == 2
    })
    .await;

    // The framework's publisher over RabbitMQ: the producer header is
    // stamped, the consistent-hash exchange routes by it.
    let amqp: Arc<dyn Transport> = Arc::new(
        AmqpTransport::connect(&eventyard_testkit::amqp_url(), AmqpOptions::default())
            .await
            .unwrap(),
    );
    let watcher = ConfigWatcher::start(
        Arc::clone(&store),
        Arc::new(
            StaticCatalog::new()
                .send_converters(["xml"])
                .receive_converters(["xml"])
                .handlers(["sql"]),
        ),
        WatchOptions::default(),
    )
    .await
    .unwrap();
    let publisher = Publisher::new(
        Outbox::new(t.db.clone()),
        watcher.subscribe(),
        Arc::new(eventyard_converter::Registry::with_builtins()),
        amqp,
        PublisherOptions::new("CORE"),
    );
    let producer = {
        let (p, et) = (publisher.clone(), event_type.clone());
        tokio::spawn(async move {
            for v in 1..=PER_PRODUCER {
                for n in 0..PRODUCERS {
                    let meta = EventMeta {
                        producer_id: Some(format!("P{n}")),
                        stream: Some("s".into()),
                        ..EventMeta::default()
                    };
                    p.publish_with(&et, &serde_json::json!({ "v": v }), meta)
                        .await
                        .unwrap();
                }
            }
        })
    };
    let total = (PRODUCERS * PER_PRODUCER) as i64;

    // Kill A mid-stream.
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM applied",
        300,
        120,
        "before the kill",
    )
    .await;
    let mut daemon_a = daemon_a;
    daemon_a.kill().unwrap();
    daemon_a.wait().unwrap();
    let at_kill = scalar(&t.db, "SELECT COUNT(*) FROM applied").await;
    assert!(at_kill < total, "killed mid-stream ({at_kill} applied)");

    // B takes every partition over once A's leases expire.
    wait_holders(&t.db, 60, "B holds every partition", |h| {
        h.len() == PARTITIONS as usize && h.values().all(|o| o == "crm-b")
    })
    .await;
    producer.await.unwrap();
    support::wait_count(
        &t.db,
        "SELECT COUNT(*) FROM applied",
        total,
        180,
        "after the takeover",
    )
    .await;
    // Let anything that would apply twice show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    support::stop(daemon_b);

    assert_eq!(scalar(&t.db, "SELECT COUNT(*) FROM applied").await, total);
    assert_eq!(
        scalar(&t.db, "SELECT COUNT(DISTINCT event_id) FROM applied").await,
        total,
        "every event applied exactly once"
    );
    // Per producer, applied in seq order (the handler's rows are in apply order).
    let out_of_order = scalar(
        &t.db,
        "SELECT COUNT(*) FROM (SELECT o.seq, LAG(o.seq) OVER (PARTITION BY o.producer_id ORDER BY a.id) AS prev \
         FROM applied a JOIN ey_outbox o ON o.event_id = a.event_id) x WHERE prev IS NOT NULL AND seq <> prev + 1",
    )
    .await;
    assert_eq!(out_of_order, 0, "each producer applied strictly in order");
    // Every replica equals its producer's state: the values 1..=N per producer.
    let bad = scalar(
        &t.db,
        &format!(
            "SELECT COUNT(*) FROM (SELECT o.producer_id, SUM(a.v) AS s, COUNT(*) AS n FROM applied a \
             JOIN ey_outbox o ON o.event_id = a.event_id GROUP BY o.producer_id) x \
             WHERE n <> {PER_PRODUCER} OR s <> {}",
            PER_PRODUCER * (PER_PRODUCER + 1) / 2
        ),
    )
    .await;
    assert_eq!(bad, 0);
    assert_eq!(
        scalar(
            &t.db,
            &format!("SELECT COUNT(*) FROM ey_stream_state WHERE last_seq = {PER_PRODUCER}")
        )
        .await,
        PRODUCERS as i64
    );
    assert_eq!(
        scalar(
            &t.db,
            "SELECT COUNT(*) FROM ey_inbox WHERE status IN ('received', 'retrying')"
        )
        .await,
        0
    );
}
