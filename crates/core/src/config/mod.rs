//! Config (being written).
/// Config errors.
#[derive(Debug, thiserror::Error)]
#[error("config")]
pub struct ConfigError;
