//! The test environment port: where an image's smoke test runs, and after
//! it the checks of what the image declares (`[declare]`). Locally the
//! image's command or HTTP check and a shell checker (`local::test_env`);
//! on Azure a temporary VM made from the built image, in its own resource
//! group, checked through Run Command (`azure::testvm`). What a test leaves
//! behind is the reaper's (`ports::leftovers`).

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PortError;
use crate::domain::declaration::DeclarationRecord;
use crate::domain::image::ImageConfig;
use crate::domain::run::Run;

/// One smoke test to run.
#[derive(Clone, Debug)]
pub struct SmokeOrder<'a> {
    /// The run.
    pub run: &'a Run,
    /// Its image.
    pub image: &'a ImageConfig,
    /// The run's folder on this machine.
    pub run_dir: PathBuf,
    /// What the build produced in Azure (a gallery version or managed image id), if anything.
    pub built_image: Option<String>,
    /// When this attempt of the test stage started (names what it creates).
    pub started_at: DateTime<Utc>,
}

/// A smoke test that ran to a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeReport {
    /// What was checked, created and cleaned up, in order.
    pub checks: Vec<String>,
    /// `None` when the test passed; else why it failed.
    pub failure: Option<String>,
    /// The declaration checks, for an image with `[declare]` whose smoke
    /// test passed (they run after it, on the same machine or VM); passed
    /// or not, the record says.
    pub declaration: Option<DeclarationRecord>,
}

/// Runs smoke tests.
#[async_trait]
pub trait TestEnvironment: Send + Sync + 'static {
    /// Whether this environment can run `order`'s test (an Azure VM needs a
    /// built image and an HTTP check).
    fn accepts(&self, order: &SmokeOrder<'_>) -> bool;
    /// Runs the smoke test of `order`, then, when it passed and the image
    /// declares its contents, the declaration checks. `Err` only when the
    /// environment itself failed (a transient one may be retried); a
    /// failing check is a report.
    async fn smoke(&self, order: &SmokeOrder<'_>) -> Result<SmokeReport, PortError>;
    /// Removes what `run`'s smoke tests made, at once: the run was
    /// cancelled. Answers what was removed (or found already gone); `None`
    /// when this environment keeps nothing of a test.
    async fn free(&self, run: &Run) -> Result<Option<String>, PortError>;
}
