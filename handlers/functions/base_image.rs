//! `base-image` (timer, daily): the Marketplace base image check. For each
//! image with a `base_image` in its `image.toml`, lists the base image's
//! versions (the Marketplace port: Resource Manager on Azure, the data
//! folder's `marketplace.toml` on one machine), takes the newest, and makes
//! sure the run `base-<image>-<version>` exists (trigger
//! `base-image-update`). A firing that finds no new version finds the
//! existing run and starts nothing.
//!
//! An image whose scheduled runs are paused (`crate::domain::pause`) gets
//! no run, and the answer's logs say so.
//!
//! Each image stands on its own: one whose versions cannot be listed or
//! whose run cannot be created is logged and left to the next firing, and
//! never keeps the runs created in this firing from having their first
//! message sent with its answer (see `functions::invocation::per_image`).

use super::invocation::{InvocationError, TIMER_BINDING, retry};
use crate::app::{App, CreateError, Created, dispatch_follow_up};
use crate::domain::image::newest_marketplace_version;
use crate::domain::run::{Trigger, TriggerKind};
use crate::protocol::{InvocationRequest, InvocationResponse};

/// A timer firing.
#[derive(Debug)]
pub struct BaseImageCheck;

impl BaseImageCheck {
    /// Decodes the timer payload.
    pub fn parse(request: &InvocationRequest) -> Result<BaseImageCheck, InvocationError> {
        let _: serde_json::Value = request.data_as(TIMER_BINDING)?;
        Ok(BaseImageCheck)
    }

    /// Creates the run of every image whose base has a version not built yet.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let mut failures = Vec::new();
        // The images of the built branch's head now: an image added by a
        // push is watched without a restart.
        let source = app
            .head_snapshot(None)
            .await
            .map_err(|e| retry("cannot take the source of the built branch's head", e))?;
        for (image, settings) in source.images(&app.settings.repo_images_path) {
            let image = image.as_str();
            let Some(base) = settings.as_ref().ok().and_then(|s| s.marketplace_base()) else {
                continue;
            };
            let names = match app.marketplace.versions(base).await {
                Ok(names) => names,
                Err(error) => {
                    failures.push(format!(
                        "{image}: cannot list the base image versions: {error}"
                    ));
                    continue;
                }
            };
            let Some(newest) = newest_marketplace_version(&names) else {
                response.log(format!(
                    "{image}: the Marketplace lists no version of {}/{}/{} in {}",
                    base.publisher, base.offer, base.sku, base.location
                ));
                continue;
            };
            let trigger = Trigger {
                reason: Some(format!(
                    "new Marketplace base {}/{}/{} version {newest}",
                    base.publisher, base.offer, base.sku
                )),
                base_image_version: Some(newest.to_string()),
                ..Trigger::new(TriggerKind::BaseImageUpdate, "timer")
            };
            let created = match app
                .create_run(format!("base-{image}-{newest}"), image, trigger, &source)
                .await
            {
                Ok(created) => created,
                Err(paused @ CreateError::Paused { .. }) => {
                    tracing::info!(image, version = %newest, "{paused}");
                    response.log(format!(
                        "{image}: no run on base version {newest}: {paused}"
                    ));
                    continue;
                }
                Err(error) => {
                    failures.push(format!(
                        "{image}: the run on base version {newest} was not created: {error}"
                    ));
                    continue;
                }
            };
            if let Created::New(run) = &created {
                response.log(format!("{image}: base version {newest}: run {}", run.id));
            }
            dispatch_follow_up(&mut response, created.run());
        }
        super::invocation::per_image(response, failures)
    }
}
