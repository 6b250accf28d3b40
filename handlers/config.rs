//! Configuration: the factory's settings (from the environment) and each
//! image's settings (`images/<name>/image.toml`, beside its Packer template).
//!
//! Everything is read and checked once at start-up so that a typo is an error
//! with the file and key named, never a surprise in the middle of a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::domain::approval::{KeyRing, SigningKey};
use crate::domain::calendar::BuildCalendar;
use crate::domain::gallery::PrunePolicy;
use crate::domain::version::{ImageVersion, VersionStrategy};
use crate::identity::Identity;

/// Name of an image's settings file inside its folder.
pub const IMAGE_FILE: &str = "image.toml";

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not parse or has unknown keys.
    #[error("{path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment setting is wrong.
    #[error("setting {name} is not valid: {message}")]
    Setting {
        /// The variable.
        name: &'static str,
        /// What is wrong (never its value).
        message: String,
    },
}

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
    /// The Marketplace image the template starts from, if any (watched for new versions).
    #[serde(default)]
    pub base_image: Option<BaseImage>,
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

/// Reads every image under `images_dir` (each folder with an `image.toml`).
pub fn load_images(images_dir: &Path) -> Result<BTreeMap<String, ImageConfig>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: images_dir.to_path_buf(),
        source,
    };
    let mut images = BTreeMap::new();
    for entry in std::fs::read_dir(images_dir).map_err(read_err)? {
        let dir = entry.map_err(read_err)?.path();
        let file = dir.join(IMAGE_FILE);
        if !file.is_file() {
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_valid_image_name(n))
            .ok_or_else(|| ConfigError::Invalid {
                path: dir.clone(),
                message: "an image folder's name must be 1-64 characters of a-z, 0-9 and -".into(),
            })?
            .to_string();
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let settings = parse_image_settings(&text).map_err(|message| ConfigError::Invalid {
            path: file.clone(),
            message,
        })?;
        images.insert(
            name.clone(),
            ImageConfig {
                name,
                dir,
                settings,
            },
        );
    }
    Ok(images)
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

/// The factory's own settings, from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where image folders are (`IMAGE_FACTORY_IMAGES`, default `images`).
    pub images_dir: PathBuf,
    /// Where local state, logs and releases go (`IMAGE_FACTORY_DATA`, default `.image-factory`).
    pub data_dir: PathBuf,
    /// The base URL approval links point at (`IMAGE_FACTORY_PUBLIC_URL`).
    pub public_url: String,
    /// The packer binary (`IMAGE_FACTORY_PACKER`, default `packer` on the PATH; `none` to skip).
    pub packer: Option<PathBuf>,
    /// Branches whose pushes start runs (`IMAGE_FACTORY_BRANCHES`, comma-separated, default `main`).
    pub branches: Vec<String>,
    /// Where the image folders sit in the pushed repository (`IMAGE_FACTORY_REPO_IMAGES_PATH`, default `images`).
    pub repo_images_path: String,
    /// Running on one machine (`up`): approval links go to the local outbox.
    pub local: bool,
    /// Email through Azure Communication Services (`IMAGE_FACTORY_EMAIL_ENDPOINT`,
    /// `IMAGE_FACTORY_EMAIL_SENDER`), if configured.
    pub email: Option<EmailSettings>,
    /// When the monthly rebuild is due (`IMAGE_FACTORY_PATCH_TUESDAY_ZONE`, `_OFFSET_DAYS`, `_HOUR`;
    /// default UTC, 1 day, 06:00: the morning after Patch Tuesday).
    pub calendar: BuildCalendar,
    /// Days after the build time an image without this month's patches is due
    /// rather than overdue (`IMAGE_FACTORY_PATCH_GRACE_DAYS`, 0-27, default 7).
    pub patch_grace: crate::domain::fleet::Grace,
    /// Where runs live (`IMAGE_FACTORY_STORE`, default `sqlite`).
    pub store: StoreBackend,
    /// The Azure subscription and gallery the factory manages
    /// (`IMAGE_FACTORY_SUBSCRIPTION_ID`, ...); `None`: no Azure calls.
    pub azure: Option<crate::azure::AzureSettings>,
}

