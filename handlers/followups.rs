//! Delivering what runs owe after they ended (release events), at least
//! once: the I/O around [`crate::domain::followup`].
//!
//! [`deliver_pending`] claims a run's due deliveries in one conditional
//! write, sends each to its target, and records how each went in a second
//! write. The stage that ends a run calls it right after the write that
//! ended the run, in a task of its own ([`spawn_delivery`]), so a receiver
//! that is down or slow never fails or delays anything; the sweeper calls
//! [`sweep`] every five minutes for the runs whose deliveries are due
//! (found through the store's index, never by a scan).

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::domain::followup::{Claimed, Outcome, claim, record};
use crate::domain::machine::Transition;
use crate::domain::release_event::cloud_event;
use crate::domain::run::{EventType, FollowUpKind, Run, RunId, RunStatus};
use crate::ports::events::Publisher;
use crate::ports::store::{RunQuery, RunStore, StoreError, UpdateError, update_run};

/// Where follow-ups go: the configured release-event publishers, and the
/// factory's public URL (the events' `source` and links).
#[derive(Clone, Default)]
pub struct FollowUps {
    publishers: Vec<Arc<dyn Publisher>>,
    public_url: String,
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
        }
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
/// attempt (target, event, how it went) for the invocation's log.
pub async fn deliver_pending(
    follow_ups: &FollowUps,
    store: &dyn RunStore,
    id: &RunId,
    now: DateTime<Utc>,
) -> Result<Vec<String>, UpdateError> {
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

/// Delivers what is due at `now` on every run that owes something; answers
/// the log lines. A run whose delivery cannot be recorded is logged and
/// left to the next sweep.
pub async fn sweep(
    follow_ups: &FollowUps,
    store: &dyn RunStore,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let mut lines = Vec::new();
    for run in store.follow_ups_due(now, SWEEP_PAGE).await? {
        match deliver_pending(follow_ups, store, &run.id, now).await {
            Ok(done) => lines.extend(done),
            Err(e) => lines.push(format!("run {}: follow-ups not delivered: {e}", run.id)),
        }
    }
    Ok(lines)
}

/// Records on the run that released `version` of `image` that the image was
/// rolled back to it (`image-factory.image.rolled-back`, due at once), and
/// answers that run's id; `None` when no run of this store released that
/// version (it was released elsewhere, or by hand). Each rollback is a new
/// occurrence with its own event id.
pub async fn owe_rollback(
    store: &dyn RunStore,
    image: &str,
    version: &str,
    now: DateTime<Utc>,
) -> Result<Option<RunId>, UpdateError> {
    let mut query = RunQuery {
        image: Some(image.to_string()),
        statuses: vec![RunStatus::Released],
        limit: 100,
        continuation: None,
    };
    let id = loop {
        let page = store.list(&query).await?;
        if let Some(run) = page.runs.iter().find(|r| r.version.to_string() == version) {
            break run.id.clone();
        }
        match page.continuation {
            Some(c) => query.continuation = Some(c),
            None => return Ok(None),
        }
    };
    let kind = FollowUpKind::Event {
        event: EventType::RolledBack,
    };
    update_run(store, &id, |run| {
        let mut next = run.clone();
        next.owe(kind.clone(), now);
        Ok(replacing(run, next))
    })
    .await?;
    Ok(Some(id))
}
