//! Follow-ups: what a run still owes the outside world after it ended, and
//! the rules for delivering it at least once. The records ([`FollowUp`],
//! [`Delivery`]) are part of the run document (in `run`).
//!
//! When a run ends (released, failed) the state machine records a
//! [`FollowUp`] on the run in the same write that ends it, so nothing owed is
//! lost between that write and the delivery. The first delivery attempt by
//! a deliverer that has targets resolves the follow-up against them (one
//! [`Delivery`] per target); one with no target leaves it owed, for a
//! deliverer that has some (the factory's sweeper). Every attempt is
//! recorded: attempts, the last error,
//! when to try again ([`retry_delay`]), when it was delivered or given up.
//! [`Run::follow_ups_due`] is the earliest next attempt of the run, the one
//! field the store indexes so the sweeper finds due runs without a scan.
//!
//! Delivery is claimed before it is attempted ([`claim`]): the claim moves
//! the next attempt a lease ahead in a conditional write, so two deliverers
//! (the stage that ended the run and the sweeper) never send the same due
//! delivery at once, and a deliverer that dies mid-way is retried after the
//! lease. Pure: no clock, no I/O.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::run::{Delivery, EventType, FollowUp, FollowUpKind, Run, RunStatus};

impl EventType {
    /// The event a run owes that moved from `before` to `after`, if any: a
    /// release below the latest is `published`, not `released`.
    pub fn on_ending(before: RunStatus, after: &Run) -> Option<EventType> {
        if before.is_terminal() {
            return None;
        }
        let below_latest = after
            .release
            .as_ref()
            .is_some_and(|r| r.below_latest.is_some());
        match after.status {
            RunStatus::Released if below_latest => Some(EventType::Published),
            RunStatus::Released => Some(EventType::Released),
            RunStatus::Failed => Some(EventType::Failed),
            RunStatus::Cancelled => Some(EventType::Cancelled),
            _ => None,
        }
    }
}

impl FollowUp {
    /// Where an owed follow-up no target resolved yet stands, in one line
    /// for operators; `None` once it was resolved (its deliveries say).
    pub fn owed(&self) -> Option<&'static str> {
        self.resolved_at
            .is_none()
            .then_some("owed: no event target resolved it yet; the factory's sweeper delivers it to the configured targets")
    }
}

/// Attempts per delivery before it is given up: the ten attempts of the
/// example schedule of the Standard Webhooks specification (about 75.5 hours).
pub const MAX_ATTEMPTS: u32 = 10;

/// How long a claimed attempt may take before another deliverer may try
/// again (the deliverer died, or its write was lost).
pub const CLAIM_LEASE: Duration = Duration::minutes(2);

/// The wait after the `attempts`-th failed attempt: the example retry
/// schedule of the Standard Webhooks specification ("Deliverability and
/// reliability"): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h. The
/// sweeper fires every five minutes, so the short waits end at its next
/// firing (which also spreads retries, in place of the jitter the
/// specification suggests).
pub fn retry_delay(attempts: u32) -> Duration {
    match attempts {
        0 | 1 => Duration::seconds(5),
        2 => Duration::minutes(5),
        3 => Duration::minutes(30),
        4 => Duration::hours(2),
        5 => Duration::hours(5),
        6 => Duration::hours(10),
        7 => Duration::hours(14),
        8 => Duration::hours(20),
        _ => Duration::hours(24),
    }
}

