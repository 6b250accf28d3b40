//! Release events to an Event Grid custom topic, with the factory's Entra
//! identity: the data plane's `PublishCloudEventEvents` operation (`POST
//! https://<topic host>/api/events?api-version=2018-01-01`, content type
//! `application/cloudevents-batch+json; charset=utf-8`, a batch of one
//! event), a bearer token for `https://eventgrid.azure.net/.default`; no
//! access keys. The identity needs the `EventGrid Data Sender` role on the
//! topic (infra/modules/events.bicep).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use chrono::{DateTime, Utc};
use reqwest::Url;

use crate::domain::release_event::CloudEvent;
use crate::ports::events::{PublishError, Publisher};

/// The data plane's API version.
pub const API_VERSION: &str = "2018-01-01";
/// The scope of Event Grid data-plane tokens.
pub const SCOPE: &str = "https://eventgrid.azure.net/.default";
/// The content type of a batch of CloudEvents.
pub const CONTENT_TYPE: &str = "application/cloudevents-batch+json; charset=utf-8";

/// `IMAGE_FACTORY_EVENT_GRID_ENDPOINT`: the topic's endpoint as the portal
/// shows it (`https://<topic>.<region>-1.eventgrid.azure.net/api/events`;
/// the `/api/events` may be left out). http only to a loopback host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventGridSettings {
    /// `https://<topic host>/api/events`.
    pub endpoint: Url,
}

impl EventGridSettings {
    /// Reads the setting through `var`; `None` when it is not set.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(text) = var("IMAGE_FACTORY_EVENT_GRID_ENDPOINT").filter(|v| !v.trim().is_empty())
        else {
            return Ok(None);
        };
        let refuse = || {
            format!(
                "IMAGE_FACTORY_EVENT_GRID_ENDPOINT `{}` is not a topic endpoint: give https://<topic>.<region>-1.eventgrid.azure.net/api/events",
                text.trim().split(['?', '@']).next().unwrap_or_default()
            )
        };
        let mut url = Url::parse(text.trim()).map_err(|_| refuse())?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        if !scheme_ok || url.query().is_some() || !url.username().is_empty() {
            return Err(refuse());
        }
        match url.path().trim_end_matches('/') {
            "" => url.set_path("/api/events"),
            "/api/events" => url.set_path("/api/events"),
            _ => return Err(refuse()),
        }
        Ok(Some(EventGridSettings { endpoint: url }))
    }
}

/// Publishes to one topic.
pub struct EventGridPublisher {
    target: String,
    url: Url,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
}

impl EventGridPublisher {
    /// A publisher to the topic of `settings` as `credential`.
    pub fn new(
        settings: &EventGridSettings,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<EventGridPublisher, String> {
        let http = reqwest::Client::builder()
            .timeout(crate::ports::events::DELIVERY_TIMEOUT)
            .connect_timeout(crate::ports::events::DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the Event Grid client: {e}"))?;
        let mut url = settings.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        Ok(EventGridPublisher {
            target: format!("event-grid {}", settings.endpoint.host_str().unwrap_or("")),
            url,
            credential,
            http,
        })
    }
}

#[async_trait]
impl Publisher for EventGridPublisher {
    fn target(&self) -> &str {
        &self.target
    }

    async fn publish(&self, event: &CloudEvent, _now: DateTime<Utc>) -> Result<(), PublishError> {
        let token = self
            .credential
            .get_token(&[SCOPE], None)
            .await
            .map_err(|e| PublishError {
                message: format!("no Event Grid token for the factory's identity: {e}"),
                transient: true,
            })?;
        let body = serde_json::to_vec(&[event]).map_err(|e| PublishError {
            message: format!("cannot encode the event: {e}"),
            transient: false,
        })?;
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(token.token.secret())
            .header("content-type", CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .map_err(|e| PublishError {
                message: format!("{} did not answer: {}", self.target, e.without_url()),
                transient: true,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut error = PublishError::from_status(&self.target, status.as_u16());
        if status.as_u16() == 401 || status.as_u16() == 403 {
            error.message.push_str(
                " (does the factory's identity hold the EventGrid Data Sender role on the topic?)",
            );
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_topics_api_events_url() {
        let read = |v: &str| {
            EventGridSettings::from_vars(|_| Some(v.to_string()))
                .map(|s| s.map(|s| s.endpoint.to_string()))
        };
        let expected = "https://t1.westus2-1.eventgrid.azure.net/api/events";
        assert_eq!(read(expected).unwrap().as_deref(), Some(expected));
        assert_eq!(
            read("https://t1.westus2-1.eventgrid.azure.net")
                .unwrap()
                .as_deref(),
            Some(expected)
        );
        for bad in [
            "http://t1.westus2-1.eventgrid.azure.net/api/events",
            "https://t1.westus2-1.eventgrid.azure.net/api/events?aeg-sas-key=secret",
            "https://t1.westus2-1.eventgrid.azure.net/other",
            "t1.westus2-1.eventgrid.azure.net",
        ] {
            let error = read(bad).unwrap_err();
            assert!(!error.contains("secret"), "{error}");
        }
        assert_eq!(EventGridSettings::from_vars(|_| None), Ok(None));
    }
}
