//! Message ids as lowercase hex, without a formatter.

/// Writes `bytes` as lowercase hex into `out`, returning the length written.
pub fn hex_into(bytes: &[u8], out: &mut [u8; 32]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(16);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
    2 * n
}
