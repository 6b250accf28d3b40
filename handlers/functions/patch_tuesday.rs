//! `patch-tuesday` (timer, hourly): the monthly rebuild of every image.
//!
//! The rebuild of a month is due at Patch Tuesday (the second Tuesday) plus
//! the configured offset and hour, in the configured time zone. Every firing
//! makes sure the latest due month has its run for each image, under the id
//! `pt-<image>-<YYYY-MM>`: a timer that fires twice, late (`IsPastDue`) or not
//! at all on the day (the app was down) starts exactly one run per image and
//! month, on the first firing after the build time. An image with a
//! Marketplace base is skipped when the base has not changed since its last
//! release; one without is always rebuilt. An image built on another image
//! of the factory does not start here: its parent's release starts it, so
//! nothing builds twice in a month and no child is built on last month's base.
//!
//! An image whose scheduled runs are paused (they failed
//! `[schedule] pause_after_failures` times in a row, see
//! `crate::domain::pause`) gets no run, and the answer's logs say so.
//!
//! Each image stands on its own: a run that cannot be created (a store
//! outage) is logged and left to the next firing, and never keeps the runs
//! created in this firing from having their first message sent with its
//! answer (see `functions::invocation::per_image`).

use serde::Deserialize;

use super::invocation::{InvocationError, TIMER_BINDING, retry};
use crate::app::{App, CreateError, dispatch_follow_up};
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

    /// Creates the due month's run of every image that has none yet.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let mut failures = Vec::new();
        let calendar = app.settings.calendar;
        let month = calendar.due_month(app.now());
        if self.past_due {
            response.log("the timer fired late (IsPastDue)");
        }
        // Every image of the built branch's head now, each built from it.
        let source = app
            .head_snapshot(None)
            .await
            .map_err(|e| retry("cannot take the source of the built branch's head", e))?;
        for (image, settings) in source.images(&app.settings.repo_images_path) {
            let image = image.as_str();
            let parent = settings.as_ref().ok().and_then(|s| s.parent());
            if let Some(parent) = parent {
                response.log(format!(
                    "{image} follows {parent}: its {month} rebuild starts when {parent} is released"
                ));
                continue;
            }
            let trigger = Trigger {
                reason: Some(format!(
                    "Patch Tuesday rebuild for {month} (due {})",
                    calendar.build_time(month).format("%Y-%m-%d %H:%M UTC")
                )),
                // Without a Marketplace base to compare, the factory cannot
                // tell whether this month's patches changed the inputs.
                force: settings
                    .as_ref()
                    .map_or(true, |s| s.marketplace_base().is_none()),
                ..Trigger::new(TriggerKind::PatchTuesday, "timer")
            };
            match app
                .create_run(format!("pt-{image}-{month}"), image, trigger, &source)
                .await
            {
                Ok(created) => dispatch_follow_up(&mut response, created.run()),
                Err(paused @ CreateError::Paused { .. }) => {
                    tracing::info!(image, %month, "{paused}");
                    response.log(format!("{image}: no {month} run: {paused}"));
                }
                Err(error) => failures.push(format!(
                    "the {month} run of {image} was not created: {error}"
                )),
            }
        }
        super::invocation::per_image(response, failures)
    }
}
