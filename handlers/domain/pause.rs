//! Whether an image's scheduled triggers are paused: the rule, derived from
//! the image's run history. Pure.
//!
//! **Scheduled runs** are the runs no person asked for: the monthly Patch
//! Tuesday rebuild and base image updates (a new Marketplace version, or the
//! release of the factory image it is built on). Pushes and out-of-band runs
//! are not scheduled; they always build, paused or not.
//!
//! **The rule.** Read the image's released and failed runs newest first, in
//! the order they were created (the order the store lists them). The
//! *streak* is the failed scheduled runs read before the first of:
//!
//! - a released run, of any trigger: a success resumes the schedule;
//! - a failed scheduled run on which an operator recorded a resume
//!   (`image-factory images resume`): it and everything before it no longer
//!   count.
//!
//! Failed pushes and out-of-band runs neither count nor end the streak (they
//! say nothing about the schedule). Runs that ended otherwise (skipped,
//! rejected, approval expired, cancelled) are not read. The image's
//! scheduled triggers are **paused** while the streak holds at least
//! `pause_after` runs (`[schedule] pause_after_failures`, default
//! [`DEFAULT_PAUSE_AFTER`]): the timers create no scheduled run for it.
//!
//! The state is derived, never stored: the only records are the resume (on
//! the run it follows) and, on each failed scheduled run, the check that
//! told people when its failure paused the schedule. So a success, a resume
//! or a change of `pause_after_failures` takes effect at once, with nothing
//! to keep in step.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::run::{Run, RunId, RunStatus, ScheduleCheck, TriggerKind};

/// `[schedule] pause_after_failures` unless an image sets it.
pub const DEFAULT_PAUSE_AFTER: u32 = 3;

/// Whether runs of this trigger are scheduled: the ones a pause holds back.
pub fn is_scheduled(kind: TriggerKind) -> bool {
    matches!(
        kind,
        TriggerKind::PatchTuesday | TriggerKind::BaseImageUpdate
    )
}

/// Whether `run`, read newest first, ends the streak of the rule: a release,
/// or a failed scheduled run with a resume recorded on it. The history need
/// not be read past such a run.
pub fn ends_streak(run: &Run) -> bool {
    match run.status {
        RunStatus::Released => true,
        RunStatus::Failed => is_scheduled(run.trigger.kind) && run.schedule_resumed.is_some(),
        _ => false,
    }
}

/// Where an image's scheduled triggers stand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ScheduleState {
    /// Scheduled runs start as usual.
    Active {
        /// The failed scheduled runs since the last release or resume,
        /// oldest first (fewer than `pause_after`).
        failures: Vec<RunId>,
        /// How many make a pause.
        pause_after: u32,
    },
    /// No scheduled run starts until a release or a resume.
    Paused(Pause),
}

/// A paused schedule, as the fleet view, `doctor` and the timers tell it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// The failed scheduled runs since the last release or resume, oldest
    /// first (at least `pause_after`).
    pub failures: Vec<RunId>,
    /// How many make a pause.
    pub pause_after: u32,
    /// The run whose failure paused the schedule (the `pause_after`-th).
    pub paused_by: RunId,
    /// When that run failed.
    pub since: DateTime<Utc>,
    /// Why the newest of them failed.
    pub last_reason: String,
}

impl ScheduleState {
    /// The pause, when paused.
    pub fn pause(&self) -> Option<&Pause> {
        match self {
            ScheduleState::Paused(pause) => Some(pause),
            ScheduleState::Active { .. } => None,
        }
    }
}

