//! Static checks of a Packer HCL2 template folder.
//!
//! This module owns everything that can be said about a template folder without
//! running Packer: every `*.pkr.hcl` file and every `*.pkrvars.hcl` /
//! `*.auto.pkrvars.hcl` file directly inside one folder is parsed, and the
//! folder is checked for parse errors, undeclared and unused variables,
//! provisioner scripts missing on disk, secrets written as literals, unpinned
//! `required_plugins` entries and a missing `build` block. Reading the files is
//! its only side effect.
//!
//! Line numbers come from the byte spans that the `hcl-edit` parser keeps on
//! every node (blocks, attributes, expressions, template literals): the byte
//! offset where a node starts is mapped to a 1-based line through the offsets
//! of the line starts in the file. Parse errors carry their own 1-based line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hcl_edit::expr::{Expression, ObjectKey, ObjectValue, Traversal, TraversalOperator};
use hcl_edit::structure::{Attribute, Block, Body};
use hcl_edit::template::Element;
use hcl_edit::visit::{self, Visit};
use hcl_edit::{Decorated, Span, Spanned};

/// One problem found in a template folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// File name relative to the checked folder; empty only when the folder
    /// holds no template file at all.
    pub file: String,
    /// 1-based line in `file` where the problem starts.
    pub line: usize,
    /// What kind of problem this is.
    pub kind: FindingKind,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = if self.kind.is_error() {
            "error"
        } else {
            "warning"
        };
        write!(
            f,
            "{}:{}: {severity}: {}: {}",
            self.file,
            self.line,
            self.kind.as_str(),
            self.message
        )
    }
}

/// The kinds of problems [`check_folder`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// A file is not valid HCL (or not UTF-8).
    ParseError,
    /// `var.X` is used but no `variable "X"` block declares it.
    UndeclaredVariable,
    /// A variable is declared but never used (a warning).
    UnusedVariable,
    /// A script or file-provisioner source does not exist on disk.
    MissingScript,
    /// A value that looks like a secret is written as a literal.
    SecretLiteral,
    /// A `required_plugins` entry has no `version` constraint.
    UnpinnedPlugin,
    /// No file of the folder has a `build` block.
    NoBuildBlock,
}

impl FindingKind {
    /// Whether this kind fails a check; only [`FindingKind::UnusedVariable`]
    /// is a warning.
    pub fn is_error(&self) -> bool {
        !matches!(self, FindingKind::UnusedVariable)
    }

    /// A short, stable, kebab-case name for reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            FindingKind::ParseError => "parse-error",
            FindingKind::UndeclaredVariable => "undeclared-variable",
            FindingKind::UnusedVariable => "unused-variable",
            FindingKind::MissingScript => "missing-script",
            FindingKind::SecretLiteral => "secret-literal",
            FindingKind::UnpinnedPlugin => "unpinned-plugin",
            FindingKind::NoBuildBlock => "no-build-block",
        }
    }
}

/// Everything [`check_folder`] learned about a template folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateReport {
    /// Problems, sorted by file, then line.
    pub findings: Vec<Finding>,
    /// Names of the declared variables, sorted and without duplicates.
    pub variables: Vec<String>,
    /// Provisioner scripts and file-provisioner sources whose path could be
    /// resolved without evaluating the template (a literal string, optionally
    /// starting with `${path.root}`), relative to the folder, sorted and
    /// without duplicates.
    pub scripts: Vec<String>,
    /// Whether a `packer { required_plugins { ... } }` block exists; such a
    /// template needs `packer init`, which only Packer 1.7 and newer have.
    pub requires_plugins: bool,
}

impl TemplateReport {
    /// Whether any finding is an error (not just a warning).
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.kind.is_error())
    }
}

