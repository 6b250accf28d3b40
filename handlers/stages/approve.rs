//! The approve stage: one signed link per approver, recorded on the run by
//! token id only, and sent on every notification channel. A channel that
//! fails is recorded and retried by the sweeper; the run waits for decisions
//! either way, which arrive through the `approval` function.

use chrono::{DateTime, Utc};

use super::result::StageResult;
use crate::domain::approval::{ApprovalRequest, Claims, IssuedLink, KeyRing, NoticeKind, deadline};
use crate::domain::image::ImageConfig;
use crate::domain::run::Run;
use crate::ports::clock::Ids;
use crate::ports::notifier::{Notice, Notifier};

/// Signs approval links: the key ring and the factory's public URL.
#[derive(Clone, Copy)]
pub struct ApprovalLinks<'a> {
    /// The signing keys.
    pub keys: &'a KeyRing,
    /// The factory's public base URL.
    pub public_url: &'a str,
}

impl ApprovalLinks<'_> {
    /// The link of an issued approval token. Signing is deterministic, so
    /// the same token id and deadline always give the same link: links are
    /// never stored, and can be sent again (retries, reminders).
    pub fn url(&self, run_id: &str, link: &IssuedLink, expires_at: DateTime<Utc>) -> String {
        let token = self.keys.sign(Claims {
            v: 1,
            kid: String::new(),
            run: run_id.to_string(),
            stage: "approve".into(),
            sub: link.approver.clone(),
            exp: expires_at.timestamp(),
            jti: link.token_id.clone(),
        });
        format!("{}/api/approvals/{token}", self.public_url)
    }
}

pub(super) async fn run(
    notifier: &Notifier,
    links: &ApprovalLinks<'_>,
    ids: &Ids,
    now: DateTime<Utc>,
    run: &Run,
    image: &ImageConfig,
) -> StageResult {
    let policy = &image.settings.approval;
    let Some(expires_at) = deadline(now, policy.expires_hours) else {
        return StageResult::Failed(format!(
            "[approval] expires_hours = {} puts the deadline past the last date the factory can represent; it is at most {} hours",
            policy.expires_hours,
            crate::domain::image::EXPIRES_HOURS.max
        ));
    };
    let mut request = ApprovalRequest {
        approvers: policy.approvers.clone(),
        required: policy.required,
        expires_at,
        links: policy
            .approvers
            .iter()
            .map(|approver| IssuedLink {
                approver: approver.clone(),
                token_id: ids.next(),
            })
            .collect(),
        remind_before_hours: policy.remind_before_hours(),
        notifications: Vec::new(),
    };
    for link in &request.links {
        let notice = Notice {
            kind: NoticeKind::Request,
            run,
            approver: &link.approver,
            url: links.url(&run.id, link, expires_at),
            expires_at,
        };
        let records = notifier.notify(&notice, now, None).await;
        request.notifications.extend(records);
    }
    StageResult::AwaitApproval(request)
}
