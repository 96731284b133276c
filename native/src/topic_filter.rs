//! MQTT topic filters (`+`, `#`) compiled into a trie.
//!
//! Matching walks the topic's levels once per branch of the trie, so its cost
//! depends on the topic's depth and the wildcards present, not on how many
//! filters or routes are configured.

use std::collections::HashMap;

/// Checks a filter against the MQTT 5 rules (section 4.7.1).
pub fn validate(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("a topic filter must not be empty");
    }
    if filter.len() > 65_535 {
        return Err("a topic filter must be at most 65535 bytes");
    }
    if filter.contains('\0') {
        return Err("a topic filter must not contain NUL");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("'#' must be a whole level and the last one");
        }
        if level.contains('+') && *level != "+" {
            return Err("'+' must be a whole level");
        }
    }
    Ok(())
}

/// A set of filters, each tagged with its position in the configuration.
#[derive(Default, Debug)]
pub struct FilterTrie {
    root: Node,
    len: usize,
}

#[derive(Default, Debug)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Filters ending in `#` at this level.
    hash: Option<usize>,
    /// Filters ending exactly here.
    end: Option<usize>,
}

impl FilterTrie {
    /// Builds a trie; `filters` must already be validated.
    pub fn new<'a>(filters: impl IntoIterator<Item = &'a str>) -> Self {
        let mut trie = FilterTrie::default();
        for (index, filter) in filters.into_iter().enumerate() {
            trie.insert(filter, index);
        }
        trie
    }

    fn insert(&mut self, filter: &str, index: usize) {
        self.len += 1;
        let mut node = &mut self.root;
        for level in filter.split('/') {
            match level {
                "#" => {
                    keep_first(&mut node.hash, index);
                    return;
                }
                "+" => node = node.plus.get_or_insert_with(Default::default),
                _ => node = node.literal.entry(level.into()).or_default(),
            }
        }
        keep_first(&mut node.end, index);
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest index of a filter matching `topic`, if any.
    pub fn first_match(&self, topic: &str) -> Option<usize> {
        let levels = topic.split('/');
        // MQTT: wildcards at the first level never match topics starting with '$'.
        let dollar = topic.starts_with('$');
        let mut best = None;
        self.root.collect(levels, dollar, &mut best);
        best
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.first_match(topic).is_some()
    }
}

fn keep_first(slot: &mut Option<usize>, index: usize) {
    if slot.is_none_or(|existing| index < existing) {
        *slot = Some(index);
    }
}

fn lower(best: &mut Option<usize>, found: Option<usize>) {
    if let Some(index) = found {
        keep_first(best, index);
    }
}

impl Node {
    fn collect<'t>(&self, mut levels: std::str::Split<'t, char>, dollar_first: bool, best: &mut Option<usize>) {
        // '#' also matches the parent level ("a/#" matches "a").
        if !dollar_first {
            lower(best, self.hash);
        }
        let Some(level) = levels.next() else {
            lower(best, self.end);
            return;
        };
        if let Some(child) = self.literal.get(level) {
            child.collect(levels.clone(), false, best);
        }
        if !dollar_first {
            if let Some(child) = &self.plus {
                child.collect(levels, false, best);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The matching rule written out level by level, as the spec states it.
    fn reference_match(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        for (i, level) in f.iter().enumerate() {
            if *level == "#" {
                return true;
            }
            match t.get(i) {
                None => return false,
                Some(tl) if *level == "+" || level == tl => {}
                Some(_) => return false,
            }
        }
        f.len() == t.len()
    }

    #[test]
    fn spec_examples() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            ("sport/tennis/player1/#", "sport/tennis/player1/ranking", true),
            ("sport/#", "sport", true),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/brokers", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ];
        for (filter, topic, expected) in cases {
            let trie = FilterTrie::new([filter]);
            assert_eq!(trie.matches(topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn first_match_wins_across_many_filters() {
        let mut filters: Vec<String> = (0..500).map(|i| format!("site/{i}/#")).collect();
        filters.push("site/+/temp".into());
        filters.insert(0, "site/42/temp".into());
        let trie = FilterTrie::new(filters.iter().map(String::as_str));
        assert_eq!(trie.first_match("site/42/temp"), Some(0));
        assert_eq!(trie.first_match("site/7/temp"), Some(8));
        assert_eq!(trie.first_match("other/7/temp"), None);
    }

    #[test]
    fn rejects_bad_filters() {
        for bad in ["a/#/b", "a/b#", "a+/b", "", "#/a"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        for good in ["#", "+", "a/+/b/#", "/", "$SYS/#"] {
            assert!(validate(good).is_ok(), "{good}");
        }
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("".to_string()), Just("$x".to_string())]
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        (prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..4), any::<bool>()).prop_map(
            |(mut levels, hash)| {
                if hash {
                    levels.push("#".into());
                }
                levels.join("/")
            },
        )
    }

    proptest! {
        #[test]
        fn trie_agrees_with_reference(
            filters in prop::collection::vec(filter_strategy(), 1..12),
            topic in prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/")),
        ) {
            let trie = FilterTrie::new(filters.iter().map(String::as_str));
            let expected = filters.iter().position(|f| reference_match(f, &topic));
            prop_assert_eq!(trie.first_match(&topic), expected);
        }
    }
}
