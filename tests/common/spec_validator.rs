//! Every request a loopback Azure fake receives and every reply it gives,
//! checked against Microsoft's own REST API specifications (the third-party
//! folder's `project-fixtures-specs`, pinned in `tests/third-party.toml`) by Microsoft's validator
//! (`oav` 4.0.3, its `LiveValidator` library API), run as one long-lived
//! node child per test process (`tests/oav/validate.js`) that speaks JSON
//! lines over stdin/stdout.
//!
//! A check names the operation (`operationId`), the side (request or
//! response), the JSON path and the rule (`OBJECT_ADDITIONAL_PROPERTIES`,
//! `READONLY_PROPERTY_NOT_ALLOWED_IN_REQUEST`, `OPERATION_NOT_FOUND_IN_CACHE_WITH_API`, ...).
//! Unknown properties, read-only properties in a request, missing required
//! properties, closed enums, formats and the api-version are all checked;
//! an unknown path, method or api-version is reported as a routing failure
//! so that the fake can answer it as Resource Manager does.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

/// The spec files (with their `$ref`s, resolved from disk) the validator loads.
pub const SPECS: &[&str] = &[
    "specification/compute/resource-manager/Microsoft.Compute/GalleryRP/stable/2024-03-03/gallery.json",
    "specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/virtualMachine.json",
    "specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/virtualMachineImage.json",
    "specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/runCommand.json",
    "specification/resources/resource-manager/Microsoft.Resources/stable/2021-04-01/resources.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2024-03-01/virtualNetwork.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2024-03-01/networkInterface.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2024-03-01/networkSecurityGroup.json",
    "specification/network/resource-manager/Microsoft.Network/stable/2024-03-01/publicIpAddress.json",
    "specification/app/resource-manager/Microsoft.App/stable/2025-01-01/Jobs.json",
    "specification/communication/data-plane/Email/stable/2023-03-31/CommunicationServicesEmail.json",
    "specification/web/resource-manager/Microsoft.Web/stable/2024-04-01/WebApps.json",
    "specification/servicebus/resource-manager/Microsoft.ServiceBus/stable/2021-11-01/Queue.json",
    "specification/applicationinsights/data-plane/Monitor.Exporters/preview/v2.1/swagger.json",
];

/// One HTTP exchange as the fake saw it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The method (`GET`, `PUT`, ...).
    pub method: String,
    /// The full URL (`https://management.azure.com/subscriptions/...?api-version=...`).
    pub url: String,
    /// Request headers that matter to the spec (lower-case names).
    pub request_headers: Vec<(String, String)>,
    /// The request's JSON body, `Value::Null` when there is none.
    pub request_body: Value,
    /// The status answered.
    pub status: u16,
    /// Response headers (lower-case names).
    pub response_headers: Vec<(String, String)>,
    /// The response's JSON body, `Value::Null` when there is none.
    pub response_body: Value,
}

/// One rule broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// `request`, `response` or `pair`.
    pub side: String,
    /// oav's error code: the rule.
    pub code: String,
    /// The JSON path in the payload (`/properties/publishingProfile/excludefromLatest`).
    pub path: String,
    /// oav's message.
    pub message: String,
}

/// Why an exchange is not what the specification says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The operation the request matched (`unknownOperationId` when none did).
    pub operation: String,
    /// `METHOD url` of the request.
    pub request: String,
    /// The rules broken.
    pub issues: Vec<Issue>,
}

impl Violation {
    /// True when the request matched no operation of the specs: an unknown
    /// path, method, provider or api-version.
    pub fn is_routing(&self) -> bool {
        self.issues
            .iter()
            .any(|i| i.code.starts_with("OPERATION_NOT_FOUND"))
    }

    /// True when the request (not only the fake's reply) broke a rule.
    pub fn in_request(&self) -> bool {
        self.issues.iter().any(|i| i.side == "request")
    }

    /// True when the api-version is not one the specs define for the provider.
    pub fn is_api_version(&self) -> bool {
        self.issues
            .iter()
            .any(|i| i.code == "OPERATION_NOT_FOUND_IN_CACHE_WITH_API")
    }

    /// The answer Resource Manager gives to such a request: 400 for a bad
    /// api-version or body, 404 for a path or method it does not know.
    pub fn arm_answer(&self) -> (u16, Value) {
        let message = self.to_string();
        if self.is_api_version() {
            (
                400,
                json!({ "error": { "code": "InvalidApiVersionParameter", "message": message } }),
            )
        } else if self.is_routing() {
            (
                404,
                json!({ "error": { "code": "InvalidResourceType", "message": message } }),
            )
        } else {
            (
                400,
                json!({ "error": { "code": "InvalidRequestContent", "message": message } }),
            )
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}):", self.operation, self.request)?;
        for issue in &self.issues {
            write!(
                f,
                " [{} {}: {} ({})]",
                issue.side,
                if issue.path.is_empty() {
                    "/"
                } else {
                    &issue.path
                },
                issue.code,
                issue.message
            )?;
        }
        Ok(())
    }
}

