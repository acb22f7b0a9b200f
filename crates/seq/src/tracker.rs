//! The per-key state machine.
//!
//! One [`Tracker`] follows one sequenced stream (one producer, one stream).
//! It is fed [`Input`]s stamped with a logical time and pushes [`Action`]s
//! into a caller-provided `Vec`; it never performs I/O and never reads a
//! clock. The rules it implements are written out in `docs/sequencing.md`;
//! the comments below refer to them by number.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::counters::Counters;
use crate::params::Params;

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No hole: everything up to the highest seq seen has been applied.
    Synced,
    /// A hole is open and the tracker waits (reorder window) for the missing
    /// messages to arrive late.
    Hold,
    /// A hole is open and a fetch of the missing range was requested.
    Fetch,
    /// A hole is open (or the state is unknown after an epoch change) and a
    /// snapshot was requested.
    Snapshot,
}

impl Mode {
    /// The lowercase name used in `seq simulate` output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Synced => "synced",
            Mode::Hold => "hold",
            Mode::Fetch => "fetch",
            Mode::Snapshot => "snapshot",
        }
    }
}

/// How an applied message reached the tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Straight from the live stream, in order.
    Live,
    /// From the reorder buffer, once the hole in front of it closed.
    Buffer,
    /// From a fetch result.
    Fetch,
}

impl Source {
    /// The lowercase name used in `seq simulate` output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Live => "live",
            Source::Buffer => "buffer",
            Source::Fetch => "fetch",
        }
    }
}

/// The request a tracker is waiting on (at most one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Request {
    /// The messages `from..=to` of the current epoch were requested.
    Fetch {
        /// First missing seq.
        from: u64,
        /// Last missing seq (inclusive).
        to: u64,
    },
    /// The producer's full state was requested.
    Snapshot,
}

/// What a gap looked like when it was detected; carried by
/// [`Action::Alert`] so the caller can log one structured line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Alert {
    /// The producer epoch the gap is in.
    pub epoch: u64,
    /// First missing seq (`last + 1`).
    pub from: u64,
    /// Highest missing seq at or below `hwm` (inclusive).
    pub to: u64,
    /// Highest seq seen (or announced by a heartbeat).
    pub hwm: u64,
}

/// What the caller must do. Actions come out in the order they must be
/// carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<M> {
    /// Apply this message's payload to the local state.
    Apply {
        /// Producer epoch.
        epoch: u64,
        /// Its sequence number; always the previous `last + 1`.
        seq: u64,
        /// How it arrived.
        from: Source,
        /// The payload handed in with the message.
        payload: M,
    },
    /// Replace the local state with the snapshot just received (the caller
    /// kept its body; the tracker only sees its watermark).
    ApplySnapshot {
        /// Snapshot epoch.
        epoch: u64,
        /// The seq the snapshot is valid as of.
        seq: u64,
    },
    /// Fetch the messages `from..=to` of the current epoch from the
    /// database and feed them back with [`Input::FetchOk`] (or report
    /// [`Input::FetchErr`]).
    RequestFetch {
        /// Epoch the messages belong to.
        epoch: u64,
        /// First seq to fetch.
        from: u64,
        /// Last seq to fetch (inclusive).
        to: u64,
    },
    /// Load the producer's current full state and feed its watermark back
    /// with [`Input::Snapshot`].
    RequestSnapshot,
    /// A gap was detected: log it. Emitted exactly when
    /// [`Counters::gaps`] increases.
    Alert(Alert),
}

/// Something that happened to a key, for [`Tracker::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<M> {
    /// A live message.
    Message {
        /// Producer epoch.
        epoch: u64,
        /// Sequence number.
        seq: u64,
        /// Payload, handed back in [`Action::Apply`].
        payload: M,
    },
    /// The producer announces the seq of its next message.
    Heartbeat {
        /// Producer epoch.
        epoch: u64,
        /// The next seq the producer will send.
        next: u64,
    },
    /// Time passed (checks the reorder-window deadline).
    Tick,
    /// The database answered the fetch in flight with these messages of the
    /// current epoch (in any order).
    FetchOk(Vec<(u64, M)>),
    /// The fetch in flight failed.
    FetchErr,
    /// The snapshot in flight arrived, valid as of `(epoch, seq)`.
    Snapshot {
        /// Snapshot epoch.
        epoch: u64,
        /// The seq the snapshot is valid as of.
        seq: u64,
    },
}

