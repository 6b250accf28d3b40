//! The function set: one file per function, each owning the decoding of its
//! invocation and its action, and one enum that dispatches.
//!
//! A function's name is its folder under `functions/` (its `function.json`;
//! the app root's `<name>/` once packaged) and the path the Functions host
//! POSTs invocations to. An unknown name or a malformed invocation is a value
//! ([`InvocationError`]), never a panic. [`check_bindings`] holds a
//! function.json to what the handler decodes.

mod approval;
mod base_image;
mod build_completed;
mod caller;
mod dashboard;
mod dead_letter;
mod fleet;
mod git_push;
mod images;
mod invocation;
mod patch_tuesday;
mod reaper;
mod rollback;
mod runs;
mod stage;
mod sweeper;

pub use git_push::github_signature_valid;
pub use invocation::{InvocationError, MESSAGE_BINDING, TIMER_BINDING};

use crate::app::App;
use crate::domain::run::Stage;
use crate::protocol::{InvocationRequest, InvocationResponse};

/// How Service Bus addresses a queue's dead-letter sub-queue:
/// `<queue>/$DeadLetterQueue`.
pub const DEAD_LETTER_SUFFIX: &str = "/$DeadLetterQueue";

/// The dead-letter functions: one per queue the factory sends to, each
/// triggered by that queue's dead-letter sub-queue (a function has one
/// trigger). No queue forwards its dead letters anywhere, so the Basic tier
/// of Service Bus serves (it has no auto-forwarding).
pub const DEAD_LETTER_FUNCTIONS: [(&str, &str); 6] = [
    (
        "dead-letter-stage-validate",
        "stage-validate/$DeadLetterQueue",
    ),
    ("dead-letter-stage-build", "stage-build/$DeadLetterQueue"),
    ("dead-letter-stage-test", "stage-test/$DeadLetterQueue"),
    (
        "dead-letter-stage-approve",
        "stage-approve/$DeadLetterQueue",
    ),
    (
        "dead-letter-stage-release",
        "stage-release/$DeadLetterQueue",
    ),
    (
        "dead-letter-build-completed",
        "build-completed/$DeadLetterQueue",
    ),
];

/// Every function this handler serves, as named by the repository's
/// `functions/<name>/function.json` (packaged as `<name>/function.json`).
pub const NAMES: [&str; 22] = [
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
    "rollback",
    "images",
    "dashboard",
    "dead-letter-stage-validate",
    "dead-letter-stage-build",
    "dead-letter-stage-test",
    "dead-letter-stage-approve",
    "dead-letter-stage-release",
    "dead-letter-build-completed",
    "sweeper",
    "reaper",
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
    /// `rollback`: an operator's rollback of an image.
    Rollback(rollback::Rollback),
    /// `images`: operator actions on an image (resuming its schedule).
    Images(images::Images),
    /// `dashboard`: the operators' pages.
    Dashboard(dashboard::Dashboard),
    /// `dead-letter`: a stage message that could not be processed.
    DeadLetter(dead_letter::DeadLetter),
    /// `sweeper`: the periodic check for runs that stopped moving.
    Sweeper(sweeper::Sweeper),
    /// `reaper`: the periodic deletion of what runs left behind in the cloud.
    Reaper(reaper::Reaper),
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
            "rollback" => Function::Rollback(rollback::Rollback::parse(request)?),
            "images" => Function::Images(images::Images::parse(request)?),
            "dashboard" => Function::Dashboard(dashboard::Dashboard::parse(request)?),
            name if dead_letter_queue(name).is_some() => {
                Function::DeadLetter(dead_letter::DeadLetter::parse(request)?)
            }
            "sweeper" => Function::Sweeper(sweeper::Sweeper::parse(request)?),
            "reaper" => Function::Reaper(reaper::Reaper::parse(request)?),
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
            Function::Rollback(f) => f.apply(app).await,
            Function::Images(f) => f.apply(app).await,
            Function::Dashboard(f) => f.apply(app).await,
            Function::DeadLetter(f) => f.apply(app).await,
            Function::Sweeper(f) => f.apply(app).await,
            Function::Reaper(f) => f.apply(app).await,
        }
    }
}

/// What starts a function, as the handler decodes its invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `httpTrigger` named [`crate::protocol::HTTP_TRIGGER`], answered through
    /// the `http` output [`crate::protocol::HTTP_OUTPUT`].
    Http,
    /// `timerTrigger` named [`TIMER_BINDING`].
    Timer,
    /// `serviceBusTrigger` named [`MESSAGE_BINDING`] on this queue.
    Queue(&'static str),
}

/// The dead-letter sub-queue the dead-letter function `name` reads, if it is
/// one.
fn dead_letter_queue(name: &str) -> Option<&'static str> {
    DEAD_LETTER_FUNCTIONS
        .iter()
        .find(|(function, _)| *function == name)
        .map(|(_, queue)| *queue)
}

/// The trigger the handler expects for the function `name`; `None` when it
/// serves no function of that name.
pub fn trigger_of(name: &str) -> Option<Trigger> {
    Some(match name {
        "git-push" | "approval" | "runs" | "rollback" | "images" | "dashboard" => Trigger::Http,
        "patch-tuesday" | "base-image" | "sweeper" | "reaper" => Trigger::Timer,
        "build-completed" => Trigger::Queue("build-completed"),
        other => Trigger::Queue(dead_letter_queue(other).or_else(|| {
            other
                .strip_prefix("stage-")
                .and_then(Stage::from_name)
                .map(Stage::function_name)
        })?),
    })
}

