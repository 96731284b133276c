//! Base64 straight into the record's buffer.

use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, Serializer};

/// Appends the base64 of `bytes` to `out`, with no intermediate buffer.
pub fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
}

/// A binary as a base64 JSON string.
pub struct Base64<'a>(pub &'a [u8]);

impl Serialize for Base64<'_> {
    /// Only binaries inside generic terms come here (a cold path), so
    /// serde_json's own string writer is good enough.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = Vec::with_capacity(self.0.len().div_ceil(3) * 4);
        base64_into(self.0, &mut text);
        s.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}
