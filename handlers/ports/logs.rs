//! The log store port: where a build log goes when the build ran somewhere
//! the operator cannot look (a worker off the host), the patch evidence the
//! build collected beside it, and the boot diagnostics of a VM a failed run
//! kept. Blob Storage on Azure
//! (`azure::blob`), a copy in the data folder locally (`local::logs`).

use std::path::Path;

use async_trait::async_trait;

use super::PortError;
use crate::domain::evidence::EVIDENCE_FILE;
use crate::domain::run::RunId;

/// Keeps build logs.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Where the log of `worker`'s build of `run` is kept.
    fn url_for(&self, run: &RunId, worker: &str) -> String;
    /// Where the file named `file` (a plain file name) kept with `run` goes.
    fn url_for_file(&self, run: &RunId, file: &str) -> String;
    /// Where the patch evidence of `worker`'s build of `run` is kept:
    /// beside its log, `<worker>.image-evidence.json`.
    fn evidence_url_for(&self, run: &RunId, worker: &str) -> String {
        let log = self.url_for(run, worker);
        let stem = log.strip_suffix(".log").unwrap_or(&log);
        format!("{stem}.{EVIDENCE_FILE}")
    }
    /// Copies the file at `path` to `url`.
    async fn upload(&self, path: &Path, url: &str) -> Result<(), PortError>;
}
