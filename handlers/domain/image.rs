//! Images as the factory sees them: one folder per image with its Packer
//! template and an `image.toml` saying how the factory treats it (version
//! strategy, base image, smoke test, approvers, release policy). Parsed and
//! checked here, once, from the file's text; reading the folder is
//! `config::load_images`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::declaration::{CheckerKind, DeclareSettings};
use super::gallery::PrunePolicy;
use super::patch_gate::PatchSettings;
use super::version::{ImageVersion, MAX_PART, VersionStrategy};

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
    /// The gallery image definition the image's versions are published to
    /// (`[gallery]`), which the factory creates or updates before a build.
    #[serde(default)]
    pub gallery: Option<GallerySettings>,
    /// The test stage's patch gate (`[patch]`), for an image whose build
    /// collects patch evidence; `None`: the image is not gated.
    #[serde(default)]
    pub patch: Option<PatchSettings>,
    /// How the image's scheduled runs behave (`[schedule]`).
    #[serde(default)]
    pub schedule: ScheduleSettings,
    /// What every VM made from the image contains (`[declare]`), which the
    /// test stage checks after the smoke test; `None`: nothing declared.
    #[serde(default)]
    pub declare: Option<DeclareSettings>,
}

/// The `[schedule]` section: when the image's scheduled runs (Patch
/// Tuesday, base image updates) pause (`super::pause`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Consecutive failed scheduled runs after which the image's scheduled
    /// triggers pause, until a release or an operator's resume.
    #[serde(default = "default_pause_after")]
    pub pause_after_failures: u32,
}

impl Default for ScheduleSettings {
    fn default() -> ScheduleSettings {
        ScheduleSettings {
            pause_after_failures: default_pause_after(),
        }
    }
}

/// The `[gallery]` section: the gallery image definition of an image that
/// publishes to the Azure Compute Gallery, as the factory creates (or
/// updates) it before the image's build. Every key has a default: an image
/// with `gallery_image_name` and no `[gallery]` gets a Windows, generalised,
/// Hyper-V generation 2 definition that supports Trusted Launch.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GallerySettings {
    /// The definition's publisher (its identifier's first part).
    #[serde(default = "default_publisher")]
    pub publisher: String,
    /// The definition's offer.
    #[serde(default = "default_offer")]
    pub offer: String,
    /// The definition's SKU; by default the definition's name, which is
    /// unique in the gallery as the identifier must be.
    #[serde(default)]
    pub sku: Option<String>,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// `Windows` or `Linux`.
    #[serde(default)]
    pub os_type: OsType,
    /// `Generalized` or `Specialized`.
    #[serde(default)]
    pub os_state: OsState,
    /// `V1` or `V2`.
    #[serde(default)]
    pub hyper_v_generation: HyperVGeneration,
    /// The `SecurityType` feature.
    #[serde(default)]
    pub security_type: SecurityType,
    /// The recommended machine (`[gallery.recommended]`).
    #[serde(default)]
    pub recommended: Option<Recommended>,
}

impl Default for GallerySettings {
    fn default() -> GallerySettings {
        GallerySettings {
            publisher: default_publisher(),
            offer: default_offer(),
            sku: None,
            description: None,
            os_type: OsType::default(),
            os_state: OsState::default(),
            hyper_v_generation: HyperVGeneration::default(),
            security_type: SecurityType::default(),
            recommended: None,
        }
    }
}

fn default_publisher() -> String {
    "ImageFactory".into()
}

fn default_offer() -> String {
    "image-factory".into()
}

/// The OS a definition's versions hold.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum OsType {
    /// Windows.
    #[default]
    Windows,
    /// Linux.
    Linux,
}

/// Whether a definition's versions are generalised.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum OsState {
    /// Generalised (sysprep, waagent -deprovision): the factory's images.
    #[default]
    Generalized,
    /// Specialised.
    Specialized,
}

/// The Hyper-V generation of a definition's VMs.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum HyperVGeneration {
    /// Generation 1.
    V1,
    /// Generation 2 (UEFI): what Trusted Launch needs.
    #[default]
    V2,
}

/// The `SecurityType` feature of a definition: which security types its
/// versions' VMs may (or must) have.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum SecurityType {
    /// Standard VMs only.
    Standard,
    /// Standard or Trusted Launch VMs (a Trusted Launch build publishes here).
    #[default]
    TrustedLaunchSupported,
    /// Trusted Launch VMs only.
    TrustedLaunch,
    /// Standard or confidential VMs.
    #[serde(rename = "ConfidentialVMSupported")]
    ConfidentialVmSupported,
    /// Confidential VMs only.
    #[serde(rename = "ConfidentialVM")]
    ConfidentialVm,
    /// Trusted Launch or confidential VMs.
    TrustedLaunchAndConfidentialVmSupported,
}

impl SecurityType {
    /// The feature's value as Azure writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            SecurityType::Standard => "Standard",
            SecurityType::TrustedLaunchSupported => "TrustedLaunchSupported",
            SecurityType::TrustedLaunch => "TrustedLaunch",
            SecurityType::ConfidentialVmSupported => "ConfidentialVMSupported",
            SecurityType::ConfidentialVm => "ConfidentialVM",
            SecurityType::TrustedLaunchAndConfidentialVmSupported => {
                "TrustedLaunchAndConfidentialVmSupported"
            }
        }
    }
}

