//! The architecture, measured from the code's own imports. Every file of the
//! library is parsed and every path it names into the crate is read: `use`
//! trees however they are split over lines, grouped or nested (`crate::`,
//! `super::`, `self::`, a child module by its name), and paths written inline
//! in expressions, types, patterns and macro arguments. Test modules
//! (`#[cfg(test)]`) are left out, and whatever follows them is read.
//!
//! Two rules are checked. Each top-level module may name only the modules
//! its layer allows:
//!
//! - `domain` names nothing of the crate; `ports` only `domain`;
//! - `stages` the ports, the domain and the file tools they run packer with;
//! - the adapters (`azure`, `local`, `web`) the ports and the domain, never
//!   each other, the stages or the functions;
//! - only the composition root (`startup`, and the modes of the binary that
//!   wire their own: `cli`, `doctor`) names an adapter.
//!
//! And the files form no import circle: a file that names something of
//! another file is above it, never also below it. A circle fails the suite
//! naming its files and the lines that close it. A path counts for the file
//! it names, so inside a folder a file imports an item from the file that
//! defines it; a folder's `mod.rs` declares, re-exports and dispatches.
//!
//! docs/architecture.md draws the same picture.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

/// What each top-level module may import. A module missing here is refused.
const RULES: &[(&str, &[&str])] = &[
    // The core.
    ("domain", &[]),
    ("ports", &["domain"]),
    ("config", &["domain"]),
    ("inputs", &["domain"]),
    // Tools with no knowledge of the factory's flow.
    ("private", &[]),
    ("archive", &[]),
    (
        "sources",
        &["domain", "ports", "archive", "inputs", "private"],
    ),
    ("build_log", &["private"]),
    ("packer", &[]),
    ("template", &[]),
    ("layout", &[]),
    ("protocol", &[]),
    ("pages", &["domain"]),
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
    // An operator's rollback: the plan, the gallery, the records.
    ("rollback", &["domain", "ports"]),
    ("schedules", &["domain", "ports"]),
    ("cancel", &["domain", "ports", "build_log"]),
    (
        "app",
        &[
            "domain",
            "ports",
            "config",
            "inputs",
            "stages",
            "followups",
            "schedules",
            "cancel",
            "protocol",
            "sources",
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
            "schedules",
            "cancel",
            "protocol",
            "pages",
            "dashboard",
            "layout",
            "build_log",
            "packer",
            "trace",
            "sources",
            "rollback",
        ],
    ),
    ("server", &["app", "functions", "protocol"]),
    (
        "worker",
        &[
            "domain",
            "ports",
            "config",
            "stages",
            "build_log",
            "sources",
        ],
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
    ("package", &["functions", "layout", "private"]),
    // The composition root and the binary's modes that wire adapters.
    ("startup", &ANY),
    ("cli", &ANY),
    ("doctor", &ANY),
];

/// Every module: for the composition root.
const ANY: [&str; 34] = [
    "domain",
    "archive",
    "sources",
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
    "rollback",
    "schedules",
    "cancel",
    "server",
    "worker",
    "azure",
    "local",
    "web",
    "host",
    "package",
    "startup",
    "cli",
    "doctor",
    "lib",
];

/// The library's source folder.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("handlers")
}

/// A module's path from the crate root (`["domain", "run"]`; empty for the root).
type ModulePath = Vec<String>;

/// One source file of a crate.
struct SourceFile {
    /// Its path in the source folder (`domain/run.rs`).
    file: String,
    /// The module it holds.
    module: ModulePath,
    /// Its text.
    text: String,
}

/// A crate's files, read from its source folder.
struct Crate {
    files: Vec<SourceFile>,
}

impl Crate {
    /// Every `.rs` file under `root` except the binary's `main.rs` (a crate
    /// of its own, which reaches the library by its name).
    fn read(root: &Path) -> Crate {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("the source folder") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut paths = Vec::new();
        walk(root, &mut paths);
        paths.sort();
        let files = paths
            .into_iter()
            .filter_map(|path| {
                let relative = path.strip_prefix(root).expect("under the source folder");
                let file = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if file == "main.rs" {
                    return None;
                }
                Some(SourceFile {
                    module: module_of(&file),
                    text: std::fs::read_to_string(&path).expect("readable source"),
                    file,
                })
            })
            .collect();
        Crate { files }
    }

