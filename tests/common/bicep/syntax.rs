//! A Bicep file as the published grammar (`tree-sitter-bicep`) parses it:
//! where the grammar fails, the declarations the type check needs (target
//! scope, parameters, variables, modules, resources with their nested
//! children), and the small readers of its nodes (text, line, literal
//! strings).

use std::collections::HashMap;

use tree_sitter::{Node, Parser, Tree};

/// A parsed file.
pub struct Parsed {
    pub text: String,
    pub tree: Tree,
}

/// Parses `text` with the published Bicep grammar.
pub fn parse(text: String) -> Parsed {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .expect("the Bicep grammar loads into this tree-sitter runtime");
    let tree = parser
        .parse(&text, None)
        .expect("tree-sitter parses without a timeout or cancellation");
    Parsed { text, tree }
}

impl Parsed {
    /// The first place the grammar could not parse, or misread: its line
    /// (1-based) and what happened.
    pub fn first_failure(&self) -> Option<(usize, &'static str)> {
        let mut cursor = self.tree.root_node().walk();
        let mut stack = vec![self.tree.root_node()];
        while let Some(node) = stack.pop() {
            if node.is_error() || node.is_missing() {
                return Some((
                    line(node),
                    "Bicep the published grammar does not know (extension, spread, typed variables, resourceInput<>?)",
                ));
            }
            if node.kind() == "array"
                && let Some(at) = juxtaposed_items(node)
            {
                return Some((
                    at,
                    "two array items on one line without a comma: the grammar splits a call that opens an array (`[ f().id ]`) in two",
                ));
            }
            let mut children: Vec<Node> = node.children(&mut cursor).collect();
            children.reverse();
            stack.extend(children);
        }
        None
    }
}

/// The line of two items of an array on one line with no comma between
/// them: never valid Bicep, so the grammar read something else (it parses
/// `[ f().id ]` as the items `f` and `().id`).
fn juxtaposed_items(array: Node<'_>) -> Option<usize> {
    let mut cursor = array.walk();
    let mut previous: Option<Node<'_>> = None;
    for child in array.children(&mut cursor) {
        if child.kind() == "," {
            previous = None;
        } else if child.is_named() && !matches!(child.kind(), "comment" | "diagnostic_comment") {
            if let Some(before) = previous
                && before.end_position().row == child.start_position().row
            {
                return Some(line(child));
            }
            previous = Some(child);
        }
    }
    None
}

/// The kind of a value, as far as it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Int,
    Bool,
    Object,
    Array,
}

impl Kind {
    /// `a string`, `an int`, ...
    pub fn with_article(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Int => "an int",
            Kind::Bool => "a bool",
            Kind::Object => "an object",
            Kind::Array => "an array",
        }
    }
}

/// The top-level declarations of a file.
pub struct Declarations<'t> {
    /// `targetScope`, when the file sets it (Bicep's default: resourceGroup).
    pub target_scope: Option<String>,
    /// Parameters and their declared kind (`None` for a user-defined type).
    pub params: HashMap<&'t str, Option<Kind>>,
    pub vars: HashMap<&'t str, Node<'t>>,
    /// Module symbols (their outputs are known only after deployment).
    pub modules: Vec<&'t str>,
    /// Top-level `resource` declarations (children nested in them are found
    /// through [`nested_resources`]).
    pub resources: Vec<Node<'t>>,
}

/// Reads the top-level declarations of a parsed file.
pub fn declarations<'t>(parsed: &'t Parsed) -> Declarations<'t> {
    let source = parsed.text.as_str();
    let root = parsed.tree.root_node();
    let mut found = Declarations {
        target_scope: None,
        params: HashMap::new(),
        vars: HashMap::new(),
        modules: Vec::new(),
        resources: Vec::new(),
    };
    for node in named_children(root) {
        match node.kind() {
            "target_scope_assignment" => {
                found.target_scope = named_children(node)
                    .find(|c| c.kind() == "string")
                    .and_then(|s| literal_string(s, source));
            }
            "parameter_declaration" => {
                let mut parts = named_children(node);
                let (Some(name), Some(ty)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let kind = match text(ty, source) {
                    "string" => Some(Kind::String),
                    "int" => Some(Kind::Int),
                    "bool" => Some(Kind::Bool),
                    "object" => Some(Kind::Object),
                    "array" => Some(Kind::Array),
                    _ => None,
                };
                found.params.insert(text(name, source), kind);
            }
            "variable_declaration" => {
                let mut parts = named_children(node);
                if let (Some(name), Some(value)) = (parts.next(), parts.last()) {
                    found.vars.insert(text(name, source), value);
                }
            }
            "module_declaration" => {
                if let Some(name) = named_children(node).find(|c| c.kind() == "identifier") {
                    found.modules.push(text(name, source));
                }
            }
            "resource_declaration" => found.resources.push(node),
            _ => {}
        }
    }
    found
}

