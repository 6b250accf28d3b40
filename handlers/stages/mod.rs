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
pub mod git_tag;
mod release;
mod test;
mod validate;

pub use build::{Packer, build_here};

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::domain::approval::ApprovalRequest;
use crate::domain::image::ImageConfig;
use crate::domain::run::{BuildSpec, Run, Stage, StageOutput, WorkerRef};
use crate::ports::clock::Ids;
use crate::ports::executor::Executor;
use crate::ports::gallery::Gallery;
use crate::ports::logs::LogStore;
use crate::ports::notifier::Notifier;
use crate::ports::store::RunStore;
use crate::ports::test_env::TestEnvironment;
use crate::ports::workers::Workers;

pub use approve::ApprovalLinks;

/// What a stage body did.
#[derive(Debug)]
pub enum StageResult {
    /// It finished well.
    Succeeded(StageOutput),
    /// It failed; the run stops with this reason.
    Failed(String),
    /// The approve stage sent its requests.
    AwaitApproval(ApprovalRequest),
    /// The build stage started a worker off the host; its report finishes the stage.
    Dispatched(WorkerRef),
    /// It could not run now; the message should be delivered again.
    Retry(String),
}

/// Everything the stage bodies may use: the ports, and the few facts of
/// this handler they read. Each body takes the part it needs.
pub struct Ports<'a> {
    /// Where packer and short checks run.
    pub executor: &'a dyn Executor,
    /// Build workers off the host, when builds run there.
    pub workers: Option<&'a dyn Workers>,
    /// Where the logs of builds off the host are kept.
    pub logs: &'a dyn LogStore,
    /// Test environments, the first that accepts a test runs it.
    pub test_environments: &'a [Arc<dyn TestEnvironment>],
    /// Where released versions live.
    pub gallery: &'a dyn Gallery,
    /// The run store (the release stage reads the previous release for its notes).
    pub store: &'a dyn RunStore,
    /// The approval channels.
    pub notifier: &'a Notifier,
    /// Signs approval links.
    pub links: ApprovalLinks<'a>,
    /// Fresh ids (worker ids, approval token ids).
    pub ids: &'a Ids,
    /// The packer binary, when one is configured.
    pub packer: Option<PathBuf>,
    /// The run's folder on this machine.
    pub run_dir: PathBuf,
    /// The time the stage runs at.
    pub now: DateTime<Utc>,
    /// Cancelled when the handler shuts down.
    pub cancel: CancellationToken,
}

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

/// The `-var` arguments every packer command of a run gets: the run's version
/// and commit as the seed passes them, the image's baseline, and the image's
/// own variables. The factory's variables are passed only to templates that
/// declare them (packer refuses undeclared `-var`s).
fn packer_vars(spec: &BuildSpec, image: &ImageConfig, declared: &[String]) -> Vec<String> {
    let factory = [
        ("gallery_image_version", spec.version.clone()),
        ("run_id", spec.commit.clone()),
        ("baseline_version", image.settings.baseline_version.clone()),
        (
            "base_image_version",
            spec.base_image_version.clone().unwrap_or_default(),
        ),
    ];
    let mut args = Vec::new();
    for (name, value) in factory {
        let given = matches!(name, "baseline_version" | "base_image_version") && value.is_empty();
        if declared.iter().any(|d| d == name) && !given {
            args.push("-var".to_string());
            args.push(format!("{name}={value}"));
        }
    }
    for (name, value) in &image.settings.packer.variables {
        args.push("-var".to_string());
        args.push(format!("{name}={value}"));
    }
    args
}
