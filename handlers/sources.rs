//! Source snapshots: taking one when a run is created, opening one when a
//! stage (or the build worker) needs the run's files, reading the images
//! and their `image.toml` from one, and pruning those no run needs.
//!
//! Taking: the [`SourceHost`] hands over the images folder at a commit as
//! an archive; it is read within [`Limits`] ([`crate::archive`] refuses what
//! is unsafe), the commit its header names is checked against the commit
//! asked for, and its canonical form is stored once in the
//! [`SnapshotStore`] under its SHA-256. Opening: the stored bytes' SHA-256
//! must be the id, or the run fails ("tampered or corrupt"); then they are
//! read again with the same checks and, for the stages that need files,
//! unpacked into the run's own folder.
//!
//! The same host and store serve every run: the hosts differ (GitHub,
//! Azure DevOps, `git` on one machine), the snapshots do not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

pub use crate::archive::Limits;
use crate::archive::{ArchiveError, Entry, Format, Layout, SourceTree};
use crate::domain::image::{
    IMAGE_FILE, ImageConfig, ImageSettings, is_valid_image_name, parent_problem,
    parse_image_settings, settings_error_line,
};
use crate::domain::run::RepositoryRef;
use crate::domain::source::{SnapshotId, SourceRecord};
use crate::ports::PortError;
use crate::ports::sources::{ArchiveKind, Fetched, SnapshotStore, SourceHost};

/// Why a snapshot could not be taken or opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository (or the working tree) could not be read.
    #[error("cannot read the images folder's source: {0}")]
    Host(PortError),
    /// The snapshot store failed.
    #[error("the snapshot store failed: {0}")]
    Store(PortError),
    /// The archive was refused.
    #[error("the source archive of {what} is refused: {error}")]
    Refused {
        /// What was read (`commit <id>`, `snapshot <id>`).
        what: String,
        /// Why.
        error: ArchiveError,
    },
    /// The archive holds another commit than the one asked for.
    #[error(
        "the archive served for commit {asked} says it holds commit {found}; refusing to build what was not asked for"
    )]
    WrongCommit {
        /// The commit asked for.
        asked: String,
        /// The commit its header names (or `none`).
        found: String,
    },
    /// The stored bytes do not hash to the snapshot's id.
    #[error(
        "the stored snapshot {id} is tampered with or corrupt: its SHA-256 is {found}; nothing was unpacked (start a new run to take a fresh snapshot)"
    )]
    Tampered {
        /// The id.
        id: SnapshotId,
        /// The hash of what was stored.
        found: String,
    },
    /// The run's folder could not be written.
    #[error("cannot unpack the snapshot into {path}: {error}")]
    Unpack {
        /// The folder.
        path: PathBuf,
        /// Why.
        error: ArchiveError,
    },
}

impl SourceError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Host(e) | SourceError::Store(e) => e.is_transient(),
            // The run's folder, not the source: a full disk, a file in the way.
            SourceError::Unpack { .. } => true,
            _ => false,
        }
    }
}

/// A snapshot taken or found, with its tree in memory.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Its id.
    pub id: SnapshotId,
    /// The commit it holds (`None`: a working tree).
    pub commit: Option<String>,
    /// True when it is a copy of a working tree that is in no repository.
    pub uncommitted: bool,
    /// The repository, as its host names it.
    pub repository: Option<String>,
    /// Its files.
    pub tree: Arc<SourceTree>,
}

impl Snapshot {
    /// The record of this snapshot on a run of `image`.
    pub fn record(&self, image: &str) -> SourceRecord {
        SourceRecord {
            repository: self.repository.clone(),
            commit: self.commit.clone(),
            snapshot: self.id.clone(),
            size: self.tree.size(),
            image_hash: self.tree.folder_hash(image),
            uncommitted: self.uncommitted,
        }
    }

