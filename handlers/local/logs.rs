//! The local log store: build logs copied into the data folder
//! (`<data>/logs/<run>/<worker>.log`), for workers that run on this machine.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::domain::run::RunId;
use crate::ports::PortError;
use crate::ports::logs::LogStore;
use crate::private;

/// Keeps logs in a folder.
#[derive(Clone, Debug)]
pub struct LocalLogs {
    dir: PathBuf,
}

impl LocalLogs {
    /// Logs kept under `dir`.
    pub fn new(dir: PathBuf) -> LocalLogs {
        LocalLogs { dir }
    }
}

#[async_trait]
impl LogStore for LocalLogs {
    fn url_for(&self, run: &RunId, worker: &str) -> String {
        self.dir
            .join(run.as_str())
            .join(format!("{worker}.log"))
            .display()
            .to_string()
    }

    fn url_for_file(&self, run: &RunId, file: &str) -> String {
        self.dir.join(run.as_str()).join(file).display().to_string()
    }

    async fn upload(&self, path: &Path, url: &str) -> Result<(), PortError> {
        let target = PathBuf::from(url);
        if !target.starts_with(&self.dir) {
            return Err(PortError::permanent(format!(
                "{url} is not in the log folder {}",
                self.dir.display()
            )));
        }
        let source = path.to_path_buf();
        private::blocking(move || {
            if let Some(dir) = target.parent() {
                private::create_dir(dir)?;
            }
            std::fs::copy(&source, &target).map(|_| ())
        })
        .await
        .map_err(|e| PortError::transient(format!("cannot copy {} to {url}: {e}", path.display())))
    }
}
