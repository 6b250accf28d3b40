//! Microsoft.Compute calls the factory makes: gallery image versions (list,
//! read, promote through `excludeFromLatest`, replicate, delete) and the
//! Marketplace image versions a base image is watched through.

use serde_json::{Value, json};

use async_trait::async_trait;

use super::arm::{ArmClient, ArmError, provisioning_state};
use crate::domain::gallery::GalleryVersion;
use crate::domain::image::BaseImage;
use crate::domain::version::ImageVersion;
use crate::ports::PortError;
use crate::ports::marketplace::MarketplaceImages;

/// API version of the gallery calls (GalleryRP).
pub const GALLERY_API: &str = "2024-03-03";
/// API version of the virtual machine and Marketplace image calls (ComputeRP).
pub const COMPUTE_API: &str = "2024-07-01";

/// A gallery image definition: where an image's versions live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GalleryImage {
    /// Subscription id.
    pub subscription_id: String,
    /// The gallery's resource group.
    pub resource_group: String,
    /// The gallery.
    pub gallery: String,
    /// The image definition.
    pub image: String,
}

impl GalleryImage {
    /// The resource id of one version, as `az sig image-version show --query id` prints it.
    pub fn version_id(&self, version: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}/versions/{}",
            self.subscription_id, self.resource_group, self.gallery, self.image, version
        )
    }

    /// The gallery image and version name of a version's resource id (what
    /// the build records as the gallery version id); `None` for any other id.
    pub fn parse_version_id(id: &str) -> Option<(GalleryImage, String)> {
        let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
        let [
            subscriptions,
            subscription_id,
            groups,
            resource_group,
            providers,
            provider,
            galleries,
            gallery,
            images,
            image,
            versions,
            version,
        ] = parts.as_slice()
        else {
            return None;
        };
        let shaped = subscriptions.eq_ignore_ascii_case("subscriptions")
            && groups.eq_ignore_ascii_case("resourceGroups")
            && providers.eq_ignore_ascii_case("providers")
            && provider.eq_ignore_ascii_case("Microsoft.Compute")
            && galleries.eq_ignore_ascii_case("galleries")
            && images.eq_ignore_ascii_case("images")
            && versions.eq_ignore_ascii_case("versions");
        let named = [subscription_id, resource_group, gallery, image, version]
            .iter()
            .all(|s| !s.is_empty() && !s.contains(['?', '#', '&']));
        (shaped && named).then(|| {
            (
                GalleryImage {
                    subscription_id: subscription_id.to_string(),
                    resource_group: resource_group.to_string(),
                    gallery: gallery.to_string(),
                    image: image.to_string(),
                },
                version.to_string(),
            )
        })
    }

    fn versions_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}/versions?api-version={GALLERY_API}",
            self.subscription_id, self.resource_group, self.gallery, self.image
        )
    }

    fn version_path(&self, version: &str) -> String {
        format!("{}?api-version={GALLERY_API}", self.version_id(version))
    }
}

/// A gallery image version as Resource Manager describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Its name (`1.2.3`).
    pub name: String,
    /// Its resource id.
    pub id: String,
    /// `Creating`, `Succeeded`, `Failed`, ...
    pub provisioning_state: Option<String>,
    /// `publishingProfile.excludeFromLatest`.
    pub exclude_from_latest: bool,
    /// `publishingProfile.publishedDate`.
    pub published: Option<chrono::DateTime<chrono::Utc>>,
    /// Names of the regions it is replicated to.
    pub target_regions: Vec<String>,
}

/// The provisioning state of a version Resource Manager is deleting.
pub const DELETING: &str = "Deleting";

