//! The Application Insights queries of the alerts (`infra/queries/*.kql`,
//! loaded by `infra/modules/alerts.bicep`) and of the operations page
//! (`docs/operations.md`, its `kusto` blocks) against what they depend on:
//!
//! - each parses with Microsoft's own Kusto parser (`Kusto.Language`, the
//!   npm package `@kusto/language-service-next`, pinned in `tests/kql/`);
//!   Azure validates a log alert's query when the rule is created, so a
//!   query that does not parse would fail `azd provision`;
//! - every log message and span name a query matches, and every
//!   `customDimensions` field it reads, is one the handler's `tracing`
//!   calls emit (the export turns a span into a dependency named after it
//!   with its fields as `customDimensions`, and an event in a span into a
//!   trace whose message is the event's);
//! - a run's trace id is what the operations page computes in Kusto: the
//!   first 32 hex digits of SHA-256 of the run id, with `hash_sha256` as
//!   Microsoft documents it (its own example value).
//!
//! No query runs here: no Application Insights is reachable.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A query and where it comes from.
struct Query {
    name: String,
    text: String,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The alerts' queries, each preceded by the lets the deployment puts before
/// it (`format(...)` in alerts.bicep names them).
fn alert_queries() -> Vec<Query> {
    let root = common::repo_root();
    let alerts = read(&root.join("infra/modules/alerts.bicep"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("infra/queries"))
        .expect("infra/queries")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "kql"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
        .into_iter()
        .map(|path| {
            let file = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_string();
            assert!(
                alerts.contains(&format!("loadTextContent('../queries/{file}')")),
                "infra/modules/alerts.bicep does not load {file}"
            );
            let mut text = read(&path);
            // The lets the Bicep prepends (let name = ...;), as it writes them.
            for line in alerts.lines().filter(|l| l.contains("var patchQuery")) {
                if text.contains("graceDays") {
                    let prefix: String = line
                        .split("'let ")
                        .nth(1)
                        .and_then(|rest| rest.split("{4}'").next())
                        .expect("the lets of patchQuery")
                        .replace("\\n", "\n")
                        .replace("{0}", "7")
                        .replace("{1}", "1")
                        .replace("{2}", "6")
                        .replace("{3}", "rg-factory-gallery");
                    text = format!("let {prefix}{text}");
                }
            }
            Query {
                name: format!("infra/queries/{file}"),
                text,
            }
        })
        .collect()
}

/// The `kusto` blocks of the operations page.
fn page_queries() -> Vec<Query> {
    let page = read(&common::repo_root().join("docs/operations.md"));
    let mut queries = Vec::new();
    let mut lines = page.lines().enumerate();
    while let Some((at, line)) = lines.next() {
        if line.trim() == "```kusto" {
            let text: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "```")
                .collect();
            queries.push(Query {
                name: format!("docs/operations.md line {}", at + 1),
                text: text.join("\n"),
            });
        }
    }
    assert!(queries.len() >= 3, "the operations page has no queries");
    queries
}

/// Each query's syntax errors, from Microsoft's Kusto parser.
fn syntax_errors(queries: &[Query]) -> Vec<(String, Vec<Value>)> {
    let dir = common::repo_root().join("tests/kql");
    assert!(
        dir.join("node_modules/@kusto/language-service-next")
            .is_dir(),
        "the Kusto parser is not installed: run scripts/setup.sh (npm ci in tests/kql)"
    );
    let input: Vec<Value> = queries
        .iter()
        .map(|q| json!({ "name": q.name, "text": q.text }))
        .collect();
    let mut child = Command::new("node")
        .arg("check.js")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(input).to_string().as_bytes())
        .expect("write the queries");
    let out = child.wait_with_output().expect("the parser's answer");
    assert!(out.status.success());
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    answers
        .into_iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_string(),
                a["errors"].as_array().cloned().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn every_query_parses_with_microsofts_kusto_parser() {
    let mut queries = alert_queries();
    queries.extend(page_queries());
    let errors: Vec<_> = syntax_errors(&queries)
        .into_iter()
        .filter(|(_, e)| !e.is_empty())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn a_query_that_does_not_parse_is_caught_on_its_line() {
    let broken = Query {
        name: "broken".into(),
        text: "traces\n| where message in (\"reaped\"\n| project timestamp".into(),
    };
    let errors = syntax_errors(&[broken]);
    assert_eq!(errors.len(), 1);
    let (name, errors) = &errors[0];
    assert_eq!(name, "broken");
    assert!(!errors.is_empty(), "a missing parenthesis was not caught");
    assert_eq!(errors[0]["line"], json!(3), "{errors:#?}");
}

/// What the handler's `tracing` calls emit: the string literals of every
/// call (event messages, span names) and the names of its fields.
struct Emitted {
    literals: BTreeSet<String>,
    fields: BTreeSet<String>,
}

/// Every `tracing::<macro>!(...)` call of `source`, whole.
fn tracing_calls(source: &str) -> Vec<&str> {
    let mut calls = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("tracing::") {
        let call = &rest[at..];
        let Some(open) = call.find('(').filter(|&o| call[..o].ends_with('!')) else {
            rest = &call["tracing::".len()..];
            continue;
        };
        let (mut depth, mut in_string, mut escaped, mut end) = (0usize, false, false, None);
        for (i, c) in call[open..].char_indices() {
            match (in_string, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_string = false,
                (true, false, _) => {}
                (false, _, '"') => in_string = true,
                (false, _, '(') => depth += 1,
                (false, _, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.unwrap_or(call.len());
        calls.push(&call[..end]);
        rest = &call[end..];
    }
    calls
}

/// The `"..."` literals of `text`.
fn literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut literal = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, next)) = chars.next() {
                        literal.push(next);
                    }
                }
                '"' => break,
                c => literal.push(c),
            }
        }
        found.push(literal);
    }
    found
}

