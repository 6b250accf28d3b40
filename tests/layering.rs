//! The architecture, measured from the code's own imports: every `crate::`
//! path in the library's production code (test modules aside) is read, and
//! each top-level module may name only the modules its layer allows.
//!
//! - `domain` names nothing of the crate; `ports` only `domain`;
//! - `stages` the ports, the domain and the file tools they run packer with;
//! - the adapters (`azure`, `local`, `web`) the ports and the domain, never
//!   each other, the stages or the functions;
//! - only the composition root (`startup`, and the modes of the binary that
//!   wire their own: `client`, `doctor`) names an adapter;
//! - and the modules form no import circle.
//!
//! docs/architecture.md draws the same picture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import. A module missing here is refused.
const RULES: &[(&str, &[&str])] = &[
    // The core.
    ("domain", &[]),
    ("ports", &["domain"]),
    ("config", &["domain"]),
    ("inputs", &["domain"]),
    // Tools with no knowledge of the factory's flow.
    ("private", &[]),
    ("build_log", &["private"]),
    ("packer", &[]),
    ("template", &[]),
    ("layout", &[]),
    ("protocol", &[]),
    ("pages", &[]),
    ("trace", &[]),
    // What the factory says: approval notices, dashboard views.
    ("notifier", &["domain", "ports", "pages"]),
    ("dashboard", &["domain", "pages"]),
    // The work.
    (
        "stages",
        &[
            "domain",
            "ports",
            "private",
            "build_log",
            "packer",
            "template",
        ],
    ),
    ("followups", &["domain", "ports"]),
    (
        "app",
        &[
            "domain",
            "ports",
            "config",
            "inputs",
            "stages",
            "followups",
            "protocol",
        ],
    ),
    (
        "functions",
        &[
            "domain",
            "ports",
            "config",
            "app",
            "stages",
            "followups",
            "protocol",
            "pages",
            "dashboard",
            "layout",
            "build_log",
            "trace",
        ],
    ),
    ("server", &["app", "functions", "protocol"]),
    (
        "worker",
        &["domain", "ports", "config", "stages", "build_log"],
    ),
    // The adapters, by system.
    ("azure", &["domain", "ports", "notifier", "private"]),
    ("local", &["domain", "ports", "notifier", "private"]),
    ("web", &["domain", "ports", "notifier", "private"]),
    // The embedded Functions host and its packaging: the local stand-in for
    // the Functions runtime and Service Bus, on the local store's database.
    (
        "host",
        &[
            "domain",
            "ports",
            "protocol",
            "functions",
            "layout",
            "package",
            "local",
        ],
    ),
    ("package", &["functions", "layout"]),
    // The composition root and the binary's modes that wire adapters.
    ("startup", &ANY),
    ("client", &ANY),
    // `patch status`: the evidence, the rules, and the security data the
    // composition root opens.
    ("patch_status", &["domain", "config", "startup"]),
    ("doctor", &ANY),
];

/// Every module: for the composition root.
const ANY: [&str; 30] = [
    "domain",
    "ports",
    "config",
    "inputs",
    "private",
    "build_log",
    "packer",
    "template",
    "layout",
    "protocol",
    "pages",
    "trace",
    "notifier",
    "dashboard",
    "stages",
    "app",
    "functions",
    "followups",
    "server",
    "worker",
    "azure",
    "local",
    "web",
    "host",
    "package",
    "startup",
    "client",
    "doctor",
    "patch_status",
    "lib",
];

/// The library's source folder.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("handlers")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`stages/build.rs` → `stages`).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules `source` names through `crate::`, with the line
/// that names each; comments and the file's test module are left out.
fn imports(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut lines = source.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or("").to_string())
                    .collect()
            } else {
                vec![
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect(),
                ]
            };
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                found.push((name, line.trim().to_string()));
            }
        }
    }
    found
}

