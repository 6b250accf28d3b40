//! Azure DevOps' REST API as the factory signs in to it ([`AzureDevOpsApi`]),
//! and git tags: the Git refs update API
//! (`POST {organization}/{project}/_apis/git/repositories/{id}/refs`,
//! api-version 7.1) with one update from 40 zeros (the ref must not exist)
//! to the commit, signed in as the factory's Entra identity (a token for
//! Azure DevOps' resource, `499b84ac-1321-427f-aa17-267ca6975798`). The
//! identity must be a user of the organization with the repository's
//! Create tag permission.
//!
//! A refused update is followed by a read of the ref
//! (`GET .../refs?filter=tags/<name>`) to tell a tag already on the commit
//! from a conflict. The organization's URL comes from the push; the token is
//! only sent to `https://dev.azure.com/...`, `https://*.visualstudio.com/...`
//! or the one server `IMAGE_FACTORY_AZURE_DEVOPS_URL` names (Azure DevOps
//! Server).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use serde::Deserialize;
use serde_json::json;

use super::answer::answer_message;
use crate::domain::git_tag::{TagName, TagOutcome};
use crate::domain::run::RepositoryRef;
use crate::ports::git::{GitTags, TagError};

/// The scope of Azure DevOps tokens (its application id's default scope).
pub const SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// The REST API version the factory speaks.
pub const API_VERSION: &str = "7.1";
/// A ref that does not exist, as the refs API writes it.
const NO_OBJECT: &str = "0000000000000000000000000000000000000000";

/// Azure DevOps' REST API as the factory signs in to it: its identity's
/// token, sent only to Azure DevOps' hosts and the configured server. The
/// tags and the source snapshots (`web::azure_devops_source`) share it.
#[derive(Clone)]
pub struct AzureDevOpsApi {
    pub(super) http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    /// A server besides the cloud's hosts the token may go to.
    server: Option<String>,
}

/// Tags commits in Azure DevOps repositories.
#[derive(Clone)]
pub struct AzureDevOpsTags {
    api: AzureDevOpsApi,
}

/// One ref update's result, as the refs API answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateResult {
    success: bool,
    #[serde(default)]
    update_status: Option<String>,
    #[serde(default)]
    custom_message: Option<String>,
}

/// A list answer of the API (`{count, value}`).
#[derive(Deserialize)]
struct List<T> {
    value: Vec<T>,
}

/// A ref, as the refs API lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GitRef {
    name: String,
    object_id: String,
    #[serde(default)]
    peeled_object_id: Option<String>,
}

impl AzureDevOpsApi {
    /// A client signing in with `credential`; `server`
    /// (`IMAGE_FACTORY_AZURE_DEVOPS_URL`) is an Azure DevOps Server's URL the
    /// token may also be sent to.
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        server: Option<&str>,
    ) -> Result<AzureDevOpsApi, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AzureDevOpsApi {
            http,
            credential,
            server: server.map(|s| s.trim_end_matches('/').to_string()),
        })
    }

    /// The factory's token for `organization_url`: refused, permanently,
    /// for an organization outside Azure DevOps' hosts and the configured
    /// server (the token is never sent there).
    pub(super) async fn token(&self, organization_url: &str) -> Result<String, TagError> {
        if !self.trusted(organization_url) {
            return Err(TagError::permanent(format!(
                "the organization {organization_url} is not on dev.azure.com or visualstudio.com; the factory's token is not sent there (set IMAGE_FACTORY_AZURE_DEVOPS_URL for an Azure DevOps Server)"
            )));
        }
        let token = self
            .credential
            .get_token(&[SCOPE], None)
            .await
            .map_err(|e| TagError::transient(format!("no Entra ID token for Azure DevOps: {e}")))?;
        Ok(token.token.secret().to_string())
    }

    /// Whether the factory's token may be sent to `organization_url`.
    fn trusted(&self, organization_url: &str) -> bool {
        if let Some(server) = &self.server
            && (organization_url == server || organization_url.starts_with(&format!("{server}/")))
        {
            return true;
        }
        let Some(rest) = organization_url.strip_prefix("https://") else {
            return false;
        };
        let host = rest.split('/').next().unwrap_or_default();
        host == "dev.azure.com"
            || host
                .strip_suffix(".visualstudio.com")
                .is_some_and(|account| {
                    !account.is_empty()
                        && account
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
    }
}

impl AzureDevOpsTags {
    /// An adapter signing in with `credential`; `server`
    /// (`IMAGE_FACTORY_AZURE_DEVOPS_URL`) is an Azure DevOps Server's URL the
    /// token may also be sent to.
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        server: Option<&str>,
    ) -> Result<AzureDevOpsTags, String> {
        Ok(AzureDevOpsTags {
            api: AzureDevOpsApi::new(credential, server)?,
        })
    }

    /// The API client (the source snapshots share it).
    pub fn api(&self) -> AzureDevOpsApi {
        self.api.clone()
    }

    /// What `refs/tags/<name>` points at (peeled), if it exists.
    async fn existing(
        &self,
        refs: &str,
        name: &TagName,
        token: &str,
    ) -> Result<Option<String>, TagError> {
        let response = self
            .api
            .http
            .get(refs)
            .query(&[
                ("filter", format!("tags/{name}").as_str()),
                ("peelTags", "true"),
                ("api-version", API_VERSION),
            ])
            .bearer_auth(token)
            .send()
            .await
            .map_err(unreachable_api)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refusal(status, &answer_message(response).await, CREATE));
        }
        let list: List<GitRef> = response
            .json()
            .await
            .map_err(|_| TagError::transient("Azure DevOps' list of refs could not be read"))?;
        let wanted = name.ref_name();
        Ok(list
            .value
            .into_iter()
            .find(|r| r.name == wanted)
            .map(|r| r.peeled_object_id.unwrap_or(r.object_id)))
    }
}

