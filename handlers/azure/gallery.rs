//! The gallery on Azure: an Azure Compute Gallery through Resource Manager,
//! the adapter of the gallery port. Each image's definition is made from its
//! `image.toml` before its build (`super::definition`). Publishing a version and rolling back
//! apply the plans of `domain::gallery`: a release below the current latest
//! is replicated and kept excluded from latest, and the latest stays.
//!
//! Every call reads the gallery first and changes only what differs from the
//! plan, so a retried release or rollback (after a timeout, a redelivery, a
//! 409 from a concurrent change) sends no change twice and ends in the same
//! gallery. Versions Resource Manager is already deleting are not part of any
//! plan: they can be neither promoted nor changed.

use chrono::{DateTime, Utc};

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use super::arm::{ArmClient, ArmError};
use super::compute::{self, DELETING, GalleryImage, VersionInfo};
use crate::domain::gallery::{self, GalleryVersion, LatestChange, PromotionError};
use crate::domain::image::{GalleryDefinition, ReleaseSettings, region_key};
use crate::domain::version::ImageVersion;
use crate::ports::PortError;
use crate::ports::gallery::{Defined, Gallery, GalleryOutcome, ReleaseTarget};

/// Why a release or a rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Resource Manager refused or failed.
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// The version is not in the gallery.
    #[error(transparent)]
    Unknown(#[from] PromotionError),
    /// The version name is not `Major.Minor.Patch`.
    #[error("{0} is not a gallery version name (Major.Minor.Patch)")]
    NotAVersion(String),
    /// The version is being deleted.
    #[error("version {0} is being deleted; it cannot become latest")]
    Deleting(String),
    /// The version did not provision.
    #[error("version {version} cannot become latest: its provisioning state is {state}")]
    NotReady {
        /// The version.
        version: String,
        /// Its provisioning state.
        state: String,
    },
}

impl ReleaseError {
    /// True when trying again later may succeed (throttling, server errors, transport).
    pub fn is_transient(&self) -> bool {
        matches!(self, ReleaseError::Arm(e) if e.is_transient())
    }
}

