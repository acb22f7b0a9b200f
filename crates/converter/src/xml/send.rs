//! Value → XML body.

use serde_json::Value;

use super::{is_forbidden_in_xml, is_xml_name};
use crate::{Body, ConvertError, SendContext, SendConverter};

/// Values nested deeper than this are refused.
const MAX_DEPTH: usize = 128;

/// The built-in `xml` send converter: renders a value as an XML body.
///
/// - objects → one child element per key (in the map's order: sorted by key,
///   or insertion order when `serde_json`'s `preserve_order` feature is on);
/// - arrays under a key → that element repeated, once per item;
///   arrays elsewhere (the value itself, or an array in an array) → `item`
///   elements;
/// - strings, numbers, booleans → text (escaped); `null` → an empty element.
///
/// The root element is the configured `root`, else the event type if it is a
/// valid XML name (`ACCT.OPENED` is), else `body`.
///
/// ```
/// use eventyard_converter::{SendContext, SendConverter, XmlSend};
/// use serde_json::json;
///
/// let body = XmlSend::new().root("order").to_body(
///     &SendContext::new("ORDER.PLACED", "xml"),
///     &json!({"id": "A&1", "line": [{"sku": "X"}, {"sku": "Y"}]}),
/// )?;
/// assert_eq!(body.content, "<order><id>A&amp;1</id><line><sku>X</sku></line><line><sku>Y</sku></line></order>");
/// # Ok::<(), eventyard_converter::ConvertError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlSend {
    root: Option<String>,
    item: String,
}

impl Default for XmlSend {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlSend {
    /// Root derived from the event type, array items named `item`.
    pub fn new() -> Self {
        XmlSend {
            root: None,
            item: "item".into(),
        }
    }

    /// Names the root element (checked when rendering).
    pub fn root(mut self, root: impl Into<String>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Names the elements of arrays that are not under a key (default `item`).
    pub fn item(mut self, item: impl Into<String>) -> Self {
        self.item = item.into();
        self
    }

    /// Checks the configured names; used when the names come from rules.
    pub(crate) fn check(&self, converter: &str) -> Result<(), ConvertError> {
        for (what, name) in [("root", self.root.as_deref()), ("item", Some(&self.item))] {
            if let Some(name) = name {
                if !is_xml_name(name) {
                    return Err(ConvertError::invalid_rules(
                        converter,
                        format!("`{what}` = {name:?} is not a valid XML element name"),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl SendConverter for XmlSend {
    fn to_body(&self, ctx: &SendContext<'_>, value: &Value) -> Result<Body, ConvertError> {
        let root = match &self.root {
            Some(root) => root.as_str(),
            None if is_xml_name(ctx.event_type) => ctx.event_type,
            None => "body",
        };
        let mut writer = Writer {
            converter: ctx.converter_id,
            item: &self.item,
            out: String::with_capacity(256),
            path: Vec::new(),
        };
        writer.element(root, value)?;
        Ok(Body::xml(writer.out))
    }
}

struct Writer<'a> {
    converter: &'a str,
    item: &'a str,
    out: String,
    path: Vec<&'a str>,
}

impl<'a> Writer<'a> {
    fn error(&self, problem: String) -> ConvertError {
        ConvertError::Value {
            converter: self.converter.to_owned(),
            location: format!("element `{}`", self.path.join("/")),
            problem,
        }
    }

    fn element(&mut self, name: &'a str, value: &'a Value) -> Result<(), ConvertError> {
        self.path.push(name);
        if !is_xml_name(name) {
            return Err(self.error(format!("{name:?} is not a valid XML element name")));
        }
        if self.path.len() > MAX_DEPTH {
            return Err(self.error(format!("the value nests deeper than {MAX_DEPTH} levels")));
        }
        match value {
            Value::Null => {
                self.out.push('<');
                self.out.push_str(name);
                self.out.push_str("/>");
            }
            Value::Object(map) => {
                self.open(name);
                for (key, child) in map {
                    match child {
                        Value::Array(items) => {
                            for item in items {
                                self.element(key, item)?;
                            }
                        }
                        _ => self.element(key, child)?,
                    }
                }
                self.close(name);
            }
            Value::Array(items) => {
                self.open(name);
                for item in items {
                    self.element(self.item, item)?;
                }
                self.close(name);
            }
            Value::String(s) => {
                self.open(name);
                self.text(s)?;
                self.close(name);
            }
            Value::Bool(b) => {
                self.open(name);
                self.out.push_str(if *b { "true" } else { "false" });
                self.close(name);
            }
            Value::Number(n) => {
                self.open(name);
                self.out.push_str(&n.to_string());
                self.close(name);
            }
        }
        self.path.pop();
        Ok(())
    }

    fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn text(&mut self, s: &str) -> Result<(), ConvertError> {
        for c in s.chars() {
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                // A raw CR would be normalized away by XML parsers.
                '\r' => self.out.push_str("&#13;"),
                c if is_forbidden_in_xml(c) => {
                    return Err(self.error(format!(
                        "the text contains U+{:04X}, which XML 1.0 cannot carry",
                        c as u32
                    )))
                }
                c => self.out.push(c),
            }
        }
        Ok(())
    }
}
