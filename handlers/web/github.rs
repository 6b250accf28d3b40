//! GitHub's REST API as the factory signs in to it ([`GitHubApi`]), and git
//! tags: `POST /repos/{owner}/{repo}/git/refs` with `refs/tags/<name>`.
//! The factory signs in as a GitHub App installation (it signs the app's
//! JWT, RS256, with the app's private key and exchanges it for an
//! installation token, kept until shortly before it expires) or with a
//! fine-grained token. Tags need the repository's Contents: write
//! permission; the source snapshots (`web::github_source`) share the same
//! sign-in and need Contents: read.
//!
//! An existing ref (422 "Reference already exists") is read back
//! (`GET /repos/{owner}/{repo}/git/ref/tags/<name>`, an annotated tag peeled
//! with `GET /repos/{owner}/{repo}/git/tags/{sha}`) to tell a tag already on
//! the commit from a conflict. 401, 403 and 404 are permanent, with the
//! permission to grant; 429, 5xx, rate limits and timeouts are transient.
//! The API's base URL is configurable for GitHub Enterprise Server.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;

use super::answer::answer_message;
use crate::domain::git_tag::{TagName, TagOutcome};
use crate::domain::run::RepositoryRef;
use crate::ports::git::{GitTags, TagError};

/// GitHub's API, unless `IMAGE_FACTORY_GITHUB_API_URL` names another.
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The REST API version the factory speaks.
pub const API_VERSION: &str = "2022-11-28";
/// The permission tags need.
const WRITE: &str = "Contents: write";
/// An installation token is renewed this long before it expires.
const RENEW_BEFORE: chrono::Duration = chrono::Duration::minutes(5);

/// How the factory signs in to GitHub.
#[derive(Clone, PartialEq, Eq)]
pub enum GitHubAuth {
    /// As an installation of a GitHub App.
    App {
        /// The app's id (or client id).
        app_id: String,
        /// The installation's id on the account that owns the repositories.
        installation_id: u64,
        /// The app's private key, PEM.
        private_key: String,
    },
    /// With a fine-grained personal access token.
    Token(String),
}

impl fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitHubAuth::App {
                app_id,
                installation_id,
                ..
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("installation_id", installation_id)
                .field("private_key", &"<redacted>")
                .finish(),
            GitHubAuth::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// The GitHub settings of git tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitHubSettings {
    /// The REST API's base URL (`IMAGE_FACTORY_GITHUB_API_URL`).
    pub api_url: String,
    /// How to sign in.
    pub auth: GitHubAuth,
}

/// Why the GitHub settings are not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GitHubSettingsError {
    /// Some of the app's three settings are set, not all.
    #[error(
        "a GitHub App needs IMAGE_FACTORY_GITHUB_APP_ID, IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID and IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY; {0} is missing"
    )]
    Incomplete(&'static str),
    /// The installation id is not a number.
    #[error("IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID must be the installation's number")]
    InstallationId,
    /// The private key cannot sign.
    #[error(
        "IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY is not an RSA private key in PEM (the .pem file GitHub generated for the app)"
    )]
    PrivateKey,
    /// The API URL is not an http(s) URL.
    #[error(
        "IMAGE_FACTORY_GITHUB_API_URL must be an https URL, e.g. https://github.example.com/api/v3"
    )]
    ApiUrl,
}

