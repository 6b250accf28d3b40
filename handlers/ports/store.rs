//! The run store port: where runs and version counters live, and its two
//! adapters (`sqlite`, embedded; `cosmos`, Azure Cosmos DB in production).
//!
//! Every write is conditional: a run is replaced only if its ETag still
//! matches, so two function instances handling the same run can never lose
//! each other's update. [`update_run`] is the one read-decide-write loop that
//! every handler uses; it reloads and decides again on a stale ETag.
//! [`update_run_from`] is the same loop started from a version the caller
//! already holds (the one its previous write returned), so a handler that
//! writes a run twice reads it once.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::fleet::ImageRuns;
use crate::domain::machine::{Transition, TransitionError};
use crate::domain::run::{Run, RunId, RunStatus, Stage};

/// An opaque version of a stored document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ETag(pub String);

/// A stored value with the ETag it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub etag: ETag,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    /// Only runs of this image.
    pub image: Option<String>,
    /// Only runs in one of these statuses (empty: any).
    pub statuses: Vec<RunStatus>,
    /// At most this many (the store caps it at 100).
    pub limit: usize,
    /// Where the previous page ended.
    pub continuation: Option<String>,
    /// Leave out released runs a rollback withdrew: an image's first
    /// released run listed is then its current release
    /// ([`crate::domain::rollback`]).
    pub without_withdrawn: bool,
}

impl RunQuery {
    /// Runs that have not ended (a cancelling run has not: its freeing
    /// is not done).
    pub fn active() -> RunQuery {
        RunQuery {
            statuses: vec![
                RunStatus::Queued,
                RunStatus::Running,
                RunStatus::WaitingForApproval,
                RunStatus::Cancelling,
            ],
            limit: 100,
            ..RunQuery::default()
        }
    }
}

/// One page of runs, newest first.
#[derive(Clone, Debug)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// Pass back to get the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run with that id.
    #[error("run {id} does not exist")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// A run with that id exists already.
    #[error("run {id} already exists")]
    Conflict {
        /// The id.
        id: String,
    },
    /// The ETag no longer matches: someone else wrote first.
    #[error("run {id} was changed by someone else; reload and decide again")]
    PreconditionFailed {
        /// The id.
        id: String,
    },
    /// The stored document does not parse as a run.
    #[error(
        "run {id} is stored in a form this version cannot read ({reason}); it was left untouched"
    )]
    Corrupt {
        /// The id.
        id: String,
        /// What did not parse.
        reason: String,
    },
    /// A continuation token that this store did not hand out.
    #[error("the continuation token is not valid; start again from the first page")]
    BadContinuation,
    /// The store could not be reached or failed.
    #[error("the run store is unavailable: {0}")]
    Unavailable(String),
}

/// Where runs live.
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Stores a new run; [`StoreError::Conflict`] if its id exists.
    async fn create(&self, run: &Run) -> Result<ETag, StoreError>;
    /// Reads a run.
    async fn get(&self, id: &RunId) -> Result<Stored<Run>, StoreError>;
    /// Replaces a run if it is still at `if_match`.
    async fn replace(&self, run: &Run, if_match: &ETag) -> Result<ETag, StoreError>;
    /// Lists runs, newest first.
    async fn list(&self, query: &RunQuery) -> Result<RunPage, StoreError>;
    /// Hands out the next number (0, 1, 2, ...) of a per-image counter to
    /// the run `holder`, atomically. The same holder asking again in the same
    /// scope (a redelivered trigger, a concurrent duplicate of it) gets the
    /// number it was given the first time: a run moves its counter once.
    async fn next_sequence(
        &self,
        image: &str,
        scope: &str,
        holder: &RunId,
    ) -> Result<u32, StoreError>;
    /// What the fleet view needs of each of `images`, in their order: its
    /// current release (its newest released run no rollback withdrew), its
    /// latest skipped and failed runs and its runs in flight (at
    /// most [`crate::domain::fleet::MAX_IN_FLIGHT`], newest first). Answered
    /// with index-backed lookups per image, never a scan of every run; an
    /// image with no runs gets an empty [`ImageRuns`].
    async fn image_runs(&self, images: &[String]) -> Result<Vec<ImageRuns>, StoreError>;
    /// The images with a released run no rollback withdrew, or a skipped
    /// run, created at or after `since` (the fleet view's headline): a read
    /// of the runs created since then only.
    async fn images_patched_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeSet<String>, StoreError>;
    /// Runs with a follow-up delivery due at or before `by` (their
    /// `followUpsDue`), earliest first, at most `limit` (capped at 100).
    /// Served from an index: runs that owe nothing are never read.
    async fn follow_ups_due(&self, by: DateTime<Utc>, limit: usize)
    -> Result<Vec<Run>, StoreError>;
}

