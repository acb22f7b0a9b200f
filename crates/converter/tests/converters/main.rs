//! Converter tests, grouped by kind, sharing `support`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod delimited;
mod fixed_width;
mod registry;
mod roundtrip;
mod support;
mod validation;
mod xml;
