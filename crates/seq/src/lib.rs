//! The eventyard sequence tracker: a sans-IO state machine that detects gaps
//! in sequenced streams and drives their resync.
//!
//! A producer numbers the messages of each of its streams 1, 2, 3, … and
//! bumps an *epoch* when it restarts. A consumer must apply them exactly once
//! and in order. The network reorders, duplicates and loses messages; the
//! [`Tracker`] decides, for one stream, what to apply now, what to hold back
//! for a little while, and when to ask for the missing messages (a *fetch*
//! from the database) or for the producer's whole state (a *snapshot*).
//!
//! The tracker does no I/O, reads no clock and has nothing async inside. It
//! is fed [`Input`]s stamped with a logical time in milliseconds and answers
//! with [`Action`]s. The I/O layer around it receives messages, runs
//! fetches and snapshot loads, feeds the results back, and turns counters
//! and alerts into metrics and log lines. Because the core is pure, every
//! interleaving can be tested and any production incident replayed from a
//! recorded trace (`eventyard seq simulate`, see `docs/sequencing.md`).
//!
//! # Feeding inputs
//!
//! One [`Tracker`] per stream, or a [`Trackers`] set keyed by whatever names
//! a stream (it creates trackers on first sight and ticks them in first-seen
//! order). Every method takes the logical time `now` and a `Vec` to push
//! actions into; keep one `Vec` and clear it after handling its contents, so
//! that the in-order path allocates nothing:
//!
//! ```
//! use eventyard_seq::{Action, Params, Tracker};
//!
//! let mut tracker: Tracker<&str> = Tracker::new(Params::default());
//! let mut actions = Vec::new();
//! for (seq, body) in [(1, "a"), (2, "b")] {
//!     tracker.on_message(0, 1, seq, body, &mut actions);
//!     for action in actions.drain(..) {
//!         if let Action::Apply { payload, .. } = action {
//!             println!("apply {payload}");
//!         }
//!     }
//! }
//! assert_eq!(tracker.last(), Some(2));
//! ```
//!
//! Inputs are:
//! - a live message, [`Tracker::on_message`] (epoch, seq, payload);
//! - a producer heartbeat announcing its next seq, [`Tracker::on_heartbeat`],
//!   which reveals a lost tail;
//! - a tick, [`Tracker::on_tick`]: the I/O layer ticks at least at
//!   [`Tracker::deadline`], when a held gap stops waiting for late messages;
//! - the answer to a request: [`Tracker::on_fetch_ok`] with the messages the
//!   database returned, [`Tracker::on_fetch_err`], or
//!   [`Tracker::on_snapshot`] with the watermark `(epoch, seq)` the loaded
//!   snapshot is valid as of.
//!
//! [`Tracker::handle`] takes any of them as an [`Input`].
//!
//! # Handling actions
//!
//! Carry actions out in the order they come:
//! - [`Action::Apply`] — apply this payload; seqs come out strictly by +1.
//! - [`Action::ApplySnapshot`] — replace the local state with the snapshot
//!   just fed in; later applies continue from its seq.
//! - [`Action::RequestFetch`] — read `from..=to` of that epoch from the
//!   database, then feed [`Input::FetchOk`] or [`Input::FetchErr`]. Back off
//!   (with jitter) before retrying after an error: the tracker asks again at
//!   once.
//! - [`Action::RequestSnapshot`] — load the producer's full state, then feed
//!   [`Input::Snapshot`].
//! - [`Action::Alert`] — log a gap (key, epoch, missing range, hwm).
//!
//! At most one request is in flight per stream: a gap storm coalesces into
//! one request, and an answer nobody is waiting for is ignored.
//!
//! # A gap, end to end
//!
//! ```
//! use eventyard_seq::{Action, Alert, Mode, Params, Source, Tracker};
//!
//! let mut tracker: Tracker<u64> = Tracker::new(Params::default());
//! let mut out = Vec::new();
//! tracker.on_message(0, 1, 1, 10, &mut out);
//! // 2 and 3 are lost; 4 arrives: a gap, held for the reorder window.
//! tracker.on_message(1, 1, 4, 40, &mut out);
//! assert_eq!(tracker.mode(), Mode::Hold);
//! // Nobody shows up within `window_ms`: the next tick asks for 2..=3.
//! tracker.on_tick(101, &mut out);
//! assert_eq!(
//!     out[1..],
//!     [
//!         Action::Alert(Alert { epoch: 1, from: 2, to: 3, hwm: 4 }),
//!         Action::RequestFetch { epoch: 1, from: 2, to: 3 },
//!     ]
//! );
//! out.clear();
//! // The database answers; 2, 3 and the buffered 4 apply in order.
//! tracker.on_fetch_ok(120, vec![(3, 30), (2, 20)], &mut out);
//! let applied: Vec<_> = out
//!     .iter()
//!     .filter_map(|a| match a {
//!         Action::Apply { seq, from, .. } => Some((*seq, *from)),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!(applied, [(2, Source::Fetch), (3, Source::Fetch), (4, Source::Buffer)]);
//! assert_eq!(tracker.mode(), Mode::Synced);
//! assert_eq!(tracker.counters().gaps, 1);
//! assert_eq!(tracker.counters().fetches, 1);
//! ```
//!
//! # Pitfalls
//!
//! - Feed the *payload* of each message to the tracker and apply what comes
//!   back, not what went in: a message may be held back, dropped as a
//!   duplicate, or superseded by a snapshot.
//! - A snapshot's body stays with the caller; only its watermark goes into
//!   [`Tracker::on_snapshot`]. Apply the body when
//!   [`Action::ApplySnapshot`] says so (a stale snapshot is ignored).
//! - Sequences are `u64` and never wrap; an epoch change starts a new
//!   numbering.

#![forbid(unsafe_code)]

mod counters;
mod params;
mod set;
mod tracker;

pub use counters::Counters;
pub use params::Params;
pub use set::Trackers;
pub use tracker::{Action, Alert, Input, Mode, Request, Source, Status, Tracker};