/// Checks a function.json against what the handler does with the function
/// `name`: its trigger's type, name and queue are the ones the handler decodes,
/// an HTTP function answers through `res`, every Service Bus output is named
/// after the stage it feeds and targets that stage's queue (as
/// [`crate::app::dispatch`] sets them), and every binding name is one the
/// Functions host accepts. The error says what to change.
pub fn check_bindings(name: &str, function_json: &serde_json::Value) -> Result<(), String> {
    let Some(expected) = trigger_of(name) else {
        return Err(format!(
            "the handler serves no function `{name}` (it serves: {})",
            NAMES.join(", ")
        ));
    };
    let Some(bindings) = function_json.get("bindings").and_then(|b| b.as_array()) else {
        return Err("has no `bindings` array".into());
    };
    if bindings.is_empty() {
        return Err("declares no binding; the Functions host refuses it".into());
    }
    let text = |b: &serde_json::Value, key: &str| {
        b.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut triggers = 0;
    let mut http_output = false;
    for binding in bindings {
        let (kind, direction, binding_name) = (
            text(binding, "type"),
            text(binding, "direction"),
            text(binding, "name"),
        );
        if !crate::layout::valid_binding_name(&binding_name) {
            return Err(format!(
                "binding name {binding_name:?} is not valid for the Functions host (a letter, then letters and digits)"
            ));
        }
        match (kind.as_str(), direction.as_str()) {
            ("httpTrigger" | "timerTrigger" | "serviceBusTrigger", "in") => {
                triggers += 1;
                let (want_kind, want_name, want_queue) = match expected {
                    Trigger::Http => ("httpTrigger", crate::protocol::HTTP_TRIGGER, None),
                    Trigger::Timer => ("timerTrigger", TIMER_BINDING, None),
                    Trigger::Queue(queue) => ("serviceBusTrigger", MESSAGE_BINDING, Some(queue)),
                };
                if kind != want_kind || binding_name != want_name {
                    return Err(format!(
                        "the trigger is {kind} `{binding_name}`, but the handler decodes `{name}` from a {want_kind} named `{want_name}`"
                    ));
                }
                if let Some(queue) = want_queue
                    && text(binding, "queueName") != queue
                {
                    return Err(format!(
                        "the trigger reads queue {:?}, but `{name}` handles the messages of queue `{queue}`",
                        text(binding, "queueName")
                    ));
                }
            }
            ("http", "out") if expected == Trigger::Http => {
                if binding_name != crate::protocol::HTTP_OUTPUT {
                    return Err(format!(
                        "the http output is named `{binding_name}`, but the handler answers through `{}`",
                        crate::protocol::HTTP_OUTPUT
                    ));
                }
                http_output = true;
            }
            ("serviceBus", "out") => {
                let queue = text(binding, "queueName");
                match Stage::from_name(&binding_name) {
                    Some(stage) if stage.function_name() == queue => {}
                    Some(stage) => {
                        return Err(format!(
                            "output `{binding_name}` sends to queue {queue:?}, but the handler's `{binding_name}` messages are for queue `{}`",
                            stage.function_name()
                        ));
                    }
                    None => {
                        return Err(format!(
                            "output `{binding_name}` is not a stage the handler dispatches to (validate, build, test, approve, release)"
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "binding `{binding_name}` ({kind}/{direction}) is not one the handler uses for `{name}`"
                ));
            }
        }
    }
    if triggers != 1 {
        return Err(format!(
            "has {triggers} triggers; a function has exactly one"
        ));
    }
    if expected == Trigger::Http && !http_output {
        return Err(format!(
            "has no http output named `{}`: the handler's answer would be lost",
            crate::protocol::HTTP_OUTPUT
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo_function(name: &str) -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("functions")
            .join(name)
            .join("function.json");
        let text = std::fs::read_to_string(&path).expect("function.json");
        serde_json::from_str(&text).expect("JSON")
    }

    #[test]
    fn every_function_json_of_the_repository_matches_the_handler() {
        for name in NAMES {
            check_bindings(name, &repo_function(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn bindings_the_handler_would_not_decode_are_refused_saying_what_it_expects() {
        let queue = |name: &str, queue: &str| json!({"bindings": [{"type": "serviceBusTrigger", "direction": "in", "name": name, "queueName": queue, "connection": "ServiceBus"}]});
        let err = check_bindings("stage-test", &queue("msg", "stage-test")).expect_err("name");
        assert!(err.contains("named `message`"), "{err}");
        let err =
            check_bindings("stage-test", &queue("message", "stage-build")).expect_err("queue");
        assert!(err.contains("queue `stage-test`"), "{err}");
        let err = check_bindings("stage-publish", &queue("message", "stage-publish"))
            .expect_err("unserved");
        assert!(err.contains("serves no function `stage-publish`"), "{err}");
        let err = check_bindings("runs", &queue("message", "runs")).expect_err("kind");
        assert!(err.contains("httpTrigger named `req`"), "{err}");

        let mut approve = repo_function("stage-approve");
        approve["bindings"][1]["queueName"] = json!("stage-test");
        let err = check_bindings("stage-approve", &approve).expect_err("output queue");
        assert!(err.contains("queue `stage-release`"), "{err}");
        let mut approve = repo_function("stage-approve");
        approve["bindings"][1]["name"] = json!("publish");
        let err = check_bindings("stage-approve", &approve).expect_err("output name");
        assert!(err.contains("not a stage"), "{err}");

        let mut dashboard = repo_function("dashboard");
        dashboard["bindings"][1]["name"] = json!("response");
        let err = check_bindings("dashboard", &dashboard).expect_err("http out");
        assert!(err.contains("answers through `res`"), "{err}");
        let err = check_bindings("dashboard", &json!({"bindings": []})).expect_err("empty");
        assert!(err.contains("no binding"), "{err}");
    }
}
