//! Erlang's external term format, just what `consume` writes: the test
//! suites read it with `binary_to_term/1`, which is far faster than
//! `file:consult/1` on 100 000 records.

pub struct Etf(pub Vec<u8>);

impl Etf {
    pub fn new() -> Etf {
        Etf(vec![131])
    }

    pub fn tuple(&mut self, arity: u8) {
        self.0.extend_from_slice(&[104, arity]);
    }

    /// A proper list of `items`, each written by `element` (`[]` if none).
    pub fn list<T>(&mut self, items: &[T], mut element: impl FnMut(&mut Etf, &T)) {
        if !items.is_empty() {
            self.0.push(108);
            self.0.extend_from_slice(&(items.len() as u32).to_be_bytes());
            items.iter().for_each(|item| element(self, item));
        }
        self.0.push(106);
    }

    pub fn atom(&mut self, name: &str) {
        self.0.extend_from_slice(&[119, name.len() as u8]);
        self.0.extend_from_slice(name.as_bytes());
    }

    pub fn binary(&mut self, bytes: &[u8]) {
        self.0.push(109);
        self.0.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    pub fn int(&mut self, n: i64) {
        if let Ok(small) = i32::try_from(n) {
            self.0.push(98);
            self.0.extend_from_slice(&small.to_be_bytes());
        } else {
            // SMALL_BIG_EXT: 8 little-endian digits and a sign byte.
            self.0.extend_from_slice(&[110, 8, (n < 0) as u8]);
            self.0.extend_from_slice(&n.unsigned_abs().to_le_bytes());
        }
    }

    pub fn uint(&mut self, n: u64) {
        match i64::try_from(n) {
            Ok(n) => self.int(n),
            Err(_) => {
                self.0.extend_from_slice(&[110, 8, 0]);
                self.0.extend_from_slice(&n.to_le_bytes());
            }
        }
    }

    pub fn float(&mut self, f: f64) {
        self.0.push(70);
        self.0.extend_from_slice(&f.to_be_bytes());
    }

    /// JSON as Erlang terms: maps with binary keys, strings as binaries,
    /// `null` as an atom.
    pub fn json(&mut self, value: &serde_json::Value) {
        use serde_json::Value::*;
        match value {
            Null => self.atom("null"),
            Bool(b) => self.atom(if *b { "true" } else { "false" }),
            Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => self.int(i),
                (_, Some(u)) => self.uint(u),
                _ => self.float(n.as_f64().unwrap_or(0.0)),
            },
            String(s) => self.binary(s.as_bytes()),
            Array(items) => self.list(items, Etf::json),
            Object(map) => {
                self.0.push(116);
                self.0.extend_from_slice(&(map.len() as u32).to_be_bytes());
                for (k, v) in map {
                    self.binary(k.as_bytes());
                    self.json(v);
                }
            }
        }
    }
}
