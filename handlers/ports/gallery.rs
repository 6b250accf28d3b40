//! The gallery port: where released versions of an image live, which one is
//! latest, and what the pruning policy removes. Azure Compute Gallery through
//! Resource Manager (`azure::gallery`), or the data folder's `releases/`
//! locally (`local::gallery`). Both apply the same plans of
//! [`crate::domain::gallery`], so promotion (never below the latest),
//! rollback and pruning behave the same on one machine as on Azure.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PortError;
use crate::domain::gallery::GalleryVersion;
use crate::domain::image::{GalleryDefinition, ReleaseSettings};
use crate::domain::run::ReleaseRecord;
use crate::domain::version::ImageVersion;

/// A version to release: the run's version of an image and its metadata.
#[derive(Clone, Debug)]
pub struct ReleaseTarget {
    /// The factory's image name.
    pub image: String,
    /// The version the run built.
    pub version: ImageVersion,
    /// The `image-version.json` record (the stage fills in what the gallery did).
    pub record: ReleaseRecord,
}

/// What a release or a rollback did to the gallery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GalleryOutcome {
    /// The version made latest; `None` when it was released below the
    /// latest ([`GalleryOutcome::below_latest`]) or the build published
    /// nothing this gallery holds (a managed image only).
    pub promoted: Option<String>,
    /// The higher version that is latest and stays latest, when the release
    /// was below it: the version is published, excluded from latest.
    pub below_latest: Option<String>,
    /// Versions excluded from latest by this call (higher than the promoted one).
    pub excluded: Vec<String>,
    /// Versions deleted by the pruning policy, lowest first.
    pub pruned: Vec<String>,
    /// The regions the promoted version is replicated to.
    pub regions: Vec<String>,
    /// Where the released version is kept (a gallery version id, a folder).
    pub location: String,
}

/// What making an image's gallery image definition did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defined {
    /// It did not exist; it was created.
    Created,
    /// It existed; what may change was updated.
    Updated,
    /// It existed as the image's settings say; nothing was sent.
    Unchanged,
    /// This gallery holds versions without definitions (the local one).
    NotNeeded,
}

/// Holds released image versions.
#[async_trait]
pub trait Gallery: Send + Sync + 'static {
    /// Makes the gallery image definition `definition` that `image`'s
    /// versions are published to, before its build: created when missing,
    /// updated where the gallery lets it change, refused (permanently, with
    /// what differs) when it exists with properties that cannot change.
    /// Repeating it changes nothing more. A gallery with no definitions
    /// has nothing to do.
    async fn define(
        &self,
        image: &str,
        definition: &GalleryDefinition,
    ) -> Result<Defined, PortError> {
        let _ = (image, definition);
        Ok(Defined::NotNeeded)
    }
    /// The versions of `image` the gallery holds, as the policies see them.
    async fn versions(&self, image: &str) -> Result<Vec<GalleryVersion>, PortError>;
    /// Publishes `target` as [`crate::domain::gallery::release`] plans it:
    /// it becomes latest (any higher version is excluded from latest) unless
    /// a higher version is latest, which stays latest (the target is
    /// published below it, excluded); then the image's pruning policy is
    /// applied. A release never moves latest back. Repeating a release
    /// changes nothing more.
    async fn release(
        &self,
        target: &ReleaseTarget,
        policy: &ReleaseSettings,
        now: DateTime<Utc>,
    ) -> Result<GalleryOutcome, PortError>;
    /// Makes `to`, an existing version of `image`, latest again: every higher
    /// version is excluded from latest (kept, not deleted).
    async fn rollback(&self, image: &str, to: ImageVersion) -> Result<GalleryOutcome, PortError>;
}
