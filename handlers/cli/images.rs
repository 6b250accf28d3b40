//! `images`: operator actions on an image of a running factory, with the
//! operator token: `images resume` resumes its paused scheduled runs.

use std::process::ExitCode;

use super::client::Client;
use super::output::print_answer;
use crate::domain::image::{IMAGE_NAME_RULE, is_valid_image_name};

/// Act on an image of a running factory (operator token).
#[derive(clap::Args)]
pub struct Images {
    #[command(subcommand)]
    action: ImagesAction,
    /// The factory's base URL.
    #[arg(
        long,
        global = true,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
}

#[derive(clap::Subcommand)]
enum ImagesAction {
    /// Resume an image's scheduled runs (Patch Tuesday, base image
    /// updates), paused after failing `[schedule] pause_after_failures`
    /// times in a row. The resume (who, when, why) is recorded on the
    /// image's newest failed scheduled run. Refused when they are not paused.
    Resume {
        /// The image (its folder's name).
        name: String,
        /// Why: recorded with the resume.
        #[arg(long)]
        reason: Option<String>,
        /// Print the factory's answer as JSON (image, resumed, recordedOn, pause).
        #[arg(long)]
        json: bool,
    },
}

impl Images {
    /// Runs the action and prints the factory's answer.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Images { action, url } = self;
        match action {
            ImagesAction::Resume { name, reason, json } => {
                if !is_valid_image_name(&name) {
                    anyhow::bail!("`{name}` is not an image name: {IMAGE_NAME_RULE}");
                }
                let body = serde_json::json!({ "reason": reason });
                let path = format!("/api/images/{name}/resume");
                let answer = Client::new(&url).operator(&path, &body).await?;
                if json {
                    return print_answer(answer);
                }
                let resumed: serde_json::Value = serde_json::from_str(&answer)
                    .map_err(|e| anyhow::anyhow!("the factory's answer is not a resume: {e}"))?;
                print_answer(format!(
                    "{name}: scheduled runs resumed (recorded on run {})",
                    resumed["recordedOn"].as_str().unwrap_or("?")
                ))
            }
        }
    }
}
