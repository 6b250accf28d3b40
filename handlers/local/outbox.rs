//! The outbox: the local notification channel. Every notice (the Teams card
//! and the email, links included) is written to a file in the data folder,
//! private to the factory's user, where `image-factory approvals links` and
//! the operator find it: `outbox/<run>/<approver>.json` for an approval
//! request or reminder, `outbox/<run>/schedule-paused.<recipient>.json` for
//! the notice that the run's failure paused its image's scheduled runs.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::domain::approval::NoticeKind;
use crate::domain::run::RunId;
use crate::notifier::{email, teams_card};
use crate::ports::notifier::{Channel, Notice};

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
        let name = match notice.kind {
            NoticeKind::Paused => paused_name(notice.approver),
            NoticeKind::Request | NoticeKind::Reminder => notice.approver.to_string(),
        };
        let file = outbox_file(&self.dir, &notice.run.id, &name);
        let bytes = serde_json::to_vec_pretty(&note).map_err(|e| e.to_string())?;
        // The link is live: only the factory's user may read it.
        crate::private::write_in_dir(&file, bytes)
            .await
            .map_err(|e| e.to_string())?;
        match notice.kind {
            NoticeKind::Paused => println!(
                "scheduled runs of {} paused after run {}: {} told ({})",
                notice.run.image, notice.run.id, notice.approver, notice.url
            ),
            NoticeKind::Request | NoticeKind::Reminder => println!(
                "approval link for {} on run {}: {}",
                notice.approver, notice.run.id, notice.url
            ),
        }
        Ok(note)
    }
}

/// The name under which the outbox keeps the notice telling `recipient`
/// that a run's failure paused its image's scheduled runs: beside that
/// run's approval notices, never in their place.
pub fn paused_name(recipient: &str) -> String {
    format!("schedule-paused.{recipient}")
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
