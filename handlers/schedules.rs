//! An image's scheduled triggers as the run store tells them: whether they
//! are paused (the rule is `domain::pause`), resuming them, and the check
//! after a scheduled run failed, which tells the image's approvers and the
//! operators when that failure paused them. The I/O around `domain::pause`.
//!
//! The state is read from the image's released and failed runs, newest
//! first, a page at a time, only as far as the rule needs (to the first
//! release or resume): a handful of runs for an image in good health. The
//! check is recorded on the failed run (`Run::schedule_check`) with what
//! each recipient was sent on each channel; a channel that failed is tried
//! again by the sweeper (up to five times), like approval requests.

use chrono::{DateTime, Utc};

use crate::domain::approval::{NoticeKind, Notification};
use crate::domain::machine::{Event, decide};
use crate::domain::pause::{
    Pause, ScheduleState, ends_streak, is_scheduled, notices_owed, schedule_state,
};
use crate::domain::run::{Run, RunId, RunStatus, ScheduleCheck, ScheduleResume};
use crate::ports::notifier::{Notice, Notifier};
use crate::ports::store::{RunQuery, RunStore, StoreError, UpdateError, update_run};

/// Runs read per page of an image's history.
const PAGE: usize = 25;

/// The most runs of an image's history read: a streak of failed scheduled
/// runs longer than this (with no release or resume among them) counts as
/// this long.
const MAX_READ: usize = 400;

/// The image's released and failed runs, newest first, as far as the rule
/// of `domain::pause` reads them: to the first run that ends a streak.
pub async fn history(store: &dyn RunStore, image: &str) -> Result<Vec<Run>, StoreError> {
    let mut query = RunQuery {
        image: Some(image.to_string()),
        statuses: vec![RunStatus::Released, RunStatus::Failed],
        limit: PAGE,
        continuation: None,
        // A release a rollback later withdrew still ended a streak.
        without_withdrawn: false,
    };
    let mut runs = Vec::new();
    loop {
        let page = store.list(&query).await?;
        for run in page.runs {
            let last = ends_streak(&run);
            runs.push(run);
            if last || runs.len() >= MAX_READ {
                return Ok(runs);
            }
        }
        match page.continuation {
            Some(next) => query.continuation = Some(next),
            None => return Ok(runs),
        }
    }
}

/// Where the image's scheduled triggers stand, with `pause_after` from its
/// `image.toml`.
pub async fn state(
    store: &dyn RunStore,
    image: &str,
    pause_after: u32,
) -> Result<ScheduleState, StoreError> {
    Ok(schedule_state(&history(store, image).await?, pause_after))
}

/// Why a resume was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The image's scheduled triggers are not paused.
    #[error(
        "the scheduled runs of {image} are not paused ({failures} of {pause_after} consecutive scheduled runs failed since the last release or resume): nothing to resume"
    )]
    NotPaused {
        /// The image.
        image: String,
        /// Failed scheduled runs so far.
        failures: usize,
        /// How many make a pause.
        pause_after: u32,
    },
    /// The store failed, or kept changing.
    #[error(transparent)]
    Update(#[from] UpdateError),
}

impl From<StoreError> for ResumeError {
    fn from(e: StoreError) -> ResumeError {
        ResumeError::Update(e.into())
    }
}

/// Resumes the image's paused scheduled triggers: records `resume` on its
/// newest failed scheduled run, so that the failures up to it no longer
/// count. Answers the pause it ended and the run the resume is recorded on.
pub async fn resume(
    store: &dyn RunStore,
    image: &str,
    pause_after: u32,
    resume: ScheduleResume,
) -> Result<(Pause, RunId), ResumeError> {
    let pause = match state(store, image, pause_after).await? {
        ScheduleState::Paused(pause) => pause,
        ScheduleState::Active {
            failures,
            pause_after,
        } => {
            return Err(ResumeError::NotPaused {
                image: image.to_string(),
                failures: failures.len(),
                pause_after,
            });
        }
    };
    let newest = pause
        .failures
        .last()
        .cloned()
        .unwrap_or_else(|| pause.paused_by.clone());
    let event = Event::ScheduleResumed(resume);
    update_run(store, &newest, |run| decide(run, &event)).await?;
    Ok((pause, newest))
}

