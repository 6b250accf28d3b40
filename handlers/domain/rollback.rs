//! Rollbacks, pure: which released version of an image is current, what a
//! rollback to another one changes in the run records, and when one is
//! refused. The I/O around it (the gallery, the store, the event) is
//! `crate::rollback`'s.
//!
//! **Current.** An image's current version is its newest released run that
//! no rollback withdrew. A release makes its version current; a rollback to
//! version V withdraws every released version above V (each of their runs
//! records the rollback as [`ReleaseRecord::withdrawn`]) and makes V current
//! again (its run records it in [`ReleaseRecord::rollbacks`], and owes the
//! `image-factory.image.rolled-back` event under the rollback's id). So the
//! newest run not withdrawn is current whichever came last, and the store
//! finds it with the same index as any latest release.
//!
//! **Order of the writes.** The withdrawn runs are written first, the run
//! of the version made current last, in one write with its event: that
//! write is the rollback's commit. A rollback cut short between the two
//! leaves its withdrawn runs naming it; the same request again finds the
//! version current but the rollback not committed, and completes it
//! ([`Planned::Complete`]) instead of refusing it, with the same id, so
//! exactly one event is sent.
//!
//! [`ReleaseRecord::withdrawn`]: super::run::ReleaseRecord::withdrawn
//! [`ReleaseRecord::rollbacks`]: super::run::ReleaseRecord::rollbacks

use chrono::{DateTime, Utc};

use super::controls::{Lines, escape_controls};
use super::image::{IMAGE_NAME_RULE, is_valid_image_name};
use super::machine::Transition;
use super::release_notes::released_at;
use super::run::{
    EventType, FollowUpKind, ReleaseRecord, Rollback, Run, RunId, RunStatus, Stage, StageStatus,
};
use super::version::ImageVersion;

/// Longest reason kept, in characters.
pub const MAX_REASON: usize = 500;
/// Longest actor name kept, in characters.
pub const MAX_ACTOR: usize = 200;

/// The event kind a rollback owes.
pub const ROLLED_BACK: FollowUpKind = FollowUpKind::Event {
    event: EventType::RolledBack,
};

/// What an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The image.
    pub image: String,
    /// The version to make current.
    pub to: ImageVersion,
    /// Why.
    pub reason: String,
    /// Who asks.
    pub actor: String,
    /// How the actor was known (`sign-in`, `operator-token`, `direct`).
    pub via: String,
}

/// Why a rollback request is refused; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The image's name is not one.
    #[error("`{shown}` is not an image name: {IMAGE_NAME_RULE}")]
    ImageName {
        /// The name, cut short and with control characters escaped.
        shown: String,
    },
    /// The reason is empty or too long.
    #[error("give a reason of 1-{MAX_REASON} characters: it is recorded with the rollback")]
    Reason,
    /// No actor, or one too long.
    #[error("the actor must be 1-{MAX_ACTOR} characters")]
    Actor,
    /// No run of this factory released that version.
    #[error(
        "{image} {to} is not a version this factory released{}; a rollback goes to a released version",
        released_list(released)
    )]
    UnknownVersion {
        /// The image.
        image: String,
        /// The version asked for.
        to: String,
        /// The versions it did release, highest first (at most 10).
        released: Vec<String>,
    },
    /// The version asked for is current already.
    #[error(
        "{image} {to} is already the current version (released by run {run}); nothing to roll back"
    )]
    AlreadyCurrent {
        /// The image.
        image: String,
        /// The version.
        to: String,
        /// Its run.
        run: String,
    },
    /// A run of the image is releasing.
    #[error(
        "run {run} is releasing {image} {version} now; roll back once its release stage has ended (`image-factory runs wait {run}`)"
    )]
    Releasing {
        /// The image.
        image: String,
        /// The run at its release stage.
        run: String,
        /// The version it releases.
        version: String,
    },
    /// Another rollback took the id this one planned (two at once).
    #[error(
        "another rollback of {image} was recorded at the same moment; look at the image's page and ask again if it is still needed"
    )]
    Concurrent {
        /// The image.
        image: String,
    },
}

