//! The git host port: tags a released commit in the repository its push came
//! from (GitHub, Azure DevOps, or the images folder's own repository on one
//! machine). Adapters: `web::github`, `web::azure_devops`, `local::git`.

use async_trait::async_trait;

use crate::domain::git_tag::{TagName, TagOutcome};
use crate::domain::run::RepositoryRef;

/// Why a tag could not be made, and whether trying again may help by itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TagError {
    /// What happened and what to do, with no secret in it.
    pub message: String,
    /// True when trying again later may succeed with nothing changed (a
    /// timeout, a 503, a rate limit); false when someone must act first (a
    /// missing permission, an unknown commit).
    pub transient: bool,
}

impl TagError {
    /// A failure that may pass by itself.
    pub fn transient(message: impl Into<String>) -> TagError {
        TagError {
            message: message.into(),
            transient: true,
        }
    }

    /// A failure someone must act on.
    pub fn permanent(message: impl Into<String>) -> TagError {
        TagError {
            message: message.into(),
            transient: false,
        }
    }
}

/// Makes git tags. A tag that exists on the same commit is
/// [`TagOutcome::AlreadyThere`]; one on another commit is a
/// [`TagOutcome::Conflict`] and is never moved.
#[async_trait]
pub trait GitTags: Send + Sync {
    /// Tags `commit` as `name` in `repository` (the repository the run's push
    /// named, if it named one).
    async fn tag(
        &self,
        repository: Option<&RepositoryRef>,
        name: &TagName,
        commit: &str,
    ) -> Result<TagOutcome, TagError>;
}
