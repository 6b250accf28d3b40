//! Telling approvers that a run waits for them: the messages (an Adaptive
//! Card for Teams, an email with HTML and plain-text bodies) and the channels
//! that carry them.
//!
//! Every channel gets the same facts and the same link. Links are bearer
//! secrets: what the run's record keeps of a message has the link replaced
//! by `<link>`. A channel that fails is recorded as failed and the sweeper
//! tries it again; a failure never loses the approval request itself.
//!
//! Channels: the local outbox (files in the data dir, for one-machine use),
//! a Teams Workflows / incoming-webhook URL, and email through Azure
//! Communication Services with an Entra ID token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::approval::{NoticeKind, Notification};
use crate::domain::run::{Run, RunId};
use crate::pages::render;

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

/// The facts every message shows, in order.
fn facts(run: &Run) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Image", run.image.clone()),
        ("Version", run.version.to_string()),
        (
            "Commit",
            run.trigger.commit.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "Trigger",
            format!("{:?} from {}", run.trigger.kind, run.trigger.source),
        ),
        ("Run", run.id.to_string()),
    ];
    if let Some(reason) = &run.trigger.reason {
        facts.push(("Reason", reason.clone()));
    }
    if let Some(build) = &run.build {
        facts.push((
            "Build",
            format!("{} s, log {}", build.duration_seconds, build.log),
        ));
    }
    if !run.checks.is_empty() {
        facts.push(("Tests", run.checks.join("; ")));
    }
    facts
}

fn headline(notice: &Notice<'_>) -> String {
    let run = notice.run;
    match notice.kind {
        NoticeKind::Request => format!("Approve {} {}?", run.image, run.version),
        NoticeKind::Reminder => format!(
            "Reminder: {} {} still waits for you",
            run.image, run.version
        ),
    }
}

/// The Teams message: an Adaptive Card (1.5) whose buttons open the link.
pub fn teams_card(notice: &Notice<'_>) -> Value {
    let facts: Vec<Value> = facts(notice.run)
        .into_iter()
        .map(|(title, value)| json!({ "title": title, "value": value }))
        .collect();
    let deadline = notice.expires_at.format("%Y-%m-%d %H:%M UTC");
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.5",
                "body": [
                    { "type": "TextBlock", "text": headline(notice), "weight": "Bolder", "size": "Medium", "wrap": true },
                    { "type": "TextBlock", "text": format!("{}, your decision is needed before {deadline}.", notice.approver), "wrap": true },
                    { "type": "FactSet", "facts": facts }
                ],
                "actions": [
                    { "type": "Action.OpenUrl", "title": "Approve", "url": format!("{}?decision=approve", notice.url), "style": "positive" },
                    { "type": "Action.OpenUrl", "title": "Reject", "url": format!("{}?decision=reject", notice.url), "style": "destructive" }
                ]
            }
        }]
    })
}

/// An email's subject and bodies.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Email {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (every value escaped).
    pub html: String,
}

/// The HTML body of an approval email (`email.html`).
#[derive(askama::Template)]
#[template(path = "email.html")]
struct EmailHtml<'a> {
    headline: String,
    approver: &'a str,
    deadline: String,
    facts: Vec<(&'static str, String)>,
    url: &'a str,
}

/// The email for `notice`.
pub fn email(notice: &Notice<'_>) -> Email {
    let deadline = notice.expires_at.format("%Y-%m-%d %H:%M UTC");
    let facts = facts(notice.run);
    let mut text = format!(
        "{}\n\n{}, your decision is needed before {deadline}.\n\n",
        headline(notice),
        notice.approver
    );
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!(
        "\nOpen this link to approve or reject (opening it decides nothing):\n{}\n",
        notice.url
    ));
    let html = render(&EmailHtml {
        headline: headline(notice),
        approver: notice.approver,
        deadline: deadline.to_string(),
        facts,
        url: &notice.url,
    });
    Email {
        subject: headline(notice),
        text,
        html,
    }
}

/// Writes every notice (card and email, links included) to files on this machine.
#[derive(Clone, Debug)]
pub struct OutboxChannel {
    dir: PathBuf,
}

impl OutboxChannel {
    /// An outbox in `dir`.
    pub fn new(dir: PathBuf) -> OutboxChannel {
        OutboxChannel { dir }
    }
}

#[async_trait]
impl Channel for OutboxChannel {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, notice: &Notice<'_>) -> Result<Value, String> {
        let note = json!({
            "runId": notice.run.id,
            "approver": notice.approver,
            "kind": notice.kind,
            "url": notice.url,
            "expiresAt": notice.expires_at,
            "teams": teams_card(notice),
            "email": email(notice),
        });
        let file = outbox_file(&self.dir, &notice.run.id, notice.approver);
        let bytes = serde_json::to_vec_pretty(&note).map_err(|e| e.to_string())?;
        // The link is live: only the factory's user may read it.
        crate::private::write_in_dir(&file, bytes)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "approval link for {} on run {}: {}",
            notice.approver, notice.run.id, notice.url
        );
        Ok(note)
    }
}