fn released_list(versions: &[String]) -> String {
    if versions.is_empty() {
        " (it has released none)".into()
    } else {
        format!(" (its released versions: {})", versions.join(", "))
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// A new rollback: withdraw `withdraw`, then commit on the target.
    New {
        /// The rollback.
        rollback: Rollback,
        /// The runs of the versions it withdraws.
        withdraw: Vec<RunId>,
    },
    /// A rollback to this version was cut short after its withdrawals: only
    /// its commit on the target is missing.
    Complete {
        /// The rollback, as its withdrawn runs recorded it.
        rollback: Rollback,
    },
}

impl Planned {
    /// The rollback, new or being completed.
    pub fn rollback(&self) -> &Rollback {
        match self {
            Planned::New { rollback, .. } | Planned::Complete { rollback } => rollback,
        }
    }
}

/// Whether `run` is a released run no rollback withdrew.
pub fn is_current_candidate(run: &Run) -> bool {
    run.status == RunStatus::Released && run.release.as_ref().is_none_or(|r| r.withdrawn.is_none())
}

/// The current release among `released` (an image's released runs): the
/// newest by creation that no rollback withdrew, as the store orders them.
pub fn current(released: &[Run]) -> Option<&Run> {
    released
        .iter()
        .filter(|r| is_current_candidate(r))
        .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
}

/// Since when `run`, an image's current release, is current, and the
/// rollback that made it so when that came after its release.
pub fn current_since(run: &Run) -> (DateTime<Utc>, Option<&Rollback>) {
    let released = released_at(run).unwrap_or(run.updated_at);
    match run.release.as_ref().and_then(|r| r.rollbacks.last()) {
        Some(rollback) if rollback.at > released => (rollback.at, Some(rollback)),
        _ => (released, None),
    }
}

/// The run of `image` at its release stage, if one is.
fn releasing(active: &[Run]) -> Option<&Run> {
    active
        .iter()
        .find(|r| r.stage(Stage::Release).status == StageStatus::Running)
}

/// Checks the request's own text: the reason and the actor, trimmed and
/// with control characters escaped.
pub fn checked(mut request: Request) -> Result<Request, Refusal> {
    if !is_valid_image_name(&request.image) {
        return Err(Refusal::ImageName {
            shown: request
                .image
                .chars()
                .take(80)
                .flat_map(char::escape_debug)
                .collect(),
        });
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(Refusal::Reason);
    }
    request.reason = escape_controls(reason, Lines::Keep).into_owned();
    let actor = request.actor.trim();
    if actor.is_empty() || actor.chars().count() > MAX_ACTOR {
        return Err(Refusal::Actor);
    }
    request.actor = escape_controls(actor, Lines::Escape).into_owned();
    Ok(request)
}

/// Plans `request` on the image's `released` runs (every one, withdrawn or
/// not) and its `active` runs (not ended), at `now`.
pub fn plan(
    request: &Request,
    released: &[Run],
    active: &[Run],
    now: DateTime<Utc>,
) -> Result<Planned, Refusal> {
    let image = request.image.clone();
    let Some(target) = released
        .iter()
        .find(|r| r.version == request.to && r.status == RunStatus::Released)
    else {
        let mut versions: Vec<ImageVersion> = released.iter().map(|r| r.version).collect();
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        return Err(Refusal::UnknownVersion {
            image,
            to: request.to.to_string(),
            released: versions.iter().take(10).map(ToString::to_string).collect(),
        });
    };
    if let Some(run) = releasing(active) {
        return Err(Refusal::Releasing {
            image,
            run: run.id.to_string(),
            version: run.version.to_string(),
        });
    }
    let current = current(released);
    if current.is_some_and(|c| c.id == target.id) {
        return match uncommitted(target, released) {
            Some(rollback) => Ok(Planned::Complete { rollback }),
            None => Err(Refusal::AlreadyCurrent {
                image,
                to: request.to.to_string(),
                run: target.id.to_string(),
            }),
        };
    }
    let above: Vec<&Run> = released.iter().filter(|r| r.version > request.to).collect();
    let mut withdrawn: Vec<ImageVersion> = above.iter().map(|r| r.version).collect();
    withdrawn.sort();
    withdrawn.dedup();
    let rollback = Rollback {
        id: target.next_follow_up_id(&ROLLED_BACK),
        to: request.to.to_string(),
        to_run: target.id.to_string(),
        from: current.map(|c| c.version.to_string()),
        withdrawn: withdrawn.iter().map(ToString::to_string).collect(),
        actor: request.actor.clone(),
        via: request.via.clone(),
        reason: request.reason.clone(),
        at: now,
    };
    Ok(Planned::New {
        rollback,
        withdraw: above.iter().map(|r| r.id.clone()).collect(),
    })
}

/// The newest rollback to `target` that the runs above it recorded as
/// withdrawing them but `target` itself never committed.
fn uncommitted(target: &Run, released: &[Run]) -> Option<Rollback> {
    let committed: Vec<&str> = target
        .release
        .as_ref()
        .map(|r| r.rollbacks.iter().map(|b| b.id.as_str()).collect())
        .unwrap_or_default();
    released
        .iter()
        .filter(|r| r.version > target.version)
        .filter_map(|r| r.release.as_ref()?.withdrawn.as_deref())
        .filter(|b| b.to_run == target.id.as_str() && !committed.contains(&b.id.as_str()))
        .max_by_key(|b| b.at)
        .cloned()
}

/// `run` withdrawn by `rollback`: its release record names it (unchanged
/// when it already does).
pub fn withdraw(run: &Run, rollback: &Rollback) -> Transition {
    let mut next = run.clone();
    record_of(&mut next).withdrawn = Some(Box::new(rollback.clone()));
    transition(run, next)
}

/// The release record of `run`, a released run; a minimal one (its version
/// and id) for a run released before records were kept.
fn record_of(run: &mut Run) -> &mut ReleaseRecord {
    let (version, id) = (run.version.to_string(), run.id.to_string());
    run.release.get_or_insert_with(|| ReleaseRecord {
        image_version: version,
        run_id: id,
        ..ReleaseRecord::default()
    })
}

/// `run`, the target of `rollback`, with the rollback committed: recorded,
/// its own withdrawal (if any) ended, and the event owed under the
/// rollback's id. Unchanged when it is committed already; refused when a
/// follow-up of another rollback took the id.
pub fn commit(run: &Run, rollback: &Rollback) -> Result<Transition, Refusal> {
    let committed = run
        .release
        .as_ref()
        .is_some_and(|r| r.rollbacks.iter().any(|b| b.id == rollback.id));
    if committed {
        return Ok(transition(run, run.clone()));
    }
    if run.follow_ups.iter().any(|f| f.id == rollback.id) {
        return Err(Refusal::Concurrent {
            image: run.image.clone(),
        });
    }
    let mut next = run.clone();
    let release = record_of(&mut next);
    release.rollbacks.push(rollback.clone());
    release.withdrawn = None;
    next.owe_as(ROLLED_BACK, rollback.id.clone(), rollback.at);
    next.updated_at = next.updated_at.max(rollback.at);
    Ok(transition(run, next))
}

fn transition(run: &Run, next: Run) -> Transition {
    Transition {
        changed: &next != run,
        run: next,
        commands: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::domain::run::{ReleaseRecord, Trigger, TriggerKind};

    fn at(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap() + Duration::hours(hours)
    }

    fn released(n: u32) -> Run {
        let version = ImageVersion::new(2026, 1120, n).unwrap();
        let mut run = Run::new(
            format!("push-web-{n}").parse().unwrap(),
            "web".into(),
            version,
            Trigger::new(TriggerKind::Push, "github"),
            BTreeMap::new(),
            at(i64::from(n)),
        );
        run.status = RunStatus::Released;
        run.stage_mut(Stage::Release).status = StageStatus::Succeeded;
        run.stage_mut(Stage::Release).finished_at = Some(at(i64::from(n)) + Duration::minutes(30));
        run.release = Some(ReleaseRecord {
            image_version: version.to_string(),
            run_id: run.id.to_string(),
            ..ReleaseRecord::default()
        });
        run
    }

    fn request(to: u32) -> Request {
        Request {
            image: "web".into(),
            to: ImageVersion::new(2026, 1120, to).unwrap(),
            reason: "  v2 breaks IIS  ".into(),
            actor: "alice@contoso.com".into(),
            via: "sign-in".into(),
        }
    }

    /// Applies a plan to `runs` as the I/O would: withdrawals, then the commit.
    fn apply(runs: &mut [Run], planned: &Planned) {
        let rollback = planned.rollback().clone();
        if let Planned::New { withdraw, .. } = planned {
            for run in runs.iter_mut().filter(|r| withdraw.contains(&r.id)) {
                *run = super::withdraw(run, &rollback).run;
            }
        }
        let target = runs
            .iter_mut()
            .find(|r| r.id.as_str() == rollback.to_run)
            .unwrap();
        *target = commit(target, &rollback).unwrap().run;
    }

    #[test]
    fn a_rollback_withdraws_every_higher_version_and_makes_its_target_current_with_one_event() {
        let mut runs = vec![released(1), released(2), released(3)];
        assert_eq!(current(&runs).unwrap().id, "push-web-3");
        let planned = plan(&checked(request(1)).unwrap(), &runs, &[], at(10)).unwrap();
        let Planned::New { rollback, withdraw } = &planned else {
            panic!("a new rollback: {planned:?}");
        };
        assert_eq!(withdraw.len(), 2);
        assert_eq!(rollback.from.as_deref(), Some("2026.1120.3"));
        assert_eq!(rollback.withdrawn, ["2026.1120.2", "2026.1120.3"]);
        assert_eq!(rollback.reason, "v2 breaks IIS");
        apply(&mut runs, &planned);
        let now = current(&runs).unwrap();
        assert_eq!(now.id, "push-web-1");
        let (since, by) = current_since(now);
        assert_eq!(since, at(10));
        assert_eq!(by.unwrap().actor, "alice@contoso.com");
        assert_eq!(now.follow_ups.len(), 1);
        assert_eq!(now.follow_ups[0].id, by.unwrap().id);
        for withdrawn in &runs[1..] {
            let record = withdrawn
                .release
                .as_ref()
                .unwrap()
                .withdrawn
                .as_ref()
                .unwrap();
            assert_eq!(record.id, by.unwrap().id);
        }

        // Asking again is refused: the version is current and committed.
        let again = plan(&request(1), &runs, &[], at(11)).unwrap_err();
        assert!(matches!(again, Refusal::AlreadyCurrent { .. }), "{again}");

        // Rolling forward is a rollback too: 3 current again, 2 stays withdrawn.
        let forward = plan(&request(3), &runs, &[], at(12)).unwrap();
        let Planned::New { withdraw, rollback } = &forward else {
            panic!("{forward:?}");
        };
        assert!(withdraw.is_empty());
        assert_eq!(rollback.from.as_deref(), Some("2026.1120.1"));
        apply(&mut runs, &forward);
        assert_eq!(current(&runs).unwrap().id, "push-web-3");
        assert!(runs[2].release.as_ref().unwrap().withdrawn.is_none());
        assert!(runs[1].release.as_ref().unwrap().withdrawn.is_some());
        assert_eq!(current_since(&runs[2]).0, at(12));
    }

    #[test]
    fn a_rollback_cut_short_after_its_withdrawals_is_completed_once_not_repeated() {
        let mut runs = vec![released(1), released(2)];
        let planned = plan(&request(1), &runs, &[], at(10)).unwrap();
        let Planned::New { rollback, .. } = &planned else {
            panic!("{planned:?}");
        };
        // Only the withdrawal was written.
        runs[1] = withdraw(&runs[1], rollback).run;
        let again = plan(&request(1), &runs, &[], at(11)).unwrap();
        assert_eq!(
            again,
            Planned::Complete {
                rollback: rollback.clone()
            }
        );
        apply(&mut runs, &again);
        assert_eq!(runs[0].follow_ups.len(), 1);
        // Committing twice changes nothing.
        assert!(!commit(&runs[0], rollback).unwrap().changed);
        assert!(matches!(
            plan(&request(1), &runs, &[], at(12)),
            Err(Refusal::AlreadyCurrent { .. })
        ));
    }

    #[test]
    fn unknown_versions_the_current_one_a_release_under_way_and_empty_reasons_are_refused() {
        let runs = vec![released(1), released(2)];
        let unknown = plan(&request(7), &runs, &[], at(10)).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("2026.1120.7 is not a version this factory released")
                && unknown.to_string().contains("2026.1120.2, 2026.1120.1"),
            "{unknown}"
        );
        assert!(matches!(
            plan(&request(2), &runs, &[], at(10)),
            Err(Refusal::AlreadyCurrent { .. })
        ));
        let mut releasing = released(3);
        releasing.status = RunStatus::Running;
        releasing.stage_mut(Stage::Release).status = StageStatus::Running;
        let busy = plan(&request(1), &runs, &[releasing], at(10)).unwrap_err();
        assert!(
            busy.to_string().contains("is releasing web 2026.1120.3"),
            "{busy}"
        );
        for reason in ["", "   ", &"x".repeat(MAX_REASON + 1)] {
            let r = Request {
                reason: reason.to_string(),
                ..request(1)
            };
            assert_eq!(checked(r), Err(Refusal::Reason));
        }
        let r = Request {
            actor: " ".into(),
            ..request(1)
        };
        assert_eq!(checked(r), Err(Refusal::Actor));
        // Control characters people typed are kept visible, never acted on.
        let r = checked(Request {
            reason: "bad\u{1b}[2J build".into(),
            ..request(1)
        })
        .unwrap();
        assert!(!r.reason.contains('\u{1b}'), "{:?}", r.reason);
    }
}
