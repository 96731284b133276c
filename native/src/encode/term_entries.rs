//! JSON object entries read from Erlang terms, on top of the term-free
//! `Object` of `kafka_bridge_core::json`.

use rustler::Term;
use serde_json::ser::Formatter;

use kafka_bridge_core::fast::peerhost;
use kafka_bridge_core::fast::plain_text::is_plain_ascii;
use kafka_bridge_core::json::object::Object;

use crate::encode::term_json::TermJson;
use crate::terms::{self, ipv4_octets, tuple};
use crate::work_budget;

pub trait TermEntries {
    /// A term as JSON, with the usual binary (a clientid, a username) on the
    /// plain-text path.
    fn term_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error>;

    /// An integer term of milliseconds as whole seconds (as `div 1000`);
    /// anything else as `term_entry`.
    fn seconds_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error>;

    /// An integer term (a QoS, a port) as it is; anything else as `term_entry`.
    fn int_term_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error>;

    /// An IPv4 address tuple (the usual peerhost) as dotted-quad text;
    /// anything else as `term_entry`.
    fn address_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error>;
}

impl<F: Formatter + Clone> TermEntries for Object<'_, F> {
    #[inline(always)]
    fn term_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.and_then(terms::binary) {
            Some(bytes) if work_budget::spend(work_budget::text_units(bytes.len())) && is_plain_ascii(bytes) => {
                self.quoted_entry(key, bytes);
                Ok(())
            }
            _ => self.serialize_entry(key, &TermJson(term)),
        }
    }

    fn seconds_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.map(|t| t.decode::<i64>()) {
            Some(Ok(ms)) => {
                self.int_entry(key, ms / 1000);
                Ok(())
            }
            _ => self.term_entry(key, term),
        }
    }

    fn int_term_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        match term.map(|t| t.decode::<i64>()) {
            Some(Ok(value)) => {
                self.int_entry(key, value);
                Ok(())
            }
            _ => self.term_entry(key, term),
        }
    }

    fn address_entry(&mut self, key: &'static str, term: Option<Term<'_>>) -> Result<(), serde_json::Error> {
        let text = term.and_then(tuple::<4>).and_then(|elements| peerhost::ipv4_text(elements.raw_words(), || ipv4_octets(elements)));
        match text {
            Some(text) => {
                self.quoted_entry(key, text.as_str().as_bytes());
                Ok(())
            }
            None => self.term_entry(key, term),
        }
    }
}