/// Which run store adapter the factory uses.
#[derive(Clone, Debug, Default)]
pub enum StoreBackend {
    /// The embedded SQLite file in the data directory (`IMAGE_FACTORY_STORE=sqlite`).
    #[default]
    Sqlite,
    /// Azure Cosmos DB for NoSQL (`IMAGE_FACTORY_STORE=cosmos`).
    Cosmos(CosmosSettings),
}

/// Where the Cosmos DB run store is and how the factory signs in to it.
#[derive(Clone, Debug)]
pub struct CosmosSettings {
    /// The account endpoint (`COSMOS_ENDPOINT`), e.g. `https://myaccount.documents.azure.com:443/`.
    pub endpoint: String,
    /// The database (`COSMOS_DATABASE`, default `image-factory`).
    pub database: String,
    /// The container (`COSMOS_CONTAINER`, default `runs`), partitioned by `/id`.
    pub container: String,
    /// How the factory authenticates.
    pub auth: CosmosAuth,
}

/// How the factory authenticates to Cosmos DB.
#[derive(Clone)]
pub enum CosmosAuth {
    /// An account key (`COSMOS_KEY`): emulators and test servers only. Implies
    /// emulator mode: HTTP/1.1, text JSON, the emulator's certificate accepted on
    /// loopback hosts, and the database and container created when missing.
    EmulatorKey(String),
    /// Entra ID: the managed identity in Azure, developer credentials elsewhere.
    Entra(Identity),
}

impl std::fmt::Debug for CosmosAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CosmosAuth::EmulatorKey(_) => f.write_str("EmulatorKey(<redacted>)"),
            CosmosAuth::Entra(identity) => write!(f, "Entra({identity:?})"),
        }
    }
}