impl Pause {
    /// One sentence for logs, pages and notices.
    pub fn describe(&self, image: &str) -> String {
        format!(
            "scheduled runs of {image} are paused since {} after {} consecutive failed scheduled runs ({}); the last failed: {}. Pushes and out-of-band runs still build it; a release or `image-factory images resume {image}` resumes them",
            self.since.format("%Y-%m-%d %H:%M UTC"),
            self.failures.len(),
            self.failures
                .iter()
                .map(RunId::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            self.last_reason
        )
    }
}

/// The state of an image's scheduled triggers given its `history` (its
/// released and failed runs, newest created first; other runs are passed
/// over) and its `pause_after`: the rule of the module's description.
pub fn schedule_state<'a>(
    history: impl IntoIterator<Item = &'a Run>,
    pause_after: u32,
) -> ScheduleState {
    let mut streak: Vec<&Run> = Vec::new();
    for run in history {
        if ends_streak(run) {
            break;
        }
        if run.status == RunStatus::Failed && is_scheduled(run.trigger.kind) {
            streak.push(run);
        }
    }
    streak.reverse();
    let failures: Vec<RunId> = streak.iter().map(|r| r.id.clone()).collect();
    let nth = usize::try_from(pause_after.max(1)).unwrap_or(usize::MAX) - 1;
    match (streak.get(nth), streak.last()) {
        (Some(paused_by), Some(newest)) => ScheduleState::Paused(Pause {
            failures,
            pause_after,
            paused_by: paused_by.id.clone(),
            since: paused_by.ended_at(),
            last_reason: newest
                .failure
                .as_ref()
                .map_or_else(|| "no reason recorded".into(), |f| f.reason.clone()),
        }),
        _ => ScheduleState::Active {
            failures,
            pause_after,
        },
    }
}

/// Tries per recipient and channel before a pause notice is given up.
pub const MAX_NOTICE_ATTEMPTS: usize = 5;

/// The pause notices `check` still owes: one per recipient and channel
/// with none delivered yet and fewer than [`MAX_NOTICE_ATTEMPTS`] tries;
/// nothing when the check did not pause the schedule.
pub fn notices_owed<'a>(
    check: &ScheduleCheck,
    recipients: &'a [String],
    channels: &[&'a str],
) -> Vec<(&'a str, &'a str)> {
    if !check.paused {
        return Vec::new();
    }
    let mut owed = Vec::new();
    for recipient in recipients {
        for channel in channels {
            let tries: Vec<_> = check
                .notifications
                .iter()
                .filter(|n| n.approver == *recipient && n.channel == *channel)
                .collect();
            if !tries.iter().any(|n| n.delivered) && tries.len() < MAX_NOTICE_ATTEMPTS {
                owed.push((recipient.as_str(), *channel));
            }
        }
    }
    owed
}

impl ScheduleCheck {
    /// Whether a notice it records is still owed: a recipient and channel
    /// tried, never delivered, fewer than [`MAX_NOTICE_ATTEMPTS`] times (a
    /// check is recorded after every recipient was tried on every channel).
    pub fn owes_notices(&self) -> bool {
        self.paused
            && self.notifications.iter().any(|n| {
                let tries: Vec<_> = self
                    .notifications
                    .iter()
                    .filter(|t| t.approver == n.approver && t.channel == n.channel)
                    .collect();
                !tries.iter().any(|t| t.delivered) && tries.len() < MAX_NOTICE_ATTEMPTS
            })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::run::{Failure, ScheduleResume, Trigger};
    use crate::domain::version::ImageVersion;

    /// What happened to the image, oldest first.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Happening {
        /// A scheduled run (Patch Tuesday or base image) failed.
        ScheduledFailure(TriggerKind),
        /// A push or out-of-band run failed.
        OtherFailure(TriggerKind),
        /// A run of any trigger was released.
        Success(TriggerKind),
        /// An operator resumed the schedule (recorded only while paused,
        /// as `images resume` does).
        Resume,
    }

