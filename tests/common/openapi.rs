//! Request/answer checks against a vendor's own OpenAPI description: GitHub's
//! (OpenAPI 3.0, the `@octokit/openapi` package under `tests/github-openapi`),
//! Azure DevOps' (Swagger 2.0, `specification/git/7.1/git.json` under the
//! third-party specifications, which oav cannot load) and the Security Update
//! Guide's (OpenAPI 3.0.1, `msrc/swagger.json` of the third-party folder).
//!
//! An exchange is checked against the operation named by its `operationId`,
//! or, for a description whose operations have none (the Security Update
//! Guide's), against the operation its method and path match: the method and
//! path (against the path template, from `paths` or `x-ms-paths`; a parameter may be part of a segment,
//! as in `/updates({key})`; a parameter marked `x-multi-segment` may span
//! slashes), the query parameters (required ones
//! present, none undeclared), the request body and the answer's body against
//! their schemas, validated by the `jsonschema` crate (draft 4, which
//! OpenAPI 3.0's and Swagger 2.0's schema objects are subsets of, with
//! OpenAPI 3.0's `nullable` rewritten as a `null` type). A status the
//! operation does not declare is an error, except that GitHub answers any
//! call with its `basic-error` on 401, 403 and 404, which is checked so, and
//! that the answer of an undeclared 5xx (an outage the fakes stage) is not
//! checked, only its request.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value, json};

/// One HTTP exchange as a fake saw it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path after the API's base (`/repos/o/r/git/refs`).
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The request's JSON body, if any.
    pub request: Option<Value>,
    /// The status answered.
    pub status: u16,
    /// The answer's JSON body, `Value::Null` when there is none.
    pub answer: Value,
}

