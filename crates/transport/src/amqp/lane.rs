//! One publishing channel and the publishes in flight on it.
//!
//! A pump writes publishes as they come and keeps up to `max_in_flight` of
//! them unconfirmed; the confirms are collected in publish order while more
//! is written, so a publish never waits for an earlier batch's confirms
//! before it goes out. Every publish is answered by its own confirm.
//!
//! Returned (unroutable, mandatory) messages: lapin attaches a returned
//! message to the first confirm it resolves after the return, which need not
//! be the returned publish's own confirm but is never resolved later than it
//! (the broker sends the return before the ack, and a multi-ack resolves its
//! confirms in one go). So before a resolved publish is answered, every
//! confirm already resolved on the channel is taken, its returned message
//! counted by message id, and the publish is an
//! [`Unroutable`](TransportError::Unroutable) error when its id was returned.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lapin::{Channel, Confirmation, PublisherConfirm};
use tokio::time::Instant;

use super::{describe, Job, Session};
use crate::error::TransportError;

/// How a publish's confirm ended.
#[derive(Debug)]
enum Outcome {
    Ack,
    Nack,
    Timeout,
    Failed(String),
}

/// A publish written to the channel, waiting for its confirm.
struct Flight {
    job: Job,
    confirm: PublisherConfirm,
    deadline: Instant,
    outcome: Option<Outcome>,
}

/// One publishing channel (of one connection) and its publishes in flight,
/// oldest first.
pub(super) struct Lane {
    session: Arc<Session>,
    channel: Channel,
    flights: VecDeque<Flight>,
    /// Returned messages by message id, not yet credited to a publish.
    returned: HashMap<String, usize>,
    /// A confirm timed out or failed, or a write failed: late confirms could
    /// be credited to the wrong publish, so nothing more is written here.
    tainted: bool,
    confirm_timeout: Duration,
}

impl Lane {
    pub(super) fn new(session: Arc<Session>, channel: Channel, confirm_timeout: Duration) -> Self {
        Lane {
            session,
            channel,
            flights: VecDeque::new(),
            returned: HashMap::new(),
            tainted: false,
            confirm_timeout,
        }
    }

    /// Whether new publishes may be written on this lane's channel.
    pub(super) fn usable(&self, generation: u64) -> bool {
        !self.tainted && self.session.generation == generation && self.channel.status().connected()
    }

    pub(super) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes written and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.flights.len()
    }

    /// No more publishes are written here (a write failed).
    pub(super) fn taint(&mut self) {
        self.tainted = true;
    }

    /// Records a written publish; its confirm is awaited from now on.
    pub(super) fn push(&mut self, job: Job, confirm: PublisherConfirm) {
        self.flights.push_back(Flight {
            job,
            confirm,
            deadline: Instant::now() + self.confirm_timeout,
            outcome: None,
        });
    }

    /// Waits for the oldest publish's confirm (up to its deadline). Pending
    /// forever when nothing is in flight. Cancellation-safe: nothing is lost
    /// when the future is dropped before it completes.
    pub(super) async fn next_confirm(lane: Option<&mut Lane>) -> ConfirmResult {
        let Some(front) = lane.and_then(|l| l.flights.front_mut()) else {
            return std::future::pending().await;
        };
        match tokio::time::timeout_at(front.deadline, &mut front.confirm).await {
            Err(_) => ConfirmResult(None),
            Ok(result) => ConfirmResult(Some(result)),
        }
    }

    /// Records the oldest publish's confirm (from [`next_confirm`]), takes
    /// every other confirm already resolved, and answers the publishes at the
    /// front whose confirms have come, in order.
    ///
    /// [`next_confirm`]: Lane::next_confirm
    pub(super) fn settle(&mut self, front: ConfirmResult) {
        let Lane {
            flights, returned, ..
        } = self;
        let Some(first) = flights.front_mut() else {
            return;
        };
        first.outcome = Some(match front.0 {
            None => Outcome::Timeout,
            Some(result) => outcome_of(result, returned),
        });
        // Whatever else is resolved already may carry a returned message that
        // belongs to a publish answered now.
        let mut cx = Context::from_waker(Waker::noop());
        for flight in flights.iter_mut().skip(1) {
            if flight.outcome.is_some() {
                continue;
            }
            if let Poll::Ready(result) = Pin::new(&mut flight.confirm).poll(&mut cx) {
                flight.outcome = Some(outcome_of(result, returned));
            }
        }
        while flights.front().is_some_and(|f| f.outcome.is_some()) {
            let Some(flight) = flights.pop_front() else {
                break;
            };
            let Some(outcome) = flight.outcome else {
                continue;
            };
            self.tainted |= matches!(outcome, Outcome::Timeout | Outcome::Failed(_));
            answer(
                flight.job,
                outcome,
                &mut self.returned,
                &self.session,
                self.confirm_timeout,
            );
        }
    }

    /// Answers every publish still in flight (each by its confirm, up to its
    /// deadline), then closes the channel.
    pub(super) async fn drain(mut self) {
        while !self.flights.is_empty() {
            let front = Lane::next_confirm(Some(&mut self)).await;
            self.settle(front);
        }
        let channel = self.channel.clone();
        if channel.status().connected() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                channel.close(200, "discarded".into()),
            )
            .await;
        }
    }
}

/// The oldest publish's confirm: `None` when its deadline passed first.
pub(super) struct ConfirmResult(Option<Result<Confirmation, lapin::Error>>);

fn outcome_of(
    result: Result<Confirmation, lapin::Error>,
    returned: &mut HashMap<String, usize>,
) -> Outcome {
    match result {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(confirmation) => {
            let acked = match &confirmation {
                Confirmation::Ack(_) => Some(true),
                Confirmation::Nack(_) => Some(false),
                Confirmation::NotRequested => None,
            };
            if let Some(ret) = confirmation.take_message() {
                if let Some(id) = ret.delivery.properties.message_id() {
                    *returned.entry(id.as_str().to_owned()).or_default() += 1;
                }
            }
            match acked {
                Some(true) => Outcome::Ack,
                Some(false) => Outcome::Nack,
                None => Outcome::Failed("publisher confirms are not enabled".into()),
            }
        }
    }
}

fn answer(
    job: Job,
    outcome: Outcome,
    returned: &mut HashMap<String, usize>,
    session: &Session,
    timeout: Duration,
) {
    let msg = &job.msg;
    let was_returned = matches!(outcome, Outcome::Ack | Outcome::Nack)
        && match returned.get_mut(&msg.message_id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                returned.remove(&msg.message_id);
                true
            }
            None => false,
        };
    let result = if was_returned {
        Err(TransportError::Unroutable {
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
            message_id: msg.message_id.clone(),
        })
    } else {
        match outcome {
            Outcome::Ack => Ok(()),
            Outcome::Nack => Err(TransportError::Nacked {
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
                message_id: msg.message_id.clone(),
            }),
            Outcome::Timeout => Err(TransportError::ConfirmTimeout {
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
                message_id: msg.message_id.clone(),
                timeout,
            }),
            Outcome::Failed(reason) => Err(session.error(describe(msg), reason)),
        }
    };
    let _ = job.reply.send(result);
}
