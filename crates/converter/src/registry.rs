//! Converters by id.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::rules::{Builtin, Kind, Rules};
use crate::{CompiledReceive, ConvertError, ReceiveConverter, SendConverter, Side, XmlSend};

/// The converters a process knows, by id: what `converter_id` in the config
/// tables refers to.
///
/// [`Registry::with_builtins`] holds the built-in kinds; applications add
/// their own with [`Registry::register_send`] and
/// [`Registry::register_receive`] (registering an id again replaces it).
#[derive(Clone, Default)]
pub struct Registry {
    send: BTreeMap<String, Arc<dyn SendConverter>>,
    receive: BTreeMap<String, Arc<dyn ReceiveConverter>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("send", &self.send.keys().collect::<Vec<_>>())
            .field("receive", &self.receive.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry (not even `xml`); most callers want [`Registry::with_builtins`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-ins: send `xml`; receive `xml`, `delimited`,
    /// `multi_delimited`, `fixed_width`.
    ///
    /// The text kinds are also available on the send side, but need rules:
    /// see [`Registry::send_for`].
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry.register_send(Kind::Xml.id(), Arc::new(XmlSend::new()));
        for kind in Kind::ALL {
            registry.register_receive(kind.id(), Arc::new(Builtin(kind)));
        }
        registry
    }

    /// Registers a send converter under `id`; returns the one it replaces.
    pub fn register_send(
        &mut self,
        id: impl Into<String>,
        converter: Arc<dyn SendConverter>,
    ) -> Option<Arc<dyn SendConverter>> {
        self.send.insert(id.into(), converter)
    }

    /// Registers a receive converter under `id`; returns the one it replaces.
    pub fn register_receive(
        &mut self,
        id: impl Into<String>,
        converter: Arc<dyn ReceiveConverter>,
    ) -> Option<Arc<dyn ReceiveConverter>> {
        self.receive.insert(id.into(), converter)
    }

    /// The send converter registered as `id`.
    pub fn send(&self, id: &str) -> Option<&Arc<dyn SendConverter>> {
        self.send.get(id)
    }

    /// The receive converter registered as `id`.
    pub fn receive(&self, id: &str) -> Option<&Arc<dyn ReceiveConverter>> {
        self.receive.get(id)
    }

    /// The send converter ids, sorted.
    pub fn send_ids(&self) -> impl Iterator<Item = &str> {
        self.send.keys().map(String::as_str)
    }

    /// The receive converter ids, sorted.
    pub fn receive_ids(&self) -> impl Iterator<Item = &str> {
        self.receive.keys().map(String::as_str)
    }

    /// Checks a receive config row's `converter_id` and `converter_rules`:
    /// the id must be registered and the rules must compile. Blank rules
    /// count as `None`.
    ///
    /// ```
    /// use eventyard_converter::Registry;
    ///
    /// let registry = Registry::with_builtins();
    /// assert!(registry.validate("xml", None).is_ok());
    /// let err = registry
    ///     .validate("fixed_width", Some("fields = [{ name = \"amount\", length = 0 }]"))
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "converter `fixed_width`: invalid rules: field `amount`: length must be > 0"
    /// );
    /// ```
    pub fn validate(&self, converter_id: &str, rules: Option<&str>) -> Result<(), ConvertError> {
        self.receive_for(converter_id, rules).map(|_| ())
    }

    /// Compiles the receive converter `converter_id` with `rules`, once per
    /// config load; the result converts every body of that event type.
    pub fn receive_for(
        &self,
        converter_id: &str,
        rules: Option<&str>,
    ) -> Result<Arc<dyn CompiledReceive>, ConvertError> {
        let converter = self
            .receive
            .get(converter_id)
            .ok_or_else(|| self.unknown(converter_id, Side::Receive))?;
        converter.compile(converter_id, rules.filter(|r| !r.trim().is_empty()))
    }

    /// The send converter for `converter_id`.
    ///
    /// Without rules, the converter registered under that id. With rules, a
    /// built-in kind (`xml`, `delimited`, `multi_delimited`, `fixed_width`)
    /// compiled with them, so a delimited or fixed-width body can be rendered
    /// with the same rules text its receivers use.
    pub fn send_for(
        &self,
        converter_id: &str,
        rules: Option<&str>,
    ) -> Result<Arc<dyn SendConverter>, ConvertError> {
        match (
            rules.filter(|r| !r.trim().is_empty()),
            Kind::from_id(converter_id),
        ) {
            (Some(rules), Some(kind)) => Ok(Arc::new(Rules::parse(kind, converter_id, rules)?)),
            (Some(_), None) if self.send.contains_key(converter_id) => {
                Err(ConvertError::invalid_rules(
                    converter_id,
                    "this send converter is an application's own and takes no rules",
                ))
            }
            (None, _) | (Some(_), None) => self
                .send
                .get(converter_id)
                .cloned()
                .ok_or_else(|| self.unknown(converter_id, Side::Send)),
        }
    }

    fn unknown(&self, id: &str, side: Side) -> ConvertError {
        let known: Vec<&str> = match side {
            Side::Send => self.send_ids().collect(),
            Side::Receive => self.receive_ids().collect(),
        };
        ConvertError::UnknownConverter {
            id: id.to_owned(),
            side,
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }
    }
}
