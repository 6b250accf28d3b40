//! The leftovers port: the cloud resources the factory's runs tagged and
//! left behind (a killed build's VM, NIC, disk and key vault; a failed test's
//! resource group), for the reaper ([`crate::domain::reaper`]). On Azure,
//! Resource Manager (`azure::reaper`); on one machine there is none: a run
//! creates nothing that outlives it there.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::PortError;
use crate::domain::reaper::Tagged;

/// What one try at a kept VM's boot diagnostics found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Nothing to read yet (boot diagnostics were off and are now on, or
    /// the platform has not written them): try again at the next firing.
    Pending(String),
    /// Read, into these files (either may be missing when the platform has
    /// only one of them).
    Saved {
        /// The serial console log.
        serial_log: Option<PathBuf>,
        /// The screenshot (a bitmap).
        screenshot: Option<PathBuf>,
    },
}

/// Lists and deletes what runs left behind.
#[async_trait]
pub trait Leftovers: Send + Sync + 'static {
    /// Every resource and resource group that carries the factory's run tag
    /// (or is a group tagged by the factory), with its tags.
    async fn list(&self) -> Result<Vec<Tagged>, PortError>;
    /// Deletes `resource`: a group with everything in it (its VMs forced), a
    /// VM after its untagged disks were tagged with its run (so that they
    /// are reaped next), any other type by its id. `Ok(false)` when it was
    /// already gone.
    async fn delete(&self, resource: &Tagged) -> Result<bool, PortError>;
    /// Reads the boot diagnostics (serial log, screenshot) of the VM `vm`
    /// into files under `dir`, turning them on first when they are off.
    async fn boot_diagnostics(&self, vm: &Tagged, dir: &Path) -> Result<Capture, PortError>;
}
