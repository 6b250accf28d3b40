//! The custom-handler HTTP server: what the Azure Functions host (or the
//! embedded local host) starts and forwards every invocation to.
//!
//! `POST /{function}` takes `{"Data", "Metadata"}` and answers
//! `{"Outputs", "Logs", "ReturnValue"}` with 200, or a non-2xx status when the
//! invocation failed, so the host fails it (and Service Bus redelivers the
//! message). `GET /` answers the host's readiness probe.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::app::App;
use crate::functions::{Function, InvocationError};
use crate::protocol::{InvocationRequest, InvocationResponse, ProtocolError};
use tracing::Instrument;

/// Largest invocation payload accepted (the webhook limit plus the envelope).
const MAX_INVOCATION: usize = 4 * 1024 * 1024;

/// The handler's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { "image-factory custom handler" }))
        .route("/{function}", post(invoke))
        .layer(DefaultBodyLimit::max(MAX_INVOCATION))
        .with_state(app)
}

/// Serves the handler on `listener` until `app.shutdown` is cancelled.
pub async fn serve(listener: TcpListener, app: App) -> std::io::Result<()> {
    let shutdown = app.shutdown.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn invoke(
    State(app): State<App>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let invocation_id = headers
        .get("X-Azure-Functions-InvocationId")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let span =
        tracing::info_span!("invocation", function = %function, invocation_id = %invocation_id);
    handle(&app, &function, &body).instrument(span).await
}

async fn handle(app: &App, function: &str, body: &[u8]) -> Response {
    let request: InvocationRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            return failure(&InvocationError::Malformed(ProtocolError::Invalid {
                name: "invocation".into(),
                message: format!("the body is not a Data/Metadata JSON object: {e}"),
            }));
        }
    };
    let result = match Function::parse(function, &request) {
        Ok(f) => f.apply(app).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(response) => ok(&response),
        Err(e) => failure(&e),
    }
}

fn ok(response: &InvocationResponse) -> Response {
    (StatusCode::OK, axum::Json(response)).into_response()
}

fn failure(error: &InvocationError) -> Response {
    tracing::warn!(status = error.status(), "invocation failed: {error}");
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = InvocationResponse {
        logs: vec![error.to_string()],
        ..InvocationResponse::default()
    };
    (status, axum::Json(body)).into_response()
}
