//! The web adapters: plain HTTPS peers that are not Azure — GitHub and Azure
//! DevOps (git tags on released commits, the images folder at a commit and
//! branch heads, and the routers that send a tag or a source request to the
//! host its push came from), Teams (approval notices), the release
//! events' webhook receivers (Standard Webhooks signatures) and Microsoft's
//! Security Update Guide (the monthly CVRF documents of the patch rules).

mod address;
mod answer;
pub mod azure_devops;
pub mod azure_devops_source;
mod download;
pub mod github;
pub mod github_source;
pub mod msrc;
pub mod teams;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;

use crate::domain::git_tag::{TagName, TagOutcome};
use crate::domain::run::RepositoryRef;
use crate::ports::PortError;
use crate::ports::git::{GitTags, TagError};
use crate::ports::sources::{Fetched, SourceHost};

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

/// The setting naming the repository whose branch head the runs no push
/// started build.
pub const REPOSITORY_VAR: &str = "IMAGE_FACTORY_REPOSITORY";

/// Reads a repository's web address (`IMAGE_FACTORY_REPOSITORY`): an Azure
/// DevOps one, `https://dev.azure.com/<organization>/<project>/_git/<repository>`
/// (also `https://<organization>.visualstudio.com/...` or an Azure DevOps
/// Server's `<collection>/<project>/_git/<repository>`), or a GitHub one,
/// `https://github.com/<owner>/<repository>` (any host: GitHub Enterprise
/// Server's too). A trailing `/` or `.git` is dropped.
pub fn repository_from_url(url: &str) -> Result<RepositoryRef, String> {
    let rule = "must be the repository's https address: https://github.com/<owner>/<repository>, or https://dev.azure.com/<organization>/<project>/_git/<repository>";
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| rule.to_string())?;
    let plain = parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && address::https_or_loopback(&parsed);
    if !plain {
        return Err(rule.into());
    }
    let text = url.trim().trim_end_matches('/');
    let text = text.strip_suffix(".git").unwrap_or(text);
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && !s.contains(['/', '?', '#', '\\'])
            && s != "."
            && s != ".."
    };
    if let Some((left, repository)) = text.split_once("/_git/") {
        let (organization_url, project) = left.rsplit_once('/').ok_or(rule)?;
        // On dev.azure.com the organization is the first segment of the path.
        let names_organization = reqwest::Url::parse(organization_url).is_ok_and(|org| {
            org.host_str().is_some_and(|h| !h.is_empty())
                && (org.host_str() != Some("dev.azure.com")
                    || !org.path().trim_matches('/').is_empty())
        });
        if !names_organization || !segment_ok(project) || !segment_ok(repository) {
            return Err(rule.into());
        }
        return Ok(RepositoryRef::AzureDevOps {
            organization_url: organization_url.to_string(),
            project: project.to_string(),
            repository_id: repository.to_string(),
        });
    }
    let path: Vec<&str> = text
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path.split('/').collect())
        .unwrap_or_default();
    match path.as_slice() {
        [owner, repo] if segment_ok(owner) && segment_ok(repo) => Ok(RepositoryRef::GitHub {
            owner: owner.to_string(),
            repo: repo.to_string(),
        }),
        _ => Err(rule.into()),
    }
}

/// Where the images folder's commits come from on the Azure path: the
/// repository a push named (GitHub through `github_source`, Azure DevOps
/// through `azure_devops_source`), or, for runs no push started (Patch
/// Tuesday, out-of-band, a new base image, a parent's release), the
/// configured repository (`IMAGE_FACTORY_REPOSITORY`).
pub struct HostedSources {
    /// GitHub, signed in as the git tags are (or anonymous).
    pub github: github_source::GitHubSource,
    /// Azure DevOps, as the factory's identity.
    pub azure_devops: azure_devops_source::AzureDevOpsSource,
    /// The repository of runs no push started.
    pub configured: RepositoryRef,
}

