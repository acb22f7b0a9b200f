//! Between this crate's plain types and AMQP properties and field tables.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::error::TransportError;
use crate::message::OutgoingMessage;

/// A short string (max 255 bytes), or a typed error naming the field.
pub(crate) fn short(
    value: &str,
    field: &str,
    message_id: &str,
) -> Result<ShortString, TransportError> {
    ShortString::try_new(value).map_err(|_| TransportError::InvalidMessage {
        message_id: message_id.to_owned(),
        reason: format!(
            "{field} is {} bytes long; AMQP allows at most 255",
            value.len()
        ),
    })
}

/// The AMQP properties of an outgoing message: persistent, with message id,
/// type, content encoding, timestamp and string headers.
pub(crate) fn properties(msg: &OutgoingMessage) -> Result<BasicProperties, TransportError> {
    let id = &msg.message_id;
    let mut headers = FieldTable::default();
    for (key, value) in &msg.headers {
        headers.insert(
            short(key, &format!("header name `{key}`"), id)?,
            AMQPValue::LongString(LongString::from(value.as_bytes())),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(short(id, "the message id", id)?)
        .with_type(short(&msg.event_type, "the event type", id)?)
        .with_timestamp(now)
        .with_headers(headers);
    if let Some(encoding) = &msg.content_encoding {
        props = props.with_content_encoding(short(encoding, "the content encoding", id)?);
    }
    Ok(props)
}

/// Headers as strings: strings as they are, everything else rendered as text.
pub(crate) fn headers(table: Option<&FieldTable>) -> BTreeMap<String, String> {
    table
        .map(|t| {
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), value_text(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn value_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Void => String::new(),
        // Tables and arrays (e.g. RabbitMQ's `x-death`): a compact debug rendering.
        other => format!("{other:?}"),
    }
}

/// `x-` arguments for a queue declaration.
pub(crate) fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(key), value);
    }
    table
}

/// A long string value (for `x-` arguments).
pub(crate) fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}