    /// The build inputs of `image` in this snapshot (see [`crate::inputs`]):
    /// the files of its folder, its settings and base image version.
    pub fn inputs(
        &self,
        image: &str,
        settings: &ImageSettings,
        base_image_version: Option<&str>,
    ) -> crate::inputs::Inputs {
        let folder = self.tree.subtree(image);
        let entries = folder.entries().iter().map(|(path, entry)| match entry {
            Entry::File { bytes, .. } => (path.as_str(), bytes.as_slice()),
            Entry::Link { target } => (path.as_str(), target.as_bytes()),
        });
        crate::inputs::inputs(entries, settings, base_image_version)
    }

    /// The images of the snapshot (see [`images`]).
    pub fn images(&self, shown: &str) -> BTreeMap<String, Result<ImageSettings, String>> {
        images(&self.tree, shown)
    }
}

/// Snapshots kept in memory after use, newest last: a push of ten images or
/// a Patch Tuesday of a hundred opens the same one again and again.
const CACHED: usize = 8;

/// Takes, opens and prunes snapshots through a host and a store.
pub struct Sources {
    host: Arc<dyn SourceHost>,
    store: Arc<dyn SnapshotStore>,
    limits: Limits,
    cache: Mutex<Vec<(SnapshotId, Arc<SourceTree>)>>,
    pruned: Mutex<Option<DateTime<Utc>>>,
    /// The branch head read last for the views ([`Sources::head_cached`]).
    head: tokio::sync::Mutex<Option<Head>>,
}