impl HostedSources {
    /// The sources of the hosts `tags` signs in to (sharing their sign-in
    /// and GitHub's installation token; GitHub without credentials reads
    /// public repositories anonymously, at `IMAGE_FACTORY_GITHUB_API_URL`
    /// read through `var`), reading the images folder `folder` of each
    /// repository, refusing archives larger than `max_download` bytes.
    pub fn new(
        var: impl Fn(&str) -> Option<String>,
        tags: &HostedGitTags,
        configured: RepositoryRef,
        folder: &str,
        max_download: u64,
    ) -> Result<HostedSources, String> {
        let github_api = match &tags.github {
            Some(github) => github.api(),
            None => {
                let api_url = var("IMAGE_FACTORY_GITHUB_API_URL")
                    .filter(|v| !v.trim().is_empty())
                    .unwrap_or_else(|| github::DEFAULT_API_URL.to_string());
                Arc::new(github::GitHubApi::anonymous(&api_url).map_err(|e| e.to_string())?)
            }
        };
        let devops = match &tags.azure_devops {
            Some(devops) => devops.api(),
            None => return Err("Azure DevOps is not configured".into()),
        };
        Ok(HostedSources {
            github: github_source::GitHubSource::new(github_api, folder, max_download),
            azure_devops: azure_devops_source::AzureDevOpsSource::new(devops, folder, max_download),
            configured,
        })
    }
}

#[async_trait]
impl SourceHost for HostedSources {
    async fn head(
        &self,
        repository: Option<&RepositoryRef>,
        branch: &str,
    ) -> Result<Option<String>, PortError> {
        match repository.unwrap_or(&self.configured) {
            RepositoryRef::GitHub { owner, repo } => {
                self.github.head(owner, repo, branch).await.map(Some)
            }
            RepositoryRef::AzureDevOps {
                organization_url,
                project,
                repository_id,
            } => {
                let repository = azure_devops_source::DevOpsRepository {
                    organization_url,
                    project,
                    repository_id,
                };
                self.azure_devops.head(repository, branch).await.map(Some)
            }
        }
    }

    async fn fetch(
        &self,
        repository: Option<&RepositoryRef>,
        commit: Option<&str>,
    ) -> Result<Fetched, PortError> {
        let Some(commit) = commit else {
            return Err(PortError::permanent(
                "a hosted repository's images folder is taken at a commit, and none was named",
            ));
        };
        match repository.unwrap_or(&self.configured) {
            RepositoryRef::GitHub { owner, repo } => self.github.fetch(owner, repo, commit).await,
            RepositoryRef::AzureDevOps {
                organization_url,
                project,
                repository_id,
            } => {
                let repository = azure_devops_source::DevOpsRepository {
                    organization_url,
                    project,
                    repository_id,
                };
                self.azure_devops.fetch(repository, commit).await
            }
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
    fn a_repository_is_named_by_its_web_address_on_github_or_azure_devops() {
        assert_eq!(
            repository_from_url("https://github.com/octo/images.git/"),
            Ok(RepositoryRef::GitHub {
                owner: "octo".into(),
                repo: "images".into()
            })
        );
        assert_eq!(
            repository_from_url("https://dev.azure.com/fabrikam/Fiber/_git/images"),
            Ok(RepositoryRef::AzureDevOps {
                organization_url: "https://dev.azure.com/fabrikam".into(),
                project: "Fiber".into(),
                repository_id: "images".into()
            })
        );
        assert_eq!(
            repository_from_url(
                "https://fabrikam.visualstudio.com/DefaultCollection/Fiber/_git/images"
            ),
            Ok(RepositoryRef::AzureDevOps {
                organization_url: "https://fabrikam.visualstudio.com/DefaultCollection".into(),
                project: "Fiber".into(),
                repository_id: "images".into()
            })
        );
        for bad in [
            "",
            "octo/images",
            "http://github.com/octo/images",
            "https://github.com/octo",
            "https://github.com/octo/images/tree/main",
            "https://user:pw@github.com/octo/images",
            "https://github.com/octo/images?x=1",
            "https://dev.azure.com/fabrikam/_git/images",
            "https://dev.azure.com/fabrikam/Fiber/_git/",
            "https://dev.azure.com/fabrikam/Fiber/_git/a/b",
        ] {
            let error = repository_from_url(bad).expect_err(bad);
            assert!(
                error.contains("https://github.com/<owner>"),
                "{bad}: {error}"
            );
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
