//! The composition root: builds the [`App`] from configuration and starts
//! the handler alone (in Azure) or the handler with the embedded host (local).
//!
//! Secrets come from the environment (Key Vault references in Azure). Locally,
//! when they are not set, a data-dir file (`local-secrets.json`, mode 0600) is
//! created once with a random approval key and webhook secret, so the factory
//! runs with no setup and links stay valid across restarts. The data folder
//! is private: 0700, its files 0600 ([`crate::private`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{App, ReaperPorts, TriggerSecrets};
use crate::archive::Limits;
use crate::azure::blob::BlobLogs;
use crate::azure::compute::AzureMarketplace;
use crate::azure::cosmos::{CosmosAuth, CosmosSettings, CosmosStore};
use crate::azure::email::{EmailChannel, EmailSettings};
use crate::azure::eventgrid::{EventGridPublisher, EventGridSettings};
use crate::azure::gallery::AzureGallery;
use crate::azure::identity::Identity;
use crate::azure::jobs::ContainerAppsWorkers;
use crate::azure::reaper::AzureLeftovers;
use crate::azure::snapshots::BlobSnapshots;
use crate::azure::testvm::AzureTestVms;
use crate::azure::{Azure, AzureSettings, SettingError};
use crate::config::{ConfigError, Settings, load_images, load_images_each, parse_key_ring};
use crate::domain::image::ImageConfig;
use crate::domain::run::RepositoryRef;
use crate::domain::run::Stage;
use crate::followups::FollowUps;
use crate::host::bus::Bus;
use crate::host::function_app::FunctionApp;
use crate::host::{BusSettings, LocalHost, LocalJobs};
use crate::local::executor::LocalExecutor;
use crate::local::gallery::LocalGallery;
use crate::local::git::LocalGitTags;
use crate::local::logs::LocalLogs;
use crate::local::marketplace::{LocalMarketplace, MARKETPLACE_FILE};
use crate::local::outbox::OutboxChannel;
use crate::local::sources::{FolderSnapshots, LocalGit};
use crate::local::sqlite::SqliteStore;
use crate::local::test_env::LocalTestEnvironment;
use crate::ports::clock::Ids;
use crate::ports::events::Publisher;
use crate::ports::gallery::Gallery;
use crate::ports::git::GitTags;
use crate::ports::notifier::{Channel, Notifier};
use crate::ports::security_updates::SecurityUpdates;
use crate::ports::sources::{SnapshotStore, SourceHost};
use crate::ports::store::RunStore;
use crate::sources::Sources;
use crate::web::msrc::{MSRC_URL, Msrc, MsrcSource};
use crate::web::teams::TeamsChannel;
use crate::web::webhooks::WebhookSettings;
use crate::web::{HostedGitTags, HostedSources, REPOSITORY_VAR, repository_from_url};

/// Secrets generated for local use.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecrets {
    /// `id:base64` approval signing key.
    pub approval_keys: String,
    /// GitHub webhook secret.
    pub github_secret: String,
    /// Bearer token of out-of-band triggers.
    #[serde(default)]
    pub operator_token: String,
}

/// The file local secrets live in.
pub fn local_secrets_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("local-secrets.json")
}

