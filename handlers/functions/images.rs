//! `images` (`POST /api/images/{name}/resume`): an operator resumes an
//! image's paused scheduled runs (`image-factory images resume`), with the
//! operator's credentials ([`super::caller::operator`]) and an optional
//! `{"reason"}`. The resume is recorded on the image's newest failed
//! scheduled run (who, when, why), so the failures up to it no longer count
//! (`domain::pause`). An image whose scheduled runs are not paused is
//! refused (409), changing nothing.

use serde::Deserialize;

use super::caller::operator;
use super::invocation::{InvocationError, retry};
use super::runs::reason_of;
use crate::app::App;
use crate::domain::image::is_valid_image_name;
use crate::domain::run::ScheduleResume;
use crate::ports::store::UpdateError;
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};
use crate::schedules::ResumeError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    #[serde(default)]
    reason: Option<String>,
}

/// An `images` invocation.
#[derive(Debug)]
pub struct Images {
    request: HttpRequestData,
}

fn answer(status: u16, message: &str) -> InvocationResponse {
    InvocationResponse::http(HttpResponseData::error(status, message))
}

impl Images {
    /// Decodes the HTTP request.
    pub fn parse(request: &InvocationRequest) -> Result<Images, InvocationError> {
        Ok(Images {
            request: request.http_request()?,
        })
    }

    /// Resumes the image's scheduled runs, answering the pause it ended.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        if !self.request.method.eq_ignore_ascii_case("POST") {
            return Ok(answer(405, "resume with POST"));
        }
        let operator = match operator(app, &self.request) {
            Ok(operator) => operator.recorded_as(),
            Err(refused) => return Ok(answer(refused.status, &refused.message)),
        };
        let name = self.request.params.get("name").cloned().unwrap_or_default();
        if !is_valid_image_name(&name) {
            return Ok(answer(
                400,
                "the route must name an image: 1-64 characters of a-z, 0-9 and -",
            ));
        }
        let text = self.request.body_text();
        let body: ResumeBody = if text.trim().is_empty() {
            ResumeBody::default()
        } else {
            match serde_json::from_str(&text) {
                Ok(body) => body,
                Err(e) => {
                    return Ok(answer(
                        400,
                        &format!("the body must be {{\"reason\"}}: {e}"),
                    ));
                }
            }
        };
        let reason = match reason_of(body.reason) {
            Ok(reason) => reason,
            Err(response) => return Ok(response),
        };
        let resume = ScheduleResume {
            at: app.now(),
            by: operator.clone(),
            reason,
        };
        let pause_after = app.pause_after(&name);
        match crate::schedules::resume(app.store.as_ref(), &name, pause_after, resume.clone()).await
        {
            Ok((pause, on)) => {
                tracing::info!(image = %name, by = %operator, run_id = %on, "scheduled runs resumed");
                Ok(InvocationResponse::http(HttpResponseData::json(
                    200,
                    &serde_json::json!({
                        "image": name,
                        "resumed": resume,
                        "recordedOn": on,
                        "pause": pause,
                    }),
                )))
            }
            Err(e @ ResumeError::NotPaused { .. }) => Ok(answer(409, &e.to_string())),
            Err(ResumeError::Update(UpdateError::Refused(e))) => Ok(answer(409, &e.to_string())),
            Err(ResumeError::Update(e)) => Err(retry("cannot record the resume", e)),
        }
    }
}