/// Why a folder could not be checked at all. HCL problems are never errors:
/// they are [`Finding`]s.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The folder is missing or cannot be listed.
    #[error("cannot read template folder {}: {source}", path.display())]
    ReadFolder {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A template file cannot be read.
    #[error("cannot read template file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Checks the Packer HCL2 template folder `dir`.
///
/// Cross-file checks (undeclared and unused variables, the `build` block) are
/// skipped while a `*.pkr.hcl` file fails to parse, since its declarations are
/// unknown.
///
/// # Errors
///
/// Returns [`TemplateError`] only when the folder or one of its template files
/// cannot be read.
pub fn check_folder(dir: &Path) -> Result<TemplateReport, TemplateError> {
    let folder_error = |source| TemplateError::ReadFolder {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(folder_error)? {
        let entry = entry.map_err(folder_error)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(kind) = FileKind::of(&name) else {
            continue;
        };
        if entry.path().is_file() {
            files.push((name, kind));
        }
    }
    files.sort();

    let mut state = FolderState::default();
    let mut template_parse_failed = false;
    for (name, kind) in &files {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|source| TemplateError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let Some((lines, body)) = parse_file(name, &bytes, &mut state.findings) else {
            template_parse_failed |= *kind == FileKind::Template;
            continue;
        };
        let mut scanner = Scanner {
            dir,
            file: name,
            kind: *kind,
            lines,
            blocks: Vec::new(),
            line: 1,
            in_reported_value: false,
            state: &mut state,
        };
        scanner.visit_body(&body);
    }

    if !template_parse_failed {
        state.cross_file_findings(&files);
    }
    Ok(state.into_report())
}

/// Which files of the folder are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    /// `*.pkr.hcl`: blocks of the template.
    Template,
    /// `*.pkrvars.hcl` and `*.auto.pkrvars.hcl`: variable values.
    VarFile,
}

impl FileKind {
    fn of(name: &str) -> Option<FileKind> {
        if name.ends_with(".pkr.hcl") {
            Some(FileKind::Template)
        } else if name.ends_with(".pkrvars.hcl") {
            Some(FileKind::VarFile)
        } else {
            None
        }
    }
}

/// Brackets nested deeper than this are refused before parsing.
const MAX_NESTING: usize = 32;

/// Where and why a file's brackets do not pair up.
#[derive(Debug, PartialEq, Eq)]
struct Unbalanced {
    line: usize,
    message: String,
}

/// One open thing of [`check_brackets`]'s scan.
#[derive(Clone, Copy)]
enum Open {
    /// `(`, `[` or `{` in code, with where it opened.
    Bracket(char, usize, usize),
    /// A quoted string, with where it opened.
    Str(usize, usize),
    /// `${` or `%{` inside a string: code until its `}`.
    Interp(usize, usize),
}

/// A linear scan of a file's brackets, strings, interpolations, comments and
/// heredocs, before the parser sees it. The parser backtracks on unclosed
/// brackets: a fuzzed 1.5 KB file with a dozen of them took half a second,
/// and each one more doubles that. A bracket that is never closed, closed by
/// the wrong kind, or nested deeper than [`MAX_NESTING`] is reported here, at
/// once, with its line. Heredoc bodies are skipped whole.
fn check_brackets(text: &str) -> Result<(), Unbalanced> {
    let chars: Vec<char> = text.chars().collect();
    let mut stack: Vec<Open> = Vec::new();
    let (mut i, mut line, mut col) = (0, 1, 1);
    // Moves past `n` characters, keeping the line and column.
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if chars.get(*i) == Some(&'\n') {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        let c = chars[i];
        if let Some(Open::Str(..)) = stack.last() {
            match c {
                '\\' => advance(&mut i, &mut line, &mut col, 2),
                '"' => {
                    stack.pop();
                    advance(&mut i, &mut line, &mut col, 1);
                }
                _ if at(i, "$${") || at(i, "%%{") => advance(&mut i, &mut line, &mut col, 3),
                _ if at(i, "${") || at(i, "%{") => {
                    stack.push(Open::Interp(line, col));
                    advance(&mut i, &mut line, &mut col, 2);
                }
                _ => advance(&mut i, &mut line, &mut col, 1),
            }
            continue;
        }
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    advance(&mut i, &mut line, &mut col, 1);
                }
            }
            '/' if at(i, "//") => {
                while i < chars.len() && chars[i] != '\n' {
                    advance(&mut i, &mut line, &mut col, 1);
                }
            }
            '/' if at(i, "/*") => {
                advance(&mut i, &mut line, &mut col, 2);
                while i < chars.len() && !at(i, "*/") {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                let rest = 2.min(chars.len() - i);
                advance(&mut i, &mut line, &mut col, rest);
            }
            '"' => {
                stack.push(Open::Str(line, col));
                advance(&mut i, &mut line, &mut col, 1);
            }
            '<' if at(i, "<<") => {
                // `<<MARKER` or `<<-MARKER` then a newline: a heredoc up to
                // the line that is the marker alone; anything else is `<`s.
                let start = i + 2 + usize::from(chars.get(i + 2) == Some(&'-'));
                let mut end = start;
                while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                let marker: String = chars[start..end].iter().collect();
                if marker.is_empty() || chars.get(end) != Some(&'\n') {
                    advance(&mut i, &mut line, &mut col, 2);
                    continue;
                }
                let header = end + 1 - i;
                advance(&mut i, &mut line, &mut col, header);
                loop {
                    let begin = i;
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                    }
                    let this: String = chars[begin..i].iter().collect();
                    let done = this.trim() == marker || i >= chars.len();
                    if i < chars.len() {
                        i += 1;
                        line += 1;
                    }
                    col = 1;
                    if done {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                if stack.len() >= MAX_NESTING {
                    return Err(Unbalanced {
                        line,
                        message: format!(
                            "brackets nested deeper than {MAX_NESTING} levels (column {col}); split the expression with locals"
                        ),
                    });
                }
                stack.push(Open::Bracket(c, line, col));
                advance(&mut i, &mut line, &mut col, 1);
            }
            ')' | ']' | '}' => {
                let expected = |open: char| match open {
                    '(' => ')',
                    '[' => ']',
                    _ => '}',
                };
                match stack.last().copied() {
                    Some(Open::Bracket(open, _, _)) if expected(open) == c => {
                        stack.pop();
                    }
                    Some(Open::Interp(..)) if c == '}' => {
                        stack.pop();
                    }
                    Some(Open::Bracket(open, l, k)) => {
                        return Err(Unbalanced {
                            line,
                            message: format!(
                                "expected `{}` to close the `{open}` of line {l} column {k}, found `{c}` (column {col})",
                                expected(open)
                            ),
                        });
                    }
                    _ => {
                        return Err(Unbalanced {
                            line,
                            message: format!("`{c}` closes nothing (column {col})"),
                        });
                    }
                }
                advance(&mut i, &mut line, &mut col, 1);
            }
            _ => advance(&mut i, &mut line, &mut col, 1),
        }
    }
    match stack.last() {
        None => Ok(()),
        Some(Open::Bracket(open, l, k)) => Err(Unbalanced {
            line: *l,
            message: format!("`{open}` (column {k}) is never closed"),
        }),
        Some(Open::Str(l, k)) => Err(Unbalanced {
            line: *l,
            message: format!("the string opened at column {k} is never closed"),
        }),
        Some(Open::Interp(l, k)) => Err(Unbalanced {
            line: *l,
            message: format!("the interpolation opened at column {k} is never closed"),
        }),
    }
}

/// Decodes and parses one file, recording a parse error as a finding.
fn parse_file(name: &str, bytes: &[u8], findings: &mut Vec<Finding>) -> Option<(LineIndex, Body)> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            findings.push(Finding {
                file: name.to_owned(),
                line,
                kind: FindingKind::ParseError,
                message: "file is not valid UTF-8".to_owned(),
            });
            return None;
        }
    };
    if let Err(unbalanced) = check_brackets(text) {
        findings.push(Finding {
            file: name.to_owned(),
            line: unbalanced.line,
            kind: FindingKind::ParseError,
            message: unbalanced.message,
        });
        return None;
    }
    match hcl_edit::parser::parse_body(text) {
        Ok(body) => Some((LineIndex::new(text), body)),
        Err(err) => {
            findings.push(Finding {
                file: name.to_owned(),
                line: err.location().line().max(1),
                kind: FindingKind::ParseError,
                message: format!(
                    "{} (column {})",
                    err.message().replace('\n', " "),
                    err.location().column()
                ),
            });
            None
        }
    }
}

