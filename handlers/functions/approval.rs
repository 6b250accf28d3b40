//! `approval` (`GET|POST /api/approvals/{token}`): an approver's link.
//!
//! GET shows the whole story of the run (what started it, what changed
//! since the previous release, its tests, the approvers so far and the
//! time left: [`crate::dashboard::approval`]) and the Approve/Reject form,
//! and decides nothing:
//! mail scanners and chat unfurlers follow every GET. Only POST decides. The
//! token must be valid, unexpired, issued for this run's current request to
//! this approver, and not used before. The link's path carries its own
//! signature and stays outside App Service authentication's requirement,
//! but when the platform passes a signed-in user (the approver has a
//! session), that user must be the approver the link was issued to: one of
//! its names or ids is the approver's email address or Entra ID object id
//! ([`crate::domain::approvers`]). A principal the handler cannot read is
//! refused. The page says whom the decision is recorded for.
//!
//! The page warns when the run's version is older than the image's latest
//! in the gallery: approving it publishes that version below the latest,
//! without making it latest (a rollback moves latest back).

use askama::Template;
use serde::Deserialize;

use super::invocation::{InvocationError, retry};
use crate::app::{App, dispatch};
use crate::dashboard::approval::{ApprovalStory, approval_page};
use crate::domain::approval::{Claims, Decision, TokenError, Verdict};
use crate::domain::machine::{Event, TransitionError, decide};
use crate::domain::run::{Run, RunId, RunStatus};
use crate::pages::{Frame, notice_page, render};
use crate::ports::store::{StoreError, UpdateError, update_run};
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};

/// Longest comment kept.
const MAX_COMMENT: usize = 2000;

/// An approval link invocation.
#[derive(Debug)]
pub struct Approval {
    token: String,
    request: HttpRequestData,
}

#[derive(Debug, Deserialize)]
struct Form {
    decision: String,
    #[serde(default)]
    comment: String,
}

impl Approval {
    /// Decodes the HTTP request.
    pub fn parse(request: &InvocationRequest) -> Result<Approval, InvocationError> {
        let request = request.http_request()?;
        let token = request.params.get("token").cloned().unwrap_or_default();
        Ok(Approval { token, request })
    }

    /// Shows the page (GET) or records the decision (POST).
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let claims = match app.keys.verify(&self.token, app.now()) {
            Ok(claims) if claims.stage == "approve" => claims,
            Ok(_) => {
                return Ok(answer(
                    400,
                    "Link not valid",
                    "This link is not an approval link.",
                ));
            }
            Err(e) => {
                let status = if e == TokenError::Expired { 410 } else { 400 };
                return Ok(answer(status, "Link not valid", &e.to_string()));
            }
        };
        match signed_in_as(&self.request) {
            Err(e) => return Ok(answer(401, "Sign in again", &e.to_string())),
            Ok(names) if !names.is_empty() => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                if !app
                    .settings
                    .approvers
                    .identity(&claims.sub)
                    .is_one_of(&names)
                {
                    tracing::warn!(run_id = %claims.run, "approval link used by a different signed-in user");
                    return Ok(answer(
                        403,
                        "Not your link",
                        "This link was issued to another approver. Use the link you received.",
                    ));
                }
            }
            Ok(_) => {}
        }
        // The id was signed by the factory, but it is parsed like any other
        // id that arrives from outside: one that does not parse names no run.
        let Ok(run_id) = claims.run.parse::<RunId>() else {
            return Ok(answer(
                404,
                "Run not found",
                "The run this link belongs to does not exist.",
            ));
        };
        let run = match app.store.get(&run_id).await {
            Ok(stored) => stored.value,
            Err(StoreError::NotFound { .. }) => {
                return Ok(answer(
                    404,
                    "Run not found",
                    "The run this link belongs to does not exist.",
                ));
            }
            Err(e) => return Err(retry("cannot read the run", e)),
        };
        if let Some(withdrawn) = withdrawn(&run) {
            return Ok(answer(410, "Approval withdrawn", &withdrawn));
        }
        if let Some(problem) = link_problem(&run, &claims) {
            return Ok(answer(409, "Link not usable", &problem));
        }
        match self.request.method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" => {
                let previous = match crate::stages::previous_release(app.store.as_ref(), &run).await
                {
                    Ok(previous) => previous,
                    Err(e) => return Err(retry("cannot read the previous release", e)),
                };
                let recorded_for = app.settings.approvers.describe(&claims.sub);
                let page = approval_page(&ApprovalStory {
                    run: &run,
                    approver: &claims.sub,
                    recorded_for: &recorded_for,
                    previous: previous.as_ref(),
                    latest_above: latest_above(app, &run).await,
                    max_comment: MAX_COMMENT,
                    now: app.now(),
                });
                Ok(InvocationResponse::http(HttpResponseData::html(200, page)))
            }
            "POST" => self.decide(app, &run.id, &claims).await,
            _ => Ok(answer(405, "Not allowed", "Open the link in a browser.")),
        }
    }

    async fn decide(
        &self,
        app: &App,
        run_id: &RunId,
        claims: &Claims,
    ) -> Result<InvocationResponse, InvocationError> {
        let form: Form = match serde_urlencoded::from_str(&self.request.body_text()) {
            Ok(form) => form,
            Err(_) => return Ok(answer(400, "Decision missing", "Choose Approve or Reject.")),
        };
        let Some(verdict) = Verdict::from_name(&form.decision) else {
            return Ok(answer(400, "Decision missing", "Choose Approve or Reject."));
        };
        let comment = form.comment.trim();
        let decision = Decision {
            approver: claims.sub.clone(),
            verdict,
            at: app.now(),
            comment: (!comment.is_empty()).then(|| comment.chars().take(MAX_COMMENT).collect()),
            via: "link".into(),
            token_id: Some(claims.jti.clone()),
            recorded_by: None,
        };
        let event = Event::ApprovalDecided(decision);
        let result = update_run(app.store.as_ref(), run_id, |run| decide(run, &event)).await;
        match result {
            Ok(t) => {
                tracing::info!(run_id = %claims.run, verdict = verdict.name(), "approval decision recorded");
                let said = match (verdict, t.run.status) {
                    (Verdict::Reject, _) => "Rejected. The run stops here.",
                    (Verdict::Approve, RunStatus::WaitingForApproval) => {
                        "Approved. The run waits for more approvals."
                    }
                    (Verdict::Approve, _) => "Approved. The run goes on to release.",
                };
                let mut response = InvocationResponse::http(HttpResponseData::html(
                    200,
                    render(&DecidedPage {
                        frame: Frame::new("Decision recorded"),
                        said,
                        facts: facts(&t.run),
                    }),
                ));
                dispatch(&mut response, &claims.run, &t.commands);
                Ok(response)
            }
            Err(UpdateError::Refused(e)) => {
                let status = match e {
                    TransitionError::ApprovalExpired { .. } => 410,
                    TransitionError::NotAnApprover { .. } => 403,
                    _ => 409,
                };
                Ok(answer(status, "Decision not recorded", &e.to_string()))
            }
            Err(e) => Err(retry("cannot record the decision", e)),
        }
    }
}

