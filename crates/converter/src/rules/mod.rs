//! The built-in converter kinds and their rules (TOML).
//!
//! Each kind has its own rules struct, parsed with unknown keys refused, then
//! checked for sense and compiled into a form that converts without further
//! checks. See `docs/converters.md` for the format.

mod delimited;
mod fixed_width;
mod xml;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{
    Body, BodyFormat, CompiledReceive, ConvertError, Fields, ReceiveConverter, SendContext,
    SendConverter,
};

pub(crate) use delimited::{DelimitedRules, MultiDelimitedRules};
pub(crate) use fixed_width::FixedWidthRules;
pub(crate) use xml::XmlRules;

/// The built-in converter kinds; each one's id is a built-in converter id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `xml`: XML element/attribute paths (receive), value → XML (send).
    Xml,
    /// `delimited`: one record of fields split by a delimiter, `a|b|c`.
    Delimited,
    /// `multi_delimited`: records split by one delimiter, fields by another, `a|b@@c|d`.
    MultiDelimited,
    /// `fixed_width`: fields at fixed offsets, in characters or in encoded bytes.
    FixedWidth,
}

impl Kind {
    /// All kinds, in documentation order.
    pub const ALL: [Kind; 4] = [
        Kind::Xml,
        Kind::Delimited,
        Kind::MultiDelimited,
        Kind::FixedWidth,
    ];

