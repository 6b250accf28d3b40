//! `sweeper` (timer, every five minutes): finds runs that stopped moving and
//! moves them. A run waiting past its approval deadline ends
//! `approval-expired`; before that, notifications that failed are sent
//! again (up to five attempts per approver and channel) and approvers who
//! have not decided are reminded once, `remind_before_hours` before the
//! deadline. A run whose next stage was never started (its message was lost
//! between the store write and the send) gets the message again; so does a
//! test stage whose patch gate waits for Microsoft's security data (left
//! pending, `domain::patch_gate`), every ten minutes until it decides.
//! Stages that are running are left to Service Bus: lock expiry redelivers
//! them and the dead-letter queue ends them.
//!
//! It is also the watchdog of builds off the host (see [`crate::worker`]):
//! a build whose worker ended without a report (its container was killed, or
//! the report could not be sent) builds again with a new worker, up to
//! [`crate::domain::machine::MAX_LOST_WORKERS`]; a worker still running past
//! the image's build timeout is stopped and the run fails. A timer rather than
//! a scheduled message per build: the Functions host's Service Bus output
//! binding cannot schedule a message for a custom handler (see
//! docs/custom-handler-protocol.md), and the sweeper checks every five minutes.
//!
//! Each firing then delivers the follow-ups that are due (release events a
//! receiver did not take yet, with backoff), several runs at once and within
//! a time budget, carrying the rest over to the next firing (see
//! [`crate::followups`]).
//!
//! What runs leave behind in Azure (test groups, a failed build's VM) is the
//! reaper's (`functions::reaper`), not the sweeper's.

use chrono::{DateTime, Duration, Utc};

use super::invocation::{InvocationError, retry};
use crate::app::{App, dispatch};
use crate::config::build_timeout;
use crate::domain::approval::{NoticeKind, Notification};
use crate::domain::machine::{Event, decide, follow_up};
use crate::domain::run::{Run, RunStatus, Stage, StageStatus};
use crate::ports::notifier::Notice;
use crate::ports::store::{RunQuery, UpdateError, update_run};
use crate::ports::workers::WorkerState;
use crate::protocol::{InvocationRequest, InvocationResponse};

/// How long a worker that ended may take to have its report read, before
/// the watchdog counts it lost.
const REPORT_GRACE: Duration = Duration::minutes(2);

/// How far past the image's build timeout a worker may run (the platform's
/// own start-up and the upload of its log) before the watchdog stops it.
const TIMEOUT_GRACE: Duration = Duration::minutes(15);

/// What the watchdog does about a run's build worker, if anything.
async fn watch_worker(app: &App, run: &Run, now: DateTime<Utc>) -> Option<Event> {
    let workers = app.workers.as_ref()?;
    let record = run.stage(Stage::Build);
    if record.status != StageStatus::Running {
        return None;
    }
    let attempt = record.current_attempt()?;
    let worker = attempt.worker.as_ref()?;
    let execution = attempt.execution.clone();
    let state = match workers.state(worker).await {
        Ok(state) => state,
        Err(e) => {
            tracing::warn!(run_id = %run.id, worker = %worker.execution, error = %e, "cannot read the build worker's state");
            return None;
        }
    };
    let lost = |reason: String| Event::WorkerLost {
        execution: execution.clone(),
        at: now,
        reason,
    };
    let settled =
        |ended_at: Option<DateTime<Utc>>| ended_at.is_none_or(|t| now - t >= REPORT_GRACE);
    match state {
        WorkerState::Running => {
            let timeout = app
                .run_image(run, false)
                .await
                .ok()
                .map(|i| build_timeout(&i))?;
            let timeout = Duration::from_std(timeout).ok()?;
            // A limit past what the clock can count is never reached.
            let limit = timeout.checked_add(&TIMEOUT_GRACE)?;
            if now - worker.started_at < limit {
                return None;
            }
            if let Err(e) = workers.stop(worker).await {
                tracing::warn!(run_id = %run.id, worker = %worker.execution, error = %e, "cannot stop the build worker");
                return None;
            }
            Some(Event::StageFailed {
                stage: Stage::Build,
                execution,
                at: now,
                reason: format!(
                    "the build worker {} ran past the build timeout of {} minutes and was stopped; log: {}",
                    worker.execution,
                    timeout.num_minutes(),
                    worker.log_url
                ),
            })
        }
        WorkerState::Succeeded { ended_at } if settled(ended_at) => Some(lost(format!(
            "worker {} ended well but its report never arrived",
            worker.execution
        ))),
        WorkerState::Ended { status, ended_at } if settled(ended_at) => Some(lost(format!(
            "worker {} ended {status} without a report (its container was stopped or crashed); log: {}",
            worker.execution, worker.log_url
        ))),
        WorkerState::Missing => Some(lost(format!(
            "worker {} is unknown to its job (its execution history was trimmed)",
            worker.execution
        ))),
        WorkerState::Succeeded { .. } | WorkerState::Ended { .. } => None,
    }
}