#[async_trait]
impl GitTags for AzureDevOpsTags {
    async fn tag(
        &self,
        repository: Option<&RepositoryRef>,
        name: &TagName,
        commit: &str,
    ) -> Result<TagOutcome, TagError> {
        let Some(RepositoryRef::AzureDevOps {
            organization_url,
            project,
            repository_id,
        }) = repository
        else {
            return Ok(TagOutcome::NothingToTag {
                reason: "the run's push named no Azure DevOps repository".into(),
            });
        };
        let token = self.api.token(organization_url).await?;
        let token = token.as_str();
        let refs =
            format!("{organization_url}/{project}/_apis/git/repositories/{repository_id}/refs");
        let response = self
            .api
            .http
            .post(&refs)
            .query(&[("api-version", API_VERSION)])
            .bearer_auth(token)
            .json(&json!([{
                "name": name.ref_name(),
                "oldObjectId": NO_OBJECT,
                "newObjectId": commit,
            }]))
            .send()
            .await
            .map_err(unreachable_api)?;
        let status = response.status().as_u16();
        let result = match status {
            200 => {
                let list: List<UpdateResult> = response.json().await.map_err(|_| {
                    TagError::transient("Azure DevOps' ref update answer could not be read")
                })?;
                list.value.into_iter().next().ok_or_else(|| {
                    TagError::transient("Azure DevOps answered no result for the ref update")
                })?
            }
            // The whole request refused (a conflict can come as 409).
            400 | 409 => UpdateResult {
                success: false,
                update_status: None,
                custom_message: Some(answer_message(response).await),
            },
            _ => return Err(refusal(status, &answer_message(response).await, CREATE)),
        };
        if result.success {
            return Ok(TagOutcome::Tagged);
        }
        if let Some(existing) = self.existing(&refs, name, token).await? {
            return Ok(if existing.eq_ignore_ascii_case(commit) {
                TagOutcome::AlreadyThere
            } else {
                TagOutcome::Conflict { existing }
            });
        }
        let update = result.update_status.unwrap_or_else(|| "refused".into());
        let detail = result.custom_message.unwrap_or_default();
        Err(match update.as_str() {
            "createTagPermissionRequired" | "writePermissionRequired" => {
                TagError::permanent(format!(
                    "Azure DevOps refused to tag {commit} as {name} ({update}); grant the factory's identity Create tag on the repository {detail}"
                ))
            }
            "unresolvableToCommit" => TagError::permanent(format!(
                "commit {commit} is not in the Azure DevOps repository ({update}) {detail}"
            )),
            "staleOldObjectId" | "unprocessed" | "locked" => TagError::transient(format!(
                "Azure DevOps did not tag {commit} as {name} ({update}) {detail}"
            )),
            _ => TagError::permanent(format!(
                "Azure DevOps refused to tag {commit} as {name} ({update}) {detail}"
            )),
        })
    }
}

/// The permissions tagging needs.
const CREATE: &str = "Read and Create tag";

/// The error for a request Azure DevOps answered with `status`; `need` is
/// what the identity must be granted on the repository.
pub(super) fn refusal(status: u16, why: &str, need: &str) -> TagError {
    match status {
        // A sign-in page (203) or 401: the token was not taken.
        203 | 401 => TagError::permanent(format!(
            "Azure DevOps did not accept the factory's identity ({status}: {why}); add the identity to the organization as a user"
        )),
        403 | 404 => TagError::permanent(format!(
            "Azure DevOps refused the factory's identity the repository ({status}: {why}); grant it {need} on the repository"
        )),
        429 | 500.. => TagError::transient(format!("Azure DevOps answered {status}: {why}")),
        _ => TagError::permanent(format!("Azure DevOps answered {status}: {why}")),
    }
}

/// The error when Azure DevOps did not answer (transient; no URL, no token).
pub(super) fn unreachable_api(e: reqwest::Error) -> TagError {
    TagError::transient(format!("Azure DevOps did not answer: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::tests::NoCredential;

    #[test]
    fn the_token_goes_only_to_azure_devops_hosts_and_the_configured_server() {
        let cloud = AzureDevOpsApi::new(Arc::new(NoCredential), None).unwrap();
        for ok in [
            "https://dev.azure.com/fabrikam",
            "https://fabrikam-fiber-inc.visualstudio.com/DefaultCollection",
        ] {
            assert!(cloud.trusted(ok), "{ok}");
        }
        for refused in [
            "http://dev.azure.com/fabrikam",
            "https://dev.azure.com.evil.example/x",
            "https://evil.example/dev.azure.com",
            "https://.visualstudio.com/x",
            "https://a.b.visualstudio.com/x",
            "https://tfs.example.com/tfs/DefaultCollection",
        ] {
            assert!(!cloud.trusted(refused), "{refused}");
        }
        let server =
            AzureDevOpsApi::new(Arc::new(NoCredential), Some("https://tfs.example.com/tfs/"))
                .unwrap();
        assert!(server.trusted("https://tfs.example.com/tfs/DefaultCollection"));
        assert!(!server.trusted("https://tfs.example.com/tfsother"));
    }

    #[test]
    fn server_errors_are_transient_and_sign_in_and_permission_refusals_are_not() {
        assert!(refusal(503, "x", CREATE).transient);
        assert!(refusal(429, "x", CREATE).transient);
        for status in [203, 401, 403, 404, 400] {
            assert!(!refusal(status, "x", CREATE).transient, "{status}");
        }
        assert!(refusal(403, "x", CREATE).message.contains("Create tag"));
    }
}