    /// The converter id of this kind (`xml`, `delimited`, `multi_delimited`, `fixed_width`).
    pub fn id(self) -> &'static str {
        match self {
            Kind::Xml => "xml",
            Kind::Delimited => "delimited",
            Kind::MultiDelimited => "multi_delimited",
            Kind::FixedWidth => "fixed_width",
        }
    }

    /// The kind whose id is `id`.
    pub fn from_id(id: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// The body format this kind reads and writes.
    pub fn format(self) -> BodyFormat {
        match self {
            Kind::Xml => BodyFormat::Xml,
            _ => BodyFormat::Text,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Kind {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::from_id(s).ok_or_else(|| ConvertError::UnknownConverter {
            id: s.to_owned(),
            side: crate::Side::Receive,
            known: Kind::ALL.map(Kind::id).join(", "),
        })
    }
}

/// Compiled rules of a built-in kind: a [`CompiledReceive`] and, from the
/// same rules, a [`SendConverter`] that renders the format in reverse.
///
/// ```
/// use eventyard_converter::{BodyFormat, CompiledReceive, Kind, Rules, SendContext, SendConverter};
///
/// let rules = Rules::parse(Kind::Delimited, "delimited", r#"
///     delimiter = "|"
///     fields = ["account", "name", "amount"]
/// "#)?;
/// let fields = rules.convert(BodyFormat::Text, "6222001|Zhang San|100.00")?;
/// assert_eq!(fields.get_str("amount"), Some("100.00"));
///
/// let body = rules.to_body(&SendContext::new("ACCT.OPENED", "delimited"), &fields.to_json())?;
/// assert_eq!(body.content, "6222001|Zhang San|100.00");
/// # Ok::<(), eventyard_converter::ConvertError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rules {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Xml(XmlRules),
    Delimited(DelimitedRules),
    MultiDelimited(MultiDelimitedRules),
    FixedWidth(FixedWidthRules),
}

impl Rules {
    /// Parses and checks `text` as rules of `kind`; `converter_id` is the id
    /// to name in errors (usually `kind.id()`, or the id an application
    /// registered the kind under).
    ///
    /// For [`Kind::Xml`], blank text means "no rules" (every leaf becomes a
    /// field); the other kinds need rules.
    pub fn parse(kind: Kind, converter_id: &str, text: &str) -> Result<Rules, ConvertError> {
        Self::parse_opt(kind, converter_id, Some(text))
    }

    /// Like [`Rules::parse`], with `None` meaning "no rules configured".
    pub fn parse_opt(
        kind: Kind,
        converter_id: &str,
        text: Option<&str>,
    ) -> Result<Rules, ConvertError> {
        let text = text.filter(|t| !t.trim().is_empty());
        if let Some(t) = text {
            // Checked first: rules for another kind fail on it, not on a field.
            #[derive(Deserialize)]
            struct KindOnly {
                kind: Option<String>,
            }
            let declared: KindOnly = parse_toml(converter_id, t)?;
            check_kind(kind, converter_id, declared.kind.as_deref())?;
        }
        let inner = match (kind, text) {
            (Kind::Xml, None) => Inner::Xml(XmlRules::leaves()),
            (_, None) => {
                return Err(ConvertError::MissingRules {
                    converter: converter_id.to_owned(),
                })
            }
            (Kind::Xml, Some(t)) => Inner::Xml(XmlRules::parse(kind, converter_id, t)?),
            (Kind::Delimited, Some(t)) => {
                Inner::Delimited(DelimitedRules::parse(kind, converter_id, t)?)
            }
            (Kind::MultiDelimited, Some(t)) => {
                Inner::MultiDelimited(MultiDelimitedRules::parse(kind, converter_id, t)?)
            }
            (Kind::FixedWidth, Some(t)) => {
                Inner::FixedWidth(FixedWidthRules::parse(kind, converter_id, t)?)
            }
        };
        Ok(Rules { inner })
    }

    /// The kind named by the `kind = "..."` key of `text`, if it has one.
    ///
    /// Lets a tool (such as `eventyard convert`) pick the kind from a rules
    /// file alone.
    pub fn declared_kind(text: &str) -> Result<Option<Kind>, ConvertError> {
        #[derive(Deserialize)]
        struct KindOnly {
            kind: Option<String>,
        }
        let parsed: KindOnly = parse_toml("?", text)?;
        parsed.kind.map(|k| k.parse()).transpose()
    }

    /// The kind these rules are for.
    pub fn kind(&self) -> Kind {
        match &self.inner {
            Inner::Xml(_) => Kind::Xml,
            Inner::Delimited(_) => Kind::Delimited,
            Inner::MultiDelimited(_) => Kind::MultiDelimited,
            Inner::FixedWidth(_) => Kind::FixedWidth,
        }
    }

    fn converter_id(&self) -> &str {
        match &self.inner {
            Inner::Xml(r) => &r.converter,
            Inner::Delimited(r) => &r.common.converter,
            Inner::MultiDelimited(r) => &r.common.converter,
            Inner::FixedWidth(r) => &r.converter,
        }
    }
}

impl CompiledReceive for Rules {
    fn convert(&self, format: BodyFormat, body: &str) -> Result<Fields, ConvertError> {
        let expected = self.kind().format();
        if format != expected {
            return Err(ConvertError::WrongFormat {
                converter: self.converter_id().to_owned(),
                expected,
                found: format,
            });
        }
        match &self.inner {
            Inner::Xml(r) => r.convert(body),
            Inner::Delimited(r) => r.convert(strip_final_newline(body)),
            Inner::MultiDelimited(r) => r.convert(strip_final_newline(body)),
            Inner::FixedWidth(r) => r.convert(strip_final_newline(body)),
        }
    }
}

impl SendConverter for Rules {
    fn to_body(
        &self,
        ctx: &SendContext<'_>,
        value: &serde_json::Value,
    ) -> Result<Body, ConvertError> {
        match &self.inner {
            Inner::Xml(r) => r.send.to_body(ctx, value),
            Inner::Delimited(r) => r.render(value).map(Body::text),
            Inner::MultiDelimited(r) => r.render(value).map(Body::text),
            Inner::FixedWidth(r) => r.render(value).map(Body::text),
        }
    }
}

/// The receive converter of a built-in kind, as registered by
/// [`Registry::with_builtins`](crate::Registry::with_builtins); compiling
/// gives [`Rules`].
#[derive(Debug, Clone, Copy)]
pub struct Builtin(pub Kind);

impl ReceiveConverter for Builtin {
    fn compile(
        &self,
        id: &str,
        rules: Option<&str>,
    ) -> Result<Arc<dyn CompiledReceive>, ConvertError> {
        Ok(Arc::new(Rules::parse_opt(self.0, id, rules)?))
    }
}

/// A text body's one final line ending is not data (files and `echo` add it).
fn strip_final_newline(body: &str) -> &str {
    body.strip_suffix("\r\n")
        .or_else(|| body.strip_suffix('\n'))
        .unwrap_or(body)
}

/// Deserializes rules, turning TOML errors into one-line messages with line and column.
pub(crate) fn parse_toml<T: DeserializeOwned>(
    converter: &str,
    text: &str,
) -> Result<T, ConvertError> {
    toml::from_str(text).map_err(|err| {
        let message = match err.message().trim() {
            "" if err.span().is_some_and(|s| s.start >= text.trim_end().len()) => {
                "the rules end where a value was expected".to_owned()
            }
            "" => "syntax error".to_owned(),
            m => m.replace('\n', "; "),
        };
        let message = match err.span() {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: {message}")
            }
            None => message,
        };
        ConvertError::RulesSyntax {
            converter: converter.to_owned(),
            message,
        }
    })
}

