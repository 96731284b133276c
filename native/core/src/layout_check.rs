//! The source layout of both crates has no import cycle: between files, and
//! between the top-level modules (folders and files) of each `lib.rs`. A
//! file's imports are the `crate::` paths in its code (tests at its end and
//! comments left out), and the child modules a folder's `mod.rs` declares.
//! Between the crates there can be none: cargo refuses a dependency cycle,
//! and this crate has no rustler to reach back into the NIF with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Module paths ("kafka/context", "spool", "lib") of every source file.
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            modules(&path, &format!("{prefix}{name}/"), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = if name == "mod" { prefix.trim_end_matches('/').to_string() } else { format!("{prefix}{name}") };
            out.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..end].lines().map(|line| line.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The longest known module a `crate::a::b::c` path names.
fn resolve(segments: &[&str], known: &BTreeMap<String, String>) -> String {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("/"))
        .find(|candidate| known.contains_key(candidate))
        .unwrap_or_else(|| "lib".to_string())
}

fn file_graph(known: &BTreeMap<String, String>) -> Graph {
    let mut graph = Graph::new();
    for (module, text) in known {
        let code = code(text);
        let mut uses = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            // `crate::a::{b, c::d}`: each item extends the path.
            let items = match rest[path.len()..].strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').map(str::trim).collect(),
                None => vec![""],
            };
            for item in items {
                let mut full = segments.clone();
                full.extend(item.split("::").filter(|s| !s.is_empty() && *s != "self"));
                uses.insert(resolve(&full, known));
            }
        }
        for line in code.lines() {
            if let Some(child) = line.trim().strip_prefix("pub mod ").or_else(|| line.trim().strip_prefix("mod ")) {
                let child = child.trim_end_matches(';').trim();
                let base = if module == "lib" { String::new() } else { format!("{module}/") };
                if known.contains_key(&format!("{base}{child}")) && !child.contains('{') {
                    uses.insert(format!("{base}{child}"));
                }
            }
        }
        uses.remove(module);
        graph.insert(module.clone(), uses);
    }
    graph
}

/// The graph between top-level modules: `kafka/context -> runtime` is
/// `kafka -> runtime`. `lib` declares them all and is left out.
fn top_level_graph(files: &Graph) -> Graph {
    let top = |module: &str| module.split('/').next().unwrap().to_string();
    let mut graph = Graph::new();
    for (module, uses) in files.iter().filter(|(m, _)| *m != "lib") {
        let entry = graph.entry(top(module)).or_default();
        entry.extend(uses.iter().map(|u| top(u)).filter(|u| *u != top(module) && u != "lib"));
    }
    graph
}

fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The file graph of the crate whose sources are in `dir`.
fn crate_files(dir: &str) -> Graph {
    let mut known = BTreeMap::new();
    modules(&crate::repo_file(dir), "", &mut known);
    file_graph(&known)
}

/// `sample` is one import the scan must see, so that a scan that sees
/// nothing cannot pass.
fn assert_acyclic(files: &Graph, sample: (&str, &str)) {
    assert!(files[sample.0].contains(sample.1), "the scan sees imports: {files:#?}");
    assert_eq!(find_cycle(files), None, "an import cycle between files");
    assert_eq!(find_cycle(&top_level_graph(files)), None, "an import cycle between top-level modules");
}

#[test]
fn no_import_cycles_in_the_core() {
    let files = crate_files("native/core/src");
    assert_acyclic(&files, ("kafka/producer", "kafka/memory_loop"));
    // The spool is storage: it knows nothing of Kafka.
    assert!(files.iter().filter(|(m, _)| m.starts_with("spool")).all(|(_, uses)| !uses.iter().any(|u| u.starts_with("kafka"))));
}

#[test]
fn no_import_cycles_in_the_nif() {
    assert_acyclic(&crate_files("native/src"), ("encode/emqx", "encode/term_entries"));
}

#[test]
fn the_check_finds_a_cycle() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}
