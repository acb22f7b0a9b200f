//! The converter traits: one for the send side, two for the receive side.

use std::fmt::Debug;
use std::sync::Arc;

use crate::{Body, BodyFormat, ConvertError, Fields};

/// What the publisher knows about the event being rendered.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SendContext<'a> {
    /// The event type code, e.g. `ACCT.OPENED`.
    pub event_type: &'a str,
    /// The converter id the send config named (so errors can name it).
    pub converter_id: &'a str,
}

impl<'a> SendContext<'a> {
    /// A context for rendering an event of `event_type` with converter `converter_id`.
    pub fn new(event_type: &'a str, converter_id: &'a str) -> Self {
        SendContext {
            event_type,
            converter_id,
        }
    }
}

/// Send side: turns an application value into a message body.
///
/// Converters are `Debug` so that the structs holding them can be too
/// (`#[derive(Debug)]` on the converter is enough).
///
/// The publisher serializes the application's `T: Serialize` to a
/// [`serde_json::Value`] first, so this trait is object safe and one
/// `Arc<dyn SendConverter>` can be registered per id.
///
/// ```
/// use eventyard_converter::{Body, ConvertError, SendContext, SendConverter};
///
/// /// Renders any value as its compact JSON text.
/// #[derive(Debug)]
/// struct JsonText;
///
/// impl SendConverter for JsonText {
///     fn to_body(&self, _ctx: &SendContext<'_>, value: &serde_json::Value) -> Result<Body, ConvertError> {
///         Ok(Body::text(value.to_string()))
///     }
/// }
/// ```
pub trait SendConverter: Debug + Send + Sync {
    /// Renders `value` as a body.
    fn to_body(
        &self,
        ctx: &SendContext<'_>,
        value: &serde_json::Value,
    ) -> Result<Body, ConvertError>;
}

/// Receive side, step one: a converter kind that compiles the extraction
/// rules of one `ey_receive_config` row.
///
/// Compiling is validating: the config validator calls
/// [`Registry::validate`](crate::Registry::validate), which compiles and throws
/// the result away; the receiver calls
/// [`Registry::receive_for`](crate::Registry::receive_for) once at config load
/// and keeps the [`CompiledReceive`] for every message of that event type.
///
/// ```
/// use std::sync::Arc;
/// use eventyard_converter::{BodyFormat, CompiledReceive, ConvertError, Fields, ReceiveConverter};
///
/// /// `key=value;key=value` bodies; the rules text, if any, lists the keys that must be present.
/// #[derive(Debug)]
/// struct KeyValue;
///
/// #[derive(Debug)]
/// struct CompiledKeyValue { id: String, required: Vec<String> }
///
/// impl ReceiveConverter for KeyValue {
///     fn compile(&self, id: &str, rules: Option<&str>) -> Result<Arc<dyn CompiledReceive>, ConvertError> {
///         let required: Vec<String> = rules.unwrap_or("").split_whitespace().map(str::to_owned).collect();
///         if let Some(bad) = required.iter().find(|k| k.contains('=')) {
///             return Err(ConvertError::invalid_rules(id, format!("key `{bad}` must not contain `=`")));
///         }
///         Ok(Arc::new(CompiledKeyValue { id: id.to_owned(), required }))
///     }
/// }
///
/// impl CompiledReceive for CompiledKeyValue {
///     fn convert(&self, _format: BodyFormat, body: &str) -> Result<Fields, ConvertError> {
///         let mut fields = Fields::new();
///         for pair in body.split(';').filter(|p| !p.is_empty()) {
///             let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
///             fields.insert(k, v);
///         }
///         for key in &self.required {
///             if fields.get(key).is_none() {
///                 return Err(ConvertError::custom(&self.id, format!("missing key `{key}`")));
///             }
///         }
///         Ok(fields)
///     }
/// }
/// ```
pub trait ReceiveConverter: Debug + Send + Sync {
    /// Compiles (and so validates) `rules` for the converter registered as
    /// `id`; `rules` is `ey_receive_config.converter_rules` (`None` when NULL
    /// or blank). Errors should name `id`.
    fn compile(
        &self,
        id: &str,
        rules: Option<&str>,
    ) -> Result<Arc<dyn CompiledReceive>, ConvertError>;
}

/// Receive side, step two: compiled rules, applied to each message body.
pub trait CompiledReceive: Debug + Send + Sync {
    /// Extracts the fields of one body.
    fn convert(&self, format: BodyFormat, body: &str) -> Result<Fields, ConvertError>;
}
