//! Partitioned sequenced rows: the lease allocation (fair share, rebalance
//! when a second instance appears, takeover after a crash, shrink) on real
//! databases, and the in-process transport's partition routing.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use eventyard_core::db::Backend;
use eventyard_receiver::partition::{leases, members, PartitionLeases, INSPECTION_LEASE};
use eventyard_testkit::TestDb;
use eventyard_transport::{
    InProcessTransport, OutgoingMessage, Partitions, Subscription, Transport, PRODUCER_HEADER,
};

const TTL: Duration = Duration::from_secs(10);

fn set(v: &[u32]) -> BTreeSet<u32> {
    v.iter().copied().collect()
}

/// The holders of each partition as stored.
async fn owners(t: &TestDb) -> BTreeMap<i32, Option<String>> {
    leases(&t.db, Some("CRM"))
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.partition_no, l.owner))
        .collect()
}

async fn allocation(backend: Backend) {
    let t = TestDb::migrated(backend).await;
    let a = PartitionLeases::new(t.db.clone(), "CRM", "SEQ.P", "crm-a", TTL);
    let b = PartitionLeases::new(t.db.clone(), "CRM", "SEQ.P", "crm-b", TTL);
    let t0 = Utc::now();

    // Alone, A takes every partition, and the inspection lease.
    let r = a.round(4, t0).await.unwrap();
    assert_eq!(r.held, set(&[0, 1, 2, 3]));
    assert_eq!((r.share, r.live), (4, 1));
    assert!(r.inspector);
    let stored = owners(&t).await;
    assert_eq!(
        stored.len(),
        5,
        "4 partitions and the inspection row: {stored:?}"
    );
    assert!(stored.values().all(|o| o.as_deref() == Some("crm-a")));

    // B appears: nothing is free yet, so it holds nothing after its first round.
    let t1 = t0 + chrono::Duration::seconds(1);
    let r = b.round(4, t1).await.unwrap();
    assert_eq!((r.held.len(), r.share, r.live), (0, 2, 2));
    assert!(!r.inspector, "A still holds the inspection lease");
    // A's next round releases its extra partitions (the highest ones) …
    let r = a.round(4, t1).await.unwrap();
    assert_eq!(r.held, set(&[0, 1]));
    // … and B's next round takes them.
    let r = b.round(4, t1).await.unwrap();
    assert_eq!(r.held, set(&[2, 3]));
    let stored = owners(&t).await;
    assert_eq!(stored[&0].as_deref(), Some("crm-a"));
    assert_eq!(stored[&3].as_deref(), Some("crm-b"));
    assert_eq!(stored[&INSPECTION_LEASE].as_deref(), Some("crm-a"));
    // Stable: further rounds change nothing.
    assert_eq!(a.round(4, t1).await.unwrap().held, set(&[0, 1]));
    assert_eq!(b.round(4, t1).await.unwrap().held, set(&[2, 3]));

    // A crashes (no more rounds). Once its member row and leases expire,
    // B takes everything over, the inspection lease included.
    let t2 = t1 + chrono::Duration::seconds(5);
    let r = b.round(4, t2).await.unwrap();
    assert_eq!(r.held, set(&[2, 3]), "A's leases are still valid at +5 s");
    let t3 = t1 + chrono::Duration::seconds(11);
    let r = b.round(4, t3).await.unwrap();
    assert_eq!((r.live, r.share), (1, 4));
    assert_eq!(r.held, set(&[0, 1, 2, 3]));
    assert!(r.inspector);
    let live: Vec<String> = members(&t.db, Some("CRM"))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.expires_at >= t3)
        .map(|m| m.instance_id)
        .collect();
    assert_eq!(live, vec!["crm-b".to_string()]);

    // A comes back: B releases half, A takes it.
    let t4 = t3 + chrono::Duration::seconds(1);
    assert!(a.round(4, t4).await.unwrap().held.is_empty());
    assert_eq!(b.round(4, t4).await.unwrap().held, set(&[0, 1]));
    assert_eq!(a.round(4, t4).await.unwrap().held, set(&[2, 3]));

    // Shrink to 2 partitions: the rows beyond are deleted; whoever held them
    // loses them, and the shares are recomputed.
    let r = b.round(2, t4).await.unwrap();
    assert_eq!(
        r.held,
        set(&[0]),
        "B's share of 2 over 2 live instances is 1"
    );
    let r = a.round(2, t4).await.unwrap();
    assert_eq!(r.held, set(&[1]));
    assert_eq!(a.extent().await.unwrap(), 2);
    assert!(!owners(&t).await.contains_key(&2));

    // A graceful stop gives everything back at once.
    a.leave().await.unwrap();
    let r = b.round(2, t4).await.unwrap();
    assert_eq!((r.live, r.held), (1, set(&[0, 1])));
    assert!(r.inspector);
}

