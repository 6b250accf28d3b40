//! The composition root: builds the [`App`] from configuration and starts
//! the handler alone (in Azure) or the handler with the embedded host (local).
//!
//! Secrets come from the environment (Key Vault references in Azure). Locally,
//! when they are not set, a data-dir file (`local-secrets.json`, mode 0600) is
//! created once with a random approval key and webhook secret, so the factory
//! runs with no setup and links stay valid across restarts. The data folder
//! is private: 0700, its files 0600 ([`crate::private`]).

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

use crate::app::{App, Ids, TriggerSecrets};
use crate::azure::cosmos::CosmosStore;
use crate::azure::eventgrid::{EventGridPublisher, EventGridSettings};
use crate::config::{Settings, StoreBackend, load_images, parse_key_ring};
use crate::executor::LocalExecutor;
use crate::followups::FollowUps;
use crate::host::bus::Bus;
use crate::host::function_app::FunctionApp;
use crate::host::{BusSettings, LocalHost};
use crate::identity::Identity;
use crate::local::sqlite::SqliteStore;
use crate::notifier::{Channel, EmailChannel, Notifier, OutboxChannel, TeamsChannel};
use crate::ports::events::Publisher;
use crate::ports::store::RunStore;
use crate::web::webhooks::WebhookSettings;

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
const PRIVATE_FOLDERS: [&str; 3] = [OUTBOX, "runs", "releases"];

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

/// Opens the run store the settings choose; for Cosmos DB, checks that the
/// account, database and container are reachable (an error names the setting).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn RunStore>> {
    Ok(match &settings.store {
        StoreBackend::Sqlite => Arc::new(SqliteStore::open(&settings.store_path())?),
        StoreBackend::Cosmos(cosmos) => {
            let store = CosmosStore::connect(cosmos).await?;
            tracing::info!(database = %cosmos.database, container = %cosmos.container, "run store: Cosmos DB");
            Arc::new(store)
        }
    })
}

/// Builds the app from settings and secrets.
pub async fn build_app(
    settings: Settings,
    secrets: Secrets,
    shutdown: CancellationToken,
) -> anyhow::Result<App> {
    let keys = parse_key_ring(&secrets.approval_keys)?;
    let images = load_images(&settings.images_dir)?;
    if images.is_empty() {
        tracing::warn!(dir = %settings.images_dir.display(), "no images configured: add a folder with an image.toml");
    }
    secure_data_dir(&settings).await?;
    let store = open_store(&settings).await?;
    let notifier = notifier(&settings, &secrets)?;
    let azure = match &settings.azure {
        Some(azure) => {
            let identity = Identity::from_vars(|name| std::env::var(name).ok());
            let credential = identity.credential().map_err(anyhow::Error::msg)?;
            tracing::info!(endpoint = %azure.endpoint, "Azure Resource Manager calls enabled");
            Some(Arc::new(crate::azure::Azure::new(
                azure.clone(),
                credential,
            )?))
        }
        None => None,
    };
    let workers = azure.as_ref().and_then(|azure| {
        let job = azure.settings.build_job.as_ref()?;
        tracing::info!(job = %job.name, "builds run off the host, on the Container Apps job");
        let workers: Arc<dyn crate::worker::Workers> =
            Arc::new(crate::azure::jobs::ContainerAppsWorkers::new(
                azure.arm.clone(),
                &azure.settings.subscription_id,
                job,
            ));
        Some(workers)
    });
    let follow_ups = follow_ups(&settings)?;
    Ok(App {
        store,
        executor: Arc::new(LocalExecutor),
        workers,
        azure,
        images: Arc::new(images),
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
    })
}

/// The notification channels: the local outbox when running locally, Teams
/// when `IMAGE_FACTORY_TEAMS_WEBHOOK_URL` is set, email when
/// `IMAGE_FACTORY_EMAIL_ENDPOINT` and `IMAGE_FACTORY_EMAIL_SENDER` are.
fn notifier(settings: &Settings, secrets: &Secrets) -> anyhow::Result<Notifier> {
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    if settings.local {
        channels.push(Arc::new(OutboxChannel::new(settings.data_dir.join(OUTBOX))));
    }
    if let Some(url) = &secrets.teams_webhook {
        channels.push(Arc::new(
            TeamsChannel::new(url.clone()).map_err(anyhow::Error::msg)?,
        ));
    }
    if let Some(email) = &settings.email {
        let credential = Identity::from_vars(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
            .credential()
            .map_err(anyhow::Error::msg)?;
        let channel = EmailChannel::new(&email.endpoint, &email.sender, credential)
            .map_err(anyhow::Error::msg)?;
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
    let handler_listener = TcpListener::bind("127.0.0.1:0").await?;
    let handler_addr = handler_listener.local_addr()?;
    let handler = tokio::spawn(crate::server::serve(handler_listener, app));
    let host = LocalHost::start(
        function_app,
        bus.clone(),
        host_listener,
        format!("http://{handler_addr}"),
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
