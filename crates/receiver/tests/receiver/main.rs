//! Receiver tests on real databases: the in-process transport for most,
//! the local RabbitMQ for the broker tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amqp;
mod failures;
mod groups;
mod inline;
mod modes;
mod pool;
mod support;
