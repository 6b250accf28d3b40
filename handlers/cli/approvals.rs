//! Approvals from the command line: `approvals links` prints the links of
//! the approvers who have not decided, read from this machine's outbox (a
//! local factory writes them there; the factory never serves them), and
//! `approve` / `reject` decide for an approver with the same checks as a
//! link.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::client::Client;
use super::output::print_answer;
use crate::config::Settings;
use crate::domain::run::{Run, RunId, RunStatus};

/// Approval links of a run that waits for its approvers.
#[derive(clap::Args)]
pub struct Approvals {
    #[command(subcommand)]
    action: ApprovalsAction,
}

#[derive(clap::Subcommand)]
enum ApprovalsAction {
    /// Print the approval link of each approver who has not decided, one per
    /// line, from this machine's outbox (a local factory writes it there).
    Links {
        /// The run.
        run: RunId,
        /// Only this approver's link.
        #[arg(long = "as")]
        approver: Option<String>,
        /// Wait up to this many seconds for the run to reach its approvers.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Print JSON (approver, url, expiresAt) instead of one link a line.
        #[arg(long)]
        json: bool,
        /// The factory's base URL.
        #[arg(
            long,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
        url: String,
    },
}

impl Approvals {
    /// Prints the pending links.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let ApprovalsAction::Links {
            run,
            approver,
            wait,
            json,
            url,
        } = self.action;
        let outbox = Settings::from_env()?.data_dir.join("outbox");
        let links = approval_links(
            &Client::new(&url),
            &run,
            &outbox,
            approver.as_deref(),
            Duration::from_secs(wait),
        )
        .await?;
        if json {
            return print_answer(serde_json::to_string_pretty(&links)?);
        }
        let mut out = std::io::stdout().lock();
        for link in links {
            writeln!(out, "{}", link.url)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Who decides on which run (`approve`, `reject`).
#[derive(clap::Args)]
pub struct DecisionArgs {
    /// The run.
    run: RunId,
    /// The approver deciding.
    #[arg(long = "as")]
    approver: String,
    /// A comment for the audit trail.
    #[arg(long, default_value = "")]
    comment: String,
    /// The factory's base URL.
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
    /// Print the factory's answer as JSON (runId, status, decisions).
    #[arg(long)]
    json: bool,
}

impl DecisionArgs {
    /// Records `decision` (`approve` or `reject`) and says where the run is.
    pub async fn send(self, decision: &str) -> anyhow::Result<ExitCode> {
        let body = serde_json::json!({ "decision": decision, "as": self.approver, "comment": self.comment });
        let answer = Client::new(&self.url)
            .operator_post(Some(&self.run), &body)
            .await?;
        if self.json {
            return print_answer(answer);
        }
        let decided: serde_json::Value = serde_json::from_str(&answer)
            .context("the factory's answer is not a recorded decision")?;
        print_answer(format!(
            "{} {} run {}: it is {}",
            self.approver,
            if decision == "approve" {
                "approved"
            } else {
                "rejected"
            },
            self.run,
            decided["status"].as_str().unwrap_or("?")
        ))
    }
}

/// The link of an approver who has not decided yet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingLink {
    /// The approver.
    pub approver: String,
    /// Their approval link (a bearer secret: it decides for them).
    pub url: String,
    /// When the request lapses.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The links of run `id`'s approvers who have not decided (only `only`'s,
/// when given), read from the outbox folder `outbox` of the local factory
/// that runs it. Waits up to `wait` for the run to reach its approvers and
/// for their links to be written.
///
/// The links are read from the outbox on this machine rather than asked of
/// the factory: links are bearer secrets, and the factory never serves them.
async fn approval_links(
    client: &Client,
    id: &RunId,
    outbox: &Path,
    only: Option<&str>,
    wait: Duration,
) -> anyhow::Result<Vec<PendingLink>> {
    let started = Instant::now();
    loop {
        let run = client.run(id).await?;
        match pending_links(&run, outbox, only)? {
            Ok(links) => return Ok(links),
            Err(not_yet) if started.elapsed() >= wait => {
                bail!(
                    "{not_yet} (waited {} s; --wait waits longer)",
                    wait.as_secs()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The pending links of `run` from `outbox`: `Ok(Err(why))` when they may
/// still come (the run has not reached its approvers, a link is not written
/// yet), an error when they never will.
fn pending_links(
    run: &Run,
    outbox: &Path,
    only: Option<&str>,
) -> anyhow::Result<Result<Vec<PendingLink>, String>> {
    if run.status.is_terminal() {
        bail!(
            "run {} is {}: it takes no more decisions",
            run.id,
            run.status
        );
    }
    let (RunStatus::WaitingForApproval, Some(request)) = (run.status, &run.approval) else {
        return Ok(Err(format!(
            "run {} is {}, not waiting for approval yet",
            run.id, run.status
        )));
    };
    if let Some(approver) = only {
        if !request.approvers.iter().any(|a| a == approver) {
            bail!(
                "{approver} is not an approver of run {} (its approvers: {})",
                run.id,
                request.approvers.join(", ")
            );
        }
        if run.decisions.iter().any(|d| d.approver == approver) {
            bail!("{approver} already decided on run {}", run.id);
        }
    }
    let mut links = Vec::new();
    for approver in &request.approvers {
        let decided = run.decisions.iter().any(|d| &d.approver == approver);
        if decided || only.is_some_and(|o| o != approver) {
            continue;
        }
        let file = crate::local::outbox::outbox_file(outbox, &run.id, approver);
        let note: Option<serde_json::Value> = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let url = note
            .as_ref()
            .filter(|n| n["runId"] == run.id.as_str())
            .and_then(|n| n["url"].as_str());
        let Some(url) = url else {
            return Ok(Err(format!(
                "no approval link for {approver} in {} yet (is this the factory's data folder, IMAGE_FACTORY_DATA?)",
                file.display()
            )));
        };
        links.push(PendingLink {
            approver: approver.clone(),
            url: url.to_string(),
            expires_at: request.expires_at,
        });
    }
    Ok(Ok(links))
}
