//! Sources on one machine.
//!
//! [`LocalGit`]: the git repository that holds the images folder, through
//! `git` as a child process: a branch's head is `git rev-parse`, the folder
//! at a commit is `git archive <commit> -- <folder>`. An images folder that
//! no repository tracks (no repository around it, or one that ignores it)
//! is copied as it is, and the snapshot is marked an uncommitted working tree.
//!
//! [`FolderSnapshots`]: snapshots as `<hash>.tar` files of a private folder
//! (`sources/` in the data folder), each written once through a temporary
//! file and a rename, so a reader never sees half a snapshot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::process::Command;

use crate::domain::run::RepositoryRef;
use crate::domain::source::SnapshotId;
use crate::ports::PortError;
use crate::ports::sources::{ArchiveKind, Fetched, SnapshotStore, SourceHost, StoredSnapshot};

/// How long one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository around an images folder.
#[derive(Clone, Debug)]
pub struct LocalGit {
    images: PathBuf,
}

/// Where the images folder sits in its repository.
struct Located {
    /// The repository's top folder.
    top: String,
    /// The images folder's path in it (`images`; empty at the top).
    prefix: String,
}

impl LocalGit {
    /// The repository that holds `images` (the images folder).
    pub fn new(images: &Path) -> LocalGit {
        LocalGit {
            images: images.to_path_buf(),
        }
    }

    /// Runs `git` in the images folder: its standard output when it exits 0,
    /// its standard error otherwise.
    async fn git(&self, args: &[&str]) -> Result<Result<Vec<u8>, String>, PortError> {
        self.git_in(&self.images, args).await
    }

    /// Runs `git` in `dir`.
    async fn git_in(
        &self,
        dir: &Path,
        args: &[&str],
    ) -> Result<Result<Vec<u8>, String>, PortError> {
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(dir)
            .args(args)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .kill_on_drop(true);
        let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
            .await
            .map_err(|_| PortError::transient(format!("git {} took longer than {GIT_TIMEOUT:?}", args[0])))?
            .map_err(|e| {
                PortError::permanent(format!(
                    "cannot run git ({e}); install git, or keep the images folder outside any repository"
                ))
            })?;
        Ok(if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        })
    }

    async fn text(&self, args: &[&str]) -> Result<Result<String, String>, PortError> {
        Ok(self
            .git(args)
            .await?
            .map(|out| String::from_utf8_lossy(&out).trim().to_string()))
    }

    /// The repository that tracks the images folder, if one does.
    async fn locate(&self) -> Result<Option<Located>, PortError> {
        let Ok(top) = self.text(&["rev-parse", "--show-toplevel"]).await? else {
            return Ok(None);
        };
        let Ok(prefix) = self.text(&["rev-parse", "--show-prefix"]).await? else {
            return Ok(None);
        };
        // A folder the repository ignores (or never added) is not its content.
        match self.git(&["ls-files", "-z", "--", "."]).await? {
            Ok(listed) if !listed.is_empty() => Ok(Some(Located {
                top,
                prefix: prefix.trim_end_matches('/').to_string(),
            })),
            _ => Ok(None),
        }
    }

    /// The full id of `rev` as a commit, if the repository has it.
    async fn commit(&self, rev: &str) -> Result<Option<String>, PortError> {
        let peeled = format!("{rev}^{{commit}}");
        Ok(self
            .text(&[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &peeled,
            ])
            .await?
            .ok()
            .filter(|c| !c.is_empty()))
    }

    /// The working tree as a tar (links kept as links, never followed).
    async fn working_tree(&self) -> Result<Vec<u8>, PortError> {
        let images = self.images.clone();
        tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(Vec::new());
            builder.follow_symlinks(false);
            builder.append_dir_all(".", &images)?;
            builder.into_inner()
        })
        .await
        .map_err(|e| PortError::transient(format!("the copy of the working tree stopped: {e}")))?
        .map_err(|e| {
            PortError::permanent(format!(
                "cannot copy the images folder {}: {e}",
                self.images.display()
            ))
        })
    }
}