/// How long a stage may sit undispatched before the sweeper sends it again.
const STALL: Duration = Duration::minutes(10);

/// Attempts per approver, channel and kind before the sweeper stops retrying.
const MAX_NOTIFY_ATTEMPTS: usize = 5;

/// Sends what a waiting run still owes its approvers: failed requests again,
/// and reminders when the deadline is near.
async fn notify_pending(app: &App, run: &Run, now: DateTime<Utc>) -> Vec<Notification> {
    let Some(request) = &run.approval else {
        return Vec::new();
    };
    let remind = request.remind_from().is_some_and(|from| now >= from);
    let mut records = Vec::new();
    for link in &request.links {
        if run.decisions.iter().any(|d| d.approver == link.approver) {
            continue;
        }
        let url = app.approval_url(&run.id, link, request.expires_at);
        for channel in app.notifier.channel_names() {
            let tries = |kind| {
                request
                    .notifications
                    .iter()
                    .filter(|n| {
                        n.approver == link.approver && n.channel == channel && n.kind == kind
                    })
                    .collect::<Vec<_>>()
            };
            let requests = tries(NoticeKind::Request);
            let kind =
                if !requests.iter().any(|n| n.delivered) && requests.len() < MAX_NOTIFY_ATTEMPTS {
                    NoticeKind::Request
                } else if remind && {
                    let reminders = tries(NoticeKind::Reminder);
                    !reminders.iter().any(|n| n.delivered) && reminders.len() < MAX_NOTIFY_ATTEMPTS
                } {
                    NoticeKind::Reminder
                } else {
                    continue;
                };
            let notice = Notice {
                kind,
                run,
                approver: &link.approver,
                url: url.clone(),
                expires_at: request.expires_at,
            };
            records.extend(app.notifier.notify(&notice, now, Some(channel)).await);
        }
    }
    records
}

/// A sweeper firing.
#[derive(Debug)]
pub struct Sweeper;

impl Sweeper {
    /// Decodes the timer invocation (its payload carries nothing needed).
    pub fn parse(_request: &InvocationRequest) -> Result<Sweeper, InvocationError> {
        Ok(Sweeper)
    }

