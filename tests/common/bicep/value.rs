//! What a Bicep expression is known to be before deployment: literals,
//! objects and arrays (through variables, `concat` of arrays,
//! `loadJsonContent` of a file beside the template, member access into
//! them, both branches of a condition), and for everything else only its
//! kind and why its value is not known (a parameter, a function call, a
//! reference to a resource or module, a loop variable, an operator, an
//! interpolated string).

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use tree_sitter::Node;

use super::syntax::{
    Declarations, Kind, line, literal_string, loop_variables_of, named_children, text,
};

/// Why a value is not known before deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    Parameter,
    FunctionCall,
    Reference,
    LoopVariable,
    Operator,
    Interpolation,
    Discriminator,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::Parameter => "parameter",
            Skip::FunctionCall => "function call",
            Skip::Reference => "resource or module reference",
            Skip::LoopVariable => "loop variable",
            Skip::Operator => "operator expression",
            Skip::Interpolation => "interpolated string",
            Skip::Discriminator => "object whose discriminator is not known",
        })
    }
}

/// A value and the line it is written on.
#[derive(Clone, Debug)]
pub struct Value {
    pub line: usize,
    pub shape: Shape,
}

/// What is known of a value.
#[derive(Clone, Debug)]
pub enum Shape {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    Object(Vec<Entry>),
    /// Items known one by one; `unknown` lists the parts that are not
    /// (a parameter concatenated in, ...); a loop (`[for ...]`) gives one
    /// item standing for all and is not `exact` in length.
    Array {
        items: Vec<Value>,
        unknown: Vec<Skip>,
        exact: bool,
    },
    /// Either branch of a condition.
    Either(Vec<Value>),
    /// A resource declared in the file, by its symbol (`a`, `a::b`).
    Resource(String),
    /// A name nothing in the file declares.
    Undeclared(String),
    Unknown {
        kind: Option<Kind>,
        why: Skip,
    },
}

/// One property of an object value.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `None`: an interpolated key (`'${id}': {}`).
    pub key: Option<String>,
    pub line: usize,
    pub value: Value,
}

impl Value {
    fn new(line: usize, shape: Shape) -> Value {
        Value { line, shape }
    }

    fn unknown(line: usize, kind: Option<Kind>, why: Skip) -> Value {
        Value::new(line, Shape::Unknown { kind, why })
    }

    /// The kind, where it is known.
    pub fn kind(&self) -> Option<Kind> {
        match &self.shape {
            Shape::Str(_) => Some(Kind::String),
            Shape::Int(_) => Some(Kind::Int),
            Shape::Bool(_) => Some(Kind::Bool),
            Shape::Object(_) | Shape::Resource(_) => Some(Kind::Object),
            Shape::Array { .. } => Some(Kind::Array),
            Shape::Unknown { kind, .. } => *kind,
            Shape::Null | Shape::Either(_) | Shape::Undeclared(_) => None,
        }
    }
}

/// Evaluates expressions of one file.
pub struct Evaluator<'t, 'd> {
    pub source: &'t str,
    pub declarations: &'d Declarations<'t>,
    /// The folder of the file (`loadJsonContent` paths are relative to it).
    pub folder: &'d Path,
    /// Resource symbols declared anywhere in the file (nested ones too).
    pub resources: &'d HashSet<&'t str>,
}

/// How deep variables may refer to variables (Bicep forbids cycles).
const MAX_DEPTH: usize = 32;