/// A branch head's snapshot and when the head was read.
struct Head {
    branch: String,
    read_at: DateTime<Utc>,
    snapshot: Snapshot,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Sources {
    /// Sources from `host`, kept in `store`, read within `limits`.
    pub fn new(
        host: Arc<dyn SourceHost>,
        store: Arc<dyn SnapshotStore>,
        limits: Limits,
    ) -> Sources {
        Sources {
            host,
            store,
            limits,
            cache: Mutex::new(Vec::new()),
            pruned: Mutex::new(None),
            head: tokio::sync::Mutex::new(None),
        }
    }

    /// The snapshot of the head of `branch` of the configured repository,
    /// for what only looks (the fleet, the dashboard, the sweeper's search
    /// for parents): read again once `fresh_for` has passed since the last
    /// read, and taken again only when the head moved (a working tree in no
    /// repository is copied again). When the head cannot be read, the last
    /// snapshot read is kept, if there is one.
    pub async fn head_cached(
        &self,
        branch: &str,
        now: DateTime<Utc>,
        fresh_for: chrono::Duration,
    ) -> Result<Snapshot, SourceError> {
        let mut head = self.head.lock().await;
        let known = head.as_mut().filter(|h| h.branch == branch);
        if let Some(known) = &known
            && now - known.read_at < fresh_for
        {
            return Ok(known.snapshot.clone());
        }
        let commit = match self.host.head(None, branch).await {
            Ok(commit) => commit,
            Err(e) => {
                return match known {
                    Some(known) => {
                        tracing::warn!(%branch, error = %e, "the branch head cannot be read; keeping the last one read");
                        Ok(known.snapshot.clone())
                    }
                    None => Err(SourceError::Host(e)),
                };
            }
        };
        if let Some(known) = known
            && commit.is_some()
            && known.snapshot.commit == commit
        {
            known.read_at = now;
            return Ok(known.snapshot.clone());
        }
        let snapshot = self.take(None, commit.as_deref()).await?;
        *head = Some(Head {
            branch: branch.to_string(),
            read_at: now,
            snapshot: snapshot.clone(),
        });
        Ok(snapshot)
    }

    /// Whether a pruning is due at `now`: never done by this process, or
    /// done `every` ago.
    pub fn prune_due(&self, now: DateTime<Utc>, every: chrono::Duration) -> bool {
        self.pruned
            .lock()
            .map(|last| last.is_none_or(|at| now - at >= every))
            .unwrap_or(true)
    }

    /// Records that a pruning ended at `now`.
    pub fn pruned_at(&self, now: DateTime<Utc>) {
        if let Ok(mut last) = self.pruned.lock() {
            *last = Some(now);
        }
    }

    /// The store (pruning, the worker's order).
    pub fn store(&self) -> &dyn SnapshotStore {
        self.store.as_ref()
    }

    /// Takes the snapshot of the images folder at `commit` (`None`: the
    /// working tree where there is no repository, else the checked-out
    /// commit) and stores it, once.
    pub async fn take(
        &self,
        repository: Option<&RepositoryRef>,
        commit: Option<&str>,
    ) -> Result<Snapshot, SourceError> {
        let fetched = self
            .host
            .fetch(repository, commit)
            .await
            .map_err(SourceError::Host)?;
        let limits = self.limits;
        let what = match &fetched.commit {
            Some(c) => format!("commit {c}"),
            None => "the working tree".to_string(),
        };
        let (snapshot, bytes) = tokio::task::spawn_blocking(move || read_fetched(fetched, &limits))
            .await
            .map_err(|e| SourceError::Host(PortError::transient(e.to_string())))?
            .map_err(|e| match e {
                SourceError::Refused { error, .. } => SourceError::Refused { what, error },
                other => other,
            })?;
        self.store
            .put(&snapshot.id, bytes)
            .await
            .map_err(SourceError::Store)?;
        self.remember(&snapshot.id, Arc::clone(&snapshot.tree));
        Ok(snapshot)
    }

    /// Takes the snapshot of the head of `branch` now.
    pub async fn take_head(
        &self,
        repository: Option<&RepositoryRef>,
        branch: &str,
    ) -> Result<Snapshot, SourceError> {
        let head = self
            .host
            .head(repository, branch)
            .await
            .map_err(SourceError::Host)?;
        self.take(repository, head.as_deref()).await
    }

    /// The tree of the stored snapshot `id`, its SHA-256 checked.
    pub async fn open(&self, id: &SnapshotId) -> Result<Arc<SourceTree>, SourceError> {
        if let Some(tree) = self.cached(id) {
            return Ok(tree);
        }
        let bytes = self.store.get(id).await.map_err(SourceError::Store)?;
        let (owned, limits) = (id.clone(), self.limits);
        let tree = tokio::task::spawn_blocking(move || verify(&owned, &bytes, &limits))
            .await
            .map_err(|e| SourceError::Store(PortError::transient(e.to_string())))??;
        let tree = Arc::new(tree);
        self.remember(id, Arc::clone(&tree));
        Ok(tree)
    }

    /// Removes the stored snapshots that are not `needed` and were stored
    /// before `before` (a snapshot just taken may belong to a run being
    /// created). Answers the removed ones.
    pub async fn prune(
        &self,
        needed: &BTreeSet<SnapshotId>,
        before: DateTime<Utc>,
    ) -> Result<Vec<SnapshotId>, SourceError> {
        let mut removed = Vec::new();
        for stored in self.store.list().await.map_err(SourceError::Store)? {
            if needed.contains(&stored.id) || stored.stored_at >= before {
                continue;
            }
            self.store
                .delete(&stored.id)
                .await
                .map_err(SourceError::Store)?;
            if let Ok(mut cache) = self.cache.lock() {
                cache.retain(|(id, _)| *id != stored.id);
            }
            removed.push(stored.id);
        }
        Ok(removed)
    }

    fn cached(&self, id: &SnapshotId) -> Option<Arc<SourceTree>> {
        let cache = self.cache.lock().ok()?;
        cache
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, t)| Arc::clone(t))
    }

    fn remember(&self, id: &SnapshotId, tree: Arc<SourceTree>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(i, _)| i != id);
            cache.push((id.clone(), tree));
            if cache.len() > CACHED {
                cache.remove(0);
            }
        }
    }
}

