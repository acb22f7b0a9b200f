//! XML on both sides: a small document tree for path extraction, and the
//! value → XML writer.

pub(crate) mod dom;
mod send;

pub use send::XmlSend;

/// True if `name` can be an XML element or attribute name (no namespace prefix).
pub(crate) fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// True for characters XML 1.0 cannot carry at all, escaped or not.
pub(crate) fn is_forbidden_in_xml(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}
