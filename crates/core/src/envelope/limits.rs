//! Hard limits applied to untrusted envelopes.

/// Hard limits against hostile or broken input.
///
/// [`unpack`](super::unpack) enforces all of them before or while it reads,
/// so a hostile message costs at most these amounts of memory and time.
/// [`pack`](super::pack) enforces them too, so a sender never produces an
/// envelope that a receiver with the same limits would refuse.
///
/// The defaults are safe for a daemon receiving from an untrusted broker and
/// roomy for business events:
///
/// | limit | default |
/// |---|---|
/// | [`max_packed_size`](Self::max_packed_size) | 16 MiB |
/// | [`max_decompressed_size`](Self::max_decompressed_size) | 64 MiB |
/// | [`max_depth`](Self::max_depth) | 64 |
/// | [`max_attributes`](Self::max_attributes) | 256 |
/// | [`max_entries`](Self::max_entries) | 1024 |
///
/// ```
/// use eventyard_core::envelope::Limits;
///
/// let limits = Limits::default().max_depth(32).max_decompressed_size(8 << 20);
/// assert_eq!(limits.max_depth, 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest packed (possibly compressed) envelope accepted, in bytes.
    pub max_packed_size: usize,
    /// Largest XML document a payload may decompress to, in bytes.
    /// Decompression stops as soon as it would exceed this.
    pub max_decompressed_size: usize,
    /// Deepest element nesting in the whole document; `<envelope>` is level 1,
    /// `<body>` level 2, the body's top elements level 3.
    pub max_depth: usize,
    /// Most attributes on any single element, body content included.
    pub max_attributes: usize,
    /// Most `<entry>` key/values in the common section.
    pub max_entries: usize,
}

impl Limits {
    /// Default for [`max_packed_size`](Self::max_packed_size): 16 MiB.
    pub const DEFAULT_MAX_PACKED_SIZE: usize = 16 << 20;
    /// Default for [`max_decompressed_size`](Self::max_decompressed_size): 64 MiB.
    pub const DEFAULT_MAX_DECOMPRESSED_SIZE: usize = 64 << 20;
    /// Default for [`max_depth`](Self::max_depth): 64.
    pub const DEFAULT_MAX_DEPTH: usize = 64;
    /// Default for [`max_attributes`](Self::max_attributes): 256.
    pub const DEFAULT_MAX_ATTRIBUTES: usize = 256;
    /// Default for [`max_entries`](Self::max_entries): 1024.
    pub const DEFAULT_MAX_ENTRIES: usize = 1024;

    /// Sets [`max_packed_size`](Self::max_packed_size).
    pub fn max_packed_size(mut self, bytes: usize) -> Self {
        self.max_packed_size = bytes;
        self
    }

    /// Sets [`max_decompressed_size`](Self::max_decompressed_size).
    pub fn max_decompressed_size(mut self, bytes: usize) -> Self {
        self.max_decompressed_size = bytes;
        self
    }

    /// Sets [`max_depth`](Self::max_depth).
    pub fn max_depth(mut self, levels: usize) -> Self {
        self.max_depth = levels;
        self
    }

    /// Sets [`max_attributes`](Self::max_attributes).
    pub fn max_attributes(mut self, count: usize) -> Self {
        self.max_attributes = count;
        self
    }

    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, count: usize) -> Self {
        self.max_entries = count;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_packed_size: Self::DEFAULT_MAX_PACKED_SIZE,
            max_decompressed_size: Self::DEFAULT_MAX_DECOMPRESSED_SIZE,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_attributes: Self::DEFAULT_MAX_ATTRIBUTES,
            max_entries: Self::DEFAULT_MAX_ENTRIES,
        }
    }
}