/// The image's latest version in the gallery, when it is above the run's:
/// approving then publishes the run's version without making it latest.
/// A gallery that cannot be read warns of nothing (the release decides by
/// the gallery it finds then).
async fn latest_above(app: &App, run: &Run) -> Option<String> {
    match app.gallery.versions(&run.image).await {
        Ok(versions) => {
            crate::domain::gallery::latest_above(&versions, run.version).map(|v| v.to_string())
        }
        Err(e) => {
            tracing::warn!(run_id = %run.id, error = %e, "cannot read the gallery for the approval page");
            None
        }
    }
}

/// The names and ids of the signed-in user the platform passed, if any:
/// the decoded principal's, and the name and id headers. A principal that
/// cannot be decoded is an error.
fn signed_in_as(
    request: &HttpRequestData,
) -> Result<Vec<String>, crate::domain::principal::PrincipalError> {
    use crate::domain::principal::{
        ClientPrincipal, PRINCIPAL_HEADER, PRINCIPAL_ID_HEADER, PRINCIPAL_NAME_HEADER,
    };
    let mut names: Vec<String> = [PRINCIPAL_NAME_HEADER, PRINCIPAL_ID_HEADER]
        .iter()
        .filter_map(|h| request.header(h))
        .map(str::to_string)
        .collect();
    if let Some(value) = request.header(PRINCIPAL_HEADER) {
        let principal = ClientPrincipal::from_header(value)?;
        names.extend(principal.identities().into_iter().map(str::to_string));
    }
    Ok(names)
}

/// What a link of a cancelled run says: its approval request is withdrawn.
fn withdrawn(run: &Run) -> Option<String> {
    let cancellation = run.cancellation.as_ref()?;
    let why = cancellation
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    Some(format!(
        "This run was cancelled by {} at {}{why}: its approval request is withdrawn and there is nothing to decide.",
        cancellation.by,
        cancellation.at.format("%Y-%m-%d %H:%M UTC")
    ))
}

/// Why this link cannot decide on this run now, if it cannot.
fn link_problem(run: &Run, claims: &Claims) -> Option<String> {
    if run.status != RunStatus::WaitingForApproval {
        return Some(format!(
            "This run is {} and no longer waits for a decision.",
            run.status
        ));
    }
    let issued = run.approval.as_ref().is_some_and(|request| {
        request
            .links
            .iter()
            .any(|l| l.token_id == claims.jti && l.approver == claims.sub)
    });
    if !issued {
        return Some(
            "This link belongs to an earlier approval request; use the latest one.".into(),
        );
    }
    if run.decisions.iter().any(|d| d.approver == claims.sub) {
        return Some("You have already decided on this run.".into());
    }
    None
}

fn answer(status: u16, title: &str, message: &str) -> InvocationResponse {
    InvocationResponse::http(HttpResponseData::html(
        status,
        notice_page(title, message, status >= 400, None),
    ))
}

/// The facts an approver decides on: (name, value) as text.
fn facts(run: &Run) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Image", run.image.clone()),
        ("Version", run.version.to_string()),
        ("Run", run.id.to_string()),
        (
            "Commit",
            run.trigger.commit.clone().unwrap_or_else(|| "none".into()),
        ),
        (
            "Trigger",
            format!("{:?} from {}", run.trigger.kind, run.trigger.source),
        ),
    ];
    if let Some(reason) = &run.trigger.reason {
        rows.push(("Reason", reason.clone()));
    }
    for record in &run.stages {
        if let Some(summary) = &record.summary {
            rows.push((record.stage.name(), summary.clone()));
        }
    }
    rows.extend(crate::domain::patch_view::facts(run));
    rows.extend(run.declaration.iter().flat_map(|d| d.facts()));
    rows
}

#[derive(Template)]
#[template(path = "decided.html")]
struct DecidedPage {
    frame: Frame,
    said: &'static str,
    facts: Vec<(&'static str, String)>,
}
