//! Shared test helpers.
#![allow(dead_code, unreachable_pub)]

pub mod proxy;