/// Maps byte offsets of one file to 1-based line numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }
}

/// A place in the folder.
#[derive(Debug, Clone)]
struct Location {
    file: String,
    line: usize,
}

/// One `var.X` in the folder.
struct VarUse {
    name: String,
    at: Location,
    /// Inside the declaration of `X` itself (a validation condition), which
    /// does not count as a use.
    self_reference: bool,
}

/// What the files of one folder add up to.
#[derive(Default)]
struct FolderState {
    findings: Vec<Finding>,
    /// First declaration of each variable.
    declared: BTreeMap<String, Location>,
    /// Every `var.X`, in file order.
    uses: Vec<VarUse>,
    scripts: BTreeSet<String>,
    requires_plugins: bool,
    has_build: bool,
}

impl FolderState {
    fn push(&mut self, file: &str, line: usize, kind: FindingKind, message: String) {
        self.findings.push(Finding {
            file: file.to_owned(),
            line,
            kind,
            message,
        });
    }

    fn cross_file_findings(&mut self, files: &[(String, FileKind)]) {
        let mut used = BTreeSet::new();
        let mut undeclared = Vec::new();
        for VarUse {
            name,
            at,
            self_reference,
        } in &self.uses
        {
            if !self.declared.contains_key(name) {
                undeclared.push(Finding {
                    file: at.file.clone(),
                    line: at.line,
                    kind: FindingKind::UndeclaredVariable,
                    message: format!("var.{name} is used but no variable \"{name}\" is declared"),
                });
            }
            if !self_reference {
                used.insert(name.as_str());
            }
        }
        let unused: Vec<Finding> = self
            .declared
            .iter()
            .filter(|(name, _)| !used.contains(name.as_str()))
            .map(|(name, at)| Finding {
                file: at.file.clone(),
                line: at.line,
                kind: FindingKind::UnusedVariable,
                message: format!("variable \"{name}\" is declared but never used"),
            })
            .collect();
        self.findings.extend(undeclared);
        self.findings.extend(unused);

        if !self.has_build {
            let first_template = files
                .iter()
                .find(|(_, kind)| *kind == FileKind::Template)
                .map(|(name, _)| name.clone());
            let message = if first_template.is_some() {
                "no build block in any *.pkr.hcl file of the folder"
            } else {
                "the folder has no *.pkr.hcl file"
            };
            self.push(
                first_template.as_deref().unwrap_or(""),
                1,
                FindingKind::NoBuildBlock,
                message.to_owned(),
            );
        }
    }

    fn into_report(mut self) -> TemplateReport {
        self.findings.sort_by(|a, b| {
            (&a.file, a.line, a.kind, &a.message).cmp(&(&b.file, b.line, b.kind, &b.message))
        });
        self.findings.dedup();
        TemplateReport {
            findings: self.findings,
            variables: self.declared.into_keys().collect(),
            scripts: self.scripts.into_iter().collect(),
            requires_plugins: self.requires_plugins,
        }
    }
}

/// Walks the syntax tree of one file.
struct Scanner<'a> {
    dir: &'a Path,
    file: &'a str,
    kind: FileKind,
    lines: LineIndex,
    /// Identifier and first label of each enclosing block, outermost first.
    blocks: Vec<(String, Option<String>)>,
    /// Line of the innermost block or attribute, for nodes without a span.
    line: usize,
    /// Whether the value being visited was already reported because of its
    /// name.
    in_reported_value: bool,
    state: &'a mut FolderState,
}

impl Scanner<'_> {
    fn line_of(&self, node: &impl Span) -> usize {
        node.span()
            .map_or(self.line, |span| self.lines.line(span.start))
    }

    fn push(&mut self, line: usize, kind: FindingKind, message: String) {
        self.state.push(self.file, line, kind, message);
    }

    /// Label of the `variable` block this node is in, if any.
    fn enclosing_variable(&self) -> Option<&str> {
        match self.blocks.first() {
            Some((ident, label)) if ident == "variable" => label.as_deref(),
            _ => None,
        }
    }

    fn record_block(&mut self, block: &Block, label: Option<&str>) {
        if self.kind != FileKind::Template {
            return;
        }
        let ident = block.ident.as_str();
        let line = self.line;
        let top_level = self.blocks.is_empty();
        match ident {
            "variable" if top_level => {
                if let Some(name) = label {
                    self.declare(name, line);
                }
            }
            "variables" if top_level => {
                for attr in block.body.attributes() {
                    let line = self.line_of(attr);
                    self.declare(attr.key.as_str(), line);
                }
            }
            "build" if top_level => self.state.has_build = true,
            "required_plugins" if self.blocks.last().is_some_and(|(b, _)| b == "packer") => {
                self.state.requires_plugins = true;
                for attr in block.body.attributes() {
                    self.check_plugin(attr);
                }
            }
            "provisioner" | "error-cleanup-provisioner" | "post-processor" => {
                self.check_scripts(block, label);
            }
            _ => {}
        }
    }

    fn declare(&mut self, name: &str, line: usize) {
        let file = self.file.to_owned();
        self.state
            .declared
            .entry(name.to_owned())
            .or_insert(Location { file, line });
    }

    fn check_plugin(&mut self, attr: &Attribute) {
        let pinned = match &attr.value {
            Expression::Object(object) => object.iter().any(|(key, value)| {
                object_key_name(key).as_deref() == Some("version")
                    && value.expr().as_str().is_none_or(|v| !v.trim().is_empty())
            }),
            _ => false,
        };
        if !pinned {
            let line = self.line_of(attr);
            self.push(
                line,
                FindingKind::UnpinnedPlugin,
                format!(
                    "required plugin \"{}\" has no version constraint",
                    attr.key.as_str()
                ),
            );
        }
    }

    /// Checks that the scripts and file sources of a provisioner or
    /// post-processor block exist.
    fn check_scripts(&mut self, block: &Block, plugin: Option<&str>) {
        let body = &block.body;
        let downloads = body
            .get_attribute("direction")
            .and_then(|attr| attr.value.as_str())
            .is_some_and(|direction| direction == "download");
        let mut names = vec!["script", "scripts"];
        if plugin == Some("file") && !downloads {
            names.extend(["source", "sources"]);
        }
        let exprs: Vec<&Expression> = names
            .iter()
            .filter_map(|name| body.get_attribute(name))
            .flat_map(|attr| match &attr.value {
                Expression::Array(array) => array.iter().collect(),
                single => vec![single],
            })
            .collect();
        for expr in exprs {
            let Some(path) = folder_path(expr) else {
                continue;
            };
            let line = self.line_of(expr);
            if path.trim().is_empty() {
                self.push(line, FindingKind::MissingScript, "empty script path".into());
                continue;
            }
            if !self.dir.join(&path).exists() {
                self.push(
                    line,
                    FindingKind::MissingScript,
                    format!("\"{path}\" does not exist in the template folder"),
                );
            }
            self.state.scripts.insert(path);
        }
    }

    /// Reports `value` when `name` looks like a secret and `value` is a
    /// non-empty literal; returns whether it did.
    fn check_secret_name(&mut self, name: &str, value: &Expression, line: usize) -> bool {
        if !is_secret_name(name) || !is_nonempty_literal(value) {
            return false;
        }
        self.push(
            line,
            FindingKind::SecretLiteral,
            format!("\"{name}\" is set to a literal; pass it with env() or a variable"),
        );
        true
    }

    /// Visits `value` of a name/value pair after checking the name, without
    /// reporting its content again when the name was already reported.
    fn visit_named_value(&mut self, name: &str, value: &Expression, line: usize) {
        let flagged = self.check_secret_name(name, value, line);
        let outer = self.in_reported_value;
        self.in_reported_value |= flagged;
        self.visit_expr(value);
        self.in_reported_value = outer;
    }

    /// Reports a string whose content looks like a secret.
    fn check_secret_value(&mut self, text: &str, node: &impl Span) {
        if self.in_reported_value {
            return;
        }
        if let Some(what) = secret_pattern(text) {
            let line = self.line_of(node);
            self.push(
                line,
                FindingKind::SecretLiteral,
                format!("literal string looks like {what}"),
            );
        }
    }
}