/// Reads what a host served into a snapshot and its canonical bytes.
fn read_fetched(fetched: Fetched, limits: &Limits) -> Result<(Snapshot, Vec<u8>), SourceError> {
    let format = match fetched.kind {
        ArchiveKind::Tar => Format::Tar,
        ArchiveKind::TarGz => Format::TarGz,
        ArchiveKind::Zip => Format::Zip,
    };
    let layout = Layout {
        strip_first: fetched.strip_first,
        folder: fetched.folder.clone(),
        tolerate_leading: fetched.tolerate_leading,
    };
    let refused = |error| SourceError::Refused {
        what: String::new(),
        error,
    };
    let read = crate::archive::read(&fetched.bytes, format, &layout, limits).map_err(refused)?;
    if fetched.header_names_commit
        && let Some(asked) = &fetched.commit
        && !read
            .commit
            .as_deref()
            .is_some_and(|found| found.eq_ignore_ascii_case(asked))
    {
        return Err(SourceError::WrongCommit {
            asked: asked.clone(),
            found: read.commit.unwrap_or_else(|| "none".into()),
        });
    }
    let (bytes, hash) = read.tree.canonical_with_hash();
    let id = hash
        .parse()
        .unwrap_or_else(|_| unreachable!("a SHA-256 in hex is a snapshot id"));
    Ok((
        Snapshot {
            id,
            commit: fetched.commit,
            uncommitted: fetched.uncommitted,
            repository: fetched.repository,
            tree: Arc::new(read.tree),
        },
        bytes,
    ))
}

/// Checks that `bytes` are the snapshot `id` (their SHA-256) and reads them,
/// with the same checks as any archive. The host and the build worker both
/// open snapshots through this.
pub fn verify(id: &SnapshotId, bytes: &[u8], limits: &Limits) -> Result<SourceTree, SourceError> {
    let found = crate::archive::sha256_hex(bytes);
    if found != id.as_str() {
        return Err(SourceError::Tampered {
            id: id.clone(),
            found,
        });
    }
    crate::archive::read(bytes, Format::Tar, &Layout::default(), limits)
        .map(|read| read.tree)
        .map_err(|error| SourceError::Refused {
            what: format!("snapshot {id}"),
            error,
        })
}

/// Writes `tree` as the folder `dir` (replacing a previous unpacking).
pub async fn unpack(tree: Arc<SourceTree>, dir: &Path) -> Result<(), SourceError> {
    let target = dir.to_path_buf();
    let parent = target.parent().map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        if let Some(parent) = parent {
            crate::private::create_dir(&parent).map_err(|source| ArchiveError::Write {
                path: parent.clone(),
                source,
            })?;
        }
        crate::archive::unpack(&tree, &target)
    })
    .await
    .map_err(|e| SourceError::Unpack {
        path: dir.to_path_buf(),
        error: ArchiveError::Malformed(e.to_string()),
    })?
    .map_err(|error| SourceError::Unpack {
        path: dir.to_path_buf(),
        error,
    })
}

/// Every image of a snapshot's tree: each top folder holding an
/// `image.toml`, by name, with its settings or why they are refused (the
/// file named as `<shown>/<name>/image.toml`, with the line where the
/// parser tells it). A folder whose name is not an image name, an image
/// built on an image the snapshot does not hold, and images built on each
/// other are refused too; the others stand on their own.
pub fn images(tree: &SourceTree, shown: &str) -> BTreeMap<String, Result<ImageSettings, String>> {
    let shown = shown.trim_end_matches('/');
    let mut found = BTreeMap::new();
    for name in tree.top_folders() {
        let path = format!("{name}/{IMAGE_FILE}");
        let Some(bytes) = tree.file(&path) else {
            continue;
        };
        let file = format!("{shown}/{path}");
        let settings = if !is_valid_image_name(name) {
            Err(format!(
                "{shown}/{name}: an image folder's name must be 1-64 characters of a-z, 0-9 and -"
            ))
        } else {
            std::str::from_utf8(bytes)
                .map_err(|_| format!("{file} is not UTF-8 text"))
                .and_then(|text| {
                    parse_image_settings(text).map_err(|message| {
                        let line = settings_error_line(text, &message)
                            .map(|n| format!(" (line {n})"))
                            .unwrap_or_default();
                        format!("{file} is not valid{line}: {message}")
                    })
                })
        };
        found.insert(name.to_string(), settings);
    }
    let parents: BTreeMap<String, Option<String>> = found
        .iter()
        .filter_map(|(name, s)| {
            s.as_ref()
                .ok()
                .map(|s| (name.clone(), s.parent().map(String::from)))
        })
        .collect();
    for (name, parent) in &parents {
        if let Some(why) = parent_problem(name, parent.as_deref(), &parents) {
            found.insert(
                name.clone(),
                Err(format!("{shown}/{name}/{IMAGE_FILE}: {why}")),
            );
        }
    }
    found
}

