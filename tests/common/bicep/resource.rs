//! The `resource` declarations of one file against Bicep's type data: the
//! type and api-version exist; the body fits the type; `existing` bodies
//! say only which resource (name, scope, parent); children, nested or with
//! `parent:`, are of their parent's type plus one segment and are named by
//! their own segment; `scope:` only where Bicep allows it; and the type can
//! be deployed at the file's target scope.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use tree_sitter::Node;

use super::check::{Finding, Stats, ValueChecker};
use super::syntax::{self, Declarations, ResourceSyntax, line, named_children};
use super::types::{
    LookupError, Node as TypeNode, Property, ResourceType, SCOPE_EXTENSION, SCOPE_MANAGEMENT_GROUP,
    SCOPE_RESOURCE_GROUP, SCOPE_SUBSCRIPTION, SCOPE_TENANT, TypeLibrary, scope_names,
};
use super::value::{Entry, Evaluator, Shape};

/// Properties of a resource body that are Bicep's, not the type data's.
const BICEP_PROPERTIES: &[&str] = &["parent", "scope", "dependsOn"];

/// One declaration with the type it resolves to.
struct Declared<'t> {
    syntax: ResourceSyntax<'t>,
    /// `a` for a top-level declaration, `a::b` for `b` nested in `a`.
    path: String,
    /// Index of the declaration it is nested in.
    nested_in: Option<usize>,
    /// `(Microsoft.X/y/z, api-version)`, or why not.
    resolved: Result<(String, String), String>,
    /// Loop variables its body sees (its own and its parents').
    loops: Vec<&'t str>,
}

/// Checks every resource of a parsed file that the grammar parsed whole.
pub fn check_file(
    library: &TypeLibrary,
    file: &str,
    folder: &Path,
    parsed: &syntax::Parsed,
    stats: &mut Stats,
    findings: &mut Vec<Finding>,
) {
    let source = parsed.text.as_str();
    let declarations = syntax::declarations(parsed);
    let mut declared = Vec::new();
    for node in &declarations.resources {
        collect(*node, source, None, &mut declared);
    }
    let symbols: HashSet<&str> = declared.iter().map(|d| d.syntax.symbol).collect();
    let by_path: HashMap<&str, usize> = declared
        .iter()
        .enumerate()
        .flat_map(|(index, d)| [(d.path.as_str(), index), (d.syntax.symbol, index)])
        .collect();
    let evaluator = Evaluator {
        source,
        declarations: &declarations,
        folder,
        resources: &symbols,
    };
    let file_scope = target_scope_bit(&declarations);
    for index in 0..declared.len() {
        let mut checker = ResourceCheck {
            library,
            declared: &declared,
            by_path: &by_path,
            index,
            file_scope,
            values: ValueChecker::new(file, format!("resource {}", declared[index].path)),
        };
        checker.run(&evaluator);
        stats.add(&checker.values.stats);
        findings.extend(checker.values.findings);
    }
}

/// Gathers a declaration and those nested in it.
fn collect<'t>(
    node: Node<'t>,
    source: &'t str,
    parent: Option<usize>,
    out: &mut Vec<Declared<'t>>,
) {
    let syntax = syntax::resource(node, source);
    let (path, resolved, mut loops) = match parent {
        None => {
            let resolved = match &syntax.type_string {
                None => Err("the type is not a plain string".to_string()),
                Some(t) => match t.split_once('@') {
                    Some((ty, version)) => Ok((ty.to_string(), version.to_string())),
                    None => Err(format!("'{t}' has no api-version (Type@api-version)")),
                },
            };
            (syntax.symbol.to_string(), resolved, Vec::new())
        }
        Some(p) => {
            let outer = &out[p];
            let resolved = match (&outer.resolved, &syntax.type_string) {
                (Err(_), _) => Err("its parent's type is not known".to_string()),
                (_, None) => Err("the type is not a plain string".to_string()),
                (Ok((parent_type, parent_version)), Some(t)) => {
                    let (segment, version) = match t.split_once('@') {
                        Some((segment, version)) => (segment, version.to_string()),
                        None => (t.as_str(), parent_version.clone()),
                    };
                    if segment.contains('/') {
                        Err(format!(
                            "'{t}': a nested resource names one type segment (and optionally @api-version), not a full type"
                        ))
                    } else {
                        Ok((format!("{parent_type}/{segment}"), version))
                    }
                }
            };
            (
                format!("{}::{}", outer.path, syntax.symbol),
                resolved,
                outer.loops.clone(),
            )
        }
    };
    loops.extend(syntax.loop_variables.iter().copied());
    let body = syntax.body;
    let index = out.len();
    out.push(Declared {
        syntax,
        path,
        nested_in: parent,
        resolved,
        loops,
    });
    if let Some(body) = body {
        for child in syntax::nested_resources(body) {
            collect(child, source, Some(index), out);
        }
    }
}

