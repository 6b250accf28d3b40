//! What a cancel frees, and freeing it: the I/O after a cancel is recorded
//! (`domain::machine::Event::Cancel` makes the run `cancelling` before
//! anything is touched; `Event::Freed` records each attempt here and ends
//! the run `cancelled`).
//!
//! What a run may hold when it is cancelled, by the stage it was at:
//!
//! - **build**: the build worker off the host (a Container Apps job
//!   execution), stopped; an attempt whose worker was started but not yet
//!   recorded is found by its stage message. On one machine, packer's
//!   process group, stopped through the id kept beside the run's build log
//!   (so a build a crashed process left running is stopped too);
//! - **test**: the test resource group on Azure, deleted (nothing on one
//!   machine: a smoke command ends on its own timeout);
//! - **approve**: nothing to free: the approval request is withdrawn by the
//!   run's status (its links answer that the run was cancelled);
//! - **release**: never: a run whose release started is not cancelled.
//!
//! Every step is idempotent (a stopped worker or group, a deleted group, is
//! found gone), so an attempt cut short by a crash is simply made again: by
//! the sweeper, which finishes the freeing of every run left `cancelling`.
//! A stage invocation that was under way when the cancel was recorded frees
//! what it started itself when its result is refused ([`stop_worker`],
//! [`stop_workers_of_message`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::build_log;
use crate::domain::machine::{Event, Transition, decide};
use crate::domain::run::{FreeReport, Run, RunId, RunStatus, Stage, WorkerRef};
use crate::ports::PortError;
use crate::ports::executor::Executor;
use crate::ports::store::{RunStore, UpdateError, update_run_from};
use crate::ports::test_env::TestEnvironment;
use crate::ports::workers::{WorkerState, Workers};

/// What a cancelled run's resources are held by: the ports that free them.
pub struct Resources<'a> {
    /// Build workers off the host, when builds run there.
    pub workers: Option<&'a dyn Workers>,
    /// Where builds run on this machine.
    pub executor: &'a dyn Executor,
    /// The packer binary local builds run (what a stopped group's leader is).
    pub packer: Option<&'a Path>,
    /// The test environments.
    pub test_environments: &'a [Arc<dyn TestEnvironment>],
    /// The run's folder on this machine.
    pub run_dir: PathBuf,
}

/// Carries out the cancel of run `id`: when it is `cancelling`, frees what
/// it holds and records the attempt (`Event::Freed`), which ends it
/// `cancelled` unless what could not be freed is worth another attempt
/// (the sweeper's). A run in any other state is answered as it is.
pub async fn finish(
    store: &dyn RunStore,
    resources: &Resources<'_>,
    id: &RunId,
    now: impl Fn() -> DateTime<Utc>,
) -> Result<Transition, UpdateError> {
    let stored = store.get(id).await?;
    let run = stored.value.clone();
    if run.status != RunStatus::Cancelling {
        return Ok(Transition {
            run,
            commands: Vec::new(),
            changed: false,
        });
    }
    let attempt = run.cancellation.as_ref().map_or(0, |c| c.freeing.attempts) + 1;
    let report = free(resources, &run).await;
    for line in &report.freed {
        tracing::info!(run_id = %id, "freed: {line}");
    }
    for line in &report.failed {
        tracing::warn!(run_id = %id, "not freed: {line}");
    }
    let event = Event::Freed {
        at: now(),
        attempt,
        report,
    };
    Ok(
        update_run_from(store, id, Some(stored), |run| decide(run, &event))
            .await?
            .transition,
    )
}

/// Frees what `run`, cancelled, holds (by the stage it was at, as its
/// cancellation records), and says what was freed and what was not.
pub async fn free(resources: &Resources<'_>, run: &Run) -> FreeReport {
    let mut report = FreeReport::default();
    let Some(cancellation) = &run.cancellation else {
        return report;
    };
    match cancellation.stage {
        Some(Stage::Build) => free_build(resources, run, &mut report).await,
        Some(Stage::Test) => {
            for environment in resources.test_environments {
                match environment.free(run).await {
                    Ok(Some(line)) => report.freed.push(line),
                    Ok(None) => {}
                    Err(e) => failed(&mut report, "the test resources", &e),
                }
            }
        }
        Some(Stage::Approve) => report
            .freed
            .push("approval request withdrawn: its links answer that the run was cancelled".into()),
        Some(Stage::Validate | Stage::Release) | None => {}
    }
    report
}

/// Stops the build worker of every build attempt that still runs, or on
/// one machine the build's process group.
async fn free_build(resources: &Resources<'_>, run: &Run, report: &mut FreeReport) {
    let record = run.stage(Stage::Build);
    let Some(workers) = resources.workers else {
        let Some(packer) = resources.packer else {
            return;
        };
        let log = resources.run_dir.join(build_log::CURRENT);
        match resources.executor.stop(&log, packer).await {
            Ok(Some(group)) => report.freed.push(format!(
                "local packer build stopped (process group {group})"
            )),
            Ok(None) => {}
            Err(e) => {
                report.failed.push(format!("the local packer build: {e}"));
                report.retry = true;
            }
        }
        return;
    };
    for worker in record.attempts.iter().filter_map(|a| a.worker.as_ref()) {
        match stop_worker(workers, worker).await {
            Ok(Some(line)) => report.freed.push(line),
            Ok(None) => {}
            Err(e) => failed(report, &format!("build worker {}", worker.execution), &e),
        }
    }
    // An attempt whose worker was started but not recorded (the cancel came
    // between the start and its record): found by its stage message.
    if let Some(attempt) = record.current_attempt().filter(|a| a.worker.is_none()) {
        match stop_workers_of_message(workers, &run.id, &attempt.execution.message_id).await {
            Ok(lines) => report.freed.extend(lines),
            Err(e) => failed(
                report,
                &format!(
                    "the build workers of message {}",
                    attempt.execution.message_id
                ),
                &e,
            ),
        }
    }
}

/// Stops `worker` if it still runs; answers what was done (`None`: it had
/// ended by itself).
pub async fn stop_worker(
    workers: &dyn Workers,
    worker: &WorkerRef,
) -> Result<Option<String>, PortError> {
    if workers.state(worker).await? != WorkerState::Running {
        return Ok(None);
    }
    workers.stop(worker).await?;
    Ok(Some(format!("build worker {} stopped", worker.execution)))
}

/// Stops every worker the stage message `message_id` of `run` started
/// that still runs; answers one line per worker stopped.
pub async fn stop_workers_of_message(
    workers: &dyn Workers,
    run: &RunId,
    message_id: &str,
) -> Result<Vec<String>, PortError> {
    Ok(workers
        .stop_started_for(run, message_id)
        .await?
        .into_iter()
        .map(|w| format!("build worker {} stopped", w.execution))
        .collect())
}

/// Records that `what` could not be freed, and whether trying again may.
fn failed(report: &mut FreeReport, what: &str, error: &PortError) {
    report.failed.push(format!("{what}: {error}"));
    report.retry |= error.is_transient();
}