/// Reads the local secrets, creating them on first use.
pub fn local_secrets(settings: &Settings) -> anyhow::Result<LocalSecrets> {
    let path = local_secrets_path(settings);
    let token = || format!("{:032x}", rand::random::<u128>());
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut secrets: LocalSecrets = serde_json::from_str(&text).with_context(|| {
            format!("{} is not valid; delete it to start afresh", path.display())
        })?;
        if secrets.operator_token.is_empty() {
            // Written by an older version: add what it lacks.
            secrets.operator_token = token();
            write_private(&path, &serde_json::to_vec_pretty(&secrets)?)?;
        }
        return Ok(secrets);
    }
    crate::private::create_dir(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    let secrets = LocalSecrets {
        approval_keys: format!("local-1:{}", STANDARD.encode(rand::random::<[u8; 32]>())),
        github_secret: token(),
        operator_token: token(),
    };
    write_private(&path, &serde_json::to_vec_pretty(&secrets)?)?;
    Ok(secrets)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::private::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The local outbox's folder in the data folder.
const OUTBOX: &str = "outbox";

/// The data folder's sub-folders that hold secrets or state: the outbox
/// (live approval links), the run folders (build logs, packer's outputs)
/// and the release records.
/// The local gallery's folder in the data folder.
pub const RELEASES: &str = "releases";

/// The local snapshot store's folder in the data folder.
pub const SOURCES: &str = "sources";

const PRIVATE_FOLDERS: [&str; 4] = [OUTBOX, "runs", RELEASES, SOURCES];

/// Makes the data folder private (0700, created if missing) and, for data a
/// version before this one left readable by other users, what it holds:
/// [`PRIVATE_FOLDERS`] and the local secrets (the SQLite files are made
/// private when they are opened, see [`crate::local::sqlite::open_database`]).
pub async fn secure_data_dir(settings: &Settings) -> anyhow::Result<()> {
    let data = settings.data_dir.clone();
    let secrets = local_secrets_path(settings);
    crate::private::blocking(move || {
        crate::private::create_dir(&data)?;
        crate::private::tighten(&secrets)?;
        for folder in PRIVATE_FOLDERS {
            crate::private::tighten(&data.join(folder))?;
        }
        Ok(())
    })
    .await
    .with_context(|| {
        format!(
            "cannot make the data folder {} private (mode 0700, its files 0600)",
            settings.data_dir.display()
        )
    })
}

/// The secrets the handler needs, never logged.
#[derive(Clone)]
pub struct Secrets {
    /// `IMAGE_FACTORY_APPROVAL_KEYS`: `id:base64[,id:base64...]`, the first signs.
    pub approval_keys: String,
    /// `IMAGE_FACTORY_GITHUB_SECRET`.
    pub github: Option<String>,
    /// `IMAGE_FACTORY_OPERATOR_TOKEN`.
    pub operator: Option<String>,
    /// `IMAGE_FACTORY_AZURE_DEVOPS_SECRET` (no local default: Azure DevOps
    /// cannot reach a laptop anyway).
    pub azure_devops: Option<String>,
    /// `IMAGE_FACTORY_TEAMS_WEBHOOK_URL`: the Teams Workflows / incoming-webhook URL.
    pub teams_webhook: Option<String>,
}

impl Secrets {
    /// Reads the secrets from the environment. `local` fills what is missing
    /// from the generated local secrets; in Azure a missing key is an error.
    pub fn from_env(settings: &Settings, local: bool) -> anyhow::Result<Secrets> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let azure_devops = env("IMAGE_FACTORY_AZURE_DEVOPS_SECRET");
        let teams_webhook = env("IMAGE_FACTORY_TEAMS_WEBHOOK_URL");
        let (keys, github, operator) = (
            env("IMAGE_FACTORY_APPROVAL_KEYS"),
            env("IMAGE_FACTORY_GITHUB_SECRET"),
            env("IMAGE_FACTORY_OPERATOR_TOKEN"),
        );
        if local && (keys.is_none() || github.is_none() || operator.is_none()) {
            let generated = local_secrets(settings)?;
            return Ok(Secrets {
                approval_keys: keys.unwrap_or(generated.approval_keys),
                github: github.or(Some(generated.github_secret)),
                operator: operator.or(Some(generated.operator_token)),
                azure_devops,
                teams_webhook,
            });
        }
        let Some(approval_keys) = keys else {
            bail!(
                "IMAGE_FACTORY_APPROVAL_KEYS is not set: approval links cannot be signed (id:base64secret, at least 32 bytes)"
            );
        };
        Ok(Secrets {
            approval_keys,
            github,
            operator,
            azure_devops,
            teams_webhook,
        })
    }
}

/// The settings of the adapters: which adapter serves each port, and where
/// it finds its system. Read from the environment next to [`Settings`].
#[derive(Clone, Debug, Default)]
pub struct Adapters {
    /// Where runs live (`IMAGE_FACTORY_STORE`, default `sqlite`).
    pub store: StoreBackend,
    /// The Azure subscription and gallery the factory manages
    /// (`IMAGE_FACTORY_SUBSCRIPTION_ID`, ...); `None`: no Azure calls, every
    /// port served on this machine.
    pub azure: Option<AzureSettings>,
    /// Email through Azure Communication Services, if configured.
    pub email: Option<EmailSettings>,
    /// Microsoft's security data (`IMAGE_FACTORY_MSRC_URL`): the Security
    /// Update Guide API, or a folder of CVRF documents.
    pub msrc: MsrcSource,
    /// Where runs' sources come from on the Azure path
    /// (`IMAGE_FACTORY_SOURCES_URL`, `IMAGE_FACTORY_REPOSITORY`); `None`:
    /// the git repository around the images folder, snapshots in the data
    /// folder.
    pub sources: Option<SourceSettings>,
}

