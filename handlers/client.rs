//! The operator's client: the CLI commands that talk to a running factory
//! over HTTP, as any other user of its API would (signed webhooks, the
//! operator token for out-of-band runs and decisions, the runs API), and
//! read the approval links a local factory wrote to its outbox.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Settings;
use crate::domain::fleet::{Compliance, FleetPage};
use crate::domain::run::{Run, RunId, RunStatus, Stage, StageStatus};
use crate::startup::Secrets;

/// Exit codes of `runs wait`, so scripts can tell outcomes apart.
pub mod exit {
    /// Released, or skipped (identical to a release).
    pub const DONE: u8 = 0;
    /// The command itself failed (unreachable factory, unknown run, ...).
    pub const ERROR: u8 = 1;
    /// A stage failed.
    pub const FAILED: u8 = 10;
    /// An approver rejected it.
    pub const REJECTED: u8 = 11;
    /// Nobody decided in time.
    pub const APPROVAL_EXPIRED: u8 = 12;
    /// Still going when the wait timed out.
    pub const TIMED_OUT: u8 = 20;
}

/// A client of one factory.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the factory at `url` (e.g. `http://localhost:7071`).
    pub fn new(url: &str) -> Client {
        Client {
            base: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<String> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("{what}: the factory answered {status}: {message}");
        }
        Ok(text)
    }

    /// POSTs `body` to `/api/runs[/{run}]` with the operator token.
    pub async fn operator_post(
        &self,
        run: Option<&RunId>,
        body: &serde_json::Value,
    ) -> anyhow::Result<String> {
        let settings = Settings::from_env()?;
        let Some(token) = Secrets::from_env(&settings, true)?.operator else {
            bail!("no operator token: set IMAGE_FACTORY_OPERATOR_TOKEN");
        };
        let url = match run {
            Some(run) => format!("{}/api/runs/{run}", self.base),
            None => format!("{}/api/runs", self.base),
        };
        self.send(
            self.http.post(url).bearer_auth(token).json(body),
            "the request was refused",
        )
        .await
    }

    /// Sends a GitHub push webhook of `commit` (with its `message`)
    /// changing `changed`, signed with the webhook secret.
    pub async fn push(
        &self,
        commit: &str,
        changed: &[String],
        branch: &str,
        message: Option<&str>,
    ) -> anyhow::Result<String> {
        let settings = Settings::from_env()?;
        let Some(secret) = Secrets::from_env(&settings, true)?.github else {
            bail!("no GitHub webhook secret: set IMAGE_FACTORY_GITHUB_SECRET");
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "ref": format!("refs/heads/{branch}"),
            "before": "0000000000000000000000000000000000000000",
            "after": commit,
            "deleted": false,
            "commits": [{ "id": commit, "added": [], "removed": [], "modified": changed }],
            "head_commit": {
                "id": commit, "message": message, "added": [], "removed": [], "modified": changed
            },
            "pusher": { "name": std::env::var("USER").unwrap_or_else(|_| "operator".into()) },
        }))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
        mac.update(&body);
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let request = self
            .http
            .post(format!("{}/api/hooks/github", self.base))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header(
                "X-GitHub-Delivery",
                format!("{:032x}", rand::random::<u128>()),
            )
            .header("X-Hub-Signature-256", format!("sha256={signature}"))
            .body(body);
        self.send(request, "the push was refused").await
    }

    /// One run.
    pub async fn run(&self, id: &RunId) -> anyhow::Result<Run> {
        let text = self
            .send(
                self.http.get(format!("{}/api/runs/{id}", self.base)),
                &format!("run {id}"),
            )
            .await?;
        serde_json::from_str(&text).context("the factory's answer is not a run")
    }

    /// A page of runs.
    pub async fn list(
        &self,
        image: Option<&str>,
        status: Option<&str>,
    ) -> anyhow::Result<Vec<Run>> {
        let mut query = Vec::new();
        if let Some(i) = image {
            query.push(("image", i));
        }
        if let Some(s) = status {
            query.push(("status", s));
        }
        let text = self
            .send(
                self.http
                    .get(format!("{}/api/runs", self.base))
                    .query(&query),
                "listing runs",
            )
            .await?;
        let page: serde_json::Value = serde_json::from_str(&text)?;
        serde_json::from_value(page["runs"].clone())
            .context("the factory's answer is not a list of runs")
    }

    /// The whole fleet view: every page of `GET /api/runs?view=fleet`, the
    /// images in one list (the headline of the last page read).
    pub async fn fleet(&self) -> anyhow::Result<FleetPage> {
        let mut continuation: Option<String> = None;
        let mut images = Vec::new();
        loop {
            let mut query = vec![("view", "fleet".to_string()), ("limit", "100".into())];
            if let Some(c) = continuation.take() {
                query.push(("continuation", c));
            }
            let text = self
                .send(
                    self.http
                        .get(format!("{}/api/runs", self.base))
                        .query(&query),
                    "the fleet view",
                )
                .await?;
            let page: FleetPage =
                serde_json::from_str(&text).context("the factory's answer is not a fleet view")?;
            images.extend(page.images);
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => {
                    return Ok(FleetPage {
                        headline: page.headline,
                        images,
                        continuation: None,
                    });
                }
            }
        }
    }

    /// The build log from byte `offset`, the current attempt's or that of
    /// build attempt `attempt`: the text and the next offset.
    pub async fn log(
        &self,
        id: &RunId,
        offset: u64,
        attempt: Option<u32>,
    ) -> anyhow::Result<(String, u64)> {
        let mut url = format!("{}/api/runs/{id}?log={offset}", self.base);
        if let Some(n) = attempt {
            url.push_str(&format!("&attempt={n}"));
        }
        let response = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        // No current log yet is an empty one; no log of a given attempt is an error.
        if response.status() == 404 && attempt.is_none() {
            return Ok((String::new(), offset));
        }
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await?;
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            bail!("the build log of run {id}: the factory answered {status}: {message}");
        }
        let next = response
            .headers()
            .get("X-Log-Offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(offset);
        Ok((response.text().await?, next))
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
pub async fn approval_links(
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

/// Prints runs as a table.
pub fn print_table(runs: &[Run]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    // Wide enough for the longest id: push ids carry a whole commit.
    let width = runs.iter().map(|r| r.id.len()).max().unwrap_or(0).max(34);
    writeln!(
        out,
        "{:<width$} {:<24} {:<14} {:<22} CREATED",
        "RUN", "IMAGE", "VERSION", "STATUS"
    )?;
    for run in runs {
        writeln!(
            out,
            "{:<width$} {:<24} {:<14} {:<22} {}",
            run.id.as_str(),
            run.image,
            run.version.to_string(),
            run.status.name(),
            run.created_at.format("%Y-%m-%d %H:%M")
        )?;
    }
    Ok(())
}

/// Prints the fleet view: the headline, then one line per image.
pub fn print_fleet(fleet: &FleetPage) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let h = &fleet.headline;
    writeln!(
        out,
        "{} of {} images patched since the {} Patch Tuesday build ({}); {} due, {} overdue (deadline {}, {}-day grace)",
        h.patched,
        h.total,
        h.window.month,
        h.window.build_time.format("%Y-%m-%d %H:%M UTC"),
        h.due,
        h.overdue,
        h.window.deadline.format("%Y-%m-%d %H:%M UTC"),
        h.window.grace_days
    )?;
    let width = fleet
        .images
        .iter()
        .map(|r| r.image.len())
        .max()
        .unwrap_or(0)
        .max(5);
    writeln!(
        out,
        "{:<width$} {:<8} {:<11} {:<14} {:<17} {:<10} LAST FAILURE",
        "IMAGE", "STATE", "DAYS", "RELEASED", "WHEN", "IN FLIGHT"
    )?;
    for row in &fleet.images {
        let days = match &row.compliance {
            Compliance::Patched { .. } => "-".to_string(),
            Compliance::Due { days_left, .. } => format!("{days_left} left"),
            Compliance::Overdue { days_overdue, .. } => format!("{days_overdue} late"),
        };
        let (version, when) = row.latest_release.as_ref().map_or_else(
            || ("never".to_string(), "-".to_string()),
            |r| {
                (
                    r.version.clone(),
                    r.released_at.format("%Y-%m-%d %H:%M").to_string(),
                )
            },
        );
        let flying = row
            .in_flight
            .iter()
            .map(|r| match (&r.approval, r.stage) {
                (Some(_), _) => "approval".to_string(),
                (None, Some(stage)) => stage.name().to_string(),
                (None, None) => r.status.name().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let failure = row.last_failure.as_ref().map_or_else(
            || "-".to_string(),
            |f| format!("{} {}", f.run_id, f.at.format("%Y-%m-%d")),
        );
        writeln!(
            out,
            "{:<width$} {:<8} {:<11} {:<14} {:<17} {:<10} {}",
            row.image,
            row.compliance.name(),
            days,
            version,
            when,
            if flying.is_empty() { "-" } else { &flying },
            failure
        )?;
    }
    Ok(())
}

/// Prints a run's stages.
pub fn print_run(run: &Run) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {} {} — {}",
        run.id,
        run.image,
        run.version,
        run.status.name()
    )?;
    for stage in &run.stages {
        writeln!(
            out,
            "  {:<9} {:<10} {}",
            stage.stage.name(),
            format!("{:?}", stage.status).to_lowercase(),
            stage.summary.as_deref().unwrap_or("")
        )?;
    }
    if let Some(source) = &run.source {
        writeln!(out, "  source: {}", source.describe())?;
    }
    if let Some(failure) = &run.failure {
        writeln!(out, "  why: {}", failure.reason)?;
    }
    if let Some(skipped) = &run.skipped {
        writeln!(out, "  skipped: {skipped}")?;
    }
    for follow_up in &run.follow_ups {
        let crate::domain::followup::FollowUpKind::Event { event } = follow_up.kind;
        for delivery in &follow_up.deliveries {
            writeln!(
                out,
                "  event {} to {}: {}",
                event.name(),
                delivery.target,
                delivery.describe()
            )?;
        }
    }
    Ok(())
}

/// Whether the run's build log (of build attempt `attempt`, or the
/// current one) can grow no more: the build ended, or a later attempt
/// superseded that one.
pub fn build_finished(run: &Run, attempt: Option<u32>) -> bool {
    let attempts = run.stage(Stage::Build).attempts.len();
    attempt.is_some_and(|n| (n as usize) < attempts)
        || run.status.is_terminal()
        || !matches!(
            run.stage(Stage::Build).status,
            StageStatus::Pending | StageStatus::Running
        )
}

/// The exit code that says how a finished run ended.
pub fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Released | RunStatus::Skipped => exit::DONE,
        RunStatus::Rejected => exit::REJECTED,
        RunStatus::ApprovalExpired => exit::APPROVAL_EXPIRED,
        RunStatus::Failed => exit::FAILED,
        RunStatus::Queued | RunStatus::Running | RunStatus::WaitingForApproval => exit::TIMED_OUT,
    }
}