/// Refuses rules whose `kind` key names another kind than the converter's.
pub(crate) fn check_kind(
    kind: Kind,
    converter: &str,
    declared: Option<&str>,
) -> Result<(), ConvertError> {
    match declared {
        Some(d) if d != kind.id() => Err(ConvertError::invalid_rules(
            converter,
            format!(
                "the rules are for kind `{d}`, but converter `{converter}` is of kind `{}`",
                kind.id()
            ),
        )),
        _ => Ok(()),
    }
}

/// Which ends of a value to trim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Trim {
    None,
    Both,
    Left,
    Right,
}

impl Trim {
    pub(crate) fn apply(self, s: &str, is_pad: impl Fn(char) -> bool) -> &str {
        match self {
            Trim::None => s,
            Trim::Both => s.trim_matches(is_pad),
            Trim::Left => s.trim_start_matches(is_pad),
            Trim::Right => s.trim_end_matches(is_pad),
        }
    }
}

/// What to do with records shorter than the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShortRecords {
    #[default]
    Error,
    Allow,
}

/// What to do with delimited records that have more fields than the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExtraFields {
    #[default]
    Error,
    Ignore,
}

/// Field names: not empty, no duplicates (`_` marks a skipped column and may repeat).
pub(crate) fn check_names<'a>(
    converter: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConvertError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if name.trim().is_empty() {
            return Err(ConvertError::invalid_rules(
                converter,
                format!("field {}: name must not be empty", i + 1),
            ));
        }
        if name == SKIP {
            continue;
        }
        if seen.contains(&name) {
            return Err(ConvertError::invalid_rules(
                converter,
                format!("field `{name}` is defined twice"),
            ));
        }
        seen.push(name);
    }
    if seen.is_empty() {
        return Err(ConvertError::invalid_rules(
            converter,
            "at least one field is required (`fields` is empty or only skips)",
        ));
    }
    Ok(())
}

/// The field name that marks a column to skip.
pub(crate) const SKIP: &str = "_";

/// A scalar JSON value as field text (send side): strings as-is, numbers and
/// booleans printed, null or missing as empty; arrays and objects refused.
pub(crate) fn scalar_text(
    converter: &str,
    location: impl FnOnce() -> String,
    value: Option<&serde_json::Value>,
) -> Result<String, ConvertError> {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Array(_)) | Some(Value::Object(_)) => Err(ConvertError::Value {
            converter: converter.to_owned(),
            location: location(),
            problem: "expected a string, number, boolean or null, found an array or object".into(),
        }),
    }
}

/// The records of a multi-record value (send side): the value itself when it
/// is an array, or the array under `records_name` when it is an object.
pub(crate) fn records_of<'v>(
    converter: &str,
    records_name: &str,
    value: &'v serde_json::Value,
) -> Result<&'v [serde_json::Value], ConvertError> {
    use serde_json::Value;
    let found = match value {
        Value::Array(items) => return Ok(items),
        Value::Object(map) => match map.get(records_name) {
            Some(Value::Array(items)) => return Ok(items),
            Some(_) => format!("key `{records_name}` is not an array"),
            None => format!("has no key `{records_name}`"),
        },
        _ => "is not an array or object".to_owned(),
    };
    Err(ConvertError::Value {
        converter: converter.to_owned(),
        location: "value".into(),
        problem: format!("expected an array of records or an object with key `{records_name}` holding one; the value {found}"),
    })
}

/// The object a single record is rendered from (send side).
pub(crate) fn record_object<'v>(
    converter: &str,
    location: impl FnOnce() -> String,
    value: &'v serde_json::Value,
) -> Result<&'v serde_json::Map<String, serde_json::Value>, ConvertError> {
    value.as_object().ok_or_else(|| ConvertError::Value {
        converter: converter.to_owned(),
        location: location(),
        problem: "expected an object of fields".into(),
    })
}
