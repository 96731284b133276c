//! The legacy format's string escaping (mochijson2's, as the 2016 bridge
//! wrote it).

use std::io::{self, Write};

use serde_json::ser::Formatter;

/// serde_json output escaped the way mochijson2 escapes: every character
/// from U+007F up as a lowercase `\uXXXX` (surrogate pairs above U+FFFF).
#[derive(Clone)]
pub struct MochiFormatter;

impl Formatter for MochiFormatter {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7f {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{:04x}", unit)?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}
