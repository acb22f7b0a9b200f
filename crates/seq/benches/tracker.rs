//! Tracker throughput, in inputs per second: an in-order stream, and a
//! stream where 1% of the messages swap places with their successor.
//!
//! `cargo bench -p eventyard-seq`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventyard_seq::{Action, Params, Tracker};

const N: u64 = 100_000;

/// 1..=N with every 100th pair swapped (1% of the messages arrive early).
fn reordered() -> Vec<u64> {
    let mut seqs: Vec<u64> = (1..=N).collect();
    let mut i = 50;
    while i + 1 < seqs.len() {
        seqs.swap(i, i + 1);
        i += 100;
    }
    seqs
}

fn feed(seqs: &[u64], out: &mut Vec<Action<u64>>) -> u64 {
    let mut tracker: Tracker<u64> = Tracker::new(Params::default());
    let mut applied = 0u64;
    for (now, seq) in seqs.iter().enumerate() {
        tracker.on_message(now as u64, 1, *seq, *seq, out);
        for action in out.drain(..) {
            if let Action::Apply { payload, .. } = action {
                applied = applied.wrapping_add(payload);
            }
        }
    }
    black_box(tracker.last());
    applied
}

fn bench(c: &mut Criterion) {
    let in_order: Vec<u64> = (1..=N).collect();
    let reordered = reordered();
    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements(N));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut out = Vec::with_capacity(16);
    group.bench_function("in_order", |b| {
        b.iter(|| feed(black_box(&in_order), &mut out))
    });
    group.bench_function("reordered_1pct", |b| {
        b.iter(|| feed(black_box(&reordered), &mut out))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
