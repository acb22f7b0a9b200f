//! # eventyard converters
//!
//! A converter sits between an application and a message body:
//!
//! - **send side** — [`SendConverter`]: an application value (already a
//!   [`serde_json::Value`]) becomes a [`Body`] (XML or text);
//! - **receive side** — [`ReceiveConverter`] compiles the extraction rules of
//!   one `ey_receive_config` row into a [`CompiledReceive`], which turns each
//!   body into [`Fields`], an ordered map that serializes to JSON.
//!
//! Converters are found by id in a [`Registry`]. The built-in ids are:
//!
//! | id | receive (body → fields) | send (value → body) |
//! |---|---|---|
//! | `xml` | element/attribute paths; with no rules every leaf | value → XML ([`XmlSend`]) |
//! | `delimited` | `a\|b\|c` → named fields | fields → `a\|b\|c` (with rules) |
//! | `multi_delimited` | `a\|b@@c\|d` → a list of records | records → `a\|b@@c\|d` (with rules) |
//! | `fixed_width` | fields at char or byte offsets (GBK, ...) | fields padded to width (with rules) |
//!
//! Rules are TOML text, stored in `ey_receive_config.converter_rules`; the
//! format is described, with complete examples, in `docs/converters.md`.
//!
//! ## Receiving
//!
//! Compile once when the config loads (compiling is validating), then convert
//! every body:
//!
//! ```
//! use eventyard_converter::{BodyFormat, Registry};
//!
//! let registry = Registry::with_builtins();
//! let rules = r#"
//!     unit = "byte"
//!     encoding = "GBK"
//!     fields = [
//!         { name = "account", offset = 0,  length = 8 },
//!         { name = "name",    offset = 8,  length = 10 },
//!         { name = "amount",  offset = 18, length = 9, align = "right", pad = "0" },
//!     ]
//! "#;
//! // Config validation (`eventyard config check`) calls exactly this:
//! registry.validate("fixed_width", Some(rules))?;
//!
//! let converter = registry.receive_for("fixed_width", Some(rules))?;
//! //                 8 bytes | 10 bytes in GBK (张三 = 4)  | 9 bytes
//! let body = "62220001张三      000012345";
//! let fields = converter.convert(BodyFormat::Text, body)?;
//! assert_eq!(fields.get_str("name"), Some("张三"));
//! assert_eq!(fields.get_str("amount"), Some("12345"));
//! assert_eq!(
//!     serde_json::to_string(&fields).unwrap(),
//!     r#"{"account":"62220001","name":"张三","amount":"12345"}"#
//! );
//! # Ok::<(), eventyard_converter::ConvertError>(())
//! ```
//!
//! ## Sending
//!
//! ```
//! use eventyard_converter::{Registry, SendContext};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct Opened { account: String, name: String }
//!
//! let registry = Registry::with_builtins();
//! let value = serde_json::to_value(Opened { account: "62220001".into(), name: "Zhang & Co".into() }).unwrap();
//! let xml = registry.send_for("xml", None)?;
//! let body = xml.to_body(&SendContext::new("ACCT.OPENED", "xml"), &value)?;
//! assert_eq!(
//!     body.content,
//!     "<ACCT.OPENED><account>62220001</account><name>Zhang &amp; Co</name></ACCT.OPENED>"
//! );
//! # Ok::<(), eventyard_converter::ConvertError>(())
//! ```
//!
//! ## Your own converters
//!
//! Implement [`SendConverter`], or [`ReceiveConverter`] + [`CompiledReceive`]
//! (your converter receives the row's rules text, in any format you like,
//! and should refuse bad rules in `compile` so config validation catches
//! them), and register them under an id the config tables can name:
//!
//! ```
//! use std::sync::Arc;
//! use eventyard_converter::{BodyFormat, CompiledReceive, ConvertError, Fields, ReceiveConverter, Registry};
//!
//! #[derive(Debug)]
//! struct Upper;
//!
//! impl ReceiveConverter for Upper {
//!     fn compile(&self, id: &str, rules: Option<&str>) -> Result<Arc<dyn CompiledReceive>, ConvertError> {
//!         match rules {
//!             None => Ok(Arc::new(Upper)),
//!             Some(_) => Err(ConvertError::invalid_rules(id, "takes no rules")),
//!         }
//!     }
//! }
//!
//! impl CompiledReceive for Upper {
//!     fn convert(&self, _format: BodyFormat, body: &str) -> Result<Fields, ConvertError> {
//!         Ok(Fields::from_iter([("text", body.to_uppercase())]))
//!     }
//! }
//!
//! let mut registry = Registry::with_builtins();
//! registry.register_receive("upper", Arc::new(Upper));
//! assert!(registry.receive_ids().any(|id| id == "upper"));
//! let fields = registry.receive_for("upper", None)?.convert(BodyFormat::Text, "hi")?;
//! assert_eq!(fields.get_str("text"), Some("HI"));
//! # Ok::<(), ConvertError>(())
//! ```
//!
//! ## Errors
//!
//! Everything fails with [`ConvertError`]; messages name the converter id,
//! the field or rule, and the record (from 1) and offset (from 0). Bad input
//! never panics.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod body;
mod converter;
mod error;
mod fields;
mod registry;
mod rules;
mod xml;

pub use body::{Body, BodyFormat, ParseBodyFormatError};
pub use converter::{CompiledReceive, ReceiveConverter, SendContext, SendConverter};
pub use error::{ConvertError, Side};
pub use fields::{FieldValue, Fields};
pub use registry::Registry;
pub use rules::{Builtin, Kind, Rules};
pub use xml::XmlSend;

/// `Result` with [`ConvertError`] as the default error.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
