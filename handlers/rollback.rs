//! A rollback as the factory performs it, with its own settings and
//! identity: the plan of [`crate::domain::rollback`] over the image's runs,
//! then the gallery's rollback plan ([`crate::domain::gallery::promote`]
//! through the gallery port), then the runs it withdrew, then its commit on
//! the run of the version made current, in one write with the
//! `image-factory.image.rolled-back` event that run now owes. Delivering the
//! event is the caller's: the `rollback` function hands it to the
//! follow-up machinery at once (and the sweeper retries it), the command
//! line's `rollback --direct` delivers it before it exits.
//!
//! Nothing is written before the gallery agreed: a refused rollback (an
//! unknown version, the current one, one the gallery no longer holds, a
//! release of the same image under way) changes nothing. A rollback cut
//! short after the gallery is retried by asking again: the plan finds what
//! is missing and completes it, with one event.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::domain::machine::Transition;
use crate::domain::rollback::{Planned, Refusal, Request, checked, commit, plan, withdraw};
use crate::domain::run::{Rollback, Run, RunId, RunStatus};
use crate::ports::PortError;
use crate::ports::gallery::{Gallery, GalleryOutcome};
use crate::ports::store::{RunQuery, RunStore, StoreError, UpdateError, update_run};

/// What a rollback did.
#[derive(Clone, Debug)]
pub struct Done {
    /// The rollback, as recorded.
    pub rollback: Rollback,
    /// What the gallery did.
    pub gallery: GalleryOutcome,
    /// The run that owes the rollback's event (the version made current).
    pub event_run: RunId,
    /// True when this completed a rollback cut short earlier.
    pub completed: bool,
    /// Runs waiting for approval of a version above the one made current:
    /// approving them makes their version current again.
    pub waiting_above: Vec<String>,
}

impl Done {
    /// The answer to whoever asked: the rollback as recorded, whether it
    /// completed an earlier one, the run that owes its event, what the
    /// gallery excluded from latest, and the runs whose approval would make
    /// a higher version current again.
    pub fn answer(&self) -> serde_json::Value {
        serde_json::json!({
            "rollback": self.rollback,
            "completed": self.completed,
            "eventRun": self.event_run,
            "excluded": self.gallery.excluded,
            "waitingAbove": self.waiting_above,
        })
    }
}

/// Why a rollback did not happen (or was cut short).
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// Refused before anything changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The gallery refused or failed; nothing was recorded.
    #[error("the gallery did not roll back: {0}")]
    Gallery(PortError),
    /// The store failed before anything changed.
    #[error("the runs of the image could not be read: {0}")]
    Read(StoreError),
    /// The gallery rolled back but the record was cut short.
    #[error(
        "the gallery rolled back to {to}, but recording it was cut short ({error}); ask for the same rollback again: it completes the record and sends one event"
    )]
    Record {
        /// The version.
        to: String,
        /// What failed.
        error: String,
    },
}

impl RollbackError {
    /// The HTTP status that answers it: 400 for a bad request, 422 for a
    /// version or image the factory does not know, 409 for a state that
    /// forbids it now, 503 for a failure worth retrying.
    pub fn http_status(&self) -> u16 {
        match self {
            RollbackError::Refused(
                Refusal::ImageName { .. } | Refusal::Reason | Refusal::Actor,
            ) => 400,
            RollbackError::Refused(Refusal::UnknownVersion { .. }) => 422,
            RollbackError::Refused(
                Refusal::AlreadyCurrent { .. }
                | Refusal::Releasing { .. }
                | Refusal::Concurrent { .. },
            ) => 409,
            RollbackError::Gallery(e) if !e.is_transient() => 409,
            RollbackError::Gallery(_) | RollbackError::Read(_) | RollbackError::Record { .. } => {
                503
            }
        }
    }
}

/// Every run of `image` in `statuses`, newest first.
async fn all(
    store: &dyn RunStore,
    image: &str,
    statuses: Vec<RunStatus>,
) -> Result<Vec<Run>, StoreError> {
    let mut query = RunQuery {
        image: Some(image.to_string()),
        statuses,
        limit: 100,
        ..RunQuery::default()
    };
    let mut runs = Vec::new();
    loop {
        let page = store.list(&query).await?;
        runs.extend(page.runs);
        match page.continuation {
            Some(next) => query.continuation = Some(next),
            None => return Ok(runs),
        }
    }
}

/// Rolls `request.image` back to `request.to` at `now`.
pub async fn perform(
    store: &dyn RunStore,
    gallery: &dyn Gallery,
    request: Request,
    now: DateTime<Utc>,
) -> Result<Done, RollbackError> {
    let request = checked(request)?;
    let image = request.image.clone();
    let released = all(store, &image, vec![RunStatus::Released])
        .await
        .map_err(RollbackError::Read)?;
    let active = all(store, &image, RunQuery::active().statuses)
        .await
        .map_err(RollbackError::Read)?;
    let planned = plan(&request, &released, &active, now)?;
    let gallery_outcome = gallery
        .rollback(&image, request.to)
        .await
        .map_err(RollbackError::Gallery)?;
    let rollback = planned.rollback().clone();
    let cut = |error: String| RollbackError::Record {
        to: rollback.to.clone(),
        error,
    };
    if let Planned::New { withdraw: runs, .. } = &planned {
        for id in runs {
            update_run(store, id, |run| Ok(withdraw(run, &rollback)))
                .await
                .map_err(|e| cut(e.to_string()))?;
        }
    }
    let target: RunId = rollback
        .to_run
        .parse()
        .map_err(|e: crate::domain::run::RunIdError| cut(e.to_string()))?;
    let refused = Mutex::new(None);
    let committed = update_run(store, &target, |run| match commit(run, &rollback) {
        Ok(t) => Ok(t),
        Err(e) => {
            *refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            Ok(Transition {
                run: run.clone(),
                commands: Vec::new(),
                changed: false,
            })
        }
    })
    .await;
    if let Some(e) = refused.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e.into());
    }
    committed.map_err(|e: UpdateError| cut(e.to_string()))?;
    tracing::info!(
        image = %image,
        to = %rollback.to,
        from = rollback.from.as_deref().unwrap_or("-"),
        actor = %rollback.actor,
        via = %rollback.via,
        "rolled back"
    );
    let waiting_above = active
        .iter()
        .filter(|r| r.status == RunStatus::WaitingForApproval && r.version > request.to)
        .map(|r| r.id.to_string())
        .collect();
    Ok(Done {
        completed: matches!(planned, Planned::Complete { .. }),
        rollback,
        gallery: gallery_outcome,
        event_run: target,
        waiting_above,
    })
}
