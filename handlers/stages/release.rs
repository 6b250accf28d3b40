//! The release stage: the image's version goes to the gallery — it becomes
//! latest (any higher version excluded from latest), or, when a higher
//! version is latest, is published below it and latest stays (a release
//! never moves latest back: rollback does); it is replicated to the
//! image's `[release] replication_regions`, and the pruning policy's
//! versions are deleted — and the `image-version.json` metadata the seed
//! publishes (version, gallery version id, git commit, run id, build log,
//! and the OS build and cumulative update of the patch evidence) is
//! written to the run's folder. What the gallery did is recorded on the run.
//!
//! The release notes ([`crate::domain::release_notes`]) are composed from the
//! run and the image's previous release (its highest released version below
//! the run's): `notes` in `image-version.json`,
//! and `release-notes.md` beside it in the run's folder (the local gallery
//! keeps both in the released version's folder too).
//!
//! The gallery is the port's: an Azure Compute Gallery through Resource
//! Manager, or the data folder's `releases/` on one machine.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::result::StageResult;
use crate::domain::image::ImageConfig;
use crate::domain::release_notes::{NOTES_FILE, released_at};
use crate::domain::run::{ReleaseNotes, ReleaseRecord, Run, RunStatus, StageOutput};
use crate::ports::gallery::{Gallery, ReleaseTarget};
use crate::ports::store::{RunQuery, RunStore, StoreError};

/// Released runs of the image read to find the one released last.
const RECENT_RELEASES: usize = 20;

pub(super) async fn run(
    gallery: &dyn Gallery,
    store: &dyn RunStore,
    run_dir: &Path,
    now: DateTime<Utc>,
    run: &Run,
    image: &ImageConfig,
) -> StageResult {
    let previous = match previous_release(store, run).await {
        Ok(previous) => previous,
        Err(e) => return StageResult::Retry(format!("cannot read the previous release: {e}")),
    };
    let notes = ReleaseNotes::compose(run, previous.as_ref(), now);
    let run_copy = run_dir.join("image-version.json");
    let record = ReleaseRecord {
        image_version: run.version.to_string(),
        sig_version_id: run
            .build
            .as_ref()
            .and_then(|b| b.gallery_version_id.clone()),
        git_commit: run.trigger.commit.clone(),
        source: run.source.clone().map(Box::new),
        run_id: run.id.to_string(),
        build_log: run
            .build
            .as_ref()
            .map(|b| b.log.clone())
            .unwrap_or_default(),
        location: run_copy.display().to_string(),
        os_build: notes.security.as_ref().map(|s| s.os_build.to_string()),
        cumulative_update: notes
            .security
            .as_ref()
            .and_then(|s| s.cumulative_update.as_ref())
            .map(|u| u.kb.clone()),
        notes: Some(Box::new(notes)),
        ..ReleaseRecord::default()
    };
    let mut target = ReleaseTarget {
        image: run.image.clone(),
        version: run.version,
        record,
    };
    match gallery.release(&target, &image.settings.release, now).await {
        Ok(outcome) => {
            let record = &mut target.record;
            record.promoted = outcome.promoted;
            record.below_latest = outcome.below_latest;
            record.excluded = outcome.excluded;
            record.pruned = outcome.pruned;
            record.regions = outcome.regions;
            if !outcome.location.is_empty() {
                record.location = outcome.location;
            }
        }
        Err(e) if e.is_transient() => return StageResult::Retry(e.message),
        Err(e) => return StageResult::Failed(e.message),
    }
    let text = match serde_json::to_string_pretty(&target.record) {
        Ok(t) => t,
        Err(e) => return StageResult::Failed(format!("cannot encode image-version.json: {e}")),
    };
    if let Err(e) = crate::private::write_in_dir(&run_copy, text.into_bytes()).await {
        return StageResult::Retry(format!("cannot write {}: {e}", run_copy.display()));
    }
    if let Some(notes) = &target.record.notes {
        let path = run_dir.join(NOTES_FILE);
        let markdown = notes.markdown(&run.image, &target.record.image_version);
        if let Err(e) = crate::private::write_in_dir(&path, markdown.into_bytes()).await {
            return StageResult::Retry(format!("cannot write {}: {e}", path.display()));
        }
    }
    StageResult::Succeeded(StageOutput::Released(Box::new(target.record)))
}

/// The image's release before `run`: of its recent released runs, the one
/// with the highest version below the run's. A run approved after a newer
/// one was released follows the release below it, not the newer one; a
/// version a rollback withdrew is nobody's previous release (the notes say
/// what changed since the version consumers had).
pub async fn previous_release(store: &dyn RunStore, run: &Run) -> Result<Option<Run>, StoreError> {
    let query = RunQuery {
        image: Some(run.image.clone()),
        statuses: vec![RunStatus::Released],
        limit: RECENT_RELEASES,
        continuation: None,
        without_withdrawn: true,
    };
    let page = store.list(&query).await?;
    Ok(page
        .runs
        .into_iter()
        .filter(|r| r.id != run.id && r.version < run.version)
        .max_by_key(|r| (r.version, released_at(r), r.created_at)))
}
