//! An Event Grid custom topic's data plane on loopback, checked against the
//! vendored specification (`eventgrid/data-plane/Microsoft.EventGrid/stable/
//! 2018-01-01/EventGrid.json`, pinned in `tests/third-party.toml`).
//!
//! `oav` cannot route this specification: its three publish operations are
//! overloads of one path (`x-ms-paths` keys `?overload=...`) and the
//! validator picks `PublishEventGridEvents` for every POST. So the fake reads
//! the `PublishCloudEventEvents` operation from the same file and checks each
//! request against it: the method, the `/api/events` path of the topic
//! endpoint, the `api-version` of the operation's API (`info.version`), the
//! content type the operation `consumes`, and the body against the
//! operation's body schema (an array of `CloudEventEvent`, with the file's
//! definitions) by a JSON Schema validator with formats checked. The answer
//! is one of the operation's declared responses (`200`, no body). Requests
//! without the bearer token the identity stand-in issued for Event Grid are
//! answered 401, as the service answers them.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// The specification file, under [`super::spec_validator::specs_dir`].
pub const SPEC: &str =
    "specification/eventgrid/data-plane/Microsoft.EventGrid/stable/2018-01-01/EventGrid.json";

/// What the topic received.
#[derive(Clone, Default)]
pub struct Topic {
    /// The batches accepted.
    pub accepted: Arc<Mutex<Vec<Value>>>,
    /// Every refusal: status and why.
    pub refused: Arc<Mutex<Vec<(u16, String)>>>,
    token: String,
}

/// The operation the fake checks requests against, read from [`SPEC`].
struct Operation {
    api_version: String,
    consumes: String,
    body: jsonschema::Validator,
}

fn operation() -> &'static Operation {
    static OPERATION: std::sync::OnceLock<Operation> = std::sync::OnceLock::new();
    OPERATION.get_or_init(|| {
        let spec = super::spec_validator::example(SPEC);
        let op = &spec["x-ms-paths"]["?overload=cloudEvent"]["post"];
        assert_eq!(op["operationId"], "PublishCloudEventEvents");
        let body = op["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["in"] == "body"))
            .expect("the operation's body parameter");
        let mut schema = body["schema"].clone();
        schema["definitions"] = spec["definitions"].clone();
        Operation {
            api_version: spec["info"]["version"].as_str().unwrap().to_string(),
            consumes: op["consumes"][0].as_str().unwrap().to_string(),
            body: jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .should_validate_formats(true)
                .build(&schema)
                .expect("the operation's body schema compiles"),
        }
    })
}

impl Topic {
    /// A topic accepting only `Bearer <token>`.
    pub fn accepting(token: &str) -> Topic {
        Topic {
            token: token.to_string(),
            ..Topic::default()
        }
    }

    /// Checks one request against the operation; answers the status and why.
    pub fn check(
        &self,
        query: &std::collections::BTreeMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), (u16, String)> {
        let op = operation();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        if header("authorization") != format!("Bearer {}", self.token) {
            return Err((
                401,
                "no bearer token of the factory's identity for Event Grid".into(),
            ));
        }
        if query.get("api-version").map(String::as_str) != Some(op.api_version.as_str()) {
            return Err((
                400,
                format!("api-version must be {}: {query:?}", op.api_version),
            ));
        }
        if header("content-type") != op.consumes {
            return Err((
                400,
                format!(
                    "content type {:?} is not {:?}",
                    header("content-type"),
                    op.consumes
                ),
            ));
        }
        let batch: Value =
            serde_json::from_slice(body).map_err(|e| (400, format!("not JSON: {e}")))?;
        let errors: Vec<String> = op
            .body
            .iter_errors(&batch)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return Err((
                400,
                format!(
                    "PublishCloudEventEvents refuses the body: {}",
                    errors.join("; ")
                ),
            ));
        }
        Ok(())
    }

    /// Serves on loopback; answers the topic endpoint (`http://127.0.0.1:<port>/api/events`).
    pub async fn serve(&self) -> String {
        let app = Router::new()
            .route("/api/events", post(publish))
            .with_state(self.clone());
        format!("{}/api/events", super::serve_loopback(app).await)
    }
}

async fn publish(
    State(topic): State<Topic>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    match topic.check(&query, &headers, &body) {
        Ok(()) => {
            let batch: Value = serde_json::from_slice(&body).unwrap_or_default();
            topic.accepted.lock().unwrap().push(batch);
            (StatusCode::OK, String::new())
        }
        Err((status, why)) => {
            topic.refused.lock().unwrap().push((status, why.clone()));
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                json!({ "error": { "code": "BadRequest", "message": why } }).to_string(),
            )
        }
    }
}
