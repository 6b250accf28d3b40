//! The local host's HTTP front: serves every HTTP trigger under the route
//! prefix, as `func start` does on port 7071, and turns each request into an
//! invocation of its function, answering with the function's `res` output.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::function_app::{FunctionApp, FunctionDef, TriggerBinding, match_route};
use super::invoker::{Invoked, Invoker, queue_messages};
use crate::protocol::{
    HTTP_OUTPUT, HTTP_TRIGGER, HttpResponseData, InvocationRequest, encode_value,
};

/// Largest request body the front accepts.
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Clone)]
struct Front {
    app: Arc<FunctionApp>,
    invoker: Invoker,
}

/// Serves until `shutdown` is cancelled.
pub(super) async fn serve(
    listener: TcpListener,
    app: Arc<FunctionApp>,
    invoker: Invoker,
    shutdown: CancellationToken,
) {
    let router = Router::new()
        .fallback(front)
        .with_state(Front { app, invoker });
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!("the local host's HTTP front stopped: {e}");
    }
}

async fn front(State(front): State<Front>, request: Request) -> Response {
    let prefix = format!("/{}/", front.app.settings.route_prefix);
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix(&prefix) else {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: HTTP functions are served under /api/",
        );
    };
    let method = request.method().as_str().to_ascii_uppercase();
    let mut route_matched = false;
    let mut found = None;
    for f in &front.app.functions {
        if let TriggerBinding::Http { methods, route } = &f.trigger
            && let Some(params) = match_route(route, rest)
        {
            route_matched = true;
            let allowed = methods.is_empty()
                || methods.contains(&method)
                || (method == "HEAD" && methods.iter().any(|m| m == "GET"));
            if allowed {
                found = Some((f.clone(), params));
                break;
            }
        }
    }
    let Some((function, params)) = found else {
        return if route_matched {
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        } else {
            plain(StatusCode::NOT_FOUND, "no function serves this route")
        };
    };
    let invocation = match http_invocation(request, &params).await {
        Ok(i) => i,
        Err(response) => return response,
    };
    respond(&front, &function, invocation).await
}

/// Builds `Data.req` and `Metadata` as the Functions host does.
async fn http_invocation(
    request: Request,
    params: &BTreeMap<String, String>,
) -> Result<InvocationRequest, Response> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY).await.map_err(|_| {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than 4 MiB",
        )
    })?;
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let url = format!("http://{host}{}", parts.uri);
    let mut query = Map::new();
    if let Some(q) = parts.uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
        for (k, v) in pairs {
            let joined = match query.get(&k).and_then(Value::as_str) {
                Some(existing) => format!("{existing},{v}"),
                None => v,
            };
            query.insert(k, Value::String(joined));
        }
    }
    let mut headers_multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers_multi
            .entry(canonical(name.as_str()))
            .or_default()
            .push(value);
    }
    let mut req = Map::new();
    req.insert("Url".into(), Value::String(url));
    req.insert(
        "Method".into(),
        Value::String(parts.method.as_str().to_string()),
    );
    req.insert("Query".into(), Value::Object(query.clone()));
    req.insert(
        "Headers".into(),
        serde_json::to_value(&headers_multi).unwrap_or(Value::Null),
    );
    if !params.is_empty() {
        req.insert(
            "Params".into(),
            serde_json::to_value(params).unwrap_or(Value::Null),
        );
    }
    req.insert("Identities".into(), Value::Array(Vec::new()));
    // A body that is not UTF-8 is passed on unchanged, in base64, never
    // decoded lossily: a webhook's signature covers the bytes received, and
    // the function checks it before it refuses the body for not being text
    // (see `HttpRequestData::body_bytes` for why Azure's host differs).
    if !body.is_empty() {
        match std::str::from_utf8(&body) {
            Ok(text) => {
                req.insert("Body".into(), Value::String(text.to_string()));
            }
            Err(_) => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
                req.insert("BodyBase64".into(), Value::String(encoded));
            }
        }
    }
    let mut metadata = Map::new();
    metadata.insert("Query".into(), Value::Object(query));
    let single: Map<String, Value> = headers_multi
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.join(","))))
        .collect();
    metadata.insert("Headers".into(), Value::Object(single));
    for (k, v) in params {
        metadata.insert(k.clone(), encode_value(&Value::String(v.clone())));
    }
    let mut data = Map::new();
    data.insert(HTTP_TRIGGER.into(), Value::Object(req));
    Ok(InvocationRequest { data, metadata })
}

async fn respond(front: &Front, function: &FunctionDef, invocation: InvocationRequest) -> Response {
    let response = match front.invoker.invoke(&function.name, invocation).await {
        Invoked::Ok(r) => r,
        Invoked::Failed(reason) => {
            tracing::warn!(function = %function.name, "HTTP invocation failed: {reason}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "the function failed");
        }
    };
    let messages = queue_messages(function, &response);
    if !messages.is_empty()
        && let Err(e) = front.invoker.bus.send(messages).await
    {
        tracing::error!(function = %function.name, "cannot send the function's messages: {e}");
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the function's messages could not be sent",
        );
    }
    let Some(res) = response.outputs.get(HTTP_OUTPUT) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let res: HttpResponseData = match serde_json::from_value(res.clone()) {
        Ok(r) => r,
        Err(_) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the function's res output is not in the expected format",
            );
        }
    };
    let mut out = Response::new(Body::from(res.body));
    *out.status_mut() =
        StatusCode::from_u16(res.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in res.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, message.to_string()).into_response()
}

/// `content-type` → `Content-Type`, as ASP.NET Core presents header names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}
