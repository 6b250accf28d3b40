//! The local gallery: the gallery port on one machine, in the data folder.
//!
//! `releases/<image>/<version>/` holds each released version (its
//! `image-version.json` and `release-notes.md`), and
//! `releases/<image>/gallery.json` what a gallery keeps about its versions:
//! when each was published and whether it is excluded from latest. A
//! release below the current latest is published excluded from latest, and
//! the latest stays. Releases, rollbacks and pruning apply the same plans
//! of [`crate::domain::gallery`] as the Azure Compute Gallery adapter, so
//! `image-factory rollback` and the `[release] keep_last / keep_days /
//! pinned` policy behave the same on one machine.
//!
//! `gallery.json` is replaced atomically (written beside, then renamed), and
//! changes of one image are serialised, so a crash or two runs releasing at
//! once never leave it half written. A pruned version leaves `gallery.json`
//! before its folder is deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::domain::gallery::{self, GalleryVersion, LatestChange};
use crate::domain::image::ReleaseSettings;
use crate::domain::release_notes::NOTES_FILE;
use crate::domain::version::ImageVersion;
use crate::ports::PortError;
use crate::ports::gallery::{Gallery, GalleryOutcome, ReleaseTarget};
use crate::private;

/// The name of an image's gallery file.
pub const GALLERY_FILE: &str = "gallery.json";

/// What `gallery.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GalleryFile {
    /// Every version the gallery holds.
    versions: Vec<GalleryVersion>,
}

/// The gallery in a folder (`<data>/releases`).
#[derive(Clone, Debug)]
pub struct LocalGallery {
    dir: PathBuf,
    /// One lock for the gallery's files: changes never interleave.
    lock: Arc<Mutex<()>>,
}

impl LocalGallery {
    /// The gallery kept in `dir`.
    pub fn new(dir: PathBuf) -> LocalGallery {
        LocalGallery {
            dir,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The folder of `image`'s released `version`.
    pub fn version_dir(&self, image: &str, version: ImageVersion) -> PathBuf {
        self.dir.join(image).join(version.to_string())
    }

    fn file(&self, image: &str) -> PathBuf {
        self.dir.join(image).join(GALLERY_FILE)
    }

    async fn load(&self, image: &str) -> Result<GalleryFile, PortError> {
        let path = self.file(image);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                PortError::permanent(format!(
                    "{} is not a gallery file ({e}); restore it or delete it to start the gallery again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(GalleryFile::default()),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    async fn save(&self, image: &str, file: &GalleryFile) -> Result<(), PortError> {
        let path = self.file(image);
        let text = serde_json::to_vec_pretty(file)
            .map_err(|e| PortError::permanent(format!("cannot encode {GALLERY_FILE}: {e}")))?;
        let target = path.clone();
        private::blocking(move || {
            if let Some(dir) = target.parent() {
                private::create_dir(dir)?;
            }
            let beside = target.with_extension("json.new");
            private::write(&beside, &text)?;
            std::fs::rename(&beside, &target)
        })
        .await
        .map_err(|e| io_error(&path, e))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> PortError {
    PortError::transient(format!("cannot use {}: {e}", path.display()))
}

/// Applies the `excludeFromLatest` changes of a plan to `versions`.
fn apply(versions: &mut Vec<GalleryVersion>, changes: &[LatestChange]) {
    *versions = gallery::applied(versions, changes);
}

fn refused(e: gallery::PromotionError) -> PortError {
    PortError::permanent(e.to_string())
}

#[async_trait]
impl Gallery for LocalGallery {
    async fn versions(&self, image: &str) -> Result<Vec<GalleryVersion>, PortError> {
        Ok(self.load(image).await?.versions)
    }

    async fn release(
        &self,
        target: &ReleaseTarget,
        policy: &ReleaseSettings,
        now: DateTime<Utc>,
    ) -> Result<GalleryOutcome, PortError> {
        let _changing = self.lock.lock().await;
        let image = target.image.as_str();
        let mut file = self.load(image).await?;
        // Published excluded from latest, as a build publishes to an Azure
        // Compute Gallery; the plan includes it when it becomes latest.
        if !file.versions.iter().any(|v| v.version == target.version) {
            file.versions.push(GalleryVersion {
                version: target.version,
                published: Some(now),
                exclude_from_latest: true,
            });
            file.versions.sort_by_key(|v| v.version);
        }
        let plan = gallery::release(&file.versions, target.version, &policy.prune_policy(), now)
            .map_err(refused)?;
        apply(&mut file.versions, &plan.changes);
        let doomed = plan.prune.clone();
        file.versions.retain(|v| !doomed.contains(&v.version));
        let folder = self.version_dir(image, target.version);
        let outcome = GalleryOutcome {
            promoted: plan
                .below_latest
                .is_none()
                .then(|| target.version.to_string()),
            below_latest: plan.below_latest.map(|v| v.to_string()),
            excluded: plan
                .excluded(target.version)
                .iter()
                .map(ToString::to_string)
                .collect(),
            pruned: doomed.iter().map(ToString::to_string).collect(),
            regions: Vec::new(),
            location: folder.join("image-version.json").display().to_string(),
        };
        let mut record = target.record.clone();
        record.promoted = outcome.promoted.clone();
        record.below_latest = outcome.below_latest.clone();
        record.excluded = outcome.excluded.clone();
        record.pruned = outcome.pruned.clone();
        record.location = outcome.location.clone();
        let text = serde_json::to_vec_pretty(&record)
            .map_err(|e| PortError::permanent(format!("cannot encode image-version.json: {e}")))?;
        let metadata = folder.join("image-version.json");
        private::write_in_dir(&metadata, text)
            .await
            .map_err(|e| io_error(&metadata, e))?;
        if let Some(notes) = &record.notes {
            let path = folder.join(NOTES_FILE);
            let markdown = notes.markdown(image, &record.image_version);
            private::write_in_dir(&path, markdown.into_bytes())
                .await
                .map_err(|e| io_error(&path, e))?;
        }
        self.save(image, &file).await?;
        for version in &doomed {
            let dir = self.version_dir(image, *version);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&dir, e)),
            }
        }
        Ok(outcome)
    }

    async fn rollback(&self, image: &str, to: ImageVersion) -> Result<GalleryOutcome, PortError> {
        let _changing = self.lock.lock().await;
        let mut file = self.load(image).await?;
        let plan = gallery::promote(&file.versions, to).map_err(refused)?;
        apply(&mut file.versions, &plan);
        self.save(image, &file).await?;
        Ok(GalleryOutcome {
            promoted: Some(to.to_string()),
            below_latest: None,
            excluded: plan
                .iter()
                .filter(|c| c.exclude_from_latest)
                .map(|c| c.version.to_string())
                .collect(),
            pruned: Vec::new(),
            regions: Vec::new(),
            location: self.version_dir(image, to).display().to_string(),
        })
    }
}