/// The setting naming the snapshots' Blob Storage container.
pub const SOURCES_URL: &str = "IMAGE_FACTORY_SOURCES_URL";

/// The sources of the Azure path: commits fetched from GitHub or Azure
/// DevOps, snapshots kept in a Blob Storage container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSettings {
    /// The snapshots' container (`IMAGE_FACTORY_SOURCES_URL`,
    /// `https://<account>.blob.core.windows.net/sources`).
    pub container_url: String,
    /// The repository whose branch head the runs no push started build
    /// (`IMAGE_FACTORY_REPOSITORY`).
    pub repository: RepositoryRef,
}

impl SourceSettings {
    /// Reads the sources' settings through `var`. `IMAGE_FACTORY_SOURCES_URL`
    /// chooses the Azure path's sources; with it, `IMAGE_FACTORY_REPOSITORY`
    /// must name the repository of the runs no push starts (Patch Tuesday,
    /// out-of-band, a new base image, a parent's release), and a build job
    /// (`build_job`) needs it: its workers download the snapshot from there.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        build_job: bool,
    ) -> Result<Option<SourceSettings>, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let (url, repository) = (var(SOURCES_URL), var(REPOSITORY_VAR));
        let Some(url) = url else {
            if build_job {
                return Err(ConfigError::Setting {
                    name: SOURCES_URL,
                    message: "is required with IMAGE_FACTORY_BUILD_JOB: the build workers download each run's source snapshot from that Blob Storage container (https://<account>.blob.core.windows.net/sources)".into(),
                });
            }
            if repository.is_some() {
                return Err(ConfigError::Setting {
                    name: REPOSITORY_VAR,
                    message: "is read only with IMAGE_FACTORY_SOURCES_URL (the Azure path's sources); on one machine the images folder's own git repository is the source".into(),
                });
            }
            return Ok(None);
        };
        crate::azure::blob::check_container_url(&url).map_err(|message| ConfigError::Setting {
            name: SOURCES_URL,
            message,
        })?;
        let Some(repository) = repository else {
            return Err(ConfigError::Setting {
                name: REPOSITORY_VAR,
                message: "is required with IMAGE_FACTORY_SOURCES_URL: runs no push starts (Patch Tuesday, out-of-band, a new base image, a parent image's release) build the head of this repository's first built branch; set it to https://github.com/<owner>/<repository> or https://dev.azure.com/<organization>/<project>/_git/<repository>".into(),
            });
        };
        let repository =
            repository_from_url(&repository).map_err(|message| ConfigError::Setting {
                name: REPOSITORY_VAR,
                message,
            })?;
        Ok(Some(SourceSettings {
            container_url: url,
            repository,
        }))
    }
}

impl Adapters {
    /// Reads the adapters' settings from the environment.
    pub fn from_env() -> Result<Adapters, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let azure = AzureSettings::from_vars(var).map_err(setting)?;
        let build_job = azure.as_ref().is_some_and(|a| a.build_job.is_some());
        Ok(Adapters {
            sources: SourceSettings::from_vars(var, build_job)?,
            store: StoreBackend::from_vars(var)?,
            azure,
            email: EmailSettings::from_vars(var).map_err(setting)?,
            msrc: MsrcSource::from_vars(var).map_err(|e| ConfigError::Setting {
                name: MSRC_URL,
                message: e.message,
            })?,
        })
    }
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

/// An adapter's setting error as the factory's configuration error.
fn setting(e: SettingError) -> ConfigError {
    ConfigError::Setting {
        name: e.name,
        message: e.message,
    }
}