/// What `module`'s source breaks: one line per import its layer forbids.
fn violations(module: &str, source: &str) -> Vec<String> {
    let allowed = RULES
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, allowed)| *allowed);
    imports(source)
        .into_iter()
        .filter(|(target, _)| target != module && target != "self")
        .filter(|(target, _)| allowed.is_none_or(|a| !a.contains(&target.as_str())))
        .map(|(target, line)| match allowed {
            Some(_) => format!("{module} may not import {target}: {line}"),
            None => format!("{module} has no layer in the rules (it imports {target})"),
        })
        .collect()
}

/// A source file: its module, its path in the source folder, its text.
type Source = (String, PathBuf, String);

/// Which modules each module imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The library's modules, their sources and the module graph.
fn crate_graph() -> (Vec<Source>, Graph) {
    let root = source_dir();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut sources = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let relative = path.strip_prefix(&root).expect("under the source folder");
        if relative == Path::new("main.rs") || relative == Path::new("lib.rs") {
            continue; // the binary and the crate root
        }
        let module = module_of(relative);
        let source = std::fs::read_to_string(&path).expect("readable source");
        for (target, _) in imports(&source) {
            if target != module {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
        graph.entry(module.clone()).or_default();
        sources.push((module, relative.to_path_buf(), source));
    }
    (sources, graph)
}

/// An import circle among the modules, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let (sources, _) = crate_graph();
    assert!(sources.len() > 50, "the crate's files were found");
    let broken: Vec<String> = sources
        .iter()
        .flat_map(|(module, path, source)| {
            violations(module, source)
                .into_iter()
                .map(move |v| format!("{}: {v}", path.display()))
        })
        .collect();
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_modules_form_no_import_circle() {
    let (_, graph) = crate_graph();
    assert_eq!(circle(&graph), None, "an import circle");
}

#[test]
fn a_forbidden_import_is_caught_wherever_it_is_written() {
    let (sources, _) = crate_graph();
    let source = |module: &str| {
        sources
            .iter()
            .find(|(m, _, _)| m == module)
            .map(|(_, _, s)| s.clone())
            .expect("the module's source")
    };
    // The real files pass; each with one forbidden import added does not.
    for (module, added) in [
        ("domain", "use crate::ports::store::RunStore;"),
        (
            "domain",
            "fn f() { crate::private::create_dir(std::path::Path::new(\".\")).ok(); }",
        ),
        ("ports", "use crate::{domain::run::Run, config::Settings};"),
        ("stages", "use crate::azure::gallery::AzureGallery;"),
        ("stages", "use crate::app::App;"),
        ("azure", "use crate::local::gallery::LocalGallery;"),
        ("local", "use crate::stages::Ports;"),
        ("functions", "use crate::local::sqlite::SqliteStore;"),
        ("config", "use crate::azure::AzureSettings;"),
    ] {
        let text = source(module);
        assert!(
            violations(module, &text).is_empty(),
            "{module} passes as it is"
        );
        let broken = format!("{added}\n{text}");
        let found = violations(module, &broken);
        assert_eq!(found.len(), 1, "{module} + {added}: {found:?}");
    }
    // A comment, or an import in the test module, is not an import.
    let mut text = source("domain");
    text.push_str("\n// crate::azure is mentioned here\n#[cfg(test)]\nmod tests {\n    use crate::app::App;\n}\n");
    assert!(violations("domain", &text).is_empty());
    // A new top-level module must be given a layer.
    assert_eq!(
        violations("newcomer", "use crate::domain::run::Run;").len(),
        1
    );
}

#[test]
fn a_circle_is_found_and_a_layered_graph_has_none() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        circle(&graph(&[("app", "stages"), ("stages", "ports")])),
        None
    );
    let found = circle(&graph(&[
        ("app", "worker"),
        ("worker", "stages"),
        ("stages", "app"),
    ]))
    .expect("the circle");
    assert_eq!(found.first(), found.last());
    assert_eq!(found.len(), 4);
}