impl Visit for Scanner<'_> {
    fn visit_block(&mut self, block: &Block) {
        let outer_line = self.line;
        self.line = self.line_of(block);
        let label = block.labels.first().map(|l| l.as_str().to_owned());
        self.record_block(block, label.as_deref());
        self.blocks.push((block.ident.as_str().to_owned(), label));
        visit::visit_block(self, block);
        self.blocks.pop();
        self.line = outer_line;
    }

    fn visit_attr(&mut self, attr: &Attribute) {
        let outer_line = self.line;
        self.line = self.line_of(attr);
        let name = attr.key.as_str();
        // In `variable "client_secret" { default = "..." }` the secret-looking
        // name is the block label.
        let secret_name = match self.enclosing_variable() {
            Some(variable) if name == "default" && self.blocks.len() == 1 => variable.to_owned(),
            _ => name.to_owned(),
        };
        self.visit_named_value(&secret_name, &attr.value, self.line);
        self.line = outer_line;
    }

    fn visit_object_item(&mut self, key: &ObjectKey, value: &ObjectValue) {
        self.visit_object_key(key);
        match object_key_name(key) {
            Some(name) => {
                let line = self.line_of(key);
                self.visit_named_value(&name, value.expr(), line);
            }
            None => self.visit_object_value(value),
        }
    }

    fn visit_traversal(&mut self, traversal: &Traversal) {
        if let Some(name) = variable_reference(traversal) {
            let line = self.line_of(traversal);
            let self_reference = self.enclosing_variable() == Some(name.as_str());
            let at = Location {
                file: self.file.to_owned(),
                line,
            };
            self.state.uses.push(VarUse {
                name,
                at,
                self_reference,
            });
        }
        visit::visit_traversal(self, traversal);
    }

    fn visit_string(&mut self, string: &Decorated<String>) {
        self.check_secret_value(string.value(), string);
    }

    fn visit_literal(&mut self, literal: &Spanned<String>) {
        self.check_secret_value(literal.value(), literal);
    }
}

/// The name of an object key written as an identifier or a plain string.
fn object_key_name(key: &ObjectKey) -> Option<String> {
    match key {
        ObjectKey::Ident(ident) => Some(ident.as_str().to_owned()),
        ObjectKey::Expression(expr) => expr.as_str().map(str::to_owned),
    }
}

/// `X` for `var.X` and `var["X"]`.
fn variable_reference(traversal: &Traversal) -> Option<String> {
    let Expression::Variable(root) = &traversal.expr else {
        return None;
    };
    if root.as_str() != "var" {
        return None;
    }
    match traversal.operators.first().map(|op| op.value()) {
        Some(TraversalOperator::GetAttr(name)) => Some(name.as_str().to_owned()),
        Some(TraversalOperator::Index(index)) => index.as_str().map(str::to_owned),
        _ => None,
    }
}

/// The path, relative to the template folder, that a string expression
/// names without needing evaluation: a literal, or a literal that follows a
/// leading `${path.root}`. Backslashes are read as separators.
fn folder_path(expr: &Expression) -> Option<String> {
    let raw = match expr {
        Expression::String(s) => s.value().clone(),
        Expression::StringTemplate(template) => {
            let mut elements = template.iter().peekable();
            let rooted = elements.peek().is_some_and(|e| is_path_root(e));
            if rooted {
                elements.next();
            }
            let mut rest = String::new();
            for element in elements {
                rest.push_str(element.as_literal()?.value());
            }
            if rooted {
                let relative = rest.trim_start_matches(['/', '\\']);
                if relative.is_empty() {
                    return None;
                }
                relative.to_owned()
            } else {
                rest
            }
        }
        _ => return None,
    };
    Some(raw.replace('\\', "/"))
}

