//! GitHub as a source host: the images folder at a commit is the
//! repository's tarball (`GET /repos/{owner}/{repo}/tarball/{ref}`, which
//! answers 302 to a download URL that the client follows), and a branch's
//! head is its ref (`GET /repos/{owner}/{repo}/git/ref/heads/{branch}`),
//! signed in as the git tags are ([`GitHubApi`]: the app's installation, a
//! fine-grained token with Contents: read, or nobody for a public
//! repository).
//!
//! The tarball holds one top folder, `<owner>-<repo>-<commit>/`, whose
//! commit is abbreviated in anonymous downloads and whole in signed ones:
//! the reader takes off the first path segment of every entry, whatever
//! it is, and never predicts it. GitHub makes the archive with `git
//! archive`, which writes the commit in the archive's pax global header
//! (`comment`): it must be the commit asked for, or the snapshot is
//! refused (`crate::sources`). The download follows the redirect to
//! another host; the client drops the `Authorization` header when the host
//! changes (the download URL carries its own short-lived token), and stops
//! reading past the largest archive a snapshot within the limits can come
//! from.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::answer::answer_message;
use super::download::read_capped;
use super::github::{GitHubApi, classified, repository_refusal, unreachable_api};
use crate::ports::PortError;
use crate::ports::git::TagError;
use crate::ports::sources::{ArchiveKind, Fetched};

/// The permission reading a commit's files needs.
const READ: &str = "Contents: read";

/// How long one tarball download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// GitHub repositories as the source of the images folder.
pub struct GitHubSource {
    api: Arc<GitHubApi>,
    folder: String,
    max_download: u64,
}

/// A ref as GitHub answers it.
#[derive(Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
}

/// The port's error for GitHub's refusal (the same words and classes as
/// the tags' refusals).
fn port(e: TagError) -> PortError {
    PortError {
        message: e.message,
        transient: e.transient,
    }
}

impl GitHubSource {
    /// The images folder `folder` (its path in the repository) of the
    /// repositories `api` reads; a download larger than `max_download`
    /// bytes is refused.
    pub fn new(api: Arc<GitHubApi>, folder: &str, max_download: u64) -> GitHubSource {
        GitHubSource {
            api,
            folder: folder.trim_matches('/').to_string(),
            max_download,
        }
    }

    /// The repository as a run records it.
    fn shown(&self, owner: &str, repo: &str) -> String {
        if self.api.base_url() == super::github::DEFAULT_API_URL {
            format!("github.com/{owner}/{repo}")
        } else {
            format!("{}/repos/{owner}/{repo}", self.api.base_url())
        }
    }

    /// The commit at the head of `branch` of `owner/repo` now.
    pub async fn head(&self, owner: &str, repo: &str, branch: &str) -> Result<String, PortError> {
        let token = self.api.token().await.map_err(port)?;
        let path = format!("/repos/{owner}/{repo}/git/ref/heads/{branch}");
        let response = self
            .api
            .request(reqwest::Method::GET, &path, token.as_deref())
            .send()
            .await
            .map_err(|e| port(unreachable_api(e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            let why = answer_message(response).await;
            return Err(port(if status == 404 {
                TagError::permanent(format!(
                    "GitHub has no branch {branch} in {owner}/{repo}, or shows the factory no such repository (404: {why}); check IMAGE_FACTORY_BRANCHES and IMAGE_FACTORY_REPOSITORY, and grant the app or token {READ} on it"
                ))
            } else {
                repository_refusal(status, &why, owner, repo, READ)
            }));
        }
        let found: GitRef = response.json().await.map_err(|_| {
            PortError::transient(format!(
                "GitHub's answer about the branch {branch} of {owner}/{repo} could not be read"
            ))
        })?;
        Ok(found.object.sha)
    }

    /// The images folder of `owner/repo` at `commit`, as GitHub's tarball.
    pub async fn fetch(&self, owner: &str, repo: &str, commit: &str) -> Result<Fetched, PortError> {
        let token = self.api.token().await.map_err(port)?;
        let path = format!("/repos/{owner}/{repo}/tarball/{commit}");
        let response = self
            .api
            .request(reqwest::Method::GET, &path, token.as_deref())
            .timeout(DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| port(unreachable_api(e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            let why = answer_message(response).await;
            return Err(port(if status == 404 {
                TagError::permanent(format!(
                    "GitHub has no commit {commit} in {owner}/{repo}, or shows the factory no such repository (404: {why}); push the commit, or grant the app or token {READ} on it"
                ))
            } else if matches!(status, 401 | 403) {
                repository_refusal(status, &why, owner, repo, READ)
            } else {
                classified(
                    status,
                    &why,
                    &format!("downloading {owner}/{repo} at {commit}"),
                )
            }));
        }
        let bytes = read_capped(
            response,
            self.max_download,
            &format!("GitHub's archive of {owner}/{repo} at {commit}"),
        )
        .await?;
        Ok(Fetched {
            bytes,
            kind: ArchiveKind::TarGz,
            strip_first: true,
            folder: self.folder.clone(),
            tolerate_leading: false,
            commit: Some(commit.to_string()),
            uncommitted: false,
            repository: Some(self.shown(owner, repo)),
            header_names_commit: true,
        })
    }
}