/// A point-in-time view of a tracker, for `seq status` and debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Current producer epoch.
    pub epoch: u64,
    /// Last applied seq; `None` after an epoch change until a snapshot.
    pub last: Option<u64>,
    /// Current mode.
    pub mode: Mode,
    /// Seqs held in the reorder buffer, ascending.
    pub buffered: Vec<u64>,
    /// Highest seq seen or announced.
    pub hwm: u64,
    /// Reorder-window deadline (logical ms), if a gap is being held.
    pub deadline: Option<u64>,
    /// The request in flight, if any.
    pub in_flight: Option<Request>,
    /// Failed fetches since the last progress.
    pub failed_tries: u32,
    /// Counters.
    pub counters: Counters,
}

/// The gap-detection and resync state machine of one sequenced stream.
///
/// Generic over the payload `M` of buffered messages: the tracker holds
/// payloads of out-of-order messages and hands every payload back in
/// [`Action::Apply`], in sequence order.
///
/// Every method takes the logical time `now` (ms) and a `Vec` to push
/// actions into; the tracker never clears it, so a caller can reuse one
/// buffer across inputs. In-order input takes a fast path that allocates
/// nothing.
///
/// ```
/// use eventyard_seq::{Action, Params, Source, Tracker};
///
/// let mut tracker = Tracker::new(Params::default());
/// let mut out = Vec::new();
/// tracker.on_message(0, 1, 1, "a", &mut out);
/// tracker.on_message(1, 1, 3, "c", &mut out); // 2 is late: held back
/// tracker.on_message(2, 1, 2, "b", &mut out);
/// let applied: Vec<_> = out
///     .iter()
///     .filter_map(|a| match a {
///         Action::Apply { seq, from, payload, .. } => Some((*seq, *from, *payload)),
///         _ => None,
///     })
///     .collect();
/// assert_eq!(
///     applied,
///     [(1, Source::Live, "a"), (2, Source::Live, "b"), (3, Source::Buffer, "c")]
/// );
/// assert_eq!(tracker.last(), Some(3));
/// ```
#[derive(Debug, Clone)]
pub struct Tracker<M> {
    params: Params,
    epoch: u64,
    /// `None` = unknown (after an epoch change, until a snapshot).
    last: Option<u64>,
    mode: Mode,
    /// Out-of-order messages, sorted by seq, every seq > `last` and <= `hwm`,
    /// never containing `last + 1` between inputs. A sorted ring rather than
    /// a tree: it is usually tiny, and it keeps its allocation when emptied.
    buffer: VecDeque<(u64, M)>,
    hwm: u64,
    deadline: Option<u64>,
    in_flight: Option<Request>,
    failed_tries: u32,
    /// Set while a fetch result is classified: no request may be issued.
    quiet: bool,
    counters: Counters,
}

impl<M> Tracker<M> {
    /// A tracker for a key seen for the first time: epoch 1, `last` 0,
    /// synced. So a first message `(1, 1)` applies, a first `(1, 20)` is a
    /// gap, and a first `(2, 1)` is an epoch change.
    pub fn new(params: Params) -> Self {
        Tracker {
            params,
            epoch: 1,
            last: Some(0),
            mode: Mode::Synced,
            buffer: VecDeque::new(),
            hwm: 0,
            deadline: None,
            in_flight: None,
            failed_tries: 0,
            quiet: false,
            counters: Counters::default(),
        }
    }

    /// A tracker resuming a key whose state was stored: `epoch`, `last`
    /// (`None` = unknown, waiting for a snapshot), synced (or, with `last`
    /// unknown, with a snapshot request in flight, as after an epoch change),
    /// nothing buffered, `hwm` = `last`, zero counters. The receiver builds
    /// these from `ey_stream_state` after a restart, then feeds the stored
    /// unapplied messages as live ones.
    pub fn resume(params: Params, epoch: u64, last: Option<u64>) -> Self {
        let mut tracker = Tracker::new(params);
        tracker.epoch = epoch;
        tracker.last = last;
        tracker.hwm = last.unwrap_or(0);
        if last.is_none() {
            tracker.mode = Mode::Snapshot;
            tracker.in_flight = Some(Request::Snapshot);
        }
        tracker
    }

    /// The parameters this tracker runs with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Current producer epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Last applied seq; `None` while unknown (after an epoch change, until a
    /// snapshot is applied).
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Current mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Highest seq seen or announced by a heartbeat.
    pub fn hwm(&self) -> u64 {
        self.hwm
    }

