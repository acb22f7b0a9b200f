//! Many keys at once.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use crate::counters::Counters;
use crate::params::Params;
use crate::tracker::{Action, Input, Tracker};

/// A [`Tracker`] per key, created on first sight, kept in first-seen order.
///
/// The key is whatever identifies a sequenced stream to the caller
/// (typically producer and stream). Ticks fan out to every key in the order
/// the keys were first seen, which keeps `seq simulate` output
/// deterministic.
///
/// ```
/// use eventyard_seq::{Action, Input, Params, Trackers};
///
/// let mut trackers: Trackers<(&str, &str), ()> = Trackers::new(Params::default());
/// let mut out = Vec::new();
/// let msg = |seq| Input::Message { epoch: 1, seq, payload: () };
/// trackers.handle(0, &("p", "a"), msg(1), &mut out);
/// trackers.handle(0, &("p", "a"), msg(3), &mut out); // 2 missing: hold
/// trackers.handle(0, &("p", "b"), msg(5), &mut out); // 1..=4 missing: fetch now
/// out.clear();
///
/// let mut fired = Vec::new();
/// trackers.tick(100, |key, action| fired.push((*key, action)));
/// assert_eq!(
///     fired,
///     [(("p", "a"), Action::RequestFetch { epoch: 1, from: 2, to: 2 })]
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Trackers<K, M> {
    params: Params,
    entries: Vec<(K, Tracker<M>)>,
    index: HashMap<K, usize>,
    scratch: Vec<Action<M>>,
}

impl<K, M> Trackers<K, M>
where
    K: Eq + Hash + Clone,
{
    /// An empty set; every tracker it creates runs with `params`.
    pub fn new(params: Params) -> Self {
        Trackers {
            params,
            entries: Vec::new(),
            index: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The parameters new trackers get.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Number of keys seen.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key was seen yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tracker of `key`, if the key was seen.
    pub fn get<Q>(&self, key: &Q) -> Option<&Tracker<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let index = *self.index.get(key)?;
        self.entries.get(index).map(|(_, tracker)| tracker)
    }

    /// The tracker of `key`, created (epoch 1, last 0, synced) if the key is
    /// new.
    pub fn tracker(&mut self, key: &K) -> &mut Tracker<M> {
        let index = match self.index.get(key) {
            Some(index) => *index,
            None => {
                let index = self.entries.len();
                self.entries.push((key.clone(), Tracker::new(self.params)));
                self.index.insert(key.clone(), index);
                index
            }
        };
        &mut self.entries[index].1
    }

    /// Feeds one input to the tracker of `key` (creating it if new), pushing
    /// its actions into `out`. [`Input::Tick`] here ticks only that key; use
    /// [`Trackers::tick`] to tick them all.
    pub fn handle(&mut self, now: u64, key: &K, input: Input<M>, out: &mut Vec<Action<M>>) {
        self.tracker(key).handle(now, input, out);
    }

    /// Ticks every key in first-seen order, handing each action with its
    /// key to `sink`.
    pub fn tick(&mut self, now: u64, mut sink: impl FnMut(&K, Action<M>)) {
        for (key, tracker) in &mut self.entries {
            tracker.on_tick(now, &mut self.scratch);
            for action in self.scratch.drain(..) {
                sink(key, action);
            }
        }
    }

    /// Keys and trackers in first-seen order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&K, &Tracker<M>)> {
        self.entries.iter().map(|(key, tracker)| (key, tracker))
    }

    /// The counters of all keys added up.
    pub fn total(&self) -> Counters {
        let mut total = Counters::default();
        for (_, tracker) in &self.entries {
            total.add(tracker.counters());
        }
        total
    }
}