/// Opens the run store the settings choose; for Cosmos DB, checks that the
/// account, database and container are reachable (an error names the setting).
pub async fn open_store(
    settings: &Settings,
    backend: &StoreBackend,
) -> anyhow::Result<Arc<dyn RunStore>> {
    Ok(match backend {
        StoreBackend::Sqlite => Arc::new(SqliteStore::open(&settings.store_path())?),
        StoreBackend::Cosmos(cosmos) => {
            let store = CosmosStore::connect(cosmos).await?;
            tracing::info!(database = %cosmos.database, container = %cosmos.container, "run store: Cosmos DB");
            Arc::new(store)
        }
    })
}

/// Builds the app from settings, the adapters' settings and secrets: the one
/// place that chooses an adapter for each port.
pub async fn build_app(
    settings: Settings,
    adapters: Adapters,
    secrets: Secrets,
    shutdown: CancellationToken,
) -> anyhow::Result<App> {
    let keys = parse_key_ring(&secrets.approval_keys)?;
    // On one machine a refused image.toml stops `up` with the file and the
    // key: the images folder is what the runs build. On the Azure path the
    // deployed folder is not (each run's snapshot is), so a refused image
    // there is only logged: its runs fail on their own.
    let images = if adapters.sources.is_none() {
        load_images(&settings.images_dir)?
    } else {
        let mut images = BTreeMap::new();
        for (name, image) in load_images_each(&settings.images_dir)? {
            match image {
                Ok(image) => {
                    images.insert(name, image);
                }
                Err(e) => {
                    tracing::warn!(image = %name, error = %e, "a deployed image is refused; runs build their own snapshots")
                }
            }
        }
        images
    };
    if images.is_empty() {
        tracing::warn!(dir = %settings.images_dir.display(), "no images configured: add a folder with an image.toml");
    }
    secure_data_dir(&settings).await?;
    let store = open_store(&settings, &adapters.store).await?;
    let notifier = notifier(&settings, adapters.email.as_ref(), &secrets)?;
    let follow_ups = follow_ups(&settings)?;
    let limits = snapshot_limits(|name| std::env::var(name).ok())?;
    let hosted = if settings.local && adapters.sources.is_none() {
        None
    } else {
        let credential = Identity::from_vars(|name| std::env::var(name).ok())
            .credential()
            .map_err(anyhow::Error::msg)?;
        let tags = HostedGitTags::from_vars(|name| std::env::var(name).ok(), credential.clone())
            .map_err(anyhow::Error::msg)?;
        Some((tags, credential))
    };
    let (host, snapshots): (Arc<dyn SourceHost>, Arc<dyn SnapshotStore>) = match (
        &adapters.sources,
        &hosted,
    ) {
        (Some(sources), Some((tags, credential))) => {
            tracing::info!(container = %sources.container_url, repository = %sources.repository, "sources: the pushed repository's host, snapshots in Blob Storage");
            (
                Arc::new(
                    HostedSources::new(
                        |name| std::env::var(name).ok(),
                        tags,
                        sources.repository.clone(),
                        &settings.repo_images_path,
                        limits.max_archive(),
                    )
                    .map_err(anyhow::Error::msg)?,
                ),
                Arc::new(
                    BlobSnapshots::new(
                        &sources.container_url,
                        credential.clone(),
                        None,
                        limits.max_archive(),
                    )
                    .with_context(|| SOURCES_URL)?,
                ),
            )
        }
        _ => (
            Arc::new(LocalGit::new(&settings.images_dir)),
            Arc::new(FolderSnapshots::new(settings.data_dir.join(SOURCES))),
        ),
    };
    let git_tags: Arc<dyn GitTags> = match hosted {
        Some((tags, _)) if !settings.local => Arc::new(tags),
        _ => Arc::new(LocalGitTags::new(&settings.images_dir)),
    };
    let sources = Arc::new(Sources::new(host, snapshots, limits));
    let security_updates = open_security_updates(&settings, &adapters)?;
    let mut app = App {
        store,
        executor: Arc::new(LocalExecutor),
        workers: None,
        logs: Arc::new(LocalLogs::new(settings.data_dir.join("logs"))),
        gallery: Arc::new(LocalGallery::new(settings.data_dir.join(RELEASES))),
        test_environments: vec![Arc::new(LocalTestEnvironment)],
        marketplace: Arc::new(LocalMarketplace::new(
            settings.data_dir.join(MARKETPLACE_FILE),
        )),
        reaper: None,
        security_updates,
        git_tags,
        images: Arc::new(images),
        sources,
        settings: Arc::new(settings),
        keys: Arc::new(keys),
        secrets: Arc::new(TriggerSecrets {
            github: secrets.github,
            operator: secrets.operator,
            azure_devops: secrets.azure_devops,
        }),
        notifier,
        follow_ups,
        clock: Arc::new(Utc::now),
        ids: Ids::random(),
        shutdown,
    };
    if let Some(azure) = &adapters.azure {
        let identity = Identity::from_vars(|name| std::env::var(name).ok());
        let credential = identity.credential().map_err(anyhow::Error::msg)?;
        tracing::info!(endpoint = %azure.endpoint, "Azure Resource Manager calls enabled");
        let logs = match &azure.build_job {
            Some(job) => Some(BlobLogs::new(
                &job.log_container_url,
                credential.clone(),
                None,
            )?),
            None => None,
        };
        use_azure(&mut app, Azure::new(azure.clone(), credential)?, logs);
    }
    Ok(app)
}

