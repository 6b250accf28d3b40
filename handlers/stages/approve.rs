//! The approve stage: one signed link per approver, recorded on the run by
//! token id only, and handed to the notifier. The run then waits for
//! decisions, which arrive through the `approval` function.

use chrono::Duration;

use super::StageResult;
use crate::app::App;
use crate::config::ImageConfig;
use crate::domain::approval::{ApprovalRequest, Claims, IssuedLink};
use crate::domain::run::Run;
use crate::notifier::ApprovalLink;

pub(super) async fn run(app: &App, run: &Run, image: &ImageConfig) -> StageResult {
    let policy = &image.settings.approval;
    let expires_at = app.now() + Duration::hours(i64::from(policy.expires_hours));
    let mut issued = Vec::new();
    let mut links = Vec::new();
    for approver in &policy.approvers {
        let token_id = crate::app::new_id();
        let token = app.keys.sign(Claims {
            v: 1,
            kid: String::new(),
            run: run.id.clone(),
            stage: "approve".into(),
            sub: approver.clone(),
            exp: expires_at.timestamp(),
            jti: token_id.clone(),
        });
        issued.push(IssuedLink {
            approver: approver.clone(),
            token_id,
        });
        links.push(ApprovalLink {
            approver: approver.clone(),
            url: format!("{}/api/approvals/{token}", app.settings.public_url),
        });
    }
    if let Err(e) = app
        .notifier
        .approval_requested(run, &links, expires_at)
        .await
    {
        return StageResult::Retry(format!("cannot notify the approvers: {e}"));
    }
    StageResult::AwaitApproval(ApprovalRequest {
        approvers: policy.approvers.clone(),
        required: policy.required,
        expires_at,
        links: issued,
    })
}
