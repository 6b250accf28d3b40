//! Release events to plain webhooks, signed as the Standard Webhooks
//! specification says: `webhook-id` (the event's id, the same on every
//! retry), `webhook-timestamp` (Unix seconds, from the factory's clock) and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! made by the specification's own `standardwebhooks` crate). The body is the
//! CloudEvent in structured JSON form (`application/cloudevents+json`).
//!
//! Receivers refuse forgeries (the signature) and replays (the timestamp's
//! tolerance, and the id for duplicates). Each request has a short timeout
//! and follows no redirect, so a receiver that is down or slow costs a
//! release nothing: the delivery is recorded failed and retried.

use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::Url;
use standardwebhooks::Webhook;

use crate::domain::release_event::CloudEvent;

use crate::ports::events::{DELIVERY_TIMEOUT, PublishError, Publisher};

/// The webhook settings: `IMAGE_FACTORY_EVENT_WEBHOOKS` (https URLs,
/// separated by commas or spaces; http only to a loopback host) and
/// `IMAGE_FACTORY_EVENT_WEBHOOK_SECRET` (`whsec_<base64>` of 24 to 64 bytes).
#[derive(Clone)]
pub struct WebhookSettings {
    /// Where events go.
    pub urls: Vec<Url>,
    /// The signing secret, as configured (`whsec_...`).
    secret: String,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("urls", &self.urls.iter().map(redacted).collect::<Vec<_>>())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why the webhook settings are refused. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSettingsError {
    /// A URL that does not parse or is not https (or http to loopback).
    #[error(
        "IMAGE_FACTORY_EVENT_WEBHOOKS: `{0}` is not an https URL (http is accepted only for 127.0.0.1, ::1 and localhost)"
    )]
    Url(String),
    /// URLs without a secret.
    #[error(
        "IMAGE_FACTORY_EVENT_WEBHOOKS is set but IMAGE_FACTORY_EVENT_WEBHOOK_SECRET is not: set a whsec_<base64> secret of 24 to 64 bytes (e.g. `whsec_$(openssl rand -base64 32)`)"
    )]
    NoSecret,
    /// A secret that is not `whsec_` and base64 of 24 to 64 bytes.
    #[error(
        "IMAGE_FACTORY_EVENT_WEBHOOK_SECRET is not whsec_ followed by the base64 of 24 to 64 bytes (e.g. `whsec_$(openssl rand -base64 32)`)"
    )]
    Secret,
}

impl WebhookSettings {
    /// Reads the settings through `var`; `None` when no webhook is listed.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<WebhookSettings>, WebhookSettingsError> {
        let Some(list) = var("IMAGE_FACTORY_EVENT_WEBHOOKS").filter(|v| !v.trim().is_empty())
        else {
            return Ok(None);
        };
        let mut urls: Vec<Url> = Vec::new();
        for url in list.split([',', ' ', '\n', '\t']).filter(|s| !s.is_empty()) {
            let url = parse_url(url)?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        let secret = var("IMAGE_FACTORY_EVENT_WEBHOOK_SECRET")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(WebhookSettingsError::NoSecret)?;
        let key = secret
            .strip_prefix("whsec_")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or(WebhookSettingsError::Secret)?;
        if !(24..=64).contains(&key.len()) {
            return Err(WebhookSettingsError::Secret);
        }
        Ok(Some(WebhookSettings { urls, secret }))
    }

    /// One publisher per URL. Two URLs that differ only in what is hidden
    /// (a token in the query) get distinct names: `#2`, `#3`, ...
    pub fn publishers(&self) -> Result<Vec<WebhookPublisher>, String> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let mut names: Vec<String> = Vec::new();
        self.urls
            .iter()
            .map(|url| {
                let name = format!("webhook {}", redacted(url));
                let same = names.iter().filter(|n| **n == name).count();
                names.push(name.clone());
                Ok(WebhookPublisher {
                    target: if same == 0 {
                        name
                    } else {
                        format!("{name} #{}", same + 1)
                    },
                    url: url.clone(),
                    signer: Webhook::new(&self.secret)
                        .map_err(|_| WebhookSettingsError::Secret.to_string())?,
                    http: http.clone(),
                })
            })
            .collect()
    }
}

fn parse_url(text: &str) -> Result<Url, WebhookSettingsError> {
    let refuse = || WebhookSettingsError::Url(redacted_text(text));
    let url = Url::parse(text).map_err(|_| refuse())?;
    if super::address::https_or_loopback(&url) {
        Ok(url)
    } else {
        Err(refuse())
    }
}

/// A URL as operators may see it: scheme, host, port and path; no user
/// information, query or fragment (they may hold tokens).
pub fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = if url.query().is_some() || !url.username().is_empty() || url.password().is_some()
    {
        " (credentials hidden)"
    } else {
        ""
    };
    format!("{}://{host}{port}{}{hidden}", url.scheme(), url.path())
}

