//! Git tags on one machine: `git` run as a child process in the repository
//! that holds the images folder, when there is one. A tag is made with
//! `git tag <name> <commit>` (a lightweight tag, as the hosts' ref APIs make)
//! and never forced: one already there on the same commit is success, one on
//! another commit is a conflict and stays where it is.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::process::Command;

use crate::domain::git_tag::{TagName, TagOutcome};
use crate::domain::run::RepositoryRef;
use crate::ports::git::{GitTags, TagError};

/// Tags commits in the git repository around an images folder.
#[derive(Clone, Debug)]
pub struct LocalGitTags {
    images: PathBuf,
}

impl LocalGitTags {
    /// Tags in the repository that holds `images` (the images folder).
    pub fn new(images: &Path) -> LocalGitTags {
        LocalGitTags {
            images: images.to_path_buf(),
        }
    }

    /// Runs `git` in the images folder; its standard output (trimmed) when it
    /// exits 0, its standard error otherwise.
    async fn git(&self, args: &[&str]) -> Result<Result<String, String>, TagError> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.images)
            .args(args)
            // Only the images folder's repository, whatever the factory's environment says.
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                TagError::permanent(format!(
                    "cannot run git ({e}); install git to tag released commits"
                ))
            })?;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
        Ok(if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(text(&output.stderr))
        })
    }

    /// The commit `name` points at (peeled), if the tag exists.
    async fn existing(&self, name: &TagName) -> Result<Option<String>, TagError> {
        let peeled = format!("{}^{{commit}}", name.ref_name());
        Ok(self
            .git(&["rev-parse", "--verify", "--quiet", &peeled])
            .await?
            .ok())
    }

    /// The outcome when the tag exists already.
    fn settled(existing: String, commit: &str) -> TagOutcome {
        if existing.eq_ignore_ascii_case(commit) {
            TagOutcome::AlreadyThere
        } else {
            TagOutcome::Conflict { existing }
        }
    }
}

#[async_trait]
impl GitTags for LocalGitTags {
    async fn tag(
        &self,
        _repository: Option<&RepositoryRef>,
        name: &TagName,
        commit: &str,
    ) -> Result<TagOutcome, TagError> {
        if let Err(why) = self.git(&["rev-parse", "--show-toplevel"]).await? {
            return Ok(TagOutcome::NothingToTag {
                reason: format!(
                    "the images folder {} is not in a git repository ({why})",
                    self.images.display()
                ),
            });
        }
        let wanted = format!("{commit}^{{commit}}");
        let Ok(full) = self
            .git(&["rev-parse", "--verify", "--quiet", &wanted])
            .await?
        else {
            return Err(TagError::permanent(format!(
                "commit {commit} is not in the images folder's repository; fetch it, or tag it by hand: git tag {name} {commit}"
            )));
        };
        if let Some(existing) = self.existing(name).await? {
            return Ok(Self::settled(existing, &full));
        }
        match self.git(&["tag", name.as_str(), &full]).await? {
            Ok(_) => Ok(TagOutcome::Tagged),
            // Made meanwhile by someone else: read what it points at.
            Err(why) => match self.existing(name).await? {
                Some(existing) => Ok(Self::settled(existing, &full)),
                None => Err(TagError::permanent(format!(
                    "git could not tag {commit} as {name}: {why}"
                ))),
            },
        }
    }
}
