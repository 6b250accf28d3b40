//! `serve`: the custom handler alone, as the Azure Functions host starts it.

use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::signal::wait_for_signal;
use crate::azure::telemetry::Telemetry;
use crate::config::Settings;
use crate::startup::{Adapters, Secrets, build_app};

/// Run the custom handler alone on FUNCTIONS_CUSTOMHANDLER_PORT (what the Functions host starts).
#[derive(clap::Args)]
pub struct Serve {}

impl Serve {
    /// Serves the handler until a signal stops it.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let _telemetry = Telemetry::from_env(true)?;
        let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
            .context("FUNCTIONS_CUSTOMHANDLER_PORT is not set; the Functions host sets it")?
            .parse()
            .context("FUNCTIONS_CUSTOMHANDLER_PORT is not a port number")?;
        let shutdown = CancellationToken::new();
        let settings = Settings::from_env()?;
        let secrets = Secrets::from_env(&settings, false)?;
        let app = build_app(settings, Adapters::from_env()?, secrets, shutdown.clone()).await?;
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let server = tokio::spawn(crate::server::serve(listener, app));
        wait_for_signal().await;
        shutdown.cancel();
        server.await??;
        Ok(ExitCode::SUCCESS)
    }
}