/// The outbox file (in the outbox folder `dir`) that holds the latest notice
/// to `approver` about run `run_id`.
pub fn outbox_file(dir: &Path, run_id: &RunId, approver: &str) -> PathBuf {
    dir.join(run_id)
        .join(format!("{}.json", file_name(approver)))
}

/// A file name for an approver (email addresses included).
fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Posts the Adaptive Card to a Teams Workflows or incoming-webhook URL.
#[derive(Clone)]
pub struct TeamsChannel {
    url: String,
    http: reqwest::Client,
}

impl TeamsChannel {
    /// A channel posting to `url` (a secret: it is never logged).
    pub fn new(url: String) -> Result<TeamsChannel, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(TeamsChannel { url, http })
    }
}

#[async_trait]
impl Channel for TeamsChannel {
    fn name(&self) -> &'static str {
        "teams"
    }

    async fn send(&self, notice: &Notice<'_>) -> Result<Value, String> {
        let card = teams_card(notice);
        let response = self
            .http
            .post(&self.url)
            .json(&card)
            .send()
            .await
            // The webhook URL is a secret: say what failed, not where.
            .map_err(|e| format!("the Teams webhook did not answer: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the Teams webhook answered {status}"));
        }
        Ok(card)
    }
}

/// Sends the email through Azure Communication Services Email (REST, with an
/// Entra ID token: the identity needs the Communication Services' data role).
#[derive(Clone)]
pub struct EmailChannel {
    endpoint: String,
    sender: String,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
}

/// The Communication Services Email API version the channel speaks.
pub const EMAIL_API_VERSION: &str = "2023-03-31";
/// The scope of Communication Services tokens.
const EMAIL_SCOPE: &str = "https://communication.azure.com/.default";

impl EmailChannel {
    /// A channel sending from `sender` through the resource at `endpoint`.
    pub fn new(
        endpoint: &str,
        sender: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<EmailChannel, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(EmailChannel {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            sender: sender.to_string(),
            credential,
            http,
        })
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, notice: &Notice<'_>) -> Result<Value, String> {
        if !notice.approver.contains('@') {
            return Err(format!("approver {} has no email address", notice.approver));
        }
        let mail = email(notice);
        // The message as the Email API's send operation takes it.
        let message = json!({
            "senderAddress": self.sender,
            "recipients": { "to": [{ "address": notice.approver, "displayName": notice.approver }] },
            "content": { "subject": mail.subject, "plainText": mail.text, "html": mail.html },
            "userEngagementTrackingDisabled": true
        });
        let token = self
            .credential
            .get_token(&[EMAIL_SCOPE], None)
            .await
            .map_err(|e| format!("no token for Communication Services: {e}"))?;
        let response = self
            .http
            .post(format!(
                "{}/emails:send?api-version={EMAIL_API_VERSION}",
                self.endpoint
            ))
            .bearer_auth(token.token.secret())
            .json(&message)
            .send()
            .await
            .map_err(|e| format!("Communication Services did not answer: {}", e.without_url()))?;
        let status = response.status();
        if status.as_u16() != 202 {
            let body: Value = response.json().await.unwrap_or_default();
            let code = body["error"]["code"].as_str().unwrap_or("no error code");
            return Err(format!("Communication Services answered {status} ({code})"));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::run::{Trigger, TriggerKind};
    use crate::domain::version::ImageVersion;

    fn run() -> Run {
        Run::new(
            "push-web-abc".parse().unwrap(),
            "web".into(),
            ImageVersion::new(2026, 1125, 0).unwrap(),
            Trigger {
                commit: Some("<script>alert(1)</script>".into()),
                ..Trigger::new(TriggerKind::Push, "github")
            },
            Default::default(),
            Utc::now(),
        )
    }

    #[test]
    fn the_email_escapes_every_value_and_carries_the_link_in_both_bodies() {
        let run = run();
        let notice = Notice {
            kind: NoticeKind::Request,
            run: &run,
            approver: "alice@contoso.com",
            url: "https://f.example/api/approvals/t0k3n".into(),
            expires_at: Utc::now(),
        };
        let mail = email(&notice);
        assert!(!mail.html.contains("<script>"));
        assert!(mail.html.contains("&#60;script&#62;"));
        assert!(mail.text.contains("https://f.example/api/approvals/t0k3n"));
        assert!(
            mail.html
                .contains("https://f.example/api/approvals/t0k3n?decision=approve")
        );
        assert_eq!(mail.subject, "Approve web 2026.1125.0?");
    }

    #[test]
    fn recorded_payloads_never_hold_the_link() {
        let payload = json!({ "a": "see https://f.example/api/approvals/t0k3n?decision=approve" });
        let redacted = redact(&payload, "https://f.example/api/approvals/t0k3n");
        assert_eq!(redacted["a"], "see <link>?decision=approve");
    }
}
