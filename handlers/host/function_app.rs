//! The function app as the Functions host reads it: `host.json` and every
//! `<name>/function.json` directly under the app root (the host's layout, see
//! [`crate::layout`]; the repository is staged into it by
//! [`crate::package::package_dir`]), checked against the host's indexing rule
//! and the handler, and turned into triggers and output bindings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::domain::schedule::Schedule;

/// A problem in `host.json` or a `function.json`, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct AppError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// What starts a function.
#[derive(Clone, Debug)]
pub enum TriggerBinding {
    /// An HTTP route under the route prefix.
    Http {
        /// Allowed methods, upper case (empty: all).
        methods: Vec<String>,
        /// The route template (`hooks/{provider}`).
        route: String,
    },
    /// A timer.
    Timer {
        /// When it fires.
        schedule: Schedule,
        /// Fire once at start-up too.
        run_on_startup: bool,
        /// The binding's name (the key of the timer info in `Data`).
        name: String,
    },
    /// A Service Bus queue.
    Queue {
        /// The queue.
        queue: String,
        /// The binding's name (the key of the message in `Data`).
        name: String,
    },
}

/// One function.
#[derive(Clone, Debug)]
pub struct FunctionDef {
    /// Its name (folder name).
    pub name: String,
    /// Its trigger.
    pub trigger: TriggerBinding,
    /// Its Service Bus output bindings: binding name → queue.
    pub queue_outputs: BTreeMap<String, String>,
}

/// The host settings this host honours.
#[derive(Clone, Debug)]
pub struct HostSettings {
    /// HTTP route prefix (`api`).
    pub route_prefix: String,
    /// Concurrent invocations per queue.
    pub max_concurrent_calls: usize,
    /// How long a message's lock is renewed while its invocation runs.
    pub max_auto_lock_renewal: Duration,
}

/// The whole app.
#[derive(Clone, Debug)]
pub struct FunctionApp {
    /// Host settings.
    pub settings: HostSettings,
    /// Functions by name.
    pub functions: Vec<FunctionDef>,
}

#[derive(Deserialize)]
struct HostJson {
    version: String,
    #[serde(rename = "customHandler")]
    custom_handler: Option<Value>,
    #[serde(default)]
    extensions: Value,
}

#[derive(Deserialize)]
struct FunctionJson {
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
struct Binding {
    #[serde(rename = "type")]
    kind: String,
    direction: String,
    name: String,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default, rename = "runOnStartup")]
    run_on_startup: bool,
    #[serde(default, rename = "queueName")]
    queue_name: Option<String>,
}

impl FunctionApp {
    /// Reads `host.json` in `root` and every `root/<name>/function.json`, after
    /// checking the folder against the host's indexing rule and every
    /// function.json against the handler; an error names the file.
    /// `%Name%` in a timer schedule is read from the environment, as app settings are.
    pub fn load(root: &Path) -> Result<FunctionApp, AppError> {
        let host_path = root.join("host.json");
        let host: HostJson = read_json(&host_path)?;
        let err = |message: String| AppError {
            path: host_path.clone(),
            message,
        };
        if host.version != "2.0" {
            return Err(err(format!(
                "version must be \"2.0\", not {:?}",
                host.version
            )));
        }
        let handler = host
            .custom_handler
            .ok_or_else(|| err("has no customHandler section".into()))?;
        if handler
            .get("enableForwardingHttpRequest")
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Err(err(
                "enableForwardingHttpRequest must be false: HTTP functions here also set Service Bus outputs".into(),
            ));
        }
        let ext = &host.extensions;
        let route_prefix = ext
            .pointer("/http/routePrefix")
            .and_then(Value::as_str)
            .unwrap_or("api")
            .trim_matches('/')
            .to_string();
        let max_concurrent_calls = ext
            .pointer("/serviceBus/maxConcurrentCalls")
            .and_then(Value::as_u64)
            .unwrap_or(16)
            .clamp(1, 256) as usize;
        let max_auto_lock_renewal = match ext
            .pointer("/serviceBus/maxAutoLockRenewalDuration")
            .and_then(Value::as_str)
        {
            Some(text) => parse_timespan(text).ok_or_else(|| {
                err(format!(
                    "maxAutoLockRenewalDuration {text:?} is not hh:mm:ss"
                ))
            })?,
            None => Duration::from_secs(300),
        };

