//! What the encoder needs besides the event.

use kafka_bridge_core::config::{Format, PayloadEncoding, UserPropertyHeaders};

/// What the encoder needs besides the event.
pub struct EncodeOptions<'o> {
    pub format: Format,
    pub payload_encoding: PayloadEncoding,
    pub user_property_headers: UserPropertyHeaders,
    pub node: &'o str,
}
