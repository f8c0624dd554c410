//! The router's top-level modules form the layers listed in `src/lib.rs` (bottom to top): every
//! `crate::`/`super::` reference in non-test code points into the same layer or a lower one,
//! and the module graph has no circle. A failure names the offending edge or the circle.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Top-level module -> the top-level modules its non-test code refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`, relative to it, with its text.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Module path of a file (`policy/cost.rs` -> `[policy, cost]`, `kv/mod.rs` -> `[kv]`).
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Whether a file only holds tests (`tests.rs`, `*_tests.rs`, loaded under `#[cfg(test)]`).
fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name.ends_with("_tests.rs")
}

/// The code of `text` without comments and without items marked `#[cfg(test)]`.
fn non_test_code(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "#[cfg(test)]" {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        // Skip the attributes, then the item: one line ending in `;`, or up to its closing brace.
        i += 1;
        while i < lines.len() && lines[i].trim_start().starts_with("#[") {
            i += 1;
        }
        let mut depth = 0i64;
        let mut opened = false;
        while i < lines.len() {
            let line = lines[i];
            depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            opened |= line.contains('{');
            i += 1;
            if (opened && depth <= 0) || (!opened && line.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    out
}

/// Splits the inside of a `{...}` use group on its top-level commas.
fn split_group(inner: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first path segment of each item a path after `crate::` names (`a::b` -> `a`,
/// `{a::x, b}` -> `a`, `b`).
fn first_segments(path: &str) -> Vec<String> {
    let path = path.trim();
    if let Some(inner) = path.strip_prefix('{') {
        let inner = inner.rfind('}').map_or(inner, |end| &inner[..end]);
        return split_group(inner)
            .into_iter()
            .flat_map(first_segments)
            .collect();
    }
    let first: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if first.is_empty() {
        Vec::new()
    } else {
        vec![first]
    }
}

/// Names the crate root re-exports (`pub use config::Config;` -> `Config` -> `config`).
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in non_test_code(lib).split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim();
        let names = match items.strip_prefix('{') {
            Some(inner) => split_group(inner.trim_end_matches('}')),
            None => vec![items],
        };
        for name in names {
            let name = name.rsplit("::").next().unwrap_or(name);
            let name = name.rsplit(" as ").next().unwrap_or(name).trim();
            out.insert(name.to_owned(), module.trim().to_owned());
        }
    }
    out
}

/// Every use statement and path expression of `code` that starts at the crate root: what
/// follows `crate::`, or `super::` repeated up to the root from a module `depth` deep.
fn root_paths(code: &str, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let (skip, from_root) = if boundary && rest.starts_with("crate::") {
            ("crate::".len(), true)
        } else if boundary && rest.starts_with("super::") {
            let step = "super::".len();
            let supers = (1..)
                .take_while(|k| rest[(k - 1) * step..].starts_with("super::"))
                .count();
            (supers * step, supers >= depth)
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        i += skip;
        if !from_root {
            continue;
        }
        // The path runs to the end of the use statement or of the path expression.
        let tail = &code[i..];
        let end = if tail.starts_with('{') {
            let mut depth = 0;
            tail.char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(tail.len(), |(k, _)| k + 1)
        } else {
            tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len())
        };
        out.push(tail[..end].to_owned());
        i += end;
    }
    out
}

/// The graph of top-level modules of the crate in `files` (paths relative to `src/`).
fn module_graph(files: &[(String, String)]) -> Graph {
    let lib = files
        .iter()
        .find(|(rel, _)| rel == "lib.rs")
        .map_or("", |(_, text)| text.as_str());
    let reexports = root_reexports(lib);
    let mut modules = BTreeSet::new();
    for (rel, _) in files {
        if rel != "lib.rs" && rel != "main.rs" && !is_test_file(rel) {
            modules.insert(module_path(rel)[0].clone());
        }
    }
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (rel, text) in files {
        if rel == "lib.rs" || rel == "main.rs" || is_test_file(rel) {
            continue;
        }
        let path = module_path(rel);
        let top = &path[0];
        for root_path in root_paths(&non_test_code(text), path.len()) {
            for first in first_segments(&root_path) {
                let target = reexports.get(&first).unwrap_or(&first);
                if modules.contains(target) && target != top {
                    graph.get_mut(top).unwrap().insert(target.clone());
                }
            }
        }
    }
    graph
}

/// A circle of `graph`, as `a -> b -> ... -> a`, if there is one.
fn find_cycle(graph: &Graph) -> Option<String> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<String> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut circle = stack[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle.join(" -> "));
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// The layers listed in the crate docs: lines `//! N. label: `a`, `b`` (continued on indented
/// lines) -> module -> N.
fn documented_layers(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut current = None;
    for line in lib.lines() {
        let Some(item) = line.strip_prefix("//! ") else {
            current = None;
            continue;
        };
        let numbered = item
            .split_once(". ")
            .and_then(|(n, rest)| Some((n.trim().parse::<usize>().ok()?, rest)));
        let names = match numbered {
            Some((layer, rest)) => {
                current = Some(layer);
                rest.split_once(':').map_or(rest, |(_, names)| names)
            }
            None if item.starts_with("   ") => item,
            None => {
                current = None;
                continue;
            }
        };
        if let Some(layer) = current {
            for name in names.split('`').skip(1).step_by(2) {
                out.insert(name.to_owned(), layer);
            }
        }
    }
    out
}

/// What is wrong with `graph` against `layers`: unlisted modules, upward edges, a circle.
fn layering_errors(graph: &Graph, layers: &BTreeMap<String, usize>) -> Vec<String> {
    let mut errors = Vec::new();
    for module in graph.keys() {
        if !layers.contains_key(module) {
            errors.push(format!(
                "module `{module}` is in no layer of the lib.rs list"
            ));
        }
    }
    for (from, tos) in graph {
        for to in tos {
            if let (Some(a), Some(b)) = (layers.get(from), layers.get(to))
                && b > a
            {
                errors.push(format!(
                    "`{from}` (layer {a}) uses `{to}` (layer {b}, above it)"
                ));
            }
        }
    }
    if let Some(circle) = find_cycle(graph) {
        errors.push(format!("import circle: {circle}"));
    }
    errors
}

#[test]
fn router_modules_form_the_documented_layers_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources(&src);
    let graph = module_graph(&files);
    assert!(graph.len() > 10, "found too few modules: {graph:?}");
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let layers = documented_layers(&lib);
    let errors = layering_errors(&graph, &layers);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The checker itself catches what it is for: a back-edge through a use group, a root
/// re-export and a `super::` path make a circle; an upward edge is named.
#[test]
fn the_checker_finds_a_planted_circle_and_an_upward_edge() {
    let file = |rel: &str, text: &str| (rel.to_owned(), text.to_owned());
    let files = vec![
        file(
            "lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
        ),
        file("a.rs", "use crate::{Error, b::{self, B}};\n"),
        file("b/mod.rs", "mod inner;\n"),
        file("b/inner.rs", "fn f() -> super::super::Thing { todo!() }\n"),
        file(
            "c.rs",
            "// use crate::b; (a comment)\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n\
             pub struct Thing(crate::a::A);\n",
        ),
        file("c_tests.rs", "use crate::b;\n"),
    ];
    let graph = module_graph(&files);
    let edges = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(edges("a"), ["b"]);
    assert_eq!(edges("b"), ["c"]);
    assert_eq!(edges("c"), ["a"]);
    let layers: BTreeMap<String, usize> = [("a", 3), ("b", 2), ("c", 1)]
        .map(|(m, l)| (m.to_owned(), l))
        .into();
    let errors = layering_errors(&graph, &layers);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`c` (layer 1) uses `a` (layer 3")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e == "import circle: a -> b -> c -> a"),
        "{errors:?}"
    );
    // Without the back-edge the same crate passes.
    let mut fixed = files.clone();
    fixed[4].1 = "pub struct Thing;\n".to_owned();
    let errors = layering_errors(&module_graph(&fixed), &layers);
    assert!(errors.is_empty(), "{errors:?}");
}
