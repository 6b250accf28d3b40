//! The notification port: telling approvers that a run waits for them.
//!
//! Every channel gets the same facts and the same link. Links are bearer
//! secrets: what the run's record keeps of a message has the link replaced
//! by `<link>`. A channel that fails is recorded as failed and the sweeper
//! tries it again; a failure never loses the approval request itself.
//!
//! Channels: the local outbox (`local::outbox`), a Teams Workflows /
//! incoming-webhook URL (`web::teams`), and email through Azure
//! Communication Services (`azure::email`). What they say is `notices`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::approval::{NoticeKind, Notification};
use crate::domain::run::Run;

/// What one approver is told.
pub struct Notice<'a> {
    /// Request or reminder.
    pub kind: NoticeKind,
    /// The run.
    pub run: &'a Run,
    /// The approver.
    pub approver: &'a str,
    /// Their link (GET shows the decision page).
    pub url: String,
    /// The deadline.
    pub expires_at: DateTime<Utc>,
}

/// A channel that carries notices.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// `teams`, `email`, `outbox`.
    fn name(&self) -> &'static str;
    /// Sends the notice; returns what was sent.
    async fn send(&self, notice: &Notice<'_>) -> Result<Value, String>;
}

/// The configured channels.
#[derive(Clone, Default)]
pub struct Notifier {
    channels: Vec<Arc<dyn Channel>>,
}

impl Notifier {
    /// A notifier over `channels`.
    pub fn new(channels: Vec<Arc<dyn Channel>>) -> Notifier {
        Notifier { channels }
    }

    /// Names of the channels.
    pub fn channel_names(&self) -> Vec<&'static str> {
        self.channels.iter().map(|c| c.name()).collect()
    }

    /// Sends `notice` on every channel (or only on `only`), returning what
    /// the run records: one entry per channel, with the link redacted.
    pub async fn notify(
        &self,
        notice: &Notice<'_>,
        at: DateTime<Utc>,
        only: Option<&str>,
    ) -> Vec<Notification> {
        let mut records = Vec::new();
        for channel in self
            .channels
            .iter()
            .filter(|c| only.is_none_or(|o| o == c.name()))
        {
            let (delivered, error, payload) = match channel.send(notice).await {
                Ok(payload) => (true, None, Some(redact(&payload, &notice.url))),
                Err(e) => {
                    tracing::warn!(run_id = %notice.run.id, channel = channel.name(), "notification failed: {e}");
                    (false, Some(e.replace(&notice.url, "<link>")), None)
                }
            };
            records.push(Notification {
                approver: notice.approver.to_string(),
                channel: channel.name().to_string(),
                kind: notice.kind,
                at,
                delivered,
                error,
                payload,
            });
        }
        records
    }
}

fn redact(payload: &Value, url: &str) -> Value {
    serde_json::from_str(&payload.to_string().replace(url, "<link>")).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::redact;

    #[test]
    fn recorded_payloads_never_hold_the_link() {
        let payload = json!({ "a": "see https://f.example/api/approvals/t0k3n?decision=approve" });
        let redacted = redact(&payload, "https://f.example/api/approvals/t0k3n");
        assert_eq!(redacted["a"], "see <link>?decision=approve");
    }
}
