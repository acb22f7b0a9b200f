//! `eventyard seq status` and `eventyard seq resync` over the tables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use eventyard_core::db::Backend;
use eventyard_core::with_pool;
use eventyard_testkit::TestDb;

fn eventyard(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventyard"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn status_shows_lag_and_resync_is_recorded() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let t = TestDb::migrated(backend).await;
        with_pool!(&t.db, pool => {
            for sql in [
                "INSERT INTO ey_stream_state (subscriber, producer_id, stream, epoch, last_seq, mode) \
                 VALUES ('BILLING', 'P1', 'acct', 2, 7, 'fetch')",
                "INSERT INTO ey_outbox (event_id, event_type, producer_id, stream, epoch, seq, payload) \
                 VALUES ('e-1', 'T', 'P1', 'acct', 2, 10, X'00')",
                "INSERT INTO ey_outbox (event_id, event_type, producer_id, stream, epoch, seq, payload) \
                 VALUES ('e-0', 'T', 'P1', 'acct', 1, 99, X'00')",
            ] {
                let sql = if backend == Backend::Postgres {
                    sql.replace("X'00'", "'\\x00'::bytea")
                } else {
                    sql.to_string()
                };
                sqlx::query(&sql).execute(pool).await.unwrap();
            }
        });
        let out = ok(&eventyard(&t.url, &["--json", "seq", "status"]));
        let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(row["epoch"], 2);
        assert_eq!(row["last"], 7);
        assert_eq!(row["mode"], "fetch");
        assert_eq!(row["producer_seq"], 10);
        assert_eq!(row["lag"], 3);
        assert_eq!(row["resync_requested"], false);

        let text = ok(&eventyard(&t.url, &["seq", "status", "--producer", "P1"]));
        assert!(text.contains("LAG"), "{text}");
        assert!(text.contains("acct"), "{text}");

        ok(&eventyard(
            &t.url,
            &["seq", "resync", "--producer", "P1", "--stream", "acct"],
        ));
        let out = ok(&eventyard(&t.url, &["--json", "seq", "status"]));
        let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(row["resync_requested"], true);

        let missing = eventyard(
            &t.url,
            &["seq", "resync", "--producer", "P9", "--stream", "x"],
        );
        assert!(!missing.status.success());
        assert!(String::from_utf8_lossy(&missing.stderr).contains("P9"));
    }
}
