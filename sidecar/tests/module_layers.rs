//! Layout rules of the workspace's sources, checked by reading them:
//! - no import cycle between the modules of any folder (the data plane's top level, `proxy/`,
//!   and every folder of `spillway-sidecar`, `spillway-operator`, `spillway-tools` and
//!   `spillway-crds`): for every module, the sibling modules its non-test code names
//!   (`crate::…::<sibling>` or `super::<sibling>`) are collected, and the graph must be
//!   acyclic. Comments and `#[cfg(test)] mod tests { … }` blocks are left out; test files
//!   (`tests.rs`, `tests/`) are skipped;
//! - one convention for module files: a module with children is `<name>/mod.rs` (never
//!   `<name>.rs` beside a `<name>/` folder), and unit tests live in the module's `tests.rs`
//!   or `tests/` folder.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "tests" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
            out.push(path);
        }
    }
}

/// The modules declared by the folder `dir`: its `.rs` files (but `lib`, `mod`) and folders.
fn children(dir: &Path) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("source folder") {
        let path = entry.expect("entry").path();
        let stem = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let skip = matches!(stem, "lib" | "mod" | "tests") || stem.ends_with("_tests");
        if !skip && (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
            modules.insert(stem.to_owned());
        }
    }
    modules
}

/// The code of `file` without comments' tails and the inline test module.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("utf-8 source");
    let code = text
        .split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or_default();
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names that follow `prefix` in `code`.
fn named_after(code: &str, prefix: &str) -> Vec<String> {
    let len = prefix.len();
    code.match_indices(prefix)
        .filter(|(at, _)| {
            // `super::x` inside `super::super::x` names another level.
            !code[..*at].ends_with("super::") && !code[..*at].ends_with("crate::")
        })
        .map(|(at, _)| {
            code[at + len..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Which sibling modules each module of the folder `dir` refers to. `path` is the folder's
/// module path (`crate`, `crate::proxy`); a file `depth` folders below a child reaches a
/// sibling as `crate::…::sibling` or as `super::` repeated `depth + 1` times.
fn graph_at(dir: &Path, path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let modules = children(dir);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for module in &modules {
        let mut files: Vec<(PathBuf, usize)> = Vec::new();
        let file = dir.join(format!("{module}.rs"));
        if file.is_file() {
            files.push((file, 0));
        }
        let sub = dir.join(module);
        if sub.is_dir() {
            let mut below = Vec::new();
            rust_files(&sub, &mut below);
            for file in below {
                let rel = file.strip_prefix(&sub).expect("below").components().count();
                let is_mod = file.file_name().is_some_and(|n| n == "mod.rs");
                files.push((file, if is_mod { rel - 1 } else { rel }));
            }
        }
        let uses = edges.entry(module.clone()).or_default();
        for (file, depth) in files {
            let code = code(&file);
            let absolute = format!("{path}::");
            let relative = "super::".repeat(depth + 1);
            let mut names: Vec<String> = code
                .match_indices(absolute.as_str())
                .map(|(at, _)| {
                    code[at + absolute.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect()
                })
                .collect();
            if path != "crate" {
                names.extend(named_after(&code, &relative));
            }
            for name in names {
                if name != *module && modules.contains(&name) {
                    uses.insert(name);
                }
            }
        }
    }
    edges
}

/// The top-level modules each module's code refers to.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    graph_at(src, "crate")
}

/// The first cycle found, as the path that closes it (depth-first search).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_data_planes_top_level_modules_form_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(edges.len() >= 10, "found the modules: {edges:?}");
    assert!(
        edges["proxy"].contains("telemetry") && edges["telemetry"].contains("usage"),
        "the scan sees real references: {edges:?}"
    );
    assert_eq!(cycle(&edges), None, "{edges:#?}");
}

#[test]
fn no_folder_of_any_crate_holds_an_import_cycle_between_its_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = Vec::new();
    let mut stack = vec![(src.clone(), "crate".to_owned())];
    for other in ["operator", "tools", "crds"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(other)
            .join("src");
        folders.push((root.clone(), "crate".to_owned()));
        stack.push((root, "crate".to_owned()));
    }
    while let Some((dir, path)) = stack.pop() {
        for module in children(&dir) {
            let sub = dir.join(&module);
            if sub.is_dir() {
                stack.push((sub.clone(), format!("{path}::{module}")));
                folders.push((sub, format!("{path}::{module}")));
            }
        }
    }
    assert!(
        folders.iter().any(|(_, p)| p == "crate::proxy"),
        "{folders:?}"
    );
    let proxy = graph_at(&src.join("proxy"), "crate::proxy");
    assert!(
        proxy["handler"].contains("attempt") && proxy["attempt"].contains("call"),
        "the scan sees sibling references: {proxy:?}"
    );
    let cycles: Vec<_> = folders
        .iter()
        .filter_map(|(dir, path)| cycle(&graph_at(dir, path)).map(|c| (path.clone(), c)))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    edges.entry("c".into()).or_default().insert("a".into());
    edges.entry("d".into()).or_default();
    assert_eq!(
        cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn a_module_with_children_is_a_folder_with_mod_rs_and_tests_sit_in_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut wrong = Vec::new();
    for krate in ["sidecar", "operator", "tools", "crds"] {
        let mut files = Vec::new();
        let mut stack = vec![root.join(krate).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("source folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    if path.with_extension("rs").is_file() {
                        wrong.push(format!(
                            "{} beside its folder",
                            path.with_extension("rs").display()
                        ));
                    }
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("tests_") || name.ends_with("_tests.rs") {
                wrong.push(format!(
                    "{}: tests go in tests.rs or tests/",
                    file.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
