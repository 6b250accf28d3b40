//! The release stage: the image's version goes to the gallery — it becomes
//! latest (any higher version excluded from latest), is replicated to the
//! image's `[release] replication_regions`, and the pruning policy's
//! versions are deleted — and the `image-version.json` metadata the seed
//! publishes (version, gallery version id, git commit, run id, build log) is
//! written to the run's folder. What the gallery did is recorded on the run.
//!
//! The gallery is the port's: an Azure Compute Gallery through Resource
//! Manager, or the data folder's `releases/` on one machine.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::StageResult;
use crate::domain::image::ImageConfig;
use crate::domain::run::{ReleaseRecord, Run, StageOutput};
use crate::ports::gallery::{Gallery, ReleaseTarget};

pub(super) async fn run(
    gallery: &dyn Gallery,
    run_dir: &Path,
    now: DateTime<Utc>,
    run: &Run,
    image: &ImageConfig,
) -> StageResult {
    let run_copy = run_dir.join("image-version.json");
    let record = ReleaseRecord {
        image_version: run.version.to_string(),
        sig_version_id: run
            .build
            .as_ref()
            .and_then(|b| b.gallery_version_id.clone()),
        git_commit: run.trigger.commit.clone(),
        run_id: run.id.to_string(),
        build_log: run
            .build
            .as_ref()
            .map(|b| b.log.clone())
            .unwrap_or_default(),
        location: run_copy.display().to_string(),
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
    StageResult::Succeeded(StageOutput::Released(target.record))
}
