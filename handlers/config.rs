//! Configuration: the factory's own settings (from the environment) and the
//! image folders (`images/<name>/image.toml`, beside its Packer template,
//! parsed into `domain::image`). The settings of each adapter live with the
//! adapter (`azure::AzureSettings`, `azure::cosmos::CosmosSettings`, ...) and
//! are read by the composition root, `startup`.
//!
//! Everything is read and checked once at start-up so that a typo is an error
//! with the file and key named, never a surprise in the middle of a run.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::domain::approval::{KeyRing, SigningKey};
use crate::domain::approvers::Directory;
use crate::domain::calendar::{BuildCalendar, CalendarError};
use crate::domain::fleet::{DEFAULT_GRACE_DAYS, Grace};
pub use crate::domain::image::{
    ApprovalPolicy, BaseImage, BaseSource, IMAGE_FILE, IMAGE_NAME_RULE, ImageConfig, ImageSettings,
    PackerSettings, ReleaseSettings, SmokeTest, build_timeout, check_parents, is_valid_image_name,
    parent_problem, parse_image_settings, region_key, settings_error_line,
};

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

/// Reads every image under `images_dir` (each folder with an `image.toml`);
/// the first image refused refuses them all (see [`load_images_each`] for
/// each on its own).
pub fn load_images(images_dir: &Path) -> Result<BTreeMap<String, ImageConfig>, ConfigError> {
    let mut images = BTreeMap::new();
    for (name, image) in read_images(images_dir)? {
        images.insert(name, image?);
    }
    check_parents(&images).map_err(|message| ConfigError::Invalid {
        path: images_dir.to_path_buf(),
        message,
    })?;
    Ok(images)
}

/// Every image under `images_dir` on its own, as a run's snapshot reads
/// them: each folder with an `image.toml`, by folder name, with its image
/// or why it is refused (a name that is no image name, a file that cannot
/// be read, settings that do not parse, with the line, or a broken chain of
/// `[base_image] factory` parents). One bad image hides no other. A folder
/// that cannot be listed is refused whole.
pub fn load_images_each(
    images_dir: &Path,
) -> Result<BTreeMap<String, Result<ImageConfig, ConfigError>>, ConfigError> {
    let mut images = read_images(images_dir)?;
    let parents: BTreeMap<String, Option<String>> = images
        .iter()
        .filter_map(|(name, image)| {
            let image = image.as_ref().ok()?;
            Some((name.clone(), image.settings.parent().map(String::from)))
        })
        .collect();
    for (name, parent) in &parents {
        if let Some(message) = parent_problem(name, parent.as_deref(), &parents)
            && let Some(slot) = images.get_mut(name)
        {
            *slot = Err(ConfigError::Invalid {
                path: images_dir.join(name).join(IMAGE_FILE),
                message,
            });
        }
    }
    Ok(images)
}

/// Each image folder under `images_dir` read on its own, parents unchecked.
fn read_images(
    images_dir: &Path,
) -> Result<BTreeMap<String, Result<ImageConfig, ConfigError>>, ConfigError> {
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
        let shown = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        images.insert(shown.clone(), read_image(&dir, &file, &shown));
    }
    Ok(images)
}