#[tokio::test]
async fn leases_share_rebalance_and_take_over_on_postgres() {
    allocation(Backend::Postgres).await;
}

#[tokio::test]
async fn leases_share_rebalance_and_take_over_on_sqlite() {
    allocation(Backend::Sqlite).await;
}

#[tokio::test]
async fn leases_share_rebalance_and_take_over_on_mariadb() {
    allocation(Backend::MySql).await;
}

/// Three instances racing for 7 partitions on every round end with shares
/// 3, 2, 2 and no partition held twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rounds_never_hand_a_partition_to_two_instances() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let names = ["crm-1", "crm-2", "crm-3"];
    let all: Vec<PartitionLeases> = names
        .iter()
        .map(|n| PartitionLeases::new(t.db.clone(), "CRM", "SEQ.R", *n, TTL))
        .collect();
    let now = Utc::now();
    // Register every member first so the shares are final.
    for l in &all {
        l.round(7, now).await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        let rounds = all.iter().map(|l| {
            let l = l.clone();
            tokio::spawn(async move { l.round(7, now).await.unwrap() })
        });
        held.clear();
        for r in rounds {
            held.push(r.await.unwrap().held);
        }
    }
    let total: usize = held.iter().map(BTreeSet::len).sum();
    assert_eq!(total, 7, "{held:?}");
    let union: BTreeSet<u32> = held.iter().flatten().copied().collect();
    assert_eq!(union, (0..7).collect());
    let mut sizes: Vec<usize> = held.iter().map(BTreeSet::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![2, 2, 3]);
    let stored = owners(&t).await;
    for (i, h) in held.iter().enumerate() {
        for p in h {
            assert_eq!(stored[&(*p as i32)].as_deref(), Some(names[i]));
        }
    }
}

/// The in-process broker routes each producer's messages to one partition
/// queue, in order, and the unpartitioned queue stops getting them.
#[tokio::test]
async fn in_process_transport_routes_each_producer_to_one_partition() {
    let t = InProcessTransport::new();
    let base = Subscription::new("q.part", "ex.part")
        .bind("SEQ.#")
        .single_active_consumer(true);
    // The row was unpartitioned before: its queue exists and is bound.
    let mut old = t.subscribe(base.clone()).await.unwrap();
    old.cancel().await.unwrap();
    let spec = Partitions::new(base.clone(), 4);
    t.declare_partitions(&spec).await.unwrap();
    t.declare_partitions(&spec).await.unwrap(); // idempotent

    let producers: Vec<String> = (0..12).map(|i| format!("P{i}")).collect();
    for seq in 1..=5 {
        for p in &producers {
            let msg = OutgoingMessage::new(
                "ex.part",
                "SEQ.X",
                format!("{p}-{seq}"),
                "SEQ.X",
                b"x".to_vec(),
            )
            .header(PRODUCER_HEADER, p.clone());
            t.publish(msg).await.unwrap();
        }
    }
    assert_eq!(t.queue_depth("q.part").unwrap().ready, 0, "unbound");
    let mut seen: BTreeMap<String, (u32, Vec<u32>)> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for i in 0..4 {
        let depth = t.queue_depth(&spec.queue(i)).unwrap().ready;
        if depth > 0 {
            used.insert(i);
        }
        let mut c = t.subscribe(spec.subscription(i)).await.unwrap();
        for _ in 0..depth {
            let d = tokio::time::timeout(Duration::from_secs(5), c.next())
                .await
                .unwrap()
                .unwrap();
            let producer = d.headers[PRODUCER_HEADER].clone();
            let (p, s) = d.message_id.as_deref().unwrap().rsplit_once('-').unwrap();
            assert_eq!(p, producer);
            let entry = seen.entry(producer.clone()).or_insert((i, Vec::new()));
            assert_eq!(entry.0, i, "{producer} in two partitions");
            entry.1.push(s.parse().unwrap());
            assert_eq!(spec.in_process_partition(&producer), i);
            d.acker.ack().await.unwrap();
        }
    }
    assert_eq!(seen.len(), producers.len());
    for (p, (_, seqs)) in &seen {
        assert_eq!(seqs, &vec![1, 2, 3, 4, 5], "{p} in order");
    }
    assert!(
        used.len() > 1,
        "12 producers spread over several partitions"
    );

    // Back to one partition: the hash exchange is unbound, the queue bound again.
    t.declare_partitions(&Partitions::new(base.clone(), 1))
        .await
        .unwrap();
    let _c = t.subscribe(base).await.unwrap();
    let msg = OutgoingMessage::new("ex.part", "SEQ.X", "late", "SEQ.X", b"x".to_vec())
        .header(PRODUCER_HEADER, "P1");
    t.publish(msg).await.unwrap();
    let total: usize = (0..4)
        .map(|i| t.queue_depth(&spec.queue(i)).unwrap().ready)
        .sum();
    assert_eq!(total, 0, "the partitions get nothing any more");
}
