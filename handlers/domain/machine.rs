//! The run state machine: `(run, event) -> (run', commands)`, pure.
//!
//! Service Bus delivers at least once and a handler can die between any two
//! lines, so every transition is written to be replayed: an event that has
//! already been applied leaves the run as it is and repeats the commands that
//! follow from the run's state (so a lost follow-up message is sent again).
//! Events that do not fit the run's state are refused with a reason.

use chrono::{DateTime, Utc};

use super::approval::{ApprovalRequest, Decision, Notification, Verdict};
use super::declaration::DeclarationRecord;
use super::diagnosis::diagnose;
use super::patch_gate::{PatchRecord, PatchStatus, WAITING_FOR_DATA};
use super::run::{
    Attempt, BuildOutcome, Cancellation, EventType, Execution, Failure, FollowUpKind, FreeReport,
    Freeing, GitTagRecord, Run, RunStatus, ScheduleCheck, ScheduleResume, Stage, StageOutput,
    StageStatus, WORKER_LOST, WorkerRef,
};

/// Something that happened to a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A stage's execution began (recorded before any side effect).
    StageStarted {
        /// Which stage.
        stage: Stage,
        /// The message delivery that runs it.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
    },
    /// A stage's execution finished well.
    StageSucceeded {
        /// Which stage (never `approve`: approvers decide that one).
        stage: Stage,
        /// The message delivery that finished.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
        /// What it produced.
        output: StageOutput,
    },
    /// The run's inputs are identical to a released image: nothing is
    /// built, the run ends `skipped`. Decided when the run is created, before
    /// any stage starts, so that a skipped run takes no version number.
    Skipped {
        /// When.
        at: DateTime<Utc>,
        /// Why, e.g. "identical to 2026.1125.0 (run ...)".
        reason: String,
    },
    /// A stage's execution finished badly; the run stops.
    StageFailed {
        /// Which stage.
        stage: Stage,
        /// The message delivery that failed.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// The approve stage sent its requests and now waits.
    ApprovalRequested {
        /// The approve stage's message delivery.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
        /// Who may decide, how many must approve, until when.
        request: ApprovalRequest,
    },
    /// Approvers were notified (or a channel failed), while the run waits.
    Notified {
        /// When.
        at: DateTime<Utc>,
        /// What was attempted.
        notifications: Vec<Notification>,
    },
    /// An approver decided.
    ApprovalDecided(Decision),
    /// The approval deadline passed.
    ApprovalExpired {
        /// When the expiry was noticed.
        at: DateTime<Utc>,
    },
    /// The build stage started its worker off the host; the stage keeps
    /// running until the worker reports on the `build-completed` queue.
    BuildDispatched {
        /// The build stage's message delivery.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
        /// The worker.
        worker: WorkerRef,
    },
    /// A build worker reported how its build ended.
    WorkerReported {
        /// The worker's id (from its order).
        worker: String,
        /// When the report was read.
        at: DateTime<Utc>,
        /// How the build ended.
        outcome: BuildOutcome,
    },
    /// The watchdog found the build's worker gone without a report (its
    /// container was killed or crashed). The build runs again with a new
    /// worker, up to [`MAX_LOST_WORKERS`] lost workers; then the run fails.
    WorkerLost {
        /// The attempt whose worker was lost.
        execution: Execution,
        /// When it was noticed.
        at: DateTime<Utc>,
        /// What the watchdog saw.
        reason: String,
    },
    /// The test stage's patch gate decided before the smoke test: the run
    /// fails (its record says why), or the stage waits for Microsoft's data
    /// and is dispatched again by the sweeper ([`PatchStatus::Waiting`]).
    PatchChecked {
        /// The test stage's message delivery.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
        /// What the gate decided.
        record: Box<PatchRecord>,
    },
    /// The test stage's declaration checks failed: the run fails with the
    /// failed checks as its reason; the record, the smoke test's checks and
    /// the patch gate's record (which let the run through) are kept on it.
    DeclarationFailed {
        /// The test stage's message delivery.
        execution: Execution,
        /// When.
        at: DateTime<Utc>,
        /// The smoke test's checks (they passed).
        checks: Vec<String>,
        /// The patch gate's record, for an image with `[patch]`.
        patch: Option<Box<PatchRecord>>,
        /// The declaration checks, one or more failed.
        record: Box<DeclarationRecord>,
    },
    /// The released commit's git tag was tried (`stages::git_tag`): the
    /// record replaces the run's. The one event a released run takes; its
    /// status never changes.
    GitTagged(GitTagRecord),
    /// An operator cancelled the run. A run that has not ended stops at
    /// once (`cancelling`): no stage starts or records a result after it.
    /// What it had started is freed next ([`Event::Freed`]). Refused once
    /// the release stage has started (the version may already be in the
    /// gallery; a rollback is what moves latest back).
    Cancel {
        /// When.
        at: DateTime<Utc>,
        /// Who.
        by: String,
        /// Why, when said.
        reason: Option<String>,
    },
    /// An attempt at freeing a cancelling run's resources ended. The run
    /// ends `cancelled` when nothing is left to free, when what is left
    /// cannot be freed by trying again, or after [`MAX_FREE_ATTEMPTS`].
    Freed {
        /// When.
        at: DateTime<Utc>,
        /// Which attempt (from 1: the run's attempts so far plus one, as
        /// the freer read them); an attempt already recorded changes nothing.
        attempt: u32,
        /// What the attempt freed and what it could not.
        report: FreeReport,
    },
    /// The check after a scheduled run failed: whether its failure paused
    /// the image's scheduled triggers, and who was told. The record
    /// replaces the run's; its status never changes.
    ScheduleChecked(ScheduleCheck),
    /// An operator resumed the image's paused scheduled triggers after this
    /// run, the newest failed scheduled run of the image. Its status never
    /// changes.
    ScheduleResumed(ScheduleResume),
    /// A stage message could not be processed and went to the dead-letter queue.
    DeadLettered {
        /// The stage the message was for.
        stage: Stage,
        /// When.
        at: DateTime<Utc>,
        /// The dead-letter reason and the last error.
        reason: String,
    },
}

/// Lost build workers after which the run fails instead of building again.
pub const MAX_LOST_WORKERS: usize = 2;

/// Attempts at freeing a cancelled run's resources before it ends
/// `cancelled` with what could not be freed recorded.
pub const MAX_FREE_ATTEMPTS: u32 = 5;

/// Work the caller must do after persisting the new run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a message that runs this stage of the run.
    Dispatch(Stage),
}

/// The result of applying an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The run after the event.
    pub run: Run,
    /// What to do next.
    pub commands: Vec<Command>,
    /// False when the event had already been applied: nothing to persist.
    pub changed: bool,
}

/// Why an event was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    /// The run ended; nothing changes it.
    #[error("run {run} is already {status}; nothing can change it")]
    RunFinished {
        /// The run.
        run: String,
        /// Its terminal status.
        status: RunStatus,
    },
    /// A stage cannot start before the stages ahead of it succeeded.
    #[error("stage {stage} cannot start: stage {blocking} has not succeeded")]
    OutOfOrder {
        /// The stage asked for.
        stage: Stage,
        /// The first earlier stage that has not succeeded.
        blocking: Stage,
    },
    /// A result from an execution that is not the stage's current one.
    #[error("stage {stage} is not running delivery {execution}; a newer attempt superseded it")]
    StaleExecution {
        /// The stage.
        stage: Stage,
        /// The execution that reported.
        execution: Execution,
    },
    /// A report from a worker that no build attempt of the run started.
    #[error("no build attempt of this run started worker {worker}")]
    UnknownWorker {
        /// The worker id the report carried.
        worker: String,
    },
    /// The approve stage succeeds only through decisions.
    #[error("the approve stage is decided by approvers, not by its own execution")]
    ApprovalBypass,
    /// A decision while the run is not waiting for one.
    #[error("run {run} is not waiting for approval (it is {status})")]
    NotWaitingForApproval {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
    /// The approver is not on the request.
    #[error("{approver} is not an approver of this run")]
    NotAnApprover {
        /// Who tried.
        approver: String,
    },
    /// A link that the current request did not issue to this approver.
    #[error("this link was not issued to {approver} for the current approval request")]
    LinkNotIssued {
        /// Who tried.
        approver: String,
    },
    /// One decision per approver.
    #[error("{approver} already decided on this run")]
    AlreadyDecided {
        /// Who tried again.
        approver: String,
    },
    /// The request lapsed before the decision.
    #[error("the approval request expired at {expires_at}")]
    ApprovalExpired {
        /// When it lapsed.
        expires_at: DateTime<Utc>,
    },
    /// A run is skipped only before its first stage starts.
    #[error("run {run} has started; only a run that has not can be skipped")]
    AlreadyStarted {
        /// The run.
        run: String,
    },
    /// A git tag is recorded only on a released run.
    #[error("run {run} is {status}; only a released run's commit is tagged")]
    NotReleased {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
    /// An expiry event before the deadline.
    #[error("the approval request does not expire before {expires_at}")]
    NotExpired {
        /// The deadline.
        expires_at: DateTime<Utc>,
    },
    /// A cancel after the release stage started.
    #[error(
        "run {run} is releasing: its version may already be in the gallery, so it is not cancelled; once it ends, `image-factory rollback` makes an earlier version latest again"
    )]
    Releasing {
        /// The run.
        run: String,
    },
    /// Freeing recorded on a run that is not being cancelled.
    #[error("run {run} is {status}, not cancelling: there is nothing to free")]
    NotCancelling {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
    /// A schedule record on a run that is not a failed scheduled run.
    #[error(
        "run {run} is not a failed scheduled run (it is a {status} run); only those count towards pausing a schedule"
    )]
    NotAScheduledFailure {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
    /// A second, different resume on the same run.
    #[error("the schedule was already resumed after run {run}")]
    AlreadyResumed {
        /// The run.
        run: String,
    },
}

