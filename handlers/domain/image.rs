//! Images as the factory sees them: one folder per image with its Packer
//! template and an `image.toml` saying how the factory treats it (version
//! strategy, base image, smoke test, approvers, release policy). Parsed and
//! checked here, once, from the file's text; reading the folder is
//! `config::load_images`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::gallery::PrunePolicy;
use super::version::{ImageVersion, VersionStrategy};

/// Name of an image's settings file inside its folder.
pub const IMAGE_FILE: &str = "image.toml";

/// One image definition: its template folder and how the factory treats it.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// The image's name (its folder's name).
    pub name: String,
    /// The folder holding the Packer template.
    pub dir: PathBuf,
    /// Settings from `image.toml`.
    pub settings: ImageSettings,
}

/// The contents of `image.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSettings {
    /// How versions are numbered.
    #[serde(default = "default_version")]
    pub version: VersionStrategy,
    /// The hardening baseline this image follows (tag `baselineVersion`).
    #[serde(default)]
    pub baseline_version: String,
    /// Gallery image definition name (tag `imageName`), if the image goes to a gallery.
    #[serde(default)]
    pub gallery_image_name: Option<String>,
    /// Tags stamped on every artifact besides the computed ones.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// How packer runs.
    #[serde(default)]
    pub packer: PackerSettings,
    /// What the template starts from, if the factory should know: a
    /// Marketplace image (watched for new versions) or another image of the
    /// factory (rebuilt on when that image is released).
    #[serde(default)]
    pub base_image: Option<BaseSource>,
    /// The test stage's smoke test.
    pub smoke: SmokeTest,
    /// Who approves.
    pub approval: ApprovalPolicy,
    /// How a release is published in the gallery (`[release]`).
    #[serde(default)]
    pub release: ReleaseSettings,
}

/// The `[release]` section: replication and the gallery's pruning policy.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSettings {
    /// Regions a released version is replicated to (`westeurope`, ...); empty:
    /// the version keeps the regions the build gave it.
    #[serde(default)]
    pub replication_regions: Vec<String>,
    /// Keep this many highest versions when pruning.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Keep versions published less than this many days ago when pruning.
    #[serde(default)]
    pub keep_days: Option<u32>,
    /// Versions never pruned (consumers pin them).
    #[serde(default)]
    pub pinned: Vec<ImageVersion>,
}

impl ReleaseSettings {
    /// The pruning policy these settings describe (nothing is pruned when
    /// neither `keep_last` nor `keep_days` is set).
    pub fn prune_policy(&self) -> PrunePolicy {
        PrunePolicy {
            keep_last: self.keep_last,
            keep_days: self.keep_days,
            pinned: self.pinned.clone(),
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.keep_last == Some(0) {
            return Err("[release] keep_last must be at least 1 (leave it out to keep every version by count)".into());
        }
        if self.keep_days == Some(0) {
            return Err("[release] keep_days must be at least 1 (leave it out to keep every version by age)".into());
        }
        for (i, region) in self.replication_regions.iter().enumerate() {
            let ok = !region.is_empty()
                && region.len() <= 64
                && region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
            if !ok {
                return Err(format!(
                    "[release] replication_regions: {region:?} is not an Azure region name (e.g. westeurope)"
                ));
            }
            if self.replication_regions[..i]
                .iter()
                .any(|r| region_key(r) == region_key(region))
            {
                return Err(format!(
                    "[release] replication_regions: {region} is listed twice"
                ));
            }
        }
        if let Some((_, dup)) = self
            .pinned
            .iter()
            .enumerate()
            .find(|(i, v)| self.pinned[..*i].contains(v))
        {
            return Err(format!("[release] pinned: {dup} is listed twice"));
        }
        Ok(())
    }
}

/// A region name as Azure compares them: `West Europe` and `westeurope` are one region.
pub fn region_key(region: &str) -> String {
    region
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn default_version() -> VersionStrategy {
    VersionStrategy::Date
}

impl ImageSettings {
    /// The Marketplace image the template starts from, if that is its base.
    pub fn marketplace_base(&self) -> Option<&BaseImage> {
        match &self.base_image {
            Some(BaseSource::Marketplace(base)) => Some(base),
            _ => None,
        }
    }

    /// The factory image this image is built on, if that is its base.
    pub fn parent(&self) -> Option<&str> {
        match &self.base_image {
            Some(BaseSource::Factory(parent)) => Some(parent),
            _ => None,
        }
    }
}

/// The `[base_image]` section: a Marketplace image (`publisher`, `offer`,
/// `sku`, `location`) or another image of the factory (`factory = "name"`),
/// whose latest released version the template receives as
/// `-var base_image_version=…`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BaseSection")]
pub enum BaseSource {
    /// A Marketplace image.
    Marketplace(BaseImage),
    /// An image of this factory, by name.
    Factory(String),
}

/// `[base_image]` as written, before it is told apart.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseSection {
    factory: Option<String>,
    publisher: Option<String>,
    offer: Option<String>,
    sku: Option<String>,
    location: Option<String>,
}

impl TryFrom<BaseSection> for BaseSource {
    type Error = String;

