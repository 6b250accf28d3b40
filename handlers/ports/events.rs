//! The release-event port: deliver one CloudEvent to one target (an Event
//! Grid topic, a webhook). Delivery records, retries and the sweeper live in
//! [`crate::followups`]; an adapter only sends and says how it went.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::release_event::CloudEvent;

/// How long one delivery may take, connection included.
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a delivery failed: what happened, without secrets, and whether a
/// later attempt may succeed (a receiver that is down, a timeout, a 5xx or
/// 429) or not (a 4xx that retrying cannot mend).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    /// What happened, in words an operator can act on.
    pub message: String,
    /// Whether trying again may help.
    pub transient: bool,
}

impl PublishError {
    /// The error for an HTTP answer with `status` from `what`: 408, 429 and
    /// 5xx are transient; other statuses (a redirect, which is never
    /// followed, 410 Gone, other 4xx) are not.
    pub fn from_status(what: &str, status: u16) -> PublishError {
        let transient = status == 408 || status == 429 || status >= 500;
        let hint = if transient {
            "it will be tried again"
        } else {
            "retrying will not help: check the receiver's configuration (secret, URL, access)"
        };
        PublishError {
            message: format!("{what} answered {status}; {hint}"),
            transient,
        }
    }
}

/// One place release events go.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// The target's name as operators see it on the run: no credentials,
    /// no query string. Unique among the configured publishers.
    fn target(&self) -> &str;

    /// Delivers `event` at `now` (the factory's clock: signatures carry it);
    /// `Ok` once the target accepted it.
    async fn publish(&self, event: &CloudEvent, now: DateTime<Utc>) -> Result<(), PublishError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_timeouts_and_server_errors_are_transient_other_refusals_are_not() {
        for status in [408, 429, 500, 502, 503] {
            assert!(PublishError::from_status("x", status).transient, "{status}");
        }
        for status in [400, 401, 403, 404, 410, 413] {
            assert!(
                !PublishError::from_status("x", status).transient,
                "{status}"
            );
        }
    }
}