impl GitHubSettings {
    /// Reads the settings through `var`; `None` when neither an app nor a
    /// token is configured (GitHub repositories then have nothing to tag).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<GitHubSettings>, GitHubSettingsError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let api_url = var("IMAGE_FACTORY_GITHUB_API_URL")
            .unwrap_or_else(|| DEFAULT_API_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(GitHubSettingsError::ApiUrl);
        }
        let app_id = var("IMAGE_FACTORY_GITHUB_APP_ID");
        let installation = var("IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID");
        let key = var("IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY");
        let auth = match (app_id, installation, key) {
            (None, None, None) => match var("IMAGE_FACTORY_GITHUB_TOKEN") {
                Some(token) => GitHubAuth::Token(token.trim().to_string()),
                None => return Ok(None),
            },
            (Some(app_id), Some(installation), Some(key)) => GitHubAuth::App {
                app_id: app_id.trim().to_string(),
                installation_id: installation
                    .trim()
                    .parse()
                    .map_err(|_| GitHubSettingsError::InstallationId)?,
                private_key: pem_text(&key),
            },
            (None, _, _) => {
                return Err(GitHubSettingsError::Incomplete(
                    "IMAGE_FACTORY_GITHUB_APP_ID",
                ));
            }
            (_, None, _) => {
                return Err(GitHubSettingsError::Incomplete(
                    "IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID",
                ));
            }
            (_, _, None) => {
                return Err(GitHubSettingsError::Incomplete(
                    "IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY",
                ));
            }
        };
        Ok(Some(GitHubSettings { api_url, auth }))
    }
}

/// A PEM given in one line (an app setting with `\n` escapes) as the PEM.
fn pem_text(key: &str) -> String {
    if key.contains('\n') {
        key.to_string()
    } else {
        key.replace("\\n", "\n")
    }
}

/// The claims of a GitHub App's JWT.
#[derive(Serialize)]
struct AppClaims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

/// The app's JWT at `now`: issued 60 seconds in the past (for clock drift),
/// expiring 9 minutes after `now` (GitHub allows at most 10).
fn app_jwt(app_id: &str, key: &EncodingKey, now: DateTime<Utc>) -> Result<String, TagError> {
    let claims = AppClaims {
        iat: now.timestamp() - 60,
        exp: now.timestamp() + 9 * 60,
        iss: app_id,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key).map_err(|_| {
        TagError::permanent("the GitHub App's private key cannot sign its JWT (RS256)")
    })
}

/// How the adapter signs in, with the key ready to sign.
enum Credentials {
    App {
        app_id: String,
        installation_id: u64,
        key: EncodingKey,
    },
    Token(String),
    /// No sign-in: public repositories only.
    Anonymous,
}

/// An installation token and when it expires.
struct Cached {
    token: String,
    expires_at: DateTime<Utc>,
}

/// GitHub's REST API, signed in as the settings say: the requests of the
/// tags and of the source snapshots, and the installation token they share.
pub struct GitHubApi {
    http: reqwest::Client,
    api: String,
    credentials: Credentials,
    installation_token: Mutex<Option<Cached>>,
}

/// Tags commits in GitHub repositories.
pub struct GitHubTags {
    api: std::sync::Arc<GitHubApi>,
}

/// An installation token as GitHub answers it.
#[derive(Deserialize)]
struct InstallationToken {
    token: String,
    expires_at: DateTime<Utc>,
}

/// A ref as GitHub answers it.
#[derive(Deserialize)]
struct GitRef {
    object: GitObject,
}

#[derive(Deserialize)]
struct GitObject {
    sha: String,
    #[serde(rename = "type")]
    kind: String,
}

/// An annotated tag object as GitHub answers it.
#[derive(Deserialize)]
struct TagObject {
    object: GitObject,
}

impl GitHubTags {
    /// An adapter for `settings`; refuses a private key that cannot sign.
    pub fn new(settings: &GitHubSettings) -> Result<GitHubTags, GitHubSettingsError> {
        Ok(GitHubTags {
            api: std::sync::Arc::new(GitHubApi::new(settings)?),
        })
    }

    /// The API client, signed in as the tags are (the source snapshots
    /// share it, and its installation token).
    pub fn api(&self) -> std::sync::Arc<GitHubApi> {
        std::sync::Arc::clone(&self.api)
    }
}