    fn try_from(s: BaseSection) -> Result<BaseSource, String> {
        match (s.factory, s.publisher, s.offer, s.sku, s.location) {
            (Some(factory), None, None, None, None) => {
                if is_valid_image_name(&factory) {
                    Ok(BaseSource::Factory(factory))
                } else {
                    Err(format!("[base_image] factory = {factory:?} is not an image name (a-z, 0-9 and -)"))
                }
            }
            (Some(_), ..) => Err(
                "[base_image] is either `factory = \"<image>\"` or a Marketplace image (publisher, offer, sku, location), not both".into(),
            ),
            (None, Some(publisher), Some(offer), Some(sku), Some(location)) => {
                Ok(BaseSource::Marketplace(BaseImage {
                    publisher,
                    offer,
                    sku,
                    location,
                }))
            }
            _ => Err(
                "[base_image] needs `factory = \"<image>\"`, or publisher, offer, sku and location of a Marketplace image".into(),
            ),
        }
    }
}

/// Checks the factory's image tree: every `[base_image] factory` names an
/// image of the factory, and no image is built, through its parents, on
/// itself. The error names the images.
pub fn check_parents(images: &BTreeMap<String, ImageConfig>) -> Result<(), String> {
    for (name, image) in images {
        let Some(parent) = image.settings.parent() else {
            continue;
        };
        if !images.contains_key(parent) {
            return Err(format!(
                "image {name} is built on {parent}, which is not an image of the factory (the images are: {}); add its folder or fix [base_image] factory",
                images.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let mut chain = vec![name.as_str()];
        let mut next = Some(parent);
        while let Some(current) = next {
            if let Some(at) = chain.iter().position(|n| *n == current) {
                chain.push(current);
                return Err(format!(
                    "images {} are built on each other; one of them must start from a Marketplace image or none",
                    chain[at..].join(" → ")
                ));
            }
            chain.push(current);
            next = images.get(current).and_then(|i| i.settings.parent());
        }
    }
    Ok(())
}

/// The images built directly on `parent`, by name.
pub fn children_of<'a>(images: &'a BTreeMap<String, ImageConfig>, parent: &str) -> Vec<&'a str> {
    images
        .iter()
        .filter(|(_, image)| image.settings.parent() == Some(parent))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// A Marketplace image: publisher, offer and SKU in a location.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    /// Publisher (`MicrosoftWindowsServer`).
    pub publisher: String,
    /// Offer (`WindowsServer`).
    pub offer: String,
    /// SKU (`2022-datacenter-azure-edition`).
    pub sku: String,
    /// Azure location whose catalogue is read (`westeurope`).
    pub location: String,
}

/// How the build stage runs packer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackerSettings {
    /// Extra `-var name=value` pairs.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The build is killed after this many minutes.
    #[serde(default = "default_build_minutes")]
    pub timeout_minutes: u64,
}

impl Default for PackerSettings {
    fn default() -> PackerSettings {
        PackerSettings {
            variables: BTreeMap::new(),
            timeout_minutes: default_build_minutes(),
        }
    }
}

fn default_build_minutes() -> u64 {
    120
}

/// The test stage's check: an HTTP request that must answer, or a command that must exit 0.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SmokeTest {
    /// GET a URL; it must answer `status` and contain `contains`, if given.
    Http {
        /// The URL.
        url: String,
        /// Expected status (default 200).
        #[serde(default = "default_status")]
        status: u16,
        /// Text the body must contain.
        #[serde(default)]
        contains: Option<String>,
        /// Give up after this many seconds.
        #[serde(default = "default_smoke_seconds")]
        timeout_seconds: u64,
    },
    /// Run a command in the template folder; it must exit 0.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Give up after this many seconds.
        #[serde(default = "default_smoke_seconds")]
        timeout_seconds: u64,
    },
}

