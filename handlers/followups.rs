//! Delivering what runs owe after they ended (release events), at least
//! once: the I/O around [`crate::domain::followup`].
//!
//! [`deliver_pending`] claims a run's due deliveries in one conditional
//! write, sends each to its target, and records how each went in a second
//! write. The stage that ends a run calls it right after the write that
//! ended the run, in a task of its own ([`spawn_delivery`]), so a receiver
//! that is down or slow never fails or delays anything; the sweeper calls
//! [`sweep`] every five minutes for the runs whose deliveries are due
//! (found through the store's index, never by a scan), several runs at once
//! and within a time budget ([`SweepLimits`]), carrying what is left over
//! to the next sweep.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;

use chrono::{DateTime, Utc};

use crate::domain::followup::{Claimed, Outcome, claim, record};
use crate::domain::machine::Transition;
use crate::domain::release_event::cloud_event;
use crate::domain::run::{FollowUpKind, Run, RunId};
use crate::ports::events::{DELIVERY_TIMEOUT, Publisher};
use crate::ports::store::{RunStore, StoreError, UpdateError, update_run};

/// Where follow-ups go: the configured release-event publishers, and the
/// factory's public URL (the events' `source` and links); and how much of
/// them one sweep delivers.
#[derive(Clone, Default)]
pub struct FollowUps {
    publishers: Vec<Arc<dyn Publisher>>,
    public_url: String,
    limits: SweepLimits,
}

/// How much one sweep delivers: the runs whose deliveries are made at once,
/// and the time after which it starts no more (what is left is carried
/// over to the next sweep) and stops. Each attempt takes at most
/// [`DELIVERY_TIMEOUT`], so a receiver that never answers costs a sweep at
/// most its budget, whatever the number of runs that owe it events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepLimits {
    /// Runs delivered at once (at least 1).
    pub concurrency: usize,
    /// The sweep's time for deliveries; a run is started only while an
    /// attempt started then ends within it.
    pub budget: Duration,
}

impl Default for SweepLimits {
    /// 16 runs at once, for at most one minute of the sweeper's five: the
    /// 100 runs a sweep reads, against a receiver that never answers, in
    /// seven rounds of 5 s.
    fn default() -> SweepLimits {
        SweepLimits {
            concurrency: 16,
            budget: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for FollowUps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FollowUps")
            .field("targets", &self.targets())
            .finish()
    }
}

impl FollowUps {
    /// Follow-ups to `publishers`, for the factory at `public_url`.
    pub fn new(publishers: Vec<Arc<dyn Publisher>>, public_url: &str) -> FollowUps {
        FollowUps {
            publishers,
            public_url: public_url.to_string(),
            limits: SweepLimits::default(),
        }
    }

    /// The same follow-ups, delivered by the sweeper within `limits`.
    pub fn with_sweep_limits(self, limits: SweepLimits) -> FollowUps {
        FollowUps { limits, ..self }
    }

    /// The names of every configured target.
    pub fn targets(&self) -> Vec<String> {
        self.publishers
            .iter()
            .map(|p| p.target().to_string())
            .collect()
    }

    fn targets_for(&self, kind: &FollowUpKind) -> Vec<String> {
        match kind {
            FollowUpKind::Event { .. } => self.targets(),
        }
    }

