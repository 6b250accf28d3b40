//! `runs`: the runs of a running factory, through its runs API: list them,
//! show one, print its build log (following it), its release notes, wait
//! for it to end with an exit code that says how, or cancel it (with the
//! operator token).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::client::Client;
use super::log_view::LogPrinter;
use super::output::{colour_stdout, print_answer};
use crate::domain::controls::{Lines, escape_controls};
use crate::domain::run::{FollowUpKind, Run, RunId, RunStatus, Stage, StageStatus};

/// List runs, show one, follow its log, or wait for it to end.
#[derive(clap::Args)]
pub struct Runs {
    #[command(subcommand)]
    action: Option<RunsAction>,
    /// The factory's base URL.
    #[arg(
        long,
        global = true,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum RunsAction {
    /// List runs, newest first (the default).
    List {
        /// Only runs of this image.
        #[arg(long)]
        image: Option<String>,
        /// Only runs in this status (queued, running, waiting-for-approval, released, ...).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one run's stages and outcome.
    Show {
        /// The run.
        id: RunId,
    },
    /// Print a run's build log as a person reads it: time (UTC), step and
    /// message, a line each (errors marked); --raw prints Packer's
    /// machine-readable lines as written; --follow keeps printing until the
    /// build ends.
    Logs {
        /// The run.
        id: RunId,
        /// Keep following the log.
        #[arg(long)]
        follow: bool,
        /// Print the log as Packer wrote it (`-machine-readable`:
        /// timestamp,target,type,data...).
        #[arg(long)]
        raw: bool,
        /// The log of this build attempt (from 1; `runs show --json` lists
        /// them) instead of the current one's: what an attempt cut short by
        /// a crash printed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
    },
    /// Print a released run's release notes (Markdown, as `release-notes.md`;
    /// with --json, the `notes` of its `image-version.json`).
    Notes {
        /// The run.
        id: RunId,
    },
    /// Cancel a run (operator token): it stops at once, its build worker or
    /// packer is stopped, its test resources deleted, its approval request
    /// withdrawn, and it never releases. Refused once its release started.
    Cancel {
        /// The run.
        id: RunId,
        /// Why: recorded on the run.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Wait for a run to end; the exit code says how (0 released or skipped,
    /// 10 failed, 11 rejected, 12 approval expired, 13 cancelled, 20 still
    /// going after --timeout).
    Wait {
        /// The run.
        id: RunId,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

impl Runs {
    /// Runs the action (`list` when none is given).
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Runs { action, url, json } = self;
        let client = Client::new(&url);
        match action.unwrap_or(RunsAction::List {
            image: None,
            status: None,
        }) {
            RunsAction::List { image, status } => {
                let runs = client.list(image.as_deref(), status.as_deref()).await?;
                if json {
                    print_answer(serde_json::to_string_pretty(&runs)?)?;
                } else {
                    print_table(&runs)?;
                }
            }
            RunsAction::Show { id } => {
                let run = client.run(&id).await?;
                if json {
                    print_answer(serde_json::to_string_pretty(&run)?)?;
                } else {
                    print_run(&run)?;
                }
            }
            RunsAction::Notes { id } => {
                let run = client.run(&id).await?;
                let Some(release) = &run.release else {
                    anyhow::bail!(
                        "run {id} is {}: only a released run has release notes",
                        run.status
                    );
                };
                let Some(notes) = &release.notes else {
                    anyhow::bail!("run {id} was released before the factory wrote release notes");
                };
                if json {
                    print_answer(serde_json::to_string_pretty(notes)?)?;
                } else {
                    print_answer(notes.markdown(&run.image, &release.image_version))?;
                }
            }
            RunsAction::Logs {
                id,
                follow,
                raw,
                attempt,
            } => {
                let mut printer = LogPrinter::new(raw, colour_stdout());
                let mut offset = 0;
                loop {
                    let (piece, next) = client.log(&id, offset, attempt).await?;
                    let mut out = std::io::stdout().lock();
                    printer.feed(&mut out, &piece)?;
                    out.flush()?;
                    offset = next;
                    if piece.is_empty() {
                        // The whole log as it is now has been read; it is
                        // complete once the build stage has ended.
                        if !follow || build_finished(&client.run(&id).await?, attempt) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                printer.finish(&mut std::io::stdout().lock())?;
            }
            RunsAction::Cancel { id, reason } => {
                let body = serde_json::json!({ "action": "cancel", "reason": reason });
                let answer = client.operator_post(Some(&id), &body).await?;
                if json {
                    print_answer(answer)?;
                } else {
                    print_run(&client.run(&id).await?)?;
                }
            }
            RunsAction::Wait { id, timeout } => {
                let (run, code) = wait(&client, &id, Duration::from_secs(timeout), json).await?;
                if json {
                    print_answer(serde_json::to_string_pretty(&run)?)?;
                } else {
                    print_run(&run)?;
                }
                return Ok(ExitCode::from(code));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Exit codes of `runs wait`, so scripts can tell outcomes apart (and of
/// every command that fails: [`exit::ERROR`]).
pub(super) mod exit {
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
    /// An operator cancelled it.
    pub const CANCELLED: u8 = 13;
    /// Still going when the wait timed out.
    pub const TIMED_OUT: u8 = 20;
}

/// Prints runs as a table: each run's stage, and whom it waits on or why
/// it ended as it did.
fn print_table(runs: &[Run]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    // Wide enough for the longest id: push ids carry a whole commit.
    let width = runs.iter().map(|r| r.id.len()).max().unwrap_or(0).max(34);
    writeln!(
        out,
        "{:<width$} {:<24} {:<14} {:<22} {:<9} {:<16} WAITING ON / WHY",
        "RUN", "IMAGE", "VERSION", "STATUS", "STAGE", "CREATED"
    )?;
    for run in runs {
        writeln!(
            out,
            "{:<width$} {:<24} {:<14} {:<22} {:<9} {:<16} {}",
            run.id.as_str(),
            run.image,
            run.version.to_string(),
            run.status.name(),
            run.stage_at().map_or("-", Stage::name),
            run.created_at.format("%Y-%m-%d %H:%M"),
            what_next(run)
        )?;
    }
    Ok(())
}

/// Longest reason the runs table shows (`runs show` shows it whole).
const REASON_SHOWN: usize = 80;

/// Whom a waiting run waits on, or why a run ended as it did, shortened
/// to one line.
fn what_next(run: &Run) -> String {
    let reason = match run.status {
        RunStatus::WaitingForApproval => {
            return format!("waiting on {}", run.waiting_on().join(", "));
        }
        RunStatus::Failed | RunStatus::Rejected | RunStatus::ApprovalExpired => {
            run.failure.as_ref().map(|f| f.reason.as_str())
        }
        RunStatus::Skipped => run.skipped.as_deref(),
        RunStatus::Cancelling | RunStatus::Cancelled => {
            return run
                .cancellation
                .as_ref()
                .map(|c| format!("cancelled by {}", c.by))
                .unwrap_or_default();
        }
        _ => None,
    };
    let line = reason.and_then(|r| r.lines().next()).unwrap_or_default();
    crate::domain::truncate(&escape_controls(line, Lines::Escape), REASON_SHOWN)
}

/// Prints a run's stages.
fn print_run(run: &Run) -> anyhow::Result<()> {
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
    if let Some(cancellation) = &run.cancellation {
        writeln!(
            out,
            "  cancelled by {} at {}{}",
            cancellation.by,
            cancellation.at.format("%Y-%m-%d %H:%M:%S UTC"),
            cancellation
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )?;
        for line in &cancellation.freeing.freed {
            writeln!(out, "  freed: {line}")?;
        }
        for line in &cancellation.freeing.not_freed {
            writeln!(out, "  not freed: {line}")?;
        }
        if run.status == RunStatus::Cancelling {
            writeln!(
                out,
                "  freeing: attempt {} made; the sweeper finishes it",
                cancellation.freeing.attempts
            )?;
        }
    }
    if let Some(check) = &run.schedule_check
        && check.paused
    {
        writeln!(
            out,
            "  this failure paused the image's scheduled runs (after {} failed scheduled runs: {})",
            check.failures.len(),
            check
                .failures
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if let Some(resume) = &run.schedule_resumed {
        writeln!(
            out,
            "  the image's scheduled runs were resumed after this run by {} at {}{}",
            resume.by,
            resume.at.format("%Y-%m-%d %H:%M:%S UTC"),
            resume
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )?;
    }
    if let Some(tag) = &run.git_tag {
        writeln!(out, "  git tag: {}", tag.describe())?;
    }
    for follow_up in &run.follow_ups {
        let FollowUpKind::Event { event } = follow_up.kind;
        if let Some(owed) = follow_up.owed() {
            writeln!(out, "  event {}: {owed}", event.name())?;
        }
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
fn build_finished(run: &Run, attempt: Option<u32>) -> bool {
    let attempts = run.stage(Stage::Build).attempts.len();
    attempt.is_some_and(|n| (n as usize) < attempts)
        || run.status.is_terminal()
        || !matches!(
            run.stage(Stage::Build).status,
            StageStatus::Pending | StageStatus::Running
        )
}

/// The exit code that says how a finished run ended.
fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Released | RunStatus::Skipped => exit::DONE,
        RunStatus::Rejected => exit::REJECTED,
        RunStatus::ApprovalExpired => exit::APPROVAL_EXPIRED,
        RunStatus::Failed => exit::FAILED,
        RunStatus::Cancelled => exit::CANCELLED,
        RunStatus::Queued
        | RunStatus::Running
        | RunStatus::WaitingForApproval
        | RunStatus::Cancelling => exit::TIMED_OUT,
    }
}

/// Waits for run `id` to end, showing its progress; returns the exit code.
async fn wait(
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
            RunStatus::Cancelled,
            RunStatus::Running,
            RunStatus::Cancelling,
        ]
        .into_iter()
        .map(exit_code)
        .collect();
        assert_eq!(codes, [0, 0, 10, 11, 12, 13, 20, 20]);
    }
}
