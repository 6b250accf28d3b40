//! The stage bodies: the work each stage does for one run, given the run as
//! recorded. A body returns what happened ([`StageResult`]); recording it and
//! dispatching the next stage is the stage function's job.
//!
//! Each body takes only the ports it uses (`release::run(gallery, ...)`, as
//! mini-redis's `Get::apply(db, dst)` takes only what it needs); [`Ports`]
//! is what the stage function hands [`execute`] to choose from.
//!
//! Failures that retrying cannot fix (a broken template, a failing smoke test)
//! are [`StageResult::Failed`] and end the run with the reason; failures of
//! the machinery (the handler shutting down) are [`StageResult::Retry`] and
//! leave the message to be delivered again.

mod approve;
mod build;
mod context;
pub mod git_tag;
mod release;
mod result;
mod test;
mod validate;
mod vars;

pub use approve::ApprovalLinks;
pub use build::{Packer, build_here};
pub use context::Ports;
pub use release::previous_release;
pub use result::StageResult;

use crate::domain::image::ImageConfig;
use crate::domain::run::{Run, Stage};

/// Runs the body of `stage` for `run` of `image`.
pub async fn execute(
    ports: &Ports<'_>,
    run: &Run,
    image: &ImageConfig,
    stage: Stage,
) -> StageResult {
    match stage {
        Stage::Validate => validate::run(ports.executor, ports.packer.as_deref(), run, image).await,
        Stage::Build => build::run(ports, run, image).await,
        Stage::Test => {
            test::run(
                ports.test_environments,
                test::Inputs {
                    security_updates: ports.security_updates,
                    store: ports.store,
                },
                &ports.run_dir,
                ports.now,
                run,
                image,
            )
            .await
        }
        Stage::Approve => {
            approve::run(
                ports.notifier,
                &ports.links,
                ports.ids,
                ports.now,
                run,
                image,
            )
            .await
        }
        Stage::Release => {
            release::run(
                ports.gallery,
                ports.store,
                &ports.run_dir,
                ports.now,
                run,
                image,
            )
            .await
        }
    }
}
