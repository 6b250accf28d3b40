//! What the stage bodies may use: [`Ports`], handed to
//! [`super::execute`] by the stage function.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::approve::ApprovalLinks;
use crate::ports::clock::Ids;
use crate::ports::executor::Executor;
use crate::ports::gallery::Gallery;
use crate::ports::logs::LogStore;
use crate::ports::notifier::Notifier;
use crate::ports::security_updates::SecurityUpdates;
use crate::ports::store::RunStore;
use crate::ports::test_env::TestEnvironment;
use crate::ports::workers::Workers;

/// Everything the stage bodies may use: the ports, and the few facts of
/// this handler they read. Each body takes the part it needs.
pub struct Ports<'a> {
    /// Where packer and short checks run.
    pub executor: &'a dyn Executor,
    /// Build workers off the host, when builds run there.
    pub workers: Option<&'a dyn Workers>,
    /// Where the logs of builds off the host are kept.
    pub logs: &'a dyn LogStore,
    /// Test environments, the first that accepts a test runs it.
    pub test_environments: &'a [Arc<dyn TestEnvironment>],
    /// Where released versions live.
    pub gallery: &'a dyn Gallery,
    /// The run store (the release stage reads the previous release for its
    /// notes, the patch gate for what is newly fixed).
    pub store: &'a dyn RunStore,
    /// Microsoft's security data, for the test stage's patch gate.
    pub security_updates: &'a dyn SecurityUpdates,
    /// The approval channels.
    pub notifier: &'a Notifier,
    /// Signs approval links.
    pub links: ApprovalLinks<'a>,
    /// Fresh ids (worker ids, approval token ids).
    pub ids: &'a Ids,
    /// The packer binary, when one is configured.
    pub packer: Option<PathBuf>,
    /// The run's folder on this machine.
    pub run_dir: PathBuf,
    /// The time the stage runs at.
    pub now: DateTime<Utc>,
    /// Cancelled when the handler shuts down.
    pub cancel: CancellationToken,
}
