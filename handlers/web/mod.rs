//! The web adapters: plain HTTPS peers that are not Azure — GitHub and Azure
//! DevOps (git tags on released commits), and the router that sends a tag to
//! the host its push came from.

pub mod azure_devops;
pub mod github;

use async_trait::async_trait;

use crate::domain::git_tag::{RepositoryRef, TagName, TagOutcome};
use crate::ports::git::{GitTags, TagError};

/// Tags in the host a run's push came from: GitHub repositories through
/// `github`, Azure DevOps ones through `azure_devops`. A host with no
/// adapter configured, or a push that named no repository, has nothing to
/// tag, with the reason.
pub struct HostedGitTags {
    /// GitHub, when the factory has credentials for it.
    pub github: Option<github::GitHubTags>,
    /// Azure DevOps, when the factory has an identity for it.
    pub azure_devops: Option<azure_devops::AzureDevOpsTags>,
}

#[async_trait]
impl GitTags for HostedGitTags {
    async fn tag(
        &self,
        repository: Option<&RepositoryRef>,
        name: &TagName,
        commit: &str,
    ) -> Result<TagOutcome, TagError> {
        let nothing = |reason: &str| {
            Ok(TagOutcome::NothingToTag {
                reason: reason.to_string(),
            })
        };
        match repository {
            None => nothing("the push that started the run named no repository"),
            Some(RepositoryRef::GitHub { .. }) => match &self.github {
                Some(github) => github.tag(repository, name, commit).await,
                None => nothing(
                    "no GitHub credentials are configured (IMAGE_FACTORY_GITHUB_APP_ID or IMAGE_FACTORY_GITHUB_TOKEN)",
                ),
            },
            Some(RepositoryRef::AzureDevOps { .. }) => match &self.azure_devops {
                Some(devops) => devops.tag(repository, name, commit).await,
                None => nothing("Azure DevOps tagging is not configured"),
            },
        }
    }
}