    /// Sweeps every active run.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let mut query = RunQuery::active();
        loop {
            let page = app
                .store
                .list(&query)
                .await
                .map_err(|e| retry("cannot list active runs", e))?;
            for run in &page.runs {
                let now = app.now();
                if run.status == RunStatus::Cancelling {
                    // A cancel whose freeing a crash cut short, or that is
                    // worth another attempt: finish it.
                    match app.finish_cancel(&run.id).await {
                        Ok(t) => response.log(format!(
                            "run {}: freeing after its cancel, attempt {}: {}",
                            run.id,
                            t.run
                                .cancellation
                                .as_ref()
                                .map_or(0, |c| c.freeing.attempts),
                            t.run.status
                        )),
                        Err(e) => response.log(format!(
                            "run {}: its cancel's freeing was not recorded: {e}",
                            run.id
                        )),
                    }
                    continue;
                }
                let expired = run.status == RunStatus::WaitingForApproval
                    && run.approval.as_ref().is_some_and(|r| now >= r.expires_at);
                if expired {
                    let event = Event::ApprovalExpired { at: now };
                    match update_run(app.store.as_ref(), &run.id, |r| decide(r, &event)).await {
                        Ok(_) | Err(UpdateError::Refused(_)) => {
                            response.log(format!("run {}: approval expired", run.id));
                        }
                        Err(e) => return Err(retry("cannot expire an approval", e)),
                    }
                } else if run.status == RunStatus::WaitingForApproval {
                    let notifications = notify_pending(app, run, now).await;
                    if !notifications.is_empty() {
                        let event = Event::Notified {
                            at: now,
                            notifications,
                        };
                        match update_run(app.store.as_ref(), &run.id, |r| decide(r, &event)).await {
                            Ok(_) | Err(UpdateError::Refused(_)) => {
                                response.log(format!("run {}: approvers notified again", run.id));
                            }
                            Err(e) => return Err(retry("cannot record notifications", e)),
                        }
                    }
                } else if let Some(event) = watch_worker(app, run, now).await {
                    match update_run(app.store.as_ref(), &run.id, |r| decide(r, &event)).await {
                        Ok(t) => {
                            tracing::warn!(run_id = %run.id, event = ?event, "build worker watchdog acted");
                            response.log(format!(
                                "run {}: build worker watchdog: {:?}",
                                run.id,
                                t.run.stage(Stage::Build).status
                            ));
                            dispatch(&mut response, &run.id, &t.commands);
                        }
                        Err(UpdateError::Refused(e)) => {
                            response
                                .log(format!("run {}: watchdog event not recorded: {e}", run.id));
                        }
                        Err(e) => {
                            return Err(retry("cannot record the watchdog's finding", e));
                        }
                    }
                } else if now - run.updated_at >= STALL {
                    let commands = follow_up(run);
                    if !commands.is_empty() {
                        response.log(format!(
                            "run {}: dispatching its stalled stage again",
                            run.id
                        ));
                        dispatch(&mut response, &run.id, &commands);
                    }
                }
            }
            match page.continuation {
                Some(c) => query.continuation = Some(c),
                None => break,
            }
        }
        sweep_follow_ups(app, &mut response).await;
        start_missing_children(app, &mut response).await;
        retry_git_tags(app, &mut response).await;
        check_schedules(app, &mut response).await;
        prune_snapshots(app, &mut response).await;
        Ok(response)
    }
}

/// Checks the failed scheduled runs a crash left unchecked, and sends again
/// the pause notices a channel failed to deliver (the newest 100 failed
/// runs; older ones were settled long ago).
async fn check_schedules(app: &App, response: &mut InvocationResponse) {
    let query = RunQuery {
        statuses: vec![RunStatus::Failed],
        limit: 100,
        ..RunQuery::default()
    };
    let failed = match app.store.list(&query).await {
        Ok(page) => page.runs,
        Err(e) => {
            response.log(format!("schedule checks not retried: {e}"));
            return;
        }
    };
    for run in failed.iter().filter(|r| crate::schedules::needs_check(r)) {
        app.check_schedule(run).await;
        response.log(format!("schedule check of {} made again", run.id));
    }
}

/// Tries the git tags of recent releases that were never tried (the try
/// beside the release was cut short) or failed and are due again (the
/// newest 100 released runs; older ones were settled long ago).
async fn retry_git_tags(app: &App, response: &mut InvocationResponse) {
    let query = RunQuery {
        statuses: vec![RunStatus::Released],
        limit: 100,
        ..RunQuery::default()
    };
    let released = match app.store.list(&query).await {
        Ok(page) => page.runs,
        Err(e) => {
            response.log(format!("git tags not retried: {e}"));
            return;
        }
    };
    let now = app.now();
    for run in released {
        // Never tried (the try beside the release was cut short), or failed
        // and due again; `tag_release` leaves every other run as it is.
        if run.trigger.commit.is_some() && run.git_tag.as_ref().is_none_or(|t| t.due(now)) {
            app.tag_release(&run, app.now()).await;
            response.log(format!("git tag of {} tried again", run.id));
        }
    }
}

