//! Envelope pack / unpack throughput for a 500-byte and a 5 KB body at each
//! compression.
//!
//! ```text
//! cargo bench -p eventyard-core --bench envelope
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use eventyard_core::envelope::{Body, Codec, Envelope};
use eventyard_core::Compression;

/// An XML body of roughly `size` bytes that looks like a business record.
fn body(size: usize) -> String {
    let mut xml = String::from("<account>");
    let mut i = 0;
    while xml.len() + 60 < size {
        xml.push_str(&format!(
            "<line no=\"{i}\"><code>AC-{:05}</code><amt>{}.{:02}</amt></line>",
            i * 37 % 99_991,
            i * 113 % 10_000,
            i % 100
        ));
        i += 1;
    }
    xml.push_str("</account>");
    xml
}

fn envelope(size: usize) -> Envelope {
    Envelope::builder("ACCT.OPENED", "CORE")
        .created_at(Utc.with_ymd_and_hms(2025, 1, 31, 9, 15, 2).unwrap())
        .producer_id("branch-042")
        .sequence("accounts", 3, 1187)
        .trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
        .business_key("ACC-1001")
        .build(Body::Xml(body(size)))
}

fn bench(c: &mut Criterion) {
    let codec = Codec::default();
    for (label, size) in [("500B", 500), ("5KB", 5_000)] {
        let env = envelope(size);
        let mut group = c.benchmark_group(format!("envelope/{label}"));
        for compression in Compression::ALL {
            let packed = codec.pack_as(&env, compression).unwrap();
            group.bench_function(format!("pack/{compression}"), |b| {
                b.iter(|| codec.pack_as(black_box(&env), compression).unwrap())
            });
            group.bench_function(format!("unpack/{compression}"), |b| {
                b.iter(|| codec.unpack(black_box(&packed)).unwrap())
            });
            group.bench_function(format!("pack+unpack/{compression}"), |b| {
                b.iter(|| {
                    let packed = codec.pack_as(black_box(&env), compression).unwrap();
                    codec.unpack(&packed).unwrap()
                })
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    // A shared 2-core machine: short runs, enough samples for stable medians.
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
