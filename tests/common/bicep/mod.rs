//! A type check of Bicep files against Bicep's own type data, for the
//! infrastructure no Bicep compiler can build here: each file parsed with
//! the published grammar (`tree-sitter-bicep`), each `resource` declaration
//! checked against the `types.json` that Microsoft generates from the REST
//! API specifications (`bicep-types-az`). A file the grammar cannot parse
//! is reported unchecked, never passed. See docs/infra-checks.md.

mod check;
mod resource;
mod syntax;
mod types;
mod value;

use std::fmt;
use std::path::{Path, PathBuf};

pub use check::{Finding, Stats};
pub use types::TypeLibrary;

/// A file the published grammar does not parse (Bicep it does not know:
/// `extension`, spread `...`, typed variables, `resourceInput<>`), or
/// misreads.
#[derive(Clone, Debug)]
pub struct Unchecked {
    pub file: String,
    /// The first line the grammar failed on.
    pub line: usize,
    /// What the grammar did there.
    pub why: &'static str,
}

/// What a check found and counted.
pub struct Report {
    pub files: usize,
    /// `types.json` files the type data has.
    pub type_files: usize,
    pub stats: Stats,
    pub findings: Vec<Finding>,
    pub unchecked: Vec<Unchecked>,
}

impl Report {
    /// No finding and every file checked.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.unchecked.is_empty()
    }
}

/// Every `.bicep` file under `dir`, sorted.
pub fn bicep_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", folder.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "bicep") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Checks `files`, naming each by its path under `base`.
pub fn check_files(library: &TypeLibrary, base: &Path, files: &[PathBuf]) -> Report {
    let mut report = Report {
        files: files.len(),
        type_files: library.file_count(),
        stats: Stats::default(),
        findings: Vec::new(),
        unchecked: Vec::new(),
    };
    for path in files {
        let name = path
            .strip_prefix(base)
            .unwrap_or(path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let parsed = syntax::parse(text);
        if let Some((line, why)) = parsed.first_failure() {
            report.unchecked.push(Unchecked {
                file: name,
                line,
                why,
            });
            continue;
        }
        let folder = path.parent().unwrap_or(base);
        resource::check_file(
            library,
            &name,
            folder,
            &parsed,
            &mut report.stats,
            &mut report.findings,
        );
    }
    report.findings.sort();
    report
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "Bicep type check: {} file{} against Bicep's type data ({} types.json files)",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.type_files
        )?;
        writeln!(
            f,
            "  resources: {} declared, {} checked ({} existing, {} children)",
            s.resources_declared, s.resources_checked, s.existing, s.children
        )?;
        writeln!(f, "  property names checked: {}", s.properties)?;
        writeln!(
            f,
            "  values checked: {} against their type, {} by declared kind only",
            s.values, s.kinds
        )?;
        let skipped: usize = s.skipped.values().sum();
        let reasons: Vec<String> = s
            .skipped
            .iter()
            .map(|(why, count)| format!("{why} {count}"))
            .collect();
        writeln!(
            f,
            "  values skipped (not known before deployment): {skipped}{}",
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            }
        )?;
        if self.unchecked.is_empty() {
            writeln!(f, "  files unchecked: none")?;
        } else {
            writeln!(f, "  files unchecked: {}", self.unchecked.len())?;
            for u in &self.unchecked {
                writeln!(f, "    {}:{}: not checked: {}", u.file, u.line, u.why)?;
            }
        }
        if self.findings.is_empty() {
            writeln!(f, "  errors: none")
        } else {
            writeln!(f, "  errors: {}", self.findings.len())?;
            for finding in &self.findings {
                writeln!(
                    f,
                    "    {}:{}: {}",
                    finding.file, finding.line, finding.message
                )?;
            }
            Ok(())
        }
    }
}