/// Makes sure every image built on another of the factory's images has its
/// run for its parent's current release (the stage function starts them when
/// the parent is released; this catches a crash in between). Existing runs
/// are found by their ids and nothing starts twice.
async fn start_missing_children(app: &App, response: &mut InvocationResponse) {
    // The parents of the built branch's head: an image added there since
    // start is searched too.
    let images = app.current_images().await;
    let parents: std::collections::BTreeSet<&str> = images
        .values()
        .filter_map(|image| image.settings.parent())
        .collect();
    for parent in parents {
        match app.current_release(parent).await {
            Ok(Some(release)) => {
                for started in app.start_children(&release).await {
                    match started {
                        Ok(crate::app::Created::New(run)) => {
                            response.log(format!(
                                "started {} on {parent} {}",
                                run.id, release.version
                            ));
                            crate::app::dispatch_follow_up(response, &run);
                        }
                        Ok(crate::app::Created::Existing(_)) => {}
                        Err(e) => response.log(format!("a run on {parent} was not started: {e}")),
                    }
                }
            }
            Ok(None) => {}
            Err(e) => response.log(format!("the releases of {parent} could not be read: {e}")),
        }
    }
}

/// A snapshot stored less than this long ago is kept whatever refers to
/// it: it may belong to a run being created.
const SNAPSHOT_GRACE: chrono::Duration = chrono::Duration::days(1);

/// How often the snapshots are pruned (a pruning reads every released run).
const PRUNE_EVERY: chrono::Duration = chrono::Duration::hours(6);

/// Removes the source snapshots no run or release needs any more: those of
/// no active run and of no released run whose version the gallery still
/// holds, stored more than [`SNAPSHOT_GRACE`] ago. At most every
/// [`PRUNE_EVERY`]; a failure is logged and tried at the next sweep.
async fn prune_snapshots(app: &App, response: &mut InvocationResponse) {
    let now = app.now();
    if !app.sources.prune_due(now, PRUNE_EVERY) {
        return;
    }
    let needed = match needed_snapshots(app).await {
        Ok(needed) => needed,
        Err(e) => {
            response.log(format!("snapshots not pruned: {e}"));
            return;
        }
    };
    match app.sources.prune(&needed, now - SNAPSHOT_GRACE).await {
        Ok(removed) => {
            app.sources.pruned_at(now);
            for id in removed {
                response.log(format!("snapshot {id} pruned: no run or release needs it"));
            }
        }
        Err(e) => response.log(format!("snapshots not pruned: {e}")),
    }
}

/// The snapshots of active runs and of released runs whose version the
/// gallery still holds.
async fn needed_snapshots(
    app: &App,
) -> Result<std::collections::BTreeSet<crate::domain::source::SnapshotId>, String> {
    let mut needed = std::collections::BTreeSet::new();
    let mut held: std::collections::BTreeMap<String, Vec<crate::domain::version::ImageVersion>> =
        std::collections::BTreeMap::new();
    for mut query in [
        RunQuery::active(),
        RunQuery {
            statuses: vec![RunStatus::Released],
            limit: 100,
            ..RunQuery::default()
        },
    ] {
        loop {
            let page = app.store.list(&query).await.map_err(|e| e.to_string())?;
            for run in &page.runs {
                let Some(source) = &run.source else { continue };
                if run.status == RunStatus::Released {
                    if !held.contains_key(&run.image) {
                        let versions = app
                            .gallery
                            .versions(&run.image)
                            .await
                            .map_err(|e| e.to_string())?;
                        held.insert(
                            run.image.clone(),
                            versions.into_iter().map(|v| v.version).collect(),
                        );
                    }
                    if !held[&run.image].contains(&run.version) {
                        continue;
                    }
                }
                needed.insert(source.snapshot.clone());
            }
            match page.continuation {
                Some(c) => query.continuation = Some(c),
                None => break,
            }
        }
    }
    Ok(needed)
}

/// Delivers the follow-ups (release events) that are due; a failure is
/// logged and never fails the firing.
async fn sweep_follow_ups(app: &App, response: &mut InvocationResponse) {
    match crate::followups::sweep(&app.follow_ups, app.store.as_ref(), app.now()).await {
        Ok(lines) => lines.into_iter().for_each(|line| response.log(line)),
        Err(error) => {
            tracing::warn!(%error, "cannot list the runs with follow-ups due");
            response.log(format!("follow-ups not swept: {error}"));
        }
    }
}
