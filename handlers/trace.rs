//! A run is one end-to-end trace: its trace id is derived from the run id,
//! and every stage span (whichever delivery, instance or worker runs it)
//! takes a parent in that trace, so no context has to travel in messages.
//! The export of the spans is `azure::telemetry`'s.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use sha2::{Digest, Sha256};

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
