//! A value against a type of Bicep's type data, as Bicep's own type
//! checker does it: property names at every depth (objects, arrays of
//! objects, objects told apart by a discriminator), string literals and
//! enums, integer ranges, lengths, required and read-only properties.
//! Property names are compared as Bicep compares them, case and all.
//! What is not known before deployment is counted, by why, not guessed.

use std::collections::BTreeMap;

use super::syntax::Kind;
use super::types::{Node, Property, Type};
use super::value::{Entry, Shape, Skip, Value};

/// One thing Bicep's type data says is wrong, where it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The file, as the report names it.
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// What was checked and what was not.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// `resource` declarations found (nested ones too).
    pub resources_declared: usize,
    /// Declarations whose type and api-version were found and whose body was checked.
    pub resources_checked: usize,
    pub existing: usize,
    /// Child resources: nested declarations and declarations with `parent:`.
    pub children: usize,
    /// Property names checked against the type data.
    pub properties: usize,
    /// Values checked against their type (literals, and objects and arrays
    /// known item by item).
    pub values: usize,
    /// Values whose content is not known but whose declared kind (a `string`
    /// parameter, a function returning an `int`) was checked.
    pub kinds: usize,
    /// Values not checked, by why.
    pub skipped: BTreeMap<Skip, usize>,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.resources_declared += other.resources_declared;
        self.resources_checked += other.resources_checked;
        self.existing += other.existing;
        self.children += other.children;
        self.properties += other.properties;
        self.values += other.values;
        self.kinds += other.kinds;
        for (why, count) in &other.skipped {
            *self.skipped.entry(*why).or_default() += count;
        }
    }

    pub fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }
}

/// Checks the values of one resource declaration.
pub struct ValueChecker<'f> {
    pub file: &'f str,
    /// `symbol (Type@api-version)`, the start of every message.
    pub label: String,
    pub findings: Vec<Finding>,
    pub stats: Stats,
}

/// How a type takes a value of some kind whose content is not known.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    /// Not at all.
    No,
    /// Only some values of the kind (an enum, an object of known shape).
    Some,
    /// Any value of the kind.
    Any,
}

