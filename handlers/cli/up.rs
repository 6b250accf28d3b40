//! `up`: the whole factory on this machine, the handler behind the embedded
//! Functions host, until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::signal::wait_for_signal;
use crate::azure::telemetry::Telemetry;
use crate::config::Settings;
use crate::host::BusSettings;
use crate::startup::{Adapters, Secrets, build_app, start_local};

/// Run the whole factory on this machine: handler, HTTP triggers on /api/, timers and queues.
#[derive(clap::Args)]
pub struct Up {
    /// Port of the HTTP triggers (as `func start`).
    #[arg(long, default_value_t = 7071, env = "IMAGE_FACTORY_PORT")]
    port: u16,
    /// An app folder in the Functions host's layout (host.json and one
    /// <name>/function.json per function at its root), e.g. written by
    /// `package --dir`; its images/ are used unless IMAGE_FACTORY_IMAGES is
    /// set. Without it, the repository in the current folder (host.json,
    /// functions/) is staged into the data folder's app/ and served from there.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Lock duration of the local queues, in seconds.
    #[arg(long, default_value_t = 60)]
    lock_seconds: u64,
    /// Deliveries before a local queue dead-letters a message.
    #[arg(long, default_value_t = 5)]
    max_deliveries: u32,
    /// How many long local jobs (packer checks and builds, smoke tests)
    /// run at once, 1 to 256 (default: IMAGE_FACTORY_PARALLELISM, else
    /// the number of cores).
    #[arg(long, value_parser = crate::config::parallelism_flag)]
    parallelism: Option<std::num::NonZeroUsize>,
}

impl Up {
    /// Starts the factory and serves until a signal stops it.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Up {
            port,
            root,
            lock_seconds,
            max_deliveries,
            parallelism,
        } = self;
        let _telemetry = Telemetry::from_env(false)?;
        let shutdown = CancellationToken::new();
        let mut settings = Settings::from_env()?;
        settings.local = true;
        if let Some(parallelism) = parallelism {
            settings.parallelism = parallelism;
        }
        if std::env::var_os("IMAGE_FACTORY_PUBLIC_URL").is_none() {
            settings.public_url = format!("http://localhost:{port}");
        }
        let root = match root {
            Some(root) => {
                if std::env::var_os("IMAGE_FACTORY_IMAGES").is_none() {
                    settings.images_dir = root.join("images");
                }
                root
            }
            None => crate::package::stage_in_data(std::path::Path::new("."), &settings.data_dir)
                .context("cannot stage the repository's functions for the local host (run `image-factory up` in the repository, or pass --root <app folder>)")?,
        };
        let secrets = Secrets::from_env(&settings, true)?;
        let app = build_app(settings, Adapters::from_env()?, secrets, shutdown.clone()).await?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| {
                format!("cannot listen on 127.0.0.1:{port}; is another factory running?")
            })?;
        let bus = BusSettings {
            lock_duration: std::time::Duration::from_secs(lock_seconds.max(1)),
            max_delivery_count: max_deliveries.max(1),
        };
        let local = start_local(app, &root, listener, bus).await?;
        tracing::info!(
            "image-factory is up: HTTP triggers on http://{}/api/ (handler on {})",
            local.host_addr,
            local.handler_addr
        );
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
        local.stopped().await;
        Ok(ExitCode::SUCCESS)
    }
}