/// The statuses whose latest run per image [`RunStore::image_runs`] returns
/// (besides the runs not ended).
pub const FLEET_STATUSES: [RunStatus; 3] =
    [RunStatus::Released, RunStatus::Skipped, RunStatus::Failed];

/// Why [`update_run`] did not apply a change.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state machine refused the event.
    #[error(transparent)]
    Refused(#[from] TransitionError),
    /// Others kept writing the run; the update gave up.
    #[error("run {id} kept changing under {attempts} attempts; try again")]
    Contended {
        /// The run.
        id: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// How many times [`update_run`] reloads after a stale ETag.
const MAX_UPDATE_ATTEMPTS: u32 = 32;

/// Loads a run, applies `decide` to it, and writes the result if it changed,
/// reloading and deciding again whenever someone else wrote first.
pub async fn update_run<F>(
    store: &dyn RunStore,
    id: &RunId,
    decide: F,
) -> Result<Transition, UpdateError>
where
    F: Fn(&Run) -> Result<Transition, TransitionError>,
{
    Ok(update_run_from(store, id, None, decide).await?.transition)
}

/// What [`update_run_from`] did, with the version of the run it left.
#[derive(Debug)]
pub struct Updated {
    /// The transition, as [`update_run`] returns it.
    pub transition: Transition,
    /// The run as the store now holds it (`transition.run`) with its ETag:
    /// pass it as `held` to the next update of the same run to skip its read.
    pub stored: Stored<Run>,
}

/// [`update_run`] that starts from `held`, a version of the run this caller
/// read or wrote itself, instead of reading it again.
///
/// The decision on `held` is only a guess until its conditional write
/// succeeds: a write that finds a newer version (412), a refusal and an
/// unchanged result are all decided again on a fresh read, so the outcome is
/// always one that [`update_run`] could have given. With no other writer in
/// between, the update costs one request instead of two.
pub async fn update_run_from<F>(
    store: &dyn RunStore,
    id: &RunId,
    held: Option<Stored<Run>>,
    decide: F,
) -> Result<Updated, UpdateError>
where
    F: Fn(&Run) -> Result<Transition, TransitionError>,
{
    if let Some(held) = held.filter(|h| &h.value.id == id)
        && let Ok(transition) = decide(&held.value)
        && transition.changed
    {
        match store.replace(&transition.run, &held.etag).await {
            Ok(etag) => return Ok(updated(transition, etag)),
            Err(StoreError::PreconditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let stored = store.get(id).await?;
        let transition = decide(&stored.value)?;
        if !transition.changed {
            return Ok(updated(transition, stored.etag));
        }
        match store.replace(&transition.run, &stored.etag).await {
            Ok(etag) => return Ok(updated(transition, etag)),
            Err(StoreError::PreconditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(UpdateError::Contended {
        id: id.to_string(),
        attempts: MAX_UPDATE_ATTEMPTS,
    })
}

fn updated(transition: Transition, etag: ETag) -> Updated {
    let stored = Stored {
        value: transition.run.clone(),
        etag,
    };
    Updated { transition, stored }
}

/// Parses a stored document, refusing one that is not a well-formed run.
pub(crate) fn parse_run(id: &str, doc: &str) -> Result<Run, StoreError> {
    let run: Run = serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        reason: e.to_string(),
    })?;
    let shape_ok = run.id.as_str() == id
        && run.stages.len() == Stage::ALL.len()
        && run.stages.iter().zip(Stage::ALL).all(|(r, s)| r.stage == s);
    if !shape_ok {
        return Err(StoreError::Corrupt {
            id: id.to_string(),
            reason: "its id or its list of stages does not match a run".into(),
        });
    }
    Ok(run)
}