/// How much a source snapshot may hold: `IMAGE_FACTORY_SNAPSHOT_MAX_FILES`
/// and `IMAGE_FACTORY_SNAPSHOT_MAX_BYTES` (whole numbers of at least 1),
/// else defaults far above what an images repository holds.
pub fn snapshot_limits(var: impl Fn(&str) -> Option<String>) -> Result<Limits, ConfigError> {
    let mut limits = Limits::default();
    let number = |name: &'static str| -> Result<Option<u64>, ConfigError> {
        let Some(text) = var(name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        match text.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ConfigError::Setting {
                name,
                message: "must be a whole number of at least 1".into(),
            }),
        }
    };
    if let Some(files) = number("IMAGE_FACTORY_SNAPSHOT_MAX_FILES")? {
        limits.max_files = usize::try_from(files).unwrap_or(usize::MAX);
    }
    if let Some(bytes) = number("IMAGE_FACTORY_SNAPSHOT_MAX_BYTES")? {
        limits.max_bytes = bytes;
    }
    Ok(limits)
}

/// The gallery the settings choose: the Azure Compute Gallery when the
/// factory manages Azure, else the data folder's local gallery.
pub fn open_gallery(
    settings: &Settings,
    adapters: &Adapters,
    images: &BTreeMap<String, ImageConfig>,
) -> anyhow::Result<Arc<dyn Gallery>> {
    Ok(match &adapters.azure {
        Some(azure) => {
            let credential = Identity::from_vars(|name| std::env::var(name).ok())
                .credential()
                .map_err(anyhow::Error::msg)?;
            Arc::new(azure_gallery(
                &Azure::new(azure.clone(), credential)?,
                images,
            ))
        }
        None => Arc::new(LocalGallery::new(settings.data_dir.join(RELEASES))),
    })
}

/// The folder of the data folder that caches Microsoft's CVRF documents.
pub const MSRC_CACHE: &str = "msrc";

/// Microsoft's security data as the adapters' settings choose: the Security
/// Update Guide API with its documents cached in the data folder's
/// [`MSRC_CACHE`], or the folder of CVRF documents `IMAGE_FACTORY_MSRC_URL`
/// names.
pub fn open_security_updates(
    settings: &Settings,
    adapters: &Adapters,
) -> anyhow::Result<Arc<dyn SecurityUpdates>> {
    let cache = settings.data_dir.join(MSRC_CACHE);
    Ok(Arc::new(
        Msrc::new(&adapters.msrc, Some(cache)).map_err(anyhow::Error::msg)?,
    ))
}

/// The Azure Compute Gallery adapter: each image's gallery image definition
/// (`gallery_image_name`, else the image's name) in the configured gallery,
/// knowing at start the definitions named otherwise than their image.
fn azure_gallery(azure: &Azure, images: &BTreeMap<String, ImageConfig>) -> AzureGallery {
    let names = images
        .iter()
        .filter_map(|(name, image)| {
            let definition = image.settings.gallery_image_name.as_deref()?;
            Some((name.clone(), definition.to_string()))
        })
        .collect();
    AzureGallery::new(azure.arm.clone(), azure.settings.gallery_image(""), names)
}