impl<'t> Evaluator<'t, '_> {
    /// The value of `node`, with `loop_variables` in scope.
    pub fn eval(&self, node: Node<'t>, loop_variables: &[&str]) -> Value {
        self.eval_at(node, loop_variables, 0)
    }

    fn eval_at(&self, node: Node<'t>, loops: &[&str], depth: usize) -> Value {
        let at = line(node);
        let source = self.source;
        match node.kind() {
            "string" => match literal_string(node, source) {
                Some(s) => Value::new(at, Shape::Str(s)),
                None => Value::unknown(at, Some(Kind::String), Skip::Interpolation),
            },
            "number" => match text(node, source).parse::<i64>() {
                Ok(n) => Value::new(at, Shape::Int(n)),
                Err(_) => Value::unknown(at, None, Skip::Operator),
            },
            "boolean" => Value::new(at, Shape::Bool(text(node, source) == "true")),
            "null" => Value::new(at, Shape::Null),
            "object" => Value::new(at, Shape::Object(self.entries(node, loops, depth))),
            "array" => {
                let items = named_children(node)
                    .filter(|c| c.kind() != "decorators")
                    .map(|item| self.eval_at(item, loops, depth))
                    .collect();
                Value::new(
                    at,
                    Shape::Array {
                        items,
                        unknown: Vec::new(),
                        exact: true,
                    },
                )
            }
            "for_statement" => {
                let mut inner: Vec<&str> = loops.to_vec();
                inner.extend(loop_variables_of(node, source));
                let body = node.child_by_field_name("body");
                let items = body
                    .map(|b| vec![self.eval_at(b, &inner, depth)])
                    .unwrap_or_default();
                Value::new(
                    at,
                    Shape::Array {
                        items,
                        unknown: Vec::new(),
                        exact: false,
                    },
                )
            }
            "parenthesized_expression" => match named_children(node).next() {
                Some(inner) => self.eval_at(inner, loops, depth),
                None => Value::unknown(at, None, Skip::Operator),
            },
            "ternary_expression" => {
                let branches = ["consequence", "alternative"]
                    .iter()
                    .filter_map(|field| node.child_by_field_name(field))
                    .map(|branch| self.eval_at(branch, loops, depth))
                    .collect();
                Value::new(at, Shape::Either(branches))
            }
            "identifier" => self.symbol(text(node, source), at, loops, depth),
            "member_expression" => self.member(node, loops, depth),
            "subscript_expression" => self.subscript(node, loops, depth),
            "resource_expression" => Value::new(at, Shape::Resource(text(node, source).into())),
            "call_expression" => self.call(node, loops, depth),
            "unary_expression" => {
                let kind = match node
                    .child_by_field_name("operator")
                    .map(|o| text(o, source))
                {
                    Some("!") => Some(Kind::Bool),
                    Some("-") => Some(Kind::Int),
                    _ => None,
                };
                Value::unknown(at, kind, Skip::Operator)
            }
            "binary_expression" => {
                let operator = node
                    .child_by_field_name("operator")
                    .map(|o| text(o, source))
                    .unwrap_or("");
                let kind = match operator {
                    "==" | "!=" | "=~" | "!~" | "<" | "<=" | ">" | ">=" | "&&" | "||" => {
                        Some(Kind::Bool)
                    }
                    "+" | "-" | "*" | "/" | "%" => Some(Kind::Int),
                    _ => None,
                };
                Value::unknown(at, kind, Skip::Operator)
            }
            _ => Value::unknown(at, None, Skip::Operator),
        }
    }

    /// The properties of an object literal (nested `resource` declarations
    /// are not properties).
    fn entries(&self, object: Node<'t>, loops: &[&str], depth: usize) -> Vec<Entry> {
        named_children(object)
            .filter(|c| c.kind() == "object_property")
            .filter_map(|property| {
                let parts: Vec<Node<'t>> = named_children(property).collect();
                let (key, value) = match parts.as_slice() {
                    [key, .., value] if key.kind() != "resource_declaration" => (*key, *value),
                    _ => return None,
                };
                let key_text = match key.kind() {
                    "string" => literal_string(key, self.source),
                    _ => Some(text(key, self.source).to_string()),
                };
                Some(Entry {
                    key: key_text,
                    line: line(key),
                    value: self.eval_at(value, loops, depth),
                })
            })
            .collect()
    }

    fn symbol(&self, name: &str, at: usize, loops: &[&str], depth: usize) -> Value {
        if loops.contains(&name) {
            return Value::unknown(at, None, Skip::LoopVariable);
        }
        if let Some(kind) = self.declarations.params.get(name) {
            return Value::unknown(at, *kind, Skip::Parameter);
        }
        if let Some(var) = self.declarations.vars.get(name) {
            if depth >= MAX_DEPTH {
                return Value::unknown(at, None, Skip::Reference);
            }
            // A variable sees no loop variable of the place it is used in; its
            // parts keep their own lines (where a wrong literal is fixed).
            return self.eval_at(*var, &[], depth + 1);
        }
        if self.resources.contains(name) {
            return Value::new(at, Shape::Resource(name.to_string()));
        }
        if self.declarations.modules.contains(&name) {
            return Value::unknown(at, Some(Kind::Object), Skip::Reference);
        }
        Value::new(at, Shape::Undeclared(name.to_string()))
    }

    fn member(&self, node: Node<'t>, loops: &[&str], depth: usize) -> Value {
        let at = line(node);
        let (Some(object), Some(property)) = (
            node.child_by_field_name("object"),
            node.child_by_field_name("property"),
        ) else {
            return Value::unknown(at, None, Skip::Reference);
        };
        let name = text(property, self.source);
        let target = self.eval_at(object, loops, depth);
        match target.shape {
            Shape::Object(entries) => {
                match entries.into_iter().find(|e| e.key.as_deref() == Some(name)) {
                    Some(entry) => Value {
                        line: at,
                        ..entry.value
                    },
                    None => Value::unknown(at, None, Skip::Reference),
                }
            }
            Shape::Unknown { why, .. } => Value::unknown(at, None, why),
            Shape::Undeclared(name) => Value::new(at, Shape::Undeclared(name)),
            _ => Value::unknown(at, None, Skip::Reference),
        }
    }

    fn subscript(&self, node: Node<'t>, loops: &[&str], depth: usize) -> Value {
        let at = line(node);
        let Some(object) = node.child_by_field_name("object") else {
            return Value::unknown(at, None, Skip::Reference);
        };
        let target = self.eval_at(object, loops, depth);
        let index = node
            .child_by_field_name("index")
            .map(|i| self.eval_at(i, loops, depth).shape);
        match (target.shape, index) {
            (Shape::Resource(symbol), _) => Value::new(at, Shape::Resource(symbol)),
            (
                Shape::Array {
                    items,
                    exact: true,
                    unknown,
                },
                Some(Shape::Int(i)),
            ) if unknown.is_empty() => match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                Some(item) => Value {
                    line: at,
                    ..item.clone()
                },
                None => Value::unknown(at, None, Skip::Reference),
            },
            (Shape::Unknown { why, .. }, _) => Value::unknown(at, None, why),
            _ => Value::unknown(at, None, Skip::Reference),
        }
    }

    fn call(&self, node: Node<'t>, loops: &[&str], depth: usize) -> Value {
        let at = line(node);
        let function = node
            .child_by_field_name("function")
            .map(|f| text(f, self.source))
            .unwrap_or("");
        let arguments: Vec<Node<'t>> = node
            .child_by_field_name("arguments")
            .map(|a| named_children(a).collect())
            .unwrap_or_default();
        // `sys.concat` and `az.resourceGroup` are the same functions.
        let name = function
            .strip_prefix("sys.")
            .or_else(|| function.strip_prefix("az."))
            .unwrap_or(function);
        match name {
            "concat" => self.concat(at, &arguments, loops, depth),
            "loadJsonContent" if arguments.len() == 1 => {
                match literal_string(arguments[0], self.source) {
                    Some(relative) => self.load_json(at, &relative),
                    None => Value::unknown(at, None, Skip::FunctionCall),
                }
            }
            _ => Value::unknown(at, return_kind(name), Skip::FunctionCall),
        }
    }

    /// `concat` of arrays: every item of every argument; of strings: a string.
    fn concat(&self, at: usize, arguments: &[Node<'t>], loops: &[&str], depth: usize) -> Value {
        let values: Vec<Value> = arguments
            .iter()
            .map(|a| self.eval_at(*a, loops, depth))
            .collect();
        if values.iter().any(|v| v.kind() == Some(Kind::String)) {
            return Value::unknown(at, Some(Kind::String), Skip::FunctionCall);
        }
        let (mut items, mut unknown, mut exact) = (Vec::new(), Vec::new(), true);
        for value in values {
            collect_items(value, &mut items, &mut unknown, &mut exact);
        }
        Value::new(
            at,
            Shape::Array {
                items,
                unknown,
                exact,
            },
        )
    }

    fn load_json(&self, at: usize, relative: &str) -> Value {
        let path = self.folder.join(relative);
        let json = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        match json {
            Some(json) => from_json(&json, at),
            None => Value::unknown(at, None, Skip::FunctionCall),
        }
    }
}