/// Who is told when a scheduled run's failure pauses its image's schedule,
/// and how.
pub struct Telling<'a> {
    /// The channels.
    pub notifier: &'a Notifier,
    /// The image's approvers and the operators, each once.
    pub recipients: Vec<String>,
    /// The image's page on the factory's dashboard.
    pub url: String,
}

/// Whether `run` may still owe a schedule check: a failed scheduled run
/// never checked, or one whose check paused the schedule and has notices
/// not yet delivered (nor given up). Read from the run alone.
pub fn needs_check(run: &Run) -> bool {
    if run.status != RunStatus::Failed || !is_scheduled(run.trigger.kind) {
        return false;
    }
    run.schedule_check
        .as_ref()
        .is_none_or(ScheduleCheck::owes_notices)
}

/// The check after the scheduled run `run` failed: whether its failure
/// paused the image's scheduled triggers (it is the `pause_after`-th of a
/// streak), recorded on the run; if it did, every recipient is told on
/// every channel, and what each was sent is recorded (a notice still owed
/// from an earlier check is sent again). Nothing is sent once the schedule
/// is no longer paused by this run (a release or a resume came first).
/// Answers the check as recorded; `None` for a run that is not a failed
/// scheduled run.
pub async fn check(
    store: &dyn RunStore,
    run: &Run,
    pause_after: u32,
    telling: &Telling<'_>,
    now: DateTime<Utc>,
) -> Result<Option<ScheduleCheck>, UpdateError> {
    if run.status != RunStatus::Failed || !is_scheduled(run.trigger.kind) {
        return Ok(None);
    }
    let state = state(store, &run.image, pause_after).await?;
    let (failures, paused) = match &state {
        ScheduleState::Paused(pause) => (pause.failures.clone(), pause.paused_by == run.id),
        ScheduleState::Active { failures, .. } => (failures.clone(), false),
    };
    let mut check = match &run.schedule_check {
        // A check already made keeps its verdict and what was sent; it is
        // sent again only while this run's pause holds.
        Some(earlier) => ScheduleCheck {
            paused: earlier.paused && paused,
            ..earlier.clone()
        },
        None => ScheduleCheck {
            at: now,
            pause_after,
            failures: match failures.iter().position(|id| *id == run.id) {
                Some(at) => failures[..=at].to_vec(),
                None => vec![run.id.clone()],
            },
            paused,
            notifications: Vec::new(),
        },
    };
    let mut sent = Vec::new();
    if let Some(pause) = state.pause().filter(|_| check.paused) {
        let channels = telling.notifier.channel_names();
        let mut told = run.clone();
        told.schedule_check = Some(check.clone());
        for (recipient, channel) in notices_owed(&check, &telling.recipients, &channels) {
            let notice = Notice {
                kind: NoticeKind::Paused,
                run: &told,
                approver: recipient,
                url: telling.url.clone(),
                expires_at: pause.since,
            };
            sent.extend(telling.notifier.notify(&notice, now, Some(channel)).await);
        }
        if !sent.is_empty() {
            tracing::warn!(image = %run.image, run_id = %run.id, "scheduled runs paused: {}", pause.describe(&run.image));
        }
    }
    if run.schedule_check.as_ref() == Some(&check) && sent.is_empty() {
        return Ok(Some(check));
    }
    let recorded = check.clone();
    let written = update_run(store, &run.id, |fresh| {
        // What another check recorded meanwhile is kept beside ours.
        let mut notifications = fresh
            .schedule_check
            .as_ref()
            .map(|c| c.notifications.clone())
            .unwrap_or_default();
        notifications.extend(recorded.notifications.iter().cloned());
        notifications.extend(sent.iter().cloned());
        dedup(&mut notifications);
        let event = Event::ScheduleChecked(ScheduleCheck {
            notifications,
            ..recorded.clone()
        });
        decide(fresh, &event)
    })
    .await?;
    check = written.run.schedule_check.unwrap_or(check);
    Ok(Some(check))
}

/// Drops repeated records (the same try recorded by two checks).
fn dedup(notifications: &mut Vec<Notification>) {
    let mut seen = Vec::new();
    notifications.retain(|n| {
        let new = !seen.contains(n);
        if new {
            seen.push(n.clone());
        }
        new
    });
}
