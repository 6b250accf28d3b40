//! `patch-tuesday` (timer): the monthly rebuild of every image. Its schedule
//! (`0 0 18 8-14 * Tue`, the second Tuesday of the month at 18:00) is in its
//! `function.json`. Each firing creates the month's run of each image under
//! the id `pt-<image>-<YYYY-MM>`, so a timer that fires twice in a month
//! starts nothing new.

use serde::Deserialize;

use super::{InvocationError, TIMER_BINDING};
use crate::app::{App, dispatch_follow_up};
use crate::domain::run::{Trigger, TriggerKind};
use crate::protocol::{InvocationRequest, InvocationResponse};

/// A timer firing.
#[derive(Debug)]
pub struct PatchTuesday {
    past_due: bool,
}

#[derive(Debug, Deserialize)]
struct TimerInfo {
    #[serde(rename = "IsPastDue", default)]
    is_past_due: bool,
}

impl PatchTuesday {
    /// Decodes the timer payload.
    pub fn parse(request: &InvocationRequest) -> Result<PatchTuesday, InvocationError> {
        let info: TimerInfo = request.data_as(TIMER_BINDING)?;
        Ok(PatchTuesday {
            past_due: info.is_past_due,
        })
    }

    /// Creates this month's run of every image.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let month = app.now().format("%Y-%m").to_string();
        if self.past_due {
            response.log("the Patch Tuesday timer fired late; building now");
        }
        for image in app.images.keys() {
            let trigger = Trigger {
                kind: TriggerKind::PatchTuesday,
                source: "timer".into(),
                commit: None,
                branch: None,
                actor: None,
                reason: Some(format!("Patch Tuesday rebuild for {month}")),
            };
            let created = app
                .create_run(format!("pt-{image}-{month}"), image, trigger)
                .await
                .map_err(|e| {
                    super::retry(&format!("cannot create the {month} run of {image}"), e)
                })?;
            dispatch_follow_up(&mut response, created.run());
        }
        Ok(response)
    }
}
