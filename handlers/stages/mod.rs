//! The stage bodies: the work each stage does for one run, given the run as
//! recorded. A body returns what happened ([`StageResult`]); recording it and
//! dispatching the next stage is the stage function's job.
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

pub use build::{BuildSpec, Packer, build_here};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::app::App;
use crate::config::ImageConfig;
use crate::domain::approval::ApprovalRequest;
use crate::domain::run::{Run, Stage, StageOutput};

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
    Dispatched(crate::domain::run::WorkerRef),
    /// It could not run now; the message should be delivered again.
    Retry(String),
}

/// Runs the body of `stage` for `run`.
pub async fn execute(app: &App, run: &Run, stage: Stage) -> StageResult {
    let Some(image) = app.image(&run.image) else {
        return StageResult::Failed(format!(
            "image {} is no longer configured; add its folder back or start a new run",
            run.image
        ));
    };
    match stage {
        Stage::Validate => validate::run(app, run, image).await,
        Stage::Build => build::run(app, run, image).await,
        Stage::Test => test::run(app, run, image).await,
        Stage::Approve => approve::run(app, run, image).await,
        Stage::Release => release::run(app, run, image).await,
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
    ];
    let mut args = Vec::new();
    for (name, value) in factory {
        let given = name == "baseline_version" && value.is_empty();
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

/// A short command's result: exit code (None when killed) and its output, cut to 16 KiB.
pub(crate) struct ShortOutput {
    pub(crate) code: Option<i32>,
    pub(crate) output: String,
}

/// Runs a short command (packer version, fmt, validate; a smoke test) with a
/// timeout, collecting stdout and stderr (also `doctor`'s `packer version`).
pub(crate) async fn run_short(
    program: &Path,
    args: &[String],
    dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<ShortOutput, String> {
    let mut command = tokio::process::Command::new(program);
    let child = crate::private::private_umask(&mut command)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Ok(ShortOutput {
                code: out.status.code(),
                output: truncate(text.trim(), 16 * 1024),
            })
        }
        Ok(Err(e)) => Err(format!("{} failed: {e}", program.display())),
        Err(_) => Err(format!(
            "{} did not finish within {} s",
            program.display(),
            timeout.as_secs()
        )),
    }
}

/// Cuts text to at most `max` bytes on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