impl<'f> ValueChecker<'f> {
    pub fn new(file: &'f str, label: String) -> ValueChecker<'f> {
        ValueChecker {
            file,
            label,
            findings: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn report(&mut self, line: usize, path: &str, message: impl AsRef<str>) {
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" {path}")
        };
        self.findings.push(Finding {
            file: self.file.to_string(),
            line,
            message: format!("{}{at}: {}", self.label, message.as_ref()),
        });
    }

    /// Checks `value` against `ty`; `path` names the property (`properties.sku.name`).
    pub fn check(&mut self, value: &Value, ty: Type<'_>, path: &str) {
        match &value.shape {
            Shape::Either(branches) => {
                for branch in branches {
                    self.check(branch, ty, path);
                }
                return;
            }
            Shape::Unknown { kind, why } => {
                return self.check_unknown(value, *kind, *why, ty, path);
            }
            Shape::Resource(_) => {
                return self.check_unknown(value, Some(Kind::Object), Skip::Reference, ty, path);
            }
            Shape::Undeclared(name) => {
                return self.report(
                    value.line,
                    path,
                    format!("`{name}` is not declared in this file"),
                );
            }
            _ => {}
        }
        match ty.node() {
            Node::AnyType => self.stats.values += 1,
            Node::UnionType { elements } => {
                let members = elements.iter().map(|e| ty.follow(e)).collect::<Vec<_>>();
                self.check_union(value, &members, ty, path);
            }
            Node::StringLiteralType { value: expected } => match &value.shape {
                Shape::Str(s) if s == expected => self.stats.values += 1,
                Shape::Str(s) => {
                    self.report(value.line, path, format!("'{s}' is not '{expected}'"))
                }
                _ => self.mismatch(value, ty, path),
            },
            Node::StringType {
                min_length,
                max_length,
            } => match &value.shape {
                Shape::Str(s) => {
                    self.stats.values += 1;
                    self.check_length(
                        value.line,
                        path,
                        s.chars().count(),
                        *min_length,
                        *max_length,
                        "characters",
                    );
                }
                _ => self.mismatch(value, ty, path),
            },
            Node::IntegerType {
                min_value,
                max_value,
            } => match &value.shape {
                Shape::Int(n) => {
                    self.stats.values += 1;
                    if min_value.is_some_and(|min| *n < min)
                        || max_value.is_some_and(|max| *n > max)
                    {
                        let range = format!(
                            "{}..{}",
                            min_value.map(|m| m.to_string()).unwrap_or_default(),
                            max_value.map(|m| m.to_string()).unwrap_or_default()
                        );
                        self.report(value.line, path, format!("{n} is outside {range}"));
                    }
                }
                _ => self.mismatch(value, ty, path),
            },
            Node::BooleanType => match &value.shape {
                Shape::Bool(_) => self.stats.values += 1,
                _ => self.mismatch(value, ty, path),
            },
            Node::NullType => match &value.shape {
                Shape::Null => self.stats.values += 1,
                _ => self.mismatch(value, ty, path),
            },
            Node::ArrayType {
                item,
                min_length,
                max_length,
            } => match &value.shape {
                Shape::Array {
                    items,
                    unknown,
                    exact,
                } => {
                    self.stats.values += 1;
                    let item_type = ty.follow(item);
                    for (index, entry) in items.iter().enumerate() {
                        self.check(entry, item_type, &format!("{path}[{index}]"));
                    }
                    for why in unknown {
                        self.stats.skip(*why);
                    }
                    if *exact {
                        self.check_length(
                            value.line,
                            path,
                            items.len(),
                            *min_length,
                            *max_length,
                            "items",
                        );
                    }
                }
                _ => self.mismatch(value, ty, path),
            },
            Node::ObjectType {
                properties,
                additional,
                ..
            } => match &value.shape {
                Shape::Object(entries) => {
                    self.stats.values += 1;
                    let properties: BTreeMap<&str, &Property> =
                        properties.iter().map(|(k, p)| (k.as_str(), p)).collect();
                    let additional = additional.as_ref().map(|a| ty.follow(a));
                    self.check_object(value.line, entries, &properties, additional, ty, path, &[]);
                }
                _ => self.mismatch(value, ty, path),
            },
            Node::DiscriminatedObjectType { .. } => match &value.shape {
                Shape::Object(entries) => {
                    self.check_discriminated(value.line, entries, ty, path, &[])
                }
                _ => self.mismatch(value, ty, path),
            },
            Node::ResourceType { .. } | Node::ResourceFunctionType => {
                panic!("{path}: the type data points a property at a resource type")
            }
        }
    }

    /// Checks the properties of an object against an object type's
    /// `properties` (and `additional` for any other name); `skip` names
    /// properties the caller checks itself (a resource's `parent`, ...).
    #[allow(clippy::too_many_arguments)]
    pub fn check_object(
        &mut self,
        line: usize,
        entries: &[Entry],
        properties: &BTreeMap<&str, &Property>,
        additional: Option<Type<'_>>,
        owner: Type<'_>,
        path: &str,
        skip: &[&str],
    ) {
        for entry in entries {
            let Some(key) = entry.key.as_deref() else {
                match additional {
                    Some(any_name) => {
                        self.stats.properties += 1;
                        self.check(&entry.value, any_name, &format!("{path}[*]"));
                    }
                    None => self.report(
                        entry.line,
                        path,
                        "a computed property name is allowed only where the type takes any name",
                    ),
                }
                continue;
            };
            if skip.contains(&key) {
                continue;
            }
            let sub = join(path, key);
            if let Some(property) = properties.get(key) {
                self.stats.properties += 1;
                if property.read_only() {
                    self.report(
                        entry.line,
                        &sub,
                        "is read-only: Azure sets it, a template cannot",
                    );
                } else if property.required() {
                    self.check(&entry.value, owner.follow(&property.ty), &sub);
                } else {
                    // Bicep lets an optional property be null (left out).
                    match without_null(&entry.value) {
                        Some(value) => self.check(&value, owner.follow(&property.ty), &sub),
                        None => self.stats.values += 1,
                    }
                }
            } else if let Some(any_name) = additional {
                self.stats.properties += 1;
                self.check(&entry.value, any_name, &sub);
            } else {
                let hint = suggestion(key, properties);
                self.report(entry.line, &sub, format!("unknown property{hint}"));
            }
        }
        if entries.iter().any(|e| e.key.is_none()) {
            return;
        }
        let missing: Vec<&str> = properties
            .iter()
            .filter(|(name, property)| {
                property.required() && !entries.iter().any(|e| e.key.as_deref() == Some(**name))
            })
            .map(|(name, _)| *name)
            .collect();
        for name in missing {
            self.report(line, path, format!("missing required property `{name}`"));
        }
    }

    /// An object of a `DiscriminatedObjectType`: the discriminator's value
    /// picks the shape.
    pub fn check_discriminated(
        &mut self,
        line: usize,
        entries: &[Entry],
        ty: Type<'_>,
        path: &str,
        skip: &[&str],
    ) {
        let Node::DiscriminatedObjectType {
            discriminator,
            base,
            elements,
            ..
        } = ty.node()
        else {
            unreachable!("called for discriminated object types only")
        };
        let choices = elements
            .keys()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let Some(selector) = entries
            .iter()
            .find(|e| e.key.as_deref() == Some(discriminator))
        else {
            self.report(
                line,
                path,
                format!("missing required property `{discriminator}` (one of {choices})"),
            );
            return;
        };
        let Shape::Str(chosen) = &selector.value.shape else {
            self.stats.skip(Skip::Discriminator);
            return;
        };
        let Some(element) = elements.get(chosen) else {
            self.report(
                selector.line,
                &join(path, discriminator),
                format!("'{chosen}' is not one of {choices}"),
            );
            return;
        };
        let element = ty.follow(element);
        let Node::ObjectType {
            properties,
            additional,
            ..
        } = element.node()
        else {
            panic!("{path}: a discriminated element that is not an object type");
        };
        self.stats.values += 1;
        // The element's own properties win over the shared ones of the same name.
        let mut merged: BTreeMap<&str, &Property> =
            base.iter().map(|(k, p)| (k.as_str(), p)).collect();
        merged.extend(properties.iter().map(|(k, p)| (k.as_str(), p)));
        let additional = additional.as_ref().map(|a| element.follow(a));
        self.check_object(line, entries, &merged, additional, element, path, skip);
    }

    fn check_unknown(
        &mut self,
        value: &Value,
        kind: Option<Kind>,
        why: Skip,
        ty: Type<'_>,
        path: &str,
    ) {
        let Some(kind) = kind else {
            self.stats.skip(why);
            return;
        };
        match fit(ty, kind) {
            Fit::Any => self.stats.kinds += 1,
            Fit::Some => self.stats.skip(why),
            Fit::No => self.report(
                value.line,
                path,
                format!(
                    "expects {}, but the value is {} ({why})",
                    describe(ty),
                    kind.with_article()
                ),
            ),
        }
    }

    fn check_union(&mut self, value: &Value, members: &[Type<'_>], union: Type<'_>, path: &str) {
        let candidates: Vec<Type<'_>> = members
            .iter()
            .copied()
            .filter(|member| match value.kind() {
                Some(kind) => fit(*member, kind) != Fit::No,
                None => matches!(member.node(), Node::NullType | Node::AnyType),
            })
            .collect();
        if candidates.is_empty() {
            return self.mismatch(value, union, path);
        }
        let mut best: Option<ValueChecker<'f>> = None;
        for candidate in candidates {
            let mut trial = ValueChecker::new(self.file, self.label.clone());
            trial.check(value, candidate, path);
            if trial.findings.is_empty() {
                self.stats.add(&trial.stats);
                return;
            }
            if best
                .as_ref()
                .is_none_or(|b| trial.findings.len() < b.findings.len())
            {
                best = Some(trial);
            }
        }
        if let Shape::Str(s) = &value.shape {
            return self.report(
                value.line,
                path,
                format!("'{s}' is not one of {}", describe(union)),
            );
        }
        if let Some(best) = best {
            self.stats.add(&best.stats);
            self.findings.extend(best.findings);
        }
    }

    fn check_length(
        &mut self,
        line: usize,
        path: &str,
        length: usize,
        min: Option<u64>,
        max: Option<u64>,
        unit: &str,
    ) {
        let length = length as u64;
        if let Some(min) = min.filter(|min| length < *min) {
            self.report(
                line,
                path,
                format!("has {length} {unit}; the type wants at least {min}"),
            );
        }
        if let Some(max) = max.filter(|max| length > *max) {
            self.report(
                line,
                path,
                format!("has {length} {unit}; the type allows at most {max}"),
            );
        }
    }

    fn mismatch(&mut self, value: &Value, ty: Type<'_>, path: &str) {
        let what = match &value.shape {
            Shape::Str(s) => format!("'{s}'"),
            Shape::Int(n) => n.to_string(),
            Shape::Bool(b) => b.to_string(),
            Shape::Null => "null".to_string(),
            Shape::Object(_) => "an object".to_string(),
            Shape::Array { .. } => "an array".to_string(),
            Shape::Resource(symbol) => format!("the resource {symbol}"),
            Shape::Undeclared(name) => format!("`{name}`"),
            Shape::Either(_) | Shape::Unknown { .. } => "a value".to_string(),
        };
        self.report(
            value.line,
            path,
            format!("expects {}, not {what}", describe(ty)),
        );
    }
}

/// The value without its `null` branches; `None` when it is only `null`.
fn without_null(value: &Value) -> Option<Value> {
    match &value.shape {
        Shape::Null => None,
        Shape::Either(branches) => {
            let kept: Vec<Value> = branches.iter().filter_map(without_null).collect();
            let line = value.line;
            (!kept.is_empty()).then_some(Value {
                line,
                shape: Shape::Either(kept),
            })
        }
        _ => Some(value.clone()),
    }
}

/// How `ty` takes a value of `kind` whose content is not known.
fn fit(ty: Type<'_>, kind: Kind) -> Fit {
    match (ty.node(), kind) {
        (Node::AnyType, _)
        | (Node::StringType { .. }, Kind::String)
        | (Node::IntegerType { .. }, Kind::Int)
        | (Node::BooleanType, Kind::Bool) => Fit::Any,
        (Node::StringLiteralType { .. }, Kind::String)
        | (Node::ObjectType { .. } | Node::DiscriminatedObjectType { .. }, Kind::Object)
        | (Node::ArrayType { .. }, Kind::Array) => Fit::Some,
        (Node::UnionType { elements }, _) => elements
            .iter()
            .map(|e| fit(ty.follow(e), kind))
            .max()
            .unwrap_or(Fit::No),
        _ => Fit::No,
    }
}

/// A type as a message names it: `string`, `'Standard' | 'Premium'`, `Sku`.
pub fn describe(ty: Type<'_>) -> String {
    match ty.node() {
        Node::StringType { .. } => "string".into(),
        Node::StringLiteralType { value } => format!("'{value}'"),
        Node::IntegerType { .. } => "int".into(),
        Node::BooleanType => "bool".into(),
        Node::AnyType => "any".into(),
        Node::NullType => "null".into(),
        Node::ArrayType { item, .. } => format!("{}[]", describe(ty.follow(item))),
        Node::ObjectType { name, .. } | Node::DiscriminatedObjectType { name, .. } => {
            if name.is_empty() {
                "object".into()
            } else {
                format!("object {name}")
            }
        }
        Node::UnionType { elements } => elements
            .iter()
            .map(|e| describe(ty.follow(e)))
            .collect::<Vec<_>>()
            .join(" | "),
        Node::ResourceType { name, .. } => name.clone(),
        Node::ResourceFunctionType => "function".into(),
    }
}

/// `path.key`, or `path['odata.type']` for a key that is no identifier.
fn join(path: &str, key: &str) -> String {
    let identifier = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    match (path.is_empty(), identifier) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}['{key}']"),
    }
}

/// ` (did you mean `x`?)` for the writable property closest to `key`.
fn suggestion(key: &str, properties: &BTreeMap<&str, &Property>) -> String {
    let writable = properties
        .iter()
        .filter(|(_, p)| !p.read_only())
        .map(|(name, _)| *name);
    let lower = key.to_ascii_lowercase();
    let limit = key.chars().count().div_ceil(3);
    let best = writable
        .map(|name| {
            let distance = if name.to_ascii_lowercase() == lower {
                0
            } else {
                edit_distance(&lower, &name.to_ascii_lowercase())
            };
            (distance, name)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min();
    match best {
        Some((_, name)) => format!(" (did you mean `{name}`?)"),
        None => String::new(),
    }
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
