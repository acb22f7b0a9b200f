//! # eventyard-receiver
//!
//! The receive side of eventyard: listeners, the inbox, handler pools, batch
//! processing, retries and dead letters. It is built by the receive-path
//! issue; today it only fixes the crate boundary so the workspace layout is
//! stable.