impl VersionInfo {
    fn from_json(value: &Value) -> Result<VersionInfo, ArmError> {
        let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
        let name = text("/name")
            .ok_or_else(|| ArmError::Decode("a gallery image version without a name".into()))?
            .to_string();
        Ok(VersionInfo {
            id: text("/id").unwrap_or_default().to_string(),
            provisioning_state: provisioning_state(value),
            exclude_from_latest: value
                .pointer("/properties/publishingProfile/excludeFromLatest")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            published: text("/properties/publishingProfile/publishedDate")
                .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&chrono::Utc)),
            target_regions: value
                .pointer("/properties/publishingProfile/targetRegions")
                .and_then(Value::as_array)
                .map(|regions| {
                    regions
                        .iter()
                        .filter_map(|r| r.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            name,
        })
    }

    /// The version as the gallery policy sees it; `None` for a name that is
    /// not `Major.Minor.Patch` (such versions are left alone).
    pub fn policy_view(&self) -> Option<GalleryVersion> {
        Some(GalleryVersion {
            version: self.name.parse::<ImageVersion>().ok()?,
            published: self.published,
            exclude_from_latest: self.exclude_from_latest,
        })
    }
}

/// Every version of a gallery image.
pub async fn list_versions(
    arm: &ArmClient,
    image: &GalleryImage,
) -> Result<Vec<VersionInfo>, ArmError> {
    arm.list(&image.versions_path())
        .await?
        .iter()
        .map(VersionInfo::from_json)
        .collect()
}

/// One version, `None` when the gallery does not have it.
pub async fn get_version(
    arm: &ArmClient,
    image: &GalleryImage,
    version: &str,
) -> Result<Option<VersionInfo>, ArmError> {
    match arm.get_optional(&image.version_path(version)).await? {
        Some(value) => Ok(Some(VersionInfo::from_json(&value)?)),
        None => Ok(None),
    }
}

/// Sets a version's `excludeFromLatest` (and, when `regions` is given, its
/// replication regions, one replica each) and waits for the update.
pub async fn update_version(
    arm: &ArmClient,
    image: &GalleryImage,
    version: &str,
    exclude_from_latest: bool,
    regions: Option<&[String]>,
) -> Result<VersionInfo, ArmError> {
    let mut profile = json!({ "excludeFromLatest": exclude_from_latest });
    if let Some(regions) = regions {
        profile["targetRegions"] = Value::Array(
            regions
                .iter()
                .map(|r| {
                    json!({
                        "name": r,
                        "regionalReplicaCount": 1,
                        "excludeFromLatest": exclude_from_latest
                    })
                })
                .collect(),
        );
    }
    // GalleryRP 2024-03-03 requires `storageProfile` in an update too; an
    // empty one leaves the version's source as it is.
    let body = json!({ "properties": { "publishingProfile": profile, "storageProfile": {} } });
    let value = arm.patch(&image.version_path(version), &body).await?;
    VersionInfo::from_json(&value)
}

/// Deletes a version; false when it was already gone.
pub async fn delete_version(
    arm: &ArmClient,
    image: &GalleryImage,
    version: &str,
) -> Result<bool, ArmError> {
    arm.delete(&image.version_path(version)).await
}

/// The Marketplace versions of a base image (`GET .../vmimage/offers/{offer}/skus/{sku}/versions`).
pub async fn marketplace_versions(
    arm: &ArmClient,
    subscription_id: &str,
    base: &BaseImage,
) -> Result<Vec<String>, ArmError> {
    let path = format!(
        "/subscriptions/{subscription_id}/providers/Microsoft.Compute/locations/{}/publishers/{}/artifacttypes/vmimage/offers/{}/skus/{}/versions?api-version={COMPUTE_API}",
        base.location, base.publisher, base.offer, base.sku
    );
    Ok(arm
        .list(&path)
        .await?
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect())
}

/// The Marketplace through Resource Manager: the Marketplace port's adapter.
#[derive(Clone, Debug)]
pub struct AzureMarketplace {
    /// The Resource Manager client.
    pub arm: ArmClient,
    /// The subscription whose catalogue is read.
    pub subscription_id: String,
}

#[async_trait]
impl MarketplaceImages for AzureMarketplace {
    async fn versions(&self, base: &BaseImage) -> Result<Vec<String>, PortError> {
        Ok(marketplace_versions(&self.arm, &self.subscription_id, base).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_id_is_the_one_the_cli_shows() {
        let image = GalleryImage {
            subscription_id: "sub".into(),
            resource_group: "rg-img-gallery".into(),
            gallery: "acg_shared".into(),
            image: "windows-web-base".into(),
        };
        assert_eq!(
            image.version_id("2026.1125.0"),
            "/subscriptions/sub/resourceGroups/rg-img-gallery/providers/Microsoft.Compute/galleries/acg_shared/images/windows-web-base/versions/2026.1125.0"
        );
        assert_eq!(
            GalleryImage::parse_version_id(&image.version_id("2026.1125.0")),
            Some((image.clone(), "2026.1125.0".to_string()))
        );
        assert_eq!(
            GalleryImage::parse_version_id(
                "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/images/managed"
            ),
            None,
            "a managed image is not a gallery version"
        );
    }
}
