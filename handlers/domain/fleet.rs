//! The fleet view's rules: for every image, whether it carries this month's
//! patches, and the facts an operator acts on (its latest release, the runs in
//! flight and what each waits on, its last failure). Pure: the store's answer
//! and the clock are arguments.
//!
//! **The compliance rule.** The month whose patches are expected is the latest
//! month whose Patch Tuesday build time has passed ([`BuildCalendar::due_month`]).
//! An image is
//!
//! - **patched** when a run of it *created* at or after that build time was
//!   released, or was skipped because its inputs were identical to the image's
//!   last release (the factory checked and there was nothing new to build);
//!   a run created earlier was built from the older base, whenever it was released;
//! - otherwise **due** until the deadline, the build time plus a grace period
//!   (`IMAGE_FACTORY_PATCH_GRACE_DAYS`, default 7 days), and **overdue** from then on.
//!
//! The state only moves patched ← due ← overdue within one month (a release
//! makes it patched, time makes it overdue) and starts again at the next
//! month's build time.
//!
//! **The patch level by evidence.** An image whose latest release recorded
//! patch evidence (the OS build its build read inside the image) is judged
//! by it instead ([`patch_level`]): the CVEs of the newest month Microsoft
//! published that the build misses ("exposed to 27 CVEs, 0 Critical, since
//! 2026-02-10"), or none. The dates above are then only the fallback, for
//! images whose latest release has no evidence ([`PatchLevel::Dates`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::BuildCalendar;
use super::cvrf::{CvrfDocument, MonthId, WindowsBuild};
use super::diagnosis::Diagnosis;
use super::patch::{CumulativeUpdate, SeverityCounts, Target, exposure};
use super::rollback::current_since;
use super::run::{Rollback, Run, RunStatus, Stage};

/// The grace period unless configured.
pub const DEFAULT_GRACE_DAYS: u32 = 7;
/// The longest grace period: two monthly builds are at least 28 days apart,
/// so a longer one would outlast the next month's build.
pub const MAX_GRACE_DAYS: u32 = 27;
/// Runs in flight shown per image; an image rarely has more than two.
pub const MAX_IN_FLIGHT: usize = 10;

/// How long after the build time an unpatched image is due rather than overdue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grace {
    days: u32,
}

/// A grace period that cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the patch grace period must be 0-{MAX_GRACE_DAYS} days, not {0}: a longer one would outlast the next month's build"
)]
pub struct GraceError(pub u32);

impl Grace {
    /// A grace period of `days`, checked.
    pub fn new(days: u32) -> Result<Grace, GraceError> {
        if days > MAX_GRACE_DAYS {
            return Err(GraceError(days));
        }
        Ok(Grace { days })
    }

    /// Its length in days.
    pub fn days(self) -> u32 {
        self.days
    }
}

impl Default for Grace {
    fn default() -> Grace {
        Grace {
            days: DEFAULT_GRACE_DAYS,
        }
    }
}

/// The month whose patches are expected at some instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchWindow {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Its Patch Tuesday build time.
    pub build_time: DateTime<Utc>,
    /// The build time plus the grace period.
    pub deadline: DateTime<Utc>,
    /// The grace period in days.
    pub grace_days: u32,
}

impl PatchWindow {
    /// The window at `now`: the latest month whose build time has passed.
    pub fn at(calendar: &BuildCalendar, grace: Grace, now: DateTime<Utc>) -> PatchWindow {
        let month = calendar.due_month(now);
        let build_time = calendar.build_time(month);
        PatchWindow {
            month: month.to_string(),
            build_time,
            deadline: build_time + Duration::days(i64::from(grace.days)),
            grace_days: grace.days,
        }
    }

    /// The state of an image whose latest patching run (released or skipped
    /// as unchanged, see [`Evidence`]) is `evidence`, at `now`.
    pub fn compliance(&self, evidence: Option<&Evidence>, now: DateTime<Utc>) -> Compliance {
        if let Some(e) = evidence.filter(|e| e.created_at >= self.build_time) {
            return Compliance::Patched {
                run_id: e.run_id.clone(),
                how: e.how,
                at: e.at,
            };
        }
        if now < self.deadline {
            let days_since_build = (now - self.build_time).num_days().max(0);
            Compliance::Due {
                days_since_build,
                days_left: i64::from(self.grace_days) - days_since_build,
                deadline: self.deadline,
            }
        } else {
            Compliance::Overdue {
                days_overdue: (now - self.deadline).num_days(),
                deadline: self.deadline,
            }
        }
    }
}

/// How a run shows an image patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchedBy {
    /// It released a new version.
    Released,
    /// Its inputs were identical to the last release, so nothing was built.
    Unchanged,
}

/// The run that may show an image patched: its latest released or skipped run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The run.
    pub run_id: String,
    /// When it was created (what the rule compares with the build time).
    pub created_at: DateTime<Utc>,
    /// When it was released or skipped.
    pub at: DateTime<Utc>,
    /// Released or skipped.
    pub how: PatchedBy,
}