/// `[gallery.recommended]`: the machine a definition recommends.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Recommended {
    /// The fewest vCPUs.
    #[serde(default)]
    pub vcpus_min: Option<u32>,
    /// The most vCPUs.
    #[serde(default)]
    pub vcpus_max: Option<u32>,
    /// The least memory, in GB.
    #[serde(default)]
    pub memory_gb_min: Option<u32>,
    /// The most memory, in GB.
    #[serde(default)]
    pub memory_gb_max: Option<u32>,
}

/// What a gallery image definition is: its name and settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GalleryDefinition {
    /// The definition's name in the gallery.
    pub name: String,
    /// Its identifier's SKU (the settings' `sku`, else the name).
    pub sku: String,
    /// The `[gallery]` settings.
    pub settings: GallerySettings,
}

/// Whether `name` may name an Azure resource of the gallery: 1 to `max`
/// characters of letters, digits, `.`, `-` and `_`, starting and ending
/// with a letter or digit.
fn is_gallery_name(name: &str, max: usize) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && edge(name.chars().next())
        && edge(name.chars().last())
}

impl GallerySettings {
    fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("publisher", Some(&self.publisher)),
            ("offer", Some(&self.offer)),
            ("sku", self.sku.as_ref()),
        ] {
            if let Some(value) = value
                && !is_gallery_name(value, 128)
            {
                return Err(format!(
                    "[gallery] {key} = {value:?} must be 1-128 characters of letters, digits, '.', '-' and '_', starting and ending with a letter or digit"
                ));
            }
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2048)
        {
            return Err("[gallery] description must be at most 2048 characters".into());
        }
        if self.security_type != SecurityType::Standard
            && self.hyper_v_generation != HyperVGeneration::V2
        {
            return Err(format!(
                "[gallery] security_type = \"{}\" needs hyper_v_generation = \"V2\": Trusted Launch and confidential VMs are generation 2 only",
                self.security_type.as_str()
            ));
        }
        if let Some(r) = &self.recommended {
            for (range, value) in [
                (GALLERY_VCPUS, r.vcpus_min),
                (GALLERY_VCPUS, r.vcpus_max),
                (GALLERY_MEMORY_GB, r.memory_gb_min),
                (GALLERY_MEMORY_GB, r.memory_gb_max),
            ] {
                if let Some(value) = value {
                    range.check(u64::from(value))?;
                }
            }
            for (what, min, max) in [
                ("vcpus", r.vcpus_min, r.vcpus_max),
                ("memory_gb", r.memory_gb_min, r.memory_gb_max),
            ] {
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    return Err(format!(
                        "[gallery.recommended] {what}_min ({min}) is more than {what}_max ({max})"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks `[patch]`: its numbers within their ranges, a product the patch
/// rules know.
fn check_patch(patch: &PatchSettings) -> Result<(), String> {
    PATCH_GRACE_DAYS.check(u64::from(patch.grace_days))?;
    UNVERIFIED_AFTER_HOURS.check(u64::from(patch.unverified_after_hours))?;
    let known = super::patch::known_products();
    if !known.contains(&patch.product) {
        return Err(format!(
            "[patch] product = {:?} is not a product the patch rules know: write one of {}",
            super::controls::escape_controls(&patch.product, super::controls::Lines::Escape),
            known
                .iter()
                .map(|p| format!("{p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Whether `name` may be declared: 1-80 characters of letters, digits,
/// `-`, `_` and `.`, starting with a letter or digit. The checker gets
/// each list as one comma-separated parameter, and Run Command trips on
/// some characters (`&`): names of Windows features, language tags and
/// service names need none of them.
fn is_declared_name(name: &str) -> bool {
    name.len() <= 80
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks `[declare]`: something declared, each list within its count,
/// every name of the characters a checker can take and none twice, the
/// Defender age within its range, a checker the test stage can run.
fn check_declare(declare: &DeclareSettings) -> Result<(), String> {
    for (range, key, names) in [
        (DECLARE_FEATURES, "features", &declare.features),
        (
            DECLARE_LANGUAGE_PACKS,
            "language_packs",
            &declare.language_packs,
        ),
        (DECLARE_SERVICES, "services", &declare.services),
    ] {
        range.check(names.len() as u64)?;
        for (i, name) in names.iter().enumerate() {
            if !is_declared_name(name) {
                return Err(format!(
                    "[declare] {key}: {:?} must be 1-80 characters of letters, digits, '-', '_' and '.', starting with a letter or digit",
                    super::controls::escape_controls(name, super::controls::Lines::Escape)
                ));
            }
            if names[..i].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(format!("[declare] {key}: {name} is listed twice"));
            }
        }
    }
    let profiles = &declare.firewall_profiles;
    if let Some((_, dup)) = profiles
        .iter()
        .enumerate()
        .find(|(i, p)| profiles[..*i].contains(p))
    {
        return Err(format!(
            "[declare] firewall_profiles: {} is listed twice",
            dup.as_str()
        ));
    }
    if let Some(hours) = declare.defender_signature_max_age_hours {
        DECLARE_DEFENDER_MAX_AGE_HOURS.check(u64::from(hours))?;
    }
    if declare.is_empty() {
        return Err(
            "[declare] declares nothing: list features, language_packs, firewall_profiles or services, or set defender_signature_max_age_hours (or leave the table out)".into(),
        );
    }
    let checker = &declare.checker;
    let plain = !checker.is_empty()
        && checker.len() <= 200
        && !checker.starts_with('/')
        && checker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && checker
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain || CheckerKind::of(checker).is_none() {
        return Err(format!(
            "[declare] checker = {:?} must be a path inside the image's folder (letters, digits, '-', '_', '.', '/'; no '..') ending in .ps1 (run on the Azure test VM through Run Command) or .sh (run on this machine)",
            super::controls::escape_controls(checker, super::controls::Lines::Escape)
        ));
    }
    Ok(())
}

fn default_pause_after() -> u32 {
    super::pause::DEFAULT_PAUSE_AFTER
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
        if let Some(keep_last) = self.keep_last {
            KEEP_LAST.check(u64::from(keep_last))?;
        }
        if let Some(keep_days) = self.keep_days {
            KEEP_DAYS.check(u64::from(keep_days))?;
        }
        REPLICATION_REGIONS.check(self.replication_regions.len() as u64)?;
        PINNED.check(self.pinned.len() as u64)?;
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

    /// The gallery image definition of image `name`, when it publishes to
    /// the gallery (it sets `gallery_image_name` or has a `[gallery]`
    /// section): named `gallery_image_name`, else the image's name.
    pub fn gallery_definition(&self, name: &str) -> Option<GalleryDefinition> {
        if self.gallery.is_none() && self.gallery_image_name.is_none() {
            return None;
        }
        let definition = self.gallery_image_name.as_deref().unwrap_or(name);
        let settings = self.gallery.clone().unwrap_or_default();
        Some(GalleryDefinition {
            name: definition.to_string(),
            sku: settings
                .sku
                .clone()
                .unwrap_or_else(|| definition.to_string()),
            settings,
        })
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
                    Err(format!("[base_image] factory = {factory:?} is not an image name: {IMAGE_NAME_RULE}"))
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

/// Why `name`'s chain of parents is broken, if it is: a parent that is not
/// an image of `parents` (each valid image and the image it is built on),
/// or images built on each other.
pub fn parent_problem(
    name: &str,
    parent: Option<&str>,
    parents: &BTreeMap<String, Option<String>>,
) -> Option<String> {
    let mut chain = vec![name];
    let mut next = parent;
    while let Some(current) = next {
        if chain.contains(&current) {
            chain.push(current);
            return Some(format!(
                "images {} are built on each other; one of them must start from a Marketplace image or none",
                chain.join(" → ")
            ));
        }
        let Some(up) = parents.get(current) else {
            return Some(format!(
                "[base_image] factory = \"{current}\" is not an image at this commit (no folder with a valid image.toml); add it or fix [base_image]"
            ));
        };
        chain.push(current);
        next = up.as_deref();
    }
    None
}

/// The line of an `image.toml` (`text`) a settings error (`message`) is
/// about: the parser's own `line N`, else the line of the `[section] key`
/// the message names.
pub fn settings_error_line(text: &str, message: &str) -> Option<usize> {
    if let Some(at) = message.find("line ") {
        let digits: String = message[at + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(line) = digits.parse() {
            return Some(line);
        }
    }
    let rest = message.strip_prefix('[')?;
    let (section, rest) = rest.split_once(']')?;
    let key: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            in_section = header == section || header.starts_with(&format!("{section}."));
        } else if in_section
            && !key.is_empty()
            && line
                .strip_prefix(key.as_str())
                .is_some_and(|after| after.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
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
    /// Remind approvers who have not decided this many hours before the
    /// deadline (0: never); unset, derived from the expiry
    /// ([`ApprovalPolicy::remind_before_hours`]).
    #[serde(default, rename = "remind_before_hours")]
    remind_before: Option<u32>,
}

impl ApprovalPolicy {
    /// Hours before the deadline at which approvers who have not decided
    /// are reminded (0: never): as set, or a third of `expires_hours`
    /// rounded down (24 of the default 72, 8 of 24; no reminder for an
    /// expiry under 3 hours). Always below `expires_hours`: a set value
    /// that is not is refused when the file is read.
    pub fn remind_before_hours(&self) -> u32 {
        self.remind_before
            .unwrap_or(self.expires_hours / REMIND_FRACTION)
    }
}

/// The default reminder comes after this fraction of the expiry's hours
/// are left (a third).
const REMIND_FRACTION: u32 = 3;

fn default_required() -> u32 {
    1
}

fn default_expiry_hours() -> u32 {
    72
}

/// A documented range of a number in `image.toml`: a duration or a count,
/// checked when the file is read so that no stage meets a value it cannot
/// compute with (docs/configuration.md and docs/security.md list them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// The key, as written in the file (`[approval] expires_hours`).
    pub key: &'static str,
    /// The least value allowed.
    pub min: u64,
    /// The greatest value allowed.
    pub max: u64,
    /// What the number counts (`hours`, `approvers`).
    pub unit: &'static str,
    /// What to do instead, when the range alone does not say it.
    pub hint: &'static str,
}

impl Range {
    /// `value`, if within the range; otherwise an error naming the key and the range.
    pub fn check(&self, value: u64) -> Result<(), String> {
        if (self.min..=self.max).contains(&value) {
            return Ok(());
        }
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        Err(format!(
            "{} must be from {} to {}{unit}, not {value}{}",
            self.key, self.min, self.max, self.hint
        ))
    }
}

/// `[packer] timeout_minutes`: a day at most.
pub const PACKER_TIMEOUT_MINUTES: Range = Range {
    key: "[packer] timeout_minutes",
    min: 1,
    max: 1440,
    unit: "minutes",
    hint: " (leave it out for the default of 120)",
};
/// `[smoke.http] timeout_seconds`: an hour at most.
pub const SMOKE_HTTP_TIMEOUT_SECONDS: Range = Range {
    key: "[smoke.http] timeout_seconds",
    min: 1,
    max: 3600,
    unit: "seconds",
    hint: " (leave it out for the default of 60)",
};
/// `[smoke.command] timeout_seconds`: an hour at most.
pub const SMOKE_COMMAND_TIMEOUT_SECONDS: Range = Range {
    key: "[smoke.command] timeout_seconds",
    min: 1,
    max: 3600,
    unit: "seconds",
    hint: " (leave it out for the default of 60)",
};
/// `[smoke.http] status`: an HTTP status code.
pub const SMOKE_HTTP_STATUS: Range = Range {
    key: "[smoke.http] status",
    min: 100,
    max: 599,
    unit: "(an HTTP status code)",
    hint: "",
};
/// `[approval] approvers`: how many people are asked.
pub const APPROVERS: Range = Range {
    key: "[approval] approvers",
    min: 1,
    max: 50,
    unit: "approvers",
    hint: "",
};
/// `[approval] expires_hours`: thirty days at most.
pub const EXPIRES_HOURS: Range = Range {
    key: "[approval] expires_hours",
    min: 1,
    max: 720,
    unit: "hours",
    hint: " (leave it out for the default of 72)",
};
/// `[release] keep_last`.
pub const KEEP_LAST: Range = Range {
    key: "[release] keep_last",
    min: 1,
    max: 1000,
    unit: "versions",
    hint: " (leave it out to keep every version by count)",
};
/// `[release] keep_days`: ten years at most.
pub const KEEP_DAYS: Range = Range {
    key: "[release] keep_days",
    min: 1,
    max: 3650,
    unit: "days",
    hint: " (leave it out to keep every version by age)",
};
/// `[release] replication_regions`: how many regions.
pub const REPLICATION_REGIONS: Range = Range {
    key: "[release] replication_regions",
    min: 0,
    max: 100,
    unit: "regions",
    hint: "",
};
/// `[release] pinned`: how many versions.
pub const PINNED: Range = Range {
    key: "[release] pinned",
    min: 0,
    max: 100,
    unit: "versions",
    hint: "",
};
/// `[tags]`: Azure allows 50 tags on a resource, and the factory adds five.
pub const TAGS: Range = Range {
    key: "[tags]",
    min: 0,
    max: 45,
    unit: "tags",
    hint: " (Azure allows 50 on a resource and the factory adds gitRef, imageVersion, imageName, buildDate and baselineVersion)",
};
/// `[version] major` of the semver strategy: a gallery version part.
pub const SEMVER_MAJOR: Range = Range {
    key: "[version] major",
    min: 0,
    max: MAX_PART as u64,
    unit: "",
    hint: " (the gallery stores each version part as an int32)",
};
/// `[version] minor` of the semver strategy.
pub const SEMVER_MINOR: Range = Range {
    key: "[version] minor",
    min: 0,
    max: MAX_PART as u64,
    unit: "",
    hint: " (the gallery stores each version part as an int32)",
};

/// `[gallery.recommended] vcpus_min` and `vcpus_max`.
pub const GALLERY_VCPUS: Range = Range {
    key: "[gallery.recommended] vcpus",
    min: 1,
    max: 1024,
    unit: "vCPUs",
    hint: " (vcpus_min and vcpus_max)",
};
/// `[gallery.recommended] memory_gb_min` and `memory_gb_max`.
pub const GALLERY_MEMORY_GB: Range = Range {
    key: "[gallery.recommended] memory_gb",
    min: 1,
    max: 16384,
    unit: "GB",
    hint: " (memory_gb_min and memory_gb_max)",
};
/// `[patch] grace_days`: less than the 28 days between two Patch Tuesdays.
pub const PATCH_GRACE_DAYS: Range = Range {
    key: "[patch] grace_days",
    min: 0,
    max: 27,
    unit: "days",
    hint: " (a longer grace would outlast the next month; leave it out for 0)",
};
/// `[patch] unverified_after_hours`: a week at most.
pub const UNVERIFIED_AFTER_HOURS: Range = Range {
    key: "[patch] unverified_after_hours",
    min: 1,
    max: 168,
    unit: "hours",
    hint: " (leave it out for the default of 24)",
};
/// `[schedule] pause_after_failures`.
pub const PAUSE_AFTER_FAILURES: Range = Range {
    key: "[schedule] pause_after_failures",
    min: 1,
    max: 20,
    unit: "failed scheduled runs",
    hint: " (leave it out for the default of 3)",
};

/// `[declare] features`: how many Windows features.
pub const DECLARE_FEATURES: Range = Range {
    key: "[declare] features",
    min: 0,
    max: 50,
    unit: "features",
    hint: "",
};
/// `[declare] language_packs`: how many language packs.
pub const DECLARE_LANGUAGE_PACKS: Range = Range {
    key: "[declare] language_packs",
    min: 0,
    max: 20,
    unit: "language packs",
    hint: "",
};
/// `[declare] services`: how many services.
pub const DECLARE_SERVICES: Range = Range {
    key: "[declare] services",
    min: 0,
    max: 50,
    unit: "services",
    hint: "",
};
/// `[declare] defender_signature_max_age_hours`: thirty days at most.
pub const DECLARE_DEFENDER_MAX_AGE_HOURS: Range = Range {
    key: "[declare] defender_signature_max_age_hours",
    min: 1,
    max: 720,
    unit: "hours",
    hint: " (leave it out not to check Defender)",
};

/// Every range `image.toml`'s numbers are held to (`[approval] required`
/// is between 1 and the number of approvers, `remind_before_hours` below
/// `expires_hours`; both are checked beside these).
pub const RANGES: [Range; 22] = [
    PACKER_TIMEOUT_MINUTES,
    SMOKE_HTTP_TIMEOUT_SECONDS,
    SMOKE_COMMAND_TIMEOUT_SECONDS,
    SMOKE_HTTP_STATUS,
    APPROVERS,
    EXPIRES_HOURS,
    KEEP_LAST,
    KEEP_DAYS,
    REPLICATION_REGIONS,
    PINNED,
    TAGS,
    SEMVER_MAJOR,
    SEMVER_MINOR,
    GALLERY_VCPUS,
    GALLERY_MEMORY_GB,
    PATCH_GRACE_DAYS,
    UNVERIFIED_AFTER_HOURS,
    PAUSE_AFTER_FAILURES,
    DECLARE_FEATURES,
    DECLARE_LANGUAGE_PACKS,
    DECLARE_SERVICES,
    DECLARE_DEFENDER_MAX_AGE_HOURS,
];

/// Parses and checks an `image.toml`: every number within its [`Range`].
pub fn parse_image_settings(text: &str) -> Result<ImageSettings, String> {
    let settings: ImageSettings = toml::from_str(text).map_err(|e| e.to_string())?;
    if let VersionStrategy::Semver { major, minor } = settings.version {
        SEMVER_MAJOR.check(u64::from(major))?;
        SEMVER_MINOR.check(u64::from(minor))?;
    }
    TAGS.check(settings.tags.len() as u64)?;
    let policy = &settings.approval;
    APPROVERS.check(policy.approvers.len() as u64)?;
    if policy.required == 0 || policy.required as usize > policy.approvers.len() {
        return Err(format!(
            "[approval] required must be between 1 and the number of approvers ({})",
            policy.approvers.len()
        ));
    }
    EXPIRES_HOURS.check(u64::from(policy.expires_hours))?;
    if policy.remind_before_hours() >= policy.expires_hours {
        return Err(format!(
            "[approval] remind_before_hours must be from 0 to {} hours (less than expires_hours, {}; 0 sends no reminder), not {} (leave it out for a third of expires_hours)",
            policy.expires_hours - 1,
            policy.expires_hours,
            policy.remind_before_hours()
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
    PACKER_TIMEOUT_MINUTES.check(settings.packer.timeout_minutes)?;
    match &settings.smoke {
        SmokeTest::Command {
            argv,
            timeout_seconds,
        } => {
            if argv.is_empty() {
                return Err("[smoke.command] argv must name a program".into());
            }
            SMOKE_COMMAND_TIMEOUT_SECONDS.check(*timeout_seconds)?;
        }
        SmokeTest::Http {
            status,
            timeout_seconds,
            ..
        } => {
            SMOKE_HTTP_STATUS.check(u64::from(*status))?;
            SMOKE_HTTP_TIMEOUT_SECONDS.check(*timeout_seconds)?;
        }
    }
    settings.release.check()?;
    if let Some(name) = &settings.gallery_image_name
        && !is_gallery_name(name, 80)
    {
        return Err(format!(
            "gallery_image_name = {name:?} must be 1-80 characters of letters, digits, '.', '-' and '_', starting and ending with a letter or digit (an Azure gallery image definition's name)"
        ));
    }
    if let Some(gallery) = &settings.gallery {
        gallery.check()?;
    }
    if let Some(patch) = &settings.patch {
        check_patch(patch)?;
    }
    PAUSE_AFTER_FAILURES.check(u64::from(settings.schedule.pause_after_failures))?;
    if let Some(declare) = &settings.declare {
        check_declare(declare)?;
    }
    Ok(settings)
}

/// The rule an image's name follows, as the errors and the docs say it.
pub const IMAGE_NAME_RULE: &str = "an image's name (its folder's name) must be 1-64 characters of a-z, 0-9 and -, must start with a letter or digit, and must make a git tag name (<image>/<version>, see docs/git-tags.md)";

/// Image names are folder names and part of run ids, resource names and git
/// tags (`<image>/<version>`): 1-64 characters of `a-z`, `0-9` and `-`,
/// starting with a letter or digit (never `-`, which `git tag` would read as
/// an option, nor `.`), and valid as a git ref name component
/// ([`super::git_tag::ref_name_rule_broken`]).
pub fn is_valid_image_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && super::git_tag::ref_name_rule_broken(name).is_none()
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
    fn a_gallery_definition_defaults_to_a_trusted_launch_windows_gen2_one_and_refuses_what_azure_would()
     {
        let top = |line: &str| format!("{line}\n{}", with(""));
        let named =
            parse_image_settings(&top("gallery_image_name = \"windows-web-base\"")).expect("valid");
        let definition = named
            .gallery_definition("web")
            .expect("it publishes to the gallery");
        assert_eq!(definition.name, "windows-web-base");
        assert_eq!(definition.sku, "windows-web-base");
        assert_eq!(definition.settings, GallerySettings::default());
        assert_eq!(definition.settings.os_type, OsType::Windows);
        assert_eq!(definition.settings.os_state, OsState::Generalized);
        assert_eq!(definition.settings.hyper_v_generation, HyperVGeneration::V2);
        assert_eq!(
            definition.settings.security_type.as_str(),
            "TrustedLaunchSupported"
        );
        let plain = parse_image_settings(&with("")).expect("valid");
        assert_eq!(
            plain.gallery_definition("web"),
            None,
            "no gallery, no definition"
        );

        let set = parse_image_settings(&with(
            "[gallery]\npublisher = \"Contoso\"\noffer = \"Linux\"\nsku = \"ubuntu-24.04\"\nos_type = \"Linux\"\nsecurity_type = \"ConfidentialVMSupported\"\n[gallery.recommended]\nvcpus_min = 2\nvcpus_max = 16",
        ))
        .expect("valid");
        let definition = set.gallery_definition("linux").expect("a definition");
        assert_eq!(
            (definition.name.as_str(), definition.sku.as_str()),
            ("linux", "ubuntu-24.04")
        );
        assert_eq!(
            definition.settings.security_type,
            SecurityType::ConfidentialVmSupported
        );

        for (section, expected) in [
            ("[gallery]\nos_type = \"Windows2022\"", "unknown variant"),
            (
                "[gallery]\nsecurity_type = \"trustedlaunch\"",
                "unknown variant",
            ),
            (
                "[gallery]\nhyper_v_generation = \"V1\"",
                "generation 2 only",
            ),
            (
                "[gallery]\npublisher = \"Contoso Ltd\"",
                "[gallery] publisher",
            ),
            ("[gallery]\nsku = \"x.\"", "[gallery] sku"),
            ("[gallery]\nsize = 3", "size"),
            (
                "[gallery.recommended]\nvcpus_min = 8\nvcpus_max = 4",
                "vcpus_min (8) is more than vcpus_max (4)",
            ),
        ] {
            let error = parse_image_settings(&with(section)).expect_err(section);
            assert!(error.contains(expected), "{section}: {error}");
        }
        let error = parse_image_settings(&top("gallery_image_name = \"web base\""))
            .expect_err("a name Azure refuses");
        assert!(error.contains("gallery_image_name"), "{error}");
        let gen1 = parse_image_settings(&with(
            "[gallery]\nhyper_v_generation = \"V1\"\nsecurity_type = \"Standard\"",
        ))
        .expect("a standard gen 1 definition");
        assert_eq!(
            gen1.gallery.map(|g| g.hyper_v_generation),
            Some(HyperVGeneration::V1)
        );
    }

    /// An image.toml with `section` set (a whole `[smoke.*]` section when it
    /// names one) around the smallest valid rest.
    fn with(section: &str) -> String {
        let smoke = if section.starts_with("[smoke.") {
            ""
        } else {
            "[smoke.command]\nargv = [\"true\"]\n"
        };
        let approval = if section.starts_with("[approval]") {
            ""
        } else {
            "[approval]\napprovers = [\"a\"]\n"
        };
        format!("{smoke}{approval}{section}\n")
    }

    #[test]
    fn every_number_is_held_to_its_documented_range_naming_the_key() {
        // (the file around a value, the range it is held to)
        let patch = |key: &str, v: u64| {
            with(&format!(
                "[patch]\nproduct = \"Windows Server 2022\"\n{key} = {v}"
            ))
        };
        let cases: [(&dyn Fn(u64) -> String, Range); 15] = [
            (&|v| patch("grace_days", v), PATCH_GRACE_DAYS),
            (
                &|v| patch("unverified_after_hours", v),
                UNVERIFIED_AFTER_HOURS,
            ),
            (
                &|v| with(&format!("[packer]\ntimeout_minutes = {v}")),
                PACKER_TIMEOUT_MINUTES,
            ),
            (
                &|v| {
                    with(&format!(
                        "[smoke.http]\nurl = \"http://x/\"\ntimeout_seconds = {v}"
                    ))
                },
                SMOKE_HTTP_TIMEOUT_SECONDS,
            ),
            (
                &|v| {
                    with(&format!(
                        "[smoke.command]\nargv = [\"true\"]\ntimeout_seconds = {v}"
                    ))
                },
                SMOKE_COMMAND_TIMEOUT_SECONDS,
            ),
            (
                &|v| with(&format!("[smoke.http]\nurl = \"http://x/\"\nstatus = {v}")),
                SMOKE_HTTP_STATUS,
            ),
            (
                &|v| {
                    with(&format!(
                        "[approval]\napprovers = [\"a\"]\nexpires_hours = {v}\nremind_before_hours = 0"
                    ))
                },
                EXPIRES_HOURS,
            ),
            (&|v| with(&format!("[release]\nkeep_last = {v}")), KEEP_LAST),
            (&|v| with(&format!("[release]\nkeep_days = {v}")), KEEP_DAYS),
            (
                &|v| {
                    with(&format!(
                        "[version]\nstrategy = \"semver\"\nmajor = {v}\nminor = 0"
                    ))
                },
                SEMVER_MAJOR,
            ),
            (
                &|v| {
                    with(&format!(
                        "[version]\nstrategy = \"semver\"\nmajor = 0\nminor = {v}"
                    ))
                },
                SEMVER_MINOR,
            ),
            (
                &|v| with(&format!("[gallery.recommended]\nvcpus_max = {v}")),
                GALLERY_VCPUS,
            ),
            (
                &|v| with(&format!("[gallery.recommended]\nmemory_gb_min = {v}")),
                GALLERY_MEMORY_GB,
            ),
            (
                &|v| with(&format!("[schedule]\npause_after_failures = {v}")),
                PAUSE_AFTER_FAILURES,
            ),
            (
                &|v| {
                    with(&format!(
                        "[declare]\ndefender_signature_max_age_hours = {v}"
                    ))
                },
                DECLARE_DEFENDER_MAX_AGE_HOURS,
            ),
        ];
        for (file, range) in cases {
            for fine in [range.min, range.max] {
                assert!(
                    parse_image_settings(&file(fine)).is_ok(),
                    "{} = {fine}: {:?}",
                    range.key,
                    parse_image_settings(&file(fine)).err()
                );
            }
            let mut wrong = vec![range.max + 1];
            if range.min > 0 {
                wrong.push(range.min - 1);
            }
            for bad in wrong {
                let error = parse_image_settings(&file(bad)).expect_err(range.key);
                assert!(
                    error.contains(range.key)
                        && error.contains(&format!("from {} to {}", range.min, range.max)),
                    "{} = {bad}: {error}",
                    range.key
                );
            }
        }
        assert!(RANGES.iter().all(|r| r.min <= r.max));
    }

    #[test]
    fn lists_are_held_to_their_documented_counts() {
        let names = |n: usize, quote: &dyn Fn(usize) -> String| {
            (0..n).map(quote).collect::<Vec<_>>().join(", ")
        };
        let approvers = with(&format!(
            "[approval]\napprovers = [{}]",
            names(51, &|i| format!("\"a{i}\""))
        ));
        let regions = with(&format!(
            "[release]\nreplication_regions = [{}]",
            names(101, &|i| format!("\"region{i}\""))
        ));
        let pinned = with(&format!(
            "[release]\npinned = [{}]",
            names(101, &|i| format!("\"1.0.{i}\""))
        ));
        let tags = with(&format!(
            "[tags]\n{}",
            (0..46)
                .map(|i| format!("t{i} = \"v\"\n"))
                .collect::<String>()
        ));
        let declared = |key: &str, n: usize| {
            with(&format!(
                "[declare]\n{key} = [{}]",
                names(n, &|i| format!("\"N{i}\""))
            ))
        };
        for (text, range) in [
            (approvers, APPROVERS),
            (regions, REPLICATION_REGIONS),
            (pinned, PINNED),
            (tags, TAGS),
            (declared("features", 51), DECLARE_FEATURES),
            (declared("language_packs", 21), DECLARE_LANGUAGE_PACKS),
            (declared("services", 51), DECLARE_SERVICES),
        ] {
            let error = parse_image_settings(&text).expect_err(range.key);
            assert!(
                error.contains(range.key) && error.contains(&format!("to {}", range.max)),
                "{error}"
            );
        }
    }

    #[test]
    fn an_unset_reminder_is_a_third_of_the_expiry_so_any_expiry_is_accepted() {
        for (expires, remind) in [(72, 24), (24, 8), (1, 0), (2, 0), (3, 1), (720, 240)] {
            let text = with(&format!(
                "[approval]\napprovers = [\"a\"]\nexpires_hours = {expires}"
            ));
            let settings = parse_image_settings(&text)
                .unwrap_or_else(|e| panic!("expires_hours = {expires}: {e}"));
            assert_eq!(settings.approval.remind_before_hours(), remind, "{expires}");
        }
        let set =
            with("[approval]\napprovers = [\"a\"]\nexpires_hours = 24\nremind_before_hours = 2");
        let settings = parse_image_settings(&set).expect("a reminder below the expiry");
        assert_eq!(
            settings.approval.remind_before_hours(),
            2,
            "a set value stays"
        );
    }

    #[test]
    fn the_declare_table_holds_names_a_checker_can_take_once_each_and_a_checker_it_can_run() {
        let seed = parse_image_settings(&with(
            "[declare]\nfeatures = [\"Web-Server\"]\nlanguage_packs = [\"fr-FR\"]\ndefender_signature_max_age_hours = 24\nfirewall_profiles = [\"Domain\", \"Private\", \"Public\"]\nservices = [\"W3SVC\", \"WinDefend\", \"mpssvc\"]",
        ))
        .expect("the Windows image's declaration");
        let declare = seed.declare.expect("a declaration");
        assert_eq!(declare.checker, "scripts/Test-ImageDeclaration.ps1");
        assert_eq!(declare.expected().len(), 10);
        assert!(parse_image_settings(&with("")).unwrap().declare.is_none());
        let local = parse_image_settings(&with(
            "[declare]\nservices = [\"W3SVC\"]\nchecker = \"scripts/check-declaration.sh\"",
        ))
        .expect("a shell checker");
        assert_eq!(
            local.declare.map(|d| d.checker),
            Some("scripts/check-declaration.sh".to_string())
        );
        for (table, expected) in [
            (
                "[declare]\nfeature = [\"Web-Server\"]",
                "unknown field `feature`",
            ),
            ("[declare]", "[declare] declares nothing"),
            (
                "[declare]\nfirewall_profiles = [\"domain\"]",
                "unknown variant `domain`",
            ),
            (
                "[declare]\nfirewall_profiles = [\"Public\", \"Public\"]",
                "[declare] firewall_profiles: Public is listed twice",
            ),
            (
                "[declare]\nservices = [\"W3SVC\", \"w3svc\"]",
                "[declare] services: w3svc is listed twice",
            ),
            (
                "[declare]\nfeatures = [\"Web-Server,Web-Ftp\"]",
                "[declare] features: \"Web-Server,Web-Ftp\" must be 1-80 characters",
            ),
            (
                "[declare]\nservices = [\"a&b\"]",
                "[declare] services: \"a&b\" must be",
            ),
            (
                "[declare]\nlanguage_packs = [\"\"]",
                "[declare] language_packs",
            ),
            (
                "[declare]\nservices = [\"W3SVC\"]\nchecker = \"../check.sh\"",
                "[declare] checker = \"../check.sh\" must be a path inside",
            ),
            (
                "[declare]\nservices = [\"W3SVC\"]\nchecker = \"/bin/check.sh\"",
                "[declare] checker",
            ),
            (
                "[declare]\nservices = [\"W3SVC\"]\nchecker = \"scripts/check.py\"",
                "ending in .ps1",
            ),
            (
                "[declare]\ndefender_signature_max_age_hours = -1",
                "defender_signature_max_age_hours",
            ),
        ] {
            let error = parse_image_settings(&with(table)).expect_err(table);
            assert!(error.contains(expected), "{table}: {error}");
            assert_eq!(
                settings_error_line(&with(table), &error).is_some(),
                !expected.contains("declares nothing"),
                "the error's line is found: {table}: {error}"
            );
        }
    }

    #[test]
    fn a_reminder_at_or_after_the_deadline_is_refused_with_its_range() {
        let text =
            with("[approval]\napprovers = [\"a\"]\nexpires_hours = 4\nremind_before_hours = 4");
        let error = parse_image_settings(&text).expect_err("a reminder at the deadline");
        assert!(
            error.contains("[approval] remind_before_hours must be from 0 to 3 hours"),
            "{error}"
        );
    }

    #[test]
    fn the_patch_table_names_a_product_the_rules_know_and_defaults_its_times() {
        let settings = parse_image_settings(&with(
            "[patch]\nproduct = \"Windows Server 2022 (Server Core installation)\"",
        ))
        .unwrap();
        let patch = settings.patch.unwrap();
        assert_eq!(
            (patch.grace_days, patch.unverified_after_hours),
            (0, 24),
            "defaults"
        );
        assert!(parse_image_settings(&with("")).unwrap().patch.is_none());
        let error = parse_image_settings(&with("[patch]\nproduct = \"Windows 11\""))
            .expect_err("an unknown product");
        assert!(
            error.contains("[patch] product = \"Windows 11\" is not a product")
                && error.contains("\"Windows Server 2022\""),
            "{error}"
        );
        let error = parse_image_settings(&with("[patch]\ngrace_days = 1")).expect_err("no product");
        assert!(error.contains("product"), "{error}");
        let error = parse_image_settings(&with(
            "[patch]\nproduct = \"Windows Server 2022\"\ngrace = 1",
        ))
        .expect_err("an unknown key");
        assert!(error.contains("unknown field `grace`"), "{error}");
    }

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
