//! Migrations and the config store on the three real databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventyard_core::config::{
    ConfigStore, ProcessMode, RawReceiveRow, RawSendRow, SendMode, StaticCatalog, Table,
};
use eventyard_core::db::{Backend, Db};
use eventyard_core::{with_pool, Compression};
use eventyard_testkit::TestDb;

const ALL: [Backend; 3] = [Backend::Postgres, Backend::MySql, Backend::Sqlite];

fn catalog() -> StaticCatalog {
    StaticCatalog::new()
        .send_converters(["xml", "delimited"])
        .receive_converters(["xml", "delimited"])
        .handlers(["log", "audit"])
}

async fn exec(db: &Db, sql: &str) {
    let sql = db.sql(sql);
    with_pool!(db, pool => { sqlx::query(&sql).execute(pool).await.unwrap(); });
}

async fn try_exec(db: &Db, sql: &str) -> Result<(), sqlx::Error> {
    let sql = db.sql(sql);
    with_pool!(db, pool => sqlx::query(&sql).execute(pool).await.map(|_| ()))
}

async fn exec_bin(db: &Db, sql: &str) -> Result<(), sqlx::Error> {
    let sql = db.sql(sql);
    with_pool!(db, pool => sqlx::query(&sql).bind(vec![0u8]).execute(pool).await.map(|_| ()))
}

async fn count(db: &Db, sql: &str) -> i64 {
    with_pool!(db, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap())
}

#[tokio::test]
async fn migrations_apply_and_reapply_on_every_database() {
    for backend in ALL {
        let t = TestDb::new(backend).await;
        t.db.migrate().await.unwrap();
        t.db.migrate().await.unwrap();
        let applied = count(&t.db, "SELECT COUNT(*) FROM _sqlx_migrations").await;
        assert_eq!(
            applied,
            eventyard_core::migrate::latest_version(),
            "{backend:?}"
        );
        for table in [
            "ey_send_config",
            "ey_receive_config",
            "ey_outbox",
            "ey_inbox",
            "ey_stream_state",
            "ey_snapshot",
            "ey_component",
            "ey_config_version",
        ] {
            let n = count(&t.db, &format!("SELECT COUNT(*) FROM {table}")).await;
            let expected = i64::from(table == "ey_config_version");
            assert_eq!(n, expected, "{backend:?} {table}");
        }
    }
}

#[tokio::test]
async fn check_constraints_guard_the_value_sets() {
    for backend in ALL {
        let t = TestDb::migrated(backend).await;
        let db = &t.db;
        for bad in [
            "INSERT INTO ey_send_config (event_type, send_mode) VALUES ('A', 'turbo')",
            "INSERT INTO ey_send_config (event_type, compression) VALUES ('A', 'zstd')",
            "INSERT INTO ey_receive_config (event_type, subscriber, process_mode) VALUES ('A', 's', 'later')",
            "INSERT INTO ey_receive_config (event_type, subscriber, workers) VALUES ('A', 's', 0)",
            "INSERT INTO ey_outbox (event_id, event_type, status, payload) VALUES ('e1', 'A', 'lost', $1)",
            "INSERT INTO ey_inbox (event_id, event_type, subscriber, status, payload) VALUES ('e1', 'A', 's', 'odd', $1)",
        ] {
            let result = if bad.contains("$1") { exec_bin(db, bad).await } else { try_exec(db, bad).await };
            assert!(result.is_err(), "{backend:?} accepted: {bad}");
        }
        // Inbox rows are unique per (subscriber, event_id), not per event id.
        exec_bin(db, "INSERT INTO ey_inbox (event_id, event_type, subscriber, payload) VALUES ('e1', 'A', 's1', $1)").await.unwrap();
        exec_bin(db, "INSERT INTO ey_inbox (event_id, event_type, subscriber, payload) VALUES ('e1', 'A', 's2', $1)").await.unwrap();
        assert!(exec_bin(db, "INSERT INTO ey_inbox (event_id, event_type, subscriber, payload) VALUES ('e1', 'A', 's1', $1)").await.is_err());
        exec_bin(
            db,
            "INSERT INTO ey_outbox (event_id, event_type, payload) VALUES ('o1', 'A', $1)",
        )
        .await
        .unwrap();
        assert!(exec_bin(
            db,
            "INSERT INTO ey_outbox (event_id, event_type, payload) VALUES ('o1', 'B', $1)"
        )
        .await
        .is_err());
    }
}

