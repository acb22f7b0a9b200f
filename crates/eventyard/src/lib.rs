//! # eventyard
//!
//! Config-table driven event integration between application systems:
//! events go out over AMQP (or the in-process transport), every event is kept
//! in a relational database, and operators change how each event type is
//! sent, received, converted and processed by editing rows in the
//! `ey_send_config` and `ey_receive_config` tables.
//!
//! This facade re-exports the workspace crates. Database backends are cargo
//! features (`postgres`, `mysql`, `sqlite`, all on by default).
//!
//! ```no_run
//! # async fn demo() -> Result<(), eventyard::core::Error> {
//! use eventyard::core::db::Db;
//!
//! let db = Db::connect("sqlite://eventyard.db?mode=rwc").await?;
//! db.migrate().await?;
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod daemon;

pub use eventyard_converter as converter;
pub use eventyard_core as core;
pub use eventyard_receiver as receiver;
pub use eventyard_sender as sender;
pub use eventyard_seq as seq;