    fn at(n: usize) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 14, 6, 0, 0).unwrap() + Duration::days(n as i64)
    }

    fn run(n: usize, kind: TriggerKind, status: RunStatus) -> Run {
        let mut run = Run::new(
            format!("r{n}").parse().unwrap(),
            "web".into(),
            ImageVersion::new(1, 0, n as u32).unwrap(),
            Trigger::new(kind, "timer"),
            BTreeMap::new(),
            at(n),
        );
        run.status = status;
        if status == RunStatus::Failed {
            run.failure = Some(Failure {
                stage: None,
                reason: format!("failure {n}"),
                at: at(n) + Duration::hours(1),
                diagnosis: None,
            });
        }
        run
    }

    /// The history the happenings leave, newest first, as the store lists it.
    fn history(happenings: &[Happening], pause_after: u32) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        for (n, happening) in happenings.iter().enumerate() {
            match *happening {
                Happening::ScheduledFailure(kind) | Happening::OtherFailure(kind) => {
                    runs.push(run(n, kind, RunStatus::Failed));
                }
                Happening::Success(kind) => runs.push(run(n, kind, RunStatus::Released)),
                Happening::Resume => {
                    let newest_first: Vec<Run> = runs.iter().rev().cloned().collect();
                    if schedule_state(&newest_first, pause_after).pause().is_some()
                        && let Some(newest) = runs
                            .iter_mut()
                            .rev()
                            .find(|r| r.status == RunStatus::Failed && is_scheduled(r.trigger.kind))
                    {
                        newest.schedule_resumed = Some(ScheduleResume {
                            at: at(n),
                            by: "operator".into(),
                            reason: None,
                        });
                    }
                }
            }
        }
        runs.reverse();
        runs
    }

    /// The reference the rule is held to: consecutive scheduled failures
    /// since the last success or effective resume.
    fn model(happenings: &[Happening], pause_after: u32) -> usize {
        let mut count = 0usize;
        for happening in happenings {
            match happening {
                Happening::ScheduledFailure(_) => count += 1,
                Happening::OtherFailure(_) => {}
                Happening::Success(_) => count = 0,
                Happening::Resume if count >= pause_after as usize => count = 0,
                Happening::Resume => {}
            }
        }
        count
    }

    fn arb_happening() -> impl Strategy<Value = Happening> {
        prop_oneof![
            4 => prop_oneof![Just(TriggerKind::PatchTuesday), Just(TriggerKind::BaseImageUpdate)]
                .prop_map(Happening::ScheduledFailure),
            2 => prop_oneof![Just(TriggerKind::Push), Just(TriggerKind::OutOfBand)]
                .prop_map(Happening::OtherFailure),
            1 => prop_oneof![
                Just(TriggerKind::Push),
                Just(TriggerKind::PatchTuesday),
                Just(TriggerKind::OutOfBand),
                Just(TriggerKind::BaseImageUpdate),
            ]
            .prop_map(Happening::Success),
            1 => Just(Happening::Resume),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_schedule_is_paused_exactly_when_n_scheduled_runs_failed_since_the_last_success_or_resume(
            happenings in prop::collection::vec(arb_happening(), 0..30),
            pause_after in 1u32..6,
        ) {
            let state = schedule_state(&history(&happenings, pause_after), pause_after);
            let count = model(&happenings, pause_after);
            prop_assert_eq!(state.pause().is_some(), count >= pause_after as usize, "{:?}", state);
            match &state {
                ScheduleState::Active { failures, .. } => prop_assert_eq!(failures.len(), count),
                ScheduleState::Paused(pause) => {
                    prop_assert_eq!(pause.failures.len(), count);
                    prop_assert_eq!(&pause.paused_by, &pause.failures[pause_after as usize - 1]);
                }
            }
        }

        #[test]
        fn a_success_always_resumes(
            before in prop::collection::vec(arb_happening(), 0..30),
            kind in prop_oneof![Just(TriggerKind::Push), Just(TriggerKind::PatchTuesday), Just(TriggerKind::OutOfBand), Just(TriggerKind::BaseImageUpdate)],
            pause_after in 1u32..6,
        ) {
            let mut happenings = before;
            happenings.push(Happening::Success(kind));
            let state = schedule_state(&history(&happenings, pause_after), pause_after);
            prop_assert_eq!(state, ScheduleState::Active { failures: vec![], pause_after });
        }

        #[test]
        fn fewer_than_n_scheduled_failures_never_pause_whatever_else_fails(
            others in prop::collection::vec(prop_oneof![Just(TriggerKind::Push), Just(TriggerKind::OutOfBand)], 0..20),
            pause_after in 1u32..6,
            interleave in prop::collection::vec(any::<bool>(), 0..20),
        ) {
            // N−1 scheduled failures, with any number of other failures
            // between them, after a success.
            let mut happenings = vec![Happening::Success(TriggerKind::Push)];
            let mut others = others.into_iter();
            for i in 0..pause_after - 1 {
                if interleave.get(i as usize).copied().unwrap_or(false)
                    && let Some(kind) = others.next()
                {
                    happenings.push(Happening::OtherFailure(kind));
                }
                happenings.push(Happening::ScheduledFailure(TriggerKind::PatchTuesday));
            }
            happenings.extend(others.map(Happening::OtherFailure));
            let state = schedule_state(&history(&happenings, pause_after), pause_after);
            prop_assert!(state.pause().is_none(), "{:?}", state);
        }

        #[test]
        fn a_resume_holds_until_n_new_scheduled_failures(
            before in prop::collection::vec(arb_happening(), 0..20),
            pause_after in 1u32..6,
        ) {
            // Paused, then resumed: each new scheduled failure short of N
            // keeps it going, the N-th pauses it again.
            let mut happenings = before;
            happenings.extend((0..pause_after).map(|_| Happening::ScheduledFailure(TriggerKind::PatchTuesday)));
            prop_assert!(schedule_state(&history(&happenings, pause_after), pause_after).pause().is_some());
            happenings.push(Happening::Resume);
            for failed in 1..=pause_after {
                let state = schedule_state(&history(&happenings, pause_after), pause_after);
                prop_assert!(state.pause().is_none(), "{} new failure(s): {:?}", failed - 1, state);
                happenings.push(Happening::ScheduledFailure(TriggerKind::BaseImageUpdate));
            }
            let state = schedule_state(&history(&happenings, pause_after), pause_after);
            let pause = state.pause();
            prop_assert!(pause.is_some(), "{:?}", state);
            prop_assert_eq!(pause.map(|p| p.failures.len()), Some(pause_after as usize));
        }
    }

    #[test]
    fn a_pause_says_since_when_which_runs_and_why() {
        let happenings = [
            Happening::Success(TriggerKind::Push),
            Happening::ScheduledFailure(TriggerKind::PatchTuesday),
            Happening::OtherFailure(TriggerKind::Push),
            Happening::ScheduledFailure(TriggerKind::PatchTuesday),
            Happening::ScheduledFailure(TriggerKind::BaseImageUpdate),
        ];
        let state = schedule_state(&history(&happenings, 2), 2);
        let pause = state.pause().expect("paused");
        assert_eq!(
            pause.failures,
            ["r1", "r3", "r4"].map(|r| r.parse::<RunId>().unwrap())
        );
        assert_eq!(pause.paused_by.as_str(), "r3");
        assert_eq!(pause.since, at(3) + Duration::hours(1));
        assert_eq!(pause.last_reason, "failure 4");
        let said = pause.describe("web");
        assert!(
            said.contains("after 3 consecutive failed scheduled runs (r1, r3, r4)")
                && said.contains("images resume web"),
            "{said}"
        );
    }

    #[test]
    fn a_pause_notice_is_owed_until_delivered_or_tried_five_times_per_recipient_and_channel() {
        use crate::domain::approval::{NoticeKind, Notification};
        let tried = |who: &str, channel: &str, delivered: bool| Notification {
            approver: who.into(),
            channel: channel.into(),
            kind: NoticeKind::Paused,
            at: at(0),
            delivered,
            error: (!delivered).then(|| "503".into()),
            payload: None,
        };
        let mut check = ScheduleCheck {
            at: at(0),
            pause_after: 3,
            failures: Vec::new(),
            paused: true,
            notifications: vec![tried("lead", "email", true), tried("ops", "email", false)],
        };
        check
            .notifications
            .extend((0..MAX_NOTICE_ATTEMPTS).map(|_| tried("ops", "teams", false)));
        let recipients = vec!["lead".to_string(), "ops".to_string()];
        assert_eq!(
            notices_owed(&check, &recipients, &["email", "teams"]),
            [("lead", "teams"), ("ops", "email")]
        );
        assert!(check.owes_notices(), "ops has an email owed");
        check.notifications.push(tried("ops", "email", true));
        assert!(!check.owes_notices(), "delivered, or tried five times");
        check.paused = false;
        assert!(notices_owed(&check, &recipients, &["email", "teams"]).is_empty());
    }
}