/// A refused URL's text cut before anything that may be a credential.
fn redacted_text(text: &str) -> String {
    match Url::parse(text) {
        Ok(url) => redacted(&url),
        Err(_) => text
            .split(['?', '@', '#'])
            .next()
            .unwrap_or_default()
            .chars()
            .take(80)
            .collect(),
    }
}

/// Delivers events to one webhook.
pub struct WebhookPublisher {
    target: String,
    url: Url,
    signer: Webhook,
    http: reqwest::Client,
}

#[async_trait]
impl Publisher for WebhookPublisher {
    fn target(&self) -> &str {
        &self.target
    }

    async fn publish(&self, event: &CloudEvent, now: DateTime<Utc>) -> Result<(), PublishError> {
        let body = serde_json::to_vec(event).map_err(|e| PublishError {
            message: format!("cannot encode the event: {e}"),
            transient: false,
        })?;
        let timestamp = now.timestamp();
        let signature =
            self.signer
                .sign(&event.id, timestamp, &body)
                .map_err(|e| PublishError {
                    message: format!("cannot sign the event: {e}"),
                    transient: false,
                })?;
        let response = self
            .http
            .post(self.url.clone())
            .header(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &event.id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, timestamp)
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| PublishError {
                // `without_url`: the URL may hold a token in its query.
                message: format!("{} did not answer: {}", self.target, e.without_url()),
                transient: true,
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(PublishError::from_status(&self.target, status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn webhooks_are_https_or_loopback_http_with_a_whsec_secret() {
        let settings = WebhookSettings::from_vars(vars(&[
            (
                "IMAGE_FACTORY_EVENT_WEBHOOKS",
                "https://hooks.example/a?token=s3cret, http://127.0.0.1:8080/in",
            ),
            ("IMAGE_FACTORY_EVENT_WEBHOOK_SECRET", SECRET),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(settings.urls.len(), 2);
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("MfKQ9r8"),
            "{shown}"
        );
        let targets: Vec<String> = settings
            .publishers()
            .unwrap()
            .iter()
            .map(|p| p.target().to_string())
            .collect();
        assert_eq!(
            targets,
            [
                "webhook https://hooks.example/a (credentials hidden)",
                "webhook http://127.0.0.1:8080/in"
            ]
        );
        let twice = WebhookSettings::from_vars(vars(&[
            (
                "IMAGE_FACTORY_EVENT_WEBHOOKS",
                "https://h.example/a?t=1 https://h.example/a?t=2,https://h.example/a?t=1",
            ),
            ("IMAGE_FACTORY_EVENT_WEBHOOK_SECRET", SECRET),
        ]))
        .unwrap()
        .unwrap();
        let names: Vec<String> = twice
            .publishers()
            .unwrap()
            .iter()
            .map(|p| p.target().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "webhook https://h.example/a (credentials hidden)",
                "webhook https://h.example/a (credentials hidden) #2"
            ],
            "a repeated URL is one target; names stay distinct"
        );
        assert!(WebhookSettings::from_vars(vars(&[])).unwrap().is_none());
    }

    #[test]
    fn bad_urls_and_secrets_are_refused_without_showing_credentials() {
        for (urls, secret, expected) in [
            ("http://hooks.example/a", SECRET, "is not an https URL"),
            ("ftp://127.0.0.1/a", SECRET, "is not an https URL"),
            ("not a url", SECRET, "is not an https URL"),
            ("https://hooks.example/a", "", "is set but"),
            (
                "https://hooks.example/a",
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_",
            ),
            ("https://hooks.example/a", "whsec_c2hvcnQ=", "whsec_"),
            ("https://hooks.example/a", "whsec_%%%", "whsec_"),
        ] {
            let error = WebhookSettings::from_vars(vars(&[
                ("IMAGE_FACTORY_EVENT_WEBHOOKS", urls),
                ("IMAGE_FACTORY_EVENT_WEBHOOK_SECRET", secret),
            ]))
            .unwrap_err()
            .to_string();
            assert!(error.contains(expected), "{urls} {secret}: {error}");
            assert!(
                !error.contains("MfKQ9r8") && !error.contains("c2hvcnQ"),
                "{error}"
            );
        }
        let error = WebhookSettings::from_vars(vars(&[
            (
                "IMAGE_FACTORY_EVENT_WEBHOOKS",
                "http://user:pw@hooks.example/a?t=tok",
            ),
            ("IMAGE_FACTORY_EVENT_WEBHOOK_SECRET", SECRET),
        ]))
        .unwrap_err()
        .to_string();
        assert!(!error.contains("pw") && !error.contains("tok"), "{error}");
    }
}
