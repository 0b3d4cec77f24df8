//! The module graph docs/architecture.md promises, checked from the source: no import circles between
//! modules, infrastructure never imports a feature, and features import each other only one way.
//!
//! The scan reads `crate::…` and `super::…` paths (in `use` lines and inline) of every file under `src/`,
//! outside its inline `#[cfg(test)] mod tests { … }` (test files of their own, `tests.rs`, are modules like any
//! other), and resolves each to the deepest module that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules that are features (they may use infrastructure, never the other way round).
const FEATURES: &[&str] = &["home", "accounts", "companions", "chat", "images", "export"];
/// The composition root: builds everything, so it may import anything; nothing imports it.
const ROOTS: &[&str] = &["app", "cli", "main", "lib"];
/// Which feature may import which (the rest of feature → feature imports are refused).
const FEATURE_IMPORTS: &[(&str, &str)] = &[
    ("images", "companions"), // pictures are painted from a companion's profile
    ("chat", "companions"),
    ("chat", "accounts"),
    ("chat", "images"),
    // The export reads what every feature stores.
    ("export", "accounts"),
    ("export", "companions"),
    ("export", "chat"),
];
/// Known exceptions to the layering, each with why it is still here; the test fails when one is no longer
/// needed, so this list only shrinks.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module of `src/` (`a::b` for `src/a/b.rs` or `src/a/b/mod.rs`) and its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(root: &Path, folder: &Path, found: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(folder)
            .expect("src is readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let relative = path.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|last| last == "mod") {
                    parts.pop();
                }
                let source = std::fs::read_to_string(&path).unwrap();
                found.insert(parts.join("::"), source);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    walk(&root, &root, &mut found);
    found
}

/// The paths a source mentions: `crate::a::b`, `super::c`, and each member of a `{…}` group after one.
fn paths_in(source: &str) -> Vec<String> {
    let source = source
        .find("#[cfg(test)]\nmod tests {")
        .map_or(source, |end| &source[..end]);
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for start in ["crate::", "super::"] {
        for (at, _) in source.match_indices(start) {
            if at > 0 && source[..at].ends_with(|c: char| is_ident(c) || c == ':') {
                continue;
            }
            let rest = &source[at..];
            let len = rest
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(rest.len());
            let base = rest[..len].trim_end_matches(':').to_owned();
            if rest[len..].starts_with('{') {
                let group_end = rest[len..].find('}').map_or(rest.len(), |end| end + len);
                for member in rest[len + 1..group_end].split(',') {
                    let member: String = member
                        .trim()
                        .chars()
                        .take_while(|c| is_ident(*c) || *c == ':')
                        .collect();
                    if !member.is_empty() && member != "self" {
                        found.push(format!("{base}::{}", member.trim_end_matches(':')));
                    }
                }
            }
            found.push(base);
        }
    }
    found
}

/// The module a path names from inside `module` (the deepest one that exists).
fn resolve(module: &str, path: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = Vec::new();
    match segments.first() {
        Some(&"crate") => {
            segments.remove(0);
        }
        Some(&"super") => {
            base = module.split("::").collect();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    (0..=segments.len()).rev().find_map(|take| {
        let candidate = base
            .iter()
            .chain(&segments[..take])
            .copied()
            .collect::<Vec<_>>()
            .join("::");
        known.contains_key(&candidate).then_some(candidate)
    })
}

fn graph() -> Graph {
    let known = modules();
    let mut graph = Graph::new();
    for (module, source) in &known {
        let imports = paths_in(source)
            .iter()
            .filter_map(|path| resolve(module, path, &known))
            .filter(|target| {
                !target.is_empty()
                    && target != module
                    && !module.starts_with(&format!("{target}::"))
            })
            .collect();
        graph.insert(module.clone(), imports);
    }
    graph
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// Strongly connected groups of more than one module (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let order = walk.index.len();
        walk.index.insert(node, order);
        walk.low.insert(node, order);
        walk.stack.push(node);
        for next in walk.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !walk.index.contains_key(next) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&next) {
                let low = walk.low[node].min(walk.index[next]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut group = Vec::new();
            while let Some(member) = walk.stack.pop() {
                group.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                walk.found.push(group);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

#[test]
fn no_module_imports_itself_through_others() {
    let graph = graph();
    assert!(
        graph.len() > 40,
        "the scan found the modules: {}",
        graph.len()
    );
    assert!(
        graph["chat::runner"].contains("chat::store"),
        "the scan finds imports"
    );
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn infrastructure_never_imports_a_feature_and_features_import_each_other_one_way() {
    let graph = graph();
    let mut refused = Vec::new();
    let mut exceptions_used = BTreeSet::new();
    for (module, imports) in &graph {
        let from = top(module);
        if ROOTS.contains(&from) {
            continue;
        }
        for target in imports {
            let to = top(target);
            if from == to {
                continue;
            }
            if ROOTS.contains(&to) {
                refused.push(format!("{module} -> {target} (the composition root)"));
                continue;
            }
            if !FEATURES.contains(&to) {
                continue;
            }
            if let Some(exception) = KNOWN_EXCEPTIONS
                .iter()
                .find(|(m, t, _)| m == module && t == target)
            {
                exceptions_used.insert(exception.1);
                continue;
            }
            let allowed = FEATURES.contains(&from) && FEATURE_IMPORTS.contains(&(from, to));
            if !allowed {
                refused.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(refused.is_empty(), "forbidden imports: {refused:#?}");
    for (module, target, why) in KNOWN_EXCEPTIONS {
        assert!(
            exceptions_used.contains(target),
            "{module} -> {target} is gone: delete its exception ({why})"
        );
    }
}

#[test]
fn the_scan_reads_groups_nested_paths_and_super() {
    let source =
        "use crate::web::{csrf, session::Session};\nuse super::store;\nlet x = crate::db::Db::x();";
    let paths = paths_in(source);
    for expected in [
        "crate::web::csrf",
        "crate::web::session::Session",
        "super::store",
        "crate::db::Db::x",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} in {paths:?}"
        );
    }
}