/// The follow-up id: the same for the same run, kind and occurrence (a
/// second rollback to the same version is a new occurrence), 32 hex digits.
pub fn follow_up_id(run_id: &str, kind: &FollowUpKind, occurrence: usize) -> String {
    let name = match kind {
        FollowUpKind::Event { event } => event.name(),
    };
    let digest = Sha256::digest(format!("{run_id}\n{name}\n{occurrence}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Run {
    /// Records that the run owes `kind`, as of `at`, and marks it due.
    pub fn owe(&mut self, kind: FollowUpKind, at: DateTime<Utc>) {
        let id = self.next_follow_up_id(&kind);
        self.owe_as(kind, id, at);
    }

    /// The id [`Run::owe`] gives the next follow-up of `kind`.
    pub fn next_follow_up_id(&self, kind: &FollowUpKind) -> String {
        let occurrence = self.follow_ups.iter().filter(|f| &f.kind == kind).count();
        follow_up_id(&self.id, kind, occurrence)
    }

    /// Records that the run owes `kind` under an id chosen beforehand (a
    /// rollback's, which the runs it withdrew carry too), as of `at`.
    pub fn owe_as(&mut self, kind: FollowUpKind, id: String, at: DateTime<Utc>) {
        self.follow_ups.push(FollowUp {
            kind,
            id,
            created_at: at,
            resolved_at: None,
            deliveries: Vec::new(),
        });
        self.refresh_follow_ups_due(at);
    }

    /// Recomputes [`Run::follow_ups_due`]: the earliest next attempt, `at`
    /// for an unresolved follow-up, `None` when nothing is owed.
    fn refresh_follow_ups_due(&mut self, at: DateTime<Utc>) {
        self.follow_ups_due = self
            .follow_ups
            .iter()
            .flat_map(|f| {
                let unresolved = f.resolved_at.is_none().then_some(at);
                f.deliveries
                    .iter()
                    .filter_map(|d| d.next_attempt_at)
                    .chain(unresolved)
            })
            .min();
    }
}

/// One attempt to make: which follow-up, which target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The follow-up's index on the run.
    pub follow_up: usize,
    /// The target's name.
    pub target: String,
}

/// Resolves unresolved follow-ups against `targets` (the names of the
/// configured targets for each kind) and claims every delivery due at
/// `now`: its attempt count goes up and its next attempt moves a
/// [`CLAIM_LEASE`] ahead. A follow-up with no target is not resolved: it
/// stays owed, for a deliverer that has targets. Returns the run to write
/// (conditionally) and the attempts it claims; none when nothing is due.
pub fn claim(
    run: &Run,
    targets: impl Fn(&FollowUpKind) -> Vec<String>,
    now: DateTime<Utc>,
) -> (Run, Vec<Claimed>) {
    let mut next = run.clone();
    let mut claimed = Vec::new();
    for (index, follow_up) in next.follow_ups.iter_mut().enumerate() {
        if follow_up.resolved_at.is_none() {
            let targets = targets(&follow_up.kind);
            if targets.is_empty() {
                continue;
            }
            follow_up.resolved_at = Some(now);
            for target in targets {
                follow_up.deliveries.push(Delivery {
                    target,
                    attempts: 0,
                    last_error: None,
                    next_attempt_at: Some(now),
                    delivered_at: None,
                    gave_up_at: None,
                });
            }
        }
        for delivery in &mut follow_up.deliveries {
            if delivery.is_due(now) {
                delivery.attempts += 1;
                delivery.next_attempt_at = Some(now + CLAIM_LEASE);
                claimed.push(Claimed {
                    follow_up: index,
                    target: delivery.target.clone(),
                });
            }
        }
    }
    next.refresh_follow_ups_due(now);
    (next, claimed)
}

/// How one claimed attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target accepted it.
    Delivered,
    /// It failed; `transient` says whether trying again may help.
    Failed {
        /// What went wrong, without secrets.
        error: String,
        /// Whether a later attempt may succeed.
        transient: bool,
    },
}