        let mut functions = Vec::new();
        let names = crate::layout::check_dir(root).map_err(|e| AppError {
            path: root.to_path_buf(),
            message: e.to_string(),
        })?;
        for name in names {
            let path = root.join(&name).join(crate::layout::FUNCTION_JSON);
            let json: Value = read_json(&path)?;
            crate::functions::check_bindings(&name, &json).map_err(|message| AppError {
                path: path.clone(),
                message: format!("does not match the handler: {message}"),
            })?;
            functions.push(parse_function(name, &path)?);
        }
        Ok(FunctionApp {
            settings: HostSettings {
                route_prefix,
                max_concurrent_calls,
                max_auto_lock_renewal,
            },
            functions,
        })
    }

    /// Every queue a trigger or an output names.
    pub fn queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = self
            .functions
            .iter()
            .flat_map(|f| {
                let trigger = match &f.trigger {
                    TriggerBinding::Queue { queue, .. } => Some(queue.clone()),
                    _ => None,
                };
                trigger.into_iter().chain(f.queue_outputs.values().cloned())
            })
            .collect();
        queues.sort();
        queues.dedup();
        queues
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| AppError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| AppError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn parse_function(name: String, path: &Path) -> Result<FunctionDef, AppError> {
    let json: FunctionJson = read_json(path)?;
    let err = |message: String| AppError {
        path: path.to_path_buf(),
        message,
    };
    let mut trigger = None;
    let mut queue_outputs = BTreeMap::new();
    for b in json.bindings {
        match (b.kind.as_str(), b.direction.as_str()) {
            ("httpTrigger", "in") => {
                trigger = Some(TriggerBinding::Http {
                    methods: b.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                    route: b.route.unwrap_or_else(|| name.clone()),
                });
            }
            ("timerTrigger", "in") => {
                let text = b
                    .schedule
                    .ok_or_else(|| err("the timer has no schedule".into()))?;
                let text = resolve_setting(&text).map_err(err)?;
                let schedule =
                    Schedule::parse(&text).map_err(|e| err(format!("schedule {text:?}: {e}")))?;
                trigger = Some(TriggerBinding::Timer {
                    schedule,
                    run_on_startup: b.run_on_startup,
                    name: b.name,
                });
            }
            ("serviceBusTrigger", "in") => {
                let queue = b
                    .queue_name
                    .ok_or_else(|| err("the trigger names no queueName".into()))?;
                trigger = Some(TriggerBinding::Queue {
                    queue,
                    name: b.name,
                });
            }
            ("serviceBus", "out") => {
                let queue = b
                    .queue_name
                    .ok_or_else(|| err(format!("output {} names no queueName", b.name)))?;
                queue_outputs.insert(b.name, queue);
            }
            ("http", "out") => {}
            (kind, direction) => {
                return Err(err(format!(
                    "binding {} has a type/direction ({kind}/{direction}) this host does not run",
                    b.name
                )));
            }
        }
    }
    let trigger = trigger.ok_or_else(|| err("no trigger binding".into()))?;
    Ok(FunctionDef {
        name,
        trigger,
        queue_outputs,
    })
}

/// Resolves `%Name%` from the environment, as the host does with app settings.
fn resolve_setting(text: &str) -> Result<String, String> {
    match text.strip_prefix('%').and_then(|t| t.strip_suffix('%')) {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("the schedule names the app setting {name}, which is not set")),
        None => Ok(text.to_string()),
    }
}

