//! The module graph of the crate has no cycles: what both the write side and the scrape
//! side need (file names, gauge modes, worker IDs, liveness, fold rules) lives below
//! both, once.
//!
//! Reads `src/` with the standard library only, lists every `crate::` path between two
//! top-level modules (in `use` declarations and in code; comments and test modules are
//! skipped; `crate::Item` re-exported by `lib.rs` counts as its module), prints the
//! edges, and fails naming a cycle if there is one. The binary under `src/bin/` is its
//! own crate and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/collect/read.rs` → `collect`,
/// `src/file.rs` → `file`); `None` for `lib.rs` and the binaries.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    if first == "bin" || first == "lib.rs" {
        return None;
    }
    Some(first.strip_suffix(".rs").unwrap_or(&first).to_owned())
}

/// `text` without comments (`//` to the end of a line, and `/* … */`), string literals
/// kept as they are (a `crate::` inside a string is rare and would only add an edge).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// `code` (comments stripped) without its test modules: every `#[cfg(test)] mod NAME { … }`
/// block. Test fixtures may build a registry to test the collector; that makes no
/// dependency of the library.
fn strip_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let item = after.trim_start();
        let header_end = item.find(['{', ';']).unwrap_or(item.len());
        if item.starts_with("mod ") && item[header_end..].starts_with('{') {
            let mut depth = 0;
            let mut end = item.len();
            for (j, c) in item.char_indices().skip(header_end) {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &item[end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The first path segment after each `crate::` in `code`, with `crate::{a::x, b}`
/// groups expanded to `a` and `b`.
fn crate_targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `$crate::` (macros) and `foo_crate::` are not paths into this crate.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c == '$' || c.is_alphanumeric() || c == '_') {
            continue;
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            // Top-level items of the group: split on commas at brace depth 0.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(ident(item.trim()));
        } else {
            out.insert(ident(trimmed));
        }
    }
    out.remove("");
    out
}

/// A cycle in `graph`, as the list of its nodes (first repeated at the end).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

/// The module behind each item `lib.rs` re-exports (`pub use metrics::{Counter, …};`
/// maps `Counter` to `metrics`), so that `crate::Counter` counts as an edge to `metrics`.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in strip_comments(lib).split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else { continue };
        let Some((module, items)) = path.split_once("::") else { continue };
        let items = items.trim();
        let items = items.strip_prefix('{').and_then(|i| i.strip_suffix('}')).unwrap_or(items);
        for item in items.split(',') {
            let name = item.trim().rsplit("::").next().unwrap_or("").trim();
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeSet<String> = BTreeSet::new();
    for file in &files {
        modules.extend(top_module(&src, file));
    }
    let reexports = root_reexports(&fs::read_to_string(src.join("lib.rs")).unwrap());
    // module -> module it names, with one file that names it (for the message).
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut witness: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(&src, file) else { continue };
        // A `tests.rs` file is a test module (`#[cfg(test)] mod tests;`).
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let code = strip_test_modules(&strip_comments(&fs::read_to_string(file).unwrap()));
        for to in crate_targets(&code) {
            // A crate-root item (`crate::GaugeMode`) is an edge to the module it comes from.
            let to = reexports.get(&to).cloned().unwrap_or(to);
            if to != from && modules.contains(&to) {
                graph.entry(from.clone()).or_default().insert(to.clone());
                let rel = file.strip_prefix(&src).unwrap().display().to_string();
                witness.entry((from.clone(), to)).or_insert(rel);
            }
        }
    }
    for (from, tos) in &graph {
        println!("{from} -> {}", tos.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} (in src/{})", w[0], w[1], witness[&(w[0].clone(), w[1].clone())]))
            .collect();
        panic!("the module graph has a cycle: {}\n  {}", cycle.join(" -> "), steps.join("\n  "));
    }
}

#[test]
fn the_checker_finds_edges_in_groups_and_skips_comments() {
    let code = strip_comments(
        "use crate::{a::X, b::{c, d}, e};\n// crate::f\nlet x = crate::g::h(); $crate::i; /* crate::j */",
    );
    assert_eq!(crate_targets(&code), ["a", "b", "e", "g"].map(String::from).into());
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_owned(), ["b".to_owned()].into()),
        ("b".to_owned(), ["c".to_owned()].into()),
        ("c".to_owned(), ["a".to_owned()].into()),
    ]
    .into();
    assert_eq!(find_cycle(&graph), Some(["a", "b", "c", "a"].map(String::from).to_vec()));
    let code = "use crate::a::X;\n#[cfg(test)]\nmod tests {\n    use crate::b::{c, d::{e}};\n}\nfn f() { crate::g(); }";
    assert_eq!(crate_targets(&strip_test_modules(code)), ["a", "g"].map(String::from).into());
    let reexports = root_reexports("pub use a::{X, y::Z};\npub use b::W; // pub use c::V;\nmod d;");
    assert_eq!(reexports, [("X", "a"), ("Z", "a"), ("W", "b")].map(|(k, v)| (k.to_owned(), v.to_owned())).into());
}