/// Gathers the items of an array value (both branches of a condition).
fn collect_items(value: Value, items: &mut Vec<Value>, unknown: &mut Vec<Skip>, exact: &mut bool) {
    match value.shape {
        Shape::Array {
            items: more,
            unknown: more_unknown,
            exact: more_exact,
        } => {
            items.extend(more);
            unknown.extend(more_unknown);
            *exact &= more_exact;
        }
        Shape::Either(branches) => {
            *exact = false;
            for branch in branches {
                collect_items(branch, items, unknown, exact);
            }
        }
        Shape::Unknown { why, .. } => {
            unknown.push(why);
            *exact = false;
        }
        _ => {
            unknown.push(Skip::FunctionCall);
            *exact = false;
        }
    }
}

/// A JSON document as a value, every part of it on `at`.
fn from_json(json: &serde_json::Value, at: usize) -> Value {
    let shape = match json {
        serde_json::Value::Null => Shape::Null,
        serde_json::Value::Bool(b) => Shape::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Shape::Int(i),
            None => Shape::Unknown {
                kind: None,
                why: Skip::FunctionCall,
            },
        },
        serde_json::Value::String(s) => Shape::Str(s.clone()),
        serde_json::Value::Array(items) => Shape::Array {
            items: items.iter().map(|i| from_json(i, at)).collect(),
            unknown: Vec::new(),
            exact: true,
        },
        serde_json::Value::Object(map) => Shape::Object(
            map.iter()
                .map(|(k, v)| Entry {
                    key: Some(k.clone()),
                    line: at,
                    value: from_json(v, at),
                })
                .collect(),
        ),
    };
    Value::new(at, shape)
}

