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
use crate::domain::calendar::BuildCalendar;
pub use crate::domain::image::{
    ApprovalPolicy, BaseImage, BaseSource, IMAGE_FILE, ImageConfig, ImageSettings, PackerSettings,
    ReleaseSettings, SmokeTest, build_timeout, check_parents, is_valid_image_name,
    parse_image_settings, region_key,
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
    check_parents(&images).map_err(|message| ConfigError::Invalid {
        path: images_dir.to_path_buf(),
        message,
    })?;
    Ok(images)
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
        let parallelism = parse_parallelism(var("IMAGE_FACTORY_PARALLELISM").as_deref())?;
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
            parallelism,
            local: false,
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
            local: true,
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

/// Reads `IMAGE_FACTORY_PARALLELISM`: a whole number of at least 1, or the
/// number of cores when it is not set.
pub fn parse_parallelism(value: Option<&str>) -> Result<NonZeroUsize, ConfigError> {
    let Some(text) = value else {
        return Ok(default_parallelism());
    };
    text.trim().parse().map_err(|_| ConfigError::Setting {
        name: "IMAGE_FACTORY_PARALLELISM",
        message: "must be a whole number of at least 1 (how many packer builds and smoke tests run at once on this machine; unset: the number of cores)".into(),
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

    #[test]
    fn image_names_are_restricted_to_safe_characters() {
        assert!(is_valid_image_name("base-w2022-datacenter"));
        for bad in ["", "Upper", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(!is_valid_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn parallelism_defaults_to_the_number_of_cores_and_refuses_zero_and_garbage() {
        let cores = std::thread::available_parallelism().unwrap();
        assert_eq!(parse_parallelism(None).unwrap(), cores);
        assert_eq!(default_parallelism(), cores);
        assert_eq!(parse_parallelism(Some("3")).unwrap().get(), 3);
        for bad in ["0", "-1", "two", "1.5", "9999999999999999999999"] {
            let err = parse_parallelism(Some(bad)).unwrap_err().to_string();
            assert!(
                err.contains("IMAGE_FACTORY_PARALLELISM") && err.contains("at least 1"),
                "{bad}: {err}"
            );
        }
    }
}