/// Applies `event` to `run`.
pub fn decide(run: &Run, event: &Event) -> Result<Transition, TransitionError> {
    // The events beside the stages' flow: each is total on its own.
    match event {
        Event::GitTagged(record) => return git_tagged(run, record),
        Event::ScheduleChecked(check) => return schedule_checked(run, check),
        Event::ScheduleResumed(resume) => return schedule_resumed(run, resume),
        Event::Cancel { at, by, reason } => return cancel(run, *at, by, reason.as_deref()),
        Event::Freed {
            at,
            attempt,
            report,
        } => return freed(run, *at, *attempt, report),
        _ => {}
    }
    if run.status.is_stopped() {
        return Err(TransitionError::RunFinished {
            run: run.id.to_string(),
            status: run.status,
        });
    }
    let mut next = run.clone();
    let commands = match event {
        Event::StageStarted {
            stage,
            execution,
            at,
        } => start(&mut next, *stage, execution, *at)?,
        Event::StageSucceeded {
            stage,
            execution,
            at,
            output,
        } => succeed(&mut next, *stage, execution, *at, output)?,
        Event::Skipped { at, reason } => {
            let started = next.status != RunStatus::Queued
                || next.stages.iter().any(|s| s.status != StageStatus::Pending);
            if started {
                return Err(TransitionError::AlreadyStarted {
                    run: next.id.to_string(),
                });
            }
            next.status = RunStatus::Skipped;
            next.skipped = Some(reason.clone());
            next.updated_at = *at;
            Vec::new()
        }
        Event::StageFailed {
            stage,
            execution,
            at,
            reason,
        } => failed_stage(&mut next, *stage, execution, *at, reason)?,
        Event::ApprovalRequested {
            execution,
            at,
            request,
        } => {
            if next.stage(Stage::Approve).status == StageStatus::Waiting {
                return Ok(unchanged(run));
            }
            current_execution(&next, Stage::Approve, execution)?;
            let record = next.stage_mut(Stage::Approve);
            record.status = StageStatus::Waiting;
            record.summary = Some(format!(
                "waiting for {} of {} approvers until {}",
                request.required,
                request.approvers.len(),
                request.expires_at.format("%Y-%m-%d %H:%M UTC")
            ));
            next.approval = Some(request.clone());
            next.status = RunStatus::WaitingForApproval;
            next.updated_at = *at;
            Vec::new()
        }
        Event::Notified { at, notifications } => {
            waiting_request(&next)?;
            if let Some(request) = next.approval.as_mut() {
                for n in notifications {
                    if !request.notifications.contains(n) {
                        request.notifications.push(n.clone());
                    }
                }
            }
            next.updated_at = *at;
            Vec::new()
        }
        Event::ApprovalDecided(decision) => decided(&mut next, decision)?,
        Event::ApprovalExpired { at } => {
            let request = waiting_request(&next)?;
            if *at < request.expires_at {
                return Err(TransitionError::NotExpired {
                    expires_at: request.expires_at,
                });
            }
            let reason = format!(
                "no decision before the approval deadline {}",
                request.expires_at.format("%Y-%m-%d %H:%M UTC")
            );
            fail(
                &mut next,
                Some(Stage::Approve),
                *at,
                &reason,
                RunStatus::ApprovalExpired,
            );
            Vec::new()
        }
        Event::BuildDispatched {
            execution,
            at,
            worker,
        } => {
            current_execution(&next, Stage::Build, execution)?;
            if let Some(attempt) = next.stage_mut(Stage::Build).attempts.last_mut() {
                attempt.worker = Some(worker.clone());
            }
            next.updated_at = *at;
            Vec::new()
        }
        Event::WorkerReported {
            worker,
            at,
            outcome,
        } => {
            let execution = next
                .stage(Stage::Build)
                .attempts
                .iter()
                .rev()
                .find(|a| a.worker.as_ref().is_some_and(|w| w.id == *worker))
                .map(|a| a.execution.clone())
                .ok_or_else(|| TransitionError::UnknownWorker {
                    worker: worker.clone(),
                })?;
            match outcome {
                BuildOutcome::Succeeded(result) => succeed(
                    &mut next,
                    Stage::Build,
                    &execution,
                    *at,
                    &StageOutput::Built(result.clone()),
                )?,
                BuildOutcome::Failed { reason } => {
                    failed_stage(&mut next, Stage::Build, &execution, *at, reason)?
                }
            }
        }
        Event::WorkerLost {
            execution,
            at,
            reason,
        } => {
            current_execution(&next, Stage::Build, execution)?;
            let outcome = format!("{WORKER_LOST}: {reason}");
            finish_attempt(&mut next, Stage::Build, *at, &outcome);
            let lost = next.stage(Stage::Build).lost_workers();
            if lost >= MAX_LOST_WORKERS {
                let reason = format!("the build worker was lost {lost} times; last time: {reason}");
                fail(
                    &mut next,
                    Some(Stage::Build),
                    *at,
                    &reason,
                    RunStatus::Failed,
                );
                Vec::new()
            } else {
                let record = next.stage_mut(Stage::Build);
                record.status = StageStatus::Pending;
                record.summary = Some(format!("building again: {outcome}"));
                next.updated_at = *at;
                follow_up(&next)
            }
        }
        Event::PatchChecked {
            execution,
            at,
            record,
        } => patch_checked(&mut next, execution, *at, record)?,
        Event::DeclarationFailed {
            execution,
            at,
            checks,
            patch,
            record,
        } => {
            current_execution(&next, Stage::Test, execution)?;
            next.checks = checks.clone();
            if let Some(patch) = patch {
                next.patch = Some(patch.clone());
            }
            next.declaration = Some(record.clone());
            failed_stage(
                &mut next,
                Stage::Test,
                execution,
                *at,
                &record.failure_reason(),
            )?
        }
        Event::GitTagged(record) => return git_tagged(run, record),
        Event::ScheduleChecked(check) => return schedule_checked(run, check),
        Event::ScheduleResumed(resume) => return schedule_resumed(run, resume),
        Event::Cancel { at, by, reason } => return cancel(run, *at, by, reason.as_deref()),
        Event::Freed {
            at,
            attempt,
            report,
        } => return freed(run, *at, *attempt, report),
        Event::DeadLettered { stage, at, reason } => {
            if next.current_stage() != Some(*stage)
                || next.stage(*stage).status == StageStatus::Waiting
            {
                // Not the stage the run is at (its work is recorded, or the
                // message was out of order): the run is not affected.
                return Ok(unchanged(run));
            }
            fail(&mut next, Some(*stage), *at, reason, RunStatus::Failed);
            Vec::new()
        }
    };
    // A run that ends owes its release event: recorded in this same write.
    if let Some(event) = EventType::on_ending(run.status, &next) {
        next.owe(FollowUpKind::Event { event }, next.updated_at);
    }
    Ok(Transition {
        changed: next != *run,
        run: next,
        commands,
    })
}

/// The commands that follow from the run's state alone: the next stage to
/// dispatch when the last finished stage is not yet followed up.
pub fn follow_up(run: &Run) -> Vec<Command> {
    if run.status.is_stopped() {
        return Vec::new();
    }
    match run.current_stage() {
        Some(stage) if run.stage(stage).status == StageStatus::Pending => {
            vec![Command::Dispatch(stage)]
        }
        _ => Vec::new(),
    }
}