/// The kind a Bicep function returns, for those whose kind does not depend
/// on their arguments.
fn return_kind(function: &str) -> Option<Kind> {
    match function {
        "guid"
        | "uniqueString"
        | "toLower"
        | "toUpper"
        | "format"
        | "substring"
        | "replace"
        | "string"
        | "trim"
        | "subscriptionResourceId"
        | "resourceId"
        | "tenantResourceId"
        | "extensionResourceId"
        | "managementGroupResourceId"
        | "uri"
        | "uriComponent"
        | "dataUri"
        | "base64"
        | "base64ToString"
        | "utcNow"
        | "newGuid"
        | "dateTimeAdd"
        | "dateTimeFromEpoch"
        | "join"
        | "loadTextContent"
        | "loadFileAsBase64"
        | "padLeft" => Some(Kind::String),
        "int" | "length" | "dateTimeToEpoch" | "indexOf" | "lastIndexOf" => Some(Kind::Int),
        "bool" | "empty" | "contains" | "startsWith" | "endsWith" => Some(Kind::Bool),
        "resourceGroup" | "subscription" | "tenant" | "managementGroup" | "deployment"
        | "environment" => Some(Kind::Object),
        "range" | "split" | "array" | "items" | "filter" | "map" | "sort" | "flatten" => {
            Some(Kind::Array)
        }
        _ => None,
    }
}
