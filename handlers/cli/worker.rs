//! `worker`: one build off the host, the command of the build job (a
//! Container Apps job execution): the order, the run's snapshot, the log,
//! the report.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::signal::wait_for_signal;
use crate::azure::blob::{BlobLogs, container_of};
use crate::azure::identity::Identity;
use crate::azure::servicebus::{Connection, LegacyHttp, ServiceBusReporter};
use crate::azure::snapshots::BlobSnapshots;
use crate::azure::telemetry::Telemetry;
use crate::local::executor::LocalExecutor;
use crate::worker::{self, WorkerSettings};

/// Run one build off the host: the order in IMAGE_FACTORY_BUILD_ORDER, the
/// run's snapshot from IMAGE_FACTORY_SOURCES_URL's container, the log to
/// the order's log container, the report to the build-completed queue
/// (IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION).
///
/// The build job's command. Exits 0 once the report is sent, whatever the
/// build's outcome; 1 when it could not be sent (the watchdog then acts).
#[derive(clap::Args)]
pub struct Worker {}

impl Worker {
    /// One build, its log, its report.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let _telemetry = Telemetry::from_env(true)?;
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut settings = WorkerSettings::from_vars(var).map_err(anyhow::Error::msg)?;
        settings.limits = crate::startup::snapshot_limits(var)?;
        let credential = Identity::from_vars(var)
            .credential()
            .map_err(anyhow::Error::msg)?;
        // A root certificate to trust besides the usual ones, for Blob
        // Storage (the logs and the snapshots): an emulator's, in tests.
        let extra_root = var("IMAGE_FACTORY_BUILD_LOGS_CA").map(std::path::PathBuf::from);
        let uploader = BlobLogs::new(
            container_of(&settings.order.log_url),
            credential.clone(),
            extra_root.as_deref(),
        )?;
        let snapshots = match &settings.sources_url {
            Some(url) => Some(
                BlobSnapshots::new(
                    url,
                    credential.clone(),
                    extra_root.as_deref(),
                    settings.limits.max_archive(),
                )
                .with_context(|| crate::worker::SOURCES_URL_VAR)?,
            ),
            None => None,
        };
        let connection = var("IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION")
            .context("IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION is not set (the job's secret reference to Key Vault)")?;
        let connection = Connection::parse(&connection)
            .map_err(|e| anyhow::anyhow!("IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION: {e}"))?;
        let http = LegacyHttp::new(var("IMAGE_FACTORY_SERVICEBUS_ENDPOINT").as_deref())
            .map_err(|e| anyhow::anyhow!("IMAGE_FACTORY_SERVICEBUS_ENDPOINT: {e}"))?;
        let reporter = ServiceBusReporter::new(&connection, http).map_err(anyhow::Error::msg)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        // The worker's span is a stage span of the run's trace, like the handler's.
        let span = tracing::info_span!(
            "stage",
            run_id = %settings.order.run_id,
            stage = "build",
            worker = %settings.order.worker_id
        );
        crate::trace::join_run_trace(&span, &settings.order.run_id);
        let work = async {
            tracing::info!(run_id = %settings.order.run_id, worker = %settings.order.worker_id, "build worker started");
            match worker::run(
                &settings,
                credential.as_ref(),
                &LocalExecutor,
                snapshots
                    .as_ref()
                    .map(|s| s as &dyn crate::ports::sources::SnapshotStore),
                &uploader,
                &reporter,
                cancel,
            )
            .await
            {
                Ok(report) => {
                    tracing::info!(run_id = %report.run_id, outcome = ?report.outcome, "build reported");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "build worker failed");
                    ExitCode::FAILURE
                }
            }
        };
        Ok(tracing::Instrument::instrument(work, span).await)
    }
}
