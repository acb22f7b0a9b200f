//! The [`Catalog`] a running system validates config rows against.

use std::collections::BTreeSet;
use std::sync::Arc;

use eventyard_converter::Registry;
use eventyard_core::config::{Catalog, ConfigStore};

/// Converter and handler ids known to this process, plus those that running
/// daemons have recorded in `ey_component`.
///
/// Rules of built-in (and locally registered) receive converters are
/// checked; rules of a converter only known from `ey_component` are left to
/// the daemon that owns it.
#[derive(Debug, Clone)]
pub struct RuntimeCatalog {
    converters: Arc<Registry>,
    handlers: BTreeSet<String>,
    recorded: BTreeSet<(String, String)>,
}

impl RuntimeCatalog {
    /// A catalog over a converter registry and no handlers.
    pub fn new(converters: Arc<Registry>) -> Self {
        RuntimeCatalog {
            converters,
            handlers: BTreeSet::new(),
            recorded: BTreeSet::new(),
        }
    }

    /// Adds handler ids registered in this process.
    pub fn with_handlers<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.handlers.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Adds the ids that daemons have recorded in `ey_component`.
    pub async fn with_recorded(mut self, store: &ConfigStore) -> eventyard_core::Result<Self> {
        self.recorded.extend(store.recorded_components().await?);
        Ok(self)
    }

    fn recorded(&self, kind: &str, id: &str) -> bool {
        self.recorded.contains(&(kind.to_string(), id.to_string()))
    }
}

impl Catalog for RuntimeCatalog {
    fn has_send_converter(&self, id: &str) -> bool {
        self.converters.send(id).is_some()
            || is_builtin_text_kind(&self.converters, id)
            || self.recorded("send_converter", id)
    }

    fn has_receive_converter(&self, id: &str) -> bool {
        self.converters.receive(id).is_some() || self.recorded("receive_converter", id)
    }

    fn check_rules(&self, converter_id: &str, rules: Option<&str>) -> Result<(), String> {
        if self.converters.receive(converter_id).is_some() {
            self.converters
                .validate(converter_id, rules)
                .map_err(|e| e.to_string())
        } else {
            Ok(())
        }
    }

    fn check_send_rules(&self, converter_id: &str, rules: Option<&str>) -> Result<(), String> {
        if self.converters.send(converter_id).is_some()
            || is_builtin_text_kind(&self.converters, converter_id)
        {
            self.converters
                .send_for(converter_id, rules)
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            Ok(())
        }
    }

    fn has_handler(&self, id: &str) -> bool {
        self.handlers.contains(id) || self.recorded("handler", id)
    }
}

/// The built-in text converters (`delimited`, `multi_delimited`,
/// `fixed_width`) also render on the send side, given rules.
fn is_builtin_text_kind(converters: &Registry, id: &str) -> bool {
    matches!(id, "delimited" | "multi_delimited" | "fixed_width")
        && converters.receive(id).is_some()
}
