//! Property: whatever the network and the answers do, a consumer driven by
//! the tracker ends with exactly the producer's state.
//!
//! A producer emits a stream (with occasional restarts, i.e. new epochs);
//! every message carries a payload, and the producer's state is a
//! non-commutative fold of the payloads, so applying them out of order,
//! twice, or missing one shows. The network drops, duplicates and reorders
//! messages; heartbeats and ticks come at random; requests are answered
//! late, fail, or (for snapshots) come from a lagging replica, all from a
//! consistent store. At the end the stream stops, a heartbeat announces its
//! end, and requests get answered: the consumer must then hold the
//! producer's last state, at its last (epoch, seq).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use eventyard_seq::{Action, Mode, Params, Tracker};
use proptest::prelude::*;

fn payload(epoch: u64, seq: u64) -> u64 {
    epoch
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(seq.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        | 1
}

fn fold(state: u64, payload: u64) -> u64 {
    (state.rotate_left(5) ^ payload).wrapping_mul(0x0100_0000_01b3)
}

/// The producer's history: message points in production order.
struct Producer {
    /// `(epoch, seq)` of each message, in production order.
    points: Vec<(u64, u64)>,
    /// State after each point (`states[0]` is the initial state, before any
    /// message: `(1, 0)`).
    states: Vec<u64>,
    /// `(epoch, seq)` → index into `states`.
    index: HashMap<(u64, u64), usize>,
}

impl Producer {
    fn new(restarts: &[bool]) -> Self {
        let mut points = Vec::new();
        let mut states = vec![0];
        let mut index = HashMap::from([((1, 0), 0)]);
        let (mut epoch, mut seq) = (1, 0);
        for (i, restart) in restarts.iter().enumerate() {
            if *restart && i > 0 {
                epoch += 1;
                seq = 0;
            }
            seq += 1;
            points.push((epoch, seq));
            let state = fold(*states.last().unwrap(), payload(epoch, seq));
            states.push(state);
            index.insert((epoch, seq), states.len() - 1);
        }
        Producer {
            points,
            states,
            index,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Deliver,
    Heartbeat,
    Tick(u64),
    /// Answer the request in flight: a fetch succeeds if `ok`; a snapshot
    /// is taken `lag` points behind the last delivered message (a lagging
    /// replica), or ahead of it when negative (the producer has already
    /// produced messages still in the network).
    Answer {
        ok: bool,
        lag: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Deliver),
        1 => Just(Op::Heartbeat),
        2 => (0..150u64).prop_map(Op::Tick),
        2 => (prop::bool::weighted(0.7), -3..4i64).prop_map(|(ok, lag)| Op::Answer { ok, lag }),
    ]
}

fn params() -> impl Strategy<Value = Params> {
    (0..6u64, 0..200u64, 0..8u64, 0..12usize, 0..4u32).prop_map(|(wc, wms, mf, buf, ft)| {
        Params::default()
            .with_window_count(wc)
            .with_window_ms(wms)
            .with_max_fetch(mf)
            .with_buffer(buf)
            .with_fetch_tries(ft)
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    Fetch { epoch: u64, from: u64, to: u64 },
    Snapshot,
}

struct Harness<'a> {
    producer: &'a Producer,
    tracker: Tracker<u64>,
    out: Vec<Action<u64>>,
    now: u64,
    /// Highest point index delivered so far: what the producer has produced
    /// at least.
    produced: usize,
    pending: Option<Pending>,
    /// The consumer's applied state.
    state: u64,
    epoch: u64,
    last: u64,
}

impl Harness<'_> {
    fn settle(&mut self) -> Result<(), TestCaseError> {
        for action in std::mem::take(&mut self.out) {
            match action {
                Action::Apply {
                    epoch,
                    seq,
                    payload,
                    ..
                } => {
                    prop_assert_eq!(
                        (epoch, seq),
                        (self.epoch, self.last + 1),
                        "applies go by +1"
                    );
                    self.state = fold(self.state, payload);
                    self.last = seq;
                }
                Action::ApplySnapshot { epoch, seq } => {
                    let index = self.producer.index.get(&(epoch, seq)).copied();
                    prop_assert!(index.is_some(), "a snapshot the store gave");
                    self.state = self.producer.states[index.unwrap_or(0)];
                    self.epoch = epoch;
                    self.last = seq;
                }
                Action::RequestFetch { epoch, from, to } => {
                    prop_assert!(from <= to);
                    self.pending = Some(Pending::Fetch { epoch, from, to });
                }
                Action::RequestSnapshot => self.pending = Some(Pending::Snapshot),
                Action::Alert(_) => {}
            }
        }
        Ok(())
    }

    fn deliver(&mut self, point: usize) -> Result<(), TestCaseError> {
        let (epoch, seq) = self.producer.points[point];
        self.produced = self.produced.max(point + 1);
        self.tracker
            .on_message(self.now, epoch, seq, payload(epoch, seq), &mut self.out);
        self.settle()
    }

    fn heartbeat(&mut self) -> Result<(), TestCaseError> {
        if self.produced == 0 {
            return Ok(());
        }
        let (epoch, seq) = self.producer.points[self.produced - 1];
        self.tracker
            .on_heartbeat(self.now, epoch, seq + 1, &mut self.out);
        self.settle()
    }

    fn answer(&mut self, ok: bool, lag: i64) -> Result<(), TestCaseError> {
        match self.pending.take() {
            None => {}
            Some(Pending::Fetch { epoch, from, to }) => {
                if ok {
                    // A consistent store: everything produced is there. The
                    // order rows come back in is the database's business.
                    let mut rows: Vec<(u64, u64)> = (from..=to)
                        .filter(|seq| self.producer.index.contains_key(&(epoch, *seq)))
                        .map(|seq| (seq, payload(epoch, seq)))
                        .collect();
                    prop_assert_eq!(rows.len() as u64, to - from + 1, "fetch within produced");
                    rows.reverse();
                    self.tracker.on_fetch_ok(self.now, rows, &mut self.out);
                } else {
                    self.tracker.on_fetch_err(self.now, &mut self.out);
                }
            }
            Some(Pending::Snapshot) => {
                let ahead = i64::try_from(self.produced).unwrap_or(i64::MAX) - lag;
                let index = usize::try_from(ahead.max(0))
                    .unwrap_or(0)
                    .min(self.producer.points.len());
                let (epoch, seq) = if index == 0 {
                    (1, 0)
                } else {
                    self.producer.points[index - 1]
                };
                self.tracker
                    .on_snapshot(self.now, epoch, seq, &mut self.out);
            }
        }
        self.settle()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn consumer_converges_to_producer(
        params in params(),
        stream in prop::collection::vec(
            (prop::bool::weighted(0.03), prop_oneof![15 => Just(0usize), 75 => Just(1), 10 => Just(2)], prop_oneof![6 => Just(0usize), 1 => 1..10usize]),
            1..80,
        ),
        ops in prop::collection::vec(op(), 0..240),
    ) {
        let restarts: Vec<bool> = stream.iter().map(|(r, _, _)| *r).collect();
        let producer = Producer::new(&restarts);
        // Network: copies (0 = dropped, 2 = duplicated), displaced by jitter.
        let mut deliveries: Vec<(usize, usize)> = Vec::new();
        for (i, (_, copies, jitter)) in stream.iter().enumerate() {
            for copy in 0..*copies {
                deliveries.push((i + jitter + copy, i));
            }
        }
        deliveries.sort_by_key(|(key, _)| *key);
        let mut deliveries = deliveries.into_iter().map(|(_, point)| point);

        let mut h = Harness {
            producer: &producer,
            tracker: Tracker::new(params),
            out: Vec::new(),
            now: 0,
            produced: 0,
            pending: None,
            state: 0,
            epoch: 1,
            last: 0,
        };
        for op in ops {
            h.now += 1;
            match op {
                Op::Deliver => {
                    if let Some(point) = deliveries.next() {
                        h.deliver(point)?;
                    }
                }
                Op::Heartbeat => h.heartbeat()?,
                Op::Tick(dt) => {
                    h.now += dt;
                    h.tracker.on_tick(h.now, &mut h.out);
                    h.settle()?;
                }
                Op::Answer { ok, lag } => h.answer(ok, lag)?,
            }
        }
        for point in deliveries {
            h.now += 1;
            h.deliver(point)?;
        }
        // The producer is done and says so; from now on, answers are prompt,
        // correct and up to date.
        h.produced = producer.points.len();
        h.heartbeat()?;
        let mut rounds = 0;
        while h.tracker.has_hole() || h.pending.is_some() {
            rounds += 1;
            prop_assert!(rounds < 1000, "no convergence: {:?}", h.tracker.status());
            if h.pending.is_some() {
                h.answer(true, 0)?;
            } else {
                h.now += params.window_ms + 1;
                h.tracker.on_tick(h.now, &mut h.out);
                h.settle()?;
                prop_assert!(
                    h.pending.is_some() || !h.tracker.has_hole(),
                    "a hole with nothing to resolve it: {:?}", h.tracker.status()
                );
            }
        }
        let (epoch, last) = *producer.points.last().unwrap();
        prop_assert_eq!(h.tracker.mode(), Mode::Synced);
        prop_assert_eq!(h.tracker.epoch(), epoch);
        prop_assert_eq!(h.tracker.last(), Some(last));
        prop_assert_eq!((h.epoch, h.last), (epoch, last));
        prop_assert_eq!(h.state, *producer.states.last().unwrap());
        prop_assert_eq!(h.tracker.buffered().len(), 0);
    }
}
