//! The JSON writing both formats share, without Erlang terms: an object
//! written entry by entry, the payload as text or base64, mochijson2's
//! escaping for the legacy format, and message ids as hex. The NIF's
//! `encode/` walks the terms and writes through these.

pub mod base64_json;
pub mod hex;
pub mod mochi;
pub mod object;

#[cfg(test)]
mod tests {
    use super::base64_json::Base64;
    use super::hex::hex_into;
    use super::mochi::MochiFormatter;
    use super::object::{put, Object, Payload};
    use crate::config::PayloadEncoding;
    use crate::fast::plain_text::is_plain_ascii;
    use serde_json::ser::CompactFormatter;
    use ::base64::engine::general_purpose::STANDARD;
    use ::base64::Engine;
    use serde::ser::{Serialize, SerializeMap, Serializer};
    use serde_json::ser::Formatter;

    #[test]
    fn mochi_escapes_non_ascii_lowercase() {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, MochiFormatter);
        "a\"é\u{7f}\n😀/".serialize(&mut ser).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"\u00e9\u007f\n\ud83d\ude00/""#);
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever the text (any Unicode, controls, quotes), both formats'
        /// string output is valid JSON that reads back to the same text.
        #[test]
        fn strings_always_encode_to_valid_json(text in any::<String>()) {
            let mut emqx = Vec::new();
            let mut ser = serde_json::Serializer::new(&mut emqx);
            let mut map = ser.serialize_map(None).unwrap();
            map.serialize_entry(&text, &text).unwrap();
            SerializeMap::end(map).unwrap();
            let mut legacy = Vec::new();
            let mut ser = serde_json::Serializer::with_formatter(&mut legacy, MochiFormatter);
            let mut map = ser.serialize_map(None).unwrap();
            map.serialize_entry(&text, &text).unwrap();
            SerializeMap::end(map).unwrap();
            prop_assert!(legacy.iter().all(|b| *b < 0x80), "legacy output is ASCII");
            for out in [emqx, legacy] {
                let back: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(back.get(&text), Some(&serde_json::Value::String(text.clone())));
            }
        }

        /// Any bytes as a base64 payload read back byte-exact.
        #[test]
        fn base64_payloads_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let out = serde_json::to_vec(&Base64(&bytes)).unwrap();
            let text: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(STANDARD.decode(text).unwrap(), bytes);
        }
    }

    /// What `Object` writes: the same bytes serde_json's own map writes,
    /// in both formats, on the plain-text path and off it.
    fn object_json<F: Formatter + Clone>(formatter: F, text: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut object = Object::new(&mut out, formatter);
        object.str_entry("text", text).unwrap();
        object.payload_entry("payload", &Payload::of(text.as_bytes(), PayloadEncoding::Auto)).unwrap();
        object.payload_entry("base64", &Payload::of(bytes, PayloadEncoding::Base64)).unwrap();
        object.serialize_entry("n", &42).unwrap();
        object.end().unwrap();
        out
    }

    fn serde_json_map<F: Formatter>(formatter: F, text: &str, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        let mut map = ser.serialize_map(None).unwrap();
        map.serialize_entry("text", text).unwrap();
        map.serialize_entry("payload", text).unwrap();
        map.serialize_entry("base64", &STANDARD.encode(bytes)).unwrap();
        map.serialize_entry("n", &42).unwrap();
        SerializeMap::end(map).unwrap();
        out
    }

    #[test]
    fn objects_match_serde_json_maps() {
        let plain = "sensor reading 42, ok; ".repeat(10);
        for text in [plain.as_str(), "", "needs \"escaping\" here", "caf\u{e9}", "tab\there", "\u{7f}"] {
            for bytes in [&b""[..], b"\x00\xff\xfe", b"abcd"] {
                assert_eq!(object_json(CompactFormatter, text, bytes), serde_json_map(CompactFormatter, text, bytes));
                assert_eq!(object_json(MochiFormatter, text, bytes), serde_json_map(MochiFormatter, text, bytes));
            }
        }
        assert!(is_plain_ascii(plain.as_bytes()));
        assert!(!is_plain_ascii(b"tab\there"));
        assert!(!is_plain_ascii("caf\u{e9}".as_bytes()));
        assert!(!is_plain_ascii(b"\x7f"));
    }

    #[test]
    fn put_copies_every_length_and_nothing_else() {
        let source: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut buf = vec![0u8; 48];
            let base = buf.as_mut_ptr();
            // SAFETY: 3 + 40 bytes fit in 48; the source is another Vec.
            let end = unsafe { put(base.add(3), &source[..n]) };
            assert_eq!(end as usize - base as usize, 3 + n);
            assert_eq!(&buf[3..3 + n], &source[..n], "length {n}");
            assert!(buf[..3].iter().chain(&buf[3 + n..]).all(|&b| b == 0), "length {n} wrote outside");
        }
    }

    #[test]
    fn hex_ids() {
        let mut buf = [0u8; 32];
        let n = hex_into(&[0x00, 0xab, 0x10], &mut buf);
        assert_eq!(&buf[..n], b"00ab10");
    }
}