/// Records a git tag try on a released run.
fn git_tagged(run: &Run, record: &GitTagRecord) -> Result<Transition, TransitionError> {
    if run.status != RunStatus::Released {
        return Err(TransitionError::NotReleased {
            run: run.id.to_string(),
            status: run.status,
        });
    }
    let mut next = run.clone();
    next.git_tag = Some(record.clone());
    Ok(Transition {
        changed: next != *run,
        run: next,
        commands: Vec::new(),
    })
}

/// Records a schedule check on a failed scheduled run.
fn schedule_checked(run: &Run, check: &ScheduleCheck) -> Result<Transition, TransitionError> {
    on_scheduled_failure(run, |next| next.schedule_check = Some(check.clone()))
}

/// Records a resume of the image's schedule after a failed scheduled run:
/// once per run (the same resume again changes nothing).
fn schedule_resumed(run: &Run, resume: &ScheduleResume) -> Result<Transition, TransitionError> {
    if let Some(earlier) = &run.schedule_resumed
        && earlier != resume
    {
        return Err(TransitionError::AlreadyResumed {
            run: run.id.to_string(),
        });
    }
    on_scheduled_failure(run, |next| next.schedule_resumed = Some(resume.clone()))
}

/// Changes a failed scheduled run's schedule records with `change`; its
/// status and everything else stay.
fn on_scheduled_failure(
    run: &Run,
    change: impl FnOnce(&mut Run),
) -> Result<Transition, TransitionError> {
    if run.status != RunStatus::Failed || !super::pause::is_scheduled(run.trigger.kind) {
        return Err(TransitionError::NotAScheduledFailure {
            run: run.id.to_string(),
            status: run.status,
        });
    }
    let mut next = run.clone();
    change(&mut next);
    Ok(Transition {
        changed: next != *run,
        run: next,
        commands: Vec::new(),
    })
}

/// Stops a run that has not ended: the stage it is at ends `cancelled`
/// (its attempt closed), and the run is `cancelling` until its resources
/// are freed. A run already cancelling or cancelled is left as it is.
fn cancel(
    run: &Run,
    at: DateTime<Utc>,
    by: &str,
    reason: Option<&str>,
) -> Result<Transition, TransitionError> {
    if matches!(run.status, RunStatus::Cancelling | RunStatus::Cancelled) {
        return Ok(unchanged(run));
    }
    if run.status.is_terminal() {
        return Err(TransitionError::RunFinished {
            run: run.id.to_string(),
            status: run.status,
        });
    }
    if run.stage(Stage::Release).status != StageStatus::Pending {
        return Err(TransitionError::Releasing {
            run: run.id.to_string(),
        });
    }
    let mut next = run.clone();
    // A queued run has not started its first stage: it was at none.
    let stage = next
        .current_stage()
        .filter(|_| run.status != RunStatus::Queued);
    let outcome = match reason {
        Some(reason) => format!("cancelled by {by}: {reason}"),
        None => format!("cancelled by {by}"),
    };
    if let Some(current) = stage {
        let record = next.stage_mut(current);
        if matches!(record.status, StageStatus::Running | StageStatus::Waiting) {
            record.status = StageStatus::Cancelled;
            record.finished_at = Some(at);
            record.summary = Some(outcome.clone());
            if let Some(attempt) = record
                .attempts
                .last_mut()
                .filter(|a| a.finished_at.is_none())
            {
                attempt.finished_at = Some(at);
                attempt.outcome = Some(outcome);
            }
        }
    }
    next.status = RunStatus::Cancelling;
    next.updated_at = at;
    next.cancellation = Some(Cancellation {
        at,
        by: by.to_string(),
        reason: reason.map(str::to_string),
        stage,
        freeing: Freeing::default(),
    });
    Ok(Transition {
        changed: true,
        run: next,
        commands: Vec::new(),
    })
}

/// Records an attempt at freeing a cancelling run's resources; the run ends
/// `cancelled` (owing its event) when the freeing is done or given up.
fn freed(
    run: &Run,
    at: DateTime<Utc>,
    attempt: u32,
    report: &FreeReport,
) -> Result<Transition, TransitionError> {
    if run.status == RunStatus::Cancelled {
        return Ok(unchanged(run));
    }
    if run.status.is_terminal() {
        return Err(TransitionError::RunFinished {
            run: run.id.to_string(),
            status: run.status,
        });
    }
    let (RunStatus::Cancelling, Some(cancellation)) = (run.status, &run.cancellation) else {
        return Err(TransitionError::NotCancelling {
            run: run.id.to_string(),
            status: run.status,
        });
    };
    let mut freeing = cancellation.freeing.clone();
    if attempt <= freeing.attempts {
        // Recorded already (a retried write, or another freer got there first).
        return Ok(unchanged(run));
    }
    freeing.attempts = attempt;
    for line in &report.freed {
        if !freeing.freed.contains(line) {
            freeing.freed.push(line.clone());
        }
    }
    freeing.not_freed = report.failed.clone();
    let done = report.failed.is_empty() || !report.retry || freeing.attempts >= MAX_FREE_ATTEMPTS;
    let mut next = run.clone();
    next.updated_at = at;
    if done {
        freeing.finished_at = Some(at);
        next.status = RunStatus::Cancelled;
    }
    if let Some(c) = next.cancellation.as_mut() {
        c.freeing = freeing;
    }
    if let Some(event) = EventType::on_ending(run.status, &next) {
        next.owe(FollowUpKind::Event { event }, at);
    }
    Ok(Transition {
        changed: true,
        run: next,
        commands: Vec::new(),
    })
}

fn unchanged(run: &Run) -> Transition {
    Transition {
        run: run.clone(),
        commands: follow_up(run),
        changed: false,
    }
}

fn start(
    run: &mut Run,
    stage: Stage,
    execution: &Execution,
    at: DateTime<Utc>,
) -> Result<Vec<Command>, TransitionError> {
    if let Some(blocking) = Stage::ALL[..stage.index()]
        .iter()
        .copied()
        .find(|s| run.stage(*s).status != StageStatus::Succeeded)
    {
        return Err(TransitionError::OutOfOrder { stage, blocking });
    }
    let record = run.stage_mut(stage);
    match record.status {
        StageStatus::Succeeded | StageStatus::Waiting => return Ok(follow_up(run)),
        StageStatus::Running => {
            let current = record.current_attempt().map(|a| &a.execution);
            match current {
                // A later delivery of the same message: the earlier one lost
                // its lock (its process died), so this one supersedes it.
                Some(c)
                    if c.message_id == execution.message_id && c.delivery < execution.delivery => {}
                Some(c)
                    if c.message_id == execution.message_id && c.delivery > execution.delivery =>
                {
                    return Err(TransitionError::StaleExecution {
                        stage,
                        execution: execution.clone(),
                    });
                }
                // The same delivery again, or a duplicate message while the
                // stage runs under another one: nothing to do.
                _ => return Ok(Vec::new()),
            }
            if let Some(previous) = record.attempts.last_mut() {
                previous.finished_at = Some(at);
                previous.outcome = Some("abandoned: no result was recorded".into());
            }
        }
        // Pending again after a lost build worker keeps its first start.
        StageStatus::Pending => {
            record.started_at.get_or_insert(at);
        }
        // A failed or cancelled stage makes its run stop; kept total for safety.
        StageStatus::Failed | StageStatus::Cancelled => {
            return Err(TransitionError::RunFinished {
                run: run.id.to_string(),
                status: run.status,
            });
        }
    }
    record.status = StageStatus::Running;
    record.attempts.push(Attempt {
        execution: execution.clone(),
        started_at: at,
        finished_at: None,
        outcome: None,
        worker: None,
    });
    run.status = RunStatus::Running;
    run.updated_at = at;
    Ok(Vec::new())
}