    /// Makes one claimed attempt.
    async fn attempt(&self, run: &Run, claimed: &Claimed, now: DateTime<Utc>) -> Outcome {
        let Some(follow_up) = run.follow_ups.get(claimed.follow_up) else {
            return Outcome::Failed {
                error: "the follow-up is no longer on the run".into(),
                transient: false,
            };
        };
        let Some(publisher) = self
            .publishers
            .iter()
            .find(|p| p.target() == claimed.target)
        else {
            return Outcome::Failed {
                error: format!(
                    "{} is no longer configured; nothing was sent",
                    claimed.target
                ),
                transient: false,
            };
        };
        let Some(event) = cloud_event(run, follow_up, &self.public_url) else {
            return Outcome::Failed {
                error: "this follow-up is not an event".into(),
                transient: false,
            };
        };
        match publisher.publish(&event, now).await {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::Failed {
                error: e.message,
                transient: e.transient,
            },
        }
    }
}

/// A write of `next` in place of `run` (unchanged when equal).
fn replacing(run: &Run, next: Run) -> Transition {
    Transition {
        changed: next != *run,
        run: next,
        commands: Vec::new(),
    }
}

/// Delivers every follow-up of run `id` due at `now`; answers one line per
/// attempt (target, event, how it went) for the invocation's log. With no
/// target configured here nothing is claimed or written: what the run owes
/// stays owed, for a deliverer that has targets (the factory's sweeper).
pub async fn deliver_pending(
    follow_ups: &FollowUps,
    store: &dyn RunStore,
    id: &RunId,
    now: DateTime<Utc>,
) -> Result<Vec<String>, UpdateError> {
    if follow_ups.publishers.is_empty() {
        return Ok(Vec::new());
    }
    let claims = Mutex::new(Vec::new());
    let claimed_run = update_run(store, id, |run| {
        let (next, claimed) = claim(run, |kind| follow_ups.targets_for(kind), now);
        *claims.lock().unwrap_or_else(PoisonError::into_inner) = claimed;
        Ok(replacing(run, next))
    })
    .await?
    .run;
    let claims = claims.into_inner().unwrap_or_else(PoisonError::into_inner);
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let outcomes = futures::future::join_all(
        claims
            .iter()
            .map(|c| follow_ups.attempt(&claimed_run, c, now)),
    )
    .await;
    let results: Vec<(Claimed, Outcome)> = claims.into_iter().zip(outcomes).collect();
    update_run(store, id, |run| {
        Ok(replacing(run, record(run, &results, now)))
    })
    .await?;
    Ok(results
        .iter()
        .map(|(claimed, outcome)| {
            let what = &claimed_run.follow_ups[claimed.follow_up];
            let how = match outcome {
                Outcome::Delivered => "delivered".to_string(),
                Outcome::Failed { error, .. } => format!("failed: {error}"),
            };
            let line = format!("run {id}: follow-up {} to {}: {how}", what.id, claimed.target);
            match outcome {
                Outcome::Delivered => tracing::info!(run_id = %id, follow_up = %what.id, target = %claimed.target, "follow-up delivered"),
                Outcome::Failed { error, .. } => tracing::warn!(run_id = %id, follow_up = %what.id, target = %claimed.target, %error, "follow-up not delivered"),
            }
            line
        })
        .collect())
}

/// Runs [`deliver_pending`] for run `id` in a task of its own, at the
/// clock's time: the caller's outcome never waits for a receiver. A failure
/// is logged; the delivery stays due and the sweeper tries it again.
pub fn spawn_delivery(
    follow_ups: FollowUps,
    store: Arc<dyn RunStore>,
    id: RunId,
    now: DateTime<Utc>,
) {
    tokio::spawn(async move {
        if let Err(e) = deliver_pending(&follow_ups, store.as_ref(), &id, now).await {
            tracing::warn!(run_id = %id, error = %e, "follow-ups not delivered now; the sweeper will try again");
        }
    });
}

/// Runs the sweeper fetches at once.
const SWEEP_PAGE: usize = 100;

/// Delivers what is due at `now` on the runs that owe something, within the
/// follow-ups' [`SweepLimits`]: so many runs at once, and no run started
/// once an attempt started then could outlast the budget. What is left is
/// carried over: it stays due, and the next sweep goes on with it. Answers
/// the log lines. A run whose delivery cannot be recorded is logged and
/// left to the next sweep. With no target configured, nothing is read:
/// what runs owe stays owed until a target is.
pub async fn sweep(
    follow_ups: &FollowUps,
    store: &dyn RunStore,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    if follow_ups.publishers.is_empty() {
        return Ok(Vec::new());
    }
    let limits = follow_ups.limits;
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started) + limits.budget;
    // The last moment a run may start: its attempts end by the budget.
    let last_start = limits.budget.saturating_sub(DELIVERY_TIMEOUT);
    let due = store.follow_ups_due(now, SWEEP_PAGE).await?;
    let mut waiting = due.iter();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut lines = Vec::new();
    loop {
        while running.len() < limits.concurrency.max(1) && started.elapsed() <= last_start {
            let Some(run) = waiting.next() else { break };
            running.push(async move {
                (
                    &run.id,
                    deliver_pending(follow_ups, store, &run.id, now).await,
                )
            });
        }
        // A run still at it when the budget is spent (a store that is slow
        // to record) is cut off: its claimed attempts are made again after
        // the claim's lease, like those of a deliverer that died.
        let next = match tokio::time::timeout_at(deadline, running.next()).await {
            Ok(next) => next,
            Err(_) => {
                tracing::warn!(
                    cut = running.len(),
                    "follow-up deliveries cut off at the sweep's budget"
                );
                lines.push(format!(
                    "{} run(s) cut off at the sweep's budget; their deliveries are tried again after the claim's lease",
                    running.len()
                ));
                break;
            }
        };
        let Some((id, delivered)) = next else {
            break;
        };
        match delivered {
            Ok(done) => lines.extend(done),
            Err(e) => lines.push(format!("run {id}: follow-ups not delivered: {e}")),
        }
    }
    let left = waiting.count();
    if left > 0 {
        tracing::info!(left, "follow-ups carried over to the next sweep");
        lines.push(format!(
            "{left} run(s) with follow-ups due carried over to the next sweep (this one spent its {} s)",
            limits.budget.as_secs()
        ));
    }
    Ok(lines)
}