/// Serves the gallery, the test VMs, the Marketplace, the reaper's
/// leftovers and (with a build job) the build workers and their logs from
/// Azure; what Azure does not serve
/// stays local (a `[smoke.command]` test runs on this machine).
pub fn use_azure(app: &mut App, azure: Azure, logs: Option<BlobLogs>) {
    let settings = &azure.settings;
    app.gallery = Arc::new(azure_gallery(&azure, &app.images));
    app.test_environments.insert(
        0,
        Arc::new(AzureTestVms {
            arm: azure.arm.clone(),
            subscription_id: settings.subscription_id.clone(),
            settings: settings.test_vm.clone(),
        }),
    );
    app.marketplace = Arc::new(AzureMarketplace {
        arm: azure.arm.clone(),
        subscription_id: settings.subscription_id.clone(),
    });
    match AzureLeftovers::new(azure.arm.clone(), &settings.subscription_id) {
        Ok(leftovers) => {
            app.reaper = Some(ReaperPorts {
                leftovers: Arc::new(leftovers),
                dry_run: settings.reaper.dry_run,
                max_age: chrono::Duration::hours(i64::from(settings.reaper.max_age_hours)),
            });
        }
        Err(e) => tracing::error!(error = %e, "the reaper cannot run: {e}"),
    }
    if let (Some(job), Some(logs)) = (&settings.build_job, logs) {
        tracing::info!(job = %job.name, "builds run off the host, on the Container Apps job");
        app.workers = Some(Arc::new(ContainerAppsWorkers::new(
            azure.arm.clone(),
            &settings.subscription_id,
            job,
        )));
        app.logs = Arc::new(logs);
    }
}

/// The notification channels: the local outbox when running locally, Teams
/// when `IMAGE_FACTORY_TEAMS_WEBHOOK_URL` is set, email when
/// `IMAGE_FACTORY_EMAIL_ENDPOINT` and `IMAGE_FACTORY_EMAIL_SENDER` are.
fn notifier(
    settings: &Settings,
    email: Option<&EmailSettings>,
    secrets: &Secrets,
) -> anyhow::Result<Notifier> {
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if settings.local {
        channels.push(Arc::new(OutboxChannel::new(settings.data_dir.join(OUTBOX))));
    }
    if let Some(url) = &secrets.teams_webhook {
        channels.push(Arc::new(
            TeamsChannel::new(url.clone()).map_err(anyhow::Error::msg)?,
        ));
    }
    if let Some(email) = email {
        let credential = Identity::from_vars(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
            .credential()
            .map_err(anyhow::Error::msg)?;
        let channel = EmailChannel::new(&email.endpoint, &email.sender, credential)
            .map_err(anyhow::Error::msg)?
            .with_approvers(settings.approvers.clone());
        channels.push(Arc::new(channel));
    }
    if channels.is_empty() {
        tracing::warn!(
            "no notification channel is configured: approvers will not be told; set IMAGE_FACTORY_TEAMS_WEBHOOK_URL or the email settings"
        );
    }
    Ok(Notifier::new(channels))
}

/// The release-event targets: `IMAGE_FACTORY_EVENT_GRID_ENDPOINT` (with the
/// factory's identity) and `IMAGE_FACTORY_EVENT_WEBHOOKS`.
pub fn follow_ups(settings: &Settings) -> anyhow::Result<FollowUps> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    if let Some(topic) = EventGridSettings::from_vars(var).map_err(anyhow::Error::msg)? {
        let credential = Identity::from_vars(var)
            .credential()
            .map_err(anyhow::Error::msg)?;
        publishers.push(Arc::new(
            EventGridPublisher::new(&topic, credential).map_err(anyhow::Error::msg)?,
        ));
    }
    if let Some(webhooks) = WebhookSettings::from_vars(var)? {
        for publisher in webhooks.publishers().map_err(anyhow::Error::msg)? {
            publishers.push(Arc::new(publisher));
        }
    }
    Ok(FollowUps::new(publishers, &settings.public_url))
}

