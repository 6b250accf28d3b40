//! The release stage: the `image-version.json` metadata the seed publishes
//! (version, gallery version id, git commit, run id, build log), written to
//! the run's folder and to the image's release folder.
//!
//! When the factory manages Azure and the build produced a gallery version,
//! the stage first publishes it (`azure::release`): the version becomes
//! latest, is replicated to the image's `[release] replication_regions`, and
//! the pruning policy's versions are deleted; what changed is recorded on the
//! run. Without Azure, only the metadata file is written.

use super::StageResult;
use crate::app::App;
use crate::azure::compute::GalleryImage;
use crate::config::ImageConfig;
use crate::domain::run::{ReleaseRecord, Run, StageOutput};

pub(super) async fn run(app: &App, run: &Run, image: &ImageConfig) -> StageResult {
    let dir = app
        .settings
        .data_dir
        .join("releases")
        .join(&run.image)
        .join(run.version.to_string());
    let path = dir.join("image-version.json");
    let mut record = ReleaseRecord {
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
        location: path.display().to_string(),
        ..ReleaseRecord::default()
    };
    if let (Some(azure), Some(id)) = (&app.azure, &record.sig_version_id) {
        let Some((gallery_image, version)) = GalleryImage::parse_version_id(id) else {
            return StageResult::Failed(format!(
                "the build's gallery version id {id} is not a gallery image version id"
            ));
        };
        let settings = &image.settings.release;
        match crate::azure::release::release(
            &azure.arm,
            &gallery_image,
            &version,
            settings,
            (app.clock)(),
        )
        .await
        {
            Ok(outcome) => {
                record.promoted = Some(outcome.promoted);
                record.excluded = outcome.excluded;
                record.pruned = outcome.pruned;
                record.regions = outcome.regions;
            }
            Err(e) if e.is_transient() => {
                return StageResult::Retry(format!("gallery image version {version}: {e}"));
            }
            Err(e) => {
                return StageResult::Failed(format!("gallery image version {version}: {e}"));
            }
        }
    }
    let text = match serde_json::to_string_pretty(&record) {
        Ok(t) => t,
        Err(e) => return StageResult::Failed(format!("cannot encode image-version.json: {e}")),
    };
    let run_copy = app.settings.run_dir(&run.id).join("image-version.json");
    for file in [&path, &run_copy] {
        if let Err(e) = crate::private::write_in_dir(file, text.clone().into_bytes()).await {
            return StageResult::Retry(format!("cannot write {}: {e}", file.display()));
        }
    }
    StageResult::Succeeded(StageOutput::Released(record))
}