/// The image of folder `dir`, whose settings are `file`.
fn read_image(dir: &Path, file: &Path, name: &str) -> Result<ImageConfig, ConfigError> {
    if !is_valid_image_name(name) {
        return Err(ConfigError::Invalid {
            path: dir.to_path_buf(),
            message: IMAGE_NAME_RULE.into(),
        });
    }
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let settings = parse_image_settings(&text).map_err(|message| {
        let message = match settings_error_line(&text, &message) {
            Some(line) => format!("(line {line}) {message}"),
            None => message,
        };
        ConfigError::Invalid {
            path: file.to_path_buf(),
            message,
        }
    })?;
    Ok(ImageConfig {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        settings,
    })
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
    /// When the monthly rebuild is due (`IMAGE_FACTORY_PATCH_TUESDAY_ZONE`, `_OFFSET_DAYS`, `_HOUR`;
    /// default UTC, 1 day, 06:00: the morning after Patch Tuesday).
    pub calendar: BuildCalendar,
    /// Days after the build time an image without this month's patches is due
    /// rather than overdue (`IMAGE_FACTORY_PATCH_GRACE_DAYS`, 0-27, default 7).
    pub patch_grace: crate::domain::fleet::Grace,
    /// How many long local jobs (packer checks and builds, smoke tests) the
    /// local host runs at once (`IMAGE_FACTORY_PARALLELISM`, default the
    /// number of cores; `up --parallelism` overrides it).
    pub parallelism: NonZeroUsize,
    /// App Service authentication (Entra ID) is in front of the app
    /// (`IMAGE_FACTORY_SIGN_IN=entra`): the handler then refuses the runs API
    /// and the dashboard without a signed-in principal, and operator actions
    /// without the operator app role (docs/sign-in.md). Off on one machine.
    pub sign_in: bool,
    /// Who the approvers `image.toml` names are (`IMAGE_FACTORY_APPROVERS`,
    /// `name=email-or-object-id` pairs).
    pub approvers: Directory,
    /// Who is told, besides an image's approvers, when its scheduled runs
    /// pause after failing (`IMAGE_FACTORY_OPERATORS`, comma-separated
    /// names or email addresses; default none).
    pub operators: Vec<String>,
}

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `var` (the environment, or a map in
    /// tests), checking each ([`problems`] lists every refusal at once). A
    /// path or list setting that is empty means its default; a number, the
    /// public URL and the operator token that are set must be valid, and an
    /// empty one is refused: an empty value is a mistake, not a request for
    /// the default.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let calendar = calendar(&var)?;
        let patch_grace = patch_grace(&var)?;
        let parallelism = parallelism(&var)?;
        let public_url = public_url(&var)?;
        let operators = operators(&var)?;
        operator_token(&var)?;
        let sign_in = sign_in(&var)?;
        let approvers = approvers(&var)?;
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let packer = match var("IMAGE_FACTORY_PACKER").as_deref() {
            Some("none") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => find_on_path("packer"),
        };
        Ok(Settings {
            images_dir: var("IMAGE_FACTORY_IMAGES").map_or_else(|| "images".into(), PathBuf::from),
            data_dir: var("IMAGE_FACTORY_DATA")
                .map_or_else(|| ".image-factory".into(), PathBuf::from),
            public_url: public_url.unwrap_or_else(|| DEFAULT_PUBLIC_URL.into()),
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
            parallelism,
            operators,
            local: false,
            sign_in,
            approvers,
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
            parallelism: default_parallelism(),
            operators: Vec::new(),
            local: true,
            sign_in: false,
            approvers: Directory::default(),
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

/// The number of cores this process may use (1 when it cannot be told): the
/// default of [`Settings::parallelism`].
pub fn default_parallelism() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// The most long local jobs the local host runs at once.
pub const MAX_PARALLELISM: usize = 256;

/// What `IMAGE_FACTORY_PARALLELISM` and `up --parallelism` must be.
const PARALLELISM_RULE: &str = "must be a whole number, at least 1 and at most 256 (how many packer builds and smoke tests run at once on this machine; unset: the number of cores)";

/// Reads `IMAGE_FACTORY_PARALLELISM`: a whole number from 1 to
/// [`MAX_PARALLELISM`], written as digits alone, or the number of cores when
/// it is not set.
pub fn parse_parallelism(value: Option<&str>) -> Result<NonZeroUsize, ConfigError> {
    let Some(text) = value else {
        return Ok(default_parallelism());
    };
    parallelism_flag(text).map_err(|_| ConfigError::Setting {
        name: "IMAGE_FACTORY_PARALLELISM",
        message: PARALLELISM_RULE.into(),
    })
}

/// Parses `up --parallelism`: the rule of [`parse_parallelism`].
pub fn parallelism_flag(text: &str) -> Result<NonZeroUsize, String> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<NonZeroUsize>().ok())
        .flatten()
        .filter(|n| n.get() <= MAX_PARALLELISM)
        .ok_or_else(|| PARALLELISM_RULE.to_string())
}

/// The public URL when `IMAGE_FACTORY_PUBLIC_URL` is not set.
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:7071";

/// The fewest bytes of an operator token.
pub const MIN_OPERATOR_TOKEN: usize = 32;

/// Every setting of the factory's own that is refused, each with its name
/// (never its value): what `doctor` reports, and the first of which
/// [`Settings::from_vars`] answers.
pub fn problems(var: impl Fn(&str) -> Option<String>) -> Vec<ConfigError> {
    [
        calendar_zone(&var).err(),
        calendar_offset(&var).err(),
        calendar_hour(&var).err(),
        patch_grace(&var).err(),
        parallelism(&var).err(),
        public_url(&var).err(),
        operators(&var).err(),
        operator_token(&var).err(),
        sign_in(&var).err(),
        approvers(&var).err(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A setting that is set: `None` when unset, refused when set but empty.
fn set(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    match var(name) {
        Some(value) if value.is_empty() => Err(ConfigError::Setting {
            name,
            message: "is set but empty; set a value or unset it for the default".into(),
        }),
        value => Ok(value),
    }
}

/// A whole number setting written as digits alone, `default` when unset.
fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u32,
) -> Result<u32, ConfigError> {
    match set(var, name)? {
        None => Ok(default),
        Some(text) => text
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
            .ok_or(ConfigError::Setting {
                name,
                message: "must be a whole number, written as digits alone".into(),
            }),
    }
}

/// `IMAGE_FACTORY_PATCH_TUESDAY_ZONE`, `_OFFSET_DAYS` (0-20) and `_HOUR` (0-23).
fn calendar(var: &impl Fn(&str) -> Option<String>) -> Result<BuildCalendar, ConfigError> {
    calendar_part(
        &calendar_zone(var)?,
        calendar_offset(var)?,
        calendar_hour(var)?,
    )
}

/// `IMAGE_FACTORY_PATCH_TUESDAY_ZONE`, `UTC` when unset or empty.
fn calendar_zone(var: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let zone = var("IMAGE_FACTORY_PATCH_TUESDAY_ZONE")
        .filter(|z| !z.is_empty())
        .unwrap_or_else(|| "UTC".into());
    calendar_part(&zone, 1, 6).map(|_| zone)
}

/// `IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS`, 1 when unset.
fn calendar_offset(var: &impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    let days = number(var, "IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS", 1)?;
    calendar_part("UTC", days, 6).map(|_| days)
}

/// `IMAGE_FACTORY_PATCH_TUESDAY_HOUR`, 6 when unset.
fn calendar_hour(var: &impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    let hour = number(var, "IMAGE_FACTORY_PATCH_TUESDAY_HOUR", 6)?;
    calendar_part("UTC", 1, hour).map(|_| hour)
}

/// The calendar of these parts, its refusal naming the part's setting.
fn calendar_part(zone: &str, offset: u32, hour: u32) -> Result<BuildCalendar, ConfigError> {
    BuildCalendar::new(zone, offset, hour).map_err(|e| ConfigError::Setting {
        name: match e {
            CalendarError::Offset(_) => "IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS",
            CalendarError::Hour(_) => "IMAGE_FACTORY_PATCH_TUESDAY_HOUR",
            CalendarError::Zone(_) => "IMAGE_FACTORY_PATCH_TUESDAY_ZONE",
        },
        message: e.to_string(),
    })
}

/// `IMAGE_FACTORY_PATCH_GRACE_DAYS` (0-27).
fn patch_grace(var: &impl Fn(&str) -> Option<String>) -> Result<Grace, ConfigError> {
    let days = number(var, "IMAGE_FACTORY_PATCH_GRACE_DAYS", DEFAULT_GRACE_DAYS)?;
    Grace::new(days).map_err(|e| ConfigError::Setting {
        name: "IMAGE_FACTORY_PATCH_GRACE_DAYS",
        message: e.to_string(),
    })
}

/// `IMAGE_FACTORY_PARALLELISM`.
fn parallelism(var: &impl Fn(&str) -> Option<String>) -> Result<NonZeroUsize, ConfigError> {
    parse_parallelism(set(var, "IMAGE_FACTORY_PARALLELISM")?.as_deref())
}

/// `IMAGE_FACTORY_PUBLIC_URL`, checked and without its trailing `/`: the
/// base of approval links, which go into emails and chat messages.
fn public_url(var: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(text) = set(var, "IMAGE_FACTORY_PUBLIC_URL")? else {
        return Ok(None);
    };
    check_public_url(&text).map_err(|message| ConfigError::Setting {
        name: "IMAGE_FACTORY_PUBLIC_URL",
        message,
    })?;
    Ok(Some(text.trim_end_matches('/').to_string()))
}

/// Whether `text` may be the base of approval links: an absolute http(s)
/// URL with a host, and no user, password, query or fragment.
pub fn check_public_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).ok();
    let fit = url.as_ref().is_some_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
    });
    if fit && !text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err("must be an absolute http(s) URL with a host and no user, query or fragment: the base of approval links (e.g. https://factory.example.com)".into())
    }
}

