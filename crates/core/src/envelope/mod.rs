//! The wire envelope (being written).

/// Envelope errors (being written).
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Placeholder while the codec is written.
    #[error("envelope codec not built yet")]
    NotBuilt,
}