/// A running local factory.
pub struct Local {
    /// Where the HTTP triggers are served (`/api/...`).
    pub host_addr: SocketAddr,
    /// Where the handler listens.
    pub handler_addr: SocketAddr,
    /// The host's queues.
    pub bus: Bus,
    host: LocalHost,
    handler: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Local {
    /// Waits until everything stopped (after the shutdown token was cancelled).
    pub async fn stopped(self) {
        self.host.stopped().await;
        let _ = self.handler.await;
    }
}

/// The stage functions whose invocations run long jobs as child processes
/// of this machine, sharing `settings.parallelism` slots: validate (`packer
/// version` and `packer validate`, each as long as the example's build) and
/// build when packer is configured and builds do not run off the host, and
/// test (a `[smoke.command]` runs here; an `[smoke.http]` check or a test VM
/// holds a slot while it waits, which keeps a remote test from piling up).
/// The approve and release stages, the timers and HTTP are short and never
/// wait for a slot.
fn local_jobs(app: &App) -> LocalJobs {
    let packer = app.settings.packer.is_some();
    let functions = [
        (Stage::Validate, packer),
        (Stage::Build, packer && app.workers.is_none()),
        (Stage::Test, true),
    ]
    .into_iter()
    .filter(|(_, here)| *here)
    .map(|(stage, _)| stage.function_name().to_string())
    .collect();
    LocalJobs {
        functions,
        slots: app.settings.parallelism,
    }
}

/// Starts the handler on a free loopback port and the embedded host on
/// `host_listener`, reading the function app from `root`.
pub async fn start_local(
    app: App,
    root: &Path,
    host_listener: TcpListener,
    bus_settings: BusSettings,
) -> anyhow::Result<Local> {
    let function_app = FunctionApp::load(root)?;
    let bus = Bus::open_with(
        &app.settings.data_dir.join("bus.db"),
        move |q| bus_settings.queue_options(q),
        Arc::clone(&app.clock),
        app.ids.clone(),
    )?;
    let shutdown = app.shutdown.clone();
    let jobs = local_jobs(&app);
    let handler_listener = TcpListener::bind("127.0.0.1:0").await?;
    let handler_addr = handler_listener.local_addr()?;
    let handler = tokio::spawn(crate::server::serve(handler_listener, app));
    let host = LocalHost::start(
        function_app,
        bus.clone(),
        host_listener,
        format!("http://{handler_addr}"),
        jobs,
        shutdown,
    )
    .await?;
    Ok(Local {
        host_addr: host.addr,
        handler_addr,
        bus,
        host,
        handler,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_azure_sources_need_their_container_and_repository_together_and_a_build_job_needs_them() {
        let url = (
            "IMAGE_FACTORY_SOURCES_URL",
            "https://acct.blob.core.windows.net/sources",
        );
        let repo = (
            "IMAGE_FACTORY_REPOSITORY",
            "https://dev.azure.com/fabrikam/Fiber/_git/images",
        );
        assert_eq!(SourceSettings::from_vars(vars(&[]), false).unwrap(), None);
        let both = SourceSettings::from_vars(vars(&[url, repo]), true)
            .unwrap()
            .expect("the Azure path's sources");
        assert_eq!(both.container_url, url.1);
        assert!(matches!(both.repository, RepositoryRef::AzureDevOps { .. }));
        let named =
            |pairs: &[(&str, &str)], job: bool| match SourceSettings::from_vars(vars(pairs), job) {
                Err(ConfigError::Setting { name, message }) => (name, message),
                other => panic!("{other:?}"),
            };
        // A Patch Tuesday run would have no commit to build.
        let (name, message) = named(&[url], false);
        assert_eq!(name, "IMAGE_FACTORY_REPOSITORY");
        assert!(message.contains("Patch Tuesday"), "{message}");
        // A build job's workers would have no snapshot to download.
        let (name, message) = named(&[], true);
        assert_eq!(name, "IMAGE_FACTORY_SOURCES_URL");
        assert!(message.contains("IMAGE_FACTORY_BUILD_JOB"), "{message}");
        assert_eq!(named(&[repo], false).0, "IMAGE_FACTORY_REPOSITORY");
        assert_eq!(
            named(&[url, ("IMAGE_FACTORY_REPOSITORY", "octo/images")], false).0,
            "IMAGE_FACTORY_REPOSITORY"
        );
        assert_eq!(
            named(
                &[
                    (
                        "IMAGE_FACTORY_SOURCES_URL",
                        "https://acct.blob.core.windows.net/sources?sig=x"
                    ),
                    repo
                ],
                false
            )
            .0,
            "IMAGE_FACTORY_SOURCES_URL"
        );
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
}
