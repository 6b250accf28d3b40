//! The operators' pages, rendered on the server (no JavaScript, no front-end
//! build): the runs list with filters, a run's page with its stage timeline
//! drawn as SVG, its approval trail, release metadata and log tail, and an
//! image's page with its released versions, the gallery's and its image
//! tree. Pure: given records, returns HTML
//! rendered by the templates `runs.html`, `run.html` (with `timeline.html`)
//! and `image.html`; this module turns records into what they show. Release
//! notes and the changelog are in [`changelog`], the fleet page in [`fleet`],
//! the reaper's panel in [`reaper`], an approver's page in [`approval`].

pub mod approval;
pub mod changelog;
pub mod fleet;
mod page;
pub mod reaper;

use askama::Template;
use chrono::{DateTime, Utc};

use crate::domain::gallery::{GalleryVersion, latest};
use crate::domain::rollback::{current_since, is_current_candidate};
use crate::domain::run::{ReleaseRecord, Run, RunStatus, Stage, StageStatus};
use page::{layout, made_current, minute, rollback_lines, withdrawn_by};

use crate::pages::{Frame, filters, notice_page, render};

/// Where the pages live (under the HTTP route prefix).
pub const BASE: &str = "/api/dashboard";

/// The filters of the runs list.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    /// Only this image.
    pub image: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
}

/// How long a run took, or has taken so far.
pub fn duration(run: &Run, now: DateTime<Utc>) -> String {
    let end = if run.status.is_terminal() {
        run.updated_at
    } else {
        now
    };
    human((end - run.created_at).num_seconds())
}

fn human(seconds: i64) -> String {
    crate::domain::human_duration(u64::try_from(seconds).unwrap_or(0))
}

fn trigger_name(run: &Run) -> &'static str {
    use crate::domain::run::TriggerKind::*;
    match run.trigger.kind {
        Push => "push",
        PatchTuesday => "Patch Tuesday",
        OutOfBand => "out-of-band",
        BaseImageUpdate => "base-image update",
    }
}

fn short_commit(run: &Run) -> String {
    run.trigger
        .commit
        .as_deref()
        .map(|c| c.chars().take(12).collect())
        .unwrap_or_else(|| "—".into())
}

/// One choice of a filter's `<select>`.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// One row of the runs list.
struct RunRow<'a> {
    id: &'a str,
    image: &'a str,
    trigger: &'static str,
    commit: String,
    version: String,
    status: &'static str,
    duration: String,
    started: String,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage<'a> {
    frame: Frame,
    image_options: Vec<Choice>,
    status_options: Vec<Choice>,
    rows: Vec<RunRow<'a>>,
    /// The reaper's latest actions on these runs (the panel's head).
    reaped: Vec<reaper::ReapRow<'a>>,
    /// The continuation of the next page, and the filters it keeps.
    next: Option<&'a str>,
    image: Option<&'a str>,
    status: Option<&'static str>,
}

/// The reaper's actions the runs list shows (the rest on the reaper's panel).
const RUNS_PAGE_REAPED: usize = 5;

/// The runs list, newest first, with the reaper's latest actions on them.
pub fn runs_page(
    runs: &[Run],
    images: &[String],
    filters: &Filters,
    next: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let image_options = std::iter::once(None)
        .chain(images.iter().map(Some))
        .map(|image| Choice {
            value: image.cloned().unwrap_or_default(),
            label: image.cloned().unwrap_or_else(|| "all images".into()),
            selected: filters.image.as_ref() == image,
        })
        .collect();
    let statuses = std::iter::once(None).chain(RunStatus::ALL.map(Some));
    let status_options = statuses
        .map(|status| Choice {
            value: status.map(|s| s.name()).unwrap_or_default().into(),
            label: status.map_or("any status", |s| s.name()).into(),
            selected: filters.status == status,
        })
        .collect();
    let rows = runs
        .iter()
        .map(|run| RunRow {
            id: &run.id,
            image: &run.image,
            trigger: trigger_name(run),
            commit: short_commit(run),
            version: run.version.to_string(),
            status: run.status.name(),
            duration: duration(run, now),
            started: minute(run.created_at),
        })
        .collect();
    let mut reaped = reaper::reap_rows(runs);
    reaped.truncate(RUNS_PAGE_REAPED);
    render(&RunsPage {
        frame: Frame::with("Runs", layout(runs.iter().any(|r| !r.status.is_terminal()))),
        image_options,
        status_options,
        rows,
        reaped,
        next,
        image: filters.image.as_deref(),
        status: filters.status.map(|s| s.name()),
    })
}

