//! Small, allocation-free readers for the Erlang terms EMQX hands to hooks.
//!
//! Everything here borrows from the calling process's heap, so decoding a
//! hook's arguments copies nothing until the JSON encoder writes its output.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustler::sys::ErlNifTerm;
use rustler::types::map::MapIterator;
use rustler::{Atom, Binary, Env, Term, TermType};

use crate::work_budget;

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
    pub fn raw_words(&self) -> [usize; N] {
        // SAFETY: `ErlNifTerm` is `#[repr(transparent)]` over `usize`, so
        // the arrays have the same layout.
        unsafe { *(self.raw as *const [ErlNifTerm; N] as *const [usize; N]) }
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

/// The raw elements of a tuple of any size, borrowed.
pub fn tuple_slice<'a>(term: Term<'a>) -> Option<&'a [ErlNifTerm]> {
    let mut arity: rustler::sys::c_int = 0;
    let mut array: *const ErlNifTerm = std::ptr::null();
    // SAFETY: as in `tuple`.
    let ok = unsafe { rustler::sys::enif_get_tuple(term.get_env().as_c_arg(), term.as_c_arg(), &mut arity, &mut array) };
    if ok == 0 {
        return None;
    }
    if arity == 0 {
        return Some(&[]);
    }
    // SAFETY: the runtime guarantees `arity` valid elements behind `array`.
    Some(unsafe { std::slice::from_raw_parts(array, arity as usize) })
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

/// The first element and the rest of a non-empty list (the rest may be an
/// improper tail), or `None` for anything else.
fn list_cell<'a>(term: Term<'a>) -> Option<(Term<'a>, Term<'a>)> {
    let env = term.get_env();
    let (mut head, mut tail) = (ErlNifTerm::default(), ErlNifTerm::default());
    // SAFETY: enif_get_list_cell only reads `term`, a term of `env`, and
    // writes the two out-params, which are then terms of `env` too.
    let ok = unsafe { rustler::sys::enif_get_list_cell(env.as_c_arg(), term.as_c_arg(), &mut head, &mut tail) };
    // SAFETY: as above.
    (ok != 0).then(|| unsafe { (Term::new(env, head), Term::new(env, tail)) })
}

/// The elements of a proper list, or `None` for anything else. rustler's
/// list decoder panics on an improper list (`[1|2]`); this one says no.
/// `None` too once the work budget is spent (see `work_budget`).
pub fn list<'a>(term: Term<'a>) -> Option<Vec<Term<'a>>> {
    let mut items = Vec::new();
    let mut rest = term;
    while let Some((head, tail)) = list_cell(rest) {
        if !work_budget::spend(1) {
            return None;
        }
        items.push(head);
        rest = tail;
    }
    rest.is_empty_list().then_some(items)
}

/// How deep the generic term walks (a hook field as JSON, a term printed
/// as text) may go. EMQX's own terms are a few levels deep; the limit
/// keeps any walk far from the end of a scheduler's stack.
pub const MAX_TERM_DEPTH: usize = 32;

/// The term printed as Erlang writes it (`{shutdown,tcp_closed}`), or
/// `None` when it is nested deeper than `MAX_TERM_DEPTH` or has more than
/// `MAX_PRINTED_NODES` parts: printing walks the whole term on the
/// scheduler, so only a small one is printed.
pub fn printed(term: Term) -> Option<String> {
    small(term, MAX_TERM_DEPTH, MAX_PRINTED_NODES).then(|| format!("{term:?}"))
}

const MAX_PRINTED_NODES: usize = 1_000;

/// Whether `term` is at most `max_depth` deep with at most `max_nodes`
/// parts. Iterative, and stops at the first limit passed, so its own cost
/// is bounded whatever the term.
fn small(term: Term, max_depth: usize, max_nodes: usize) -> bool {
    let mut pending = vec![(term, 0usize)];
    let mut nodes = 0;
    while let Some((term, depth)) = pending.pop() {
        nodes += 1;
        if depth > max_depth || nodes > max_nodes {
            return false;
        }
        let children: Vec<Term> = match term.get_type() {
            TermType::List => {
                // One cell at a time, so an improper tail is simply the
                // next part. The tail stays at this depth: a long list is
                // wide, not deep.
                let Some((head, tail)) = list_cell(term) else { continue };
                pending.push((tail, depth));
                vec![head]
            }
            TermType::Tuple => {
                let elements = tuple_slice(term).unwrap_or_default();
                if nodes + elements.len() > max_nodes {
                    return false;
                }
                // SAFETY: each element belongs to the tuple, a term of this env.
                elements.iter().map(|raw| unsafe { Term::new(term.get_env(), *raw) }).collect()
            }
            TermType::Map => {
                if nodes + 2 * term.map_size().unwrap_or(0) > max_nodes {
                    return false;
                }
                MapIterator::new(term).into_iter().flatten().flat_map(|(k, v)| [k, v]).collect()
            }
            _ => continue,
        };
        pending.extend(children.into_iter().map(|child| (child, depth + 1)));
    }
    true
}

/// Text of an atom or binary (clientids are binaries, system senders atoms);
/// `None` once the work budget is spent (see `work_budget`).
pub fn text(term: Term<'_>) -> Option<std::borrow::Cow<'_, str>> {
    if let Some(bytes) = binary(term) {
        if !work_budget::spend(work_budget::text_units(bytes.len())) {
            return None;
        }
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

fn to_json_at(term: Term, path: &str, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let at = |what: &str| format!("{}: {what}", if path.is_empty() { "config" } else { path });
    if depth > MAX_TERM_DEPTH {
        return Err(at(&format!("nested deeper than {MAX_TERM_DEPTH} levels")));
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
            let items = list(term).ok_or_else(|| at("an improper list"))?;
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
