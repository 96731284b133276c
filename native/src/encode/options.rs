//! What the encoder needs besides the event.

use kafka_bridge_core::config::{Format, PayloadEncoding};

/// What the encoder needs besides the event.
pub struct EncodeOptions<'o> {
    pub format: Format,
    pub payload_encoding: PayloadEncoding,
    pub user_properties_headers: bool,
    pub node: &'o str,
}
