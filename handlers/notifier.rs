//! The notifier port: telling approvers that a run waits for them.
//!
//! The local adapter writes each approver's notification to the local outbox
//! (`<data dir>/outbox/<run>/<approver>.json`) and logs the links, so that a
//! person running the factory on one machine can click them. Links are bearer
//! secrets: they never go into the run's record, only their token ids do.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::run::Run;

/// One approver's link.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalLink {
    /// Who it is for.
    pub approver: String,
    /// The link (GET shows the decision page).
    pub url: String,
}

/// Tells approvers about runs waiting for them.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends each approver their link.
    async fn approval_requested(
        &self,
        run: &Run,
        links: &[ApprovalLink],
        expires_at: DateTime<Utc>,
    ) -> Result<(), std::io::Error>;
}

/// Writes notifications to files on this machine.
#[derive(Clone, Debug)]
pub struct OutboxNotifier {
    dir: PathBuf,
}

impl OutboxNotifier {
    /// An outbox in `dir`.
    pub fn new(dir: PathBuf) -> OutboxNotifier {
        OutboxNotifier { dir }
    }
}

#[async_trait]
impl Notifier for OutboxNotifier {
    async fn approval_requested(
        &self,
        run: &Run,
        links: &[ApprovalLink],
        expires_at: DateTime<Utc>,
    ) -> Result<(), std::io::Error> {
        let dir = self.dir.join(&run.id);
        tokio::fs::create_dir_all(&dir).await?;
        for link in links {
            let note = serde_json::json!({
                "runId": run.id,
                "image": run.image,
                "version": run.version,
                "commit": run.trigger.commit,
                "approver": link.approver,
                "url": link.url,
                "expiresAt": expires_at,
            });
            let file = dir.join(format!("{}.json", sanitize(&link.approver)));
            tokio::fs::write(&file, serde_json::to_vec_pretty(&note)?).await?;
            tracing::info!(
                run_id = %run.id,
                approver = %link.approver,
                file = %file.display(),
                "approval requested; the approver's link is in the local outbox"
            );
            println!(
                "approval link for {} on run {}: {}",
                link.approver, run.id, link.url
            );
        }
        Ok(())
    }
}

/// A file name for an approver (email addresses included).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '@' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
