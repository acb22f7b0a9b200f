//! # eventyard-sender
//!
//! The send side of eventyard: the publisher API, the outbox, the batch
//! scheduler and the relay. It is built by the send-path issue; today it only
//! fixes the crate boundary so the workspace layout is stable.
