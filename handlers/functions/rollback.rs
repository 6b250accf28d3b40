//! `rollback` (`POST /api/images/{image}/rollback`): an operator makes an
//! earlier released version of an image current again. The body is
//! `{"to": "<version>", "reason": "...", "actor": "..."}`; the caller is
//! authorised as every operator action ([`super::caller`]: the operator
//! token, or with sign-in the operator app role, whose principal is then
//! the actor). The factory performs it with its own gallery and store
//! ([`crate::rollback`]), answers what it did, and hands the rollback's
//! event to its own event targets at once (the sweeper retries what fails).

use serde::Deserialize;

use super::caller::operator;
use super::invocation::InvocationError;
use crate::app::App;
use crate::domain::rollback::Request;
use crate::domain::version::ImageVersion;
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    to: String,
    reason: String,
    /// Who asks, as an operator-token holder names themselves (with
    /// sign-in, the principal is recorded instead).
    #[serde(default)]
    actor: Option<String>,
}

fn error(status: u16, message: &str) -> InvocationResponse {
    InvocationResponse::http(HttpResponseData::error(status, message))
}

/// A rollback request.
#[derive(Debug)]
pub struct Rollback {
    request: HttpRequestData,
}

impl Rollback {
    /// Decodes the HTTP request.
    pub fn parse(request: &InvocationRequest) -> Result<Rollback, InvocationError> {
        Ok(Rollback {
            request: request.http_request()?,
        })
    }

    /// Authorises, rolls back, answers what was done.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        if !self.request.method.eq_ignore_ascii_case("POST") {
            return Ok(error(405, "a rollback is a POST"));
        }
        let operator = match operator(app, &self.request) {
            Ok(operator) => operator,
            Err(refused) => return Ok(error(refused.status, &refused.message)),
        };
        let image = self
            .request
            .params
            .get("image")
            .cloned()
            .unwrap_or_default();
        let body: Body = match serde_json::from_str(&self.request.body_text()) {
            Ok(body) => body,
            Err(e) => {
                return Ok(error(
                    400,
                    &format!("the body must be {{\"to\", \"reason\", \"actor\"}}: {e}"),
                ));
            }
        };
        let to: ImageVersion = match body.to.trim().parse() {
            Ok(to) => to,
            Err(e) => return Ok(error(400, &format!("`to` is not a version: {e}"))),
        };
        let Some(actor) = operator.actor.or(body.actor) else {
            return Ok(error(
                400,
                "say who asks: `actor` (the command line sends your user name)",
            ));
        };
        let request = Request {
            image,
            to,
            reason: body.reason,
            actor,
            via: operator.via.to_string(),
        };
        let now = app.now();
        let done =
            match crate::rollback::perform(app.store.as_ref(), app.gallery.as_ref(), request, now)
                .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::warn!(error = %e, "rollback not done");
                    return Ok(error(e.http_status(), &e.to_string()));
                }
            };
        crate::followups::spawn_delivery(
            app.follow_ups.clone(),
            app.store.clone(),
            done.event_run.clone(),
            now,
        );
        Ok(InvocationResponse::http(HttpResponseData::json(
            200,
            &done.answer(),
        )))
    }
}
