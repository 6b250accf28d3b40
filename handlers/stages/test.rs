//! The test stage: the image's smoke test, in the first test environment
//! that accepts it — on Azure a temporary VM made from the built image
//! (`azure::testvm`, for an `[smoke.http]` check of a build that produced a
//! gallery version or managed image), else this machine (`local::test_env`:
//! the command in the template folder, or the HTTP check).
//!
//! A transient failure of the environment itself (throttling after the
//! client's own retries, 5xx, transport) leaves the message to be delivered
//! again on the first two deliveries (the environment names what it creates
//! deterministically: nothing is created twice); from the third it is
//! recorded as the stage's failure.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::result::StageResult;
use crate::domain::image::ImageConfig;
use crate::domain::run::{Run, Stage, StageOutput};
use crate::ports::test_env::{SmokeOrder, SmokeReport, TestEnvironment};

/// Deliveries of the test stage that retry a transient failure; from
/// this one on it is recorded as the stage's failure.
const LAST_RETRIED_DELIVERY: u32 = 2;

pub(super) async fn run(
    environments: &[Arc<dyn TestEnvironment>],
    run_dir: &Path,
    now: DateTime<Utc>,
    run: &Run,
    image: &ImageConfig,
) -> StageResult {
    let attempt = run.stage(Stage::Test).current_attempt();
    let order = SmokeOrder {
        run,
        image,
        run_dir: run_dir.to_path_buf(),
        built_image: built_image(run).map(str::to_string),
        started_at: attempt.map_or(now, |a| a.started_at),
    };
    let Some(environment) = environments.iter().find(|e| e.accepts(&order)) else {
        return StageResult::Failed(format!(
            "no test environment can run the smoke test of {}",
            image.name
        ));
    };
    match environment.smoke(&order).await {
        Ok(SmokeReport {
            checks,
            failure: None,
        }) => StageResult::Succeeded(StageOutput::Tested { checks }),
        Ok(SmokeReport {
            failure: Some(reason),
            ..
        }) => StageResult::Failed(reason),
        Err(e) if e.is_transient() => {
            let delivery = attempt.map_or(1, |a| a.execution.delivery);
            if delivery < LAST_RETRIED_DELIVERY + 1 {
                StageResult::Retry(e.message)
            } else {
                StageResult::Failed(format!(
                    "{e} (still failing on delivery {delivery} of the test stage; start the run again later)"
                ))
            }
        }
        Err(e) => StageResult::Failed(e.message),
    }
}

/// The image the build produced on Azure: its gallery version, else its managed image.
fn built_image(run: &Run) -> Option<&str> {
    let build = run.build.as_ref()?;
    build
        .gallery_version_id
        .as_deref()
        .or(build.managed_image_id.as_deref())
}
