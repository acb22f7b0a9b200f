//! Table-driven tests: every rule and counter of the tracker, step by step.
//!
//! Each case is a list of `(input, expected actions)` rows in a compact
//! notation, then the expected end state:
//!
//! - inputs: `T msg E S` (or `T msg E A..B` for a run of messages),
//!   `T hb E NEXT`, `T tick`, `T ok S…`, `T err`, `T snap E S`;
//! - actions, `; `-separated: `apply E S live|buffer|fetch`,
//!   `apply_snapshot E S`, `fetch FROM-TO`, `snapshot`, `alert E FROM-TO hwm H`;
//! - counters: `name=value` pairs, every other counter being 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventyard_seq::{Action, Counters, Input, Mode, Params, Request, Tracker, Trackers};

struct Case {
    name: &'static str,
    params: Params,
    steps: &'static [(&'static str, &'static str)],
    epoch: u64,
    last: Option<u64>,
    mode: Mode,
    buffered: &'static [u64],
    counters: &'static str,
}

fn d() -> Params {
    Params::default()
}

fn parse_inputs(line: &str) -> (u64, Vec<Input<()>>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let t: u64 = words[0].parse().unwrap();
    let n = |i: usize| -> u64 { words[i].parse().unwrap() };
    let inputs = match words[1] {
        "msg" => {
            let epoch = n(2);
            match words[3].split_once("..") {
                Some((a, b)) => (a.parse::<u64>().unwrap()..=b.parse().unwrap())
                    .map(|seq| Input::Message {
                        epoch,
                        seq,
                        payload: (),
                    })
                    .collect(),
                None => vec![Input::Message {
                    epoch,
                    seq: n(3),
                    payload: (),
                }],
            }
        }
        "hb" => vec![Input::Heartbeat {
            epoch: n(2),
            next: n(3),
        }],
        "tick" => vec![Input::Tick],
        "ok" => vec![Input::FetchOk(
            words[2..]
                .iter()
                .map(|w| (w.parse().unwrap(), ()))
                .collect(),
        )],
        "err" => vec![Input::FetchErr],
        "snap" => vec![Input::Snapshot {
            epoch: n(2),
            seq: n(3),
        }],
        other => panic!("unknown input {other:?}"),
    };
    (t, inputs)
}

fn show(action: &Action<()>) -> String {
    match action {
        Action::Apply {
            epoch, seq, from, ..
        } => format!("apply {epoch} {seq} {}", from.as_str()),
        Action::ApplySnapshot { epoch, seq } => format!("apply_snapshot {epoch} {seq}"),
        Action::RequestFetch { from, to, .. } => format!("fetch {from}-{to}"),
        Action::RequestSnapshot => "snapshot".into(),
        Action::Alert(alert) => format!(
            "alert {} {}-{} hwm {}",
            alert.epoch, alert.from, alert.to, alert.hwm
        ),
    }
}

fn parse_counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for pair in text.split_whitespace() {
        let (name, value) = pair.split_once('=').unwrap();
        let value: u64 = value.parse().unwrap();
        let field = match name {
            "dup" => &mut c.dup,
            "gaps" => &mut c.gaps,
            "stale_epoch" => &mut c.stale_epoch,
            "overflow" => &mut c.overflow,
            "superseded" => &mut c.superseded,
            "snap_stale" => &mut c.snap_stale,
            "missing_in_db" => &mut c.missing_in_db,
            "fetches" => &mut c.fetches,
            "snapshots" => &mut c.snapshots,
            other => panic!("unknown counter {other}"),
        };
        *field = value;
    }
    c
}