/// Whether a template element is exactly `${path.root}`.
fn is_path_root(element: &Element) -> bool {
    let Some(interpolation) = element.as_interpolation() else {
        return false;
    };
    let Expression::Traversal(traversal) = &interpolation.expr else {
        return false;
    };
    let root_is_path = matches!(&traversal.expr, Expression::Variable(v) if v.as_str() == "path");
    let operators: Vec<&TraversalOperator> =
        traversal.operators.iter().map(|o| o.value()).collect();
    root_is_path
        && matches!(operators.as_slice(), [TraversalOperator::GetAttr(attr)] if attr.as_str() == "root")
}

/// Whether `expr` is a non-empty string with no interpolation or directive.
fn is_nonempty_literal(expr: &Expression) -> bool {
    let all_literal = |elements: &mut dyn Iterator<Item = &Element>| {
        let mut text = String::new();
        for element in elements {
            match element.as_literal() {
                Some(literal) => text.push_str(literal.value()),
                None => return false,
            }
        }
        !text.trim().is_empty()
    };
    match expr {
        Expression::String(s) => !s.value().trim().is_empty(),
        Expression::StringTemplate(template) => all_literal(&mut template.iter()),
        Expression::HeredocTemplate(heredoc) => all_literal(&mut heredoc.template.iter()),
        _ => false,
    }
}

/// Words that make an attribute name look like it holds a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "sas",
    "credential",
    "credentials",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
];

/// Last words that make a secret-looking name describe something else
/// (`ssh_private_key_file`, `key_vault_name`, `token_timeout`).
const BENIGN_LAST_WORDS: &[&str] = &[
    "name",
    "names",
    "file",
    "files",
    "path",
    "paths",
    "id",
    "ids",
    "type",
    "size",
    "length",
    "algorithm",
    "version",
    "prefix",
    "suffix",
    "count",
    "timeout",
    "ttl",
    "duration",
    "expiry",
    "enabled",
    "url",
    "uri",
    "vault",
];

/// Whether an attribute or object key name looks like it holds a secret.
///
/// The name is split into lowercase words at `_`, `-`, `.` and camelCase
/// boundaries. A bare `key` is not a secret name (tag blocks use it for tag
/// names).
fn is_secret_name(name: &str) -> bool {
    let words = split_words(name);
    let Some(last) = words.last() else {
        return false;
    };
    if BENIGN_LAST_WORDS.contains(&last.as_str()) || words == ["key"] {
        return false;
    }
    words.concat().contains("connectionstring")
        || words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

fn split_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

/// What kind of secret `text` looks like, if any.
fn secret_pattern(text: &str) -> Option<&'static str> {
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
        return Some("a PEM private key");
    }
    for marker in ["AccountKey=", "SharedAccessKey=", "SharedAccessSignature="] {
        if value_after(text, marker, is_base64_char) >= 20 {
            return Some("an Azure account or access key");
        }
    }
    if ["?sig=", "&sig="]
        .iter()
        .any(|marker| value_after(text, marker, |c| is_base64_char(c) || c == '%') >= 20)
    {
        return Some("a SAS token signature");
    }
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"] {
        if value_after(text, prefix, |c| c.is_ascii_alphanumeric() || c == '_') >= 20 {
            return Some("a GitHub token");
        }
    }
    if text
        .match_indices("AKIA")
        .any(|(i, _)| text[i + 4..].chars().take_while(is_aws_key_char).count() >= 16)
    {
        return Some("an AWS access key id");
    }
    if has_base64_blob(text) {
        return Some("a long base64-encoded secret");
    }
    None
}

fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='
}