/// A loaded description.
pub struct Description {
    root: Value,
    /// `components` (3.0) or `definitions` (2.0), `nullable` rewritten.
    shared: (String, Value),
    openapi3: bool,
    compiled: Mutex<BTreeMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl Description {
    /// Reads a description (a leading byte-order mark is skipped).
    pub fn load(path: &Path) -> Description {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "read {} ({e}); run scripts/setup.sh to install the test packages",
                path.display()
            )
        });
        let root: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let openapi3 = root["openapi"].is_string();
        let key = if openapi3 {
            "components"
        } else {
            "definitions"
        };
        let shared = (key.to_string(), nullable_to_null(&root[key]));
        Description {
            root,
            shared,
            openapi3,
            compiled: Mutex::new(BTreeMap::new()),
        }
    }

    /// The API version the description is of (`info.version`).
    pub fn version(&self) -> &str {
        self.root["info"]["version"].as_str().unwrap_or_default()
    }

    /// The operation's path template, method and object, from `paths` or
    /// Swagger 2.0's `x-ms-paths` (whose templates tell operations of one
    /// path apart by a query, `/items?path={path}`: the query part is not
    /// part of the path matched).
    fn operation(&self, id: &str) -> (&str, &str, &Value) {
        for key in ["paths", "x-ms-paths"] {
            for (template, item) in self.root[key].as_object().into_iter().flatten() {
                for (method, op) in item.as_object().into_iter().flatten() {
                    if op["operationId"] == id {
                        let path = template.split('?').next().unwrap_or(template);
                        return (path, method, op);
                    }
                }
            }
        }
        panic!("no operation {id} in the description")
    }

    /// `$ref` of the description followed (within the document).
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                self.resolve(self.root.pointer(pointer).unwrap_or(&Value::Null))
            }
            None => value,
        }
    }

    /// Validates `instance` against `schema` (a fragment of the document).
    fn validate(
        &self,
        key: &str,
        schema: &Value,
        instance: &Value,
        errors: &mut Vec<String>,
        side: &str,
    ) {
        let validator = {
            let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
            compiled
                .entry(key.to_string())
                .or_insert_with(|| {
                    let mut whole = Map::new();
                    whole.insert("allOf".into(), json!([nullable_to_null(schema)]));
                    whole.insert(self.shared.0.clone(), self.shared.1.clone());
                    std::sync::Arc::new(
                        jsonschema::draft4::new(&Value::Object(whole))
                            .unwrap_or_else(|e| panic!("the schema of {key} compiles: {e}")),
                    )
                })
                .clone()
        };
        for error in validator.iter_errors(instance) {
            errors.push(format!("{side} {}: {error}", error.instance_path()));
        }
    }

    /// Checks `exchange` against operation `id`; the rules broken, if any.
    pub fn check(&self, id: &str, exchange: &Exchange) -> Result<(), Vec<String>> {
        let (template, method, op) = self.operation(id);
        self.check_operation(id, template, method, op, exchange)
    }

    /// Checks `exchange` against the operation its method and path match
    /// (the first, in the description's order); an exchange that matches no
    /// path of the description is refused. Answers the matched path template.
    pub fn check_by_path(&self, exchange: &Exchange) -> Result<String, Vec<String>> {
        let paths = self.root["paths"].as_object().expect("paths");
        for (template, item) in paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                if !method.eq_ignore_ascii_case(&exchange.method) {
                    continue;
                }
                let parameters = self.parameters(op);
                if path_matches(template, &parameters, &exchange.path) {
                    let label = format!("{} {template}", method.to_uppercase());
                    return self
                        .check_operation(&label, template, method, op, exchange)
                        .map(|()| template.clone());
                }
            }
        }
        Err(vec![format!(
            "{} {} matches no path of the description",
            exchange.method, exchange.path
        )])
    }

    /// An operation's parameters, `$ref`s followed.
    fn parameters<'a>(&'a self, op: &'a Value) -> Vec<&'a Value> {
        op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .collect()
    }

    /// Checks `exchange` against operation `op` (`id` names it in errors).
    fn check_operation(
        &self,
        id: &str,
        template: &str,
        method: &str,
        op: &Value,
        exchange: &Exchange,
    ) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if !method.eq_ignore_ascii_case(&exchange.method) {
            errors.push(format!("{id} is {method}, not {}", exchange.method));
        }
        let parameters = self.parameters(op);
        if !path_matches(template, &parameters, &exchange.path) {
            errors.push(format!("path {} does not match {template}", exchange.path));
        }
        for p in parameters.iter().filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().unwrap_or_default();
            if p["required"] == true && !exchange.query.contains_key(name) {
                errors.push(format!("required query parameter {name} is missing"));
            }
        }
        for name in exchange.query.keys() {
            if !parameters
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == name.as_str())
            {
                errors.push(format!("query parameter {name} is not declared"));
            }
        }
        // The request body.
        let body_schema = if self.openapi3 {
            let body = self.resolve(&op["requestBody"]);
            (!body.is_null()).then(|| {
                (
                    body["required"] == true,
                    body["content"]["application/json"]["schema"].clone(),
                )
            })
        } else {
            parameters
                .iter()
                .find(|p| p["in"] == "body")
                .map(|p| (p["required"] == true, p["schema"].clone()))
        };
        match (&body_schema, &exchange.request) {
            (Some((_, schema)), Some(body)) => self.validate(
                &format!("{id} request"),
                schema,
                body,
                &mut errors,
                "request",
            ),
            (Some((true, _)), None) => errors.push("the required request body is missing".into()),
            (None, Some(_)) => errors.push(format!("{id} takes no request body")),
            _ => {}
        }
        // The answer.
        let status = exchange.status.to_string();
        let declared = op["responses"]
            .get(&status)
            .or_else(|| op["responses"].get("default"));
        let schema = match declared.map(|r| self.resolve(r)) {
            Some(response) if self.openapi3 => {
                Some(response["content"]["application/json"]["schema"].clone())
            }
            Some(response) => Some(response["schema"].clone()),
            None if self.openapi3 && matches!(exchange.status, 401 | 403 | 404) => {
                Some(json!({ "$ref": "#/components/schemas/basic-error" }))
            }
            // An outage is no part of an operation's contract: its request is checked, not its answer.
            None if exchange.status >= 500 => None,
            // A Swagger 2.0 description that declares no error answer at all
            // (Azure DevOps' declares only 200) says nothing of a refusal's
            // body: its request is checked, not its answer.
            None if !self.openapi3
                && exchange.status >= 400
                && !op["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|k| k.starts_with('4'))) =>
            {
                None
            }
            None => {
                errors.push(format!("{id} declares no answer {status}"));
                None
            }
        };
        // An answer that is not JSON (a zip the operation produces as one of
        // its media types) is checked for its status only: the schema
        // describes the JSON form.
        let binary = !self.openapi3
            && exchange.answer.is_null()
            && op["produces"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t != "application/json"));
        match schema {
            Some(schema) if !schema.is_null() && !binary => self.validate(
                &format!("{id} {status}"),
                &schema,
                &exchange.answer,
                &mut errors,
                "answer",
            ),
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Whether `path` fits `template`: `{name}` is one segment, or any number
/// for a parameter marked `x-multi-segment`; within a segment
/// (`updates({key})`) it is the non-empty text between the literal parts.
fn path_matches(template: &str, parameters: &[&Value], path: &str) -> bool {
    /// Whether segment `p` fits template segment `t` holding one `{name}`
    /// among literal text.
    fn within(t: &str, p: &str) -> bool {
        match (t.find('{'), t.find('}')) {
            (Some(open), Some(close)) if open < close => {
                let (prefix, suffix) = (&t[..open], &t[close + 1..]);
                p.len() > prefix.len() + suffix.len()
                    && p.starts_with(prefix)
                    && p.ends_with(suffix)
            }
            _ => t == p,
        }
    }
    fn go(template: &[&str], path: &[&str], multi: &dyn Fn(&str) -> bool) -> bool {
        match (template.first(), path.first()) {
            (None, None) => true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') => {
                let name = &t[1..t.len() - 1];
                if p.is_empty() {
                    return false;
                }
                if multi(name) {
                    (1..=path.len()).any(|n| go(&template[1..], &path[n..], multi))
                } else {
                    go(&template[1..], &path[1..], multi)
                }
            }
            (Some(t), Some(p)) => within(t, p) && go(&template[1..], &path[1..], multi),
            _ => false,
        }
    }
    let multi = |name: &str| {
        parameters
            .iter()
            .any(|p| p["in"] == "path" && p["name"] == name && p["x-multi-segment"] == true)
    };
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    go(&t, &p, &multi)
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` added to the
/// schema's type (and enum), or the schema wrapped in `anyOf` with `null`.
fn nullable_to_null(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(nullable_to_null).collect()),
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| (k.clone(), nullable_to_null(v)))
                .collect();
            if map.get("nullable") != Some(&Value::Bool(true)) {
                return Value::Object(out);
            }
            if let Some(Value::Array(options)) = out.get_mut("enum") {
                options.push(Value::Null);
            }
            match out.get("type").cloned() {
                Some(Value::String(t)) if !out.contains_key("$ref") => {
                    out.insert("type".into(), json!([t, "null"]));
                    Value::Object(out)
                }
                _ => json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
            }
        }
        other => other.clone(),
    }
}

/// GitHub's description (`api.github.com.json` of the pinned `@octokit/openapi`), loaded once.
pub fn github() -> &'static Description {
    static GITHUB: OnceLock<Description> = OnceLock::new();
    GITHUB.get_or_init(|| {
        Description::load(&super::repo_root().join(
            "tests/github-openapi/node_modules/@octokit/openapi/generated/api.github.com.json",
        ))
    })
}

/// The Security Update Guide API's description (CVRF v3.0), loaded once.
pub fn msrc() -> &'static Description {
    static MSRC: OnceLock<Description> = OnceLock::new();
    MSRC.get_or_init(|| Description::load(&super::third_party("msrc/swagger.json")))
}

/// Azure DevOps' Git 7.1 description, loaded once.
pub fn azure_devops_git() -> &'static Description {
    static GIT: OnceLock<Description> = OnceLock::new();
    GIT.get_or_init(|| {
        Description::load(
            &super::spec_validator::specs_dir().join("specification/git/7.1/git.json"),
        )
    })
}
