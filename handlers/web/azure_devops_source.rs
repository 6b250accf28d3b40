//! Azure DevOps as a source host, signed in as the factory's Entra identity
//! (the git tags' [`AzureDevOpsApi`]: the token goes only to Azure DevOps'
//! hosts and the configured server). The images folder at a commit is the
//! Items API's zip of that path (Items_Get of the Git 7.1 specification:
//! `GET .../items?path=/<images>&$format=zip&versionDescriptor.versionType=commit&versionDescriptor.version=<commit>`);
//! a branch's head is its ref (Refs_List, `filter=heads/<branch>`). The
//! identity needs Read on the repository.
//!
//! The layout of the entries inside the zip is not documented. The
//! specification's examples name items by their path from the repository's
//! root (`/MyWebSite/MyWebSite/Views/Home/_Home.cshtml`); whether the zip
//! keeps that path, keeps only the requested folder's own name, or starts
//! inside the folder is not said, so the reader accepts each of them
//! (`tolerate_leading`: entries under any trailing part of the images
//! path, or under none of it). The zip names no commit: the one asked for
//! is recorded, as `versionType=commit` pins it. A zip keeps no executable
//! bits (Items_Get has no `zipForUnix`): the snapshot's files are 0644.

use super::answer::answer_message;
use super::azure_devops::{API_VERSION, AzureDevOpsApi, refusal, unreachable_api};
use super::download::read_capped;
use crate::ports::PortError;
use crate::ports::git::TagError;
use crate::ports::sources::{ArchiveKind, Fetched};

/// What reading a repository's files needs.
const READ: &str = "Read";

/// An Azure DevOps Git repository, as the API's paths name it.
#[derive(Clone, Copy, Debug)]
pub struct DevOpsRepository<'a> {
    /// The organization's (or collection's) URL.
    pub organization_url: &'a str,
    /// The project's id or name.
    pub project: &'a str,
    /// The repository's id or name.
    pub repository_id: &'a str,
}

impl DevOpsRepository<'_> {
    fn api(&self, tail: &str) -> String {
        format!(
            "{}/{}/_apis/git/repositories/{}/{tail}",
            self.organization_url, self.project, self.repository_id
        )
    }

    /// The repository as a run records it.
    fn shown(&self) -> String {
        format!(
            "{}/{}/_git/{}",
            self.organization_url, self.project, self.repository_id
        )
    }
}

/// Azure DevOps repositories as the source of the images folder.
pub struct AzureDevOpsSource {
    api: AzureDevOpsApi,
    folder: String,
    max_download: u64,
}

/// A ref, as the refs API lists it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GitRef {
    name: String,
    object_id: String,
}

/// A list answer of the API (`{count, value}`).
#[derive(serde::Deserialize)]
struct List<T> {
    value: Vec<T>,
}

fn port(e: TagError) -> PortError {
    PortError {
        message: e.message,
        transient: e.transient,
    }
}

impl AzureDevOpsSource {
    /// The images folder `folder` (its path in the repository) of the
    /// repositories `api` reads; a zip larger than `max_download` bytes is
    /// refused.
    pub fn new(api: AzureDevOpsApi, folder: &str, max_download: u64) -> AzureDevOpsSource {
        AzureDevOpsSource {
            api,
            folder: folder.trim_matches('/').to_string(),
            max_download,
        }
    }

    /// The commit at the head of `branch` of `repository` now.
    pub async fn head(
        &self,
        repository: DevOpsRepository<'_>,
        branch: &str,
    ) -> Result<String, PortError> {
        let token = self
            .api
            .token(repository.organization_url)
            .await
            .map_err(port)?;
        let response = self
            .api
            .http
            .get(repository.api("refs"))
            .query(&[
                ("filter", format!("heads/{branch}").as_str()),
                ("api-version", API_VERSION),
            ])
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| port(unreachable_api(e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(port(refusal(status, &answer_message(response).await, READ)));
        }
        let list: List<GitRef> = response
            .json()
            .await
            .map_err(|_| PortError::transient("Azure DevOps' list of refs could not be read"))?;
        let wanted = format!("refs/heads/{branch}");
        list.value
            .into_iter()
            .find(|r| r.name == wanted)
            .map(|r| r.object_id)
            .ok_or_else(|| {
                PortError::permanent(format!(
                    "Azure DevOps has no branch {branch} in {}; check IMAGE_FACTORY_BRANCHES and IMAGE_FACTORY_REPOSITORY",
                    repository.shown()
                ))
            })
    }

    /// The images folder of `repository` at `commit`, as the Items API's zip.
    pub async fn fetch(
        &self,
        repository: DevOpsRepository<'_>,
        commit: &str,
    ) -> Result<Fetched, PortError> {
        let token = self
            .api
            .token(repository.organization_url)
            .await
            .map_err(port)?;
        let path = format!("/{}", self.folder);
        let response = self
            .api
            .http
            .get(repository.api("items"))
            .query(&[
                ("path", path.as_str()),
                ("$format", "zip"),
                ("versionDescriptor.versionType", "commit"),
                ("versionDescriptor.version", commit),
                ("api-version", API_VERSION),
            ])
            .bearer_auth(&token)
            .timeout(std::time::Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| port(unreachable_api(e)))?;
        let status = response.status().as_u16();
        if status == 404 {
            let why = answer_message(response).await;
            return Err(PortError::permanent(format!(
                "Azure DevOps has no {path} at commit {commit} in {} (404: {why}); push the commit, check IMAGE_FACTORY_REPO_IMAGES_PATH, and grant the factory's identity {READ} on the repository",
                repository.shown()
            )));
        }
        if status != 200 {
            return Err(port(refusal(status, &answer_message(response).await, READ)));
        }
        let bytes = read_capped(
            response,
            self.max_download,
            &format!("Azure DevOps' zip of {path} at {commit}"),
        )
        .await?;
        Ok(Fetched {
            bytes,
            kind: ArchiveKind::Zip,
            strip_first: false,
            folder: self.folder.clone(),
            tolerate_leading: true,
            commit: Some(commit.to_string()),
            uncommitted: false,
            repository: Some(repository.shown()),
            header_names_commit: false,
        })
    }
}