impl Evidence {
    /// The evidence a released or skipped run gives; `None` for any other run.
    pub fn of(run: &Run) -> Option<Evidence> {
        let how = match run.status {
            RunStatus::Released => PatchedBy::Released,
            RunStatus::Skipped => PatchedBy::Unchanged,
            _ => return None,
        };
        Some(Evidence {
            run_id: run.id.to_string(),
            created_at: run.created_at,
            at: run.ended_at(),
            how,
        })
    }
}

/// Where an image stands with this month's patches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Compliance {
    /// Released (or found unchanged) from inputs taken after the build time.
    Patched {
        /// The run that shows it.
        run_id: String,
        /// Released or unchanged.
        how: PatchedBy,
        /// When that run was released or skipped.
        at: DateTime<Utc>,
    },
    /// Not yet, within the grace period.
    Due {
        /// Whole days since the build time.
        days_since_build: i64,
        /// Whole days of grace left (the grace period minus `days_since_build`).
        days_left: i64,
        /// When it becomes overdue.
        deadline: DateTime<Utc>,
    },
    /// Not yet, past the grace period.
    Overdue {
        /// Whole days since the deadline (0 on its first day).
        days_overdue: i64,
        /// When it became overdue.
        deadline: DateTime<Utc>,
    },
}

impl Compliance {
    /// `patched`, `due` or `overdue`.
    pub fn name(&self) -> &'static str {
        match self {
            Compliance::Patched { .. } => "patched",
            Compliance::Due { .. } => "due",
            Compliance::Overdue { .. } => "overdue",
        }
    }

    /// 0 patched, 1 due, 2 overdue: higher is worse.
    pub fn severity(&self) -> u8 {
        match self {
            Compliance::Patched { .. } => 0,
            Compliance::Due { .. } => 1,
            Compliance::Overdue { .. } => 2,
        }
    }
}

/// What the store holds about one image that the fleet view needs: its
/// latest run of each kind that matters, newest by creation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageRuns {
    /// The image.
    pub image: String,
    /// Its current release: its newest released run that no rollback
    /// withdrew ([`super::rollback`]).
    pub released: Option<Run>,
    /// Its latest skipped run (identical to its last release).
    pub skipped: Option<Run>,
    /// Its latest failed run.
    pub failed: Option<Run>,
    /// Its runs that have not ended, newest first.
    pub in_flight: Vec<Run>,
}

impl ImageRuns {
    /// Files `run` where its status belongs: the latest released, skipped or
    /// failed run, or the runs in flight (in the order filed). Runs that ended
    /// otherwise (rejected, approval expired) are not part of the view.
    pub fn file(&mut self, run: Run) {
        match run.status {
            RunStatus::Released => self.released = Some(run),
            RunStatus::Skipped => self.skipped = Some(run),
            RunStatus::Failed => self.failed = Some(run),
            s if !s.is_terminal() => self.in_flight.push(run),
            _ => {}
        }
    }
}

/// An image's current release: the version consumers get as latest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseFacts {
    /// The released version.
    pub version: String,
    /// The run that released it.
    pub run_id: String,
    /// When it was released.
    pub released_at: DateTime<Utc>,
    /// The Marketplace base image version it was built from, when recorded.
    pub base_image_version: Option<String>,
    /// The higher version that stayed latest when this one was released
    /// below it (published, not promoted); `None` for a promoted release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_latest: Option<String>,
    /// Since when it is current: its release, or the rollback that made it
    /// current again.
    pub current_since: DateTime<Utc>,
    /// That rollback (who, why, from which version), when a rollback made
    /// it current after its release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<Rollback>,
}

impl ReleaseFacts {
    /// The facts of `run`, an image's current release.
    pub fn of(run: &Run) -> ReleaseFacts {
        let (since, rolled_back) = current_since(run);
        ReleaseFacts {
            version: run.version.to_string(),
            run_id: run.id.to_string(),
            released_at: run.ended_at(),
            base_image_version: run.trigger.base_image_version.clone(),
            below_latest: run.release.as_ref().and_then(|x| x.below_latest.clone()),
            current_since: since,
            rolled_back: rolled_back.cloned(),
        }
    }
}

/// A run that has not ended, and what it waits on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// The run.
    pub run_id: String,
    /// The version it builds.
    pub version: String,
    /// Queued, running or waiting for approval.
    pub status: RunStatus,
    /// The stage it is at (the first that has not succeeded).
    pub stage: Option<Stage>,
    /// Since when it has been at that stage (its creation, for a queued run).
    pub since: DateTime<Utc>,
    /// The approval it waits for, when it waits for one.
    pub approval: Option<ApprovalWait>,
}

/// An approval a run waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalWait {
    /// Approvals needed.
    pub required: u32,
    /// Who may decide.
    pub approvers: Vec<String>,
    /// The approvers who have not decided yet.
    pub waiting_on: Vec<String>,
    /// When the request lapses.
    pub expires_at: DateTime<Utc>,
}

/// An image's last failed run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureFacts {
    /// The run.
    pub run_id: String,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// The stage that failed, if one did.
    pub stage: Option<Stage>,
    /// Why, in words an operator can act on.
    pub reason: String,
    /// The likely cause and fix, when the troubleshooting table knows it.
    pub diagnosis: Option<Diagnosis>,
}

