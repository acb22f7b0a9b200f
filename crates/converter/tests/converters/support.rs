use eventyard_converter::{BodyFormat, ConvertError, Fields, Registry};
use serde_json::Value;

/// Converts a text body with built-in `id` and `rules`.
pub(crate) fn text(id: &str, rules: &str, body: &str) -> Result<Fields, ConvertError> {
    Registry::with_builtins()
        .receive_for(id, Some(rules))?
        .convert(BodyFormat::Text, body)
}

/// Converts an XML body with the built-in `xml` converter.
pub(crate) fn xml(rules: Option<&str>, body: &str) -> Result<Fields, ConvertError> {
    Registry::with_builtins()
        .receive_for("xml", rules)?
        .convert(BodyFormat::Xml, body)
}

/// The fields as JSON, for compact assertions.
pub(crate) fn json(fields: &Fields) -> Value {
    serde_json::to_value(fields).unwrap()
}

/// The message of a validation error for `id` with `rules`.
pub(crate) fn invalid(id: &str, rules: &str) -> String {
    Registry::with_builtins()
        .validate(id, Some(rules))
        .expect_err("rules should be refused")
        .to_string()
}