fn succeed(
    run: &mut Run,
    stage: Stage,
    execution: &Execution,
    at: DateTime<Utc>,
    output: &StageOutput,
) -> Result<Vec<Command>, TransitionError> {
    if stage == Stage::Approve {
        return Err(TransitionError::ApprovalBypass);
    }
    if run.stage(stage).status == StageStatus::Succeeded {
        return Ok(follow_up(run));
    }
    current_execution(run, stage, execution)?;
    let summary = match output {
        StageOutput::Validated {
            findings,
            packer_version,
        } => {
            run.findings = findings.clone();
            format!(
                "template checks passed with {} warning(s){}",
                findings.len(),
                packer_version
                    .as_ref()
                    .map(|v| format!("; packer {v} fmt and validate passed"))
                    .unwrap_or_default()
            )
        }
        StageOutput::Built(build) => {
            run.build = Some(build.clone());
            format!(
                "packer build produced {} artifact(s) in {} s",
                build.artifacts.len(),
                build.duration_seconds
            )
        }
        StageOutput::Tested {
            checks,
            patch,
            declaration,
        } => {
            run.checks = checks.clone();
            let mut summary = format!("{} smoke check(s) passed", checks.len());
            if let Some(record) = patch {
                run.patch = Some(record.clone());
                summary = format!("{summary}; {}", record.summary());
            }
            if let Some(record) = declaration {
                run.declaration = Some(record.clone());
                summary = format!("{summary}; {}", record.summary());
            }
            summary
        }
        StageOutput::Released(release) => {
            run.release = Some((**release).clone());
            match &release.below_latest {
                Some(latest) => format!(
                    "released {} below the latest {latest}: published, not promoted ({latest} stays latest; rollback moves latest back)",
                    release.image_version
                ),
                None => format!("released {}", release.image_version),
            }
        }
    };
    finish_attempt(run, stage, at, "succeeded");
    let record = run.stage_mut(stage);
    record.status = StageStatus::Succeeded;
    record.finished_at = Some(at);
    record.summary = Some(summary);
    run.updated_at = at;
    if stage == Stage::Release {
        run.status = RunStatus::Released;
    }
    Ok(follow_up(run))
}

/// Records the patch gate's decision on the test stage's current attempt:
/// a failure ends the run with the gate's reasons; a wait ends the attempt
/// and leaves the stage pending, for the sweeper to dispatch again (only
/// the first and the latest waiting attempts are kept: the record counts
/// the tries). A gate that lets the run through is recorded with the
/// smoke test's result instead; here it changes nothing else.
fn patch_checked(
    run: &mut Run,
    execution: &Execution,
    at: DateTime<Utc>,
    record: &PatchRecord,
) -> Result<Vec<Command>, TransitionError> {
    current_execution(run, Stage::Test, execution)?;
    run.patch = Some(Box::new(record.clone()));
    run.updated_at = at;
    match &record.status {
        PatchStatus::Failed { .. } => {
            let reason = record.failure_reason().unwrap_or_default();
            failed_stage(run, Stage::Test, execution, at, &reason)
        }
        PatchStatus::Waiting { error, .. } => {
            finish_attempt(
                run,
                Stage::Test,
                at,
                &format!("{WAITING_FOR_DATA}: {error}"),
            );
            let stage = run.stage_mut(Stage::Test);
            let waits: Vec<usize> = stage
                .attempts
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    a.outcome
                        .as_deref()
                        .is_some_and(|o| o.starts_with(WAITING_FOR_DATA))
                })
                .map(|(i, _)| i)
                .collect();
            if let [_, between @ .., _] = waits.as_slice() {
                for i in between.iter().rev() {
                    stage.attempts.remove(*i);
                }
            }
            stage.status = StageStatus::Pending;
            stage.summary = Some(record.summary());
            Ok(Vec::new())
        }
        PatchStatus::Passed | PatchStatus::NotVerified { .. } => Ok(Vec::new()),
    }
}

fn decided(run: &mut Run, decision: &Decision) -> Result<Vec<Command>, TransitionError> {
    let request = waiting_request(run)?.clone();
    if !request.approvers.contains(&decision.approver) {
        return Err(TransitionError::NotAnApprover {
            approver: decision.approver.clone(),
        });
    }
    if let Some(token_id) = &decision.token_id {
        let issued = request
            .links
            .iter()
            .any(|l| l.token_id == *token_id && l.approver == decision.approver);
        if !issued {
            return Err(TransitionError::LinkNotIssued {
                approver: decision.approver.clone(),
            });
        }
    }
    if run
        .decisions
        .iter()
        .any(|d| d.approver == decision.approver)
    {
        return Err(TransitionError::AlreadyDecided {
            approver: decision.approver.clone(),
        });
    }
    if decision.at >= request.expires_at {
        return Err(TransitionError::ApprovalExpired {
            expires_at: request.expires_at,
        });
    }
    run.decisions.push(decision.clone());
    run.updated_at = decision.at;
    let by = |verdict: Verdict| {
        run.decisions
            .iter()
            .filter(|d| d.verdict == verdict)
            .map(|d| d.approver.as_str())
            .collect::<Vec<_>>()
    };
    if decision.verdict == Verdict::Reject {
        let reason = format!("rejected by {}", decision.approver);
        fail(
            run,
            Some(Stage::Approve),
            decision.at,
            &reason,
            RunStatus::Rejected,
        );
        return Ok(Vec::new());
    }
    let approvers = by(Verdict::Approve);
    let approved = approvers.len() as u64 >= u64::from(request.required);
    let summary = format!(
        "approved by {} ({} of {} required)",
        approvers.join(", "),
        approvers.len(),
        request.required
    );
    let record = run.stage_mut(Stage::Approve);
    record.summary = Some(summary);
    if approved {
        record.status = StageStatus::Succeeded;
        record.finished_at = Some(decision.at);
        if let Some(attempt) = record.attempts.last_mut() {
            attempt.finished_at = Some(decision.at);
            attempt.outcome = Some("approved".into());
        }
        run.status = RunStatus::Running;
    }
    Ok(follow_up(run))
}

fn waiting_request(run: &Run) -> Result<&ApprovalRequest, TransitionError> {
    match (&run.approval, run.status) {
        (Some(request), RunStatus::WaitingForApproval) => Ok(request),
        _ => Err(TransitionError::NotWaitingForApproval {
            run: run.id.to_string(),
            status: run.status,
        }),
    }
}

fn current_execution(
    run: &Run,
    stage: Stage,
    execution: &Execution,
) -> Result<(), TransitionError> {
    let record = run.stage(stage);
    let current = record
        .current_attempt()
        .filter(|_| record.status == StageStatus::Running);
    match current {
        Some(a) if a.execution == *execution => Ok(()),
        _ => Err(TransitionError::StaleExecution {
            stage,
            execution: execution.clone(),
        }),
    }
}