/// Parses a .NET TimeSpan `hh:mm:ss` (or `d.hh:mm:ss`).
fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts.as_slice() else {
        return None;
    };
    let seconds = days
        .checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(*s)?;
    Some(Duration::from_secs(seconds))
}

/// Matches a request path (below the route prefix) against a route template
/// such as `runs/{id?}`; returns the route parameters when it matches.
pub fn match_route(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let parts: Vec<&str> = template
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut params = BTreeMap::new();
    let mut i = 0;
    for part in &parts {
        let param = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
        match param {
            Some(spec) => {
                let optional = spec.ends_with('?');
                let name = spec
                    .trim_end_matches('?')
                    .split(':')
                    .next()
                    .unwrap_or_default();
                match segments.get(i) {
                    Some(value) => {
                        params.insert(name.to_string(), percent_decode(value)?);
                        i += 1;
                    }
                    None if optional => {}
                    None => return None,
                }
            }
            None => {
                if !segments
                    .get(i)
                    .is_some_and(|s| s.eq_ignore_ascii_case(part))
                {
                    return None;
                }
                i += 1;
            }
        }
    }
    (i == segments.len()).then_some(params)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_parameters_and_optional_tails() {
        let p = match_route("runs/{id?}", "runs/abc").unwrap();
        assert_eq!(p["id"], "abc");
        assert!(match_route("runs/{id?}", "runs").unwrap().is_empty());
        assert!(match_route("runs/{id?}", "runs/a/b").is_none());
        assert_eq!(
            match_route("hooks/{provider}", "hooks/github").unwrap()["provider"],
            "github"
        );
        assert!(match_route("hooks/{provider}", "hooks").is_none());
        assert!(match_route("hooks/{provider}", "other/github").is_none());
        assert_eq!(match_route("a/{x:int}", "a/4%2F2").unwrap()["x"], "4/2");
        assert!(match_route("a/{x}", "a/%zz").is_none());
    }

    #[test]
    fn timespans_parse_as_the_host_writes_them() {
        assert_eq!(parse_timespan("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_timespan("1.02:00:00"),
            Some(Duration::from_secs(93_600))
        );
        assert_eq!(parse_timespan("5"), None);
    }

    fn staged() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::package::package_dir(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            None,
            &dir.path().join("app"),
        )
        .expect("the repository stages");
        dir
    }

    #[test]
    fn the_repository_layout_itself_is_refused_as_the_host_would_index_nothing() {
        let err = FunctionApp::load(Path::new(env!("CARGO_MANIFEST_DIR"))).expect_err("nested");
        assert!(err.message.contains("package --dir"), "{err}");
    }

    #[test]
    fn a_function_json_that_does_not_match_the_handler_is_refused_naming_its_folder() {
        let dir = staged();
        let root = dir.path().join("app");
        let path = root.join("stage-test/function.json");
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"message\"", "\"msg\"")).expect("write");
        let err = FunctionApp::load(&root).expect_err("mismatch");
        assert!(
            err.path.ends_with("stage-test/function.json")
                && err.message.contains("named `message`"),
            "{err}"
        );
    }

    #[test]
    fn the_repository_function_app_loads_and_every_output_names_a_queue_some_function_reads() {
        let dir = staged();
        let app = FunctionApp::load(&dir.path().join("app")).unwrap();
        let mut names: Vec<&str> = app.functions.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        let mut expected = crate::functions::NAMES.to_vec();
        expected.sort();
        assert_eq!(
            names, expected,
            "function.json folders and the handler's functions differ"
        );
        let consumed: Vec<&str> = app
            .functions
            .iter()
            .filter_map(|f| match &f.trigger {
                TriggerBinding::Queue { queue, .. } => Some(queue.as_str()),
                _ => None,
            })
            .collect();
        for f in &app.functions {
            for (binding, queue) in &f.queue_outputs {
                assert!(
                    consumed.contains(&queue.as_str()),
                    "{}: output {binding} feeds {queue}, which no function reads",
                    f.name
                );
            }
        }
    }
}
