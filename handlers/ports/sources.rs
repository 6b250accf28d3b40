//! The sources port: where the images folder of a commit comes from, and
//! where its snapshots are kept.
//!
//! - [`SourceHost`]: the repository that holds the images folder. It
//!   resolves a branch's head and hands over the folder at a commit as an
//!   archive, as the host serves it (GitHub's tarball: `web::github`; Azure
//!   DevOps' items zip: `web::azure_devops`; `git archive`, or the working
//!   tree when the folder is in no repository: `local::sources`).
//! - [`SnapshotStore`]: snapshots by their SHA-256, each stored once (a Blob
//!   container in Azure: `azure::blob`; a folder of the data folder:
//!   `local::sources`).
//!
//! What an archive holds is checked, made canonical and hashed by
//! `crate::sources`, the same for every host.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PortError;
use crate::domain::run::RepositoryRef;
use crate::domain::source::SnapshotId;

/// The kind of archive a host served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A tar stream (`git archive`).
    Tar,
    /// A gzipped tar stream (GitHub's tarball).
    TarGz,
    /// A zip file (Azure DevOps' items).
    Zip,
}

/// The images folder at one commit, as its host served it.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The archive's bytes.
    pub bytes: Vec<u8>,
    /// Its kind.
    pub kind: ArchiveKind,
    /// Whether every path starts with one folder to take off (GitHub's
    /// `<owner>-<repo>-<commit>/`).
    pub strip_first: bool,
    /// Where the images folder is inside the archive (after stripping).
    pub folder: String,
    /// Whether the archive may hold the folder's entries under any trailing
    /// part of [`Self::folder`], or none (a layout the host does not document).
    pub tolerate_leading: bool,
    /// The full commit id the archive holds; `None` for a working tree.
    pub commit: Option<String>,
    /// True when the archive is a copy of a working tree in no repository.
    pub uncommitted: bool,
    /// The repository, as the host names it.
    pub repository: Option<String>,
    /// True when the archive's pax global header must name [`Self::commit`]
    /// (`git archive` of a commit writes it; GitHub's tarballs carry it).
    pub header_names_commit: bool,
}

/// Where the images folder's commits live.
#[async_trait]
pub trait SourceHost: Send + Sync + 'static {
    /// The commit at the head of `branch` now (of `repository`, or of the
    /// factory's configured repository); `None` when the images folder is in
    /// no repository (a working tree on one machine).
    async fn head(
        &self,
        repository: Option<&RepositoryRef>,
        branch: &str,
    ) -> Result<Option<String>, PortError>;
    /// The images folder at `commit` (`None`: the working tree, where there
    /// is no repository).
    async fn fetch(
        &self,
        repository: Option<&RepositoryRef>,
        commit: Option<&str>,
    ) -> Result<Fetched, PortError>;
}

/// A stored snapshot, as pruning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// Its id.
    pub id: SnapshotId,
    /// When it was stored (last written).
    pub stored_at: DateTime<Utc>,
}

/// Keeps snapshots by id. Storing an id already stored changes nothing.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `bytes` as `id` (the caller computed the id from the bytes).
    async fn put(&self, id: &SnapshotId, bytes: Vec<u8>) -> Result<(), PortError>;
    /// The bytes stored as `id`, as stored (the caller checks their hash).
    async fn get(&self, id: &SnapshotId) -> Result<Vec<u8>, PortError>;
    /// Every stored snapshot.
    async fn list(&self) -> Result<Vec<StoredSnapshot>, PortError>;
    /// Removes `id` (nothing happens when it is not stored).
    async fn delete(&self, id: &SnapshotId) -> Result<(), PortError>;
}
