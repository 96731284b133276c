//! Erlang terms as JSON: reasons, properties and any other term a field
//! may hold, bounded in depth and size.

use rustler::types::map::MapIterator;
use rustler::{Term, TermType};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use kafka_bridge_core::fast::peerhost::Ipv4Text;
use kafka_bridge_core::json::base64_json::Base64;

use crate::terms;
use crate::work_budget;

/// A disconnect or drop reason as text: atoms by name, anything else printed.
pub struct ReasonText<'a>(pub Option<Term<'a>>);

impl Serialize for ReasonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(t) => KeyText(t).serialize(s),
        }
    }
}

/// MQTT 5 publish properties: a map, with `User-Property` pairs as an object
/// (the shape EMQX's rule engine uses).
pub struct PubProps<'a>(pub Option<Term<'a>>);

impl Serialize for PubProps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The usual empty map without creating a map iterator.
        match self.0.filter(|p| p.map_size().is_ok_and(|n| n > 0)) {
            None => s.serialize_map(Some(0))?.end(),
            Some(props) => TermJson(Some(props)).serialize(s),
        }
    }
}

/// Any Erlang term as JSON. `undefined` is null, binaries are strings
/// (base64 when not UTF-8), inet tuples are addresses, proplists are objects.
/// A term nested deeper than `terms::MAX_TERM_DEPTH` is an error, so the
/// walk stays far from the end of the scheduler's stack.
pub struct TermJson<'a>(pub Option<Term<'a>>);

impl Serialize for TermJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(term) => TermAt { term, depth: 0 }.serialize(s),
        }
    }
}

/// A term `depth` levels below the field being written.
pub struct TermAt<'a> {
    term: Term<'a>,
    depth: usize,
}

impl<'a> TermAt<'a> {
    pub fn child(&self, term: Term<'a>) -> TermAt<'a> {
        TermAt { term, depth: self.depth + 1 }
    }
}

impl Serialize for TermAt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.depth > terms::MAX_TERM_DEPTH {
            return Err(too_deep());
        }
        let term = self.term;
        match term.get_type() {
            TermType::Atom => match terms::as_bool(term) {
                Some(b) => s.serialize_bool(b),
                None if terms::is_undefined(term) => s.serialize_none(),
                None => s.serialize_str(&term.atom_to_string().unwrap_or_default()),
            },
            TermType::Integer => match term.decode::<i64>() {
                Ok(i) => s.serialize_i64(i),
                Err(_) => match term.decode::<u64>() {
                    Ok(u) => s.serialize_u64(u),
                    Err(_) => PrintedTerm(term).serialize(s),
                },
            },
            TermType::Float => s.serialize_f64(term.decode::<f64>().unwrap_or(0.0)),
            TermType::Binary => {
                let bytes = terms::binary(term).unwrap_or_default();
                if !work_budget::spend(work_budget::text_units(bytes.len())) {
                    return Err(over_budget());
                }
                match std::str::from_utf8(bytes) {
                    Ok(text) => s.serialize_str(text),
                    Err(_) => Base64(bytes).serialize(s),
                }
            }
            TermType::Map => {
                if !work_budget::spend(term.map_size().unwrap_or(0) as u64) {
                    return Err(over_budget());
                }
                let mut map = s.serialize_map(None)?;
                for (k, v) in MapIterator::new(term).into_iter().flatten() {
                    map.serialize_entry(&KeyText(k), &self.child(v))?;
                }
                map.end()
            }
            TermType::List => {
                // An improper list (`[1|2]`) is written as Erlang prints it.
                let Some(items) = terms::list(term) else {
                    if work_budget::spent_out() {
                        return Err(over_budget());
                    }
                    return PrintedTerm(term).serialize(s);
                };
                let pairs: Option<Vec<[Term; 2]>> = items.iter().map(|t| terms::tuple_elements::<2>(*t)).collect();
                match pairs {
                    Some(pairs) if !pairs.is_empty() => {
                        let mut map = s.serialize_map(Some(pairs.len()))?;
                        for [k, v] in pairs {
                            map.serialize_entry(&KeyText(k), &self.child(v))?;
                        }
                        map.end()
                    }
                    _ => {
                        let mut seq = s.serialize_seq(Some(items.len()))?;
                        for item in items {
                            seq.serialize_element(&self.child(item))?;
                        }
                        seq.end()
                    }
                }
            }
            TermType::Tuple => {
                if let Some(ip) = terms::ip_addr(term) {
                    return match ip {
                        // The common peerhost: no formatting machinery.
                        std::net::IpAddr::V4(v4) => s.serialize_str(Ipv4Text::new(v4.octets()).as_str()),
                        std::net::IpAddr::V6(_) => s.collect_str(&ip),
                    };
                }
                if let Some([ip, port]) = terms::tuple_elements::<2>(term) {
                    if let (Some(ip), Ok(port)) = (terms::ip_addr(ip), port.decode::<u16>()) {
                        return s.collect_str(&std::net::SocketAddr::new(ip, port));
                    }
                }
                let items = terms::tuple_slice(term).unwrap_or_default();
                if !work_budget::spend(items.len() as u64) {
                    return Err(over_budget());
                }
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for raw in items {
                    // SAFETY: each element belongs to the tuple, a term of its env.
                    seq.serialize_element(&self.child(unsafe { Term::new(term.get_env(), *raw) }))?;
                }
                seq.end()
            }
            _ => PrintedTerm(term).serialize(s),
        }
    }
}

/// Never seen: the call is made again on a dirty scheduler (`work_budget`).
pub fn over_budget<E: serde::ser::Error>() -> E {
    E::custom("the work budget of a normal scheduler is spent")
}

pub fn too_deep<E: serde::ser::Error>() -> E {
    E::custom(format_args!("a term nested deeper than {} levels, or too large to print", terms::MAX_TERM_DEPTH))
}

/// A term as the text Erlang prints for it; an error when it is too large
/// to print on a scheduler (see `terms::printed`).
pub struct PrintedTerm<'a>(pub Term<'a>);

impl Serialize for PrintedTerm<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&terms::printed(self.0).ok_or_else(too_deep)?)
    }
}

/// A map key as text: atoms and binaries as they are, anything else printed.
pub struct KeyText<'a>(pub Term<'a>);

impl Serialize for KeyText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match terms::text(self.0) {
            Some(text) => s.serialize_str(&text),
            None => PrintedTerm(self.0).serialize(s),
        }
    }
}