fn run(case: &Case) {
    let mut tracker: Tracker<()> = Tracker::new(case.params);
    let mut out = Vec::new();
    for (i, (input, expected)) in case.steps.iter().enumerate() {
        let (t, inputs) = parse_inputs(input);
        for input in inputs {
            tracker.handle(t, input, &mut out);
        }
        let got: Vec<String> = out.drain(..).map(|a| show(&a)).collect();
        let want: Vec<String> = expected
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        assert_eq!(
            got, want,
            "case {:?}, step {i} ({input:?}): actions",
            case.name
        );
        check_invariants(&tracker, case.name, i);
    }
    assert_eq!(tracker.epoch(), case.epoch, "case {:?}: epoch", case.name);
    assert_eq!(tracker.last(), case.last, "case {:?}: last", case.name);
    assert_eq!(tracker.mode(), case.mode, "case {:?}: mode", case.name);
    assert_eq!(
        tracker.buffered().collect::<Vec<_>>(),
        case.buffered,
        "case {:?}: buffered",
        case.name
    );
    assert_eq!(
        *tracker.counters(),
        parse_counters(case.counters),
        "case {:?}: counters",
        case.name
    );
}

/// What must hold between any two inputs.
fn check_invariants(tracker: &Tracker<()>, name: &str, step: usize) {
    let buffered: Vec<u64> = tracker.buffered().collect();
    assert!(
        buffered.windows(2).all(|w| w[0] < w[1]),
        "{name} step {step}: buffer sorted"
    );
    assert!(
        buffered.len() <= tracker.params().buffer,
        "{name} step {step}: buffer capacity"
    );
    if let Some(last) = tracker.last() {
        assert!(
            buffered
                .iter()
                .all(|s| *s > last + 1 && *s <= tracker.hwm()),
            "{name} step {step}: buffered seqs in (last+1, hwm]"
        );
        assert!(tracker.hwm() >= last, "{name} step {step}: hwm >= last");
    }
    assert_eq!(
        tracker.mode() == Mode::Synced,
        !tracker.has_hole(),
        "{name} step {step}: synced iff no hole"
    );
    match tracker.mode() {
        Mode::Fetch => assert!(matches!(tracker.in_flight(), Some(Request::Fetch { .. }))),
        Mode::Snapshot => assert_eq!(tracker.in_flight(), Some(Request::Snapshot)),
        Mode::Synced | Mode::Hold => {}
    }
    if tracker.has_hole() && tracker.in_flight().is_none() {
        assert!(
            tracker.deadline().is_some(),
            "{name} step {step}: a hole with no request waits for a deadline"
        );
    }
}