impl StoreBackend {
    /// Reads `IMAGE_FACTORY_STORE` and, for Cosmos DB, its `COSMOS_*` settings
    /// through `var` (the environment, or a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<StoreBackend, ConfigError> {
        match var("IMAGE_FACTORY_STORE").as_deref() {
            None | Some("sqlite") => Ok(StoreBackend::Sqlite),
            Some("cosmos") => {
                let endpoint = var("COSMOS_ENDPOINT").ok_or(ConfigError::Setting {
                    name: "COSMOS_ENDPOINT",
                    message: "is required when IMAGE_FACTORY_STORE=cosmos (the account's https://<account>.documents.azure.com:443/ endpoint)".into(),
                })?;
                let url = reqwest::Url::parse(&endpoint).map_err(|e| ConfigError::Setting {
                    name: "COSMOS_ENDPOINT",
                    message: format!("is not a URL: {e}"),
                })?;
                if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
                    return Err(ConfigError::Setting {
                        name: "COSMOS_ENDPOINT",
                        message: "must be an http(s) URL with a host".into(),
                    });
                }
                let auth = match var("COSMOS_KEY") {
                    Some(key) => CosmosAuth::EmulatorKey(key),
                    None => CosmosAuth::Entra(Identity::from_vars(&var)),
                };
                let name = |setting: &'static str, default: &str| -> Result<String, ConfigError> {
                    let value = var(setting).unwrap_or_else(|| default.to_string());
                    let ok = value.len() <= 255
                        && !value.chars().any(|c| matches!(c, '/' | '\\' | '?' | '#'));
                    if ok {
                        Ok(value)
                    } else {
                        Err(ConfigError::Setting {
                            name: setting,
                            message: "must be at most 255 characters without / \\ ? or #".into(),
                        })
                    }
                };
                Ok(StoreBackend::Cosmos(CosmosSettings {
                    endpoint,
                    database: name("COSMOS_DATABASE", "image-factory")?,
                    container: name("COSMOS_CONTAINER", "runs")?,
                    auth,
                }))
            }
            Some(_) => Err(ConfigError::Setting {
                name: "IMAGE_FACTORY_STORE",
                message: "must be sqlite or cosmos".into(),
            }),
        }
    }
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            var(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| ConfigError::Setting {
                    name,
                    message: "must be a whole number".into(),
                })
            })
        };
        let calendar = BuildCalendar::new(
            &var("IMAGE_FACTORY_PATCH_TUESDAY_ZONE").unwrap_or_else(|| "UTC".into()),
            number("IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS", 1)?,
            number("IMAGE_FACTORY_PATCH_TUESDAY_HOUR", 6)?,
        )
        .map_err(|e| ConfigError::Setting {
            name: "IMAGE_FACTORY_PATCH_TUESDAY_*",
            message: e.to_string(),
        })?;
        let patch_grace = crate::domain::fleet::Grace::new(number(
            "IMAGE_FACTORY_PATCH_GRACE_DAYS",
            crate::domain::fleet::DEFAULT_GRACE_DAYS,
        )?)
        .map_err(|e| ConfigError::Setting {
            name: "IMAGE_FACTORY_PATCH_GRACE_DAYS",
            message: e.to_string(),
        })?;
        let packer = match var("IMAGE_FACTORY_PACKER").as_deref() {
            Some("none") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => find_on_path("packer"),
        };
        Ok(Settings {
            images_dir: var("IMAGE_FACTORY_IMAGES").map_or_else(|| "images".into(), PathBuf::from),
            data_dir: var("IMAGE_FACTORY_DATA")
                .map_or_else(|| ".image-factory".into(), PathBuf::from),
            public_url: var("IMAGE_FACTORY_PUBLIC_URL")
                .unwrap_or_else(|| "http://localhost:7071".into())
                .trim_end_matches('/')
                .to_string(),
            packer,
            branches: var("IMAGE_FACTORY_BRANCHES")
                .unwrap_or_else(|| "main".into())
                .split(',')
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .collect(),
            repo_images_path: var("IMAGE_FACTORY_REPO_IMAGES_PATH")
                .unwrap_or_else(|| "images".into()),
            calendar,
            patch_grace,
            local: false,
            email: match (
                var("IMAGE_FACTORY_EMAIL_ENDPOINT"),
                var("IMAGE_FACTORY_EMAIL_SENDER"),
            ) {
                (Some(endpoint), Some(sender)) => Some(EmailSettings { endpoint, sender }),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::Setting {
                        name: "IMAGE_FACTORY_EMAIL_ENDPOINT",
                        message: "set both IMAGE_FACTORY_EMAIL_ENDPOINT and IMAGE_FACTORY_EMAIL_SENDER, or neither".into(),
                    });
                }
            },
            store: StoreBackend::from_vars(var)?,
            azure: crate::azure::AzureSettings::from_vars(var)?,
        })
    }

    /// Settings for one machine: the embedded store, no Azure, the default
    /// calendar and branch, packer from the PATH. The local host's tests and
    /// benchmarks start from these and change what they need.
    pub fn local(images_dir: PathBuf, data_dir: PathBuf, public_url: String) -> Settings {
        Settings {
            images_dir,
            data_dir,
            public_url,
            packer: find_on_path("packer"),
            branches: vec!["main".into()],
            repo_images_path: "images".into(),
            calendar: BuildCalendar::new("UTC", 1, 6)
                .unwrap_or_else(|_| unreachable!("a valid calendar")),
            patch_grace: crate::domain::fleet::Grace::default(),
            local: true,
            email: None,
            store: StoreBackend::Sqlite,
            azure: None,
        }
    }

    /// The embedded run store's file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("runs.db")
    }

    /// Where a run's logs and outputs go.
    pub fn run_dir(&self, run_id: &crate::domain::run::RunId) -> PathBuf {
        self.data_dir.join("runs").join(run_id)
    }
}

/// Where approval emails are sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSettings {
    /// The Communication Services resource, `https://<name>.communication.azure.com`.
    pub endpoint: String,
    /// The verified sender address (`DoNotReply@<domain>`).
    pub sender: String,
}