fn failed_stage(
    run: &mut Run,
    stage: Stage,
    execution: &Execution,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<Command>, TransitionError> {
    current_execution(run, stage, execution)?;
    finish_attempt(run, stage, at, reason);
    fail(run, Some(stage), at, reason, RunStatus::Failed);
    Ok(Vec::new())
}

fn finish_attempt(run: &mut Run, stage: Stage, at: DateTime<Utc>, outcome: &str) {
    if let Some(attempt) = run.stage_mut(stage).attempts.last_mut() {
        attempt.finished_at = Some(at);
        attempt.outcome = Some(outcome.to_string());
    }
}

fn fail(run: &mut Run, stage: Option<Stage>, at: DateTime<Utc>, reason: &str, status: RunStatus) {
    if let Some(stage) = stage {
        let record = run.stage_mut(stage);
        record.status = StageStatus::Failed;
        record.finished_at = Some(at);
        record.summary = Some(reason.to_string());
        if let Some(attempt) = record
            .attempts
            .last_mut()
            .filter(|a| a.finished_at.is_none())
        {
            attempt.finished_at = Some(at);
            attempt.outcome = Some(reason.to_string());
        }
    }
    run.status = status;
    run.updated_at = at;
    let diagnosable = matches!(stage, Some(Stage::Build | Stage::Test | Stage::Release));
    run.failure = Some(Failure {
        stage,
        reason: reason.to_string(),
        at,
        diagnosis: diagnosable.then(|| diagnose(reason)).flatten(),
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::approval::IssuedLink;
    use crate::domain::run::FreeReport;
    use crate::domain::run::{BuildResult, ReleaseRecord, Trigger, TriggerKind};
    use crate::domain::version::ImageVersion;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn ex(message_id: &str, delivery: u32) -> Execution {
        Execution {
            message_id: message_id.into(),
            delivery,
        }
    }

    fn new_run() -> Run {
        Run::new(
            "run-1".parse().unwrap(),
            "web".into(),
            ImageVersion::new(1, 0, 0).unwrap(),
            Trigger {
                commit: Some("abc".into()),
                branch: Some("main".into()),
                ..Trigger::new(TriggerKind::Push, "github")
            },
            BTreeMap::new(),
            t(0),
        )
    }

    #[test]
    fn a_git_tag_is_recorded_on_a_released_run_only_and_changes_nothing_else() {
        use crate::domain::run::{GitTagRecord, GitTagState};
        let record = GitTagRecord {
            tag: "web/1.0.0".into(),
            commit: "abc".into(),
            state: GitTagState::Tagged,
            attempts: 1,
            at: t(10),
        };
        let run = new_run();
        assert!(matches!(
            decide(&run, &Event::GitTagged(record.clone())),
            Err(TransitionError::NotReleased { .. })
        ));
        let mut released = new_run();
        released.status = RunStatus::Released;
        let step = decide(&released, &Event::GitTagged(record.clone())).unwrap();
        assert!(step.changed && step.commands.is_empty());
        assert_eq!(step.run.git_tag.as_ref(), Some(&record));
        assert_eq!(step.run.status, RunStatus::Released);
        assert_eq!(step.run.updated_at, released.updated_at);
        let again = decide(&step.run, &Event::GitTagged(record)).unwrap();
        assert!(!again.changed);
    }

    fn output(stage: Stage) -> StageOutput {
        match stage {
            Stage::Validate => StageOutput::Validated {
                findings: vec![],
                packer_version: None,
            },
            Stage::Build | Stage::Approve => StageOutput::Built(BuildResult {
                artifacts: vec![],
                managed_image_id: None,
                gallery_version_id: None,
                log: "log".into(),
                duration_seconds: 1,
                evidence: None,
            }),
            Stage::Test => StageOutput::Tested {
                checks: vec!["ok".into()],
                patch: None,
                declaration: None,
            },
            Stage::Release => StageOutput::Released(Box::new(ReleaseRecord {
                image_version: "1.0.0".into(),
                sig_version_id: None,
                git_commit: None,
                run_id: "run-1".into(),
                build_log: "log".into(),
                location: "x".into(),
                ..ReleaseRecord::default()
            })),
        }
    }

    fn request(required: u32) -> ApprovalRequest {
        ApprovalRequest {
            approvers: vec!["alice".into(), "bob".into()],
            required,
            expires_at: t(600),
            links: vec![IssuedLink {
                approver: "alice".into(),
                token_id: "t1".into(),
            }],
            remind_before_hours: 0,
            notifications: vec![],
        }
    }

    fn decision(approver: &str, verdict: Verdict, at: DateTime<Utc>) -> Decision {
        Decision {
            approver: approver.into(),
            verdict,
            at,
            comment: None,
            via: "cli".into(),
            token_id: None,
            recorded_by: None,
        }
    }

    fn apply(run: &Run, event: Event) -> Transition {
        decide(run, &event).unwrap_or_else(|e| panic!("{event:?} refused: {e}"))
    }

    fn run_stage(run: Run, stage: Stage, min: i64) -> Transition {
        let run = apply(
            &run,
            Event::StageStarted {
                stage,
                execution: ex(&format!("{stage}-x"), 1),
                at: t(min),
            },
        )
        .run;
        apply(
            &run,
            Event::StageSucceeded {
                stage,
                execution: ex(&format!("{stage}-x"), 1),
                at: t(min + 1),
                output: output(stage),
            },
        )
    }

    /// A run whose build started worker `worker` under delivery `message`#1.
    fn dispatched(run: Run, message: &str, worker: &str, min: i64) -> Run {
        let run = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Build,
                execution: ex(message, 1),
                at: t(min),
            },
        )
        .run;
        let dispatched = apply(
            &run,
            Event::BuildDispatched {
                execution: ex(message, 1),
                at: t(min),
                worker: WorkerRef {
                    id: worker.into(),
                    execution: format!("job-{worker}"),
                    started_at: t(min),
                    log_url: format!("https://logs/{worker}"),
                },
            },
        );
        assert!(
            dispatched.commands.is_empty(),
            "nothing runs while a worker builds"
        );
        dispatched.run
    }

    #[test]
    fn a_dispatched_build_keeps_running_until_its_worker_reports() {
        let run = run_stage(new_run(), Stage::Validate, 0).run;
        let run = dispatched(run, "b1", "w1", 2);
        assert_eq!(run.stage(Stage::Build).status, StageStatus::Running);
        let worker = run.stage(Stage::Build).attempts[0].worker.clone();
        assert_eq!(worker.map(|w| w.id), Some("w1".to_string()));
        let report = |worker: &str| Event::WorkerReported {
            worker: worker.into(),
            at: t(40),
            outcome: match output(Stage::Build) {
                StageOutput::Built(result) => BuildOutcome::Succeeded(result),
                _ => unreachable!("output(Build) is Built"),
            },
        };
        assert_eq!(
            decide(&run, &report("forged")).map(|t| t.commands),
            Err(TransitionError::UnknownWorker {
                worker: "forged".into()
            })
        );
        let done = apply(&run, report("w1"));
        assert_eq!(done.commands, vec![Command::Dispatch(Stage::Test)]);
        assert_eq!(done.run.stage(Stage::Build).status, StageStatus::Succeeded);
        // The same report delivered again changes nothing and re-emits the next stage.
        let again = apply(&done.run, report("w1"));
        assert!(!again.changed);
        assert_eq!(again.commands, vec![Command::Dispatch(Stage::Test)]);
    }

    #[test]
    fn a_patch_gate_that_waits_leaves_the_test_stage_pending_and_a_failed_one_ends_the_run() {
        use crate::domain::patch_gate::PatchSettings;
        use crate::domain::patch_gate::{refused, unreachable};
        let settings = PatchSettings {
            product: "Windows Server 2022".into(),
            grace_days: 0,
            unverified_after_hours: 2,
        };
        let mut run = run_stage(new_run(), Stage::Validate, 0).run;
        run = run_stage(run, Stage::Build, 2).run;
        let mut previous = None;
        for (i, min) in [10, 25, 40, 55].into_iter().enumerate() {
            let message = format!("t{i}");
            run = apply(
                &run,
                Event::StageStarted {
                    stage: Stage::Test,
                    execution: ex(&message, 1),
                    at: t(min),
                },
            )
            .run;
            let record = unreachable(&settings, previous.as_ref(), "connection refused", t(min));
            let waiting = apply(
                &run,
                Event::PatchChecked {
                    execution: ex(&message, 1),
                    at: t(min),
                    record: Box::new(record.clone()),
                },
            );
            assert!(
                waiting.commands.is_empty(),
                "the sweeper dispatches it again"
            );
            assert_eq!(
                follow_up(&waiting.run),
                vec![Command::Dispatch(Stage::Test)]
            );
            run = waiting.run;
            assert_eq!(run.status, RunStatus::Running);
            assert_eq!(run.stage(Stage::Test).status, StageStatus::Pending);
            assert_eq!(run.patch.as_deref(), Some(&record));
            previous = Some(record);
        }
        // Four waits, two attempts kept: the first and the latest.
        let attempts = &run.stage(Stage::Test).attempts;
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].execution, ex("t0", 1));
        assert_eq!(attempts[1].execution, ex("t3", 1));
        assert!(
            attempts[1]
                .outcome
                .as_deref()
                .is_some_and(|o| o.starts_with(WAITING_FOR_DATA))
        );
        assert_eq!(run.stage(Stage::Test).started_at, Some(t(10)));

        run = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Test,
                execution: ex("t9", 1),
                at: t(70),
            },
        )
        .run;
        let failed = apply(
            &run,
            Event::PatchChecked {
                execution: ex("t9", 1),
                at: t(71),
                record: Box::new(refused(&settings, "no evidence: none".into(), t(71))),
            },
        );
        assert_eq!(failed.run.status, RunStatus::Failed);
        let failure = failed.run.failure.clone().unwrap();
        assert_eq!(failure.stage, Some(Stage::Test));
        assert_eq!(failure.reason, "patch gate: no evidence: none");
        // A late gate result of a superseded delivery is refused.
        assert!(matches!(
            decide(
                &run,
                &Event::PatchChecked {
                    execution: ex("t3", 1),
                    at: t(72),
                    record: Box::new(refused(&settings, "x".into(), t(72))),
                }
            ),
            Err(TransitionError::StaleExecution { .. })
        ));
    }

    #[test]
    fn failed_declaration_checks_end_the_run_with_their_record_and_passed_ones_ride_with_the_smoke_test()
     {
        use crate::domain::declaration::{CheckResult, DeclarationRecord, DeclareSettings};
        let declare = DeclareSettings {
            services: vec!["W3SVC".into()],
            ..DeclareSettings::default()
        };
        let answer = |ok: bool| {
            Ok(vec![CheckResult {
                name: "service:W3SVC".into(),
                expected: "Running".into(),
                actual: if ok { "Running" } else { "Stopped" }.into(),
                ok,
            }])
        };
        let mut run = run_stage(new_run(), Stage::Validate, 0).run;
        run = run_stage(run, Stage::Build, 2).run;
        let started = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Test,
                execution: ex("t1", 1),
                at: t(10),
            },
        )
        .run;

        let failing = DeclarationRecord::of_output(&declare, "checker".into(), answer(false));
        let event = Event::DeclarationFailed {
            execution: ex("t1", 1),
            at: t(11),
            checks: vec!["smoke passed".into()],
            patch: None,
            record: Box::new(failing.clone()),
        };
        let failed = apply(&started, event.clone());
        assert_eq!(failed.run.status, RunStatus::Failed);
        assert_eq!(failed.run.declaration.as_deref(), Some(&failing));
        assert_eq!(failed.run.checks, ["smoke passed"]);
        let failure = failed.run.failure.clone().unwrap();
        assert_eq!(failure.stage, Some(Stage::Test));
        assert_eq!(
            failure.reason,
            "declaration checks failed (checker): 0 of 1 declared checks passed; failed: service:W3SVC: expected Running, found Stopped"
        );
        assert_eq!(
            failure.diagnosis.map(|d| d.kind).as_deref(),
            Some("image-declaration")
        );
        assert!(failed.commands.is_empty());
        assert!(
            decide(&failed.run, &event).is_err(),
            "a redelivered result is refused: the run has ended"
        );

        let passing = DeclarationRecord::of_output(&declare, "checker".into(), answer(true));
        let passed = apply(
            &started,
            Event::StageSucceeded {
                stage: Stage::Test,
                execution: ex("t1", 1),
                at: t(11),
                output: StageOutput::Tested {
                    checks: vec!["smoke passed".into()],
                    patch: None,
                    declaration: Some(Box::new(passing.clone())),
                },
            },
        );
        assert_eq!(passed.run.declaration.as_deref(), Some(&passing));
        assert_eq!(
            passed.run.stage(Stage::Test).summary.as_deref(),
            Some("1 smoke check(s) passed; 1 of 1 declared checks passed")
        );
        assert_eq!(passed.commands, vec![Command::Dispatch(Stage::Approve)]);
    }

    #[test]
    fn a_lost_worker_builds_again_once_then_fails_the_run() {
        let run = run_stage(new_run(), Stage::Validate, 0).run;
        let run = dispatched(run, "b1", "w1", 2);
        let lost = apply(
            &run,
            Event::WorkerLost {
                execution: ex("b1", 1),
                at: t(30),
                reason: "execution job-w1 Failed".into(),
            },
        );
        assert_eq!(lost.commands, vec![Command::Dispatch(Stage::Build)]);
        assert_eq!(lost.run.stage(Stage::Build).status, StageStatus::Pending);
        assert_eq!(lost.run.stage(Stage::Build).started_at, Some(t(2)));
        // The lost worker's late report is refused: its attempt is not the current one.
        assert!(matches!(
            decide(
                &lost.run,
                &Event::WorkerReported {
                    worker: "w1".into(),
                    at: t(31),
                    outcome: BuildOutcome::Failed {
                        reason: "late".into()
                    },
                }
            ),
            Err(TransitionError::StaleExecution { .. })
        ));
        let run = dispatched(lost.run, "b2", "w2", 32);
        let failed = apply(
            &run,
            Event::WorkerLost {
                execution: ex("b2", 1),
                at: t(60),
                reason: "execution job-w2 Stopped".into(),
            },
        );
        assert!(failed.commands.is_empty());
        assert_eq!(failed.run.status, RunStatus::Failed);
        let reason = failed.run.failure.map(|f| f.reason).unwrap_or_default();
        assert!(
            reason.contains("lost 2 times") && reason.contains("job-w2"),
            "{reason}"
        );
    }

    #[test]
    fn a_worker_cannot_be_recorded_for_a_superseded_delivery() {
        let run = run_stage(new_run(), Stage::Validate, 0).run;
        let run = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Build,
                execution: ex("b1", 2),
                at: t(2),
            },
        )
        .run;
        let refused = decide(
            &run,
            &Event::BuildDispatched {
                execution: ex("b1", 1),
                at: t(3),
                worker: WorkerRef {
                    id: "w".into(),
                    execution: "job".into(),
                    started_at: t(3),
                    log_url: "u".into(),
                },
            },
        );
        assert!(matches!(
            refused,
            Err(TransitionError::StaleExecution { .. })
        ));
    }

    fn waiting_run(required: u32) -> Run {
        let mut run = new_run();
        for (i, stage) in [Stage::Validate, Stage::Build, Stage::Test]
            .into_iter()
            .enumerate()
        {
            run = run_stage(run, stage, i as i64 * 2).run;
        }
        let run = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Approve,
                execution: ex("ap", 1),
                at: t(10),
            },
        )
        .run;
        apply(
            &run,
            Event::ApprovalRequested {
                execution: ex("ap", 1),
                at: t(11),
                request: request(required),
            },
        )
        .run
    }

    #[test]
    fn a_failed_build_carries_the_likely_cause_and_fix_from_its_reason() {
        let run = run_stage(new_run(), Stage::Validate, 0).run;
        let run = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Build,
                execution: ex("b", 1),
                at: t(2),
            },
        )
        .run;
        let failed = apply(
            &run,
            Event::StageFailed {
                stage: Stage::Build,
                execution: ex("b", 1),
                at: t(3),
                reason: "packer build exited with code 1: Timeout waiting for WinRM.".into(),
            },
        )
        .run;
        let failure = failed.failure.expect("a failure");
        assert_eq!(
            failure.diagnosis.map(|d| d.kind).as_deref(),
            Some("winrm-unreachable")
        );
    }

    #[test]
    fn a_rejection_has_no_diagnosis() {
        let run = waiting_run(1);
        let rejected = apply(
            &run,
            Event::ApprovalDecided(decision("alice", Verdict::Reject, t(20))),
        )
        .run;
        assert_eq!(rejected.failure.expect("a failure").diagnosis, None);
    }

    #[test]
    fn a_run_goes_from_push_to_release_one_stage_at_a_time() {
        let run = new_run();
        assert_eq!(follow_up(&run), vec![Command::Dispatch(Stage::Validate)]);
        let step = run_stage(run, Stage::Validate, 0);
        assert_eq!(step.commands, vec![Command::Dispatch(Stage::Build)]);
        let step = run_stage(step.run, Stage::Build, 2);
        assert_eq!(step.commands, vec![Command::Dispatch(Stage::Test)]);
        let step = run_stage(step.run, Stage::Test, 4);
        assert_eq!(step.commands, vec![Command::Dispatch(Stage::Approve)]);
        let run = waiting_run(1);
        assert_eq!(run.status, RunStatus::WaitingForApproval);
        let step = apply(
            &run,
            Event::ApprovalDecided(decision("alice", Verdict::Approve, t(20))),
        );
        assert_eq!(step.commands, vec![Command::Dispatch(Stage::Release)]);
        let step = run_stage(step.run, Stage::Release, 30);
        assert_eq!(step.run.status, RunStatus::Released);
        assert!(step.commands.is_empty());
        assert!(
            step.run
                .stages
                .iter()
                .all(|s| s.status == StageStatus::Succeeded)
        );
        assert!(
            step.run
                .stages
                .iter()
                .all(|s| s.started_at.is_some() && s.finished_at.is_some())
        );
    }

    #[test]
    fn a_stage_cannot_start_before_the_one_ahead_of_it_succeeded() {
        let err = decide(
            &new_run(),
            &Event::StageStarted {
                stage: Stage::Build,
                execution: ex("e", 1),
                at: t(1),
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            TransitionError::OutOfOrder {
                stage: Stage::Build,
                blocking: Stage::Validate
            }
        );
    }

    #[test]
    fn a_redelivered_start_after_a_crash_opens_a_new_attempt_and_the_old_one_is_stale() {
        let run = apply(
            &new_run(),
            Event::StageStarted {
                stage: Stage::Validate,
                execution: ex("m", 1),
                at: t(1),
            },
        )
        .run;
        let run = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Validate,
                execution: ex("m", 2),
                at: t(2),
            },
        )
        .run;
        let record = run.stage(Stage::Validate);
        assert_eq!(record.attempts.len(), 2);
        assert_eq!(record.started_at, Some(t(1)));
        assert!(
            record.attempts[0]
                .outcome
                .as_deref()
                .unwrap()
                .contains("abandoned")
        );
        let stale = decide(
            &run,
            &Event::StageSucceeded {
                stage: Stage::Validate,
                execution: ex("m", 1),
                at: t(3),
                output: output(Stage::Validate),
            },
        );
        assert!(matches!(stale, Err(TransitionError::StaleExecution { .. })));
    }

    #[test]
    fn a_second_message_for_a_running_stage_is_a_duplicate_and_changes_nothing() {
        let started = Event::StageStarted {
            stage: Stage::Validate,
            execution: ex("m", 1),
            at: t(1),
        };
        let run = apply(&new_run(), started).run;
        let duplicate = apply(
            &run,
            Event::StageStarted {
                stage: Stage::Validate,
                execution: ex("other", 1),
                at: t(2),
            },
        );
        assert!(!duplicate.changed);
        assert_eq!(duplicate.run.stage(Stage::Validate).attempts.len(), 1);
    }

    #[test]
    fn a_run_whose_inputs_were_already_released_is_skipped_before_any_stage_and_builds_nothing() {
        let started = apply(
            &new_run(),
            Event::StageStarted {
                stage: Stage::Validate,
                execution: ex("m", 1),
                at: t(1),
            },
        )
        .run;
        let skip = Event::Skipped {
            at: t(2),
            reason: "identical to 2026.1125.0".into(),
        };
        assert!(matches!(
            decide(&started, &skip),
            Err(TransitionError::AlreadyStarted { .. })
        ));
        let step = apply(&new_run(), skip);
        assert_eq!(step.run.status, RunStatus::Skipped);
        assert!(step.commands.is_empty());
        assert_eq!(step.run.stage(Stage::Build).status, StageStatus::Pending);
        assert!(step.run.failure.is_none());
        let late = decide(
            &step.run,
            &Event::StageStarted {
                stage: Stage::Build,
                execution: ex("b", 1),
                at: t(3),
            },
        );
        assert!(matches!(late, Err(TransitionError::RunFinished { .. })));
    }

    #[test]
    fn k_of_n_approvals_release_only_when_k_approvers_said_yes() {
        let run = waiting_run(2);
        let step = apply(
            &run,
            Event::ApprovalDecided(decision("alice", Verdict::Approve, t(20))),
        );
        assert!(step.commands.is_empty());
        assert_eq!(step.run.status, RunStatus::WaitingForApproval);
        let again = decide(
            &step.run,
            &Event::ApprovalDecided(decision("alice", Verdict::Approve, t(21))),
        );
        assert!(matches!(again, Err(TransitionError::AlreadyDecided { .. })));
        let step = apply(
            &step.run,
            Event::ApprovalDecided(decision("bob", Verdict::Approve, t(22))),
        );
        assert_eq!(step.commands, vec![Command::Dispatch(Stage::Release)]);
    }

    #[test]
    fn a_link_decides_only_if_the_current_request_issued_it_to_that_approver() {
        let run = waiting_run(1);
        let mut forged = decision("bob", Verdict::Approve, t(20));
        forged.token_id = Some("t1".into()); // t1 was issued to alice
        assert!(matches!(
            decide(&run, &Event::ApprovalDecided(forged)),
            Err(TransitionError::LinkNotIssued { .. })
        ));
        let mut genuine = decision("alice", Verdict::Approve, t(20));
        genuine.token_id = Some("t1".into());
        assert!(decide(&run, &Event::ApprovalDecided(genuine)).is_ok());
    }

    #[test]
    fn one_rejection_stops_the_run() {
        let step = apply(
            &waiting_run(2),
            Event::ApprovalDecided(decision("bob", Verdict::Reject, t(20))),
        );
        assert_eq!(step.run.status, RunStatus::Rejected);
        assert_eq!(step.run.failure.unwrap().reason, "rejected by bob");
    }

    #[test]
    fn strangers_late_deciders_and_early_expiry_are_refused() {
        let run = waiting_run(1);
        let stranger = decide(
            &run,
            &Event::ApprovalDecided(decision("mallory", Verdict::Approve, t(20))),
        );
        assert!(matches!(
            stranger,
            Err(TransitionError::NotAnApprover { .. })
        ));
        let late = decide(
            &run,
            &Event::ApprovalDecided(decision("alice", Verdict::Approve, t(600))),
        );
        assert!(matches!(late, Err(TransitionError::ApprovalExpired { .. })));
        let early = decide(&run, &Event::ApprovalExpired { at: t(599) });
        assert!(matches!(early, Err(TransitionError::NotExpired { .. })));
        let expired = apply(&run, Event::ApprovalExpired { at: t(600) });
        assert_eq!(expired.run.status, RunStatus::ApprovalExpired);
    }

    #[test]
    fn a_dead_lettered_message_fails_the_run_with_its_reason_unless_its_stage_is_done() {
        let run = run_stage(new_run(), Stage::Validate, 0).run;
        let after_done = apply(
            &run,
            Event::DeadLettered {
                stage: Stage::Validate,
                at: t(5),
                reason: "x".into(),
            },
        );
        assert!(!after_done.changed);
        assert_eq!(after_done.commands, vec![Command::Dispatch(Stage::Build)]);
        let failed = apply(
            &run,
            Event::DeadLettered {
                stage: Stage::Build,
                at: t(5),
                reason: "max delivery count exceeded: store unavailable".into(),
            },
        );
        assert_eq!(failed.run.status, RunStatus::Failed);
        assert_eq!(failed.run.stage(Stage::Build).status, StageStatus::Failed);
        assert!(
            failed
                .run
                .failure
                .unwrap()
                .reason
                .contains("store unavailable")
        );
    }

    // ---- property tests -------------------------------------------------

    fn arb_stage() -> impl Strategy<Value = Stage> {
        (0usize..5).prop_map(|i| Stage::ALL[i])
    }

    fn arb_exec() -> impl Strategy<Value = Execution> {
        (prop_oneof![Just("m1"), Just("m2")], 1u32..4).prop_map(|(m, d)| ex(m, d))
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let at = (0i64..1000).prop_map(t);
        let approver = prop_oneof![Just("alice"), Just("bob"), Just("mallory")];
        let verdict = prop_oneof![Just(Verdict::Approve), Just(Verdict::Reject)];
        prop_oneof![
            4 => (arb_stage(), arb_exec(), at.clone()).prop_map(|(stage, execution, at)| {
                Event::StageStarted { stage, execution, at }
            }),
            4 => (arb_stage(), arb_exec(), at.clone()).prop_map(|(stage, execution, at)| {
                Event::StageSucceeded { stage, execution, at, output: output(stage) }
            }),
            1 => (arb_stage(), arb_exec(), at.clone()).prop_map(|(stage, execution, at)| {
                Event::StageFailed { stage, execution, at, reason: "boom".into() }
            }),
            2 => (arb_exec(), at.clone(), 1u32..3).prop_map(|(execution, at, k)| {
                Event::ApprovalRequested { execution, at, request: request(k) }
            }),
            3 => (approver, verdict, at.clone()).prop_map(|(a, v, at)| {
                Event::ApprovalDecided(decision(a, v, at))
            }),
            1 => at.clone().prop_map(|at| Event::ApprovalExpired { at }),
            1 => (arb_stage(), at.clone()).prop_map(|(stage, at)| {
                Event::DeadLettered { stage, at, reason: "dead".into() }
            }),
            1 => at.clone().prop_map(|at| Event::Skipped { at, reason: "identical".into() }),
            1 => (at.clone(), any::<bool>()).prop_map(|(at, with_reason)| Event::Cancel {
                at,
                by: "operator".into(),
                reason: with_reason.then(|| "wrong base".into()),
            }),
            1 => (at, 1u32..4, any::<bool>(), any::<bool>()).prop_map(|(at, attempt, failed, retry)| {
                Event::Freed { at, attempt, report: free_report(failed, retry) }
            }),
        ]
    }

    fn free_report(failed: bool, retry: bool) -> FreeReport {
        FreeReport {
            freed: vec!["build worker job-w1 stopped".into()],
            failed: if failed {
                vec!["resource group imgf-test-x: 503".into()]
            } else {
                vec![]
            },
            retry,
        }
    }

    /// The release events a run owes for its ending.
    fn endings_owed(run: &Run) -> Vec<EventType> {
        run.follow_ups
            .iter()
            .map(|f| match f.kind {
                FollowUpKind::Event { event } => event,
            })
            .filter(|e| *e != EventType::RolledBack)
            .collect()
    }

    fn check_invariants(run: &Run) -> Result<(), TestCaseError> {
        for stage in Stage::ALL {
            if run.stage(stage).status != StageStatus::Pending {
                for earlier in &Stage::ALL[..stage.index()] {
                    prop_assert_eq!(
                        run.stage(*earlier).status,
                        StageStatus::Succeeded,
                        "{} moved before {} succeeded",
                        stage,
                        earlier
                    );
                }
            }
        }
        if run.stage(Stage::Release).status != StageStatus::Pending {
            let request = run.approval.as_ref();
            prop_assert!(request.is_some(), "release without an approval request");
            let approvals = run
                .decisions
                .iter()
                .filter(|d| d.verdict == Verdict::Approve)
                .count();
            prop_assert!(approvals as u32 >= request.map_or(u32::MAX, |r| r.required));
            prop_assert!(run.decisions.iter().all(|d| d.verdict == Verdict::Approve));
        }
        prop_assert_eq!(
            run.status == RunStatus::Released,
            run.stage(Stage::Release).status == StageStatus::Succeeded
        );
        let ended_badly = run.status.is_terminal()
            && !matches!(
                run.status,
                RunStatus::Released | RunStatus::Skipped | RunStatus::Cancelled
            );
        prop_assert_eq!(ended_badly, run.failure.is_some());
        let cancelled = matches!(run.status, RunStatus::Cancelling | RunStatus::Cancelled);
        prop_assert_eq!(cancelled, run.cancellation.is_some());
        if cancelled {
            prop_assert_eq!(
                run.stage(Stage::Release).status,
                StageStatus::Pending,
                "a cancelled run released"
            );
            prop_assert_eq!(
                run.status == RunStatus::Cancelled,
                run.cancellation
                    .as_ref()
                    .is_some_and(|c| c.freeing.finished_at.is_some())
            );
        }
        // A run ends once: it owes the event of its ending, and only one.
        let owed = endings_owed(run);
        let expected = match run.status {
            RunStatus::Released => 1,
            RunStatus::Failed | RunStatus::Cancelled => 1,
            _ => 0,
        };
        prop_assert_eq!(owed.len(), expected, "{:?} owes {:?}", run.status, owed);
        prop_assert_eq!(run.status == RunStatus::Skipped, run.skipped.is_some());
        if run.status == RunStatus::Skipped {
            prop_assert!(
                Stage::ALL[1..]
                    .iter()
                    .all(|s| run.stage(*s).status == StageStatus::Pending),
                "a skipped run built something"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn no_event_sequence_skips_a_stage_bypasses_approval_or_leaves_a_terminal_state(
            events in prop::collection::vec(arb_event(), 1..60)
        ) {
            let mut run = new_run();
            for event in events {
                let before = run.clone();
                match decide(&run, &event) {
                    Ok(step) => {
                        prop_assert!(
                            !before.status.is_terminal() || !step.changed,
                            "a terminal run changed"
                        );
                        if before.status == RunStatus::Cancelling {
                            prop_assert!(
                                matches!(event, Event::Cancel { .. } | Event::Freed { .. }),
                                "{:?} moved a cancelling run",
                                event
                            );
                        }
                        prop_assert_eq!(step.changed, step.run != before);
                        check_invariants(&step.run)?;
                        // The same event again changes nothing.
                        if let Ok(again) = decide(&step.run, &event) {
                            prop_assert!(!again.changed, "duplicate {:?} changed the run", event);
                        }
                        run = step.run;
                    }
                    Err(TransitionError::RunFinished { .. }) => {
                        prop_assert!(before.status.is_stopped());
                    }
                    Err(_) => prop_assert!(!before.status.is_terminal()),
                }
            }
        }

        #[test]
        fn the_happy_path_survives_every_message_delivered_twice(dups in prop::collection::vec(any::<bool>(), 10)) {
            let mut run = new_run();
            let mut dup = dups.into_iter();
            let mut twice = |run: &Run, event: Event| -> Result<Run, TestCaseError> {
                let step = apply(run, event.clone());
                if dup.next().unwrap_or(false)
                    && let Ok(again) = decide(&step.run, &event) {
                        prop_assert!(!again.changed);
                        prop_assert_eq!(&again.commands, &follow_up(&step.run));
                    }
                Ok(step.run)
            };
            for (i, stage) in Stage::ALL.into_iter().enumerate() {
                let at = t(i as i64 * 10);
                run = twice(&run, Event::StageStarted { stage, execution: ex("x", 1), at })?;
                if stage == Stage::Approve {
                    run = twice(&run, Event::ApprovalRequested { execution: ex("x", 1), at, request: request(1) })?;
                    run = twice(&run, Event::ApprovalDecided(decision("alice", Verdict::Approve, at)))?;
                } else {
                    run = twice(&run, Event::StageSucceeded { stage, execution: ex("x", 1), at, output: output(stage) })?;
                }
            }
            prop_assert_eq!(run.status, RunStatus::Released);
        }

        #[test]
        fn a_cancel_ends_any_run_not_yet_releasing_exactly_once_whatever_stage_or_step_it_is_at(
            events in prop::collection::vec(arb_event(), 0..60),
            failures in prop::collection::vec((any::<bool>(), any::<bool>()), 0..8),
            late in prop::collection::vec(arb_event(), 1..20),
        ) {
            let mut run = new_run();
            for event in events {
                if matches!(event, Event::Cancel { .. } | Event::Freed { .. }) {
                    continue;
                }
                if let Ok(step) = decide(&run, &event) {
                    run = step.run;
                }
            }
            let cancel = Event::Cancel { at: t(2000), by: "operator".into(), reason: None };
            let before = run.clone();
            match decide(&run, &cancel) {
                Err(TransitionError::RunFinished { .. }) => {
                    prop_assert!(before.status.is_terminal());
                    return Ok(());
                }
                Err(TransitionError::Releasing { .. }) => {
                    prop_assert!(before.stage(Stage::Release).status != StageStatus::Pending);
                    return Ok(());
                }
                Err(e) => prop_assert!(false, "cancel refused: {e}"),
                Ok(step) => {
                    prop_assert!(!before.status.is_terminal());
                    prop_assert_eq!(step.run.status, RunStatus::Cancelling);
                    prop_assert!(step.commands.is_empty(), "a cancel dispatched {:?}", step.commands);
                    check_invariants(&step.run)?;
                    run = step.run;
                }
            }
            // A duplicate cancel changes nothing.
            let again = decide(&run, &cancel).unwrap_or_else(|e| panic!("{e}"));
            prop_assert!(!again.changed);
            // Freeing attempts, some failing, then one that is done: the
            // run ends cancelled once, within MAX_FREE_ATTEMPTS.
            let mut attempt = 0;
            for (failed, retry) in failures.into_iter().chain(std::iter::once((false, false))) {
                if run.status == RunStatus::Cancelled {
                    break;
                }
                attempt += 1;
                let freed = Event::Freed { at: t(2000 + i64::from(attempt)), attempt, report: free_report(failed, retry) };
                let step = decide(&run, &freed).unwrap_or_else(|e| panic!("{e}"));
                prop_assert!(step.changed);
                let over = !failed || !retry || attempt >= MAX_FREE_ATTEMPTS;
                prop_assert_eq!(step.run.status == RunStatus::Cancelled, over);
                // The same attempt recorded twice counts once.
                let twice = decide(&step.run, &freed).unwrap_or_else(|e| panic!("{e}"));
                prop_assert!(!twice.changed);
                check_invariants(&step.run)?;
                run = step.run;
            }
            prop_assert_eq!(run.status, RunStatus::Cancelled);
            prop_assert!(attempt <= MAX_FREE_ATTEMPTS);
            prop_assert_eq!(endings_owed(&run), vec![EventType::Cancelled]);
            // Whatever arrives after the cancel (stage messages, workers'
            // reports, decisions, dead letters, another cancel or freeing)
            // changes nothing.
            for event in late {
                match decide(&run, &event) {
                    Ok(step) => prop_assert!(!step.changed, "{:?} changed a cancelled run", event),
                    Err(e) => prop_assert!(
                        matches!(e, TransitionError::RunFinished { .. }),
                        "{:?} was refused with {e}", event
                    ),
                }
            }
        }

        #[test]
        fn a_stage_message_arriving_while_a_cancel_is_being_carried_out_does_nothing(
            events in prop::collection::vec(arb_event(), 0..60),
            late in prop::collection::vec(arb_event(), 1..20),
        ) {
            let mut run = new_run();
            for event in events {
                if let Ok(step) = decide(&run, &event) {
                    run = step.run;
                }
            }
            let cancel = Event::Cancel { at: t(2000), by: "operator".into(), reason: None };
            let Ok(step) = decide(&run, &cancel) else { return Ok(()) };
            let cancelling = step.run;
            prop_assume!(cancelling.status == RunStatus::Cancelling);
            for event in late {
                if matches!(event, Event::Cancel { .. } | Event::Freed { .. }) {
                    continue;
                }
                match decide(&cancelling, &event) {
                    Err(TransitionError::RunFinished { status, .. }) => {
                        prop_assert_eq!(status, RunStatus::Cancelling);
                    }
                    other => prop_assert!(false, "{:?} on a cancelling run: {:?}", event, other),
                }
                prop_assert!(follow_up(&cancelling).is_empty());
            }
        }
    }
}