struct Helper {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

fn helper() -> &'static Mutex<Helper> {
    static HELPER: OnceLock<Mutex<Helper>> = OnceLock::new();
    HELPER.get_or_init(|| {
        let root = super::repo_root();
        let script = root.join("tests/oav/validate.js");
        let mut child = Command::new("node")
            .arg(&script)
            .env("SPECS_DIR", specs_dir())
            .args(SPECS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the spec validator (node tests/oav/validate.js; run scripts/setup.sh)");
        let stdin = child.stdin.take().expect("validator stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("validator stdout"));
        // oav logs on stdout while it loads the specs: skip to "ready".
        let mut line = String::new();
        loop {
            line.clear();
            let read = stdout
                .read_line(&mut line)
                .expect("read the spec validator");
            assert!(read > 0, "the spec validator exited before it was ready");
            if line.trim() == "ready" {
                break;
            }
        }
        Mutex::new(Helper {
            _child: child,
            stdin,
            stdout,
            next_id: 0,
        })
    })
}

/// The folder the specifications' paths (`specification/...`) are relative to.
pub fn specs_dir() -> std::path::PathBuf {
    super::third_party("project-fixtures-specs")
}

/// An example of the specifications (`examples/...json` next to a spec),
/// by its path under [`specs_dir`]: fake replies are taken from them.
pub fn example(path: &str) -> Value {
    let file = specs_dir().join(path);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("read the example {}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("the example {path} is not JSON: {e}"))
}

/// Starts the validator (once per test process) and waits until it has
/// loaded the specifications, so that no request waits for that.
pub async fn ready() {
    tokio::task::spawn_blocking(|| {
        helper();
    })
    .await
    .expect("start the spec validator");
}

fn headers(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect(),
    )
}

/// Checks one exchange against the operation it addresses in [`SPECS`];
/// answers that operation's id.
pub fn check(exchange: &Exchange) -> Result<String, Violation> {
    let mut helper = helper().lock().unwrap_or_else(|e| e.into_inner());
    helper.next_id += 1;
    let id = helper.next_id;
    let mut request_headers = exchange.request_headers.clone();
    if !exchange.request_body.is_null() {
        request_headers.push(("content-type".into(), "application/json".into()));
    }
    let mut response_headers = exchange.response_headers.clone();
    if !exchange.response_body.is_null() {
        response_headers.push(("content-type".into(), "application/json".into()));
    }
    let line = json!({
        "id": id,
        "request": {
            "method": exchange.method,
            "url": exchange.url,
            "headers": headers(&request_headers),
            "body": exchange.request_body,
        },
        "response": {
            "status": exchange.status,
            "headers": headers(&response_headers),
            "body": exchange.response_body,
        },
    });
    writeln!(helper.stdin, "{line}").expect("write to the spec validator");
    helper.stdin.flush().expect("flush the spec validator");
    let answer: Value = loop {
        let mut text = String::new();
        let read = helper
            .stdout
            .read_line(&mut text)
            .expect("read the spec validator");
        assert!(read > 0, "the spec validator exited");
        if let Ok(value) = serde_json::from_str::<Value>(text.trim())
            && value.get("id") == Some(&json!(id))
        {
            break value;
        }
    };
    let operation = answer["operationId"]
        .as_str()
        .unwrap_or("unknownOperationId")
        .to_string();
    if answer["ok"] == json!(true) {
        return Ok(operation);
    }
    let issues: Vec<Issue> = answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Issue {
            side: e["side"].as_str().unwrap_or_default().to_string(),
            code: e["code"].as_str().unwrap_or_default().to_string(),
            path: e["path"].as_str().unwrap_or_default().to_string(),
            message: e["message"].as_str().unwrap_or_default().to_string(),
        })
        // Some operations (VirtualMachines_RunCommand) declare no error
        // response; Resource Manager still answers errors in its common
        // error shape, which is checked instead.
        .filter(|i| {
            !(i.code == "INVALID_RESPONSE_CODE"
                && exchange.status >= 400
                && is_arm_error(&exchange.response_body))
        })
        .collect();
    if issues.is_empty() {
        return Ok(operation);
    }
    Err(Violation {
        operation,
        request: format!("{} {}", exchange.method, exchange.url),
        issues,
    })
}

/// Resource Manager's common error shape: `{"error": {"code", "message"}}`
/// with string code and message.
fn is_arm_error(body: &Value) -> bool {
    body.get("error").is_some_and(|e| {
        e.get("code").is_some_and(Value::is_string)
            && e.get("message").is_some_and(Value::is_string)
    })
}

/// The violations a fake recorded; panics (failing the test) when the fake
/// is dropped with any, unless the test is already failing.
#[derive(Clone, Default)]
pub struct Violations(std::sync::Arc<Mutex<Vec<Violation>>>);

impl Violations {
    /// Records one.
    pub fn push(&self, violation: Violation) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(violation);
    }

    /// Every violation so far; empties the record (a test that provokes
    /// violations on purpose takes them so).
    pub fn take(&self) -> Vec<Violation> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Panics with every violation recorded, naming the operation, path and rule.
    pub fn assert_none(&self) {
        let all = self.take();
        if !all.is_empty() && !std::thread::panicking() {
            let lines: Vec<String> = all.iter().map(Violation::to_string).collect();
            panic!(
                "the Azure fake saw exchanges the REST API specifications refuse:\n{}",
                lines.join("\n")
            );
        }
    }
}
