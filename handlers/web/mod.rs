//! The web adapters: plain HTTPS peers that are not Azure — GitHub and Azure
//! DevOps (git tags on released commits, and the router that sends a tag to
//! the host its push came from), Teams (approval notices), the release
//! events' webhook receivers (Standard Webhooks signatures) and Microsoft's
//! Security Update Guide (the monthly CVRF documents of the patch rules).

mod address;
mod answer;
pub mod azure_devops;
pub mod github;
pub mod msrc;
pub mod teams;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;

use crate::domain::git_tag::{TagName, TagOutcome};
use crate::domain::run::RepositoryRef;
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

impl HostedGitTags {
    /// The hosts configured in the environment (read through `var`):
    /// GitHub when an app or a token is set (`web::github`), Azure DevOps
    /// always, signing in with `credential` (the factory's identity) and
    /// trusting the server `IMAGE_FACTORY_AZURE_DEVOPS_URL` names, if any.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<HostedGitTags, String> {
        let github = github::GitHubSettings::from_vars(&var)
            .map_err(|e| e.to_string())?
            .map(|settings| github::GitHubTags::new(&settings))
            .transpose()
            .map_err(|e| e.to_string())?;
        let server = var("IMAGE_FACTORY_AZURE_DEVOPS_URL").filter(|s| !s.trim().is_empty());
        let azure_devops = azure_devops::AzureDevOpsTags::new(credential, server.as_deref())?;
        Ok(HostedGitTags {
            github,
            azure_devops: Some(azure_devops),
        })
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A credential that is never asked for a token.
    #[derive(Debug)]
    pub(crate) struct NoCredential;

    #[async_trait]
    impl TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "never asked",
            ))
        }
    }

    #[test]
    fn github_is_configured_by_a_token_or_an_app_and_a_broken_app_is_refused() {
        let none = HostedGitTags::from_vars(|_| None, Arc::new(NoCredential)).unwrap();
        assert!(none.github.is_none() && none.azure_devops.is_some());
        let token = HostedGitTags::from_vars(
            |name| (name == "IMAGE_FACTORY_GITHUB_TOKEN").then(|| "github_pat_x".to_string()),
            Arc::new(NoCredential),
        )
        .unwrap();
        assert!(token.github.is_some());
        let Err(broken) = HostedGitTags::from_vars(
            |name| (name == "IMAGE_FACTORY_GITHUB_APP_ID").then(|| "1".to_string()),
            Arc::new(NoCredential),
        ) else {
            panic!("an app without its key and installation is refused");
        };
        assert!(
            broken.contains("IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID"),
            "{broken}"
        );
    }
}