const CASES: &[Case] = &[
    Case {
        name: "in order",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 2", "apply 1 2 live"),
            ("2 msg 1 3", "apply 1 3 live"),
            ("500 tick", ""),
        ],
        epoch: 1,
        last: Some(3),
        mode: Mode::Synced,
        buffered: &[],
        counters: "",
    },
    Case {
        name: "rule 3: duplicates of applied seqs",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 2", "apply 1 2 live"),
            ("2 msg 1 1", ""),
            ("3 msg 1 2", ""),
            ("4 msg 1 0", ""),
        ],
        epoch: 1,
        last: Some(2),
        mode: Mode::Synced,
        buffered: &[],
        counters: "dup=3",
    },
    Case {
        name: "reorder within the window resolves without a request",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("2 msg 1 4", ""),
            (
                "3 msg 1 2",
                "apply 1 2 live; apply 1 3 buffer; apply 1 4 buffer",
            ),
            ("200 tick", ""),
        ],
        epoch: 1,
        last: Some(4),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1",
    },
    Case {
        name: "a seq already buffered is a dup",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("2 msg 1 3", ""),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Hold,
        buffered: &[3],
        counters: "gaps=1 dup=1",
    },
    Case {
        name: "hold expires on a tick at the deadline, not before",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("10 msg 1 3", "alert 1 2-2 hwm 3"),
            ("109 tick", ""),
            ("110 tick", "fetch 2-2"),
            ("150 tick", ""),
            ("160 ok 2", "apply 1 2 fetch; apply 1 3 buffer"),
        ],
        epoch: 1,
        last: Some(3),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "window_count missing recovers at once",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            (
                "2 ok 2 3 4",
                "apply 1 2 fetch; apply 1 3 fetch; apply 1 4 fetch; apply 1 5 buffer",
            ),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "a hole that grows past window_count while held recovers",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("2 msg 1 5", "fetch 2-4"),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Fetch,
        buffered: &[3, 5],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "a hole behind a burst: a fetch, then a second fetch for a later hole",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("2 msg 1 4..6", ""),
            ("101 tick", "fetch 2-2"),
            // 7 is missing too: a gap storm coalesces into the fetch in flight.
            ("102 msg 1 8", ""),
            (
                "110 ok 2",
                "apply 1 2 fetch; apply 1 3 buffer; apply 1 4 buffer; apply 1 5 buffer; \
                 apply 1 6 buffer; fetch 7-7",
            ),
            ("120 ok 7", "apply 1 7 fetch; apply 1 8 buffer"),
        ],
        epoch: 1,
        last: Some(8),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=2",
    },
    Case {
        name: "a missing range of exactly max_fetch is fetched",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 7", "alert 1 2-6 hwm 7; fetch 2-6"),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Fetch,
        buffered: &[7],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "one more than max_fetch takes a snapshot",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 8", "alert 1 2-7 hwm 8; snapshot"),
            ("2 snap 1 8", "apply_snapshot 1 8"),
        ],
        epoch: 1,
        last: Some(8),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=1 superseded=1",
    },
    Case {
        name: "a snapshot older than the buffer supersedes, then the remaining hole is fetched",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 10", "alert 1 2-9 hwm 10; snapshot"),
            ("2 msg 1 11", ""),
            ("3 msg 1 13", ""),
            ("4 snap 1 11", "apply_snapshot 1 11; fetch 12-12"),
            ("5 ok 12", "apply 1 12 fetch; apply 1 13 buffer"),
        ],
        epoch: 1,
        last: Some(13),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=1 superseded=2 fetches=1",
    },
    Case {
        name: "a snapshot made stale by live catch-up is ignored",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 10", "alert 1 2-9 hwm 10; snapshot"),
            (
                "2 msg 1 2..9",
                "apply 1 2 live; apply 1 3 live; apply 1 4 live; apply 1 5 live; \
                 apply 1 6 live; apply 1 7 live; apply 1 8 live; apply 1 9 live; \
                 apply 1 10 buffer",
            ),
            ("3 snap 1 8", ""),
            ("4 msg 1 11", "apply 1 11 live"),
        ],
        epoch: 1,
        last: Some(11),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=1 snap_stale=1",
    },
    Case {
        name: "a stale snapshot while a hole remains asks again",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 10", "alert 1 2-9 hwm 10; snapshot"),
            (
                "2 msg 1 2..5",
                "apply 1 2 live; apply 1 3 live; apply 1 4 live; apply 1 5 live",
            ),
            ("3 msg 1 12", ""),
            ("4 snap 1 4", "snapshot"),
            ("5 snap 1 12", "apply_snapshot 1 12"),
        ],
        epoch: 1,
        last: Some(12),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=2 snap_stale=1 superseded=2",
    },
    Case {
        name: "an epoch change mid-stream, late old-epoch messages and a stale old-epoch snapshot",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 2", "apply 1 2 live"),
            ("2 msg 1 6", "alert 1 3-5 hwm 6; fetch 3-5"),
            ("3 msg 2 1", "snapshot"),
            ("4 msg 1 3", ""),
            // The answer to the old epoch's fetch: no longer awaited.
            ("5 ok 3 4 5", ""),
            ("6 err", ""),
            ("7 msg 2 2", ""),
            ("8 msg 2 2", ""),
            ("9 snap 1 6", "snapshot"),
            ("10 snap 2 1", "apply_snapshot 2 1; apply 2 2 buffer"),
            ("11 msg 2 3", "apply 2 3 live"),
            ("12 msg 1 7", ""),
        ],
        epoch: 2,
        last: Some(3),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1 snapshots=2 stale_epoch=2 snap_stale=1 superseded=1 dup=1",
    },
    Case {
        name: "a first message of epoch 2 is an epoch change",
        params: Params::DEFAULT,
        steps: &[("0 msg 2 1", "snapshot"), ("500 tick", "")],
        epoch: 2,
        last: None,
        mode: Mode::Snapshot,
        buffered: &[1],
        counters: "snapshots=1",
    },
    Case {
        name: "a first message (1, 20) is a gap",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 20", "alert 1 1-19 hwm 20; snapshot"),
            ("1 snap 1 25", "apply_snapshot 1 25"),
            ("2 msg 1 26", "apply 1 26 live"),
        ],
        epoch: 1,
        last: Some(26),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=1 superseded=1",
    },
    Case {
        name: "a snapshot of a newer epoch clears the old-epoch buffer",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 10", "alert 1 2-9 hwm 10; snapshot"),
            ("2 msg 1 12", ""),
            ("3 snap 2 7", "apply_snapshot 2 7"),
            ("4 msg 1 11", ""),
            ("5 msg 2 8", "apply 2 8 live"),
        ],
        epoch: 2,
        last: Some(8),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=1 stale_epoch=1",
    },
    Case {
        name: "a fetch result with a missing seq counts it and takes a snapshot",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            ("2 ok 4 2", "apply 1 2 fetch; snapshot"),
            ("3 snap 1 5", "apply_snapshot 1 5"),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1 missing_in_db=1 snapshots=1 superseded=2",
    },
    Case {
        name: "a fetch result missing seqs no longer needed asks for nothing",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            (
                "2 msg 1 2..4",
                "apply 1 2 live; apply 1 3 live; apply 1 4 live; apply 1 5 buffer",
            ),
            ("3 ok 2 2", ""),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1 missing_in_db=2 dup=2",
    },
    Case {
        name: "repeated fetch failure falls back to a snapshot",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            ("2 err", "fetch 2-4"),
            ("3 err", "fetch 2-4"),
            ("4 err", "snapshot"),
            ("5 err", ""),
            ("6 snap 1 5", "apply_snapshot 1 5"),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=3 snapshots=1 superseded=1",
    },
    Case {
        name: "progress resets the failed tries",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            ("2 err", "fetch 2-4"),
            ("3 err", "fetch 2-4"),
            ("4 msg 1 2", "apply 1 2 live"),
            ("5 err", "fetch 3-4"),
            (
                "6 ok 3 4",
                "apply 1 3 fetch; apply 1 4 fetch; apply 1 5 buffer",
            ),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=4",
    },
    Case {
        name: "buffer overflow drops the message but raises hwm",
        params: Params::DEFAULT.with_buffer(2).with_window_count(100),
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("2 msg 1 4", ""),
            ("3 msg 1 5", ""),
            ("101 tick", "fetch 2-5"),
            (
                "102 ok 2 3 4 5",
                "apply 1 2 fetch; apply 1 3 buffer; apply 1 4 buffer; apply 1 5 fetch",
            ),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 overflow=1 fetches=1 dup=2",
    },
    Case {
        name: "a heartbeat reveals a tail gap",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 2", "apply 1 2 live"),
            ("2 hb 1 3", ""),
            ("3 hb 1 5", "alert 1 3-4 hwm 4"),
            ("103 tick", "fetch 3-4"),
            ("104 ok 3 4", "apply 1 3 fetch; apply 1 4 fetch"),
        ],
        epoch: 1,
        last: Some(4),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "a heartbeat widening a held hole recovers at once",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("2 hb 1 6", "fetch 2-5"),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Fetch,
        buffered: &[3],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "heartbeats of an old and a new epoch",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 hb 0 9", ""),
            ("2 hb 2 4", "snapshot"),
            ("3 snap 2 3", "apply_snapshot 2 3"),
            ("4 msg 2 4", "apply 2 4 live"),
        ],
        epoch: 2,
        last: Some(4),
        mode: Mode::Synced,
        buffered: &[],
        counters: "stale_epoch=1 snapshots=1",
    },
    Case {
        name: "answers nobody waits for are ignored",
        params: Params::DEFAULT,
        steps: &[
            ("0 ok 1 2", ""),
            ("1 err", ""),
            ("2 snap 1 5", ""),
            ("3 msg 1 1", "apply 1 1 live"),
            ("4 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            ("5 snap 1 5", ""),
            (
                "6 ok 2 3 4",
                "apply 1 2 fetch; apply 1 3 fetch; apply 1 4 fetch; apply 1 5 buffer",
            ),
        ],
        epoch: 1,
        last: Some(5),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "synced while a request is in flight; its late answer then recovers a new hole",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; fetch 2-4"),
            (
                "2 msg 1 2..4",
                "apply 1 2 live; apply 1 3 live; apply 1 4 live; apply 1 5 buffer",
            ),
            ("3 msg 1 7", "alert 1 6-6 hwm 7"),
            ("4 ok 2 3 4", "fetch 6-6"),
            ("5 ok 6", "apply 1 6 fetch; apply 1 7 buffer"),
        ],
        epoch: 1,
        last: Some(7),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=2 fetches=2 dup=3",
    },
    Case {
        name: "a gap storm coalesces into one snapshot",
        params: Params::DEFAULT,
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 10", "alert 1 2-9 hwm 10; snapshot"),
            ("2 msg 1 20", ""),
            ("3 hb 1 40", ""),
            ("4 msg 1 30", ""),
            ("500 tick", ""),
            ("501 snap 1 39", "apply_snapshot 1 39"),
        ],
        epoch: 1,
        last: Some(39),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=1 superseded=3",
    },
    Case {
        name: "max_fetch 0 always takes a snapshot",
        params: Params::DEFAULT.with_max_fetch(0),
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3"),
            ("101 tick", "snapshot"),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Snapshot,
        buffered: &[3],
        counters: "gaps=1 snapshots=1",
    },
    Case {
        name: "fetch_tries 0 always takes a snapshot",
        params: Params::DEFAULT.with_fetch_tries(0),
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 5", "alert 1 2-4 hwm 5; snapshot"),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Snapshot,
        buffered: &[5],
        counters: "gaps=1 snapshots=1",
    },
    Case {
        name: "buffer 0 drops every out-of-order message",
        params: Params::DEFAULT.with_buffer(0),
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-3 hwm 3"),
            ("101 tick", "fetch 2-3"),
            ("102 ok 2 3", "apply 1 2 fetch; apply 1 3 fetch"),
        ],
        epoch: 1,
        last: Some(3),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 overflow=1 fetches=1",
    },
    Case {
        name: "window_count 0 recovers on every gap",
        params: Params::DEFAULT.with_window_count(0),
        steps: &[
            ("0 msg 1 1", "apply 1 1 live"),
            ("1 msg 1 3", "alert 1 2-2 hwm 3; fetch 2-2"),
        ],
        epoch: 1,
        last: Some(1),
        mode: Mode::Fetch,
        buffered: &[3],
        counters: "gaps=1 fetches=1",
    },
    Case {
        name: "sequences at u64::MAX do not overflow",
        params: Params::DEFAULT,
        steps: &[
            (
                "18446744073709551615 msg 1 18446744073709551615",
                "alert 1 1-18446744073709551614 hwm 18446744073709551615; snapshot",
            ),
            ("18446744073709551615 hb 1 18446744073709551615", ""),
            ("18446744073709551615 hb 1 0", ""),
            (
                "18446744073709551615 snap 1 18446744073709551615",
                "apply_snapshot 1 18446744073709551615",
            ),
            ("0 msg 1 18446744073709551615", ""),
            (
                "0 msg 18446744073709551615 18446744073709551615",
                "snapshot",
            ),
            ("0 hb 18446744073709551615 18446744073709551615", ""),
            (
                "0 snap 18446744073709551615 18446744073709551615",
                "apply_snapshot 18446744073709551615 18446744073709551615",
            ),
            ("18446744073709551615 tick", ""),
        ],
        epoch: u64::MAX,
        last: Some(u64::MAX),
        mode: Mode::Synced,
        buffered: &[],
        counters: "gaps=1 snapshots=2 superseded=2 dup=1",
    },
];

