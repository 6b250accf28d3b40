//! `trigger`: an out-of-band run, asked of a running factory with the
//! operator token.

use std::process::ExitCode;

use super::client::Client;
use super::output::print_answer;

/// Start an out-of-band run of an image (an urgent security fix, a rebuild on demand).
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
}

impl Trigger {
    /// Asks for the run and prints the factory's answer.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let body =
            serde_json::json!({ "image": self.image, "reason": self.reason, "force": self.force });
        print_answer(Client::new(&self.url).operator_post(None, &body).await?)
    }
}