impl GitHubApi {
    /// A client signed in as `settings` say; refuses a private key that cannot sign.
    pub fn new(settings: &GitHubSettings) -> Result<GitHubApi, GitHubSettingsError> {
        let credentials = match &settings.auth {
            GitHubAuth::Token(token) => Credentials::Token(token.clone()),
            GitHubAuth::App {
                app_id,
                installation_id,
                private_key,
            } => {
                let key = EncodingKey::from_rsa_pem(private_key.as_bytes())
                    .map_err(|_| GitHubSettingsError::PrivateKey)?;
                app_jwt(app_id, &key, Utc::now()).map_err(|_| GitHubSettingsError::PrivateKey)?;
                Credentials::App {
                    app_id: app_id.clone(),
                    installation_id: *installation_id,
                    key,
                }
            }
        };
        GitHubApi::with(&settings.api_url, credentials)
    }

    /// A client that does not sign in, for `api_url`: it reads public
    /// repositories only.
    pub fn anonymous(api_url: &str) -> Result<GitHubApi, GitHubSettingsError> {
        GitHubApi::with(api_url, Credentials::Anonymous)
    }

    fn with(api_url: &str, credentials: Credentials) -> Result<GitHubApi, GitHubSettingsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("image-factory/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| GitHubSettingsError::ApiUrl)?;
        Ok(GitHubApi {
            http,
            api: api_url.trim_end_matches('/').to_string(),
            credentials,
            installation_token: Mutex::new(None),
        })
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.api
    }

    /// A request to the API with GitHub's headers and `token`, if any.
    pub(super) fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The token to call the repository API with: the fine-grained token, or
    /// an installation token (cached until [`RENEW_BEFORE`] its expiry);
    /// `None` for an anonymous client.
    pub(super) async fn token(&self) -> Result<Option<String>, TagError> {
        let (app_id, installation_id, key) = match &self.credentials {
            Credentials::Token(token) => return Ok(Some(token.clone())),
            Credentials::Anonymous => return Ok(None),
            Credentials::App {
                app_id,
                installation_id,
                key,
            } => (app_id, installation_id, key),
        };
        let mut cached = self.installation_token.lock().await;
        let now = Utc::now();
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.expires_at - RENEW_BEFORE > now)
        {
            return Ok(Some(c.token.clone()));
        }
        let jwt = app_jwt(app_id, key, now)?;
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let response = self
            .request(reqwest::Method::POST, &path, Some(&jwt))
            .send()
            .await
            .map_err(unreachable_api)?;
        let status = response.status().as_u16();
        if status != 201 {
            let why = answer_message(response).await;
            return Err(match status {
                401 => TagError::permanent(format!(
                    "GitHub refused the app's JWT (401: {why}); check IMAGE_FACTORY_GITHUB_APP_ID and the private key"
                )),
                403 | 404 => TagError::permanent(format!(
                    "GitHub has no installation {installation_id} of app {app_id} ({status}: {why}); install the app on the repositories' account and set IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID"
                )),
                _ => classified(status, &why, "getting an installation token"),
            });
        }
        let token: InstallationToken = response.json().await.map_err(|_| {
            TagError::transient("GitHub's installation token answer could not be read")
        })?;
        let value = token.token.clone();
        *cached = Some(Cached {
            token: token.token,
            expires_at: token.expires_at,
        });
        Ok(Some(value))
    }
}

impl GitHubTags {
    /// The commit an annotated tag object `sha` points at (tags of tags followed).
    async fn peel(
        &self,
        owner: &str,
        repo: &str,
        mut sha: String,
        token: Option<&str>,
    ) -> Result<String, TagError> {
        for _ in 0..4 {
            let path = format!("/repos/{owner}/{repo}/git/tags/{sha}");
            let response = self
                .api
                .request(reqwest::Method::GET, &path, token)
                .send()
                .await
                .map_err(unreachable_api)?;
            let status = response.status().as_u16();
            if status != 200 {
                let why = answer_message(response).await;
                return Err(repository_refusal(status, &why, owner, repo, WRITE));
            }
            let tag: TagObject = response.json().await.map_err(|_| {
                TagError::transient("GitHub's answer about the existing tag could not be read")
            })?;
            sha = tag.object.sha;
            if tag.object.kind != "tag" {
                break;
            }
        }
        Ok(sha)
    }