/// Finds an executable on the PATH.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Parses `IMAGE_FACTORY_APPROVAL_KEYS`: `id:base64secret[,id:base64secret...]`,
/// the first key signs, all verify (so a key can be rotated without breaking links).
pub fn parse_key_ring(value: &str) -> Result<KeyRing, ConfigError> {
    let bad = |message: String| ConfigError::Setting {
        name: "IMAGE_FACTORY_APPROVAL_KEYS",
        message,
    };
    let mut keys = Vec::new();
    for (i, item) in value.split(',').enumerate() {
        let (id, secret) = item
            .trim()
            .split_once(':')
            .ok_or_else(|| bad(format!("key {} is not written id:base64secret", i + 1)))?;
        if id.is_empty() {
            return Err(bad(format!("key {} has an empty id", i + 1)));
        }
        let secret = STANDARD
            .decode(secret.trim())
            .map_err(|_| bad(format!("key {id} is not valid base64")))?;
        keys.push(SigningKey::new(id, secret).map_err(|e| bad(format!("key {id}: {e}")))?);
    }
    KeyRing::new(keys).map_err(|e| bad(e.to_string()))
}

/// How long a build may run.
pub fn build_timeout(image: &ImageConfig) -> Duration {
    Duration::from_secs(image.settings.packer.timeout_minutes.saturating_mul(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        baseline_version = "cis-1"
        [version]
        strategy = "semver"
        major = 1
        minor = 2
        [smoke.command]
        argv = ["sh", "smoke.sh"]
        [approval]
        approvers = ["alice", "bob"]
        required = 2
    "#;

    #[test]
    fn the_release_section_is_optional_and_describes_replication_and_pruning() {
        let settings = parse_image_settings(GOOD).expect("valid");
        assert_eq!(settings.release, ReleaseSettings::default());
        assert_eq!(settings.release.prune_policy(), PrunePolicy::default());

        let text = format!(
            "{GOOD}\n[release]\nreplication_regions = [\"westeurope\", \"northeurope\"]\nkeep_last = 3\nkeep_days = 90\npinned = [\"2026.701.0\"]\n"
        );
        let release = parse_image_settings(&text).expect("valid").release;
        assert_eq!(release.replication_regions, ["westeurope", "northeurope"]);
        let policy = release.prune_policy();
        assert_eq!(policy.keep_last, Some(3));
        assert_eq!(policy.keep_days, Some(90));
        assert_eq!(
            policy.pinned,
            vec!["2026.701.0".parse().expect("a version")]
        );
    }

    #[test]
    fn a_wrong_release_section_is_refused_naming_the_key() {
        let cases = [
            ("keep_last = 0", "keep_last must be at least 1"),
            ("keep_days = 0", "keep_days must be at least 1"),
            ("pinned = [\"latest\"]", "pinned"),
            ("pinned = [\"1.0.0\", \"1.0.0\"]", "1.0.0 is listed twice"),
            (
                "replication_regions = [\"westeurope\", \"West Europe\"]",
                "West Europe is listed twice",
            ),
            (
                "replication_regions = [\"west/europe\"]",
                "not an Azure region",
            ),
            ("keep_forever = true", "keep_forever"),
        ];
        for (line, expected) in cases {
            let text = format!("{GOOD}\n[release]\n{line}\n");
            let error = parse_image_settings(&text).expect_err(line);
            assert!(error.contains(expected), "{line}: {error}");
        }
    }

    #[test]
    fn a_complete_image_file_parses() {
        let s = parse_image_settings(GOOD).unwrap();
        assert_eq!(s.version, VersionStrategy::Semver { major: 1, minor: 2 });
        assert_eq!(s.approval.required, 2);
        assert_eq!(s.approval.expires_hours, 72);
        assert_eq!(s.packer.timeout_minutes, 120);
    }

    #[test]
    fn unknown_keys_and_impossible_policies_are_named() {
        let typo = GOOD.replace("baseline_version", "baseline_versoin");
        assert!(
            parse_image_settings(&typo)
                .unwrap_err()
                .contains("baseline_versoin")
        );
        let too_many = GOOD.replace("required = 2", "required = 3");
        assert!(
            parse_image_settings(&too_many)
                .unwrap_err()
                .contains("required")
        );
        let dup = GOOD.replace(r#"["alice", "bob"]"#, r#"["alice", "alice"]"#);
        assert!(parse_image_settings(&dup).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_zero_build_timeout_is_refused_naming_the_file_and_the_key() {
        let text = format!("{GOOD}\n[packer]\ntimeout_minutes = 0\n");
        let error = parse_image_settings(&text).expect_err("a zero timeout");
        assert!(error.contains("[packer] timeout_minutes"), "{error}");
        let one = format!("{GOOD}\n[packer]\ntimeout_minutes = 1\n");
        assert_eq!(
            parse_image_settings(&one)
                .expect("valid")
                .packer
                .timeout_minutes,
            1
        );

        let images = tempfile::TempDir::new().expect("temp dir");
        std::fs::create_dir(images.path().join("zero")).expect("mkdir");
        let file = images.path().join("zero").join(IMAGE_FILE);
        std::fs::write(&file, &text).expect("write");
        let error = load_images(images.path())
            .expect_err("a zero timeout")
            .to_string();
        assert!(
            error.contains(&file.display().to_string()) && error.contains("timeout_minutes"),
            "{error}"
        );
    }

    #[test]
    fn key_rings_parse_and_never_echo_secrets() {
        let secret = STANDARD.encode([9u8; 32]);
        assert!(parse_key_ring(&format!("k2:{secret},k1:{secret}")).is_ok());
        let err = parse_key_ring("k1:c2hvcnQ=").unwrap_err().to_string();
        assert!(
            err.contains("32 bytes") && !err.contains("c2hvcnQ"),
            "{err}"
        );
        assert!(parse_key_ring("nocolon").is_err());
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_store_is_sqlite_unless_cosmos_is_chosen_and_a_missing_endpoint_is_named() {
        assert!(matches!(
            StoreBackend::from_vars(vars(&[])).unwrap(),
            StoreBackend::Sqlite
        ));
        let err = StoreBackend::from_vars(vars(&[("IMAGE_FACTORY_STORE", "cosmos")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("COSMOS_ENDPOINT"), "{err}");
        let err = StoreBackend::from_vars(vars(&[("IMAGE_FACTORY_STORE", "mongo")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("IMAGE_FACTORY_STORE"), "{err}");
    }

    #[test]
    fn cosmos_settings_pick_the_credential_and_never_show_the_key() {
        let endpoint = ("COSMOS_ENDPOINT", "https://acct.documents.azure.com:443/");
        let cosmos = ("IMAGE_FACTORY_STORE", "cosmos");
        let keyed =
            StoreBackend::from_vars(vars(&[cosmos, endpoint, ("COSMOS_KEY", "c2VjcmV0a2V5")]))
                .unwrap();
        let shown = format!("{keyed:?}");
        assert!(
            shown.contains("EmulatorKey") && !shown.contains("c2VjcmV0a2V5"),
            "{shown}"
        );
        let StoreBackend::Cosmos(c) = keyed else {
            panic!("cosmos")
        };
        assert_eq!(
            (c.database.as_str(), c.container.as_str()),
            ("image-factory", "runs")
        );

        let in_azure = StoreBackend::from_vars(vars(&[
            cosmos,
            endpoint,
            ("IDENTITY_ENDPOINT", "http://169.254.169.254"),
        ]))
        .unwrap();
        assert!(matches!(
            in_azure,
            StoreBackend::Cosmos(CosmosSettings {
                auth: CosmosAuth::Entra(Identity::Managed { client_id: None }),
                ..
            })
        ));
        let developer = StoreBackend::from_vars(vars(&[cosmos, endpoint])).unwrap();
        assert!(matches!(
            developer,
            StoreBackend::Cosmos(CosmosSettings {
                auth: CosmosAuth::Entra(Identity::Developer),
                ..
            })
        ));
        let bad = StoreBackend::from_vars(vars(&[cosmos, endpoint, ("COSMOS_CONTAINER", "a/b")]))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("COSMOS_CONTAINER"), "{bad}");
    }

    #[test]
    fn image_names_are_restricted_to_safe_characters() {
        assert!(is_valid_image_name("base-w2022-datacenter"));
        for bad in ["", "Upper", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(!is_valid_image_name(bad), "{bad}");
        }
    }
}
