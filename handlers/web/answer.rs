//! What the git hosts answer when they refuse: GitHub and Azure DevOps both
//! put the reason in the `message` of their error body.

/// The `message` of a GitHub or Azure DevOps error answer (both put it
/// there), cut to 300 characters, or the status's reason.
pub(super) async fn answer_message(response: reqwest::Response) -> String {
    let reason = response
        .status()
        .canonical_reason()
        .unwrap_or("no reason")
        .to_string();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["message"]
        .as_str()
        .map(|m| m.chars().take(300).collect())
        .unwrap_or(reason)
}