/// The stage timeline of a run's page (`timeline.html`): one bar per stage
/// from its start to its end (or now).
struct Timeline {
    view_width: f64,
    height: f64,
    left: f64,
    total_y: f64,
    total: String,
    bars: Vec<Bar>,
}

/// A stage's row of the timeline.
struct Bar {
    stage: &'static str,
    y: f64,
    label_y: f64,
    /// Where the bar is, once the stage has started.
    span: Option<Span>,
}

/// The drawn part of a started stage's row.
struct Span {
    x: String,
    width: String,
    color: &'static str,
    status: String,
    took: String,
}

fn timeline(run: &Run, now: DateTime<Utc>) -> Timeline {
    let start = run.created_at;
    let end = if run.status.is_terminal() {
        run.updated_at
    } else {
        now
    };
    let total = (end - start).num_milliseconds().max(1) as f64;
    let (left, width, row) = (90.0, 600.0, 26.0);
    let bars = run
        .stages
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let y = 10.0 + i as f64 * row;
            let span = record.started_at.map(|started| {
                let finished = record.finished_at.unwrap_or(end);
                let x = left + width * (started - start).num_milliseconds() as f64 / total;
                let w = (width * (finished - started).num_milliseconds() as f64 / total).max(3.0);
                Span {
                    x: format!("{x:.1}"),
                    width: format!("{w:.1}"),
                    color: match record.status {
                        StageStatus::Succeeded => "#2f9e57",
                        StageStatus::Failed => "#c0392b",
                        StageStatus::Waiting => "#d4a017",
                        StageStatus::Running => "#3b73d9",
                        StageStatus::Pending => "#b0b7c0",
                        StageStatus::Cancelled => "#6b7280",
                    },
                    status: format!("{:?}", record.status),
                    took: human((finished - started).num_seconds()),
                }
            });
            Bar {
                stage: record.stage.name(),
                y,
                label_y: y + 14.0,
                span,
            }
        })
        .collect();
    let height = 20.0 + row * Stage::ALL.len() as f64;
    Timeline {
        view_width: left + width + 10.0,
        height,
        left,
        total_y: height - 2.0,
        total: human((end - start).num_seconds()),
        bars,
    }
}

/// The last lines of a build attempt's log, for a run's page.
#[derive(Clone, Debug)]
pub struct AttemptLog {
    /// The build attempt, from 1.
    pub attempt: usize,
    /// Its log's last lines.
    pub tail: String,
}

/// The build worker of a run's current build attempt.
struct WorkerView<'a> {
    execution: &'a str,
    since: String,
    log_url: &'a str,
    /// The log's address as a link, only when it is a web address (never a
    /// `javascript:` or other scheme a record could carry).
    log_href: Option<&'a str>,
}

/// One row of a run's stages table.
struct StageRow<'a> {
    name: &'static str,
    status: String,
    took: String,
    attempts: usize,
    summary: &'a str,
}

/// A run's approval request and the decisions on it.
struct ApprovalView<'a> {
    required: u32,
    asked: usize,
    approvers: String,
    until: String,
    decisions: Vec<DecisionRow<'a>>,
}

