//! The check that lets the encoder copy text into JSON as it is.
//!
//! A hook checks four or five strings: a clientid, a username, a topic,
//! the node name and a payload, most of them under 32 bytes. A byte loop
//! with an early exit spends more on those short strings than on the
//! payload, so on x86_64 every length of 8 bytes or more is checked in
//! whole 16-byte SSE2 vectors (SSE2 is part of x86_64), the last one
//! overlapping the one before; shorter text and other targets fold a
//! table lookup over the bytes without branching per byte.

/// Printable ASCII other than `"` and `\`: the same text in JSON, in both
/// formats.
#[inline]
pub fn is_plain_ascii(bytes: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= 8 {
        return sse2::is_plain(bytes);
    }
    is_plain_by_table(bytes)
}

static PLAIN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        table[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    table
};

fn is_plain_by_table(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |plain, &b| plain & PLAIN_BYTE[b as usize])
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// `bytes` holds at least 8 bytes.
    pub fn is_plain(bytes: &[u8]) -> bool {
        let (n, p) = (bytes.len(), bytes.as_ptr());
        debug_assert!(n >= 8);
        // SAFETY: every load below reads 8 or 16 bytes that lie inside
        // `bytes`: whole vectors from the front, then the last 16 (or, under
        // 16 bytes, the first 8 and the last 8), unaligned loads throughout.
        unsafe {
            if n < 16 {
                let front = _mm_loadl_epi64(p as *const __m128i);
                let back = _mm_loadl_epi64(p.add(n - 8) as *const __m128i);
                return bad_lanes(_mm_unpacklo_epi64(front, back)) == 0;
            }
            let mut bad = 0;
            let mut at = 0;
            while at + 16 <= n {
                bad |= bad_lanes(_mm_loadu_si128(p.add(at) as *const __m128i));
                at += 16;
            }
            bad |= bad_lanes(_mm_loadu_si128(p.add(n - 16) as *const __m128i));
            bad == 0
        }
    }

    /// A bit per byte that is not plain: below 0x20 or above 0x7e (both
    /// negative or small as signed bytes), `"` or `\`.
    #[inline(always)]
    unsafe fn bad_lanes(v: __m128i) -> i32 {
        let control_or_high = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        let delete = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(control_or_high, delete), _mm_or_si128(quote, backslash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples() {
        assert!(is_plain_ascii(b""));
        assert!(is_plain_ascii(b"bench/sensors/42/temp"));
        assert!(!is_plain_ascii(b"tab\there"));
        assert!(!is_plain_ascii("caf\u{e9}".as_bytes()));
        assert!(!is_plain_ascii(b"\x7f"));
    }

    #[test]
    fn matches_a_byte_loop_at_every_length_and_position() {
        let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
        for len in 1..=80 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = b;
                    assert_eq!(is_plain_ascii(&bytes), plain(b), "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }
}
