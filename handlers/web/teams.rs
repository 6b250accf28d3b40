//! The Teams channel: posts the approval Adaptive Card to a Teams Workflows
//! or incoming-webhook URL.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::notifier::teams_card;
use crate::ports::notifier::{Channel, Notice};

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