    /// The commit `refs/tags/<name>` points at (an annotated tag peeled), if it exists.
    async fn existing(
        &self,
        owner: &str,
        repo: &str,
        name: &TagName,
        token: Option<&str>,
    ) -> Result<Option<String>, TagError> {
        let path = format!("/repos/{owner}/{repo}/git/ref/tags/{name}");
        let response = self
            .api
            .request(reqwest::Method::GET, &path, token)
            .send()
            .await
            .map_err(unreachable_api)?;
        match response.status().as_u16() {
            200 => {
                let found: GitRef = response.json().await.map_err(|_| {
                    TagError::transient("GitHub's answer about the existing tag could not be read")
                })?;
                if found.object.kind == "tag" {
                    return Ok(Some(self.peel(owner, repo, found.object.sha, token).await?));
                }
                Ok(Some(found.object.sha))
            }
            404 => Ok(None),
            status => {
                let why = answer_message(response).await;
                Err(repository_refusal(status, &why, owner, repo, WRITE))
            }
        }
    }
}

#[async_trait]
impl GitTags for GitHubTags {
    async fn tag(
        &self,
        repository: Option<&RepositoryRef>,
        name: &TagName,
        commit: &str,
    ) -> Result<TagOutcome, TagError> {
        let Some(RepositoryRef::GitHub { owner, repo }) = repository else {
            return Ok(TagOutcome::NothingToTag {
                reason: "the run's push named no GitHub repository".into(),
            });
        };
        let token = self.api.token().await?;
        let token = token.as_deref();
        let path = format!("/repos/{owner}/{repo}/git/refs");
        let response = self
            .api
            .request(reqwest::Method::POST, &path, token)
            .json(&json!({ "ref": name.ref_name(), "sha": commit }))
            .send()
            .await
            .map_err(unreachable_api)?;
        let status = response.status().as_u16();
        if status == 201 {
            return Ok(TagOutcome::Tagged);
        }
        let why = answer_message(response).await;
        if status == 422 {
            // "Reference already exists", or a commit GitHub does not know.
            return match self.existing(owner, repo, name, token).await? {
                Some(existing) if existing.eq_ignore_ascii_case(commit) => {
                    Ok(TagOutcome::AlreadyThere)
                }
                Some(existing) => Ok(TagOutcome::Conflict { existing }),
                None => Err(TagError::permanent(format!(
                    "GitHub refused to tag {commit} as {name} in {owner}/{repo} (422: {why}); is the commit pushed there?"
                ))),
            };
        }
        Err(repository_refusal(status, &why, owner, repo, WRITE))
    }
}

/// The error for a repository call GitHub refused with `status`; `need`
/// is the permission the call needs (`Contents: write` to tag, `Contents:
/// read` to read a commit's files).
pub(super) fn repository_refusal(
    status: u16,
    why: &str,
    owner: &str,
    repo: &str,
    need: &str,
) -> TagError {
    match status {
        401 => TagError::permanent(format!(
            "GitHub refused the factory's credentials (401: {why}); check IMAGE_FACTORY_GITHUB_TOKEN or the app's settings"
        )),
        403 if !why.contains("rate limit") => TagError::permanent(format!(
            "GitHub refused the factory's request in {owner}/{repo} (403: {why}); grant the app or token {need} on it"
        )),
        404 => TagError::permanent(format!(
            "GitHub shows the factory no repository {owner}/{repo}, or nothing there by that name (404: {why}); grant the app or token access to it with {need}"
        )),
        _ => classified(status, why, &format!("in {owner}/{repo}")),
    }
}

/// The error for any other status: 429, 5xx and rate limits are transient.
pub(super) fn classified(status: u16, why: &str, doing: &str) -> TagError {
    let message = format!("GitHub answered {status} {doing}: {why}");
    if status == 429 || status >= 500 || why.contains("rate limit") {
        TagError::transient(message)
    } else {
        TagError::permanent(message)
    }
}