impl From<ReleaseError> for PortError {
    fn from(e: ReleaseError) -> PortError {
        PortError {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

/// The factory's images in an Azure Compute Gallery.
#[derive(Clone, Debug)]
pub struct AzureGallery {
    /// The Resource Manager client.
    pub arm: ArmClient,
    /// The configured gallery, as one of its definitions (whose name each
    /// image's replaces); `None` when no gallery is configured.
    pub gallery: Option<GalleryImage>,
    /// The definition of each image whose definition is not named as the
    /// image (`gallery_image_name`): those read at start, and those learned
    /// when a build made its definition.
    pub names: Arc<RwLock<BTreeMap<String, String>>>,
}

impl AzureGallery {
    /// The gallery `gallery` (`None`: none configured), knowing the
    /// definitions `names` (image → definition) already.
    pub fn new(
        arm: ArmClient,
        gallery: Option<GalleryImage>,
        names: BTreeMap<String, String>,
    ) -> AzureGallery {
        AzureGallery {
            arm,
            gallery,
            names: Arc::new(RwLock::new(names)),
        }
    }

    fn in_gallery(&self, definition: &str) -> Result<GalleryImage, PortError> {
        let gallery = self.gallery.as_ref().ok_or_else(|| {
            PortError::permanent(format!(
                "no gallery is configured for the definition {definition}: set IMAGE_FACTORY_GALLERY_RESOURCE_GROUP and IMAGE_FACTORY_GALLERY"
            ))
        })?;
        Ok(GalleryImage {
            image: definition.to_string(),
            ..gallery.clone()
        })
    }

    fn definition(&self, image: &str) -> Result<GalleryImage, PortError> {
        let name = self
            .names
            .read()
            .ok()
            .and_then(|names| names.get(image).cloned())
            .unwrap_or_else(|| image.to_string());
        self.in_gallery(&name)
    }
}

#[async_trait]
impl Gallery for AzureGallery {
    async fn define(
        &self,
        image: &str,
        definition: &GalleryDefinition,
    ) -> Result<Defined, PortError> {
        let target = self.in_gallery(&definition.name)?;
        let done = super::definition::define(&self.arm, &target, definition)
            .await
            .map_err(|e| PortError {
                transient: e.is_transient(),
                message: e.to_string(),
            })?;
        if let Ok(mut names) = self.names.write() {
            names.insert(image.to_string(), definition.name.clone());
        }
        Ok(match done {
            super::definition::Defined::Created => Defined::Created,
            super::definition::Defined::Updated => Defined::Updated,
            super::definition::Defined::Unchanged => Defined::Unchanged,
        })
    }

    async fn versions(&self, image: &str) -> Result<Vec<GalleryVersion>, PortError> {
        let listing = compute::list_versions(&self.arm, &self.definition(image)?).await?;
        Ok(views(&listing))
    }

    /// Publishes the gallery version the build produced; a build that
    /// published no gallery version (a managed image only) has nothing here.
    async fn release(
        &self,
        target: &ReleaseTarget,
        policy: &ReleaseSettings,
        now: DateTime<Utc>,
    ) -> Result<GalleryOutcome, PortError> {
        let Some(id) = &target.record.sig_version_id else {
            return Ok(GalleryOutcome::default());
        };
        let Some((gallery_image, version)) = GalleryImage::parse_version_id(id) else {
            return Err(PortError::permanent(format!(
                "the build's gallery version id {id} is not a gallery image version id"
            )));
        };
        let mut outcome = release(&self.arm, &gallery_image, &version, policy, now)
            .await
            .map_err(|e| PortError::from(e).context(&format!("gallery image version {version}")))?;
        outcome.location = id.clone();
        Ok(outcome)
    }

    async fn rollback(&self, image: &str, to: ImageVersion) -> Result<GalleryOutcome, PortError> {
        Ok(rollback(&self.arm, &self.definition(image)?, to).await?)
    }
}

/// Releases `version` of `image` as [`gallery::release`] plans it: makes it
/// latest (excluding any higher version) unless a higher version is latest,
/// which stays latest (the version is published below it and stays
/// excluded from latest, as the build published it); replicates it to the
/// configured regions when they differ from its current ones; then deletes
/// what the pruning policy removes (never the latest, a pinned version or
/// this version).
pub async fn release(
    arm: &ArmClient,
    image: &GalleryImage,
    version: &str,
    settings: &ReleaseSettings,
    now: DateTime<Utc>,
) -> Result<GalleryOutcome, ReleaseError> {
    let target: ImageVersion = version
        .parse()
        .map_err(|_| ReleaseError::NotAVersion(version.to_string()))?;
    let listing = compute::list_versions(arm, image).await?;
    let info = find_target(&listing, target)?;
    let configured = &settings.replication_regions;
    let replicate = !configured.is_empty() && !same_regions(&info.target_regions, configured);
    let regions = if configured.is_empty() {
        info.target_regions.clone()
    } else {
        configured.clone()
    };
    let plan = gallery::release(&views(&listing), target, &settings.prune_policy(), now)?;
    let excluded = apply(
        arm,
        image,
        &listing,
        &plan.changes,
        (target, plan.below_latest.is_some()),
        replicate.then_some(configured.as_slice()),
    )
    .await?;
    let mut pruned = Vec::new();
    for doomed in &plan.prune {
        let name = name_of(&listing, *doomed);
        delete(arm, image, &name).await?;
        pruned.push(name);
    }
    Ok(GalleryOutcome {
        promoted: plan.below_latest.is_none().then(|| info.name.clone()),
        below_latest: plan.below_latest.map(|v| name_of(&listing, v)),
        excluded,
        pruned,
        regions,
        location: image.version_id(&info.name),
    })
}

/// Makes `to`, an existing version of `image`, latest again: every higher
/// version is excluded from latest (kept, not deleted) and `to` included.
pub async fn rollback(
    arm: &ArmClient,
    image: &GalleryImage,
    to: ImageVersion,
) -> Result<GalleryOutcome, ReleaseError> {
    let listing = compute::list_versions(arm, image).await?;
    let info = find_target(&listing, to)?;
    let plan = gallery::promote(&views(&listing), to)?;
    let excluded = apply(arm, image, &listing, &plan, (to, false), None).await?;
    Ok(GalleryOutcome {
        promoted: Some(info.name.clone()),
        below_latest: None,
        excluded,
        pruned: Vec::new(),
        regions: info.target_regions.clone(),
        location: image.version_id(&info.name),
    })
}

/// The versions the policy sees: those with a `Major.Minor.Patch` name that
/// are not being deleted.
fn views(listing: &[VersionInfo]) -> Vec<GalleryVersion> {
    listing
        .iter()
        .filter(|v| v.provisioning_state.as_deref() != Some(DELETING))
        .filter_map(VersionInfo::policy_view)
        .collect()
}

fn version_of(info: &VersionInfo) -> Option<ImageVersion> {
    info.name.parse().ok()
}

/// The gallery's own spelling of a version's name.
fn name_of(listing: &[VersionInfo], version: ImageVersion) -> String {
    listing
        .iter()
        .find(|v| version_of(v) == Some(version))
        .map(|v| v.name.clone())
        .unwrap_or_else(|| version.to_string())
}

fn find_target(
    listing: &[VersionInfo],
    target: ImageVersion,
) -> Result<&VersionInfo, ReleaseError> {
    let Some(info) = listing.iter().find(|v| version_of(v) == Some(target)) else {
        let names: Vec<&str> = listing.iter().map(|v| v.name.as_str()).collect();
        return Err(PromotionError::UnknownVersion(target, names.join(", ")).into());
    };
    match info.provisioning_state.as_deref() {
        Some(DELETING) => Err(ReleaseError::Deleting(info.name.clone())),
        Some(state @ ("Failed" | "Canceled")) => Err(ReleaseError::NotReady {
            version: info.name.clone(),
            state: state.to_string(),
        }),
        _ => Ok(info),
    }
}

fn same_regions(current: &[String], wanted: &[String]) -> bool {
    let mut a: Vec<String> = current.iter().map(|r| region_key(r)).collect();
    let mut b: Vec<String> = wanted.iter().map(|r| region_key(r)).collect();
    a.sort();
    b.sort();
    a == b
}

/// Applies a plan's `excludeFromLatest` changes, the target's with its new
/// regions when given; `target` is the version and whether it stays
/// excluded from latest (its regions are updated with that flag when the
/// plan does not change it). Answers the other versions it excluded.
async fn apply(
    arm: &ArmClient,
    image: &GalleryImage,
    listing: &[VersionInfo],
    changes: &[LatestChange],
    (target, target_excluded): (ImageVersion, bool),
    regions: Option<&[String]>,
) -> Result<Vec<String>, ReleaseError> {
    let mut excluded = Vec::new();
    let mut target_updated = false;
    for change in changes {
        let name = name_of(listing, change.version);
        let is_target = change.version == target;
        let regions = if is_target { regions } else { None };
        update(arm, image, &name, change.exclude_from_latest, regions).await?;
        if change.exclude_from_latest && !is_target {
            excluded.push(name);
        }
        target_updated |= is_target;
    }
    if !target_updated && regions.is_some() {
        update(
            arm,
            image,
            &name_of(listing, target),
            target_excluded,
            regions,
        )
        .await?;
    }
    Ok(excluded)
}

/// One update; a 409 is not an error when the version already is as wanted
/// (a concurrent or earlier attempt made the same change).
async fn update(
    arm: &ArmClient,
    image: &GalleryImage,
    name: &str,
    exclude_from_latest: bool,
    regions: Option<&[String]>,
) -> Result<(), ReleaseError> {
    match compute::update_version(arm, image, name, exclude_from_latest, regions).await {
        Ok(_) => Ok(()),
        Err(conflict @ ArmError::Conflict { .. }) => {
            let now = compute::get_version(arm, image, name).await?;
            let done = now.is_some_and(|v| {
                v.exclude_from_latest == exclude_from_latest
                    && regions.is_none_or(|r| same_regions(&v.target_regions, r))
            });
            if done { Ok(()) } else { Err(conflict.into()) }
        }
        Err(e) => Err(e.into()),
    }
}

/// One deletion; gone already, or a 409 because it is being deleted, is done.
async fn delete(arm: &ArmClient, image: &GalleryImage, name: &str) -> Result<(), ReleaseError> {
    match compute::delete_version(arm, image, name).await {
        Ok(_) => Ok(()),
        Err(conflict @ ArmError::Conflict { .. }) => {
            match compute::get_version(arm, image, name).await? {
                None => Ok(()),
                Some(v) if v.provisioning_state.as_deref() == Some(DELETING) => Ok(()),
                Some(_) => Err(conflict.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
