//! `push`: a signed GitHub push webhook sent to a running factory, as
//! GitHub would send it.

use std::process::ExitCode;

use super::client::Client;
use super::output::print_answer;

/// Send a signed GitHub push webhook to a running factory.
#[derive(clap::Args)]
pub struct Push {
    /// The commit id pushed.
    #[arg(long)]
    commit: String,
    /// Files the push changed (repository paths, e.g. images/example/build.pkr.hcl).
    #[arg(long = "changed", required = true)]
    changed: Vec<String>,
    /// The branch pushed to.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The commit's message (the release notes quote its first line).
    #[arg(long)]
    message: Option<String>,
    /// The factory's base URL.
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
}

impl Push {
    /// Sends the webhook and prints the factory's answer.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        print_answer(
            Client::new(&self.url)
                .push(
                    &self.commit,
                    &self.changed,
                    &self.branch,
                    self.message.as_deref(),
                )
                .await?,
        )
    }
}