#[async_trait]
impl SourceHost for LocalGit {
    async fn head(
        &self,
        _repository: Option<&RepositoryRef>,
        branch: &str,
    ) -> Result<Option<String>, PortError> {
        if self.locate().await?.is_none() {
            return Ok(None);
        }
        // The configured branch when the repository has it, else what is checked out.
        if let Some(commit) = self.commit(&format!("refs/heads/{branch}")).await? {
            return Ok(Some(commit));
        }
        match self.commit("HEAD").await? {
            Some(commit) => Ok(Some(commit)),
            None => Err(PortError::permanent(format!(
                "the repository of the images folder {} has no branch {branch} and no commit checked out",
                self.images.display()
            ))),
        }
    }

    async fn fetch(
        &self,
        _repository: Option<&RepositoryRef>,
        commit: Option<&str>,
    ) -> Result<Fetched, PortError> {
        let Some(located) = self.locate().await? else {
            return Ok(Fetched {
                bytes: self.working_tree().await?,
                kind: ArchiveKind::Tar,
                strip_first: false,
                folder: String::new(),
                tolerate_leading: false,
                commit: None,
                uncommitted: true,
                repository: Some(self.images.display().to_string()),
                header_names_commit: false,
            });
        };
        let rev = commit.unwrap_or("HEAD");
        let Some(full) = self.commit(rev).await? else {
            return Err(PortError::permanent(format!(
                "commit {rev} is not in the repository that holds the images folder ({}); commit and push from there, or fetch the commit first",
                located.top
            )));
        };
        let mut args = vec!["archive", "--format=tar", &full];
        if !located.prefix.is_empty() {
            args.extend(["--", &located.prefix]);
        }
        // From the top: the archive's paths are the repository's.
        let bytes = self
            .git_in(Path::new(&located.top), &args)
            .await?
            .map_err(|why| PortError::permanent(format!("git archive of {full} failed: {why}")))?;
        Ok(Fetched {
            bytes,
            kind: ArchiveKind::Tar,
            strip_first: false,
            folder: located.prefix,
            tolerate_leading: false,
            commit: Some(full),
            uncommitted: false,
            repository: Some(located.top),
            header_names_commit: true,
        })
    }
}

/// Snapshots as files of a private folder.
#[derive(Clone, Debug)]
pub struct FolderSnapshots {
    dir: PathBuf,
}

impl FolderSnapshots {
    /// Snapshots kept in `dir` (created when the first is stored).
    pub fn new(dir: PathBuf) -> FolderSnapshots {
        FolderSnapshots { dir }
    }

    fn file(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!("{id}.tar"))
    }
}

fn io(doing: String) -> impl FnOnce(std::io::Error) -> PortError {
    move |e| PortError::permanent(format!("{doing}: {e}"))
}

#[async_trait]
impl SnapshotStore for FolderSnapshots {
    async fn put(&self, id: &SnapshotId, bytes: Vec<u8>) -> Result<(), PortError> {
        let file = self.file(id);
        if tokio::fs::try_exists(&file).await.unwrap_or(false) {
            return Ok(());
        }
        let partial = self
            .dir
            .join(format!("{id}.partial-{:016x}", rand::random::<u64>()));
        let doing = format!("cannot store the snapshot {}", file.display());
        let (from, to) = (partial.clone(), file.clone());
        crate::private::write_in_dir(&partial, bytes)
            .await
            .map_err(io(doing.clone()))?;
        tokio::fs::rename(&from, &to).await.map_err(|e| {
            let _ = std::fs::remove_file(&from);
            io(doing)(e)
        })
    }

    async fn get(&self, id: &SnapshotId) -> Result<Vec<u8>, PortError> {
        let file = self.file(id);
        tokio::fs::read(&file).await.map_err(|e| {
            PortError::permanent(format!(
                "the snapshot {id} is not stored in {} ({e}): it was pruned or never stored; start a new run",
                self.dir.display()
            ))
        })
    }

    async fn list(&self) -> Result<Vec<StoredSnapshot>, PortError> {
        let mut found = Vec::new();
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
            Err(e) => return Err(io(format!("cannot list {}", self.dir.display()))(e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io(format!("cannot list {}", self.dir.display())))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".tar").and_then(|h| h.parse().ok()) else {
                continue;
            };
            let Ok(meta) = entry.metadata().await else {
                continue;
            };
            let stored_at = meta
                .modified()
                .map(DateTime::<Utc>::from)
                .unwrap_or_else(|_| Utc::now());
            found.push(StoredSnapshot { id, stored_at });
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn delete(&self, id: &SnapshotId) -> Result<(), PortError> {
        match tokio::fs::remove_file(self.file(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("cannot remove the snapshot {id}"))(e)),
        }
    }
}