/// The error when GitHub did not answer (transient; no URL, no token).
pub(super) fn unreachable_api(e: reqwest::Error) -> TagError {
    TagError::transient(format!("GitHub did not answer: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_set_means_no_github_tags_and_a_token_or_a_whole_app_is_taken() {
        assert_eq!(GitHubSettings::from_vars(vars(&[])), Ok(None));
        let token =
            GitHubSettings::from_vars(vars(&[("IMAGE_FACTORY_GITHUB_TOKEN", "github_pat_x")]))
                .unwrap()
                .unwrap();
        assert_eq!(token.api_url, DEFAULT_API_URL);
        assert_eq!(token.auth, GitHubAuth::Token("github_pat_x".into()));
        let app = GitHubSettings::from_vars(vars(&[
            ("IMAGE_FACTORY_GITHUB_APP_ID", "12345"),
            ("IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID", "678"),
            (
                "IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY",
                "-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----",
            ),
            (
                "IMAGE_FACTORY_GITHUB_API_URL",
                "https://github.example.com/api/v3/",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(app.api_url, "https://github.example.com/api/v3");
        let GitHubAuth::App {
            private_key,
            installation_id,
            ..
        } = &app.auth
        else {
            panic!("an app");
        };
        assert_eq!(*installation_id, 678);
        assert!(private_key.contains("-----\nabc\n-----"), "{private_key}");
    }

    #[test]
    fn a_partial_app_or_a_bad_installation_id_is_refused_naming_the_setting() {
        let err =
            GitHubSettings::from_vars(vars(&[("IMAGE_FACTORY_GITHUB_APP_ID", "1")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID is missing")
        );
        let err = GitHubSettings::from_vars(vars(&[
            ("IMAGE_FACTORY_GITHUB_APP_ID", "1"),
            ("IMAGE_FACTORY_GITHUB_APP_INSTALLATION_ID", "one"),
            ("IMAGE_FACTORY_GITHUB_APP_PRIVATE_KEY", "x"),
        ]))
        .unwrap_err();
        assert_eq!(err, GitHubSettingsError::InstallationId);
        let err = GitHubSettings::from_vars(vars(&[
            ("IMAGE_FACTORY_GITHUB_TOKEN", "t"),
            ("IMAGE_FACTORY_GITHUB_API_URL", "github.example.com"),
        ]))
        .unwrap_err();
        assert_eq!(err, GitHubSettingsError::ApiUrl);
    }

    #[test]
    fn a_key_that_cannot_sign_is_refused_at_start_and_secrets_never_show_in_debug() {
        let settings = GitHubSettings {
            api_url: DEFAULT_API_URL.into(),
            auth: GitHubAuth::App {
                app_id: "1".into(),
                installation_id: 2,
                private_key:
                    "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"
                        .into(),
            },
        };
        assert!(matches!(
            GitHubTags::new(&settings),
            Err(GitHubSettingsError::PrivateKey)
        ));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("bm90IGEga2V5"), "{shown}");
        let token = format!("{:?}", GitHubAuth::Token("github_pat_secret".into()));
        assert!(!token.contains("github_pat_secret"), "{token}");
    }

    #[test]
    fn rate_limits_and_server_errors_are_transient_and_permissions_are_not() {
        assert!(classified(503, "Service Unavailable", "x").transient);
        assert!(classified(429, "Too Many Requests", "x").transient);
        let limited = repository_refusal(
            403,
            "API rate limit exceeded for installation",
            "o",
            "r",
            WRITE,
        );
        assert!(limited.transient);
        let denied = repository_refusal(
            403,
            "Resource not accessible by integration",
            "o",
            "r",
            WRITE,
        );
        assert!(!denied.transient);
        assert!(
            denied.message.contains("Contents: write"),
            "{}",
            denied.message
        );
        let hidden = repository_refusal(404, "Not Found", "o", "r", WRITE);
        assert!(!hidden.transient && hidden.message.contains("Contents: write"));
    }
}