/// The image `name` of a run's snapshot, its folder where the stage unpacks
/// it (`<dir>/<name>`).
pub fn image_config(
    tree: &SourceTree,
    name: &str,
    shown: &str,
    dir: &Path,
) -> Result<ImageConfig, String> {
    match images(tree, shown).remove(name) {
        Some(Ok(settings)) => Ok(ImageConfig {
            name: name.to_string(),
            dir: dir.join(name),
            settings,
        }),
        Some(Err(why)) => Err(why),
        None => Err(format!(
            "the run's snapshot has no image {name} ({shown}/{name}/{IMAGE_FILE} is not in it)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> SourceTree {
        let mut tree = SourceTree::new();
        for (path, text) in files {
            tree.insert(
                path.to_string(),
                Entry::File {
                    executable: false,
                    bytes: text.as_bytes().to_vec(),
                },
                &Limits::default(),
            )
            .unwrap();
        }
        tree
    }

    const GOOD: &str = "[smoke.command]\nargv = [\"true\"]\n[approval]\napprovers = [\"a\"]\n";

    #[test]
    fn each_image_stands_on_its_own_and_a_bad_one_is_named_with_its_file_and_line() {
        let broken = format!("{GOOD}[packer]\ntimeout_minutes = 0\n");
        let child = format!("{GOOD}[base_image]\nfactory = \"gone\"\n");
        let t = tree(&[
            ("web/image.toml", GOOD),
            ("web/build.pkr.hcl", "build {}"),
            ("bad/image.toml", &broken),
            ("typo/image.toml", "[smoke.command\n"),
            ("orphan/image.toml", &child),
            ("Upper/image.toml", GOOD),
            ("notes/README.md", "not an image"),
        ]);
        let found = images(&t, "images");
        assert!(found["web"].is_ok());
        assert!(!found.contains_key("notes"));
        let bad = found["bad"].as_ref().unwrap_err();
        assert!(
            bad.starts_with("images/bad/image.toml is not valid (line 6)")
                && bad.contains("timeout_minutes"),
            "{bad}"
        );
        let typo = found["typo"].as_ref().unwrap_err();
        assert!(
            typo.contains("images/typo/image.toml") && typo.contains("line 1"),
            "{typo}"
        );
        let orphan = found["orphan"].as_ref().unwrap_err();
        assert!(orphan.contains("gone"), "{orphan}");
        assert!(found["Upper"].as_ref().unwrap_err().contains("name"));
    }

    #[test]
    fn a_tampered_snapshot_is_refused_before_it_is_read() {
        let t = tree(&[("web/image.toml", GOOD)]);
        let (mut bytes, hash) = t.canonical_with_hash();
        let id: SnapshotId = hash.parse().unwrap();
        assert_eq!(verify(&id, &bytes, &Limits::default()).unwrap(), t);
        let last = bytes.len() - 1100;
        bytes[last] ^= 1;
        let error = verify(&id, &bytes, &Limits::default()).unwrap_err();
        assert!(matches!(error, SourceError::Tampered { .. }), "{error}");
        assert!(error.to_string().contains("tampered"), "{error}");
    }
}