/// An image's latest release judged by its patch evidence against the
/// newest month, or why it is judged by dates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "basis",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum PatchLevel {
    /// Judged by the release's evidence against the newest month.
    Evidence {
        /// The release's run.
        run_id: String,
        /// The newest month Microsoft published.
        month: MonthId,
        /// When it was first published: the release is exposed since then.
        since: DateTime<Utc>,
        /// The product, as Microsoft's data names it.
        product: String,
        /// The OS build the release's evidence reads.
        os_build: WindowsBuild,
        /// The month's cumulative update for the product.
        cumulative_update: Option<CumulativeUpdate>,
        /// How many of the month's CVEs the build misses.
        exposed_to: usize,
        /// Those by severity.
        by_severity: SeverityCounts,
        /// True when the evidence is a stand-in.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stand_in: bool,
    },
    /// The release has evidence that could not be judged now (Microsoft's
    /// data unreadable, an OS the rules do not know): the dates stand in.
    Unknown {
        /// Why.
        reason: String,
    },
    /// No evidence (no release, or a release whose build collected none):
    /// judged by the dates of the compliance rule.
    #[default]
    Dates,
}

impl PatchLevel {
    /// `exposed to 27 CVEs, 0 Critical, since 2026-02-10`, or `carries
    /// every fix of 2026-Feb`; `None` when not judged by evidence.
    pub fn describe(&self) -> Option<String> {
        match self {
            PatchLevel::Evidence {
                month,
                since,
                exposed_to: 0,
                ..
            } => Some(format!(
                "carries every fix of {month} (published {})",
                since.format("%Y-%m-%d")
            )),
            PatchLevel::Evidence {
                since,
                exposed_to,
                by_severity,
                ..
            } => Some(format!(
                "exposed to {exposed_to} CVE{}, {} Critical, since {}",
                if *exposed_to == 1 { "" } else { "s" },
                by_severity.critical,
                since.format("%Y-%m-%d")
            )),
            PatchLevel::Unknown { .. } | PatchLevel::Dates => None,
        }
    }
}

/// Whether the latest release `release` recorded patch evidence, which the
/// fleet view judges against the newest month (read once per page, only
/// when a row needs it).
pub fn has_evidence(release: Option<&Run>) -> bool {
    release
        .and_then(|r| r.build.as_ref())
        .and_then(|b| b.evidence.as_deref())
        .and_then(|e| e.evidence())
        .is_some()
}

/// The patch level of an image whose latest release is `release`, judged
/// against `newest` (the newest month, or why it could not be read).
pub fn patch_level(
    release: Option<&Run>,
    newest: Option<Result<&CvrfDocument, &str>>,
) -> PatchLevel {
    let Some((run, evidence)) = release.and_then(|r| {
        let evidence = r.build.as_ref()?.evidence.as_deref()?.evidence()?;
        Some((r, evidence))
    }) else {
        return PatchLevel::Dates;
    };
    let month = match newest {
        Some(Ok(month)) => month,
        Some(Err(reason)) => {
            return PatchLevel::Unknown {
                reason: reason.to_string(),
            };
        }
        None => {
            return PatchLevel::Unknown {
                reason: "Microsoft's security data was not read".into(),
            };
        }
    };
    let judged = Target::of(evidence).and_then(|target| exposure(month, &target));
    match judged {
        Ok(e) => PatchLevel::Evidence {
            run_id: run.id.to_string(),
            month: e.month,
            since: month.initial_release,
            product: e.product,
            os_build: e.os_build,
            cumulative_update: e.cumulative_update,
            exposed_to: e.missing.len(),
            by_severity: e.missing_by_severity,
            stand_in: evidence.stand_in,
        },
        Err(e) => PatchLevel::Unknown {
            reason: e.to_string(),
        },
    }
}

/// One image in the fleet view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetRow {
    /// The image.
    pub image: String,
    /// Its current release (its newest no rollback withdrew), if it has one.
    pub current_release: Option<ReleaseFacts>,
    /// Where it stands with this month's patches, by the dates of the
    /// compliance rule.
    pub compliance: Compliance,
    /// Its latest release judged by its patch evidence, when it has some
    /// ([`patch_level`]); the view shows this instead of the dates.
    #[serde(default)]
    pub patch_level: PatchLevel,
    /// Its runs that have not ended, newest first (at most [`MAX_IN_FLIGHT`]).
    pub in_flight: Vec<InFlight>,
    /// Its last failed run, if any.
    pub last_failure: Option<FailureFacts>,
    /// Images layered on this one whose current release was built on
    /// another version than its current one, with why
    /// ([`outdated_children`]).
    pub outdated_children: Vec<OutdatedChild>,
    /// The pause of its scheduled runs, while they are paused
    /// ([`super::pause`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<super::pause::Pause>,
}

/// An image built on another whose current release is on a parent
/// version that is no longer the parent's current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutdatedChild {
    /// The child image.
    pub image: String,
    /// The parent version its current release was built on.
    pub built_on: String,
    /// The parent's current version.
    pub parent_current: String,
    /// Why it is outdated, in words: an older parent version, or one a
    /// rollback withdrew (who, when, why).
    pub reason: String,
}

