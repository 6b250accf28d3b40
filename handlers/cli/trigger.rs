//! `trigger`: an out-of-band run, asked of a running factory with the
//! operator token. It says what became of it: the run started, or skipped
//! by build avoidance ("skipped: unchanged since run X ...") and why.

use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use super::client::Client;
use super::output::print_answer;
use crate::domain::run::RunStatus;

/// Start an out-of-band run of an image (an urgent security fix, a rebuild on demand).
///
/// When the image's inputs are identical to its current release, nothing
/// is built: the run is recorded skipped, and the command says since which
/// run the image is unchanged (--force builds anyway).
#[derive(clap::Args)]
pub struct Trigger {
    /// The image to build.
    #[arg(long)]
    image: String,
    /// Why: recorded on the run.
    #[arg(long)]
    reason: String,
    /// Build even if the inputs are identical to the last release.
    #[arg(long)]
    force: bool,
    /// The factory's base URL.
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
    /// Print the factory's answer as JSON (runId, image, version, status, skipped).
    #[arg(long)]
    json: bool,
}

/// The factory's answer to a trigger.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    run_id: String,
    image: String,
    version: String,
    status: RunStatus,
    #[serde(default)]
    skipped: Option<String>,
}

impl Trigger {
    /// Asks for the run and says what became of it.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let body =
            serde_json::json!({ "image": self.image, "reason": self.reason, "force": self.force });
        let answer = Client::new(&self.url).operator_post(None, &body).await?;
        if self.json {
            return print_answer(answer);
        }
        let started: Started =
            serde_json::from_str(&answer).context("the factory's answer is not a started run")?;
        print_answer(describe(&started))
    }
}

/// What became of the run, in words.
fn describe(started: &Started) -> String {
    if started.status != RunStatus::Skipped {
        return format!(
            "started run {}: {} {} ({}); `image-factory runs wait {}` waits for it",
            started.run_id, started.image, started.version, started.status, started.run_id
        );
    }
    let why = started
        .skipped
        .as_deref()
        .unwrap_or("its inputs are identical to the image's current release");
    format!(
        "skipped: {why}\n(recorded as run {}; --force builds anyway)",
        started.run_id
    )
}