/// Waits for run `id` to end, showing its progress; returns the exit code.
pub async fn wait(
    client: &Client,
    id: &RunId,
    timeout: Duration,
    quiet: bool,
) -> anyhow::Result<(Run, u8)> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal() && !quiet;
    let mut last = String::new();
    loop {
        let run = client.run(id).await?;
        if !quiet {
            let line = progress_line(&run);
            if line != last {
                if tty && !last.is_empty() {
                    eprint!("\r\x1b[2K");
                }
                if tty {
                    eprint!("{line}");
                } else {
                    eprintln!("{line}");
                }
                last = line;
            } else if tty {
                eprint!("\r\x1b[2K{line} ({} s)", started.elapsed().as_secs());
            }
        }
        if run.status.is_terminal() {
            if tty {
                eprintln!();
            }
            let code = exit_code(run.status);
            return Ok((run, code));
        }
        if started.elapsed() >= timeout {
            if tty {
                eprintln!();
            }
            return Ok((run, exit::TIMED_OUT));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn progress_line(run: &Run) -> String {
    let current = run
        .stages
        .iter()
        .find(|s| {
            matches!(
                s.status,
                StageStatus::Running | StageStatus::Waiting | StageStatus::Failed
            )
        })
        .map(|s| format!("{} {:?}", s.stage.name(), s.status).to_lowercase())
        .unwrap_or_default();
    format!(
        "{} {}: {} {current}",
        run.id,
        run.version,
        run.status.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_a_run_ends_has_its_own_exit_code() {
        let codes: Vec<u8> = [
            RunStatus::Released,
            RunStatus::Skipped,
            RunStatus::Failed,
            RunStatus::Rejected,
            RunStatus::ApprovalExpired,
            RunStatus::Running,
        ]
        .into_iter()
        .map(exit_code)
        .collect();
        assert_eq!(codes, [0, 0, 10, 11, 12, 20]);
    }
}
