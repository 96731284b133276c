//! Small, allocation-free readers for the Erlang terms EMQX hands to hooks.
//!
//! Everything here borrows from the calling process's heap, so decoding a
//! hook's arguments copies nothing until the JSON encoder writes its output.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustler::sys::ErlNifTerm;
use rustler::types::map::MapIterator;
use rustler::{Atom, Binary, Env, Term, TermType};

rustler::atoms! {
    undefined,
    nil,
    null,
    true_ = "true",
    false_ = "false",
}

/// The elements of a tuple, borrowed from the tuple on the calling
/// process's heap; each becomes a `Term` when it is read.
#[derive(Clone, Copy)]
pub struct Elements<'a, const N: usize> {
    env: Env<'a>,
    raw: &'a [ErlNifTerm; N],
}

impl<'a, const N: usize> Elements<'a, N> {
    pub fn get(&self, index: usize) -> Term<'a> {
        // SAFETY: the element belongs to a tuple that lives as long as `env`.
        unsafe { Term::new(self.env, self.raw[index]) }
    }

    /// The raw words, which are equal exactly when the terms are the same
    /// immediate or the same heap object.
    pub fn raw(&self) -> &'a [ErlNifTerm; N] {
        self.raw
    }
}

/// The elements of a tuple of exactly `N` elements, without copying them.
pub fn tuple<'a, const N: usize>(term: Term<'a>) -> Option<Elements<'a, N>> {
    let mut arity: rustler::sys::c_int = 0;
    let mut array: *const ErlNifTerm = std::ptr::null();
    // SAFETY: enif_get_tuple only reads `term` and writes the two out-params;
    // the array it returns lives as long as the term's environment.
    let ok = unsafe { rustler::sys::enif_get_tuple(term.get_env().as_c_arg(), term.as_c_arg(), &mut arity, &mut array) };
    if ok == 0 || arity as usize != N {
        return None;
    }
    // SAFETY: the runtime guarantees `arity` (= N) valid elements behind `array`.
    Some(Elements { env: term.get_env(), raw: unsafe { &*(array as *const [ErlNifTerm; N]) } })
}

/// The elements of a tuple of exactly `N` elements, as terms.
pub fn tuple_elements<'a, const N: usize>(term: Term<'a>) -> Option<[Term<'a>; N]> {
    tuple::<N>(term).map(|elements| std::array::from_fn(|i| elements.get(i)))
}

pub fn binary<'a>(term: Term<'a>) -> Option<&'a [u8]> {
    Binary::from_term(term).ok().map(|b| b.as_slice())
}

/// Looks up an atom key in a map; `None` when absent or not a map.
pub fn map_get<'a>(map: Term<'a>, key: Atom) -> Option<Term<'a>> {
    map.map_get(key).ok()
}

// `Atom == Term` compares the raw terms: an atom is an immediate, so no
// call into the VM is needed.

pub fn is_undefined(term: Term) -> bool {
    undefined() == term || nil() == term
}

pub fn as_bool(term: Term) -> Option<bool> {
    if true_() == term {
        Some(true)
    } else if false_() == term {
        Some(false)
    } else {
        None
    }
}

/// An inet address tuple as an address; `None` for anything else.
pub fn ip_addr(term: Term) -> Option<IpAddr> {
    if let Some(elements) = tuple::<4>(term) {
        return ipv4_octets(elements).map(|octets| IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(parts) = tuple_elements::<8>(term) {
        let mut segments = [0u16; 8];
        for (segment, part) in segments.iter_mut().zip(parts) {
            *segment = part.decode::<u16>().ok()?;
        }
        return Some(IpAddr::V6(Ipv6Addr::from(segments)));
    }
    None
}

/// The octets of an `{A, B, C, D}` address tuple's elements.
pub fn ipv4_octets(elements: Elements<4>) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    for (i, octet) in octets.iter_mut().enumerate() {
        *octet = elements.get(i).decode::<u8>().ok()?;
    }
    Some(octets)
}

/// Text of an atom or binary (clientids are binaries, system senders atoms).
pub fn text(term: Term<'_>) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(bytes) = binary(term) {
        // from_utf8 checks valid text faster than from_utf8_lossy walks it.
        return Some(std::str::from_utf8(bytes).map_or_else(|_| String::from_utf8_lossy(bytes), std::borrow::Cow::Borrowed));
    }
    if term.is_atom() && !is_undefined(term) {
        return term.atom_to_string().ok().map(std::borrow::Cow::Owned);
    }
    None
}

/// Converts a config term (maps with binary keys, as `emqx_plugins:get_config/1`
/// returns them) into a JSON value, so the config parser is plain Rust.
/// An error names the dotted key and never shows the value, which may be a
/// secret.
pub fn to_json(term: Term) -> Result<serde_json::Value, String> {
    to_json_at(term, "", 0)
}

/// Configs are a few levels deep; a limit keeps the walk off the end of a
/// dirty scheduler's stack whatever the term.
const MAX_CONFIG_DEPTH: usize = 32;

fn to_json_at(term: Term, path: &str, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let at = |what: &str| format!("{}: {what}", if path.is_empty() { "config" } else { path });
    if depth > MAX_CONFIG_DEPTH {
        return Err(at(&format!("nested deeper than {MAX_CONFIG_DEPTH} levels")));
    }
    Ok(match term.get_type() {
        TermType::Map => {
            let mut object = serde_json::Map::new();
            for (key, value) in MapIterator::new(term).ok_or_else(|| at("bad map"))? {
                let key = text(key).ok_or_else(|| at("a key is not text"))?;
                let child = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
                let value = to_json_at(value, &child, depth + 1)?;
                object.insert(key.into_owned(), value);
            }
            Value::Object(object)
        }
        TermType::Binary => Value::String(
            std::str::from_utf8(binary(term).unwrap_or_default())
                .map_err(|_| at("a string is not valid UTF-8"))?
                .to_owned(),
        ),
        TermType::Atom => match as_bool(term) {
            Some(b) => Value::Bool(b),
            None if is_undefined(term) || null() == term => Value::Null,
            None => Value::String(term.atom_to_string().map_err(|_| at("bad atom"))?),
        },
        TermType::Integer => Value::from(term.decode::<i64>().map_err(|_| at("integer out of range"))?),
        TermType::Float => Value::from(term.decode::<f64>().map_err(|_| at("bad float"))?),
        TermType::List => {
            let items: Vec<Term> = term.decode().map_err(|_| at("improper list"))?;
            // A charlist such as "localhost:9092" from a sys.config is a string.
            if !items.is_empty() && items.iter().all(|t| t.is_integer()) {
                let chars: Option<String> =
                    items.iter().map(|t| t.decode::<u32>().ok().and_then(char::from_u32)).collect();
                if let Some(s) = chars {
                    return Ok(Value::String(s));
                }
            }
            let mut array = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                array.push(to_json_at(item, &format!("{path}[{}]", i + 1), depth + 1)?);
            }
            Value::Array(array)
        }
        other => return Err(at(&format!("unsupported value (a {})", format!("{other:?}").to_lowercase()))),
    })
}