fn in_flight(run: &Run) -> InFlight {
    let stage = run.current_stage();
    let since = stage
        .and_then(|s| run.stage(s).started_at)
        .unwrap_or(run.created_at);
    let approval = run
        .approval
        .as_ref()
        .filter(|_| run.status == RunStatus::WaitingForApproval)
        .map(|request| ApprovalWait {
            required: request.required,
            approvers: request.approvers.clone(),
            waiting_on: run.waiting_on().into_iter().map(String::from).collect(),
            expires_at: request.expires_at,
        });
    InFlight {
        run_id: run.id.to_string(),
        version: run.version.to_string(),
        status: run.status,
        stage,
        since,
        approval,
    }
}

/// The latest of two optional runs by creation.
fn latest<'a>(a: Option<&'a Run>, b: Option<&'a Run>) -> Option<&'a Run> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if (b.created_at, &b.id) > (a.created_at, &a.id) {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

/// The fleet view's row of one image at `now`.
pub fn row(window: &PatchWindow, runs: &ImageRuns, now: DateTime<Utc>) -> FleetRow {
    let evidence = latest(runs.released.as_ref(), runs.skipped.as_ref()).and_then(Evidence::of);
    FleetRow {
        image: runs.image.clone(),
        current_release: runs.released.as_ref().map(ReleaseFacts::of),
        compliance: window.compliance(evidence.as_ref(), now),
        patch_level: PatchLevel::Dates,
        in_flight: runs
            .in_flight
            .iter()
            .take(MAX_IN_FLIGHT)
            .map(in_flight)
            .collect(),
        last_failure: runs.failed.as_ref().map(|r| FailureFacts {
            run_id: r.id.to_string(),
            at: r.failure.as_ref().map_or(r.updated_at, |f| f.at),
            stage: r.failure.as_ref().and_then(|f| f.stage),
            reason: r
                .failure
                .as_ref()
                .map_or_else(|| "no reason recorded".into(), |f| f.reason.clone()),
            diagnosis: r.failure.as_ref().and_then(|f| f.diagnosis.clone()),
        }),
        outdated_children: Vec::new(),
        paused: None,
    }
}

impl ImageRuns {
    /// Whether the image's scheduled runs may be paused: its newest failed
    /// run is newer than its newest release (else a release ends any streak,
    /// [`super::pause`]). Only then is its history read for the fleet view.
    pub fn may_be_paused(&self) -> bool {
        match (&self.failed, &self.released) {
            (Some(failed), Some(released)) => {
                (failed.created_at, &failed.id) > (released.created_at, &released.id)
            }
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Whether a child image is outdated: its current release was built on base
/// version `built_on`, and its parent's current version is now
/// `parent_current`, another one. Nothing to compare (the parent never
/// released, the child has no release or recorded no base) is not outdated.
pub fn is_outdated(parent_current: Option<&str>, built_on: Option<&str>) -> bool {
    matches!((parent_current, built_on), (Some(current), Some(base)) if current != base)
}

/// Why a child built on `parent`'s version `built_on` is outdated, when it
/// is: `parent` (the parent's current release) is another version. A
/// version the rollback that made the parent current withdrew says so,
/// with who, when and why.
pub fn outdated_reason(parent: &Run, built_on: &str) -> Option<String> {
    let current = parent.version.to_string();
    if !is_outdated(Some(&current), Some(built_on)) {
        return None;
    }
    let (_, rollback) = current_since(parent);
    Some(match rollback {
        Some(b) if b.withdrawn.iter().any(|v| v == built_on) => format!(
            "built on {} {built_on}, which a rollback to {current} withdrew on {} ({}: {}); rebuild it on {current} or roll it back",
            parent.image,
            b.at.format("%Y-%m-%d %H:%M UTC"),
            b.actor,
            b.reason
        ),
        _ => format!(
            "built on {} {built_on}; {} is at {current} now",
            parent.image, parent.image
        ),
    })
}

/// The images of `children` (the runs of images built on `parent`) that are
/// outdated ([`outdated_reason`]), with why.
pub fn outdated_children(parent: &ImageRuns, children: &[&ImageRuns]) -> Vec<OutdatedChild> {
    let Some(current) = parent.released.as_ref() else {
        return Vec::new();
    };
    children
        .iter()
        .filter_map(|child| {
            let built_on = child
                .released
                .as_ref()?
                .trigger
                .base_image_version
                .clone()?;
            let reason = outdated_reason(current, &built_on)?;
            Some(OutdatedChild {
                image: child.image.clone(),
                built_on,
                parent_current: current.version.to_string(),
                reason,
            })
        })
        .collect()
}

/// The count over the whole fleet, above the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Headline {
    /// The month whose patches are expected.
    pub window: PatchWindow,
    /// Images patched since its build time.
    pub patched: usize,
    /// Images configured.
    pub total: usize,
    /// Images not patched, within the grace period.
    pub due: usize,
    /// Images not patched, past it.
    pub overdue: usize,
}

/// The headline at `now`: of `images`, those in `patched` (the images with a
/// released or skipped run created since the window's build time) are
/// patched; the others are all due or all overdue, as the clock says.
pub fn headline(
    window: &PatchWindow,
    images: &[String],
    patched: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Headline {
    let total = images.len();
    let done = images.iter().filter(|i| patched.contains(*i)).count();
    let late = now >= window.deadline;
    Headline {
        window: window.clone(),
        patched: done,
        total,
        due: if late { 0 } else { total - done },
        overdue: if late { total - done } else { 0 },
    }
}

/// One page of the fleet view: the headline over every image, the rows of
/// a page of images sorted by name, and where the next page starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetPage {
    /// The count over the whole fleet.
    pub headline: Headline,
    /// This page's images.
    pub images: Vec<FleetRow>,
    /// Pass back to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_child_built_on_an_older_base_than_its_parents_current_release_is_outdated() {
        assert!(is_outdated(Some("2026.1130.0"), Some("2026.1101.0")));
        assert!(!is_outdated(Some("2026.1130.0"), Some("2026.1130.0")));
        // Nothing to compare: never released, or no base recorded.
        assert!(!is_outdated(None, Some("2026.1101.0")));
        assert!(!is_outdated(Some("2026.1130.0"), None));
        assert!(!is_outdated(None, None));
    }

    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::approval::{ApprovalRequest, Decision, Verdict};
    use crate::domain::calendar::Month;
    use crate::domain::run::{Failure, StageStatus, Trigger, TriggerKind};
    use crate::domain::version::ImageVersion;

    /// UTC, 1 day after Patch Tuesday at 06:00: November 2026's build is
    /// 2026-11-11 06:00 UTC (Patch Tuesday is 2026-11-10).
    fn calendar() -> BuildCalendar {
        BuildCalendar::new("UTC", 1, 6).unwrap()
    }

    fn build_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 11, 6, 0, 0).unwrap()
    }

    fn hours(h: i64) -> DateTime<Utc> {
        build_time() + Duration::hours(h)
    }

    fn window(now: DateTime<Utc>) -> PatchWindow {
        PatchWindow::at(&calendar(), Grace::default(), now)
    }

    fn run(id: &str, status: RunStatus, created: DateTime<Utc>) -> Run {
        let mut run = Run::new(
            id.parse().unwrap(),
            "web".into(),
            ImageVersion::new(2026, 1111, 0).unwrap(),
            Trigger::new(TriggerKind::Push, "github"),
            BTreeMap::new(),
            created,
        );
        run.status = status;
        run.updated_at = created + Duration::hours(2);
        run
    }

    #[test]
    fn a_release_with_evidence_is_judged_by_it_against_the_newest_month_and_one_without_by_dates() {
        use crate::domain::cvrf::{Product, Severity, VendorFix, Vulnerability};
        use crate::domain::evidence::EvidenceRecord;
        use crate::domain::run::BuildResult;
        let fix = |cve: &str, build: &str, severity: Severity| Vulnerability {
            cve: cve.into(),
            title: String::new(),
            severities: [("11923".to_string(), severity)].into(),
            cvss: None,
            fixes: vec![VendorFix {
                kb: "KB2".into(),
                sub_type: VendorFix::SECURITY_UPDATE.into(),
                fixed_build: build.into(),
                products: vec!["11923".into()],
            }],
        };
        let month = CvrfDocument {
            id: "2026-Feb".parse().unwrap(),
            title: "February 2026 Security Updates".into(),
            initial_release: hours(3),
            current_release: hours(3),
            products: vec![Product {
                id: "11923".into(),
                name: "Windows Server 2022".into(),
            }],
            vulnerabilities: vec![
                fix("CVE-2026-1", "10.0.20348.200", Severity::Critical),
                fix("CVE-2026-2", "10.0.20348.200", Severity::Important),
                fix("CVE-2026-3", "10.0.20348.100", Severity::Important),
            ],
        };
        let released = |build: Option<&str>| {
            let mut r = run("push-web-1", RunStatus::Released, hours(1));
            r.build = Some(BuildResult {
                artifacts: Vec::new(),
                managed_image_id: None,
                gallery_version_id: None,
                log: "build.log".into(),
                duration_seconds: 1,
                evidence: build.map(|b| {
                    let text = format!(
                        r#"{{"schema":"image-factory.evidence/1","collectedAt":"2026-02-11T03:00:00Z",
                           "os":{{"installationType":"Server","build":"{b}"}},"rebootPending":false,"hotfixes":[],"updates":[]}}"#
                    );
                    Box::new(EvidenceRecord::read(Some(text.as_bytes()), "f"))
                }),
            });
            r
        };
        let old = released(Some("10.0.20348.150"));
        assert!(has_evidence(Some(&old)));
        let level = patch_level(Some(&old), Some(Ok(&month)));
        let PatchLevel::Evidence {
            exposed_to,
            by_severity,
            since,
            ..
        } = &level
        else {
            panic!("{level:?}")
        };
        assert_eq!(
            (*exposed_to, by_severity.critical, *since),
            (2, 1, hours(3))
        );
        assert_eq!(
            level.describe().unwrap(),
            format!(
                "exposed to 2 CVEs, 1 Critical, since {}",
                hours(3).format("%Y-%m-%d")
            )
        );
        let current = patch_level(Some(&released(Some("10.0.20348.200"))), Some(Ok(&month)));
        assert!(
            current
                .describe()
                .unwrap()
                .starts_with("carries every fix of 2026-Feb")
        );
        // Data unreadable: unknown, and the dates stand in.
        assert_eq!(
            patch_level(Some(&old), Some(Err("unreachable"))),
            PatchLevel::Unknown {
                reason: "unreachable".into()
            }
        );
        // No evidence, or no release: dates.
        let none = released(None);
        assert!(!has_evidence(Some(&none)));
        assert_eq!(
            patch_level(Some(&none), Some(Ok(&month))),
            PatchLevel::Dates
        );
        assert_eq!(patch_level(None, None), PatchLevel::Dates);
        assert_eq!(PatchLevel::Dates.describe(), None);
    }

    #[test]
    fn outdated_children_are_those_whose_current_release_is_on_another_parent_version() {
        let released = |image: &str, base: Option<&str>| {
            let mut r = run("push-web-1", RunStatus::Released, hours(1));
            r.trigger.base_image_version = base.map(String::from);
            ImageRuns {
                image: image.into(),
                released: Some(r),
                ..ImageRuns::default()
            }
        };
        // The parent's current release is 2026.1111.0 (`run`'s version).
        let parent = released("base", None);
        let old = released("old", Some("2026.1101.0"));
        let current = released("current", Some("2026.1111.0"));
        let unreleased = ImageRuns {
            image: "new".into(),
            ..ImageRuns::default()
        };
        let outdated = outdated_children(&parent, &[&old, &current, &unreleased]);
        assert_eq!(
            outdated,
            vec![OutdatedChild {
                image: "old".into(),
                built_on: "2026.1101.0".into(),
                parent_current: "2026.1111.0".into(),
                reason: "built on web 2026.1101.0; web is at 2026.1111.0 now".into(),
            }]
        );
        let never = ImageRuns {
            image: "base".into(),
            ..ImageRuns::default()
        };
        assert!(outdated_children(&never, &[&old]).is_empty());
    }

    #[test]
    fn a_child_built_on_a_version_a_rollback_withdrew_says_who_withdrew_it_and_why() {
        let mut parent = run("push-web-1", RunStatus::Released, hours(1));
        parent.stage_mut(Stage::Release).finished_at = Some(hours(2));
        parent.release = Some(crate::domain::run::ReleaseRecord {
            rollbacks: vec![Rollback {
                id: "e1".into(),
                to: "2026.1111.0".into(),
                to_run: "push-web-1".into(),
                from: Some("2026.1112.0".into()),
                withdrawn: vec!["2026.1112.0".into()],
                actor: "alice@contoso.com".into(),
                via: "sign-in".into(),
                reason: "IIS does not start".into(),
                at: hours(30),
            }],
            ..Default::default()
        });
        let reason = outdated_reason(&parent, "2026.1112.0").unwrap();
        assert!(
            reason.contains("which a rollback to 2026.1111.0 withdrew")
                && reason.contains("alice@contoso.com: IIS does not start"),
            "{reason}"
        );
        assert_eq!(outdated_reason(&parent, "2026.1111.0"), None);
        let facts = ReleaseFacts::of(&parent);
        assert_eq!(facts.current_since, hours(30));
        assert_eq!(
            facts.rolled_back.unwrap().from.as_deref(),
            Some("2026.1112.0")
        );
    }

    fn evidence(created: DateTime<Utc>, how: PatchedBy) -> Evidence {
        Evidence {
            run_id: "r".into(),
            created_at: created,
            at: created,
            how,
        }
    }

    #[test]
    fn the_window_is_the_latest_month_whose_build_time_has_passed() {
        let w = window(hours(1));
        assert_eq!(w.month, "2026-11");
        assert_eq!(w.build_time, build_time());
        assert_eq!(w.deadline, build_time() + Duration::days(7));
        let before = window(hours(-1));
        assert_eq!(before.month, "2026-10");
        assert_eq!(
            before.build_time,
            calendar().build_time(Month {
                year: 2026,
                month: 10
            })
        );
    }

    #[test]
    fn a_release_of_a_run_created_after_the_build_time_patches_one_created_before_does_not() {
        let w = window(hours(30));
        let after = w.compliance(Some(&evidence(hours(1), PatchedBy::Released)), hours(30));
        assert_eq!(after.name(), "patched");
        let at_build = w.compliance(Some(&evidence(hours(0), PatchedBy::Released)), hours(30));
        assert_eq!(at_build.name(), "patched");
        let before = w.compliance(Some(&evidence(hours(-1), PatchedBy::Released)), hours(30));
        assert_eq!(
            before,
            Compliance::Due {
                days_since_build: 1,
                days_left: 6,
                deadline: w.deadline
            }
        );
    }

    #[test]
    fn unpatched_images_are_due_for_the_grace_period_then_overdue_with_the_days() {
        let w = window(hours(1));
        assert_eq!(
            w.compliance(None, hours(0)),
            Compliance::Due {
                days_since_build: 0,
                days_left: 7,
                deadline: w.deadline
            }
        );
        let last_second = w.deadline - Duration::seconds(1);
        assert_eq!(w.compliance(None, last_second).name(), "due");
        assert_eq!(
            w.compliance(None, w.deadline),
            Compliance::Overdue {
                days_overdue: 0,
                deadline: w.deadline
            }
        );
        assert_eq!(
            w.compliance(None, w.deadline + Duration::hours(24 * 12 + 5)),
            Compliance::Overdue {
                days_overdue: 12,
                deadline: w.deadline
            }
        );
        let no_grace = PatchWindow::at(&calendar(), Grace::new(0).unwrap(), hours(0));
        assert_eq!(no_grace.compliance(None, hours(0)).name(), "overdue");
    }

    #[test]
    fn grace_periods_beyond_the_next_build_are_refused() {
        assert_eq!(Grace::new(27).unwrap().days(), 27);
        assert_eq!(Grace::new(28), Err(GraceError(28)));
        assert!(GraceError(40).to_string().contains("0-27 days"));
    }

    #[test]
    fn compliance_reads_as_json_with_its_state_and_days() {
        let w = window(hours(1));
        let json =
            serde_json::to_value(w.compliance(None, w.deadline + Duration::days(3))).unwrap();
        assert_eq!(json["state"], "overdue");
        assert_eq!(json["daysOverdue"], 3);
        let patched = serde_json::to_value(
            w.compliance(Some(&evidence(hours(2), PatchedBy::Unchanged)), hours(3)),
        )
        .unwrap();
        assert_eq!(patched["state"], "patched");
        assert_eq!(patched["how"], "unchanged");
        assert_eq!(patched["runId"], "r");
    }

    #[test]
    fn a_row_shows_the_release_the_runs_in_flight_with_their_approvers_and_the_last_failure() {
        let mut released = run("push-web-1", RunStatus::Released, hours(-50));
        released.trigger.base_image_version = Some("20348.2849.241109".into());
        released.stages[Stage::Release.index()].finished_at = Some(hours(-40));
        let mut waiting = run("push-web-2", RunStatus::WaitingForApproval, hours(5));
        for s in [Stage::Validate, Stage::Build, Stage::Test] {
            waiting.stages[s.index()].status = StageStatus::Succeeded;
        }
        waiting.stages[Stage::Approve.index()].status = StageStatus::Waiting;
        waiting.stages[Stage::Approve.index()].started_at = Some(hours(6));
        waiting.approval = Some(ApprovalRequest {
            approvers: vec!["lead".into(), "security".into()],
            required: 2,
            expires_at: hours(6 + 168),
            links: vec![],
            remind_before_hours: 0,
            notifications: vec![],
        });
        waiting.decisions.push(Decision {
            approver: "lead".into(),
            verdict: Verdict::Approve,
            at: hours(7),
            comment: None,
            via: "link".into(),
            token_id: None,
            recorded_by: None,
        });
        let queued = run("pt-web-2026-11", RunStatus::Queued, hours(8));
        let mut failed = run("push-web-0", RunStatus::Failed, hours(-60));
        failed.failure = Some(Failure {
            stage: Some(Stage::Build),
            reason: "packer build failed: timeout waiting for WinRM".into(),
            at: hours(-59),
            diagnosis: crate::domain::diagnosis::diagnose("timeout waiting for WinRM"),
        });
        let runs = ImageRuns {
            image: "web".into(),
            released: Some(released),
            skipped: None,
            failed: Some(failed),
            in_flight: vec![queued, waiting],
        };
        let now = hours(9);
        let row = row(&window(now), &runs, now);
        let release = row.current_release.unwrap();
        assert_eq!(release.run_id, "push-web-1");
        assert_eq!(release.released_at, hours(-40));
        assert_eq!(
            release.base_image_version.as_deref(),
            Some("20348.2849.241109")
        );
        assert_eq!(
            row.compliance.name(),
            "due",
            "released before the build time"
        );
        assert_eq!(row.in_flight.len(), 2);
        assert_eq!(row.in_flight[0].stage, Some(Stage::Validate));
        assert_eq!(row.in_flight[0].since, hours(8));
        let approval = row.in_flight[1].approval.as_ref().unwrap();
        assert_eq!(row.in_flight[1].stage, Some(Stage::Approve));
        assert_eq!(row.in_flight[1].since, hours(6));
        assert_eq!(approval.waiting_on, ["security"]);
        let failure = row.last_failure.unwrap();
        assert_eq!(failure.stage, Some(Stage::Build));
        assert_eq!(failure.diagnosis.unwrap().kind, "winrm-unreachable");
        assert!(row.outdated_children.is_empty());
    }

    #[test]
    fn a_latest_release_made_below_another_version_says_which() {
        let mut released = run("push-web-1", RunStatus::Released, hours(-50));
        released.release = Some(crate::domain::run::ReleaseRecord {
            below_latest: Some("2026.1130.9".into()),
            ..Default::default()
        });
        let runs = ImageRuns {
            image: "web".into(),
            released: Some(released),
            ..ImageRuns::default()
        };
        let now = hours(3);
        let release = row(&window(now), &runs, now).current_release.unwrap();
        assert_eq!(release.below_latest.as_deref(), Some("2026.1130.9"));
    }

    #[test]
    fn a_skipped_run_after_the_build_time_patches_as_unchanged_whichever_is_newer_counts() {
        let released = run("push-web-1", RunStatus::Released, hours(-50));
        let skipped = run("pt-web-2026-11", RunStatus::Skipped, hours(0));
        let runs = ImageRuns {
            image: "web".into(),
            released: Some(released.clone()),
            skipped: Some(skipped),
            ..ImageRuns::default()
        };
        let now = hours(3);
        let row = row(&window(now), &runs, now);
        assert!(matches!(
            row.compliance,
            Compliance::Patched {
                how: PatchedBy::Unchanged,
                ..
            }
        ));
        assert_eq!(row.current_release.unwrap().run_id, "push-web-1");
        let old_skip = ImageRuns {
            image: "web".into(),
            released: Some(run("push-web-3", RunStatus::Released, hours(1))),
            skipped: Some(run("pt-web-2026-10", RunStatus::Skipped, hours(-700))),
            ..ImageRuns::default()
        };
        assert!(matches!(
            super::row(&window(now), &old_skip, now).compliance,
            Compliance::Patched {
                how: PatchedBy::Released,
                ..
            }
        ));
    }

    #[test]
    fn the_headline_counts_configured_images_patched_and_the_rest_as_due_or_overdue() {
        let images: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let patched = BTreeSet::from(["a".to_string(), "gone".to_string()]);
        let w = window(hours(1));
        let early = headline(&w, &images, &patched, hours(1));
        assert_eq!(
            (early.patched, early.total, early.due, early.overdue),
            (1, 3, 2, 0)
        );
        let late = headline(&w, &images, &patched, w.deadline);
        assert_eq!(
            (late.patched, late.total, late.due, late.overdue),
            (1, 3, 0, 2)
        );
    }

    fn any_evidence() -> impl Strategy<Value = Option<Evidence>> {
        proptest::option::of((-2_000i64..2_000, any::<bool>()).prop_map(|(h, released)| {
            evidence(
                hours(h),
                if released {
                    PatchedBy::Released
                } else {
                    PatchedBy::Unchanged
                },
            )
        }))
    }

    proptest! {
        #[test]
        fn a_run_created_after_the_build_time_patches_whatever_else_is_true(
            created in 0i64..2_000, now in 0i64..2_000, grace in 0u32..=MAX_GRACE_DAYS,
            released in any::<bool>(),
        ) {
            let now = hours(created.max(now)).min(hours(27 * 24));
            let w = PatchWindow::at(&calendar(), Grace::new(grace).unwrap(), now);
            prop_assume!(w.build_time == build_time());
            let how = if released { PatchedBy::Released } else { PatchedBy::Unchanged };
            let state = w.compliance(Some(&evidence(hours(created).min(now), how)), now);
            prop_assert_eq!(state.name(), "patched");
        }

        #[test]
        fn within_a_month_the_state_only_gets_worse_as_time_passes(
            evidence in any_evidence(), a in 0i64..(27 * 24), b in 0i64..(27 * 24),
            grace in 0u32..=MAX_GRACE_DAYS,
        ) {
            let (early, late) = (hours(a.min(b)), hours(a.max(b)));
            let w = PatchWindow::at(&calendar(), Grace::new(grace).unwrap(), early);
            prop_assert_eq!(&w, &PatchWindow::at(&calendar(), Grace::new(grace).unwrap(), late));
            let (s1, s2) = (w.compliance(evidence.as_ref(), early), w.compliance(evidence.as_ref(), late));
            prop_assert!(s1.severity() <= s2.severity(), "{:?} then {:?}", s1, s2);
        }

        #[test]
        fn the_next_months_build_time_starts_every_image_again(
            evidence in any_evidence(), grace in 0u32..=MAX_GRACE_DAYS, step in 0i64..3_600,
        ) {
            let december = calendar().build_time(Month { year: 2026, month: 12 });
            prop_assume!(evidence.as_ref().is_none_or(|e| e.created_at < december));
            let now = december + Duration::seconds(step);
            let w = PatchWindow::at(&calendar(), Grace::new(grace).unwrap(), now);
            prop_assert_eq!(&w.month, "2026-12");
            let state = w.compliance(evidence.as_ref(), now);
            prop_assert_eq!(state.name(), if grace == 0 { "overdue" } else { "due" });
        }

        #[test]
        fn a_clock_stepping_back_never_shows_a_later_month(
            now in 0i64..(60 * 24), back in 0i64..(60 * 24),
        ) {
            let (later, earlier) = (hours(now), hours(now - back));
            let (wl, we) = (window(later), window(earlier));
            prop_assert!(we.build_time <= wl.build_time);
            prop_assert!(we.build_time <= earlier && wl.build_time <= later);
        }

        #[test]
        fn the_headline_adds_up(
            patched in proptest::collection::btree_set("[a-e]", 0..5), now in 0i64..(27 * 24),
        ) {
            let images: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
            let w = window(hours(now));
            let h = headline(&w, &images, &patched, hours(now));
            prop_assert_eq!(h.patched + h.due + h.overdue, h.total);
            prop_assert_eq!(h.total, 4);
            prop_assert!(h.due == 0 || h.overdue == 0);
        }
    }
}