fn target_scope_bit(declarations: &Declarations<'_>) -> u32 {
    match declarations.target_scope.as_deref() {
        Some("subscription") => SCOPE_SUBSCRIPTION,
        Some("managementGroup") => SCOPE_MANAGEMENT_GROUP,
        Some("tenant") => SCOPE_TENANT,
        _ => SCOPE_RESOURCE_GROUP,
    }
}

/// The check of one declaration.
struct ResourceCheck<'a, 't> {
    library: &'a TypeLibrary,
    declared: &'a [Declared<'t>],
    by_path: &'a HashMap<&'a str, usize>,
    index: usize,
    file_scope: u32,
    values: ValueChecker<'a>,
}

impl<'t> ResourceCheck<'_, 't> {
    fn run(&mut self, evaluator: &Evaluator<'t, '_>) {
        let declared = &self.declared[self.index];
        let syntax = &declared.syntax;
        let type_line = named_children(syntax.node)
            .find(|c| c.kind() == "string")
            .map(line)
            .unwrap_or_else(|| line(syntax.node));
        self.values.stats.resources_declared += 1;
        let (full_type, version) = match &declared.resolved {
            Ok(resolved) => resolved.clone(),
            Err(why) => return self.values.report(type_line, "", format!("type: {why}")),
        };
        self.values.label = format!("resource {} ({full_type}@{version})", declared.path);
        let definition = match self.library.resource(&full_type, &version) {
            Ok(definition) => definition,
            Err(LookupError::UnknownType) => {
                return self.values.report(
                    type_line,
                    "",
                    format!(
                        "Bicep's type data has no resource type {full_type} (at any api-version)"
                    ),
                );
            }
            Err(LookupError::UnknownApiVersion(known)) => {
                return self.values.report(
                    type_line,
                    "",
                    format!(
                        "Bicep's type data has no api-version {version} of {full_type}; it has {}",
                        known.join(", ")
                    ),
                );
            }
        };
        let Some(body) = syntax.body else {
            return self.values.report(line(syntax.node), "", "no body object");
        };
        let value = evaluator.eval(body, &declared.loops);
        let Shape::Object(entries) = &value.shape else {
            return self
                .values
                .report(value.line, "", "the body is not an object");
        };
        self.values.stats.resources_checked += 1;
        let nested = declared.nested_in.is_some();
        let parent = entries.iter().find(|e| e.key.as_deref() == Some("parent"));
        if nested || parent.is_some() {
            self.values.stats.children += 1;
        }
        self.check_name(entries, &full_type, nested || parent.is_some());
        if let Some(parent) = parent {
            self.check_parent(parent, &full_type, nested);
        }
        let scope = entries.iter().find(|e| e.key.as_deref() == Some("scope"));
        self.check_scope(scope, &definition, &full_type, nested || parent.is_some());
        if entries
            .iter()
            .any(|e| e.key.as_deref() == Some("dependsOn"))
        {
            self.values.stats.properties += 1;
        }
        if syntax.existing {
            self.values.stats.existing += 1;
            self.check_existing(entries, &definition);
        } else {
            self.check_body(value.line, entries, &definition);
        }
    }

    /// A resource's own name: one segment for a child declared with its
    /// parent; `parent/child` segments for a child type declared alone.
    fn check_name(&mut self, entries: &[Entry], full_type: &str, has_parent: bool) {
        let Some(name) = entries.iter().find(|e| e.key.as_deref() == Some("name")) else {
            return;
        };
        let Shape::Str(literal) = &name.value.shape else {
            return;
        };
        let segments = full_type.split('/').count();
        let slashes = literal.matches('/').count();
        if has_parent && slashes > 0 {
            self.values.report(
                name.line,
                "name",
                format!("'{literal}': a child declared with its parent is named by its own segment, without '/'"),
            );
        } else if !has_parent && segments > 2 && slashes != segments - 2 {
            self.values.report(
                name.line,
                "name",
                format!(
                    "'{literal}': a {full_type} declared without `parent` is named by {} segments joined by '/'",
                    segments - 1
                ),
            );
        }
    }

    /// `parent:` names a resource of this file whose type is this one's
    /// without its last segment.
    fn check_parent(&mut self, parent: &Entry, full_type: &str, nested: bool) {
        self.values.stats.properties += 1;
        if nested {
            return self.values.report(
                parent.line,
                "parent",
                "a nested resource's parent is the one it is declared in; drop `parent`",
            );
        }
        let Some((expected, _)) = full_type.rsplit_once('/').filter(|(p, _)| p.contains('/'))
        else {
            return self.values.report(
                parent.line,
                "parent",
                format!("{full_type} is not a child type, so it takes no parent"),
            );
        };
        let Shape::Resource(symbol) = &parent.value.shape else {
            return self.values.report(
                parent.line,
                "parent",
                "must name a resource declared in this file (its symbol)",
            );
        };
        let Some(&index) = self.by_path.get(symbol.as_str()) else {
            return self.values.report(
                parent.line,
                "parent",
                format!("`{symbol}` is not a resource declared in this file"),
            );
        };
        if let Ok((parent_type, _)) = &self.declared[index].resolved
            && !parent_type.eq_ignore_ascii_case(expected)
        {
            self.values.report(
                parent.line,
                "parent",
                format!(
                    "`{symbol}` is a {parent_type}; the parent of a {full_type} is a {expected}"
                ),
            );
        }
    }

    /// `scope:` is allowed on existing resources, extension resources (role
    /// assignments, locks) and tenant resources; without it a resource is
    /// deployed at the file's target scope, which its type must allow (a
    /// child's scope is its parent's, checked there).
    fn check_scope(
        &mut self,
        scope: Option<&Entry>,
        definition: &ResourceType<'_>,
        full_type: &str,
        child: bool,
    ) {
        let existing = self.declared[self.index].syntax.existing;
        let valid = definition.readable | definition.writable;
        if let Some(scope) = scope {
            self.values.stats.properties += 1;
            if !existing && valid & (SCOPE_EXTENSION | SCOPE_TENANT) == 0 {
                self.values.report(
                    scope.line,
                    "scope",
                    format!(
                        "{full_type} is deployed at the file's own scope: `scope` is for existing, extension and tenant resources (deploy elsewhere through a module)"
                    ),
                );
            }
            return;
        }
        if child {
            return;
        }
        let allowed = if existing { valid } else { definition.writable };
        if allowed & self.file_scope == 0 {
            let message = if !existing && definition.writable == 0 {
                format!("{full_type} cannot be deployed, only read: declare it `existing`")
            } else {
                format!(
                    "{full_type} cannot be {} at {} scope (the type data allows: {})",
                    if existing { "read" } else { "deployed" },
                    scope_names(self.file_scope),
                    scope_names(allowed)
                )
            };
            let at = line(self.declared[self.index].syntax.node);
            self.values.report(at, "", message);
        }
    }

    /// An existing resource's body says which resource it is, nothing more.
    fn check_existing(&mut self, entries: &[Entry], definition: &ResourceType<'_>) {
        for entry in entries {
            match entry.key.as_deref() {
                Some("name") => {
                    self.values.stats.properties += 1;
                    self.check_existing_name(entry, definition);
                }
                Some(key) if BICEP_PROPERTIES.contains(&key) => {}
                key => self.values.report(
                    entry.line,
                    key.unwrap_or("(computed name)"),
                    "an existing resource's body takes only name, scope and parent (and dependsOn); the rest is read from Azure",
                ),
            }
        }
        if !entries.iter().any(|e| e.key.as_deref() == Some("name")) {
            self.values.report(
                line(self.declared[self.index].syntax.node),
                "",
                "missing required property `name`",
            );
        }
    }

    /// The body against the type's body (an object, or objects told apart
    /// by a discriminator such as `name` for `Microsoft.Web/sites/config`).
    fn check_body(&mut self, line: usize, entries: &[Entry], definition: &ResourceType<'_>) {
        let body = definition.body;
        match body.node() {
            TypeNode::ObjectType {
                properties,
                additional,
                ..
            } => {
                let properties: BTreeMap<&str, &Property> =
                    properties.iter().map(|(k, p)| (k.as_str(), p)).collect();
                let additional = additional.as_ref().map(|a| body.follow(a));
                self.values.check_object(
                    line,
                    entries,
                    &properties,
                    additional,
                    body,
                    "",
                    BICEP_PROPERTIES,
                );
            }
            TypeNode::DiscriminatedObjectType { .. } => {
                self.values
                    .check_discriminated(line, entries, body, "", BICEP_PROPERTIES);
            }
            _ => panic!(
                "{}: a resource body that is not an object type",
                definition.source
            ),
        }
    }

    /// An existing resource's name against the body's `name` (for a body
    /// told apart by its name, one of the names the type data knows).
    fn check_existing_name(&mut self, name: &Entry, definition: &ResourceType<'_>) {
        let body = definition.body;
        let object = match body.node() {
            TypeNode::DiscriminatedObjectType {
                discriminator,
                elements,
                base,
                ..
            } => {
                if discriminator == "name" {
                    match &name.value.shape {
                        Shape::Str(chosen) if !elements.contains_key(chosen) => {
                            let known: Vec<&str> = elements.keys().map(String::as_str).collect();
                            self.values.report(
                                name.line,
                                "name",
                                format!("'{chosen}' is not one of '{}'", known.join("', '")),
                            );
                        }
                        Shape::Str(_) => self.values.stats.values += 1,
                        _ => self.values.stats.skip(super::value::Skip::Discriminator),
                    }
                    return;
                }
                if let Some(shared) = base.get("name") {
                    return self
                        .values
                        .check(&name.value, body.follow(&shared.ty), "name");
                }
                match elements.values().next() {
                    Some(first) => body.follow(first),
                    None => return,
                }
            }
            _ => body,
        };
        if let TypeNode::ObjectType { properties, .. } = object.node()
            && let Some(property) = properties.get("name")
        {
            self.values
                .check(&name.value, object.follow(&property.ty), "name");
        }
    }
}