/// The parts of a `resource` declaration.
pub struct ResourceSyntax<'t> {
    pub node: Node<'t>,
    pub symbol: &'t str,
    /// The quoted type, `Type@api-version` (or one segment, nested); `None`
    /// when it is not a plain string.
    pub type_string: Option<String>,
    pub existing: bool,
    /// The body object, out of any loop (`[for ...]`) or condition (`if`).
    pub body: Option<Node<'t>>,
    /// Loop variables the body sees.
    pub loop_variables: Vec<&'t str>,
}

/// Reads a `resource_declaration` node.
pub fn resource<'t>(node: Node<'t>, source: &'t str) -> ResourceSyntax<'t> {
    let mut symbol = "";
    let mut type_string = None;
    let mut body = None;
    let mut loop_variables = Vec::new();
    let mut cursor = node.walk();
    let existing = node
        .children(&mut cursor)
        .any(|c| !c.is_named() && c.kind() == "existing");
    for child in named_children(node) {
        match child.kind() {
            "identifier" if symbol.is_empty() => symbol = text(child, source),
            "string" if type_string.is_none() => type_string = literal_string(child, source),
            "object" => body = Some(child),
            "if_statement" => body = named_children(child).find(|c| c.kind() == "object"),
            "for_statement" => {
                loop_variables = loop_variables_of(child, source);
                if let Some(loop_body) = child.child_by_field_name("body") {
                    match loop_body.kind() {
                        "object" => body = Some(loop_body),
                        "if_statement" => {
                            body = named_children(loop_body).find(|c| c.kind() == "object");
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    ResourceSyntax {
        node,
        symbol,
        type_string,
        existing,
        body,
        loop_variables,
    }
}

/// The variables a `for_statement` declares: `x` in `[for x in ...]`, `x`
/// and `i` in `[for (x, i) in ...]`.
pub fn loop_variables_of<'t>(for_statement: Node<'t>, source: &'t str) -> Vec<&'t str> {
    if let Some(single) = for_statement.child_by_field_name("initializer") {
        return vec![text(single, source)];
    }
    named_children(for_statement)
        .filter(|c| c.kind() == "for_loop_parameters")
        .flat_map(named_children)
        .map(|variable| text(variable, source))
        .collect()
}

/// The `resource` declarations nested directly in a resource's body.
pub fn nested_resources<'t>(body: Node<'t>) -> Vec<Node<'t>> {
    named_children(body)
        .filter(|c| c.kind() == "object_property")
        .filter_map(|property| {
            named_children(property).find(|c| c.kind() == "resource_declaration")
        })
        .collect()
}

/// The named children of a node, without comments.
pub fn named_children<'t>(node: Node<'t>) -> impl Iterator<Item = Node<'t>> {
    let mut cursor = node.walk();
    let children: Vec<Node<'t>> = node.named_children(&mut cursor).collect();
    children
        .into_iter()
        .filter(|c| !matches!(c.kind(), "comment" | "diagnostic_comment"))
}

/// The source text of a node.
pub fn text<'t>(node: Node<'_>, source: &'t str) -> &'t str {
    &source[node.byte_range()]
}

/// The 1-based line a node starts on.
pub fn line(node: Node<'_>) -> usize {
    node.start_position().row + 1
}

/// The value of a string without interpolation (escapes decoded); `None`
/// for an interpolated string.
pub fn literal_string(node: Node<'_>, source: &str) -> Option<String> {
    let raw = text(node, source);
    if let Some(inner) = raw.strip_prefix("'''") {
        // Multi-line: verbatim, without the line break that may follow the quotes.
        let inner = inner.strip_suffix("'''").unwrap_or(inner);
        let inner = inner
            .strip_prefix("\r\n")
            .or_else(|| inner.strip_prefix('\n'))
            .unwrap_or(inner);
        return Some(inner.to_string());
    }
    let mut value = String::new();
    for part in named_children(node) {
        match part.kind() {
            "string_content" => value.push_str(text(part, source)),
            "escape_sequence" => value.push_str(&unescape(text(part, source))),
            _ => return None,
        }
    }
    Some(value)
}

fn unescape(sequence: &str) -> String {
    match sequence {
        "\\n" => "\n".into(),
        "\\r" => "\r".into(),
        "\\t" => "\t".into(),
        "\\\\" => "\\".into(),
        "\\'" => "'".into(),
        "\\$" => "$".into(),
        other => other
            .strip_prefix("\\u{")
            .and_then(|hex| hex.strip_suffix('}'))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(char::from_u32)
            .map(String::from)
            .unwrap_or_else(|| other.to_string()),
    }
}
