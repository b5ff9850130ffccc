//! The crate's dependencies run one way. Read from the source itself: every path a file of
//! `src/` names through `crate::` or `super::` (test modules left out) is an edge from that file
//! to the module file it names; neither the files nor the top-level modules they make up may
//! form a cycle. And only `metrics.rs` and `node/` name `crate::metrics`: the parts report
//! through probes of their own, the domain's label enums know nothing of Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`price::feed`, `` for lib.rs) → the file's text without comments and tests.
fn modules() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&src).ok()?.to_str()?.to_owned();
            if relative.starts_with("bin/") || relative == "main.rs" {
                return None;
            }
            let module = relative
                .trim_end_matches(".rs")
                .trim_end_matches("/mod")
                .replace('/', "::");
            let module = if module == "lib" {
                String::new()
            } else {
                module
            };
            let text = std::fs::read_to_string(&path).ok()?;
            Some((module, code_only(&text)))
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The text without line comments and without `#[cfg(test)] mod … { … }` blocks.
fn code_only(text: &str) -> String {
    let text: String = text
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('{') else {
            rest = "";
            break;
        };
        let mut depth = 0;
        let mut end = after.len();
        for (index, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + index + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path the text names from `prefix` on (`crate::` or `super::`), with brace groups
/// expanded: `crate::a::{b, c::D}` names `a::b` and `a::c::D`.
fn paths_after(text: &str, prefix: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        let base: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let base = base.trim_end_matches(':').to_owned();
        let after_base = &rest[base.len()..];
        let group = match after_base.strip_prefix("::{") {
            Some(group) => Some(group),
            None if base.is_empty() => after_base.strip_prefix('{'),
            None => None,
        };
        if let Some(group) = group {
            let mut depth = 1;
            let mut inner = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                inner.push(c);
            }
            for item in inner.split([',', '{', '}', ' ', '\n']) {
                let item = item.trim().trim_end_matches(':');
                if !item.is_empty() && item != "self" {
                    paths.push(if base.is_empty() {
                        item.to_owned()
                    } else {
                        format!("{base}::{item}")
                    });
                }
            }
        }
        paths.push(base);
    }
    paths
}

/// The longest module a path names.
fn resolve(path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|len| parts[..len].join("::"))
        .find(|module| modules.contains_key(module))
}

fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    modules
        .iter()
        .map(|(module, text)| {
            // `super` of `a::b` is `a`, whether b is a file or a folder's mod.rs.
            let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
            let named = paths_after(text, "crate::").into_iter().chain(
                paths_after(text, "super::").into_iter().map(|path| {
                    format!("{parent}::{path}")
                        .trim_start_matches("::")
                        .to_owned()
                }),
            );
            let targets = named
                .filter_map(|path| resolve(&path, modules))
                .filter(|target| target != module && !target.is_empty())
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The strongly connected components with more than one member (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        for target in state.graph.get(node).into_iter().flatten() {
            let target = target.as_str();
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node, low);
            } else if state.stack.contains(&target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn no_file_of_the_crate_depends_on_itself_through_others() {
    let modules = modules();
    assert!(modules.len() > 40, "read the crate: {:?}", modules.keys());
    let graph = edges(&modules);
    assert!(
        graph["price::feed"].contains("price::fetch"),
        "the reader sees edges: {graph:?}"
    );
    assert_eq!(cycles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn no_top_level_module_depends_on_itself_through_others() {
    let graph = edges(&modules());
    let top = |module: &str| module.split("::").next().unwrap_or_default().to_owned();
    let mut by_top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in &graph {
        let entry = by_top.entry(top(module)).or_default();
        entry.extend(targets.iter().map(|t| top(t)).filter(|t| *t != top(module)));
    }
    assert_eq!(cycles(&by_top), Vec::<Vec<String>>::new());
}

#[test]
fn only_the_metrics_and_the_node_name_the_metrics_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&src, &mut files);
    let naming: Vec<String> = files
        .iter()
        .filter(|path| {
            let relative = path.strip_prefix(&src).unwrap();
            relative != Path::new("metrics.rs") && !relative.starts_with("node")
        })
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .contains("crate::metrics")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert_eq!(naming, Vec::<String>::new());
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let modules: BTreeMap<String, String> = [
        ("a", "use crate::b::Thing;"),
        ("b", "fn f() { super::c::g() }"),
        ("c", "use crate::{a::{self, X}, d};"),
        ("d", "#[cfg(test)]\nmod tests { use crate::a; }"),
    ]
    .into_iter()
    .map(|(module, text)| (module.to_owned(), code_only(text)))
    .collect();
    let graph = edges(&modules);
    assert_eq!(
        cycles(&graph),
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
    assert!(graph["d"].is_empty(), "test modules are left out");
}
