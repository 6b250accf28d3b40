//! The email channel: Azure Communication Services Email (REST), signed in
//! with the factory's Entra ID identity.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use serde_json::{Value, json};

use super::SettingError;
use crate::domain::approvers::Directory;
use crate::notifier::email;
use crate::ports::notifier::{Channel, Notice};

/// Where approval emails are sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    /// The Communication Services resource, `https://<name>.communication.azure.com`.
    pub endpoint: String,
    /// The verified sender address (`DoNotReply@<domain>`).
    pub sender: String,
}

impl EmailSettings {
    /// Reads `IMAGE_FACTORY_EMAIL_ENDPOINT` and `IMAGE_FACTORY_EMAIL_SENDER`
    /// through `var`: both or neither.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<EmailSettings>, SettingError> {
        match (
            var("IMAGE_FACTORY_EMAIL_ENDPOINT"),
            var("IMAGE_FACTORY_EMAIL_SENDER"),
        ) {
            (Some(endpoint), Some(sender)) => Ok(Some(EmailSettings { endpoint, sender })),
            (None, None) => Ok(None),
            _ => Err(SettingError {
                name: "IMAGE_FACTORY_EMAIL_ENDPOINT",
                message: "set both IMAGE_FACTORY_EMAIL_ENDPOINT and IMAGE_FACTORY_EMAIL_SENDER, or neither".into(),
            }),
        }
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
    /// Who the approvers are (`IMAGE_FACTORY_APPROVERS`): their addresses.
    approvers: Directory,
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
            approvers: Directory::default(),
        })
    }

    /// The same channel, reaching the approvers `approvers` maps by their
    /// addresses.
    pub fn with_approvers(self, approvers: Directory) -> EmailChannel {
        EmailChannel { approvers, ..self }
    }
}

/// The address that reaches `approver`: the directory's, or the name
/// itself when it is one.
fn recipient(approvers: &Directory, approver: &str) -> Result<String, String> {
    approvers
        .identity(approver)
        .email()
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "approver {approver} has no email address: name them by address in image.toml, or map them in IMAGE_FACTORY_APPROVERS (name=address)"
            )
        })
}

#[async_trait]
impl Channel for EmailChannel {
    fn name(&self) -> &'static str {
        "email"
    }

    async fn send(&self, notice: &Notice<'_>) -> Result<Value, String> {
        let address = recipient(&self.approvers, notice.approver)?;
        let mail = email(notice);
        // The message as the Email API's send operation takes it.
        let message = json!({
            "senderAddress": self.sender,
            "recipients": { "to": [{ "address": address, "displayName": notice.approver }] },
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

    #[test]
    fn an_approver_is_reached_at_their_own_address_or_the_one_the_directory_maps() {
        let approvers = Directory::parse(
            "platform-lead=alice@contoso.com,sec=5b5450db-eb26-4c1a-981c-ba1d25f0483d",
        )
        .unwrap();
        assert_eq!(
            recipient(&approvers, "platform-lead").unwrap(),
            "alice@contoso.com"
        );
        assert_eq!(
            recipient(&approvers, "bob@contoso.com").unwrap(),
            "bob@contoso.com"
        );
        for unreachable in ["sec", "qa"] {
            let err = recipient(&approvers, unreachable).unwrap_err();
            assert!(
                err.contains(&format!("approver {unreachable} has no email address"))
                    && err.contains("IMAGE_FACTORY_APPROVERS"),
                "{err}"
            );
        }
    }
}
