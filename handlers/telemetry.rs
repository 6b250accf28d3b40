//! Logs and traces. Every process logs to stderr (JSON under the Functions
//! host, which collects it; compact text locally). With the standard
//! `APPLICATIONINSIGHTS_CONNECTION_STRING` set, spans are also exported to
//! Application Insights; without it nothing is sent.
//!
//! A run is one end-to-end trace: its trace id is derived from the run id, and
//! every stage span (whichever delivery, instance or worker runs it) takes a
//! parent in that trace, so no context has to travel in messages. Spans carry
//! ids (run, stage, attempt, function) and never secrets.

use bytes::Bytes;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::trace::SdkTracerProvider;
use sha2::{Digest, Sha256};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The setting that turns the Application Insights export on.
pub const CONNECTION_STRING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";

/// The installed telemetry; flushes and stops the export when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: JSON or compact logs on stderr, and the
    /// Application Insights export through `http` when `connection_string` is
    /// given (the ingestion endpoint is always HTTPS). Must be called inside
    /// the tokio runtime (the export uses it).
    pub fn install(
        json: bool,
        connection_string: Option<&str>,
        http: reqwest::Client,
    ) -> anyhow::Result<Telemetry> {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let provider = match connection_string {
            Some(cs) => {
                let client = RuntimeClient {
                    http,
                    runtime: tokio::runtime::Handle::try_current()?,
                };
                let exporter =
                    opentelemetry_application_insights::Exporter::new_from_connection_string(
                        cs, client,
                    )
                    .map_err(|e| {
                        anyhow::anyhow!("{CONNECTION_STRING} is not a valid connection string: {e}")
                    })?;
                let resource = opentelemetry_sdk::Resource::builder()
                    .with_service_name("image-factory")
                    .build();
                Some(
                    SdkTracerProvider::builder()
                        .with_resource(resource)
                        .with_batch_exporter(exporter)
                        .build(),
                )
            }
            None => None,
        };
        let otel = provider
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("image-factory")));
        let registry = tracing_subscriber::registry().with(filter).with(otel);
        if json {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_writer(std::io::stderr),
                )
                .try_init()?;
        } else {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .compact()
                        .with_writer(std::io::stderr),
                )
                .try_init()?;
        }
        Ok(Telemetry { provider })
    }

    /// Installs telemetry from the environment.
    pub fn from_env(json: bool) -> anyhow::Result<Telemetry> {
        let cs = std::env::var(CONNECTION_STRING)
            .ok()
            .filter(|v| !v.is_empty());
        Telemetry::install(json, cs.as_deref(), reqwest::Client::new())
    }

    /// Sends what is buffered now.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            tracing::warn!("cannot flush traces: {e}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The trace id of a run: the first 16 bytes of SHA-256 of its id.
pub fn run_trace_id(run_id: &str) -> TraceId {
    let digest = Sha256::digest(run_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(bytes)
}

/// Puts `span` in its run's trace.
pub fn join_run_trace(span: &tracing::Span, run_id: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let digest = Sha256::digest(format!("root:{run_id}").as_bytes());
    let mut root = [0u8; 8];
    root.copy_from_slice(&digest[..8]);
    let parent = SpanContext::new(
        run_trace_id(run_id),
        SpanId::from_bytes(root),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    // Without the export layer there is nothing to join; that is fine.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// Sends the exporter's requests on the tokio runtime, whatever thread the
/// batch processor calls from.
#[derive(Debug, Clone)]
struct RuntimeClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let task = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let response = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let bytes = response.bytes().await?;
            Ok::<_, HttpError>(out.body(bytes)?)
        });
        task.await.map_err(|e| Box::new(e) as HttpError)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_trace_id_is_stable_and_differs_between_runs() {
        assert_eq!(run_trace_id("push-web-abc"), run_trace_id("push-web-abc"));
        assert_ne!(run_trace_id("push-web-abc"), run_trace_id("push-web-abd"));
        assert_ne!(run_trace_id("x"), TraceId::INVALID);
    }
}
