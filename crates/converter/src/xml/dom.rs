//! A minimal element tree, enough for path extraction.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::ConvertError;

/// Deeper nesting than this is refused (hostile input must not exhaust the stack).
pub(crate) const MAX_DEPTH: usize = 256;

/// One element: its qualified name, attributes, child elements and own text.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attributes: Vec<(String, String)>,
    pub(crate) children: Vec<Element>,
    /// The element's own text and CDATA (not its children's).
    pub(crate) text: String,
}

/// The part of a qualified name after the prefix.
pub(crate) fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

impl Element {
    fn open(
        converter: &str,
        reader: &Reader<&[u8]>,
        start: &BytesStart<'_>,
    ) -> Result<Self, ConvertError> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut attributes = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| invalid(converter, reader, e.to_string()))?;
            let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
            let value = attr
                .unescape_value()
                .map_err(|e| invalid(converter, reader, e.to_string()))?
                .into_owned();
            attributes.push((key, value));
        }
        Ok(Element {
            name,
            attributes,
            children: Vec::new(),
            text: String::new(),
        })
    }
}

fn invalid(converter: &str, reader: &Reader<&[u8]>, message: String) -> ConvertError {
    ConvertError::InvalidXml {
        converter: converter.to_owned(),
        position: reader.buffer_position(),
        message,
    }
}

/// Parses `body` into its root element.
pub(crate) fn parse(converter: &str, body: &str) -> Result<Element, ConvertError> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| ConvertError::InvalidXml {
            converter: converter.to_owned(),
            position: reader.error_position(),
            message: e.to_string(),
        })?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(invalid(
                        converter,
                        &reader,
                        "more than one root element".into(),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid(
                        converter,
                        &reader,
                        format!("elements nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push(Element::open(converter, &reader, &start)?);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err(invalid(
                        converter,
                        &reader,
                        "more than one root element".into(),
                    ));
                }
                let element = Element::open(converter, &reader, &start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                // quick-xml checks that end names match their start.
                let Some(element) = stack.pop() else {
                    return Err(invalid(converter, &reader, "unexpected end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                let text = text
                    .unescape()
                    .map_err(|e| invalid(converter, &reader, e.to_string()))?;
                match stack.last_mut() {
                    Some(element) => element.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err(invalid(
                            converter,
                            &reader,
                            "text outside the root element".into(),
                        ))
                    }
                }
            }
            Event::CData(data) => {
                let text = data
                    .decode()
                    .map_err(|e| invalid(converter, &reader, e.to_string()))?;
                match stack.last_mut() {
                    Some(element) => element.text.push_str(&text),
                    None => {
                        return Err(invalid(
                            converter,
                            &reader,
                            "CDATA outside the root element".into(),
                        ))
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(invalid(
            converter,
            &reader,
            format!("the body ends inside `<{}>`", open.name),
        ));
    }
    root.ok_or_else(|| invalid(converter, &reader, "no root element".into()))
}
