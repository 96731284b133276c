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
/// A filter may have thousands of levels (up to 65 535 bytes), so nothing
/// here recurses over them: matching keeps its own stack and dropping
/// unlinks the nodes one by one.
#[derive(Default)]
pub struct FilterTrie {
    root: Node,
    len: usize,
}

impl std::fmt::Debug for FilterTrie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterTrie").field("len", &self.len).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Filters ending in `#` at this level.
    hash: Option<usize>,
    /// Filters ending exactly here.
    end: Option<usize>,
}

impl Drop for Node {
    /// Drops the subtree level by level: the derived drop would recurse
    /// once per level, deeper than a scheduler's stack allows.
    fn drop(&mut self) {
        let mut detached: Vec<Node> = self.take_children();
        while let Some(mut node) = detached.pop() {
            detached.extend(node.take_children());
        }
    }
}

impl Node {
    fn take_children(&mut self) -> Vec<Node> {
        let mut children: Vec<Node> = self.literal.drain().map(|(_, child)| child).collect();
        children.extend(self.plus.take().map(|child| *child));
        children
    }
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
        // (node, the levels left after it, whether the first level is a '$' one)
        let mut pending = vec![(&self.root, levels, dollar)];
        while let Some((node, mut levels, dollar_first)) = pending.pop() {
            // '#' also matches the parent level ("a/#" matches "a").
            if !dollar_first {
                lower(&mut best, node.hash);
            }
            let Some(level) = levels.next() else {
                lower(&mut best, node.end);
                continue;
            };
            if let Some(child) = node.literal.get(level) {
                pending.push((child, levels.clone(), false));
            }
            if !dollar_first {
                if let Some(child) = &node.plus {
                    pending.push((child, levels, false));
                }
            }
        }
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

    /// The longest legal filters, matched and dropped on a stack far
    /// smaller than a scheduler's: each level once took a stack frame.
    #[test]
    fn longest_filters_match_and_drop_on_a_small_stack() {
        let levels = 65_535 / 2 + 1;
        let literal = vec!["a"; levels].join("/");
        let plus = vec!["+"; levels].join("/");
        let hash = format!("{}/#", vec!["a"; levels - 1].join("/"));
        for filter in [&literal, &plus, &hash] {
            assert!(validate(filter).is_ok() && filter.len() <= 65_535);
        }
        let run = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || {
            let trie = FilterTrie::new([literal.as_str(), plus.as_str(), hash.as_str()]);
            let matched = (trie.first_match(&literal), trie.first_match(&format!("{literal}/b")), trie.first_match("a/a"));
            drop(trie);
            matched
        });
        assert_eq!(run.unwrap().join().unwrap(), (Some(0), Some(2), None));
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
