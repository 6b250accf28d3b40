//! The approve stage: one signed link per approver, recorded on the run by
//! token id only, and sent on every notification channel. A channel that
//! fails is recorded and retried by the sweeper; the run waits for decisions
//! either way, which arrive through the `approval` function.

use chrono::Duration;

use super::StageResult;
use crate::app::App;
use crate::config::ImageConfig;
use crate::domain::approval::{ApprovalRequest, IssuedLink, NoticeKind};
use crate::domain::run::Run;
use crate::notifier::Notice;

pub(super) async fn run(app: &App, run: &Run, image: &ImageConfig) -> StageResult {
    let policy = &image.settings.approval;
    let now = app.now();
    let expires_at = now + Duration::hours(i64::from(policy.expires_hours));
    let mut request = ApprovalRequest {
        approvers: policy.approvers.clone(),
        required: policy.required,
        expires_at,
        links: policy
            .approvers
            .iter()
            .map(|approver| IssuedLink {
                approver: approver.clone(),
                token_id: app.ids.next(),
            })
            .collect(),
        remind_before_hours: policy.remind_before_hours,
        notifications: Vec::new(),
    };
    for link in &request.links {
        let notice = Notice {
            kind: NoticeKind::Request,
            run,
            approver: &link.approver,
            url: app.approval_url(&run.id, link, expires_at),
            expires_at,
        };
        let records = app.notifier.notify(&notice, now, None).await;
        request.notifications.extend(records);
    }
    StageResult::AwaitApproval(request)
}