fn default_status() -> u16 {
    200
}

fn default_smoke_seconds() -> u64 {
    60
}

/// Who decides whether a run is released.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// Approver names (email addresses in production).
    pub approvers: Vec<String>,
    /// Approvals needed (k of n).
    #[serde(default = "default_required")]
    pub required: u32,
    /// Hours before the request lapses.
    #[serde(default = "default_expiry_hours")]
    pub expires_hours: u32,
    /// Remind approvers who have not decided this many hours before the deadline (0: never).
    #[serde(default = "default_remind_hours")]
    pub remind_before_hours: u32,
}

fn default_remind_hours() -> u32 {
    24
}

fn default_required() -> u32 {
    1
}

fn default_expiry_hours() -> u32 {
    72
}

/// Parses and checks an `image.toml`.
pub fn parse_image_settings(text: &str) -> Result<ImageSettings, String> {
    let settings: ImageSettings = toml::from_str(text).map_err(|e| e.to_string())?;
    let policy = &settings.approval;
    if policy.approvers.is_empty() {
        return Err("[approval] approvers must name at least one approver".into());
    }
    if policy.required == 0 || policy.required as usize > policy.approvers.len() {
        return Err(format!(
            "[approval] required must be between 1 and the number of approvers ({})",
            policy.approvers.len()
        ));
    }
    if policy.expires_hours == 0 {
        return Err("[approval] expires_hours must be at least 1".into());
    }
    if policy.remind_before_hours >= policy.expires_hours {
        return Err(format!(
            "[approval] remind_before_hours must be less than expires_hours ({})",
            policy.expires_hours
        ));
    }
    if let Some(dup) = policy
        .approvers
        .iter()
        .enumerate()
        .find(|(i, a)| policy.approvers[..*i].contains(a))
    {
        return Err(format!("[approval] approver {} is listed twice", dup.1));
    }
    if settings.packer.timeout_minutes == 0 {
        return Err(
            "[packer] timeout_minutes must be at least 1 (leave it out for the default of 120): with 0 every build is stopped at once"
                .into(),
        );
    }
    if let SmokeTest::Command { argv, .. } = &settings.smoke
        && argv.is_empty()
    {
        return Err("[smoke.command] argv must name a program".into());
    }
    settings.release.check()?;
    Ok(settings)
}

/// Image names are folder names and part of run ids and resource names.
pub fn is_valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// How long a build may run.
pub fn build_timeout(image: &ImageConfig) -> Duration {
    Duration::from_secs(image.settings.packer.timeout_minutes.saturating_mul(60))
}

/// The newest of Marketplace version names (`20348.2849.241106`), compared
/// part by part as numbers; names that are not dotted numbers are ignored.
pub fn newest_marketplace_version(names: &[String]) -> Option<&str> {
    let key = |name: &str| -> Option<Vec<u64>> {
        name.split('.').map(|p| p.parse::<u64>().ok()).collect()
    };
    names
        .iter()
        .filter_map(|n| key(n).map(|k| (k, n.as_str())))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marketplace_versions_compare_as_numbers_not_text() {
        let names: Vec<String> = ["20348.999.240101", "20348.2849.241106", "latest", "9.1.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            newest_marketplace_version(&names),
            Some("20348.2849.241106")
        );
        assert_eq!(newest_marketplace_version(&[]), None);
    }
}