/// Records how claimed attempts ended. A delivery that is no longer the
/// attempt this claim made (settled meanwhile) is left as it is.
pub fn record(run: &Run, results: &[(Claimed, Outcome)], now: DateTime<Utc>) -> Run {
    let mut next = run.clone();
    for (claimed, outcome) in results {
        let Some(delivery) = next
            .follow_ups
            .get_mut(claimed.follow_up)
            .and_then(|f| f.deliveries.iter_mut().find(|d| d.target == claimed.target))
        else {
            continue;
        };
        if delivery.delivered_at.is_some() || delivery.gave_up_at.is_some() {
            continue;
        }
        match outcome {
            Outcome::Delivered => {
                delivery.delivered_at = Some(now);
                delivery.next_attempt_at = None;
                delivery.last_error = None;
            }
            Outcome::Failed { error, transient } => {
                delivery.last_error = Some(error.clone());
                if *transient && delivery.attempts < MAX_ATTEMPTS {
                    delivery.next_attempt_at = Some(now + retry_delay(delivery.attempts));
                } else {
                    delivery.next_attempt_at = None;
                    delivery.gave_up_at = Some(now);
                }
            }
        }
    }
    next.refresh_follow_ups_due(now);
    next
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::run::{Trigger, TriggerKind};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + seconds, 0).unwrap()
    }

    fn run() -> Run {
        Run::new(
            "push-example-0123456789ab".parse().unwrap(),
            "example".into(),
            "2026.1130.0".parse().unwrap(),
            Trigger::new(TriggerKind::Push, "github"),
            BTreeMap::new(),
            at(0),
        )
    }

    const RELEASED: FollowUpKind = FollowUpKind::Event {
        event: EventType::Released,
    };

    fn two_targets(_: &FollowUpKind) -> Vec<String> {
        vec!["webhook a".into(), "webhook b".into()]
    }

    #[test]
    fn the_id_is_the_same_for_the_same_run_kind_and_occurrence_only() {
        let id = follow_up_id("push-example-1", &RELEASED, 0);
        assert_eq!(id, follow_up_id("push-example-1", &RELEASED, 0));
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let failed = FollowUpKind::Event {
            event: EventType::Failed,
        };
        assert_ne!(id, follow_up_id("push-example-2", &RELEASED, 0));
        assert_ne!(id, follow_up_id("push-example-1", &failed, 0));
        assert_ne!(id, follow_up_id("push-example-1", &RELEASED, 1));
    }

    #[test]
    fn only_a_run_that_ends_released_or_failed_owes_an_event() {
        use RunStatus::*;
        let with = |status: RunStatus| Run { status, ..run() };
        assert_eq!(
            EventType::on_ending(Running, &with(Released)),
            Some(EventType::Released)
        );
        assert_eq!(
            EventType::on_ending(WaitingForApproval, &with(Failed)),
            Some(EventType::Failed)
        );
        for (before, after) in [
            (Running, Running),
            (Released, Released),
            (WaitingForApproval, Rejected),
            (Queued, Skipped),
        ] {
            assert_eq!(EventType::on_ending(before, &with(after)), None);
        }
    }

    #[test]
    fn a_release_below_the_latest_owes_a_published_event_not_a_released_one() {
        let below = Run {
            status: RunStatus::Released,
            release: Some(crate::domain::run::ReleaseRecord {
                below_latest: Some("2026.1130.1".into()),
                ..Default::default()
            }),
            ..run()
        };
        assert_eq!(
            EventType::on_ending(RunStatus::Running, &below),
            Some(EventType::Published)
        );
        assert_eq!(EventType::Published.name(), "image-factory.image.published");
    }

    #[test]
    fn an_owed_follow_up_is_due_at_once_and_resolved_by_its_first_claim() {
        let mut run = run();
        assert_eq!(run.follow_ups_due, None);
        run.owe(RELEASED, at(10));
        assert_eq!(run.follow_ups_due, Some(at(10)));

        let (claimed_run, claimed) = claim(&run, two_targets, at(11));
        assert_eq!(claimed.len(), 2);
        let deliveries = &claimed_run.follow_ups[0].deliveries;
        assert!(deliveries.iter().all(|d| d.attempts == 1));
        assert_eq!(claimed_run.follow_ups_due, Some(at(11) + CLAIM_LEASE));

        // A second deliverer at the same moment finds nothing to claim.
        let (_, again) = claim(&claimed_run, two_targets, at(12));
        assert!(again.is_empty());
    }

    #[test]
    fn a_follow_up_with_no_target_stays_owed_until_a_deliverer_with_targets_claims_it() {
        let mut run = run();
        run.owe(RELEASED, at(0));
        let (unresolved, claimed) = claim(&run, |_| Vec::new(), at(1));
        assert!(claimed.is_empty());
        assert_eq!(unresolved.follow_ups[0].resolved_at, None);
        assert!(unresolved.follow_ups_due.is_some(), "still owed");
        let (resolved, claimed) = claim(&unresolved, two_targets, at(2));
        assert_eq!(claimed.len(), 2, "the deliverer with targets sends it");
        assert_eq!(resolved.follow_ups[0].resolved_at, Some(at(2)));
        let (_, again) = claim(&resolved, |_| vec!["webhook c".into()], at(300));
        assert!(
            again.iter().all(|c| c.target != "webhook c"),
            "targets added after it was resolved get no old events"
        );
    }

    #[test]
    fn failures_back_off_and_a_success_settles_only_its_own_target() {
        let mut run = run();
        run.owe(RELEASED, at(0));
        let (claimed_run, claimed) = claim(&run, two_targets, at(0));
        let results = vec![
            (claimed[0].clone(), Outcome::Delivered),
            (
                claimed[1].clone(),
                Outcome::Failed {
                    error: "connection refused".into(),
                    transient: true,
                },
            ),
        ];
        let recorded = record(&claimed_run, &results, at(1));
        let [a, b] = &recorded.follow_ups[0].deliveries[..] else {
            panic!("two deliveries")
        };
        assert_eq!(a.delivered_at, Some(at(1)));
        assert_eq!(a.next_attempt_at, None);
        assert_eq!(b.last_error.as_deref(), Some("connection refused"));
        assert_eq!(b.next_attempt_at, Some(at(1) + retry_delay(1)));
        assert_eq!(recorded.follow_ups_due, b.next_attempt_at);
    }

    #[test]
    fn a_permanent_failure_is_given_up_at_once() {
        let mut run = run();
        run.owe(RELEASED, at(0));
        let (claimed_run, claimed) = claim(&run, |_| vec!["webhook a".into()], at(0));
        let failed = Outcome::Failed {
            error: "the receiver answered 401".into(),
            transient: false,
        };
        let recorded = record(&claimed_run, &[(claimed[0].clone(), failed)], at(1));
        let delivery = &recorded.follow_ups[0].deliveries[0];
        assert_eq!(delivery.gave_up_at, Some(at(1)));
        assert_eq!(recorded.follow_ups_due, None);
    }

    #[test]
    fn a_delivery_says_where_it_stands_in_one_line() {
        let mut delivery = Delivery {
            target: "webhook https://hooks.example/a".into(),
            attempts: 0,
            last_error: None,
            next_attempt_at: Some(at(0)),
            delivered_at: None,
            gave_up_at: None,
        };
        assert_eq!(delivery.describe(), "pending");
        delivery.attempts = 2;
        delivery.last_error = Some("answered 503".into());
        assert!(
            delivery
                .describe()
                .starts_with("attempt 2 failed: answered 503; next attempt 20")
        );
        delivery.next_attempt_at = None;
        delivery.gave_up_at = Some(at(60));
        assert!(delivery.describe().starts_with("given up 20"));
        delivery.delivered_at = Some(at(90));
        assert!(delivery.describe().starts_with("delivered 20"));
    }

    proptest! {
        #[test]
        fn the_backoff_never_shrinks_and_stays_within_a_day(attempts in 0u32..1000) {
            prop_assert!(retry_delay(attempts + 1) >= retry_delay(attempts));
            prop_assert!(retry_delay(attempts) >= Duration::seconds(5));
            prop_assert!(retry_delay(attempts) <= Duration::hours(24));
        }

        #[test]
        fn the_schedule_spans_about_three_days(_x in 0u8..1) {
            let total = (1..MAX_ATTEMPTS).map(retry_delay).fold(Duration::zero(), |a, b| a + b);
            prop_assert_eq!(total, Duration::seconds(5) + Duration::minutes(5 + 30) + Duration::hours(2 + 5 + 10 + 14 + 20 + 24));
        }

        #[test]
        fn a_target_that_always_fails_is_tried_max_attempts_times_then_given_up(
            gaps in proptest::collection::vec(0i64..100_000, 1..40),
        ) {
            let mut run = run();
            run.owe(RELEASED, at(0));
            let mut now = at(0);
            let mut sends = 0;
            for gap in gaps {
                now += Duration::seconds(gap);
                let (claimed_run, claimed) = claim(&run, |_| vec!["webhook a".into()], now);
                sends += claimed.len() as u32;
                let results: Vec<_> = claimed
                    .into_iter()
                    .map(|c| (c, Outcome::Failed { error: "down".into(), transient: true }))
                    .collect();
                run = record(&claimed_run, &results, now);
                let delivery = &run.follow_ups[0].deliveries[0];
                // Never tried before its time, never more than the limit.
                prop_assert!(delivery.attempts <= MAX_ATTEMPTS);
                prop_assert_eq!(delivery.attempts, sends);
                prop_assert_eq!(run.follow_ups_due, delivery.next_attempt_at);
                prop_assert_eq!(delivery.gave_up_at.is_some(), delivery.attempts == MAX_ATTEMPTS);
            }
        }
    }
}
