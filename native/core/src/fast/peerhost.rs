//! The text of an IPv4 peerhost tuple, the one address every message event
//! carries.
//!
//! Reading `{A, B, C, D}` takes five calls into the VM (the tuple, then
//! each octet) and a formatting pass. A client's messages carry the
//! same address, so each scheduler thread remembers the last tuple's raw
//! elements and text. An octet 0-255 is a small integer, which the VM
//! keeps as an immediate term, and no other term has the same raw word:
//! four raw words equal to four that were read as octets are those
//! octets, and the text is reused without a call.

use std::cell::Cell;

/// A tuple's elements as the VM's raw term words (`ERL_NIF_TERM`).
pub type RawElements = [usize; 4];

/// Dotted-quad text, at most 15 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ipv4Text {
    bytes: [u8; 15],
    len: u8,
}

impl Ipv4Text {
    pub fn new(octets: [u8; 4]) -> Ipv4Text {
        let mut bytes = [0u8; 15];
        let mut len = 0;
        for (i, octet) in octets.into_iter().enumerate() {
            if i > 0 {
                bytes[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                bytes[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                bytes[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            bytes[len] = b'0' + octet % 10;
            len += 1;
        }
        Ipv4Text { bytes, len: len as u8 }
    }

    pub fn as_str(&self) -> &str {
        // Digits and dots only.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

#[derive(Clone, Copy)]
struct Remembered {
    elements: RawElements,
    text: Ipv4Text,
}

thread_local! {
    static LAST: Cell<Option<Remembered>> = const { Cell::new(None) };
}

/// The text of the address whose 4-tuple has the elements `raw`;
/// `octets` reads them (`None`: not an IPv4 address) unless they are the
/// last ones this thread saw.
#[inline]
pub fn ipv4_text(raw: RawElements, octets: impl FnOnce() -> Option<[u8; 4]>) -> Option<Ipv4Text> {
    if let Some(last) = LAST.get().filter(|last| last.elements == raw) {
        return Some(last.text);
    }
    let text = Ipv4Text::new(octets()?);
    LAST.set(Some(Remembered { elements: raw, text }));
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_matches_display() {
        for octets in [[0, 0, 0, 0], [192, 0, 2, 10], [255, 255, 255, 255], [10, 100, 9, 99]] {
            assert_eq!(Ipv4Text::new(octets).as_str(), std::net::Ipv4Addr::from(octets).to_string());
        }
    }

    /// The same raw words reuse the text without reading the tuple; other
    /// words are read, and a tuple that is no address is not remembered.
    #[test]
    fn the_last_tuple_is_remembered_per_thread() {
        let unread = || -> Option<[u8; 4]> { panic!("read the tuple again") };
        assert_eq!(ipv4_text([1, 2, 3, 4], || Some([10, 0, 0, 1])).unwrap().as_str(), "10.0.0.1");
        assert_eq!(ipv4_text([1, 2, 3, 4], unread).unwrap().as_str(), "10.0.0.1");
        assert_eq!(ipv4_text([1, 2, 3, 5], || None), None);
        assert_eq!(ipv4_text([1, 2, 3, 4], unread).unwrap().as_str(), "10.0.0.1");
        assert_eq!(ipv4_text([5, 6, 7, 8], || Some([192, 0, 2, 7])).unwrap().as_str(), "192.0.2.7");
        let other_thread = std::thread::spawn(|| ipv4_text([5, 6, 7, 8], || Some([1, 1, 1, 1])).unwrap());
        assert_eq!(other_thread.join().unwrap().as_str(), "1.1.1.1");
    }
}