/// `IMAGE_FACTORY_SIGN_IN`: `entra` when App Service authentication with
/// Entra ID is in front of the app; unset or empty when it is not (the
/// deployment sets it with the authentication it configures).
fn sign_in(var: &impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    match var("IMAGE_FACTORY_SIGN_IN").as_deref().map(str::trim) {
        None | Some("") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("entra") => Ok(true),
        Some(_) => Err(ConfigError::Setting {
            name: "IMAGE_FACTORY_SIGN_IN",
            message: "must be `entra` (App Service authentication with Entra ID is in front of the app) or unset".into(),
        }),
    }
}

/// `IMAGE_FACTORY_APPROVERS`: `name=email-or-object-id` pairs (empty: none).
fn approvers(var: &impl Fn(&str) -> Option<String>) -> Result<Directory, ConfigError> {
    Directory::parse(&var("IMAGE_FACTORY_APPROVERS").unwrap_or_default()).map_err(|message| {
        ConfigError::Setting {
            name: "IMAGE_FACTORY_APPROVERS",
            message,
        }
    })
}

/// The most operators `IMAGE_FACTORY_OPERATORS` names.
pub const MAX_OPERATORS: usize = 50;

/// `IMAGE_FACTORY_OPERATORS`: comma-separated names or email addresses
/// (each 1-254 characters, no spaces or control characters, none twice, at
/// most [`MAX_OPERATORS`]); none when unset.
fn operators(var: &impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(text) = set(var, "IMAGE_FACTORY_OPERATORS")? else {
        return Ok(Vec::new());
    };
    let refuse = |message: String| ConfigError::Setting {
        name: "IMAGE_FACTORY_OPERATORS",
        message,
    };
    let mut operators: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim) {
        let fit = !name.is_empty()
            && name.len() <= 254
            && !name.chars().any(|c| c.is_whitespace() || c.is_control());
        if !fit {
            return Err(refuse(format!(
                "{:?} is not a name or email address: each of the comma-separated operators is 1-254 characters without spaces or control characters",
                name.chars().take(80).collect::<String>()
            )));
        }
        if operators.iter().any(|o| o == name) {
            return Err(refuse(format!("{name} is listed twice")));
        }
        operators.push(name.to_string());
    }
    if operators.len() > MAX_OPERATORS {
        return Err(refuse(format!(
            "names {} operators; at most {MAX_OPERATORS}",
            operators.len()
        )));
    }
    Ok(operators)
}

