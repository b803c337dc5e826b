//! House rules checked as tests: every source file opens with a `//!` line
//! saying what it owns.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_module_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() > 10);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "no leading //! line: {missing:?}");
}

/// The top-level modules each non-test source file of `src/` names through
/// `crate::` (`use crate::x::…`, `use crate::{x, y}`, `crate::x::f()`).
fn module_edges(
    root: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        // Test code may reach anywhere: test modules and files are skipped.
        if parts[0] == "lib" || parts[0] == "main" || parts.iter().any(|p| p == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let named = edges.entry(parts[0].clone()).or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first name of each item.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            named.insert(first_name(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                named.insert(first_name(&item));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                named.insert(name);
            }
        }
    }
    let modules: std::collections::BTreeSet<String> = edges.keys().cloned().collect();
    for (module, named) in edges.iter_mut() {
        named.retain(|n| n != module && modules.contains(n));
    }
    edges
}

/// `b::c` → `b`.
fn first_name(item: &str) -> String {
    item.trim()
        .split("::")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn the_spine_does_not_import_the_edges_and_top_level_modules_form_no_cycle() {
    let edges = module_edges(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        edges.contains_key("pipeline") && edges.contains_key("app"),
        "{edges:?}"
    );
    assert!(
        edges["app"].contains("web") && edges["app"].contains("pipeline"),
        "grouped and plain imports are both seen: {edges:?}"
    );
    // The tools sit beside the product: the commands reach them, never the
    // other way round (the cycle check below holds that).
    assert!(edges["app"].contains("devtools"), "{edges:?}");
    // The data path knows nothing of the commands, the dashboard, the flags
    // or the development tools (its tests may use `mock_api`).
    for edge in ["app", "web", "cli", "devtools"] {
        assert!(
            !edges["pipeline"].contains(edge),
            "pipeline/ imports {edge}: {:?}",
            edges["pipeline"]
        );
    }
    // No cycle between top-level modules: a depth-first walk finds none.
    fn walk<'a>(
        node: &'a str,
        edges: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!(
                "a cycle between top-level modules: {:?} -> {node}",
                &path[at..]
            );
        }
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            walk(next, edges, path, done);
        }
        path.pop();
    }
    let mut done = std::collections::BTreeSet::new();
    for node in edges.keys() {
        walk(node, &edges, &mut Vec::new(), &mut done);
    }
}