/// One decision of the approval trail.
struct DecisionRow<'a> {
    approver: &'a str,
    verdict: &'static str,
    at: String,
    via: &'a str,
    comment: &'a str,
}

/// A run's cancel and what its freeing did.
struct CancelView<'a> {
    by: &'a str,
    at: String,
    reason: Option<&'a str>,
    freed: &'a [String],
    not_freed: &'a [String],
    /// Still cancelling: the freeing is not finished.
    freeing: bool,
}

/// One delivery of one of a run's events (or an event still owed).
struct DeliveryRow<'a> {
    event: &'static str,
    target: &'a str,
    attempts: u32,
    /// Delivered, given up, next attempt, or pending, with when.
    state: String,
    last_error: &'a str,
}

/// An earlier build attempt's log.
struct EarlierAttempt<'a> {
    attempt: usize,
    outcome: &'a str,
    tail: &'a str,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage<'a> {
    frame: Frame,
    run: &'a Run,
    trigger: &'static str,
    commit: &'a str,
    started: String,
    duration: String,
    worker: Option<WorkerView<'a>>,
    timeline: Timeline,
    stages: Vec<StageRow<'a>>,
    approval: Option<ApprovalView<'a>>,
    /// The release notes, when the run was released with them.
    notes: Option<changelog::NotesView<'a>>,
    /// `image-version.json` as published (its notes shown as [`RunPage::notes`]).
    release: Option<String>,
    /// The latest version the run was released below (published, not promoted).
    below_latest: Option<&'a str>,
    /// The rollback that withdrew the run's version, told.
    withdrawn: Option<String>,
    /// The rollbacks that made the run's version current again, told.
    made_current: Vec<String>,
    /// Every delivery of the run's events, and events still owed.
    deliveries: Vec<DeliveryRow<'a>>,
    /// Where the run's git tag is, told; for a released run with no
    /// record yet, that no try was recorded.
    git_tag: Option<String>,
    /// The patch level: evidence, OS build, the gate's verdict (`domain::patch_view`).
    patch: Vec<(&'static str, String)>,
    /// "Patch level not verified", or a failed gate.
    patch_alert: Option<String>,
    log_tail: Option<&'a str>,
    earlier: Vec<EarlierAttempt<'a>>,
    /// What the reaper did with what the run left behind.
    reaped: Vec<reaper::ReapRow<'a>>,
    /// The boot diagnostics of the run's VMs kept after a failure.
    diagnostics: Vec<reaper::DiagnosticsRow<'a>>,
    /// Its cancel, for a cancelling or cancelled run.
    cancellation: Option<CancelView<'a>>,
    /// What a failed scheduled run meant for its image's scheduled runs:
    /// the pause it made, the resume after it.
    schedule: Vec<String>,
}

/// A run's page: `log_tail` is the current build attempt's log, `earlier`
/// the logs earlier attempts left (cut short by a crash, superseded).
pub fn run_page(
    run: &Run,
    log_tail: Option<&str>,
    earlier: &[AttemptLog],
    now: DateTime<Utc>,
) -> String {
    let worker = run
        .stage(Stage::Build)
        .current_attempt()
        .and_then(|a| a.worker.as_ref())
        .map(|worker| WorkerView {
            execution: &worker.execution,
            since: minute(worker.started_at),
            log_url: &worker.log_url,
            log_href: ["https://", "http://"]
                .iter()
                .any(|scheme| worker.log_url.starts_with(scheme))
                .then_some(worker.log_url.as_str()),
        });
    let stages = run
        .stages
        .iter()
        .map(|s| StageRow {
            name: s.stage.name(),
            status: format!("{:?}", s.status),
            took: match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => human((b - a).num_seconds()),
                (Some(a), None) => format!("{} so far", human((now - a).num_seconds())),
                _ => "—".into(),
            },
            attempts: s.attempts.len(),
            summary: s.summary.as_deref().unwrap_or(""),
        })
        .collect();
    let approval = run.approval.as_ref().map(|request| ApprovalView {
        required: request.required,
        asked: request.approvers.len(),
        approvers: request.approvers.join(", "),
        until: minute(request.expires_at),
        decisions: run
            .decisions
            .iter()
            .map(|d| DecisionRow {
                approver: &d.approver,
                verdict: d.verdict.name(),
                at: minute(d.at),
                via: &d.via,
                comment: d.comment.as_deref().unwrap_or(""),
            })
            .collect(),
    });
    let attempts = &run.stage(Stage::Build).attempts;
    let earlier = earlier
        .iter()
        .map(|log| EarlierAttempt {
            attempt: log.attempt,
            outcome: attempts
                .get(log.attempt.wrapping_sub(1))
                .and_then(|a| a.outcome.as_deref())
                .unwrap_or("no outcome recorded"),
            tail: &log.tail,
        })
        .collect();
    let deliveries = run
        .follow_ups
        .iter()
        .flat_map(|f| {
            let crate::domain::run::FollowUpKind::Event { event } = f.kind;
            let owed = f.owed().map(|o| DeliveryRow {
                event: event.name(),
                target: "—",
                attempts: 0,
                state: o.to_string(),
                last_error: "",
            });
            f.deliveries
                .iter()
                .map(move |d| DeliveryRow {
                    event: event.name(),
                    target: d.target.as_str(),
                    attempts: d.attempts,
                    state: delivery_state(d),
                    last_error: d.last_error.as_deref().unwrap_or(""),
                })
                .chain(owed)
        })
        .collect();
    let git_tag = match (&run.git_tag, run.status) {
        (Some(record), _) => Some(record.describe()),
        (None, RunStatus::Released) => Some(
            "no try recorded yet (the release tags the built commit, or the sweeper does)".into(),
        ),
        (None, _) => None,
    };
    let cancellation = run.cancellation.as_ref().map(|c| CancelView {
        by: &c.by,
        at: minute(c.at),
        reason: c.reason.as_deref(),
        freed: &c.freeing.freed,
        not_freed: &c.freeing.not_freed,
        freeing: run.status == RunStatus::Cancelling,
    });
    let mut schedule = Vec::new();
    if let Some(check) = run.schedule_check.as_ref().filter(|c| c.paused) {
        let told = check.notifications.iter().filter(|n| n.delivered).count();
        schedule.push(format!(
            "this failure paused the image's scheduled runs, after {} failed scheduled runs ({}); {told} notice(s) delivered to its approvers and the operators",
            check.failures.len(),
            check
                .failures
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(resume) = &run.schedule_resumed {
        schedule.push(format!(
            "the image's scheduled runs were resumed after this run by {} at {}{}",
            resume.by,
            minute(resume.at),
            resume
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
    }
    let (withdrawn, made_current) = rollback_lines(run);
    render(&RunPage {
        frame: Frame::with(format!("Run {}", run.id), layout(!run.status.is_terminal())),
        cancellation,
        schedule,
        deliveries,
        git_tag,
        patch: crate::domain::patch_view::facts(run),
        patch_alert: crate::domain::patch_view::alert(run),
        run,
        trigger: trigger_name(run),
        commit: run.trigger.commit.as_deref().unwrap_or("—"),
        started: run.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        duration: duration(run, now),
        worker,
        timeline: timeline(run, now),
        stages,
        approval,
        notes: run
            .release
            .as_ref()
            .and_then(|r| r.notes.as_ref())
            .map(|n| changelog::notes_view(n)),
        below_latest: run.release.as_ref().and_then(|r| r.below_latest.as_deref()),
        withdrawn,
        made_current,
        release: run.release.as_ref().map(|release| {
            let without_notes = ReleaseRecord {
                notes: None,
                ..release.clone()
            };
            serde_json::to_string_pretty(&without_notes).unwrap_or_default()
        }),
        log_tail,
        earlier,
        reaped: reaper::reap_rows(std::slice::from_ref(run)),
        diagnostics: reaper::diagnostics_rows(std::slice::from_ref(run)),
    })
}

/// Where one delivery stands, with when: delivered, given up, the next
/// attempt, or pending.
fn delivery_state(d: &crate::domain::run::Delivery) -> String {
    match (d.delivered_at, d.gave_up_at, d.next_attempt_at) {
        (Some(at), _, _) => format!("delivered {}", minute(at)),
        (None, Some(at), _) => format!("given up {}", minute(at)),
        (None, None, Some(next)) if d.attempts > 0 => {
            format!("failed; next attempt {}", minute(next))
        }
        (None, None, Some(next)) => format!("due {}", minute(next)),
        (None, None, None) => "pending".into(),
    }
}

/// A version of an image, in its page's tables.
struct VersionRow<'a> {
    id: &'a str,
    version: String,
    /// The image's current release (of the released rows).
    latest: bool,
    /// The latest it was released below (published, not promoted).
    below_latest: Option<&'a str>,
    /// The rollback that withdrew it, told.
    withdrawn: Option<String>,
    commit: String,
    approvers: String,
    released: String,
    status: &'static str,
    duration: String,
}

impl<'a> VersionRow<'a> {
    fn of(run: &'a Run, now: DateTime<Utc>) -> VersionRow<'a> {
        let approvers: Vec<&str> = run.decisions.iter().map(|d| d.approver.as_str()).collect();
        VersionRow {
            id: &run.id,
            version: run.version.to_string(),
            latest: false,
            below_latest: run.release.as_ref().and_then(|r| r.below_latest.as_deref()),
            withdrawn: run
                .release
                .as_ref()
                .and_then(|r| r.withdrawn.as_deref())
                .map(withdrawn_by),
            commit: short_commit(run),
            approvers: approvers.join(", "),
            released: minute(run.updated_at),
            status: run.status.name(),
            duration: duration(run, now),
        }
    }
}

/// The image tree around an image, for its page.
#[derive(Clone, Debug, Default)]
pub struct ImageTree {
    /// The factory image it is built on.
    pub parent: Option<ParentBase>,
    /// The images built on it.
    pub children: Vec<ChildBase>,
}

/// The parent image on its child's page.
#[derive(Clone, Debug)]
pub struct ParentBase {
    /// The parent image.
    pub name: String,
    /// The parent version the child's latest release was built on, if any.
    pub built_on: Option<String>,
    /// The parent's current version, if any.
    pub latest: Option<String>,
    /// Why the child's current release is outdated (built on another parent
    /// version than the current one, maybe one a rollback withdrew).
    pub outdated: Option<String>,
}

/// A child image on its parent's page.
#[derive(Clone, Debug)]
pub struct ChildBase {
    /// The child image.
    pub name: String,
    /// The parent version its current release was built on, if any.
    pub built_on: Option<String>,
    /// Why it is outdated: built on a version that is no longer the
    /// parent's current one (maybe one a rollback withdrew).
    pub outdated: Option<String>,
}

/// A rollback on an image's page.
struct RollbackRow<'a> {
    at: String,
    from: &'a str,
    to: &'a str,
    to_run: &'a str,
    actor: &'a str,
    via: &'a str,
    reason: &'a str,
    sort: DateTime<Utc>,
}

/// A version the gallery holds.
struct GalleryRow {
    version: String,
    published: String,
    excluded: bool,
}

#[derive(Template)]
#[template(path = "image.html")]
struct ImagePage<'a> {
    frame: Frame,
    image: &'a str,
    /// Released versions, newest first; the current one is marked.
    released: Vec<VersionRow<'a>>,
    /// The current release: the newest no rollback withdrew and not
    /// released below another.
    latest: Option<VersionRow<'a>>,
    /// Since when it is current.
    current_since: Option<String>,
    /// The rollback that made it current, told, when one did.
    rolled_back: Option<String>,
    /// Every rollback of the image the listed runs record, newest first:
    /// when, from, to, who (how), why, the run made current.
    rollbacks: Vec<RollbackRow<'a>>,
    recent: Vec<VersionRow<'a>>,
    /// The notes of the latest release.
    latest_notes: Option<changelog::NotesView<'a>>,
    /// The gallery's latest version.
    gallery_latest: Option<String>,
    /// The gallery's versions, highest first, or why they could not be read.
    gallery: Result<Vec<GalleryRow>, &'a str>,
    tree: &'a ImageTree,
}

/// An image's page: its runs, its released versions, the latest one, what
/// the gallery holds (or why it could not be read) and its image tree.
pub fn image_page(
    image: &str,
    runs: &[Run],
    gallery: &Result<Vec<GalleryVersion>, String>,
    tree: &ImageTree,
    now: DateTime<Utc>,
) -> String {
    let (gallery_latest, gallery) = match gallery {
        Ok(versions) => {
            let mut rows: Vec<&GalleryVersion> = versions.iter().collect();
            rows.sort_by_key(|v| std::cmp::Reverse(v.version));
            (
                latest(versions).map(|v| v.to_string()),
                Ok(rows
                    .into_iter()
                    .map(|v| GalleryRow {
                        version: v.version.to_string(),
                        published: v.published.map_or_else(|| "—".into(), minute),
                        excluded: v.exclude_from_latest,
                    })
                    .collect()),
            )
        }
        Err(e) => (None, Err(e.as_str())),
    };
    // The current release is the newest one that was promoted and that no
    // rollback withdrew: a release below the latest (published, not
    // promoted) or a withdrawn one is listed, never current.
    let latest = runs.iter().find(|r| {
        is_current_candidate(r) && r.release.as_ref().is_none_or(|x| x.below_latest.is_none())
    });
    let is_latest = |r: &Run| latest.is_some_and(|l| l.id == r.id);
    let since = latest.map(current_since);
    let mut rollbacks: Vec<RollbackRow<'_>> = runs
        .iter()
        .flat_map(|r| r.release.iter().flat_map(|x| &x.rollbacks))
        .map(|b| RollbackRow {
            at: minute(b.at),
            from: b.from.as_deref().unwrap_or("—"),
            to: &b.to,
            to_run: &b.to_run,
            actor: &b.actor,
            via: &b.via,
            reason: &b.reason,
            sort: b.at,
        })
        .collect();
    rollbacks.sort_by_key(|b| std::cmp::Reverse(b.sort));
    render(&ImagePage {
        frame: Frame::with(format!("Image {image}"), layout(false)),
        image,
        released: runs
            .iter()
            .filter(|r| r.status == RunStatus::Released)
            .map(|r| VersionRow {
                latest: is_latest(r),
                ..VersionRow::of(r, now)
            })
            .collect(),
        latest: latest.map(|r| VersionRow::of(r, now)),
        current_since: since.map(|(at, _)| minute(at)),
        rolled_back: since.and_then(|(_, b)| b).map(made_current),
        rollbacks,
        recent: runs
            .iter()
            .take(20)
            .map(|r| VersionRow::of(r, now))
            .collect(),
        latest_notes: latest
            .and_then(|r| r.release.as_ref()?.notes.as_ref())
            .map(|n| changelog::notes_view(n)),
        gallery_latest,
        gallery,
        tree,
    })
}

/// A page for something that does not exist, with a way back.
pub fn not_found_page(what: &str) -> String {
    refusal_page("Not found", what)
}

/// A page that refuses a request with `what` went wrong, and a way back to
/// the runs list.
pub fn refusal_page(title: &str, what: &str) -> String {
    notice_page(title, what, true, Some((BASE, "← all runs")))
}