    /// The reorder-window deadline, if a gap is being held: the I/O layer
    /// should make sure a tick reaches the tracker at or after it.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    /// The request in flight, if any.
    pub fn in_flight(&self) -> Option<Request> {
        self.in_flight
    }

    /// Failed fetches since the last progress.
    pub fn failed_tries(&self) -> u32 {
        self.failed_tries
    }

    /// The seqs held in the reorder buffer, ascending.
    pub fn buffered(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.buffer.iter().map(|(seq, _)| *seq)
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether a hole remains: `hwm > last`, or `last` is unknown.
    pub fn has_hole(&self) -> bool {
        match self.last {
            Some(last) => self.hwm > last,
            None => true,
        }
    }

    /// A snapshot of the whole state.
    pub fn status(&self) -> Status {
        Status {
            epoch: self.epoch,
            last: self.last,
            mode: self.mode,
            buffered: self.buffered().collect(),
            hwm: self.hwm,
            deadline: self.deadline,
            in_flight: self.in_flight,
            failed_tries: self.failed_tries,
            counters: self.counters,
        }
    }

    /// Feeds any input; dispatches to the `on_*` methods.
    pub fn handle(&mut self, now: u64, input: Input<M>, out: &mut Vec<Action<M>>) {
        match input {
            Input::Message {
                epoch,
                seq,
                payload,
            } => self.on_message(now, epoch, seq, payload, out),
            Input::Heartbeat { epoch, next } => self.on_heartbeat(now, epoch, next, out),
            Input::Tick => self.on_tick(now, out),
            Input::FetchOk(messages) => self.on_fetch_ok(now, messages, out),
            Input::FetchErr => self.on_fetch_err(now, out),
            Input::Snapshot { epoch, seq } => self.on_snapshot(now, epoch, seq, out),
        }
    }

    /// A live message `(epoch, seq)` carrying `payload` (rules 1–5).
    #[inline]
    pub fn on_message(
        &mut self,
        now: u64,
        epoch: u64,
        seq: u64,
        payload: M,
        out: &mut Vec<Action<M>>,
    ) {
        if epoch == self.epoch {
            self.classify(now, seq, payload, Source::Live, out);
        } else if epoch < self.epoch {
            // Rule 1: a message of an older incarnation of the producer.
            self.counters.stale_epoch += 1;
        } else {
            // Rule 2.
            self.new_epoch(epoch, seq, Some((seq, payload)), out);
        }
    }

    /// A heartbeat: the producer's next seq will be `next`. Raises `hwm` to
    /// `next - 1` and, when that reveals a hole, acts as rule 5 does.
    ///
    /// Its epoch is checked like a message's: an older epoch is dropped and
    /// counted as `stale_epoch`; a newer one is an epoch change (rule 2) with
    /// `hwm = next - 1` and nothing buffered.
    pub fn on_heartbeat(&mut self, now: u64, epoch: u64, next: u64, out: &mut Vec<Action<M>>) {
        let top = next.saturating_sub(1);
        if epoch < self.epoch {
            self.counters.stale_epoch += 1;
        } else if epoch > self.epoch {
            self.new_epoch(epoch, top, None, out);
        } else if top > self.hwm {
            self.hwm = top;
            if self.has_hole() {
                self.hole_detected(now, out);
            }
        }
    }

    /// Time passed: if the reorder-window deadline has expired
    /// (`now >= deadline`) and a hole remains, recover.
    pub fn on_tick(&mut self, now: u64, out: &mut Vec<Action<M>>) {
        if let Some(deadline) = self.deadline {
            if now >= deadline && self.has_hole() {
                self.recover(out);
            }
        }
    }

    /// The database answered the fetch in flight. Ignored unless a fetch is
    /// in flight. The messages are classified in seq order by rules 3–5
    /// without issuing any request meanwhile; then, if any seq of the
    /// requested range was not returned, each one counts as `missing_in_db`
    /// and a snapshot is requested if a hole remains; otherwise, if a hole
    /// remains, the tracker recovers.
    pub fn on_fetch_ok(&mut self, now: u64, mut messages: Vec<(u64, M)>, out: &mut Vec<Action<M>>) {
        let Some(Request::Fetch { from, to }) = self.in_flight else {
            return;
        };
        self.in_flight = None;
        // Stable: of two copies of a seq, the first one returned applies.
        messages.sort_by_key(|(seq, _)| *seq);
        let mut returned: u64 = 0;
        let mut previous = None;
        self.quiet = true;
        for (seq, payload) in messages {
            if (from..=to).contains(&seq) && previous != Some(seq) {
                returned += 1;
            }
            previous = Some(seq);
            self.classify(now, seq, payload, Source::Fetch, out);
        }
        self.quiet = false;
        let requested = (to - from).saturating_add(1);
        let missing = requested.saturating_sub(returned);
        if missing > 0 {
            self.counters.missing_in_db = self.counters.missing_in_db.saturating_add(missing);
            if self.has_hole() {
                self.request_snapshot(out);
            }
        } else {
            self.recover(out);
        }
    }

    /// The fetch in flight failed. Ignored unless a fetch is in flight.
    /// Counts a failed try and recovers (a fetch again, or a snapshot once
    /// `fetch_tries` is reached). The I/O layer is expected to delay the
    /// retry (jittered backoff, global cap).
    pub fn on_fetch_err(&mut self, _now: u64, out: &mut Vec<Action<M>>) {
        if !matches!(self.in_flight, Some(Request::Fetch { .. })) {
            return;
        }
        self.in_flight = None;
        self.failed_tries = self.failed_tries.saturating_add(1);
        self.recover(out);
    }

    /// The snapshot in flight arrived, valid as of `(epoch, seq)`. Ignored
    /// unless a snapshot is in flight.
    ///
    /// A snapshot older than the state (`epoch` lower, or same epoch and
    /// `seq <= last`) is counted as `snap_stale` and ignored, and another
    /// snapshot is requested if a hole remains. Otherwise it is applied:
    /// `last = seq`, buffered seqs `<= seq` are dropped as `superseded`, the
    /// buffer is drained, and the tracker recovers if a hole remains.
    pub fn on_snapshot(&mut self, _now: u64, epoch: u64, seq: u64, out: &mut Vec<Action<M>>) {
        if self.in_flight != Some(Request::Snapshot) {
            return;
        }
        self.in_flight = None;
        let stale = epoch < self.epoch
            || (epoch == self.epoch && self.last.is_some_and(|last| seq <= last));
        if stale {
            self.counters.snap_stale += 1;
            if self.has_hole() {
                self.request_snapshot(out);
            }
            return;
        }
        if epoch > self.epoch {
            // The buffer holds messages of the old epoch: meaningless now.
            self.buffer.clear();
            self.epoch = epoch;
            self.hwm = seq;
        } else if seq > self.hwm {
            self.hwm = seq;
        }
        out.push(Action::ApplySnapshot { epoch, seq });
        self.last = Some(seq);
        self.failed_tries = 0;
        while self.buffer.front().is_some_and(|(s, _)| *s <= seq) {
            self.buffer.pop_front();
            self.counters.superseded += 1;
        }
        self.drain(seq, out);
        if self.has_hole() {
            self.mode = Mode::Hold;
            self.recover(out);
        } else {
            self.mode = Mode::Synced;
            self.deadline = None;
        }
    }

    /// Rules 3–5 for a message of the current epoch.
    #[inline]
    fn classify(&mut self, now: u64, seq: u64, payload: M, from: Source, out: &mut Vec<Action<M>>) {
        if let Some(last) = self.last {
            if seq <= last {
                // Rule 3.
                self.counters.dup += 1;
                return;
            }
            if seq - last == 1 {
                // Rule 4.
                self.advance(seq, payload, from, out);
                return;
            }
        }
        // Rule 5 (or any message while `last` is unknown).
        if self.insert(seq, payload) {
            self.hole_detected(now, out);
        }
    }

    /// Rule 4: applies `seq` (= `last + 1`), then whatever the buffer holds
    /// in order behind it.
    #[inline]
    fn advance(&mut self, seq: u64, payload: M, from: Source, out: &mut Vec<Action<M>>) {
        out.push(Action::Apply {
            epoch: self.epoch,
            seq,
            from,
            payload,
        });
        self.failed_tries = 0;
        if seq > self.hwm {
            self.hwm = seq;
        }
        let last = if self.buffer.is_empty() {
            self.last = Some(seq);
            seq
        } else {
            self.drain(seq, out)
        };
        if self.hwm <= last {
            self.mode = Mode::Synced;
            self.deadline = None;
        }
    }

    /// Applies buffered messages while the smallest is `last + 1`; sets and
    /// returns the new `last`.
    fn drain(&mut self, mut last: u64, out: &mut Vec<Action<M>>) -> u64 {
        while let Some((seq, _)) = self.buffer.front() {
            if *seq > last && *seq - last == 1 {
                if let Some((seq, payload)) = self.buffer.pop_front() {
                    out.push(Action::Apply {
                        epoch: self.epoch,
                        seq,
                        from: Source::Buffer,
                        payload,
                    });
                    last = seq;
                }
            } else {
                break;
            }
        }
        self.last = Some(last);
        last
    }

    /// Buffers an out-of-order message. Returns `false` when it was a
    /// duplicate of a buffered one (counted, nothing else happens); `true`
    /// otherwise, including when the buffer was full (counted as
    /// `overflow`, message dropped, `hwm` raised all the same).
    fn insert(&mut self, seq: u64, payload: M) -> bool {
        // Reordered messages usually land at the back: look there first.
        let position = match self.buffer.back() {
            None => Ok(0),
            Some((back, _)) if *back < seq => Ok(self.buffer.len()),
            Some(_) => match self.buffer.binary_search_by_key(&seq, |(s, _)| *s) {
                Ok(_) => Err(()),
                Err(position) => Ok(position),
            },
        };
        let Ok(position) = position else {
            self.counters.dup += 1;
            return false;
        };
        if self.buffer.len() < self.params.buffer {
            self.buffer.insert(position, (seq, payload));
        } else {
            self.counters.overflow += 1;
        }
        if seq > self.hwm {
            self.hwm = seq;
        }
        true
    }

    /// The tail of rule 5 (also reached by a heartbeat revealing a hole):
    /// a gap opened from synced is counted, alerted and held; a missing
    /// range of `window_count` or more recovers at once.
    fn hole_detected(&mut self, now: u64, out: &mut Vec<Action<M>>) {
        let Some(last) = self.last else {
            // While `last` is unknown the only way out is a snapshot, which
            // is normally already in flight.
            self.recover(out);
            return;
        };
        let to = self.missing_top(last);
        if self.mode == Mode::Synced {
            self.counters.gaps += 1;
            out.push(Action::Alert(Alert {
                epoch: self.epoch,
                from: last + 1,
                to,
                hwm: self.hwm,
            }));
            self.mode = Mode::Hold;
            self.deadline = Some(now.saturating_add(self.params.window_ms));
        }
        if to - last >= self.params.window_count {
            self.recover(out);
        }
    }

    /// `h`, the highest missing seq at or below `hwm`. Requires a hole
    /// (`hwm > last`); then `last < h <= hwm`, since `last + 1` is never
    /// buffered.
    fn missing_top(&self, last: u64) -> u64 {
        let mut top = self.hwm;
        for (seq, _) in self.buffer.iter().rev() {
            if *seq == top {
                top = top.saturating_sub(1);
            } else if *seq < top {
                break;
            }
        }
        top.max(last.saturating_add(1))
    }

    /// Recover: nothing if no hole remains or a request is in flight (gap
    /// storms coalesce into one request); a fetch of the missing range if it
    /// is small enough and fetches have not failed too often; otherwise a
    /// snapshot.
    fn recover(&mut self, out: &mut Vec<Action<M>>) {
        if self.quiet || self.in_flight.is_some() || !self.has_hole() {
            return;
        }
        match self.last {
            Some(last) => {
                let to = self.missing_top(last);
                if to - last <= self.params.max_fetch && self.failed_tries < self.params.fetch_tries
                {
                    let from = last + 1;
                    self.in_flight = Some(Request::Fetch { from, to });
                    self.mode = Mode::Fetch;
                    self.counters.fetches += 1;
                    out.push(Action::RequestFetch {
                        epoch: self.epoch,
                        from,
                        to,
                    });
                } else {
                    self.request_snapshot(out);
                }
            }
            None => self.request_snapshot(out),
        }
    }

    /// Issues a snapshot request, replacing any request in flight.
    fn request_snapshot(&mut self, out: &mut Vec<Action<M>>) {
        self.in_flight = Some(Request::Snapshot);
        self.mode = Mode::Snapshot;
        self.counters.snapshots += 1;
        out.push(Action::RequestSnapshot);
    }

    /// Rule 2: the producer restarted with a newer epoch.
    fn new_epoch(
        &mut self,
        epoch: u64,
        hwm: u64,
        message: Option<(u64, M)>,
        out: &mut Vec<Action<M>>,
    ) {
        self.epoch = epoch;
        self.last = None;
        self.buffer.clear();
        self.hwm = hwm;
        self.failed_tries = 0;
        self.deadline = None;
        if let Some((seq, payload)) = message {
            self.insert(seq, payload);
        }
        self.request_snapshot(out);
    }
}
