//! The command line, in the shape of the function set: one file per command
//! (or group of commands), each owning its arguments and its action, and
//! `Command`, which dispatches. `main.rs` parses [`Cli`] and runs it.
//!
//! - `up`: the whole factory on this machine (handler + embedded Functions host);
//! - `serve`: the custom handler alone, as the Azure Functions host starts it;
//! - `worker`: run one build off the host and report it (the Container Apps job's command);
//! - `push`: send a signed GitHub push webhook to a running factory;
//! - `trigger`: start an out-of-band run;
//! - `approvals links`, `approve`, `reject` (in `approvals`): the pending
//!   approval links, and deciding for an approver with the same checks as a link;
//! - `runs`: list runs, show one, its log, its notes, wait for it to end, or cancel it;
//! - `dead-letters`: list the local bus's dead letters not handled yet, or start a run a dead letter failed again;
//! - `images resume`: resume an image's scheduled runs, paused after failing;
//! - `fleet`: every image's compliance with this month's patches, and what its runs wait on;
//! - `patch status`: a build's evidence judged against Microsoft's security data;
//! - `patch-tuesday`: print a year's Patch Tuesdays and build times;
//! - `package`: the deployable function app, zipped or as a folder, in the host's layout (checked against the handler, infra and the host's indexing rule);
//! - `doctor`: what is wrong before a run finds it (packer, images, settings, layout; with --url the deployed app);
//! - `rollback`: make an earlier gallery version of an image latest again;
//! - `schedule`: print the next firings of a timer schedule.
//!
//! The commands that talk to a running factory do it through `client`;
//! what they print goes through `output`. A command that fails prints
//! `error: ...` and exits 1; `runs wait` and `doctor` have exit codes of
//! their own.
//!
//! A new command is a file here with a `clap::Args` struct (its doc comment
//! is the command's help) and a `run` method, and one variant of
//! `Command`.

mod approvals;
mod client;
mod dead_letters;
mod doctor;
mod fleet;
mod images;
mod log_view;
mod output;
mod package;
mod patch;
mod patch_tuesday;
mod push;
mod rollback;
mod runs;
mod schedule;
mod serve;
mod signal;
mod trigger;
mod up;
mod worker;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::broken_pipe;

/// The `image-factory` command line.
#[derive(Parser)]
#[command(
    name = "image-factory",
    version,
    about = "A serverless golden-image factory for Azure"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Every command.
#[derive(Subcommand)]
enum Command {
    Up(up::Up),
    Serve(serve::Serve),
    Worker(worker::Worker),
    Push(push::Push),
    Trigger(trigger::Trigger),
    Approvals(approvals::Approvals),
    /// Record an approver's decision to approve a run (same checks as a link).
    Approve(approvals::DecisionArgs),
    /// Record an approver's decision to reject a run.
    Reject(approvals::DecisionArgs),
    Runs(runs::Runs),
    DeadLetters(dead_letters::DeadLetters),
    Images(images::Images),
    Fleet(fleet::Fleet),
    Patch(patch::Patch),
    PatchTuesday(patch_tuesday::PatchTuesday),
    Package(package::Package),
    Doctor(doctor::Doctor),
    Rollback(rollback::Rollback),
    Schedule(schedule::Schedule),
}

impl Command {
    /// Runs the command.
    async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Up(c) => c.run().await,
            Command::Serve(c) => c.run().await,
            Command::Worker(c) => c.run().await,
            Command::Push(c) => c.run().await,
            Command::Trigger(c) => c.run().await,
            Command::Approvals(c) => c.run().await,
            Command::Approve(c) => c.send("approve").await,
            Command::Reject(c) => c.send("reject").await,
            Command::Runs(c) => c.run().await,
            Command::DeadLetters(c) => c.run().await,
            Command::Images(c) => c.run().await,
            Command::Fleet(c) => c.run().await,
            Command::Patch(c) => c.run().await,
            Command::PatchTuesday(c) => c.run(),
            Command::Package(c) => c.run(),
            Command::Doctor(c) => c.run().await,
            Command::Rollback(c) => c.run().await,
            Command::Schedule(c) => c.run(),
        }
    }
}

impl Cli {
    /// Runs the command on a fresh runtime and turns its outcome into the
    /// process's exit code (an error is printed as `error: ...`).
    pub fn run(self) -> ExitCode {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the runtime: {e}");
                return ExitCode::from(runs::exit::ERROR);
            }
        };
        match runtime.block_on(self.command.run()) {
            Ok(code) => code,
            // The reader went away (`image-factory runs | head`): nothing is
            // wrong, and there is nobody left to tell.
            Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(runs::exit::ERROR)
            }
        }
    }
}
