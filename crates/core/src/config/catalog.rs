//! What the validator knows about converter and handler ids.

use std::collections::BTreeSet;

/// The converter and handler ids a config row may name, and the check of a
/// receive converter's rules.
///
/// The `eventyard` facade implements it over the converter registry, the
/// registered handlers and the ids that running daemons have recorded in
/// `ey_component`; tests use [`StaticCatalog`].
pub trait Catalog: Send + Sync {
    /// Whether a send converter with this id exists.
    fn has_send_converter(&self, id: &str) -> bool;
    /// Whether a receive converter with this id exists.
    fn has_receive_converter(&self, id: &str) -> bool;
    /// Checks a known receive converter's rules text; `Err` carries the
    /// reason, naming the rule or field at fault.
    fn check_rules(&self, converter_id: &str, rules: Option<&str>) -> Result<(), String>;
    /// Checks a known send converter's rules text (delimited and
    /// fixed-width converters render with the same rules their receivers use).
    fn check_send_rules(&self, converter_id: &str, rules: Option<&str>) -> Result<(), String> {
        let _ = (converter_id, rules);
        Ok(())
    }
    /// Whether a handler with this id exists.
    fn has_handler(&self, id: &str) -> bool;
}

/// A fixed set of ids, with no rules checking. Handy in tests and for
/// applications that validate rules elsewhere.
#[derive(Debug, Clone, Default)]
pub struct StaticCatalog {
    send_converters: BTreeSet<String>,
    receive_converters: BTreeSet<String>,
    handlers: BTreeSet<String>,
}

impl StaticCatalog {
    /// An empty catalog: every id is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds send converter ids.
    pub fn send_converters<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.send_converters.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Adds receive converter ids.
    pub fn receive_converters<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.receive_converters
            .extend(ids.into_iter().map(Into::into));
        self
    }

    /// Adds handler ids.
    pub fn handlers<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.handlers.extend(ids.into_iter().map(Into::into));
        self
    }
}

impl Catalog for StaticCatalog {
    fn has_send_converter(&self, id: &str) -> bool {
        self.send_converters.contains(id)
    }
    fn has_receive_converter(&self, id: &str) -> bool {
        self.receive_converters.contains(id)
    }
    fn check_rules(&self, _converter_id: &str, _rules: Option<&str>) -> Result<(), String> {
        Ok(())
    }
    fn has_handler(&self, id: &str) -> bool {
        self.handlers.contains(id)
    }
}