fn is_aws_key_char(c: &char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// Length of the longest run of `allowed` characters right after any
/// occurrence of `marker` in `text`.
fn value_after(text: &str, marker: &str, allowed: impl Fn(char) -> bool) -> usize {
    text.match_indices(marker)
        .map(|(i, _)| {
            text[i + marker.len()..]
                .chars()
                .take_while(|&c| allowed(c))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Whether `text` holds a run of at least 40 base64 characters mixing upper
/// case, lower case and digits, with few slashes (so paths do not count;
/// lowercase hex checksums do not count either).
fn has_base64_blob(text: &str) -> bool {
    text.split(|c: char| !is_base64_char(c)).any(|run| {
        let run = run.trim_end_matches('=');
        run.len() >= 40
            && run.bytes().any(|b| b.is_ascii_uppercase())
            && run.bytes().any(|b| b.is_ascii_lowercase())
            && run.bytes().any(|b| b.is_ascii_digit())
            && run.bytes().filter(|&b| b == b'/').count() <= 3
            && !run.contains("//")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Writes `files` into a fresh folder and checks it.
    fn check(files: &[(&str, &str)]) -> (tempfile::TempDir, TemplateReport) {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, content) in files {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("create parent");
            }
            fs::write(path, content).expect("write file");
        }
        let report = check_folder(dir.path()).expect("check folder");
        (dir, report)
    }

    /// (file, line, kind) of each finding.
    fn summary(report: &TemplateReport) -> Vec<(&str, usize, FindingKind)> {
        report
            .findings
            .iter()
            .map(|f| (f.file.as_str(), f.line, f.kind))
            .collect()
    }

    const BUILD: &str = "source \"null\" \"x\" {\n  communicator = \"none\"\n}\n\nbuild {\n  sources = [\"source.null.x\"]\n}\n";

    #[test]
    fn clean_folder_has_no_findings() {
        let vars = "variable \"name\" {\n  type    = string\n  default = \"img\"\n}\n";
        let build = "build {\n  name    = var.name\n  sources = [\"source.null.x\"]\n}\n";
        let (_dir, report) = check(&[
            ("variables.pkr.hcl", vars),
            (
                "source.pkr.hcl",
                "source \"null\" \"x\" {\n  communicator = \"none\"\n}\n",
            ),
            ("build.pkr.hcl", build),
            ("values.auto.pkrvars.hcl", "name = \"other\"\n"),
        ]);
        assert_eq!(report.findings, vec![]);
        assert_eq!(report.variables, vec!["name"]);
        assert!(!report.has_errors());
        assert!(!report.requires_plugins);
    }

    #[test]
    fn parse_error_reports_file_and_line() {
        let broken = "variable \"a\" {\n  default = \"x\"\n}\n\nlocals {\n  b = [1, 2\n}\n";
        let (_dir, report) = check(&[("a.pkr.hcl", broken), ("b.pkr.hcl", BUILD)]);
        // Packer 1.6.6 reports this one on line 7 too ("Missing item separator").
        assert_eq!(
            summary(&report),
            vec![("a.pkr.hcl", 7, FindingKind::ParseError)]
        );
        assert!(report.findings[0].message.contains("expected `]`"));
        assert!(report.has_errors());
    }

    #[test]
    fn brackets_in_strings_interpolations_heredocs_and_comments_are_not_counted() {
        let valid = r#"locals {
  # a comment with ( and [
  a = "${replace(var.x, "(", "")}" // and a ] here
  b = "$${not.an.interpolation(" /* { */
  c = "%{ if var.y }[yes]%{ endif }"
  d = <<-EOT
    unbalanced ( [ { and ${var.z} inside a heredoc
    EOT
  e = [for k, v in { x = "}" } : (v)]
  f = 1 << 2 == 4
}
"#;
        assert_eq!(check_brackets(valid), Ok(()));
    }

    #[test]
    fn unbalanced_brackets_are_reported_with_their_line_before_parsing() {
        let cases = [
            ("a = [1, 2\n", 1, "`[` (column 5) is never closed"),
            (
                "a = (1]\n",
                1,
                "expected `)` to close the `(` of line 1 column 5, found `]`",
            ),
            ("a = 1\n}\n", 2, "`}` closes nothing"),
            (
                "a = \"x\n",
                1,
                "the string opened at column 5 is never closed",
            ),
            (
                "a = \"${b\"\n",
                1,
                "the string opened at column 9 is never closed",
            ),
        ];
        for (text, line, message) in cases {
            let found = check_brackets(text).expect_err(text);
            assert_eq!(found.line, line, "{text}");
            assert!(
                found.message.starts_with(message),
                "{text}: {}",
                found.message
            );
        }
        let deep = format!("a = {}1{}\n", "(".repeat(40), ")".repeat(40));
        assert!(
            check_brackets(&deep)
                .expect_err("too deep")
                .message
                .contains("deeper than 32")
        );
    }

    #[test]
    fn a_file_the_parser_backtracks_on_is_refused_at_once() {
        // Found by the `template` fuzz target: a dozen unclosed `[` and `(`
        // in a long expression made the parser take half a second, doubling
        // with each more; it is refused by the scan without parsing.
        let slow = include_str!("../tests/fixtures/template/unclosed-brackets.pkr.hcl");
        let (_dir, report) = check(&[("slow.pkr.hcl", slow)]);
        assert_eq!(
            summary(&report),
            vec![("slow.pkr.hcl", 1, FindingKind::ParseError)]
        );
        assert!(
            report.findings[0].message.contains("is never closed"),
            "{:?}",
            report.findings
        );
    }

    #[test]
    fn parse_error_line_is_exact_for_a_bad_token() {
        let broken = "locals {\n  a = 1\n  b = = 2\n}\n";
        let (_dir, report) = check(&[("a.pkr.hcl", broken)]);
        assert_eq!(
            summary(&report),
            vec![("a.pkr.hcl", 3, FindingKind::ParseError)]
        );
    }

    #[test]
    fn undeclared_variable_in_string_template_and_function_args() {
        let build = "build {\n  name = \"img-${var.missing_one}\"\n  sources = [\"source.null.x\"]\n\n  provisioner \"shell-local\" {\n    inline = [upper(var.missing_two), var[\"missing_three\"]]\n  }\n}\n";
        let (_dir, report) = check(&[
            ("build.pkr.hcl", build),
            (
                "source.pkr.hcl",
                "source \"null\" \"x\" {\n  communicator = \"none\"\n}\n",
            ),
        ]);
        assert_eq!(
            summary(&report),
            vec![
                ("build.pkr.hcl", 2, FindingKind::UndeclaredVariable),
                ("build.pkr.hcl", 6, FindingKind::UndeclaredVariable),
                ("build.pkr.hcl", 6, FindingKind::UndeclaredVariable),
            ]
        );
        assert!(report.findings[0].message.contains("missing_one"));
    }

    #[test]
    fn variable_used_in_heredoc_and_conditional_counts_as_used() {
        let vars =
            "variable \"a\" {\n  default = \"\"\n}\n\nvariable \"b\" {\n  default = \"\"\n}\n";
        let locals = "locals {\n  x = var.a != \"\" ? var.a : \"manual\"\n  y = <<EOT\nhello ${var.b}\nEOT\n}\n";
        let (_dir, report) = check(&[
            ("vars.pkr.hcl", vars),
            ("locals.pkr.hcl", locals),
            ("build.pkr.hcl", BUILD),
        ]);
        assert_eq!(report.findings, vec![]);
    }

    #[test]
    fn unused_variable_is_a_warning_at_its_declaration() {
        let vars = "variable \"used\" {\n  default = \"a\"\n}\n\nvariable \"unused\" {\n  default = \"b\"\n\n  validation {\n    condition     = length(var.unused) > 0\n    error_message = \"The unused value must be set.\"\n  }\n}\n";
        let build = "build {\n  name    = var.used\n  sources = [\"source.null.x\"]\n}\n";
        let (_dir, report) = check(&[("vars.pkr.hcl", vars), ("build.pkr.hcl", build)]);
        assert_eq!(
            summary(&report),
            vec![("vars.pkr.hcl", 5, FindingKind::UnusedVariable)]
        );
        assert!(!report.has_errors());
        assert!(!FindingKind::UnusedVariable.is_error());
        assert_eq!(report.variables, vec!["unused", "used"]);
    }

    #[test]
    fn legacy_variables_block_declares_variables() {
        let vars = "variables {\n  region = \"westeurope\"\n}\n";
        let build = "build {\n  name    = var.region\n  sources = [\"source.null.x\"]\n}\n";
        let (_dir, report) = check(&[("vars.pkr.hcl", vars), ("build.pkr.hcl", build)]);
        assert_eq!(report.findings, vec![]);
        assert_eq!(report.variables, vec!["region"]);
    }

    #[test]
    fn missing_scripts_and_file_sources() {
        let build = r#"build {
  sources = ["source.null.x"]

  provisioner "shell" {
    script = "scripts/present.sh"
  }

  provisioner "powershell" {
    scripts = [
      "scripts/present.sh",
      "scripts/absent.ps1",
    ]
  }

  provisioner "file" {
    source      = "files/absent.txt"
    destination = "/opt/absent.txt"
  }

  provisioner "file" {
    direction   = "download"
    source      = "/var/log/remote.log"
    destination = "remote.log"
  }

  provisioner "shell" {
    script = "${path.root}/scripts/rooted-absent.sh"
  }

  provisioner "shell" {
    script = "${var.dir}/ignored.sh"
  }

  post-processor "shell-local" {
    script = "scripts\\present.sh"
  }
}
"#;
        let vars = "variable \"dir\" {\n  default = \"x\"\n}\n";
        let (_dir, report) = check(&[
            ("build.pkr.hcl", build),
            ("vars.pkr.hcl", vars),
            ("scripts/present.sh", "#!/bin/sh\n"),
        ]);
        assert_eq!(
            summary(&report),
            vec![
                ("build.pkr.hcl", 11, FindingKind::MissingScript),
                ("build.pkr.hcl", 16, FindingKind::MissingScript),
                ("build.pkr.hcl", 27, FindingKind::MissingScript),
            ]
        );
        assert_eq!(
            report.scripts,
            vec![
                "files/absent.txt",
                "scripts/absent.ps1",
                "scripts/present.sh",
                "scripts/rooted-absent.sh",
            ]
        );
    }

    #[test]
    fn secret_named_attributes_with_literals_are_flagged() {
        let source = r#"source "azure-arm" "win" {
  client_id       = "00000000-0000-0000-0000-000000000000"
  client_secret   = "s3cr3t-value"
  winrm_password  = var.winrm_password
  ssh_private_key_file = "keys/id_rsa"
  key_vault_name  = "kv-images"
  azure_tags = {
    sasToken = "abc123"
    owner    = "team"
  }
}

variable "winrm_password" {
  type      = string
  sensitive = true
  default   = "${env("WINRM_PASSWORD")}"
}

variable "client_secret" {
  default = "${env("ARM_CLIENT_SECRET")}"
}

variable "admin_password" {
  default = "Passw0rd!"
}

locals {
  storage_token = ""
  api_key       = <<EOT
literal-key-material
EOT
}
"#;
        let (_dir, report) = check(&[
            ("source.pkr.hcl", source),
            ("build.pkr.hcl", BUILD),
            ("secret.auto.pkrvars.hcl", "admin_password = \"hunter2\"\n"),
        ]);
        let secrets: Vec<_> = summary(&report)
            .into_iter()
            .filter(|(_, _, kind)| *kind == FindingKind::SecretLiteral)
            .collect();
        assert_eq!(
            secrets,
            vec![
                ("secret.auto.pkrvars.hcl", 1, FindingKind::SecretLiteral),
                ("source.pkr.hcl", 3, FindingKind::SecretLiteral),
                ("source.pkr.hcl", 8, FindingKind::SecretLiteral),
                ("source.pkr.hcl", 24, FindingKind::SecretLiteral),
                ("source.pkr.hcl", 29, FindingKind::SecretLiteral),
            ],
            "{report:#?}"
        );
    }

    #[test]
    fn env_default_for_a_secret_is_fine() {
        let vars = "variable \"client_secret\" {\n  type      = string\n  sensitive = true\n  default   = \"${env(\"ARM_CLIENT_SECRET\")}\"\n}\n";
        let build = "build {\n  name    = var.client_secret\n  sources = [\"source.null.x\"]\n}\n";
        let (_dir, report) = check(&[("vars.pkr.hcl", vars), ("build.pkr.hcl", build)]);
        assert_eq!(report.findings, vec![]);
    }

    #[test]
    fn secret_looking_values_are_flagged_anywhere() {
        let blob = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUpLTE1OT1A=";
        let locals = format!(
            r#"locals {{
  conn  = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0;EndpointSuffix=core.windows.net"
  gh    = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
  blob  = "{blob}"
  url   = "https://acct.blob.core.windows.net/c/f.vhd?sv=2020-08-04&sig=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789%2B%3D"
  pem   = <<EOT
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEA
-----END RSA PRIVATE KEY-----
EOT
  aws   = ["AKIAABCDEFGHIJKLMNOP"]
  fine1 = "sha256:0f12fa55b0488b417af5b5df13c275cef9ad36d83c40bd7bac173fb6a6e59a16"
  fine2 = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/images/img"
  fine3 = "C:/Windows/System32/WindowsPowerShell/v1.0/powershell.exe"
  fine4 = "AccountKey=${{var.key}}"
}}
variable "key" {{
  default = ""
}}
"#
        );
        let (_dir, report) = check(&[("locals.pkr.hcl", &locals), ("build.pkr.hcl", BUILD)]);
        let lines: Vec<usize> = report
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::SecretLiteral)
            .map(|f| f.line)
            .collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 7, 11], "{report:#?}");
    }

    #[test]
    fn unpinned_plugins_are_flagged() {
        let packer = r#"packer {
  required_version = ">= 1.7.0"
  required_plugins {
    azure = {
      source  = "github.com/hashicorp/azure"
      version = "~> 2"
    }
    windows-update = {
      source = "github.com/rgl/windows-update"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = ""
    }
    bad = "github.com/x/y"
  }
}
"#;
        let (_dir, report) = check(&[("packer.pkr.hcl", packer), ("build.pkr.hcl", BUILD)]);
        assert!(report.requires_plugins);
        assert_eq!(
            summary(&report),
            vec![
                ("packer.pkr.hcl", 8, FindingKind::UnpinnedPlugin),
                ("packer.pkr.hcl", 11, FindingKind::UnpinnedPlugin),
                ("packer.pkr.hcl", 15, FindingKind::UnpinnedPlugin),
            ]
        );
        assert!(report.findings[0].message.contains("windows-update"));
    }

    #[test]
    fn missing_build_block_is_reported_on_the_first_template() {
        let (_dir, report) = check(&[
            (
                "b.pkr.hcl",
                "source \"null\" \"x\" {\n  communicator = \"none\"\n}\n",
            ),
            ("a.pkr.hcl", "locals {\n  a = 1\n}\n"),
        ]);
        assert_eq!(
            summary(&report),
            vec![("a.pkr.hcl", 1, FindingKind::NoBuildBlock)]
        );
    }

    #[test]
    fn empty_folder_has_only_no_build_block() {
        let (_dir, report) = check(&[("README.md", "not a template")]);
        assert_eq!(summary(&report), vec![("", 1, FindingKind::NoBuildBlock)]);
    }

    #[test]
    fn missing_folder_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope");
        let err = check_folder(&missing).expect_err("missing folder");
        assert!(matches!(err, TemplateError::ReadFolder { .. }));
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn findings_are_sorted_by_file_then_line() {
        let (_dir, report) = check(&[
            ("z.pkr.hcl", "locals {\n  a = var.one\n  b = var.two\n}\n"),
            ("a.pkr.hcl", "variable \"x\" {\n  default = 1\n}\n"),
        ]);
        assert_eq!(
            summary(&report),
            vec![
                ("a.pkr.hcl", 1, FindingKind::UnusedVariable),
                ("a.pkr.hcl", 1, FindingKind::NoBuildBlock),
                ("z.pkr.hcl", 2, FindingKind::UndeclaredVariable),
                ("z.pkr.hcl", 3, FindingKind::UndeclaredVariable),
            ]
        );
        assert_eq!(
            report.findings[2].to_string(),
            "z.pkr.hcl:2: error: undeclared-variable: var.one is used but no variable \"one\" is declared"
        );
    }

    #[test]
    fn parse_error_suppresses_cross_file_checks() {
        let (_dir, report) = check(&[
            ("a.pkr.hcl", "locals {\n  a = var.declared_elsewhere\n}\n"),
            ("b.pkr.hcl", "variable \"declared_elsewhere\" {\n"),
        ]);
        assert_eq!(
            summary(&report),
            vec![("b.pkr.hcl", 1, FindingKind::ParseError)]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\n\n\n".to_vec(),
            b"{{{{{{{{".to_vec(),
            b"}}}}".to_vec(),
            b"a = \"${".to_vec(),
            b"a = <<EOT\nunterminated".to_vec(),
            b"a = \"\xff\xfe\"".to_vec(),
            vec![0u8; 64],
            "locals { a = [".repeat(500).into_bytes(),
            format!("a = {}1{}", "(".repeat(5000), ")".repeat(5000)).into_bytes(),
            format!("a = {}", "[".repeat(100_000)).into_bytes(),
            format!("{}\n", "b {\n".repeat(2000)).into_bytes(),
            format!("a = \"{}\"", "${\"".repeat(3000)).into_bytes(),
            format!("a = {}", "1 + ".repeat(10_000)).into_bytes(),
            format!("a = {}1", "!".repeat(10_000)).into_bytes(),
        ];
        // Deterministic pseudo-random bytes, biased towards HCL punctuation.
        let alphabet = b"{}[]()\"$%~<>=!?:,.\n\\ abvar.xEOT01#/*";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200 {
            let mut bytes = Vec::new();
            for _ in 0..256 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pick = usize::try_from(seed % 64).expect("small");
                bytes.push(alphabet.get(pick).copied().unwrap_or((seed >> 8) as u8));
            }
            inputs.push(bytes);
        }
        let dir = tempfile::tempdir().expect("temp dir");
        for (i, input) in inputs.iter().enumerate() {
            fs::write(dir.path().join("fuzz.pkr.hcl"), input).expect("write");
            fs::write(dir.path().join("fuzz.auto.pkrvars.hcl"), input).expect("write");
            let report = check_folder(dir.path()).expect("readable folder");
            for finding in &report.findings {
                assert!(finding.line >= 1, "input {i}: {finding:?}");
            }
        }
    }

    #[test]
    fn binary_file_is_a_parse_error_with_its_line() {
        let mut bytes = b"locals {\n  a = 1\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0x00, 0xc3]);
        let (dir, _) = check(&[("build.pkr.hcl", BUILD)]);
        fs::write(dir.path().join("bin.pkr.hcl"), &bytes).expect("write");
        let report = check_folder(dir.path()).expect("check");
        assert_eq!(
            summary(&report),
            vec![("bin.pkr.hcl", 3, FindingKind::ParseError)]
        );
        assert_eq!(report.findings[0].message, "file is not valid UTF-8");
    }

    #[test]
    fn example_image_template_is_clean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/example");
        let report = check_folder(&dir).expect("example folder");
        assert_eq!(report.findings, vec![]);
        assert_eq!(
            report.variables,
            vec![
                "baseline_version",
                "common_tags",
                "evidence_hotfixes",
                "evidence_installation_type",
                "evidence_os_build",
                "evidence_path",
                "evidence_product_name",
                "evidence_reboot_pending",
                "factory_run_id",
                "gallery_image_version",
                "image_name",
                "run_id",
                "standin_omit",
            ]
        );
        assert_eq!(
            report.scripts,
            vec![
                "scripts/provision.sh",
                "scripts/smoke.sh",
                "scripts/write-evidence.sh"
            ]
        );
        assert!(!report.requires_plugins);
    }

    #[test]
    fn secret_names_are_split_into_words() {
        for name in [
            "client_secret",
            "clientSecret",
            "winrm_password",
            "sas_token",
            "storage_account_key",
            "connection_string",
            "ConnectionString",
            "github-token",
            "AccountKey",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "key",
            "key_vault_name",
            "ssh_private_key_file",
            "token_timeout",
            "monkey",
            "keyboard_layout",
            "image_name",
            "sas_url",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