#[test]
fn rules() {
    assert_eq!(Params::DEFAULT, d());
    for case in CASES {
        run(case);
    }
}

#[test]
fn every_counter_is_exercised() {
    let mut total = Counters::default();
    for case in CASES {
        total.add(&parse_counters(case.counters));
    }
    for (name, value) in total.iter() {
        assert!(value > 0, "no case covers counter {name}");
    }
}

#[test]
fn alerts_match_gaps() {
    for case in CASES {
        let mut tracker: Tracker<()> = Tracker::new(case.params);
        let mut out = Vec::new();
        for (input, _) in case.steps {
            let (t, inputs) = parse_inputs(input);
            for input in inputs {
                tracker.handle(t, input, &mut out);
            }
        }
        let alerts = out.iter().filter(|a| matches!(a, Action::Alert(_))).count() as u64;
        assert_eq!(alerts, tracker.counters().gaps, "case {:?}", case.name);
        let fetches = out
            .iter()
            .filter(|a| matches!(a, Action::RequestFetch { .. }))
            .count() as u64;
        assert_eq!(fetches, tracker.counters().fetches, "case {:?}", case.name);
        let snapshots = out
            .iter()
            .filter(|a| matches!(a, Action::RequestSnapshot))
            .count() as u64;
        assert_eq!(
            snapshots,
            tracker.counters().snapshots,
            "case {:?}",
            case.name
        );
    }
}