    /// Every module that is a file.
    fn modules(&self) -> BTreeSet<ModulePath> {
        self.files.iter().map(|f| f.module.clone()).collect()
    }

    /// The file that holds `path` (a module, or an item in one): the file of
    /// its longest prefix that is a file's module.
    fn file_of(&self, path: &[String]) -> Option<&SourceFile> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.files.iter().find(|f| f.module == path[..n]))
    }

    /// Which files each file imports, with the line of its first import of it.
    fn graph(&self) -> Graph {
        let modules = self.modules();
        let mut graph = Graph::new();
        for file in &self.files {
            let edges = graph.entry(file.file.clone()).or_default();
            for import in imports(&file.module, &file.text, &modules)
                .unwrap_or_else(|e| panic!("{}: {e}", file.file))
            {
                let Some(target) = self.file_of(&import.path) else {
                    continue;
                };
                if target.file != file.file {
                    edges.entry(target.file.clone()).or_insert(import.line);
                }
            }
        }
        graph
    }
}

/// The module a file holds: `domain/run.rs` → `domain::run`,
/// `stages/mod.rs` → `stages`, `lib.rs` → the crate root.
fn module_of(file: &str) -> ModulePath {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// One path into the crate a file names.
#[derive(Debug)]
struct Import {
    /// What it names, from the crate root (`["domain", "run", "Run"]`).
    path: ModulePath,
    /// The line it is named on.
    line: usize,
    /// The line of the statement that names it (a `use` item's first line).
    statement: usize,
}

/// Every path into the crate that `source` (the text of `module`) names,
/// outside its test modules; `modules` are the crate's modules, for paths
/// that start with a child module's name.
fn imports(
    module: &[String],
    source: &str,
    modules: &BTreeSet<ModulePath>,
) -> Result<Vec<Import>, syn::Error> {
    let file = syn::parse_file(source)?;
    let mut reader = Reader {
        module: module.to_vec(),
        modules: modules.clone(),
        found: Vec::new(),
        in_use: None,
    };
    reader.visit_file(&file);
    Ok(reader.found)
}

/// Reads the paths of one file as it is visited.
struct Reader {
    /// The module being read (the file's, or an inline module in it).
    module: ModulePath,
    /// The crate's modules, inline ones added as they are met.
    modules: BTreeSet<ModulePath>,
    /// What was found.
    found: Vec<Import>,
    /// The first line of the `use` item being read, if any.
    in_use: Option<usize>,
}

impl Reader {
    /// `segments` from the crate root, if they start in the crate: at
    /// `crate`, `self`, `super` or a child module of the one being read.
    fn absolute(&self, segments: &[String]) -> Option<ModulePath> {
        let (first, rest) = segments.split_first()?;
        let mut path = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => {
                let mut base = self.module.clone();
                base.pop()?;
                let mut rest = rest;
                while let Some((next, after)) = rest.split_first() {
                    if next != "super" {
                        break;
                    }
                    base.pop()?;
                    rest = after;
                }
                base.extend(rest.iter().cloned());
                return Some(base);
            }
            child => {
                let mut path = self.module.clone();
                path.push(child.to_string());
                if !self.modules.contains(&path) {
                    return None; // another crate, or a name in scope
                }
                path
            }
        };
        path.extend(rest.iter().cloned());
        Some(path)
    }

    fn record(&mut self, segments: &[String], line: usize) {
        if let Some(path) = self.absolute(segments) {
            let statement = self.in_use.unwrap_or(line);
            self.found.push(Import {
                path,
                line,
                statement,
            });
        }
    }

    /// Every leaf of a `use` tree under `prefix`.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident),
            syn::UseTree::Glob(g) => {
                let line = g.star_token.spans[0].start().line;
                self.record(prefix, line);
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// A name a `use` tree ends in (`self` names the prefix itself).
    fn use_leaf(&mut self, prefix: &mut Vec<String>, ident: &syn::Ident) {
        let line = ident.span().start().line;
        if ident == "self" {
            self.record(prefix, line);
        } else {
            prefix.push(ident.to_string());
            self.record(prefix, line);
            prefix.pop();
        }
    }

    /// The paths in a macro's tokens (`tracing::info!(x = %crate::a::b())`),
    /// which are not parsed as code: every `name::name...` run that starts
    /// in the crate and is not the tail of a longer path.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let colons = |at: usize| {
            matches!((trees.get(at), trees.get(at + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let mut at = 0;
        while at < trees.len() {
            match &trees[at] {
                TokenTree::Group(group) => {
                    self.tokens(group.stream());
                    at += 1;
                }
                TokenTree::Ident(ident) if !(at >= 2 && colons(at - 2)) => {
                    let mut segments = vec![ident.to_string()];
                    let mut next = at + 1;
                    while colons(next) {
                        match trees.get(next + 2) {
                            Some(TokenTree::Ident(more)) => {
                                segments.push(more.to_string());
                                next += 3;
                            }
                            _ => break,
                        }
                    }
                    if segments.len() > 1 {
                        self.record(&segments, ident.span().start().line);
                    }
                    at = next.max(at + 1);
                }
                _ => at += 1,
            }
        }
    }
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| match &attr.meta {
        syn::Meta::List(list) => list.path.is_ident("cfg") && list.tokens.to_string() == "test",
        _ => false,
    })
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::ExternCrate(i) => &i.attrs,
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::ForeignMod(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Macro(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            syn::Item::TraitAlias(i) => &i.attrs,
            syn::Item::Type(i) => &i.attrs,
            syn::Item::Union(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            _ => &[],
        };
        if !is_test(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs: &[syn::Attribute] = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_test(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // `mod name;` declares a child file: not an import of it.
        let Some((_, items)) = &item.content else {
            return;
        };
        self.module.push(item.ident.to_string());
        self.modules.insert(self.module.clone());
        for item in items {
            self.visit_item(item);
        }
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_none() {
            self.in_use = Some(item.use_token.span.start().line);
            self.use_tree(&mut Vec::new(), &item.tree);
            self.in_use = None;
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            let line = path.segments[0].ident.span().start().line;
            self.record(&segments, line);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        self.tokens(mac.tokens.clone());
    }
}

/// The top-level module a module path belongs to (`lib` for the crate root).
fn top(path: &[String]) -> &str {
    path.first().map_or("lib", String::as_str)
}

/// What `file`'s `source` breaks: one line per import its layer forbids
/// (one per forbidden module and statement).
fn violations(file: &str, source: &str, modules: &BTreeSet<ModulePath>) -> Vec<String> {
    let own = module_of(file);
    let module = top(&own).to_string();
    let allowed = RULES
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, allowed)| *allowed);
    let found = imports(&own, source, modules).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut seen = BTreeSet::new();
    found
        .into_iter()
        .filter(|import| top(&import.path) != module)
        .filter(|import| allowed.is_none_or(|a| !a.contains(&top(&import.path))))
        .filter(|import| seen.insert((top(&import.path).to_string(), import.statement)))
        .map(|import| {
            let target = top(&import.path);
            let named = import.path.join("::");
            match allowed {
                Some(_) => format!(
                    "{file}:{}: {module} may not import {target} (crate::{named})",
                    import.line
                ),
                None => format!("{file}: {module} has no layer in the rules (it imports {target})"),
            }
        })
        .collect()
}

/// Which files each file imports, with the line of the first import.
type Graph = BTreeMap<String, BTreeMap<String, usize>>;

/// Every import circle among the files: one per knot of files that reach
/// each other, as the files in order with the line of each one's import of
/// the next, back to the first.
fn circles(graph: &Graph) -> Vec<Vec<(String, usize)>> {
    // The knots: strongly connected components (Tarjan), of two files or more.
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        knots: Vec<BTreeSet<&'g str>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flat_map(|e| e.keys()) {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut knot = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    knot.insert(top);
                    if top == node {
                        break;
                    }
                }
                if knot.len() > 1 {
                    self.knots.push(knot);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        knots: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    // In each knot, the shortest way from its first file back to it.
    let edges = |node: &str| graph.get(node).into_iter().flatten();
    let mut found: Vec<Vec<(String, usize)>> = tarjan
        .knots
        .iter()
        .map(|knot| {
            let start = *knot.first().expect("a knot has files");
            let mut came_from: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
            let mut queue = VecDeque::from([start]);
            'search: while let Some(node) = queue.pop_front() {
                for (next, line) in edges(node) {
                    let next = next.as_str();
                    if !knot.contains(next) || came_from.contains_key(next) {
                        continue;
                    }
                    came_from.insert(next, (node, *line));
                    if next == start {
                        break 'search;
                    }
                    queue.push_back(next);
                }
            }
            let mut circle = Vec::new();
            let mut at = start;
            loop {
                let (before, line) = came_from[at];
                circle.push((before.to_string(), line));
                at = before;
                if at == start {
                    break;
                }
            }
            circle.reverse();
            circle
        })
        .collect();
    found.sort();
    found
}

/// A circle as people read it: `a.rs:3 → b.rs:7 → a.rs`.
fn describe(circle: &[(String, usize)]) -> String {
    let mut text: Vec<String> = circle
        .iter()
        .map(|(file, line)| format!("{file}:{line}"))
        .collect();
    text.push(circle[0].0.clone());
    text.join(" → ")
}

/// `text` with `added` written after its `//!` header.
fn plant(text: &str, added: &str) -> String {
    let header = text
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .count();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(header, added);
    lines.join("\n")
}

#[test]
fn every_module_imports_only_what_its_layer_allows() {
    let krate = Crate::read(&source_dir());
    assert!(krate.files.len() > 50, "the crate's files were found");
    let modules = krate.modules();
    let broken: Vec<String> = krate
        .files
        .iter()
        .filter(|f| f.file != "lib.rs")
        .flat_map(|f| violations(&f.file, &f.text, &modules))
        .collect();
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_files_form_no_import_circle() {
    let graph = Crate::read(&source_dir()).graph();
    let found: Vec<String> = circles(&graph).iter().map(|c| describe(c)).collect();
    assert!(
        found.is_empty(),
        "import circles (file:line of the import of the next file):\n{}",
        found.join("\n")
    );
}

#[test]
fn a_forbidden_import_is_caught_wherever_it_is_written() {
    let krate = Crate::read(&source_dir());
    let modules = krate.modules();
    let source = |file: &str| {
        krate
            .files
            .iter()
            .find(|f| f.file == file)
            .map(|f| f.text.clone())
            .expect("the file's source")
    };
    // The real files pass; each with one forbidden import added does not.
    for (file, added) in [
        ("domain/run.rs", "use crate::ports::store::RunStore;"),
        (
            "domain/run.rs",
            "fn f() { crate::private::create_dir(std::path::Path::new(\".\")).ok(); }",
        ),
        ("domain/version.rs", "fn f(_: &crate::app::App) {}"),
        (
            "domain/version.rs",
            "fn f() { tracing::info!(at = %crate::trace::TraceId::new()); }",
        ),
        (
            "ports/store.rs",
            "use crate::{domain::run::Run, config::Settings};",
        ),
        (
            "ports/store.rs",
            "use crate::{\n    domain::{\n        run::Run,\n        version::ImageVersion,\n    },\n    config::{\n        self,\n        Settings,\n    },\n};",
        ),
        (
            "stages/build.rs",
            "use crate::azure::gallery::AzureGallery;",
        ),
        ("stages/build.rs", "use super::super::app::App;"),
        ("stages/mod.rs", "use super::app::App;"),
        (
            "azure/gallery.rs",
            "use crate::local::gallery::LocalGallery;",
        ),
        ("local/sqlite.rs", "use crate::stages::Ports;"),
        (
            "functions/runs.rs",
            "use crate::local::sqlite::SqliteStore;",
        ),
        ("config.rs", "use crate::azure::AzureSettings;"),
    ] {
        let text = source(file);
        let found = violations(file, &text, &modules);
        assert!(found.is_empty(), "{file} passes as it is: {found:?}");
        let found = violations(file, &plant(&text, added), &modules);
        assert_eq!(found.len(), 1, "{file} + {added}: {found:?}");
    }
    // The violation names the file, the line and what is imported.
    let planted = plant(
        &source("domain/version.rs"),
        "use crate::{\n    domain::run::Run,\n    ports::{\n        clock::Clock,\n    },\n};",
    );
    let line = planted
        .lines()
        .position(|l| l.contains("clock::Clock"))
        .expect("the planted line")
        + 1;
    assert_eq!(
        violations("domain/version.rs", &planted, &modules),
        [format!(
            "domain/version.rs:{line}: domain may not import ports (crate::ports::clock::Clock)"
        )]
    );
    // A comment, a doc link, or an import in a test module is not an import;
    // what follows the test module is still read.
    let mut text = source("domain/run.rs");
    text.push_str(
        "\n// crate::azure is mentioned here\n/// See [`crate::app::App`].\nfn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::app::App;\n}\n",
    );
    assert!(violations("domain/run.rs", &text, &modules).is_empty());
    text.push_str(
        "\nfn after_the_tests() {\n    let _ = crate::local::sqlite::SqliteStore::open;\n}\n",
    );
    let found = violations("domain/run.rs", &text, &modules);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("domain may not import local"),
        "{found:?}"
    );
    // A new top-level module must be given a layer.
    assert_eq!(
        violations("newcomer.rs", "use crate::domain::run::Run;", &modules).len(),
        1
    );
}

#[test]
fn a_circle_of_files_is_found_and_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let write = |file: &str, text: &str| {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("the folder");
        std::fs::write(path, text).expect("the file");
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n");
    write("c.rs", "use crate::a::Alpha;\npub struct Gamma(Alpha);\n");
    write("a.rs", "use crate::b::Beta;\n\npub struct Alpha(Beta);\n");
    write(
        "b.rs",
        "#[cfg(test)]\nmod tests {}\n\npub struct Beta;\n\npub fn alpha() -> Option<super::a::Alpha> {\n    None\n}\n",
    );
    // A parent and its child naming each other are a circle too.
    write(
        "d/mod.rs",
        "mod e;\npub struct Delta;\npub use e::Epsilon;\n",
    );
    write("d/e.rs", "pub struct Epsilon(pub super::Delta);\n");
    let krate = Crate::read(dir.path());
    let found = circles(&krate.graph());
    let described: Vec<String> = found.iter().map(|c| describe(c)).collect();
    assert_eq!(
        described,
        ["a.rs:1 → b.rs:6 → a.rs", "d/e.rs:1 → d/mod.rs:3 → d/e.rs"]
    );
    // Without the import back, no circle.
    write("b.rs", "pub struct Beta;\n");
    write("d/e.rs", "pub struct Epsilon;\n");
    assert!(circles(&Crate::read(dir.path()).graph()).is_empty());
}

#[test]
fn a_circle_through_several_files_is_found_and_a_layered_graph_has_none() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (line, (a, b)) in edges.iter().enumerate() {
            g.entry(a.to_string())
                .or_default()
                .insert(b.to_string(), line + 1);
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert!(
        circles(&graph(&[
            ("app.rs", "stages/mod.rs"),
            ("stages/mod.rs", "ports/mod.rs")
        ]))
        .is_empty()
    );
    let found = circles(&graph(&[
        ("app.rs", "worker.rs"),
        ("worker.rs", "stages/mod.rs"),
        ("stages/mod.rs", "app.rs"),
        ("stages/mod.rs", "ports/mod.rs"),
    ]));
    assert_eq!(
        found.iter().map(|c| describe(c)).collect::<Vec<_>>(),
        ["app.rs:1 → worker.rs:2 → stages/mod.rs:3 → app.rs"]
    );
}
