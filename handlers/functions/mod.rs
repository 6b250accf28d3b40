//! The function set: one file per function, each owning the decoding of its
//! invocation and its action, and one enum that dispatches.
//!
//! A function's name is its folder under `functions/` (its `function.json`)
//! and the path the Functions host POSTs invocations to. An unknown name or a
//! malformed invocation is a value ([`InvocationError`]), never a panic.

mod approval;
mod base_image;
mod build_completed;
mod dashboard;
mod dead_letter;
mod git_push;
mod patch_tuesday;
mod runs;
mod stage;
mod sweeper;

pub use git_push::github_signature_valid;

use crate::app::App;
use crate::domain::run::Stage;
use crate::protocol::{InvocationRequest, InvocationResponse, ProtocolError};

/// Every function this handler serves, as named in `functions/*/function.json`.
pub const NAMES: [&str; 14] = [
    "git-push",
    "patch-tuesday",
    "base-image",
    "approval",
    "stage-validate",
    "stage-build",
    "stage-test",
    "stage-approve",
    "stage-release",
    "build-completed",
    "runs",
    "dashboard",
    "dead-letter",
    "sweeper",
];

/// A decoded invocation, ready to run.
#[derive(Debug)]
pub enum Function {
    /// `git-push`: a push webhook.
    GitPush(git_push::GitPush),
    /// `patch-tuesday`: the monthly timer.
    PatchTuesday(patch_tuesday::PatchTuesday),
    /// `base-image`: the daily Marketplace base image check.
    BaseImage(base_image::BaseImageCheck),
    /// `approval`: an approver's link (GET shows, POST decides).
    Approval(approval::Approval),
    /// `stage-*`: a stage message.
    Stage(stage::StageInvocation),
    /// `build-completed`: a build worker's report.
    BuildCompleted(build_completed::BuildCompleted),
    /// `runs`: the runs API.
    Runs(runs::Runs),
    /// `dashboard`: the operators' pages.
    Dashboard(dashboard::Dashboard),
    /// `dead-letter`: a stage message that could not be processed.
    DeadLetter(dead_letter::DeadLetter),
    /// `sweeper`: the periodic check for runs that stopped moving.
    Sweeper(sweeper::Sweeper),
}

/// Why an invocation failed. Every variant makes the handler answer non-2xx,
/// so the host fails the invocation (and Service Bus redelivers the message).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// No function of that name.
    #[error("there is no function named `{0}`")]
    UnknownFunction(String),
    /// The invocation's payload is not what the function expects.
    #[error(transparent)]
    Malformed(#[from] ProtocolError),
    /// The function could not do its work now; retrying may help.
    #[error("{0}")]
    Failed(String),
}

impl InvocationError {
    /// The status the handler answers the host with.
    pub fn status(&self) -> u16 {
        match self {
            InvocationError::UnknownFunction(_) => 404,
            InvocationError::Malformed(_) => 400,
            InvocationError::Failed(_) => 500,
        }
    }
}

impl Function {
    /// Decodes the invocation of function `name`.
    pub fn parse(name: &str, request: &InvocationRequest) -> Result<Function, InvocationError> {
        Ok(match name {
            "git-push" => Function::GitPush(git_push::GitPush::parse(request)?),
            "patch-tuesday" => Function::PatchTuesday(patch_tuesday::PatchTuesday::parse(request)?),
            "base-image" => Function::BaseImage(base_image::BaseImageCheck::parse(request)?),
            "approval" => Function::Approval(approval::Approval::parse(request)?),
            "build-completed" => {
                Function::BuildCompleted(build_completed::BuildCompleted::parse(request)?)
            }
            "runs" => Function::Runs(runs::Runs::parse(request)?),
            "dashboard" => Function::Dashboard(dashboard::Dashboard::parse(request)?),
            "dead-letter" => Function::DeadLetter(dead_letter::DeadLetter::parse(request)?),
            "sweeper" => Function::Sweeper(sweeper::Sweeper::parse(request)?),
            other => match other.strip_prefix("stage-").and_then(Stage::from_name) {
                Some(stage) => Function::Stage(stage::StageInvocation::parse(stage, request)?),
                None => return Err(InvocationError::UnknownFunction(other.to_string())),
            },
        })
    }

    /// Runs the function.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        match self {
            Function::GitPush(f) => f.apply(app).await,
            Function::PatchTuesday(f) => f.apply(app).await,
            Function::BaseImage(f) => f.apply(app).await,
            Function::Approval(f) => f.apply(app).await,
            Function::Stage(f) => f.apply(app).await,
            Function::BuildCompleted(f) => f.apply(app).await,
            Function::Runs(f) => f.apply(app).await,
            Function::Dashboard(f) => f.apply(app).await,
            Function::DeadLetter(f) => f.apply(app).await,
            Function::Sweeper(f) => f.apply(app).await,
        }
    }
}

/// The name of the Service Bus trigger binding in every stage function.
pub const MESSAGE_BINDING: &str = "message";
/// The name of the timer trigger binding in every timer function.
pub const TIMER_BINDING: &str = "timer";

/// Turns a store failure into a retryable invocation failure.
fn retry(context: &str, e: impl std::fmt::Display) -> InvocationError {
    InvocationError::Failed(format!("{context}: {e}"))
}