#[test]
fn payloads_come_back_in_order() {
    let mut tracker: Tracker<String> = Tracker::new(Params::default());
    let mut out = Vec::new();
    for seq in [1, 4, 3, 2] {
        tracker.on_message(0, 1, seq, format!("m{seq}"), &mut out);
    }
    let payloads: Vec<String> = out
        .into_iter()
        .filter_map(|a| match a {
            Action::Apply { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, ["m1", "m2", "m3", "m4"]);
}

#[test]
fn fetched_duplicate_applies_the_first_copy() {
    let mut tracker: Tracker<&str> = Tracker::new(Params::default());
    let mut out = Vec::new();
    tracker.on_message(0, 1, 1, "1", &mut out);
    tracker.on_message(0, 1, 5, "5", &mut out);
    out.clear();
    tracker.on_fetch_ok(1, vec![(3, "3"), (2, "2a"), (2, "2b"), (4, "4")], &mut out);
    let payloads: Vec<&str> = out
        .into_iter()
        .filter_map(|a| match a {
            Action::Apply { payload, .. } => Some(payload),
            _ => None,
        })
        .collect();
    assert_eq!(payloads, ["2a", "3", "4", "5"]);
    assert_eq!(tracker.counters().dup, 1);
    assert_eq!(tracker.counters().missing_in_db, 0);
}

#[test]
fn status_reports_the_state() {
    let mut tracker: Tracker<()> = Tracker::new(Params::default());
    let mut out = Vec::new();
    tracker.on_message(0, 1, 1, (), &mut out);
    tracker.on_message(10, 1, 3, (), &mut out);
    let status = tracker.status();
    assert_eq!(status.epoch, 1);
    assert_eq!(status.last, Some(1));
    assert_eq!(status.mode, Mode::Hold);
    assert_eq!(status.buffered, [3]);
    assert_eq!(status.hwm, 3);
    assert_eq!(status.deadline, Some(110));
    assert_eq!(status.in_flight, None);
    assert_eq!(status.counters.gaps, 1);
    tracker.on_tick(110, &mut out);
    assert_eq!(
        tracker.status().in_flight,
        Some(Request::Fetch { from: 2, to: 2 })
    );
}

#[test]
fn trackers_keep_first_seen_order_and_fan_ticks_out() {
    let mut trackers: Trackers<String, ()> = Trackers::new(Params::default());
    let mut out = Vec::new();
    let msg = |seq| Input::Message {
        epoch: 1,
        seq,
        payload: (),
    };
    for (key, seq) in [("b", 1), ("a", 1), ("b", 3), ("a", 3), ("c", 1)] {
        trackers.handle(0, &key.to_string(), msg(seq), &mut out);
    }
    let keys: Vec<&str> = trackers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["b", "a", "c"]);
    let mut fired = Vec::new();
    trackers.tick(100, |key, action| fired.push((key.clone(), action)));
    assert_eq!(
        fired,
        [
            (
                "b".to_string(),
                Action::RequestFetch {
                    epoch: 1,
                    from: 2,
                    to: 2
                }
            ),
            (
                "a".to_string(),
                Action::RequestFetch {
                    epoch: 1,
                    from: 2,
                    to: 2
                }
            ),
        ]
    );
    assert_eq!(trackers.total().gaps, 2);
    assert_eq!(trackers.total().fetches, 2);
    assert_eq!(trackers.get("a").map(|t| t.last()), Some(Some(1)));
    assert_eq!(trackers.len(), 3);
}