/// `IMAGE_FACTORY_OPERATOR_TOKEN`, when set (empty: unset, as every secret):
/// at least [`MIN_OPERATOR_TOKEN`] bytes. Never echoed.
fn operator_token(var: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    match var("IMAGE_FACTORY_OPERATOR_TOKEN") {
        Some(token) if !token.is_empty() => check_operator_token(&token),
        _ => Ok(()),
    }
}

/// Refuses an operator token shorter than [`MIN_OPERATOR_TOKEN`] bytes
/// (a bearer token anyone may try against the runs API); never echoes it.
pub fn check_operator_token(token: &str) -> Result<(), ConfigError> {
    if token.len() >= MIN_OPERATOR_TOKEN {
        return Ok(());
    }
    Err(ConfigError::Setting {
        name: "IMAGE_FACTORY_OPERATOR_TOKEN",
        message: format!(
            "must be at least {MIN_OPERATOR_TOKEN} bytes (generate one with `openssl rand -hex 32`)"
        ),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gallery::PrunePolicy;
    use crate::domain::image::*;
    use crate::domain::version::VersionStrategy;

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
            (
                "keep_last = 0",
                "[release] keep_last must be from 1 to 1000",
            ),
            (
                "keep_days = 0",
                "[release] keep_days must be from 1 to 3650",
            ),
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

    /// Settings read from `pairs` alone, as if they were the environment.
    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[test]
    fn a_set_setting_must_be_valid_and_every_refusal_is_named() {
        let good = Settings::from_vars(vars(&[
            ("IMAGE_FACTORY_PUBLIC_URL", "https://factory.example.com/"),
            ("IMAGE_FACTORY_PARALLELISM", "256"),
            ("IMAGE_FACTORY_OPERATOR_TOKEN", &"t".repeat(32)),
            ("IMAGE_FACTORY_IMAGES", ""),
            ("IMAGE_FACTORY_OPERATORS", "ops@contoso.com, platform-lead"),
        ]))
        .expect("valid settings");
        assert_eq!(good.operators, ["ops@contoso.com", "platform-lead"]);
        assert_eq!(good.public_url, "https://factory.example.com");
        assert_eq!(good.parallelism.get(), 256);
        assert_eq!(
            good.images_dir,
            PathBuf::from("images"),
            "an empty path is its default"
        );
        let unset = Settings::from_vars(vars(&[])).expect("defaults");
        assert_eq!(unset.public_url, DEFAULT_PUBLIC_URL);
        assert!(unset.operators.is_empty());
        for operators in ["ops,,lead", "ops,ops", "ops team", "ops\u{7},lead"] {
            let err = Settings::from_vars(vars(&[("IMAGE_FACTORY_OPERATORS", operators)]))
                .expect_err(operators);
            assert!(err.to_string().contains("IMAGE_FACTORY_OPERATORS"), "{err}");
        }

        let bad = [
            ("IMAGE_FACTORY_PATCH_GRACE_DAYS", ""),
            ("IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS", "+1"),
            ("IMAGE_FACTORY_PATCH_TUESDAY_HOUR", "24"),
            ("IMAGE_FACTORY_PARALLELISM", "257"),
            (
                "IMAGE_FACTORY_PUBLIC_URL",
                "https://user:pw@factory.example.com",
            ),
            ("IMAGE_FACTORY_OPERATOR_TOKEN", "short-token"),
            ("IMAGE_FACTORY_OPERATORS", "ops team"),
        ];
        let mut named: Vec<&str> = problems(vars(&bad))
            .into_iter()
            .map(|e| match e {
                ConfigError::Setting { name, message } => {
                    assert!(!message.contains("short-token"), "{message}");
                    name
                }
                other => panic!("{other}"),
            })
            .collect();
        let mut expected: Vec<&str> = bad.iter().map(|(name, _)| *name).collect();
        named.sort_unstable();
        expected.sort_unstable();
        assert_eq!(named, expected, "each refused setting, once");
        for (name, value) in bad {
            let err = Settings::from_vars(vars(&[(name, value)])).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
        for url in [
            "http://localhost:7071",
            "https://factory.example.com/base",
            "http://127.0.0.1:8080/",
        ] {
            assert!(check_public_url(url).is_ok(), "{url}");
        }
        for url in [
            "javascript:alert(1)",
            "not a url",
            "ftp://factory.example.com",
            "https://factory.example.com/?next=x",
            "https://factory.example.com/#top",
            "https://",
            "https://factory.example.com/a b",
        ] {
            assert!(check_public_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn the_docs_give_every_image_toml_range() {
        for doc in ["docs/security.md", "docs/configuration.md"] {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc))
                .expect("the page");
            for range in RANGES {
                // `[approval] expires_hours`: its section and its field.
                let (section, field) = match range.key.split_once(' ') {
                    Some((section, field)) => (section, field),
                    None => (range.key, range.key),
                };
                let bounds = format!("{} to {}", range.min, range.max);
                assert!(
                    text.lines().any(|line| line.contains(section)
                        && line.contains(field)
                        && line.contains(&bounds)),
                    "{doc} does not give {} as {bounds}",
                    range.key
                );
            }
        }
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

    #[test]
    fn image_names_are_restricted_to_safe_characters() {
        assert!(is_valid_image_name("base-w2022-datacenter"));
        assert!(is_valid_image_name("2022-core"));
        for bad in [
            "",
            "Upper",
            "a/b",
            "a b",
            "..",
            "-x",
            ".x",
            "x.lock",
            &"x".repeat(65),
        ] {
            assert!(!is_valid_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn parallelism_defaults_to_the_number_of_cores_and_refuses_zero_and_garbage() {
        let cores = std::thread::available_parallelism().unwrap();
        assert_eq!(parse_parallelism(None).unwrap(), cores);
        assert_eq!(default_parallelism(), cores);
        assert_eq!(parse_parallelism(Some("3")).unwrap().get(), 3);
        assert_eq!(parse_parallelism(Some("256")).unwrap().get(), 256);
        for bad in [
            "0",
            "-1",
            "two",
            "1.5",
            "9999999999999999999999",
            "257",
            " 7",
            "7 ",
            "+7",
            "",
        ] {
            let err = parse_parallelism(Some(bad)).unwrap_err().to_string();
            assert!(
                err.contains("IMAGE_FACTORY_PARALLELISM") && err.contains("at least 1"),
                "{bad}: {err}"
            );
        }
    }
}