#[tokio::test]
async fn config_rows_round_trip_on_every_database() {
    for backend in ALL {
        let t = TestDb::migrated(backend).await;
        let store = ConfigStore::new(t.db.clone());
        let mut send = RawSendRow::new("ACCT.OPENED");
        send.send_mode = "realtime_batch".into();
        send.batch_cron = Some("*/30 * * * * *".into());
        send.compression = "deflate".into();
        send.routing_key = Some("acct.opened".into());
        send.retry_count = 7;
        send.sequenced = true;
        store.upsert_send(&send).await.unwrap();
        let mut recv = RawReceiveRow::new("ACCT.OPENED", "crm");
        recv.process_mode = "batch".into();
        recv.handler_id = Some("audit".into());
        recv.converter_id = "delimited".into();
        recv.converter_rules = Some("kind = \"delimited\"\nfields = [\"名字\", \"b\"]".into());
        recv.workers = 16;
        recv.batch_cron = Some("CRON_TZ=Asia/Shanghai 0 30 2 * * *".into());
        recv.backoff_ms = 2500;
        recv.queue = Some("crm.acct".into());
        store.upsert_receive(&recv).await.unwrap();

        let rows = store.send_rows().await.unwrap();
        assert_eq!(rows.len(), 1);
        let mut got = rows[0].clone();
        assert!(
            got.updated_at.is_some(),
            "{backend:?}: updated_at set by default"
        );
        got.updated_at = None;
        assert_eq!(got, send, "{backend:?}");
        let rows = store.receive_rows().await.unwrap();
        let mut got = rows[0].clone();
        got.updated_at = None;
        assert_eq!(got, recv, "{backend:?}");

        let loaded = store.load(&catalog()).await.unwrap();
        assert!(
            loaded.problems.is_empty(),
            "{backend:?}: {:?}",
            loaded.problems
        );
        let s = loaded.config.send("ACCT.OPENED").unwrap();
        assert_eq!(s.send_mode, SendMode::RealtimeBatch);
        assert_eq!(s.compression, Compression::Deflate);
        assert_eq!(s.routing_key, "acct.opened");
        assert_eq!(s.retry_count, 7);
        assert!(s.batch_schedule.is_some());
        let r = loaded.config.receive("ACCT.OPENED", "crm").unwrap();
        assert_eq!(r.process_mode, ProcessMode::Batch);
        assert_eq!(r.workers, 16);
        assert_eq!(r.backoff.as_millis(), 2500);
        assert_eq!(r.queue, "crm.acct");
        assert_eq!(r.binding_key, "ACCT.OPENED", "defaults to the event type");

        // Upsert replaces; delete removes.
        send.retry_count = 1;
        store.upsert_send(&send).await.unwrap();
        assert_eq!(store.send_rows().await.unwrap()[0].retry_count, 1);
        assert!(store.delete_receive("ACCT.OPENED", "crm").await.unwrap());
        assert!(!store.delete_receive("ACCT.OPENED", "crm").await.unwrap());
        assert!(store.receive_rows().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn plain_sql_edits_bump_the_config_version() {
    for backend in ALL {
        let t = TestDb::migrated(backend).await;
        let store = ConfigStore::new(t.db.clone());
        let v0 = store.version().await.unwrap();
        exec(
            &t.db,
            "INSERT INTO ey_send_config (event_type) VALUES ('X')",
        )
        .await;
        let v1 = store.version().await.unwrap();
        assert!(v1 > v0, "{backend:?}: insert bumps");
        exec(
            &t.db,
            "UPDATE ey_send_config SET retry_count = 9 WHERE event_type = 'X'",
        )
        .await;
        let v2 = store.version().await.unwrap();
        assert!(v2 > v1, "{backend:?}: update bumps");
        exec(
            &t.db,
            "INSERT INTO ey_receive_config (event_type, subscriber) VALUES ('X', 's')",
        )
        .await;
        exec(&t.db, "DELETE FROM ey_receive_config").await;
        let v3 = store.version().await.unwrap();
        assert!(v3 >= v2 + 2, "{backend:?}: receive insert and delete bump");
        exec(&t.db, "DELETE FROM ey_send_config").await;
        assert!(
            store.version().await.unwrap() > v3,
            "{backend:?}: delete bumps"
        );
    }
}

#[tokio::test]
async fn updated_at_moves_on_update() {
    for backend in ALL {
        let t = TestDb::migrated(backend).await;
        let store = ConfigStore::new(t.db.clone());
        exec(&t.db, "INSERT INTO ey_send_config (event_type, updated_at) VALUES ('X', '2001-01-01 00:00:00')").await;
        let before = store.send_rows().await.unwrap()[0].updated_at.unwrap();
        exec(
            &t.db,
            "UPDATE ey_send_config SET retry_count = 9 WHERE event_type = 'X'",
        )
        .await;
        let after = store.send_rows().await.unwrap()[0].updated_at.unwrap();
        assert!(after > before, "{backend:?}: {before} -> {after}");
    }
}

#[tokio::test]
async fn recorded_components_are_shared_across_instances() {
    for backend in ALL {
        let t = TestDb::migrated(backend).await;
        let store = ConfigStore::new(t.db.clone());
        store
            .record_components("daemon-a", "handler", &["billing".into(), "audit".into()])
            .await
            .unwrap();
        store
            .record_components("daemon-b", "handler", &["billing".into()])
            .await
            .unwrap();
        store
            .record_components("daemon-a", "handler", &["billing".into()])
            .await
            .unwrap();
        let got = store.recorded_components().await.unwrap();
        assert_eq!(
            got,
            vec![("handler".to_string(), "billing".to_string())],
            "{backend:?}"
        );
    }
}

// ---- validation, through the database ----

async fn problems_for_send(
    backend: Backend,
    row: RawSendRow,
) -> Vec<(Table, String, &'static str, String)> {
    let t = TestDb::migrated(backend).await;
    let store = ConfigStore::new(t.db.clone());
    store.upsert_send(&row).await.unwrap();
    let loaded = store.load(&catalog()).await.unwrap();
    assert!(
        loaded.config.send(&row.event_type).is_none(),
        "an invalid row is not served"
    );
    loaded
        .problems
        .into_iter()
        .map(|p| {
            let text = p.to_string();
            assert!(
                text.contains(&row.event_type),
                "message names the event type: {text}"
            );
            assert!(text.contains(p.column), "message names the column: {text}");
            assert!(
                text.contains("ey_send_config"),
                "message names the table: {text}"
            );
            (p.table, p.event_type, p.column, p.message)
        })
        .collect()
}

async fn problems_for_receive(backend: Backend, row: RawReceiveRow) -> Vec<(&'static str, String)> {
    let t = TestDb::migrated(backend).await;
    let store = ConfigStore::new(t.db.clone());
    store.upsert_receive(&row).await.unwrap();
    let loaded = store.load(&catalog()).await.unwrap();
    assert!(loaded
        .config
        .receive(&row.event_type, &row.subscriber)
        .is_none());
    loaded
        .problems
        .into_iter()
        .map(|p| {
            let text = p.to_string();
            assert!(text.contains(&row.event_type), "{text}");
            assert!(text.contains(&row.subscriber), "{text}");
            assert!(text.contains(&format!("`{}`", p.column)), "{text}");
            assert!(text.contains("ey_receive_config"), "{text}");
            (p.column, p.message)
        })
        .collect()
}

fn only_column<T: std::fmt::Debug>(problems: &[T], column: impl Fn(&T) -> &str, want: &str) {
    assert!(!problems.is_empty(), "expected a problem in `{want}`");
    assert!(problems.iter().all(|p| column(p) == want), "{problems:?}");
}

#[tokio::test]
async fn persist_off_is_only_for_realtime() {
    let mut row = RawSendRow::new("ORDER.PAID");
    row.send_mode = "batch".into();
    row.batch_cron = Some("@every 5s".into());
    row.persist = false;
    let problems = problems_for_send(Backend::Postgres, row.clone()).await;
    only_column(&problems, |p| p.2, "persist");
    assert!(problems[0].3.contains("realtime"), "{problems:?}");
    assert_eq!(problems[0].0, Table::Send);
    assert_eq!(problems[0].1, "ORDER.PAID");

    row.send_mode = "realtime".into();
    let t = TestDb::migrated(Backend::Sqlite).await;
    let store = ConfigStore::new(t.db.clone());
    store.upsert_send(&row).await.unwrap();
    let loaded = store.load(&catalog()).await.unwrap();
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert!(!loaded.config.send("ORDER.PAID").unwrap().persist);
}

#[tokio::test]
async fn batch_modes_need_a_parsable_cron() {
    let mut row = RawSendRow::new("ORDER.PAID");
    row.send_mode = "realtime_batch".into();
    row.batch_cron = None;
    let problems = problems_for_send(Backend::Sqlite, row.clone()).await;
    only_column(&problems, |p| p.2, "batch_cron");
    assert!(problems[0].3.contains("required"), "{problems:?}");

    row.batch_cron = Some("every tuesday".into());
    let problems = problems_for_send(Backend::MySql, row).await;
    only_column(&problems, |p| p.2, "batch_cron");
    assert!(problems[0].3.contains("every tuesday"), "{problems:?}");

    let mut recv = RawReceiveRow::new("ORDER.PAID", "erp");
    recv.process_mode = "batch".into();
    recv.handler_id = Some("log".into());
    let problems = problems_for_receive(Backend::Postgres, recv).await;
    only_column(&problems, |p| p.0, "batch_cron");
}

#[tokio::test]
async fn unknown_ids_are_rejected() {
    let mut row = RawSendRow::new("ORDER.PAID");
    row.converter_id = "json-ish".into();
    let problems = problems_for_send(Backend::Sqlite, row).await;
    only_column(&problems, |p| p.2, "converter_id");
    assert!(problems[0].3.contains("json-ish"), "{problems:?}");

    let mut recv = RawReceiveRow::new("ORDER.PAID", "erp");
    recv.handler_id = Some("ghost".into());
    let problems = problems_for_receive(Backend::Sqlite, recv.clone()).await;
    only_column(&problems, |p| p.0, "handler_id");
    assert!(problems[0].1.contains("ghost"), "{problems:?}");

    recv.handler_id = None;
    let problems = problems_for_receive(Backend::Sqlite, recv.clone()).await;
    only_column(&problems, |p| p.0, "handler_id");
    assert!(problems[0].1.contains("required"), "{problems:?}");

    recv.handler_id = Some("log".into());
    recv.converter_id = "nope".into();
    let problems = problems_for_receive(Backend::MySql, recv).await;
    only_column(&problems, |p| p.0, "converter_id");
}

#[tokio::test]
async fn workers_must_be_sane() {
    for workers in [0, 100_000] {
        // The database's CHECK refuses 0, so write it past validation only where it can be stored.
        let mut recv = RawReceiveRow::new("ORDER.PAID", "erp");
        recv.handler_id = Some("log".into());
        recv.workers = workers;
        if workers == 0 {
            let t = TestDb::migrated(Backend::Postgres).await;
            let store = ConfigStore::new(t.db.clone());
            assert!(
                store.upsert_receive(&recv).await.is_err(),
                "CHECK refuses 0 workers"
            );
            let errs = eventyard_core::config::validate_receive_row(&recv, &catalog()).unwrap_err();
            only_column(&errs, |p| p.column, "workers");
        } else {
            let problems = problems_for_receive(Backend::Postgres, recv).await;
            only_column(&problems, |p| p.0, "workers");
            assert!(problems[0].1.contains("256"), "{problems:?}");
        }
    }
}

#[tokio::test]
async fn unknown_modes_and_compression_are_rejected_when_the_database_lets_them_in() {
    // Older MySQL versions ignore CHECK constraints; emulate that by dropping them.
    let t = TestDb::migrated(Backend::MySql).await;
    for c in ["ey_send_config_mode_chk", "ey_send_config_compression_chk"] {
        exec(
            &t.db,
            &format!("ALTER TABLE ey_send_config DROP CONSTRAINT {c}"),
        )
        .await;
    }
    exec(
        &t.db,
        "ALTER TABLE ey_receive_config DROP CONSTRAINT ey_receive_config_mode_chk",
    )
    .await;
    exec(
        &t.db,
        "INSERT INTO ey_send_config (event_type, send_mode) VALUES ('A.TURBO', 'turbo')",
    )
    .await;
    exec(
        &t.db,
        "INSERT INTO ey_send_config (event_type, compression) VALUES ('A.ZSTD', 'zstd')",
    )
    .await;
    exec(&t.db, "INSERT INTO ey_receive_config (event_type, subscriber, process_mode, handler_id) VALUES ('A.LATER', 'erp', 'later', 'log')").await;
    exec(
        &t.db,
        "INSERT INTO ey_send_config (event_type) VALUES ('A.GOOD')",
    )
    .await;
    let store = ConfigStore::new(t.db.clone());
    let loaded = store.load(&catalog()).await.unwrap();
    let lines: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("A.TURBO") && l.contains("`send_mode`") && l.contains("turbo")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("A.ZSTD") && l.contains("`compression`") && l.contains("zstd")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("A.LATER") && l.contains("`process_mode`") && l.contains("later")),
        "{lines:#?}"
    );
    // The valid row is still served.
    assert!(loaded.config.send("A.GOOD").is_some());
    assert_eq!(loaded.config.send.len(), 1);
}

#[tokio::test]
async fn an_edit_that_breaks_a_row_keeps_its_last_valid_version() {
    let t = TestDb::migrated(Backend::Postgres).await;
    let store = ConfigStore::new(t.db.clone());
    let mut row = RawSendRow::new("ACCT.OPENED");
    row.send_mode = "batch".into();
    row.batch_cron = Some("@every 10s".into());
    store.upsert_send(&row).await.unwrap();
    store
        .upsert_send(&RawSendRow::new("ACCT.CLOSED"))
        .await
        .unwrap();
    let first = store.load(&catalog()).await.unwrap();
    assert!(first.problems.is_empty());

    exec(
        &t.db,
        "UPDATE ey_send_config SET batch_cron = 'whenever' WHERE event_type = 'ACCT.OPENED'",
    )
    .await;
    exec(
        &t.db,
        "UPDATE ey_send_config SET retry_count = 9 WHERE event_type = 'ACCT.CLOSED'",
    )
    .await;
    let second = store.load(&catalog()).await.unwrap();
    assert!(second.version > first.version);
    assert_eq!(second.problems.len(), 1);
    assert_eq!(second.problems[0].column, "batch_cron");
    let kept = second.config.send("ACCT.OPENED").unwrap();
    assert_eq!(kept.batch_schedule.as_ref().unwrap().as_str(), "@every 10s");
    assert_eq!(second.config.send("ACCT.CLOSED").unwrap().retry_count, 9);

    // A fresh store (a daemon started after the bad edit) has no valid version to keep.
    let fresh = ConfigStore::new(t.db.clone())
        .load(&catalog())
        .await
        .unwrap();
    assert!(fresh.config.send("ACCT.OPENED").is_none());
}

#[tokio::test]
async fn sequenced_rows_need_persist_and_realtime_processing() {
    let mut row = RawSendRow::new("METER.READ");
    row.sequenced = true;
    row.persist = false;
    let problems = problems_for_send(Backend::Sqlite, row).await;
    only_column(&problems, |p| p.2, "persist");
    assert!(problems[0].3.contains("sequenced"), "{problems:?}");

    let mut recv = RawReceiveRow::new("METER.READ", "grid");
    recv.sequenced = true;
    recv.process_mode = "none".into();
    let problems = problems_for_receive(Backend::Sqlite, recv).await;
    only_column(&problems, |p| p.0, "process_mode");
}

#[tokio::test]
async fn every_problem_of_a_row_is_reported() {
    let mut row = RawSendRow::new("BAD.ROW");
    row.send_mode = "batch".into();
    row.persist = false;
    row.converter_id = "missing".into();
    row.batch_size = 0;
    // batch_size 0 is refused by the CHECK constraint, so validate the raw row directly.
    let errs = eventyard_core::config::validate_send_row(&row, &catalog()).unwrap_err();
    let cols: Vec<&str> = errs.iter().map(|e| e.column).collect();
    for want in ["converter_id", "persist", "batch_size", "batch_cron"] {
        assert!(cols.contains(&want), "{cols:?}");
    }
}
