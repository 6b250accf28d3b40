//! The build workers port: builds that run off the Functions host. A Windows
//! build takes 30 to 90 minutes, longer than a function invocation should
//! live, so on Azure the build stage only starts a worker and returns; the
//! worker's report on the `build-completed` queue finishes the stage.
//!
//! - [`BuildOrder`]: what the build stage asks a worker to build;
//! - [`BuildReport`]: what the worker sends back;
//! - [`Workers`]: starts, watches and stops workers (the Container Apps
//!   adapter is `azure::jobs`);
//! - [`Reporter`]: how a worker sends its report (`azure::servicebus`).
//!
//! The build stage chooses a random worker id per order and the report
//! carries it back, so a report is matched to the attempt that started the
//! worker, and a report from a worker whose attempt was superseded is refused
//! by the state machine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::PortError;
use crate::domain::run::{BuildOutcome, BuildSpec, RunId, WorkerRef};
use crate::domain::source::SnapshotId;

/// The environment variable that carries a worker's [`BuildOrder`].
pub const ORDER_VAR: &str = "IMAGE_FACTORY_BUILD_ORDER";

/// What one worker builds: everything `packer build` needs from the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildOrder {
    /// The run.
    pub run_id: RunId,
    /// The image (a folder of the run's snapshot).
    pub image: String,
    /// The run's source snapshot: the worker downloads it from the
    /// snapshot store with its own identity, checks that its SHA-256 is
    /// this id, unpacks it and builds the image's folder in it. `None`
    /// only for a run made before snapshots, which a worker refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotId>,
    /// The version being built.
    pub version: String,
    /// The commit being built, if any.
    pub commit: Option<String>,
    /// The version of the base image it is built on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_version: Option<String>,
    /// The stage message that asked for the build. Every delivery of the same
    /// message shares one worker: a redelivery finds it instead of starting
    /// a second build.
    pub message_id: String,
    /// The factory's id for this worker; its report carries it back.
    pub worker_id: String,
    /// Where the worker uploads the build log.
    pub log_url: String,
    /// Workers of this run the watchdog already counted lost: never adopted
    /// again, even when the platform later says they ran well (the factory's
    /// own knowledge; not sent to the worker).
    #[serde(skip)]
    pub lost_workers: Vec<String>,
    /// The delivery of the stage message that asks (from 1; 0: unknown). No
    /// worker can exist yet for a first delivery, so it is started without
    /// looking for one (the factory's own knowledge; not sent to the worker).
    #[serde(skip)]
    pub delivery: u32,
}

impl BuildOrder {
    /// What the worker's packer command line is built from.
    pub fn spec(&self) -> BuildSpec {
        BuildSpec {
            run_id: self.run_id.clone(),
            version: self.version.clone(),
            commit: self.commit.clone().unwrap_or_default(),
            base_image_version: self.base_image_version.clone(),
        }
    }
}

/// The message a worker sends on the `build-completed` queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildReport {
    /// The run.
    pub run_id: RunId,
    /// The worker's id, from its order.
    pub worker_id: String,
    /// How the build ended.
    pub outcome: BuildOutcome,
}

/// A worker as its platform sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Starting or running.
    Running,
    /// Its process exited well: it sent its report before exiting.
    Succeeded {
        /// When it ended, if known.
        ended_at: Option<DateTime<Utc>>,
    },
    /// It ended without finishing its work (failed, stopped, degraded).
    Ended {
        /// The platform's word for it.
        status: String,
        /// When it ended, if known.
        ended_at: Option<DateTime<Utc>>,
    },
    /// The platform does not know it (its history was trimmed).
    Missing,
}

/// Starts, watches and stops build workers.
#[async_trait]
pub trait Workers: Send + Sync + 'static {
    /// Starts the worker for `order`, or answers the worker already started
    /// for the same stage message when it is still running or ended well.
    async fn start(&self, order: &BuildOrder) -> Result<WorkerRef, PortError>;
    /// What the platform says about `worker`.
    async fn state(&self, worker: &WorkerRef) -> Result<WorkerState, PortError>;
    /// Stops `worker` (nothing happens when it already ended).
    async fn stop(&self, worker: &WorkerRef) -> Result<(), PortError>;
    /// Stops every worker started for the stage message `message_id` of
    /// `run` that still runs, whether or not the run recorded it (a
    /// cancelled run's build whose start was not recorded); answers the
    /// workers stopped.
    async fn stop_started_for(
        &self,
        run: &RunId,
        message_id: &str,
    ) -> Result<Vec<WorkerRef>, PortError>;
}

/// Sends a worker's report (the Service Bus adapter is `azure::servicebus`).
#[async_trait]
pub trait Reporter: Send + Sync {
    /// Sends `report`; `message_id` makes a resend a duplicate Service Bus can drop.
    async fn send(&self, report: &BuildReport, message_id: &str) -> Result<(), String>;
}