fn emitted() -> Emitted {
    let mut files = Vec::new();
    let mut dirs = vec![common::repo_root().join("handlers")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read handlers") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    let mut emitted = Emitted {
        literals: BTreeSet::new(),
        fields: BTreeSet::new(),
    };
    for file in files {
        let source = read(&file);
        for call in tracing_calls(&source) {
            emitted.literals.extend(literals(call));
            // Fields: `name = value`, `%name`, `?name`, outside literals.
            let code: String = {
                let mut out = String::new();
                let mut in_string = false;
                let mut escaped = false;
                for c in call.chars() {
                    match (in_string, escaped, c) {
                        (true, true, _) => escaped = false,
                        (true, false, '\\') => escaped = true,
                        (true, false, '"') => in_string = false,
                        (true, false, _) => {}
                        (false, _, '"') => {
                            in_string = true;
                            out.push(' ');
                        }
                        (false, _, c) => out.push(c),
                    }
                }
                out
            };
            let words: Vec<&str> = code
                .split(|c: char| {
                    !(c.is_alphanumeric() || c == '_' || c == '%' || c == '?' || c == '=')
                })
                .filter(|w| !w.is_empty())
                .collect();
            for (i, word) in words.iter().enumerate() {
                if let Some(name) = word.strip_prefix('%').or_else(|| word.strip_prefix('?')) {
                    emitted.fields.insert(name.to_string());
                } else if words.get(i + 1) == Some(&"=") {
                    emitted.fields.insert((*word).to_string());
                }
            }
        }
    }
    emitted
}

/// What a query depends on: the messages and span names it matches, and
/// the `customDimensions` fields it reads.
fn depends_on(query: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut fields = BTreeSet::new();
    for line in query.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for key in ["message", "name"] {
            for op in ["==", "!=", "in ("] {
                let pattern = format!("{key} {op}");
                let mut rest = line;
                while let Some(at) = rest.find(&pattern) {
                    let after = &rest[at + pattern.len()..];
                    let until = if op == "in (" {
                        after.find(')').unwrap_or(after.len())
                    } else {
                        after
                            .char_indices()
                            .filter(|(_, c)| *c == '"')
                            .nth(1)
                            .map_or(after.len(), |(i, _)| i + 1)
                    };
                    names.extend(literals(&after[..until]));
                    rest = &after[until..];
                }
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("customDimensions.") {
            let after = &rest[at + "customDimensions.".len()..];
            let field: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            fields.insert(field);
            rest = after;
        }
    }
    (names, fields)
}

/// What `query` depends on that the handler does not emit.
fn missing(emitted: &Emitted, query: &str) -> Vec<String> {
    let (names, fields) = depends_on(query);
    names
        .iter()
        .filter(|n| !emitted.literals.contains(*n))
        .map(|n| format!("message or span \"{n}\""))
        .chain(
            fields
                .iter()
                .filter(|f| !emitted.fields.contains(*f))
                .map(|f| format!("field customDimensions.{f}")),
        )
        .collect()
}

#[test]
fn the_queries_match_only_messages_spans_and_fields_the_handler_emits() {
    let emitted = emitted();
    let mut queries = alert_queries();
    queries.extend(page_queries());
    let mut checked = 0;
    for query in &queries {
        let (names, fields) = depends_on(&query.text);
        checked += names.len() + fields.len();
        let missing = missing(&emitted, &query.text);
        assert!(
            missing.is_empty(),
            "{} depends on what the handler never emits: {missing:?}",
            query.name
        );
    }
    assert!(checked > 20, "only {checked} names checked");
    // The ones the alerts stand on, by name.
    let failed = &alert_queries()
        .into_iter()
        .find(|q| q.name.ends_with("failed-runs.kql"))
        .expect("the failed-runs query")
        .text;
    let (names, fields) = depends_on(failed);
    for name in [
        "stage",
        "stage failed",
        "build worker reported",
        "patch gate",
        "run failed: message dead-lettered",
    ] {
        assert!(names.contains(name), "{names:?}");
    }
    for field in ["run_id", "stage", "reason", "status", "summary"] {
        assert!(fields.contains(field), "{fields:?}");
    }
}

#[test]
fn a_message_or_field_the_handler_does_not_emit_is_caught() {
    let emitted = emitted();
    let query = "traces\n| where message == \"reaped!\" or message in (\"reaped\", \"run deleted\")\n| project r = tostring(customDimensions.resource), w = tostring(customDimensions.whyy)";
    assert_eq!(
        missing(&emitted, query),
        vec![
            "message or span \"reaped!\"".to_string(),
            "message or span \"run deleted\"".to_string(),
            "field customDimensions.whyy".to_string(),
        ]
    );
}

#[test]
fn a_runs_trace_id_is_the_start_of_the_sha256_kusto_computes() {
    // Microsoft's own example of hash_sha256 ("Applies to: Azure Monitor").
    assert_eq!(
        hex(&Sha256::digest(b"World")),
        "78ae647dc5544d227130a0682a51e30bc7777fbb6d8a8f17007463a3ecd1d524"
    );
    for run in [
        "push-example-0123456789abcdef0123456789abcdef01234567",
        "pt-web-2026-11",
    ] {
        let kusto = &hex(&Sha256::digest(run.as_bytes()))[..32];
        assert_eq!(
            image_factory::trace::run_trace_id(run).to_string(),
            kusto,
            "operation_Id of {run}"
        );
    }
    let page = read(&common::repo_root().join("docs/operations.md"));
    assert!(page.contains("substring(hash_sha256(run), 0, 32)"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
